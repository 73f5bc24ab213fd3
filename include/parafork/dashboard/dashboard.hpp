#pragma once
// The live dashboard (docs/dashboard.md): off unless options::dashboard or PARAFORK_DASHBOARD
// names an address; then the first pool, forked or map call starts a server process that shows
// every engine of this program in a browser (/), as JSON (/api/state) and as Prometheus text
// (/metrics). These two calls are for programs and tests that want to know or end it.

#include <string>

namespace parafork::dashboard {

// "http://HOST:PORT/" while the dashboard is served by this process; "" otherwise.
std::string url();

// Stops the server process and reaps it (the next call with the dashboard on starts another).
// The counters stay mapped: engines alive meanwhile keep writing to them unseen.
void stop() noexcept;

} // namespace parafork::dashboard

// The dashboard in a library built without it (PARAFORK_DASHBOARD=OFF): asking for one says so
// once on stderr and the program runs on, as it does when an address cannot be bound.
#include "hub.hpp"

#include <parafork/dashboard/dashboard.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace parafork::detail::dash {

pool_slot* attach(const options& o, std::string_view, std::uint64_t, std::uint64_t) {
    std::string spec = o.dashboard;
    if (spec.empty())
        if (const char* env = std::getenv("PARAFORK_DASHBOARD")) spec = env;
    static std::atomic<bool> said{false};
    if (!spec.empty() && !said.exchange(true, std::memory_order_relaxed))
        std::fprintf(stderr,
                     "parafork: dashboard on %s not started: this parafork was built without it "
                     "(PARAFORK_DASHBOARD=OFF)\n",
                     spec.c_str());
    return nullptr;
}

void note(pool_slot&, const error_note&) noexcept {}
pipe_slot* attach_pipe(pool_slot&) noexcept { return nullptr; }
pipe_slot* attach_graph(pool_slot&, std::span<const std::string_view>, std::span<const graph_queue>, std::size_t) noexcept {
    return nullptr;
}
void open_to_children() noexcept {}
void close_to_children() noexcept {}
void keep_from_children() noexcept {}
void quiet_threads(bool) noexcept {}

} // namespace parafork::detail::dash

namespace parafork::dashboard {

std::string url() { return {}; }
void stop() noexcept {}

} // namespace parafork::dashboard

#pragma once
// The dashboard's server process: an HTTP server over the shared region, read-only.

#include <parafork/dashboard/region.hpp>

#include <cstddef>
#include <string>

namespace parafork::detail::dash {

// Runs in the forked server process and never returns: binds HOST:PORT (0: any free port),
// writes "OK <port>\n" or "ERR <why>\n" to report_fd, then serves until it is killed.
[[noreturn]] void serve(const region& r, const std::string& host, int port, int report_fd);

// The page, made at build time from web/dashboard (uPlot inlined): one self-contained HTML.
extern const char page_html[];
extern const std::size_t page_html_size;

} // namespace parafork::detail::dash

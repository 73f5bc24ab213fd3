// watch(): a process that shows how items flow through the queues, live, on stderr.
#include "plan.hpp"

#include <parafork/sys/process.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <unistd.h>

namespace parafork::detail {

pid_t start_watcher(const graph_plan& g, const edge_stats* stats) {
    std::vector<std::size_t> shown;
    for (std::size_t e = 0; e < g.edges.size(); ++e)
        if (g.used(e)) shown.push_back(e);
    sys::child_options co;
    co.title = g.opts.name + ":watch";
    pid_t pid = sys::fork_process(co);
    if (pid == 0) {
        bool tty = ::isatty(2);
        std::vector<std::uint64_t> last(g.edges.size(), 0);
        bool drawn = false;
        auto t0 = std::chrono::steady_clock::now();
        for (;;) {
            // A display refresh, periodic by design. It is its own process and nothing waits
            // for it: stopping ends it with a signal (default action) at once, mid-sleep.
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
            auto t1 = std::chrono::steady_clock::now();
            double dt = std::chrono::duration<double>(t1 - t0).count();
            t0 = t1;
            std::string out;
            if (tty && drawn) out += "\x1b[" + std::to_string(shown.size() + 1) + "A";
            out += (tty ? "\x1b[2K" : "") + std::string("queue                         depth      items/s\n");
            for (auto e : shown) {
                const auto* s = stats + e;
                auto sent = s->sent.load(std::memory_order_relaxed);
                auto got = s->received.load(std::memory_order_relaxed);
                double rate = static_cast<double>(got - last[e]) / dt;
                last[e] = got;
                char line[256];
                std::snprintf(line, sizeof line, "%-28.28s %7llu %12.0f\n", g.edges[e].label.c_str(),
                              static_cast<unsigned long long>(sent >= got ? sent - got : 0), rate);
                if (tty) out += "\x1b[2K";
                out += line;
            }
            drawn = true;
            try {
                (void)sys::write_some(2, out.data(), out.size());
            } catch (const std::system_error&) {  // stderr is gone: nothing to draw on
            }
        }
    }
    return pid;
}

} // namespace parafork::detail

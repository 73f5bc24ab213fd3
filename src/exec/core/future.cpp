// wait_any over futures of several executors: one poll over every executor's descriptors (its
// pipes or socket, its children's pidfds) and Ctrl-C's; each executor whose descriptors woke
// the poll (or whose timer fell due) then handles its events without sleeping. No executor is
// looked at on a timer: the wait wakes on the event that answers a future.
#include <parafork/exec/core/future.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/signals.hpp>

#include <algorithm>
#include <climits>
#include <cstdint>

namespace parafork::detail {
namespace {

using clock = future_driver::clock;

int poll_timeout(std::optional<clock::time_point> t) {
    if (!t) return -1;
    auto now = clock::now();
    if (*t <= now) return 0;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(*t - now);
    return static_cast<int>(std::min<std::int64_t>(left.count(), INT_MAX));
}

struct source {
    future_driver* driver;
    std::size_t first = 0, count = 0;  // its descriptors in the poll
    std::optional<clock::time_point> due;
    bool run = true;   // to poll() before the next sleep
    bool idle = false; // nothing in flight: no answer can come
};

} // namespace

bool wait_any(std::span<const waitable> entries, std::optional<clock::time_point> deadline) {
    std::vector<source> src;
    for (const auto& e : entries) {
        if (!e.slot) continue;
        if (e.slot->done) return true;
        if (std::none_of(src.begin(), src.end(), [&](const source& s) { return s.driver == e.driver; }))
            src.push_back(source{e.driver, 0, 0, std::nullopt, true, false});
    }
    if (src.empty()) throw error("parafork: wait_any on no valid future");

    sys::sigint_guard ctrl_c;  // Ctrl-C is ours for the whole wait: it stops every executor
    auto interrupt_all = [&] {
        for (auto& s : src) s.driver->interrupt_begin();  // every stop signal first: one grace for all
        for (auto& s : src) s.driver->interrupt();
    };
    auto any_done = [&] {
        return std::any_of(entries.begin(), entries.end(),
                           [](const waitable& e) { return e.slot && e.slot->done; });
    };
    std::vector<pollfd> fds;
    for (;;) {
        for (auto& s : src) {
            if (!s.run) continue;
            s.run = false;
            try {
                s.idle = !s.driver->poll();
            } catch (const interrupted&) {
                interrupt_all();  // one executor saw Ctrl-C first: the others stop too
                throw;
            }
        }
        if (any_done()) return true;
        for (const auto& e : entries) {
            if (!e.slot) continue;
            auto s = std::find_if(src.begin(), src.end(), [&](const source& x) { return x.driver == e.driver; });
            if (s->idle) throw error("parafork: wait_any: task " + std::to_string(e.slot->task) +
                                     " has nothing in flight that could answer it");
        }
        if (deadline && clock::now() >= *deadline) return false;

        fds.clear();
        auto wake = deadline;
        for (auto& s : src) {
            s.first = fds.size();
            s.due = s.driver->watch(fds);
            s.count = fds.size() - s.first;
            if (s.due && (!wake || *s.due < *wake)) wake = s.due;
        }
        fds.push_back({sys::sigint_guard::fd(), POLLIN, 0});
        sys::poll_fds(fds.data(), fds.size(), poll_timeout(wake));
        if (sys::sigint_guard::pending()) {
            interrupt_all();
            sys::sigint_guard::check();
        }
        auto now = clock::now();
        for (auto& s : src) {
            s.run = s.due && now >= *s.due;
            for (std::size_t k = s.first; k < s.first + s.count && !s.run; ++k) s.run = fds[k].revents != 0;
        }
    }
}

} // namespace parafork::detail

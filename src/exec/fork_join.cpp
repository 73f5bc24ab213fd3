#include <parafork/exec/fork_join.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/signals.hpp>

#include <cerrno>
#include <poll.h>
#include <stdexcept>
#include <unistd.h>

namespace parafork {

std::vector<slice> nsplit(std::size_t length, std::size_t parts) {
    if (parts == 0) throw std::invalid_argument("nsplit: parts must be at least 1");
    std::vector<slice> out;
    out.reserve(parts);
    std::size_t base = length / parts, extra = length % parts, at = 0;
    for (std::size_t i = 0; i < parts; ++i) {
        std::size_t n = base + (i < extra ? 1 : 0);
        out.push_back({at, at + n});
        at += n;
    }
    return out;
}

namespace detail {

std::vector<std::string> fork_join_wait(std::vector<fork_join_child>& kids) {
    std::vector<sys::child> procs;
    procs.reserve(kids.size());
    for (auto& k : kids) procs.emplace_back(k.pid);  // owned from here: killed + reaped on any exit
    std::vector<std::string> results(kids.size());
    // A part is done when its child is gone, seen by pidfd: a grandchild that inherited the
    // result pipe may hold it open long after. Without a pidfd, look again now and then.
    std::vector<sys::unique_fd> pidfds(kids.size());
    bool all_pidfds = true;
    for (std::size_t i = 0; i < kids.size(); ++i) {
        pidfds[i] = sys::open_pidfd(kids[i].pid);
        all_pidfds = all_pidfds && bool(pidfds[i]);
        if (kids[i].result) sys::set_nonblocking(kids[i].result.get());
    }

    sys::sigint_guard guard;
    std::vector<pollfd> pfds;
    char buf[64 * 1024];
    auto drain = [&](std::size_t i) {
        for (;;) {
            long n = sys::read_some(kids[i].result.get(), buf, sizeof buf);
            if (n > 0) {
                results[i].append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0) kids[i].result.reset();
            return;
        }
    };
    for (;;) {
        std::size_t running = 0;
        for (std::size_t i = 0; i < kids.size(); ++i) {
            if (!procs[i].running()) continue;
            if (kids[i].result) drain(i);
            if (procs[i].try_wait()) {
                if (kids[i].result) drain(i);  // all it wrote before it exited
                kids[i].result.reset();
                pidfds[i].reset();
            } else {
                ++running;
            }
        }
        if (!running) break;
        pfds.clear();
        for (std::size_t i = 0; i < kids.size(); ++i) {
            if (!procs[i].running()) continue;
            if (kids[i].result) pfds.push_back({kids[i].result.get(), POLLIN, 0});
            if (pidfds[i]) pfds.push_back({pidfds[i].get(), POLLIN, 0});
        }
        pfds.push_back({sys::sigint_guard::fd(), POLLIN, 0});
        int r = ::poll(pfds.data(), pfds.size(), all_pidfds ? -1 : 50);
        if (r < 0 && errno != EINTR) sys::throw_errno("poll");
        if (sys::sigint_guard::pending()) {
            for (auto& p : procs) p.terminate();
            sys::sigint_guard::check();
        }
    }
    std::string failures;
    for (std::size_t i = 0; i < procs.size(); ++i) {
        const auto& st = *procs[i].status();
        if (!st.ok())
            failures += (failures.empty() ? "" : "; ") + std::string("part ") + std::to_string(i) +
                        " (pid " + std::to_string(procs[i].pid()) + ") " + st.describe();
    }
    if (!failures.empty()) throw error("fork_join: " + failures);
    return results;
}

} // namespace detail
} // namespace parafork

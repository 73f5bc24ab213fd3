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
    std::vector<bool> open(kids.size());
    for (std::size_t i = 0; i < kids.size(); ++i) open[i] = bool(kids[i].result);

    sys::sigint_guard guard;
    std::vector<pollfd> pfds;
    std::vector<std::size_t> who;
    char buf[64 * 1024];
    // Read every result pipe to EOF (a child writes its result, then exits).
    for (;;) {
        pfds.clear();
        who.clear();
        for (std::size_t i = 0; i < kids.size(); ++i)
            if (open[i]) {
                pfds.push_back({kids[i].result.get(), POLLIN, 0});
                who.push_back(i);
            }
        if (pfds.empty()) break;
        pfds.push_back({sys::sigint_guard::fd(), POLLIN, 0});
        int r = ::poll(pfds.data(), pfds.size(), -1);
        if (r < 0 && errno != EINTR) sys::throw_errno("poll");
        if (sys::sigint_guard::pending()) {
            for (auto& p : procs) p.terminate();
            sys::sigint_guard::check();
        }
        for (std::size_t j = 0; j + 1 < pfds.size(); ++j) {
            if (!pfds[j].revents) continue;
            std::size_t i = who[j];
            long n = sys::read_some(kids[i].result.get(), buf, sizeof buf);
            if (n > 0) results[i].append(buf, static_cast<std::size_t>(n));
            else if (n == 0) {
                open[i] = false;
                kids[i].result.reset();
            }
        }
    }
    // Reap everyone, polling pidfds so Ctrl-C still interrupts a part that runs on.
    std::string failures;
    for (std::size_t i = 0; i < procs.size(); ++i) {
        sys::unique_fd owned = sys::open_pidfd(procs[i].pid());
        if (owned) {
            int pfd = owned.get();
            pollfd p[2] = {{pfd, POLLIN, 0}, {sys::sigint_guard::fd(), POLLIN, 0}};
            while (::poll(p, 2, -1) < 0 && errno == EINTR && !sys::sigint_guard::pending()) {
            }
            if (sys::sigint_guard::pending()) {
                for (auto& pr : procs) pr.terminate();
                sys::sigint_guard::check();
            }
        }
        auto st = procs[i].wait();
        if (!st.ok())
            failures += (failures.empty() ? "" : "; ") + std::string("part ") + std::to_string(i) +
                        " (pid " + std::to_string(procs[i].pid()) + ") " + st.describe();
    }
    if (!failures.empty()) throw error("fork_join: " + failures);
    return results;
}

} // namespace detail
} // namespace parafork

#include <parafork/exec/coproc/fork_join.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/codec.hpp>

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
namespace {

// A part's report is 'r' and its result's encoding, or 'x' and (type name, what) of its
// exception. Throws if the part failed; otherwise leaves the result's encoding in `report`.
void check_part(const sys::child& proc, std::size_t part, std::string& report) {
    const auto& st = *proc.status();
    if (!report.empty() && report[0] == 'x') {
        std::pair<std::string, std::string> ex;
        try {
            ex = wire::decode<std::pair<std::string, std::string>>(std::string_view(report).substr(1));
        } catch (const protocol_error&) {
            throw worker_died(proc.pid(), st.signal, st.code, part, "fork_join part sent a corrupt report");
        }
        throw remote_error(std::move(ex.first), std::move(ex.second), proc.pid(), part);
    }
    if (!st.ok() || report.empty() || report[0] != 'r')
        throw worker_died(proc.pid(), st.signal, st.code, part,
                          st.ok() ? "fork_join part ended without a result" : "fork_join part died");
    report.erase(0, 1);
}

} // namespace

void fork_join_report_result(int fd, const std::string& encoded) noexcept {
    try {
        sys::write_all(fd, "r");
        sys::write_all(fd, encoded);
    } catch (...) {
        sys::exit_child(1);  // the parent is gone
    }
    sys::exit_child(0);
}

void fork_join_report_exception(int fd) noexcept {
    auto info = describe_current_exception();
    try {
        sys::write_all(fd, "x" + wire::encode(std::make_pair(std::move(info.type), std::move(info.what))));
    } catch (...) {
    }
    sys::exit_child(1);
}

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
                check_part(procs[i], i, results[i]);  // throws: procs' destructors stop the rest
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
    return results;
}

} // namespace detail
} // namespace parafork

#include <parafork/exec/coproc/fork_join.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/codec.hpp>

#include <poll.h>
#include <stdexcept>

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
void check_part(pid_t pid, const sys::exit_status& st, std::size_t part, std::string& report) {
    if (!report.empty() && report[0] == 'x') {
        std::pair<std::string, std::string> ex;
        try {
            ex = wire::decode<std::pair<std::string, std::string>>(std::string_view(report).substr(1));
        } catch (const protocol_error&) {
            throw worker_died(pid, st.signal, st.code, part, "fork_join part sent a corrupt report");
        }
        throw remote_error(std::move(ex.first), std::move(ex.second), pid, part);
    }
    if (!st.ok() || report.empty() || report[0] != 'r')
        throw worker_died(pid, st.signal, st.code, part,
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

std::vector<std::string> fork_join_wait(supervisor& sup, std::vector<sys::private_fd>& pipes) {
    std::vector<std::string> results(pipes.size());
    std::vector<pollfd> pfds;
    std::vector<std::size_t> polled;  // the part of each entry in pfds
    pfds.reserve(pipes.size());
    polled.reserve(pipes.size());
    for (auto& p : pipes) sys::set_nonblocking(p.get());
    char buf[64 * 1024];
    auto drain = [&](std::size_t i) {
        while (pipes[i]) {
            long n = sys::read_some(pipes[i].get(), buf, sizeof buf);
            if (n < 0) return;
            if (n == 0) pipes[i].reset();
            else results[i].append(buf, static_cast<std::size_t>(n));
        }
    };
    // A part is done when its child is gone, seen by its pidfd: a grandchild that inherited
    // the result pipe may hold it open long after. The pipes are read as they fill. Ctrl-C:
    // fork_join holds the sigint_guard from its first fork.
    while (sup.live() > 0) {
        pfds.clear();
        polled.clear();
        for (std::size_t i = 0; i < pipes.size(); ++i) {
            if (!pipes[i] || !sup.alive(i)) continue;
            pfds.push_back({pipes[i].get(), POLLIN, 0});
            polled.push_back(i);
        }
        auto w = sup.wait(pfds, std::nullopt, [&](supervisor::id i, const sys::exit_status& st) {
            drain(i);  // all it wrote before it exited
            pipes[i].reset();
            check_part(sup.pid(i), st, i, results[i]);  // throws: the supervisor stops the rest
        });
        if (w == supervisor::wake::interrupted) {
            sup.stop_all();
            sys::sigint_guard::check();
        }
        for (std::size_t e = 0; e < pfds.size(); ++e)
            if (pfds[e].revents) drain(polled[e]);
    }
    return results;
}

} // namespace detail
} // namespace parafork

// The selector polls every watched process socket and fd together. Process sockets are handled
// by the process's own code (answers to futures, messages to the inbox); a process counts as
// ready only once something the user can receive is queued, or it has ended.
#include <parafork/exec/process/selector.hpp>

#include "state.hpp"

#include <parafork/sys/signals.hpp>

#include <algorithm>

namespace parafork {

using detail::process_state;

std::size_t selector::add(process_base& p) {
    if (!p.st_) throw error("parafork: selector::add of a moved-from process");
    sources_.push_back({next_id_, p.st_, -1, POLLIN, 0});
    return next_id_++;
}

std::size_t selector::add_fd(int fd, short events) {
    if (fd < 0) throw error("parafork: selector::add_fd of a negative descriptor");
    sources_.push_back({next_id_, nullptr, fd, events, 0});
    return next_id_++;
}

void selector::remove(std::size_t id) {
    std::erase_if(sources_, [&](const source& s) { return s.id == id; });
}

short selector::revents(std::size_t id) const noexcept {
    for (auto& s : sources_)
        if (s.id == id) return s.revents;
    return 0;
}

void selector::collect_processes() {
    for (auto& s : sources_)
        if (s.proc && (!s.proc->inbox.empty() || s.proc->ph == process_state::phase::finished))
            ready_.push_back(s.id);
}

const std::vector<std::size_t>& selector::wait(std::optional<std::chrono::milliseconds> timeout) {
    using clock = std::chrono::steady_clock;
    ready_.clear();
    for (auto& s : sources_) s.revents = 0;
    collect_processes();
    if (!ready_.empty()) return ready_;
    if (!timeout) {
        // Processes never started have no socket to wake us: only fds, live processes, or a
        // timeout can end this wait.
        bool can_wake = std::any_of(sources_.begin(), sources_.end(), [](const source& s) {
            return !s.proc || s.proc->live();
        });
        if (!can_wake)
            throw error("parafork: selector::wait with nothing to wait for (no descriptor, no "
                        "started process) and no timeout");
    }

    auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
    sys::sigint_guard guard;
    for (;;) {
        pfds_.clear();
        owners_.clear();
        for (std::size_t i = 0; i < sources_.size(); ++i) {
            auto& s = sources_[i];
            if (s.proc) {
                if (s.proc->out_pending()) detail::try_flush(*s.proc);
                // Socket and pidfd, side by side (-1 for either is ignored by poll).
                pfds_.push_back({s.proc->sock.get(), detail::wanted_events(*s.proc), 0});
                pfds_.push_back({s.proc->pidfd(), POLLIN, 0});
                owners_.push_back(i);
            } else {
                pfds_.push_back({s.fd, s.events, 0});
            }
            owners_.push_back(i);
        }
        pfds_.push_back({sys::sigint_guard::fd(), POLLIN, 0});

        int ms = -1;
        if (timeout) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
            ms = static_cast<int>(std::max<std::int64_t>(0, left.count()));
        }
        // Each process's supervisor watches one backend; the selector polls their pidfds with
        // the rest in one poll, and a readable one is reaped by its process's supervisor.
        int n = sys::poll_fds(pfds_.data(), pfds_.size(), ms);
        if (sys::sigint_guard::pending()) {
            // All at once: n processes take one grace period, not n.
            std::vector<process_state*> live;
            for (auto& s : sources_)
                if (s.proc) live.push_back(s.proc.get());
            detail::terminate_all(live);
            sys::sigint_guard::check();
        }
        if (n > 0) {
            for (std::size_t k = 0; k + 1 < pfds_.size(); ++k) {
                auto& s = sources_[owners_[k]];
                if (s.proc) {
                    short sock_rev = pfds_[k].revents, pid_rev = pfds_[k + 1].revents;
                    ++k;
                    if (sock_rev || pid_rev) detail::handle_events(*s.proc, sock_rev, pid_rev);
                } else {
                    if (!pfds_[k].revents) continue;
                    s.revents = pfds_[k].revents;
                    ready_.push_back(s.id);
                }
            }
        }
        collect_processes();
        if (!ready_.empty()) {
            std::sort(ready_.begin(), ready_.end());
            return ready_;
        }
        if (timeout && clock::now() >= deadline) return ready_;
    }
}

} // namespace parafork

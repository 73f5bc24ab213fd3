#include <parafork/exec/core/supervisor.hpp>
#include <parafork/sys/signals.hpp>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace parafork::detail {
namespace {

// Milliseconds to poll for, rounded up so a wake-up never comes before the deadline.
int poll_timeout(std::optional<supervisor::clock::time_point> deadline) {
    if (!deadline) return -1;
    auto left = *deadline - supervisor::clock::now();
    if (left <= supervisor::clock::duration::zero()) return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<decltype(ms)>(ms, 1 << 30));
}

} // namespace

supervisor::~supervisor() { stop_all(); }

supervisor::supervisor(supervisor&& o) noexcept
    : policy_(o.policy_), spin_(o.spin_), kids_(std::move(o.kids_)), free_(std::move(o.free_)),
      live_(std::exchange(o.live_, 0)), scratch_(std::move(o.scratch_)),
      watched_(std::move(o.watched_)), exited_(std::move(o.exited_)) {
    o.kids_.clear();
    o.free_.clear();
}

supervisor& supervisor::operator=(supervisor&& o) noexcept {
    if (this != &o) {
        stop_all();
        policy_ = o.policy_;
        spin_ = o.spin_;
        kids_ = std::move(o.kids_);
        free_ = std::move(o.free_);
        live_ = std::exchange(o.live_, 0);
        scratch_ = std::move(o.scratch_);
        watched_ = std::move(o.watched_);
        exited_ = std::move(o.exited_);
        o.kids_.clear();
        o.free_.clear();
    }
    return *this;
}

const supervisor::kid& supervisor::at(id k) const {
    if (k >= kids_.size() || kids_[k].pid < 0)
        throw std::out_of_range("parafork: no such child in this supervisor");
    return kids_[k];
}

void supervisor::reserve_slot() {
    if (free_.empty()) kids_.reserve(kids_.size() + 1);
    exited_.reserve(live_ + 1);
    watched_.reserve(live_ + 1);
}

supervisor::id supervisor::watch(pid_t pid) {
    sys::unique_fd fd = sys::open_pidfd(pid);
    if (!fd) {
        // Without a pidfd the child could die unseen: it must not run unwatched.
        int err = errno;
        sys::send_signal(pid, SIGKILL);
        sys::wait_pid(pid);
        throw std::system_error(err, std::generic_category(), "pidfd_open");
    }
    sys::private_fd pidfd;
    try {
        pidfd = sys::private_fd(std::move(fd));
    } catch (...) {
        sys::send_signal(pid, SIGKILL);
        sys::wait_pid(pid);
        throw;
    }
    id k;
    if (!free_.empty()) {
        k = free_.back();
        free_.pop_back();
    } else {
        k = kids_.size();
        kids_.emplace_back();
    }
    kids_[k].pid = pid;
    kids_[k].pidfd = std::move(pidfd);
    kids_[k].status.reset();
    ++live_;
    return k;
}

supervisor::id supervisor::spawn(const std::vector<std::string>& argv, const sys::spawn_options& opts) {
    reserve_slot();
    return watch(sys::spawn(argv, opts));
}

supervisor::id supervisor::adopt(pid_t pid) {
    reserve_slot();
    return watch(pid);
}

void supervisor::reap(id k) noexcept {
    kid& c = kids_[k];
    if (c.status) return;
    try {
        c.status = sys::wait_pid(c.pid);
    } catch (...) {
        c.status = sys::exit_status{.lost = true};
    }
    c.pidfd.reset();
    --live_;
}

void supervisor::forget(id k) {
    if (alive(k)) throw std::logic_error("parafork: a live child cannot be forgotten");
    kids_[k] = kid{};
    free_.push_back(k);
}

supervisor::wake supervisor::poll_once(std::span<pollfd> fds, std::optional<clock::time_point> deadline) {
    exited_.clear();
    scratch_.assign(fds.begin(), fds.end());
    int sig_fd = sys::sigint_guard::fd();
    if (sig_fd >= 0) scratch_.push_back({sig_fd, POLLIN, 0});
    std::size_t first_kid = scratch_.size();
    watched_.clear();
    for (id k = 0; k < kids_.size(); ++k) {
        if (kids_[k].pid < 0 || kids_[k].status) continue;
        scratch_.push_back({kids_[k].pidfd.get(), POLLIN, 0});
        watched_.push_back(k);
    }
    for (;;) {
        if (sig_fd >= 0 && sys::sigint_guard::pending()) return wake::interrupted;
        int r;
        if (spin_.count() > 0) {
            r = sys::poll_spin(scratch_.data(), scratch_.size(), poll_timeout(deadline), spin_);
            if (r < 0 && errno != EINTR) sys::throw_errno("poll");
        } else {
            r = sys::poll_fds(scratch_.data(), scratch_.size(), poll_timeout(deadline));
        }
        if (r < 0) {  // a handler ran: the pending check above decides, or a binding's check
            sys::check_interruption();
            continue;
        }
        for (std::size_t i = 0; i < watched_.size(); ++i) {
            if (scratch_[first_kid + i].revents) {
                reap(watched_[i]);
                exited_.push_back(watched_[i]);
            }
        }
        bool ready = false;
        for (std::size_t i = 0; i < fds.size(); ++i) {
            fds[i].revents = scratch_[i].revents;
            ready = ready || fds[i].revents;
        }
        if (!exited_.empty()) return wake::exited;
        if (sig_fd >= 0 && (scratch_[fds.size()].revents || sys::sigint_guard::pending()))
            return wake::interrupted;
        if (ready) return wake::ready;
        if (r == 0) return wake::timeout;
    }
}

void supervisor::signal(id k, int sig) const noexcept {
    if (k < kids_.size() && kids_[k].pid > 0 && !kids_[k].status) sys::send_signal(kids_[k].pid, sig);
}

sys::exit_status supervisor::stop(id k) {
    const kid& c = at(k);
    if (c.status) return *c.status;
    pollfd p{c.pidfd.get(), POLLIN, 0};
    // No first signal: nothing to give a grace period to.
    auto deadline = clock::now() + (policy_.signal ? policy_.grace : clock::duration::zero());
    if (policy_.signal) sys::send_signal(c.pid, policy_.signal);
    while (sys::poll_fds(&p, 1, poll_timeout(deadline)) <= 0 && clock::now() < deadline) {
    }
    if (!p.revents) sys::send_signal(c.pid, SIGKILL);  // a zombie ignores it; the reap below is prompt
    reap(k);
    return *kids_[k].status;
}

sys::exit_status supervisor::kill(id k) {
    const kid& c = at(k);
    if (c.status) return *c.status;
    sys::send_signal(c.pid, SIGKILL);
    reap(k);
    return *kids_[k].status;
}

void supervisor::stop_all() noexcept {
    if (live_ == 0) return;
    for (const kid& c : kids_)
        if (c.pid > 0 && !c.status && policy_.signal) sys::send_signal(c.pid, policy_.signal);
    auto deadline = clock::now() + (policy_.signal ? policy_.grace : clock::duration::zero());
    // One grace period for all: wait on every pidfd at once, reaping as they go.
    try {
        while (live_ > 0) {
            scratch_.clear();
            watched_.clear();
            for (id k = 0; k < kids_.size(); ++k) {
                if (kids_[k].pid < 0 || kids_[k].status) continue;
                scratch_.push_back({kids_[k].pidfd.get(), POLLIN, 0});
                watched_.push_back(k);
            }
            int r = sys::poll_fds(scratch_.data(), scratch_.size(), poll_timeout(deadline));
            for (std::size_t i = 0; i < watched_.size(); ++i)
                if (scratch_[i].revents) reap(watched_[i]);
            if (r == 0 || clock::now() >= deadline) break;
        }
    } catch (...) {  // no memory for the poll set: the rest are killed below
    }
    for (id k = 0; k < kids_.size(); ++k) {
        if (kids_[k].pid < 0 || kids_[k].status) continue;
        sys::send_signal(kids_[k].pid, SIGKILL);
        reap(k);
    }
}

} // namespace parafork::detail

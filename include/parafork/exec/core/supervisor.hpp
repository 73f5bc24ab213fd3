#pragma once
// The supervisor: how an executor forks, watches and stops its children, in one place.
//
//  - A child is forked (or spawned, or adopted) through it and watched by its pidfd, which
//    becomes readable when the process exits, whoever still holds its pipes: a grandchild that
//    inherited a pipe end can neither hide a death nor delay its notice.
//  - wait() is the one poll of the calling thread: the executor's own descriptors, every live
//    child's pidfd and the Ctrl-C descriptor (while a sys::sigint_guard lives) in one poll(2),
//    until the first event or a deadline; no periodic wake-up.
//  - Stopping is data (stop_policy) carried out by one function for every child at once: the
//    first signal to all, one grace period shared by all, SIGKILL to the rest, everyone reaped.
//
// Not thread-safe: one supervisor belongs to one thread at a time (its executor's).

#include <chrono>
#include <csignal>
#include <cstddef>
#include <optional>
#include <poll.h>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

namespace parafork {

// How children are stopped: `signal` (0: none) to all, up to `grace` for them to exit, then
// SIGKILL. The same defaults everywhere.
struct stop_policy {
    int signal = SIGTERM;
    std::chrono::milliseconds grace{200};
};

} // namespace parafork

namespace parafork::detail {

class supervisor {
public:
    using clock = std::chrono::steady_clock;
    using id = std::size_t;  // stable for the child's life in this supervisor

    explicit supervisor(stop_policy policy = {}) noexcept : policy_(policy) {}
    // Stops every live child by the policy and reaps it: bounded by the grace period, never
    // printing, never throwing.
    ~supervisor();
    supervisor(supervisor&& other) noexcept;
    supervisor& operator=(supervisor&& other) noexcept;
    supervisor(const supervisor&) = delete;
    supervisor& operator=(const supervisor&) = delete;

    // Forks a child that runs body() and exits 0, or 1 after printing what body threw.
    template <class F>
    id fork(F&& body, const sys::child_options& opts = {}) {
        reserve_slot();  // before the fork: nothing that can fail after it but pidfd_open
        return watch(sys::fork_call(std::forward<F>(body), opts));
    }
    // fork + exec through an error pipe (a command that cannot run throws std::system_error).
    id spawn(const std::vector<std::string>& argv, const sys::spawn_options& opts = {});
    // Takes over a child of this process made elsewhere (the caller no longer reaps it).
    id adopt(pid_t pid);

    std::size_t size() const noexcept { return kids_.size(); }
    std::size_t live() const noexcept { return live_; }
    pid_t pid(id k) const { return at(k).pid; }
    bool alive(id k) const { return !at(k).status; }
    // The exit status once the child was seen to exit (and was reaped).
    const std::optional<sys::exit_status>& status(id k) const { return at(k).status; }
    const stop_policy& policy() const noexcept { return policy_; }
    // The child's pidfd while it lives (-1 once reaped), for an executor that polls without
    // sleeping (a spin) before it sleeps in wait(): it must see a death there too.
    int pidfd(id k) const { return at(k).pidfd.get(); }
    // How long a wait polls before it sleeps (0, the default: it sleeps at once). An executor
    // that expects an answer within microseconds spares itself the wake-up of an idle CPU.
    void set_spin(std::chrono::microseconds spin) noexcept { spin_ = spin; }

    enum class wake {
        ready,        // one of the caller's descriptors has revents set
        exited,       // at least one child exited; on_exit was called for each
        interrupted,  // SIGINT arrived while a sys::sigint_guard lives (not cleared here)
        timeout,      // the deadline passed
    };
    // Sleeps in one poll(2) until a caller's descriptor is ready, a child exits (it is reaped,
    // its status recorded and on_exit(id, status) called), Ctrl-C, or the deadline (nullopt:
    // none). The caller's revents are filled in. Exits are reported before readiness, so an
    // executor learns of a death before it reads the EOF that may come with it.
    template <class OnExit>
    wake wait(std::span<pollfd> fds, std::optional<clock::time_point> deadline, OnExit&& on_exit) {
        wake w = poll_once(fds, deadline);
        for (id k : exited_) on_exit(k, *kids_[k].status);
        return w;
    }
    wake wait(std::span<pollfd> fds, std::optional<clock::time_point> deadline) {
        return wait(fds, deadline, [](id, const sys::exit_status&) {});
    }

    // Sends sig to a live child (nothing to one already reaped: its pid may be reused).
    void signal(id k, int sig) const noexcept;
    // Stops one child by the policy and reaps it; returns its status.
    sys::exit_status stop(id k);
    // SIGKILL to one child now (no grace: it is past saving, say past its deadline) and reaps it.
    sys::exit_status kill(id k);
    // Stops every live child at once by the policy and reaps them all: at most one grace
    // period in all, however many children.
    void stop_all() noexcept;
    // Gives the slot of a reaped child back (its id may then name a new child): a long-lived
    // executor that replaces children keeps a bounded table.
    void forget(id k);

private:
    struct kid {
        pid_t pid = -1;
        sys::private_fd pidfd;  // private: a later child must not hold an earlier one's pidfd
        std::optional<sys::exit_status> status;
    };
    const kid& at(id k) const;
    void reserve_slot();
    id watch(pid_t pid);
    void reap(id k) noexcept;
    wake poll_once(std::span<pollfd> fds, std::optional<clock::time_point> deadline);

    stop_policy policy_;
    std::chrono::microseconds spin_{0};
    std::vector<kid> kids_;
    std::vector<id> free_;  // forgotten slots, reused first
    std::size_t live_ = 0;
    std::vector<pollfd> scratch_;  // reused by every wait: no allocation once grown
    std::vector<id> watched_;      // which child each pidfd entry in scratch_ belongs to
    std::vector<id> exited_;       // children reaped by the last wait
};

} // namespace parafork::detail

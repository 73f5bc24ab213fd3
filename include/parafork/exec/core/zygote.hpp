#pragma once
// zygote: a fork server. Forking a process that runs threads is unsafe - a lock another thread
// held at the fork (malloc's, stdio's, any mutex) stays locked forever in the child. A zygote is
// a small process forked while the program is still single-threaded; later, from any thread,
// the program asks it to fork workers. The workers are copies of the single-threaded zygote,
// so no lock is held in them.
//
// What a worker runs is named by function pointer (the zygote is the same binary, so code
// addresses are valid there) plus codec-encoded arguments; data the parent made after the
// zygote started is not in the zygote - pass it as arguments or through descriptors.
//
// Workers are the zygote's children: it reaps them and reports their exit status; they die
// with the zygote (PR_SET_PDEATHSIG), and the zygote dies with the program.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <tuple>
#include <utility>
#include <vector>

#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork {

class zygote {
public:
    // Starts the server now. Call it before the program starts threads.
    explicit zygote(std::string name = "parafork-zygote");
    ~zygote();  // stops the server; workers still running are killed with it
    zygote(const zygote&) = delete;
    zygote& operator=(const zygote&) = delete;

    pid_t pid() const noexcept { return server_.pid(); }

    // Forks a worker from the zygote that runs fn(fds, args...) and exits (0 when fn returns, 1
    // if it throws). `fds` are duplicated into the worker (at most 8) and handed to fn in
    // order. Safe to call from any thread. Returns the worker's pid.
    template <class... Args>
    pid_t spawn(void (*fn)(std::span<const int> fds, Args...), std::span<const int> fds,
                const std::decay_t<Args>&... args) {
        std::string payload;
        wire::writer w(payload);
        auto tramp = &trampoline<Args...>;
        auto fnp = reinterpret_cast<std::uintptr_t>(fn);
        w(reinterpret_cast<std::uintptr_t>(tramp), fnp);
        (w.write(args), ...);
        return spawn_raw(payload, fds);
    }

    // The worker's exit status, waiting for it; each worker is waited for once. The statuses of
    // the last max_unclaimed workers that exited are kept for wait; waiting for an older one,
    // for one already waited for, or for a pid this zygote never spawned throws
    // parafork::error at once.
    static constexpr std::size_t max_unclaimed = 1024;
    sys::exit_status wait(pid_t worker);
    std::optional<sys::exit_status> wait_for(pid_t worker, std::chrono::milliseconds timeout);
    // Signals a worker (it is an ordinary process of this user).
    void signal(pid_t worker, int sig) const;

private:
    using tramp_t = void (*)(std::uintptr_t fn, std::string_view args, std::span<const int> fds);
    template <class... Args>
    static void trampoline(std::uintptr_t fn, std::string_view args, std::span<const int> fds) {
        wire::reader r(args);
        std::tuple<std::decay_t<Args>...> values;
        std::apply([&](auto&... v) { (r.read(v), ...); }, values);
        auto f = reinterpret_cast<void (*)(std::span<const int>, Args...)>(fn);
        std::apply([&](auto&... v) { f(fds, v...); }, values);
    }

    pid_t spawn_raw(const std::string& payload, std::span<const int> fds);
    using clock = std::chrono::steady_clock;
    // One round of waiting for news; the lock is held on entry and on return. The first thread
    // to wait reads the socket (polling it without the lock, so the tables stay readable) and
    // wakes the others after each event; they sleep on events_ meanwhile. Nobody wakes on a
    // timer. False when the deadline came first.
    bool await_event(std::unique_lock<std::mutex>& lock, std::optional<clock::time_point> deadline);
    void read_event();  // one message (readable now), with the lock held
    [[noreturn]] static void serve(int sock);
    [[noreturn]] void server_gone();

    sys::child server_;
    sys::private_fd sock_;
    std::mutex spawn_mutex_;  // one spawn request outstanding at a time (taken before mutex_)
    std::mutex mutex_;        // the tables below, sock_ and reading_
    std::condition_variable events_;
    bool reading_ = false;    // a thread is polling the socket
    // Statuses not yet waited for, each with the order it came in: at most max_unclaimed are
    // kept (the oldest go first), so a program that never waits does not grow without bound.
    std::map<pid_t, std::pair<sys::exit_status, std::uint64_t>> exited_;
    std::uint64_t exits_seen_ = 0;
    std::set<pid_t> running_;     // spawned and not yet seen to exit
    std::vector<pid_t> spawned_;  // replies to spawn requests, in order
};

} // namespace parafork

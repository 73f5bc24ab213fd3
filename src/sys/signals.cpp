#include <parafork/sys/signals.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/error.hpp>

#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <mutex>
#include <pthread.h>
#include <unistd.h>

namespace parafork::sys {
namespace {

std::mutex g_mutex;
int g_depth = 0;
struct sigaction g_old_action;
std::atomic<int> g_pending{0};
// Made with the first guard, closed with the last; callers poll the read end. Both ends are
// private: a forked child closes them at once, so no child can write a Ctrl-C into a parent.
int g_read = -1;
std::atomic<int> g_write{-1};
// Handlers between reading g_write and finishing their write: the last guard waits for none to
// be left before it closes the pipe, so no handler (on any thread) writes to a closed, maybe
// reused, descriptor number.
std::atomic<int> g_in_handler{0};

void on_sigint(int) {
    int saved = errno;
    g_in_handler.fetch_add(1);
    g_pending.store(1);
    int fd = g_write.load();
    char c = 1;
    if (fd >= 0) [[maybe_unused]] auto n = ::write(fd, &c, 1);
    g_in_handler.fetch_sub(1);
    errno = saved;
}

void drain_pipe() noexcept {
    char buf[64];
    while (g_read >= 0 && ::read(g_read, buf, sizeof buf) > 0) {
    }
}

// The pipe lives only while some guard does, so no descriptor outlives a call.
void close_pipe() noexcept {
    int w = g_write.exchange(-1);
    while (g_in_handler.load() != 0) {  // a handler mid-write: it is a few instructions from done
    }
    for (int fd : {g_read, w}) {
        if (fd < 0) continue;
        unregister_private_fd(fd);
        ::close(fd);
    }
    g_read = -1;
}

} // namespace

namespace {
std::atomic<interruption_check> g_interruption_check{nullptr};
} // namespace

void set_interruption_check(interruption_check check) noexcept { g_interruption_check.store(check); }

void check_interruption() {
    if (auto check = g_interruption_check.load(std::memory_order_relaxed)) check();
}

sigint_guard::sigint_guard() {
    std::lock_guard lock(g_mutex);
    if (g_depth++ == 0) {
        int ends[2];
        if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) {
            --g_depth;
            throw_errno("pipe2");
        }
        g_read = ends[0];
        g_write.store(ends[1]);
        try {
            register_private_fd(ends[0]);
            register_private_fd(ends[1]);
        } catch (...) {
            --g_depth;
            close_pipe();
            throw;
        }
        struct sigaction sa {};
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        if (::sigaction(SIGINT, &sa, &g_old_action) != 0) {
            --g_depth;
            close_pipe();
            throw_errno("sigaction");
        }
    }
}

sigint_guard::~sigint_guard() {
    std::lock_guard lock(g_mutex);
    if (--g_depth == 0) {
        ::sigaction(SIGINT, &g_old_action, nullptr);
        // A SIGINT nobody turned into `interrupted` goes to whoever handled it before us.
        bool unhandled = g_pending.exchange(0) != 0;
        close_pipe();
        if (unhandled && g_old_action.sa_handler != SIG_IGN) ::raise(SIGINT);
    }
}

int sigint_guard::fd() noexcept { return g_read; }

bool sigint_guard::pending() noexcept { return g_pending.load(std::memory_order_relaxed) != 0; }

void sigint_guard::clear() noexcept {
    g_pending.store(0);
    drain_pipe();
}

void sigint_guard::check() {
    if (pending()) {
        clear();
        throw interrupted();
    }
}

sigpipe_guard::sigpipe_guard(bool reports_epipe) : reports_epipe_(reports_epipe) {
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    was_blocked_ = sigismember(&old, SIGPIPE);
}

sigpipe_guard::~sigpipe_guard() {
    if (was_blocked_) return;  // the caller blocks SIGPIPE itself: leave its pending set alone
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    if (!epipe_ && !reports_epipe_) sigpending(&pending);  // a caller that would not say: look
    if (epipe_ || sigismember(&pending, SIGPIPE)) {
        // Swallow the SIGPIPE our own write raised while blocked. (One pending from before the
        // guard is impossible: unblocked, it would have been delivered already.)
        timespec zero{0, 0};
        while (::sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
        }
    }
    ::pthread_sigmask(SIG_UNBLOCK, &pipe_set, nullptr);
}

block_all_signals::block_all_signals() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old_);
}

block_all_signals::~block_all_signals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

} // namespace parafork::sys

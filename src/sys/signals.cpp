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
int g_pipe[2] = {-1, -1};  // lives for the process once made; read end is what callers poll

void on_sigint(int) {
    int saved = errno;
    g_pending.store(1, std::memory_order_relaxed);
    char c = 1;
    [[maybe_unused]] auto n = ::write(g_pipe[1], &c, 1);
    errno = saved;
}

// Made when the library loads rather than at the first guard: the pipe lives for the process,
// and a descriptor that appears in the middle of a run looks like a leak to fd accounting.
[[maybe_unused]] const bool g_pipe_made = ::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) == 0;

void drain_pipe() noexcept {
    char buf[64];
    while (g_pipe[0] >= 0 && ::read(g_pipe[0], buf, sizeof buf) > 0) {
    }
}

// The pipe lives only while some guard does, so no descriptor outlives a call.
void close_pipe() noexcept {
    for (int& fd : g_pipe) {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
}

} // namespace

sigint_guard::sigint_guard() {
    std::lock_guard lock(g_mutex);
    if (g_depth++ == 0) {
        if (::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
            --g_depth;
            throw_errno("pipe2");
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

int sigint_guard::fd() noexcept { return g_pipe[0]; }

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

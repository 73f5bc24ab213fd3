#include <parafork/sys/process.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/signals.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <string>
#include <system_error>
#include <thread>
#include <typeinfo>
#include <unistd.h>
#include <fcntl.h>

#include <cxxabi.h>

namespace parafork::sys {

std::string exit_status::describe() const {
    if (lost) return "status lost (reaped elsewhere: is SIGCHLD ignored?)";
    if (signal > 0) {
        const char* abbrev = sigabbrev_np(signal);
        return "signal " + std::to_string(signal) + " (SIG" + (abbrev ? abbrev : "?") + ")";
    }
    return "exit code " + std::to_string(code);
}

exit_status decode_wait_status(int ws) noexcept {
    if (WIFSIGNALED(ws)) return {0, WTERMSIG(ws)};
    if (WIFEXITED(ws)) return {WEXITSTATUS(ws), 0};
    return {ws, 0};
}

namespace {
// With SIGCHLD ignored the kernel reaps our children itself and waitpid says ECHILD once the
// child has exited: it is gone, only its status is lost.
constexpr exit_status lost_status{0, 0, true};
} // namespace

exit_status wait_pid(pid_t pid) {
    int ws = 0;
    for (;;) {
        pid_t r = ::waitpid(pid, &ws, 0);
        if (r == pid) return decode_wait_status(ws);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == ECHILD) return lost_status;
        throw_errno("waitpid");
    }
}

std::optional<exit_status> try_wait_pid(pid_t pid) {
    int ws = 0;
    for (;;) {
        pid_t r = ::waitpid(pid, &ws, WNOHANG);
        if (r == pid) return decode_wait_status(ws);
        if (r == 0) return std::nullopt;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == ECHILD) return lost_status;
        throw_errno("waitpid");
    }
}

std::optional<exit_status> wait_pid_for(pid_t pid, std::chrono::milliseconds timeout) {
    // The pidfd turns readable when the child exits: one sleep, woken by the exit itself.
    auto deadline = std::chrono::steady_clock::now() + timeout;
    unique_fd pfd = open_pidfd(pid);
    for (;;) {
        if (auto st = try_wait_pid(pid)) return st;
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline) return std::nullopt;
        if (!pfd) throw_errno("pidfd_open");  // the child exists (not reaped): out of descriptors
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
        pollfd p{pfd.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, INT_MAX))) < 0 && errno != EINTR)
            throw_errno("poll");
    }
}

bool process_exited(pid_t pid) noexcept {
    unique_fd pfd = open_pidfd(pid);
    if (!pfd) return errno == ESRCH;
    pollfd p{pfd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

exit_status terminate_and_reap(pid_t pid, std::chrono::milliseconds grace) {
    // waitpid(0 or -1) would reap any child, kill(-1) signal every process.
    if (pid <= 0) throw error("parafork: terminate_and_reap: " + std::to_string(pid) + " names no process");
    if (auto st = try_wait_pid(pid)) return *st;
    ::kill(pid, SIGTERM);
    if (auto st = wait_pid_for(pid, grace)) return *st;
    ::kill(pid, SIGKILL);
    return wait_pid(pid);
}

namespace {

void flush_stdio() noexcept {
    try {
        std::cout.flush();
        std::cerr.flush();
        std::clog.flush();
    } catch (...) {
    }
    std::fflush(nullptr);
}

// Runs in the child right after fork, signals still blocked.
void setup_child(pid_t parent, const child_options& opts, const sigset_t& old_mask) noexcept {
    if (opts.death_signal) {
        ::prctl(PR_SET_PDEATHSIG, opts.death_signal);
        // The parent may have died between fork and prctl: then nobody will signal us.
        if (::getppid() != parent) ::_exit(1);
    }
    // Handlers the parent installed (ours for SIGINT included) make no sense here.
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa {};
        if (::sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler != SIG_IGN && sa.sa_handler != SIG_DFL) {
            sa.sa_handler = SIG_DFL;
            sa.sa_flags = 0;
            ::sigaction(sig, &sa, nullptr);
        }
    }
    if (opts.ignore_sigint) ::signal(SIGINT, SIG_IGN);
    if (!opts.title.empty()) set_process_title(opts.title);
    sigset_t mask = old_mask;
    sigdelset(&mask, SIGPIPE);  // a parent's SIGPIPE block must not make children immortal writers
    ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
}

} // namespace

bool send_signal(pid_t pid, int sig) noexcept {
    // kill(0) and kill(-n) signal whole process groups, kill(-1) every process we may: a pid that
    // is not a process's (a slot not yet started, or reset) must never reach it.
    if (pid <= 0) {
        errno = ESRCH;
        return false;
    }
    return ::kill(pid, sig) == 0;
}

unique_fd open_pidfd(pid_t pid) noexcept {
    // glibc 2.36 declares pidfd_open without C linkage in <sys/pidfd.h>: ask the kernel.
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    return unique_fd(fd >= 0 ? static_cast<int>(fd) : -1);
}

bool read_process_memory(pid_t pid, std::uint64_t remote, void* dst, std::size_t bytes) noexcept {
    auto* to = static_cast<char*>(dst);
    while (bytes) {
        // The kernel may stop early (a signal, a page it could not pin): go on from there. A
        // range that is not mapped in the child ends in an error or a 0.
        iovec local{to, bytes};
        iovec far{reinterpret_cast<void*>(static_cast<std::uintptr_t>(remote)), bytes};
        ssize_t n = ::process_vm_readv(pid, &local, 1, &far, 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EFAULT;
            return false;
        }
        to += n;
        remote += static_cast<std::uint64_t>(n);
        bytes -= static_cast<std::size_t>(n);
    }
    return true;
}

unsigned thread_count() {
    char buf[1024];
    int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    long n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return 1;
    buf[n] = '\0';
    // Field 20 is num_threads; fields after the ")" that closes comm are space separated.
    const char* p = std::strrchr(buf, ')');
    if (!p) return 1;
    int field = 2;
    for (++p; *p && field < 20; ++p)
        if (*p == ' ') ++field;
    return static_cast<unsigned>(std::max(1L, std::strtol(p, nullptr, 10)));
}

pid_t fork_process(const child_options& opts) {
    if (opts.warn_if_threaded) {
        static std::atomic<bool> warned{false};
        unsigned threads = thread_count();
        if (threads > 1 && !warned.exchange(true))
            std::fprintf(stderr,
                         "parafork: warning: forking a process that runs %u threads; a lock held by "
                         "another thread stays locked in the child. Fork before starting threads, "
                         "or fork through a parafork::zygote.\n",
                         threads);
    }
    flush_stdio();
    pid_t parent = ::getpid();
    block_all_signals block;
    lock_private_fds();
    pid_t pid = ::fork();
    if (pid == 0) {
        close_private_fds_in_child();
        unlock_private_fds();
        setup_child(parent, opts, block.previous());
        return 0;
    }
    int err = errno;
    unlock_private_fds();
    if (pid < 0) throw_errno("fork", err);
    return pid;
}

void exit_child(int code) noexcept {
    flush_stdio();
    ::_exit(code);
}

int report_child_exception() noexcept {
    try {
        throw;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parafork: child %d: %s\n", ::getpid(), e.what());
    } catch (...) {
        std::fprintf(stderr, "parafork: child %d: unknown exception\n", ::getpid());
    }
    return 1;
}

child& child::operator=(child&& o) noexcept {
    if (this != &o) {
        kill_and_reap();
        pid_ = std::exchange(o.pid_, -1);
        status_ = o.status_;
    }
    return *this;
}

exit_status child::wait() {
    if (!status_) {
        if (pid_ <= 0) throw error("parafork: child::wait: it holds no process");
        status_ = wait_pid(pid_);
    }
    return *status_;
}

std::optional<exit_status> child::try_wait() {
    if (!status_ && pid_ > 0) status_ = try_wait_pid(pid_);
    return status_;
}

std::optional<exit_status> child::wait_for(std::chrono::milliseconds timeout) {
    if (!status_ && pid_ > 0) status_ = wait_pid_for(pid_, timeout);
    return status_;
}

void child::signal(int sig) const noexcept {
    if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

exit_status child::terminate(std::chrono::milliseconds grace) {
    if (!status_) {
        if (pid_ <= 0) throw error("parafork: child::terminate: it holds no process");
        status_ = terminate_and_reap(pid_, grace);
    }
    return *status_;
}

void child::kill_and_reap() noexcept {
    if (pid_ > 0 && !status_) {
        ::kill(pid_, SIGKILL);
        int ws = 0;
        pid_t r;
        while ((r = ::waitpid(pid_, &ws, 0)) < 0 && errno == EINTR) {
        }
        status_ = r == pid_ ? decode_wait_status(ws) : lost_status;  // ECHILD: reaped elsewhere
    }
}

namespace {
char* g_argv_begin = nullptr;
std::size_t g_argv_len = 0;
} // namespace

void init_process_title(int argc, char** argv) {
    if (argc <= 0 || !argv || !argv[0]) return;
    // The argv strings are contiguous; we may reuse their whole extent (not environ).
    char* end = argv[0] + std::strlen(argv[0]);
    for (int i = 1; i < argc; ++i)
        if (argv[i] == end + 1) end = argv[i] + std::strlen(argv[i]);
    g_argv_begin = argv[0];
    g_argv_len = static_cast<std::size_t>(end - argv[0]);
}

void set_process_title(std::string_view title) {
    char comm[16]{};  // the kernel keeps 15 characters
    std::memcpy(comm, title.data(), std::min<std::size_t>(title.size(), 15));
    ::prctl(PR_SET_NAME, comm, 0, 0, 0);
    if (g_argv_begin && g_argv_len) {
        std::size_t n = std::min(title.size(), g_argv_len);
        std::memcpy(g_argv_begin, title.data(), n);
        std::memset(g_argv_begin + n, 0, g_argv_len - n + 1);
    }
}

} // namespace parafork::sys

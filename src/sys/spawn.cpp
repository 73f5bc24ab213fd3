#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

extern char** environ;

namespace parafork::sys {
namespace {

bool executable_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Everything the child needs, prepared by the parent: the child may not allocate.
struct exec_plan {
    pid_t parent;
    const char* path;
    char* const* argv;
    int fds[3];
    const sigset_t* mask;
    int death_signal;
    bool ignore_sigint;
    bool new_group;
    volatile int* error;  // the child's errno, read by the parent (vfork shares our memory)
};

[[noreturn]] void fail(const exec_plan& p) noexcept {
    *p.error = errno;
    ::_exit(127);
}

// Runs in the vfork child, on the parent's memory with the parent suspended: system calls only,
// nothing returns. Every signal is blocked on entry.
[[noreturn]] __attribute__((noinline)) void exec_child(const exec_plan& p) noexcept {
    if (p.death_signal) {
        ::prctl(PR_SET_PDEATHSIG, p.death_signal);
        if (::getppid() != p.parent) ::_exit(127);  // died before prctl: nobody would signal us
    }
    if (p.new_group) ::setpgid(0, 0);
    // The parent's handlers would run on the parent's memory: the program gets the defaults
    // (exec resets caught signals anyway), and SIGINT ignored unless asked otherwise.
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa {};
        if (::sigaction(sig, nullptr, &sa) != 0) continue;
        bool caught = sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN;
        bool want_ign = sig == SIGINT && p.ignore_sigint;
        if (caught || (sig == SIGINT && (sa.sa_handler == SIG_IGN) != want_ign)) {
            sa.sa_handler = want_ign ? SIG_IGN : SIG_DFL;
            sa.sa_flags = 0;
            ::sigaction(sig, &sa, nullptr);
        }
    }
    int want[3] = {p.fds[0], p.fds[1], p.fds[2]};
    // Move the requested fds above 2 first, so dup2 onto 0..2 cannot clobber one of them.
    for (int& fd : want)
        if (fd >= 0 && fd <= 2 && (fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) fail(p);
    for (int i = 0; i < 3; ++i)
        if (want[i] >= 0 && ::dup2(want[i], i) < 0) fail(p);  // dup2 clears FD_CLOEXEC
    ::pthread_sigmask(SIG_SETMASK, p.mask, nullptr);
    ::execve(p.path, p.argv, environ);
    fail(p);
}

} // namespace

std::string find_executable(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* env = std::getenv("PATH");
    std::string path = env ? env : "/bin:/usr/bin";  // execvp's default
    for (std::size_t at = 0; at <= path.size();) {
        std::size_t end = path.find(':', at);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(at, end - at);
        std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
        if (executable_file(candidate)) return candidate;
        at = end + 1;
    }
    return {};
}

pid_t spawn(const std::vector<std::string>& argv, const spawn_options& opts) {
    if (argv.empty() || argv[0].empty()) throw std::invalid_argument("spawn: empty command");
    std::string path = opts.path.empty() ? find_executable(argv[0]) : opts.path;
    if (path.empty()) throw std::system_error(ENOENT, std::generic_category(), "exec " + argv[0]);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    volatile int error = 0;
    pid_t pid;
    {
        block_all_signals block;
        sigset_t mask = block.previous();
        sigdelset(&mask, SIGPIPE);  // a parent's SIGPIPE block must not make programs immortal writers
        if (!opts.child.ignore_sigint) sigdelset(&mask, SIGINT);
        exec_plan plan{::getpid(),
                       path.c_str(),
                       args.data(),
                       {opts.stdin_fd, opts.stdout_fd, opts.stderr_fd},
                       &mask,
                       opts.child.death_signal,
                       opts.child.ignore_sigint,
                       opts.new_process_group,
                       &error};
        // vfork: we stay suspended until the child execs or exits, and its page tables are ours.
        pid = ::vfork();
        if (pid == 0) exec_child(plan);
    }
    if (pid < 0) throw_errno("vfork");
    if (error == 0) return pid;
    int e = error;
    wait_pid(pid);
    if (e == ENOEXEC) {
        // execvp's rule: a file without a #! line is a shell script.
        std::vector<std::string> sh{"/bin/sh", path};
        sh.insert(sh.end(), argv.begin() + 1, argv.end());
        spawn_options again = opts;
        again.path = "/bin/sh";
        return spawn(sh, again);
    }
    throw std::system_error(e, std::generic_category(), "exec " + argv[0]);
}

} // namespace parafork::sys

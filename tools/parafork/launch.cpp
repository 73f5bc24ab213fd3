#include "launch.hpp"

#include <parafork/sys/signals.hpp>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>

extern char** environ;

namespace parafork::cli {
namespace {

bool executable_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Runs in the vfork child, on the parent's memory with the parent suspended: system calls
// only, no allocation, nothing returns. Every signal is blocked on entry.
[[noreturn]] __attribute__((noinline)) void exec_child(pid_t parent, const char* path, char* const* argv,
                                                        launch_fds fds, const sigset_t* mask,
                                                        volatile int* error) noexcept {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // died before prctl: nobody would kill us
    ::setpgid(0, 0);
    // Our handlers (SIGINT's among them) would run on the parent's memory; the job gets the
    // defaults, SIGINT included, and exec resets any handler left anyway.
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa {};
        if (::sigaction(sig, nullptr, &sa) != 0) continue;
        bool caught = sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN;
        if (caught || (sig == SIGINT && sa.sa_handler == SIG_IGN)) {
            sa.sa_handler = SIG_DFL;
            sa.sa_flags = 0;
            ::sigaction(sig, &sa, nullptr);
        }
    }
    int want[3] = {fds.in, fds.out, fds.err};
    // Move the requested fds above 2 first, so dup2 onto 0..2 cannot clobber one of them.
    for (int i = 0; i < 3; ++i)
        if (want[i] >= 0 && want[i] <= 2) {
            want[i] = ::fcntl(want[i], F_DUPFD_CLOEXEC, 3);
            if (want[i] < 0) {  // out of descriptors: the job must not run on ours by mistake
                *error = errno;
                ::_exit(127);
            }
        }
    for (int i = 0; i < 3; ++i)
        if (want[i] >= 0 && ::dup2(want[i], i) < 0) {
            *error = errno;
            ::_exit(127);
        }
    ::pthread_sigmask(SIG_SETMASK, mask, nullptr);
    ::execve(path, argv, environ);
    *error = errno;
    ::_exit(127);
}

} // namespace

// execvp's search, done once per command name instead of once per job (a job per block
// otherwise pays a failed execve for every PATH entry before the right one).
const std::string& launcher::resolve(const std::string& name) {
    auto it = paths_.find(name);
    if (it != paths_.end()) return it->second;
    std::string found = name;
    if (name.find('/') == std::string::npos) {
        const char* env = std::getenv("PATH");
        std::string path = env ? env : "/bin:/usr/bin";  // execvp's default
        for (std::size_t at = 0; at <= path.size();) {
            std::size_t end = path.find(':', at);
            if (end == std::string::npos) end = path.size();
            std::string dir = path.substr(at, end - at);
            std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
            if (executable_file(candidate)) {
                found = candidate;
                break;
            }
            at = end + 1;
        }
    }
    return paths_.emplace(name, std::move(found)).first->second;
}

pid_t launcher::start(const std::vector<std::string>& argv, const launch_fds& fds) {
    if (argv.empty() || argv[0].empty()) throw std::system_error(ENOENT, std::generic_category(), "exec ''");
    const std::string& path = resolve(argv[0]);
    if (path.find('/') == std::string::npos) throw std::system_error(ENOENT, std::generic_category(), "exec " + argv[0]);
    // Built before vfork: the child may not allocate.
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    volatile int error = 0;
    pid_t parent = ::getpid();
    pid_t pid;
    {
        // vfork: no copy of our page tables per job; we stay suspended until the child execs.
        sys::block_all_signals block;
        sigset_t mask = block.previous();
        sigdelset(&mask, SIGPIPE);  // our SIGPIPE block must not make jobs immortal writers
        sigdelset(&mask, SIGINT);
        pid = ::vfork();
        if (pid == 0) exec_child(parent, path.c_str(), args.data(), fds, &mask, &error);
    }
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "vfork");
    if (error == 0) return pid;
    int e = error;
    int ws;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (e == ENOEXEC) {
        // execvp's rule: a file without a #! line is a shell script.
        std::vector<std::string> sh{"/bin/sh", path};
        sh.insert(sh.end(), argv.begin() + 1, argv.end());
        return start(sh, fds);
    }
    throw std::system_error(e, std::generic_category(), "exec " + argv[0]);
}

void signal_job(pid_t pid, int sig) noexcept {
    // The group outlives a reaped leader while any member lives, and its id is not reused
    // meanwhile; the pid alone could be.
    if (pid > 0) ::kill(-pid, sig);
}

} // namespace parafork::cli

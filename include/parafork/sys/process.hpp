#pragma once
// Forking, exec'ing and reaping children. Every child we make dies with its parent
// (PR_SET_PDEATHSIG plus a getppid() re-check closing the race), ignores SIGINT (Ctrl-C is the
// parent's to handle), and is reaped by whoever owns it.
//
// Forking a process that runs other threads is unsafe (a lock held by another thread at the
// fork stays locked forever in the child); start workers before threads, or fork through a
// zygote made before them.

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

#include <parafork/sys/fd.hpp>

namespace parafork::sys {

// A decoded wait status: either an exit code or the signal that killed the process.
struct exit_status {
    int code = 0;    // valid when signal == 0
    int signal = 0;  // > 0 when killed by a signal
    // The process is gone but its status could not be had: someone else reaped it (SIGCHLD set
    // to SIG_IGN, or SA_NOCLDWAIT, makes the kernel do so). Then code and signal mean nothing.
    bool lost = false;
    bool ok() const noexcept { return !lost && signal == 0 && code == 0; }
    // "exit code 3", "signal 9 (SIGKILL)" or "status lost (...)"
    std::string describe() const;
    // snakefish's convention: the exit code, or the negative signal number.
    int as_int() const noexcept { return signal ? -signal : code; }
};
exit_status decode_wait_status(int wstatus) noexcept;

// Blocking waitpid, retried on EINTR. A child reaped by someone else (ECHILD) gives a status
// with `lost` set rather than an exception: the process is gone either way.
exit_status wait_pid(pid_t pid);
// Non-blocking; nullopt while the process runs (ECHILD as above).
std::optional<exit_status> try_wait_pid(pid_t pid);
// Waits up to `timeout`; nullopt if it is still running then.
std::optional<exit_status> wait_pid_for(pid_t pid, std::chrono::milliseconds timeout);
// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps.
exit_status terminate_and_reap(pid_t pid, std::chrono::milliseconds grace = std::chrono::milliseconds(200));

struct child_options {
    int death_signal = SIGKILL;  // sent to the child when the parent dies
    bool ignore_sigint = true;   // Ctrl-C belongs to the parent
    std::string title;           // process title (comm), empty = inherit
    // Forking a process that runs threads is unsafe (see the top of this file); fork_process
    // says so on stderr, once per process, unless the child only execs (spawn) or this is off.
    bool warn_if_threaded = true;
};

// pidfd_open(2): a close-on-exec descriptor that becomes readable when process `pid` exits,
// whoever holds its pipes; empty (errno set) where the kernel has none (before Linux 5.3).
unique_fd open_pidfd(pid_t pid) noexcept;
// kill(2) that never throws: false when there is no such process (or no permission).
bool send_signal(pid_t pid, int sig) noexcept;
// True once process `pid` has exited (a zombie has), or no such process exists. Unlike kill(pid, 0),
// which still finds a zombie.
bool process_exited(pid_t pid) noexcept;

// Copies `bytes` bytes at address `remote` of process `pid` (a child of ours) into `dst` with
// process_vm_readv(2): one copy, no shared memory in between. False (errno set) where that is
// not possible: a kernel or sandbox without the call, a child that made itself undumpable or
// changed its credentials, a range not mapped there, a child already gone.
bool read_process_memory(pid_t pid, std::uint64_t remote, void* dst, std::size_t bytes) noexcept;

// Threads of this process (from /proc/self/stat).
unsigned thread_count();

// fork(2) with the rules above. Flushes stdio first (buffered output must not be printed
// twice), blocks signals around the fork so no parent handler runs in the child. Returns 0 in
// the child, the pid in the parent.
pid_t fork_process(const child_options& opts = {});

// Called in a child when its body returned or threw: flushes stdio and _exit()s.
[[noreturn]] void exit_child(int code) noexcept;
// In a child's catch block: prints the current exception to stderr, returns exit code 1.
int report_child_exception() noexcept;

// Forks a child that runs fn() and _exits with 0, or 1 if fn throws (the exception's what()
// goes to stderr). Returns the child's pid.
template <class F>
pid_t fork_call(F&& fn, const child_options& opts = {}) {
    pid_t pid = fork_process(opts);
    if (pid == 0) {
        int code = 0;
        try {
            std::forward<F>(fn)();
        } catch (...) {
            code = report_child_exception();
        }
        exit_child(code);
    }
    return pid;
}

struct spawn_options {
    int stdin_fd = -1;   // -1: inherit
    int stdout_fd = -1;
    int stderr_fd = -1;
    child_options child{};  // death_signal and ignore_sigint apply; a title does not survive exec
    bool new_process_group = false;  // the child leads a group of its own (signal it as -pid)
    // The program to run, already found (find_executable); empty: argv[0], searched in PATH.
    std::string path;
};
// The one way parafork starts a program, for the library and the command alike: vfork + execve
// (no copy of the parent's page tables, however big the parent), with the child's setup limited
// to system calls. A command that cannot be executed is reported here as std::system_error
// naming it, not as a child that exits 127 later; a child that cannot be given the descriptors
// asked for (the table is full) never runs on the parent's instead. A file without a #! line
// runs through /bin/sh, as execvp does.
pid_t spawn(const std::vector<std::string>& argv, const spawn_options& opts = {});
// execvp's search of PATH for `name` (returned as is when it holds a '/'); empty if not found.
std::string find_executable(const std::string& name);

// Owns a child: the destructor kills (SIGKILL) and reaps it if nobody waited.
class child {
public:
    child() noexcept = default;
    explicit child(pid_t pid) noexcept : pid_(pid) {}
    child(child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), status_(o.status_) {}
    child& operator=(child&& o) noexcept;
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child() { kill_and_reap(); }

    pid_t pid() const noexcept { return pid_; }
    bool running() const noexcept { return pid_ > 0 && !status_; }
    const std::optional<exit_status>& status() const noexcept { return status_; }
    exit_status wait();
    std::optional<exit_status> try_wait();
    std::optional<exit_status> wait_for(std::chrono::milliseconds timeout);
    void signal(int sig) const noexcept;
    exit_status terminate(std::chrono::milliseconds grace = std::chrono::milliseconds(200));
    void kill_and_reap() noexcept;

private:
    pid_t pid_ = -1;
    std::optional<exit_status> status_;
};

// Process titles: comm (what ps -o comm and top show) always, cut to the kernel's 15
// characters; with init_process_title() called from main, also the argv area (what ps -f
// shows), which takes the whole title up to the length of the original command line. Call it
// before anything (a flag parser) reorders argv: the area ends at the first string out of place.
void set_process_title(std::string_view title);
void init_process_title(int argc, char** argv);

} // namespace parafork::sys

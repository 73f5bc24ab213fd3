#pragma once
// Signal handling for the parent. Ctrl-C is the parent's: while a parafork call runs, a
// sigint_guard turns SIGINT into a flag plus a readable fd the call polls, and the call throws
// parafork::interrupted after stopping its children.

#include <csignal>

namespace parafork::sys {

class sigint_guard {
public:
    sigint_guard();
    ~sigint_guard();
    sigint_guard(const sigint_guard&) = delete;
    sigint_guard& operator=(const sigint_guard&) = delete;

    // A non-blocking fd that becomes readable when SIGINT arrives (for poll); -1 when no
    // guard is alive. Made with the first guard and closed with the last.
    static int fd() noexcept;
    // True once SIGINT arrived while any guard was alive (until clear()).
    static bool pending() noexcept;
    static void clear() noexcept;
    // Throws parafork::interrupted if pending.
    static void check();
};

// A library wait that a signal handler interrupted (EINTR) calls check_interruption() before it
// waits again. A language binding sets the check to run its own signal handlers there, which
// may throw to end the wait (Python's rule for blocking calls: KeyboardInterrupt from its
// SIGINT handler). Unset, it does nothing: C++ programs see no change.
using interruption_check = void (*)();
void set_interruption_check(interruption_check check) noexcept;
void check_interruption();

// Blocks SIGPIPE in the calling thread for the guard's life, so writing to a dead child's pipe
// is an EPIPE error rather than the parent's death; a SIGPIPE raised while it lived is
// discarded. A caller that promises to call note_epipe() whenever a write fails with EPIPE
// (reports_epipe) saves a sigpending(2): the guard then costs two syscalls.
class sigpipe_guard {
public:
    explicit sigpipe_guard(bool reports_epipe = false);
    ~sigpipe_guard();
    sigpipe_guard(const sigpipe_guard&) = delete;
    sigpipe_guard& operator=(const sigpipe_guard&) = delete;
    void note_epipe() noexcept { epipe_ = true; }

private:
    bool reports_epipe_;
    bool was_blocked_ = false;
    bool epipe_ = false;
};

// Blocks every signal for the guard's life (around fork).
class block_all_signals {
public:
    block_all_signals();
    ~block_all_signals();
    block_all_signals(const block_all_signals&) = delete;
    block_all_signals& operator=(const block_all_signals&) = delete;
    const sigset_t& previous() const noexcept { return old_; }

private:
    sigset_t old_;
};

} // namespace parafork::sys

#include <parafork/error.hpp>
#include <parafork/exec/core/options.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace sys = parafork::sys;

TEST(Sys, PipesAreCloexec) {
    PARAFORK_LEAK_CHECK();
    auto p = sys::make_pipe();
    EXPECT_TRUE(::fcntl(p.read.get(), F_GETFD) & FD_CLOEXEC);
    EXPECT_TRUE(::fcntl(p.write.get(), F_GETFD) & FD_CLOEXEC);
    auto s = sys::make_socketpair();
    EXPECT_TRUE(::fcntl(s.read.get(), F_GETFD) & FD_CLOEXEC);
    auto m = sys::make_memfd("t", 4096);
    EXPECT_TRUE(::fcntl(m.get(), F_GETFD) & FD_CLOEXEC);
}

TEST(Sys, ExitStatusDecoded) {
    PARAFORK_LEAK_CHECK();
    sys::child a(sys::fork_call([] { sys::exit_child(3); }));
    EXPECT_EQ(a.wait().code, 3);
    EXPECT_EQ(a.wait().describe(), "exit code 3");
    sys::child b(sys::fork_call([] { ::raise(SIGSEGV); }));
    EXPECT_EQ(b.wait().signal, SIGSEGV);
    EXPECT_EQ(b.wait().as_int(), -SIGSEGV);
    EXPECT_NE(b.wait().describe().find("SIGSEGV"), std::string::npos);
    sys::child c(sys::fork_call([] { throw std::runtime_error("boom"); }));
    EXPECT_EQ(c.wait().code, 1);
}

TEST(Sys, ChildHasDeathSignalAndIgnoresSigint) {
    PARAFORK_LEAK_CHECK();
    auto p = sys::make_pipe();
    sys::child c(sys::fork_call([&] {
        int sig = 0;
        ::prctl(PR_GET_PDEATHSIG, &sig);
        struct sigaction sa {};
        ::sigaction(SIGINT, nullptr, &sa);
        int out[2] = {sig, sa.sa_handler == SIG_IGN};
        sys::write_all(p.write.get(), out, sizeof out);
    }));
    p.write.reset();
    int got[2] = {};
    ASSERT_TRUE(sys::read_exact(p.read.get(), got, sizeof got));
    EXPECT_EQ(got[0], SIGKILL);
    EXPECT_EQ(got[1], 1);
    EXPECT_TRUE(c.wait().ok());
}

TEST(Sys, StdioFlushedBeforeFork) {
    PARAFORK_LEAK_CHECK();
    // Buffered output of the parent must not be printed again by the child. A FILE of our own,
    // fully buffered, holds "parent-line" when we fork: unflushed, the child's copy of that
    // buffer would write it a second time.
    auto p = sys::make_pipe();
    FILE* f = ::fdopen(p.write.release(), "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(::setvbuf(f, nullptr, _IOFBF, 4096), 0);
    std::fputs("parent-line\n", f);
    sys::child c(sys::fork_call([&] {
        std::fputs("kid\n", f);
        std::fflush(f);
    }));
    EXPECT_TRUE(c.wait().ok());
    std::fputs("parent-end\n", f);
    ASSERT_EQ(std::fclose(f), 0);
    std::string all;
    char buf[256];
    long n;
    while ((n = sys::read_some(p.read.get(), buf, sizeof buf)) > 0) all.append(buf, n);
    EXPECT_EQ(all, "parent-line\nkid\nparent-end\n");
}

TEST(Sys, SpawnReportsMissingCommand) {
    PARAFORK_LEAK_CHECK();
    try {
        sys::spawn({"parafork-no-such-command-xyz"});
        FAIL() << "spawn of a missing command returned";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOENT);
        EXPECT_NE(std::string(e.what()).find("parafork-no-such-command-xyz"), std::string::npos);
    }
}

TEST(Sys, SpawnWiresStdio) {
    PARAFORK_LEAK_CHECK();
    auto in = sys::make_pipe();
    auto out = sys::make_pipe();
    sys::spawn_options so;
    so.stdin_fd = in.read.get();
    so.stdout_fd = out.write.get();
    sys::child c(sys::spawn({"tr", "a-z", "A-Z"}, so));
    in.read.reset();
    out.write.reset();
    sys::write_all(in.write.get(), "hello\n");
    in.write.reset();
    char buf[16] = {};
    ASSERT_TRUE(sys::read_exact(out.read.get(), buf, 6));
    EXPECT_EQ(std::string(buf), "HELLO\n");
    EXPECT_TRUE(c.wait().ok());
}

TEST(Sys, PrivateFdsClosedInLaterChildren) {
    PARAFORK_LEAK_CHECK();
    auto p = sys::make_pipe();
    int fd = p.write.get();
    sys::private_fd priv(std::move(p.write));
    auto report = sys::make_pipe();
    sys::child c(sys::fork_call([&] {
        int open = ::fcntl(fd, F_GETFD) != -1;
        sys::write_all(report.write.get(), &open, sizeof open);
    }));
    report.write.reset();
    int open = -1;
    ASSERT_TRUE(sys::read_exact(report.read.get(), &open, sizeof open));
    EXPECT_EQ(open, 0);
    c.wait();
}

TEST(Sys, ChildDestructorKillsAndReaps) {
    PARAFORK_LEAK_CHECK();
    pid_t pid;
    {
        sys::child c(sys::fork_call([] { ::pause(); }));
        pid = c.pid();
    }
    EXPECT_EQ(::kill(pid, 0), -1);  // reaped: the pid no longer exists for us
}

// A child that holds no process (made empty, or moved from) must never reach other processes:
// waitpid(-1) would reap any child of ours, kill(-1) signal every process we may signal. (Only
// checks whose failure is harmless: signal 0 tests a kill without sending anything.)
TEST(Sys, AnEmptyChildTouchesNoOtherProcess) {
    PARAFORK_LEAK_CHECK();
    sys::child bystander(sys::fork_call([] { ::pause(); }));
    sys::child done(sys::fork_call([] {}));
    while (!sys::process_exited(done.pid())) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    sys::child empty;
    sys::child moved(sys::fork_call([] {}));
    sys::child taken(std::move(moved));
    for (sys::child* c : {&empty, &moved}) {
        EXPECT_THROW(c->wait(), parafork::error);  // not waitpid(-1): `done` is not reaped here
        EXPECT_FALSE(c->try_wait());
        EXPECT_FALSE(c->wait_for(std::chrono::milliseconds(1)));
        c->kill_and_reap();
    }
    EXPECT_FALSE(sys::send_signal(0, 0));
    EXPECT_FALSE(sys::send_signal(-1, 0));
    // Every process is still its owner's: alive, or exited and not yet reaped.
    EXPECT_EQ(::kill(bystander.pid(), 0), 0);
    EXPECT_FALSE(bystander.try_wait());
    EXPECT_TRUE(done.wait().ok()) << "reaped by someone else";
    EXPECT_TRUE(taken.wait().ok());
    EXPECT_EQ(bystander.terminate().signal, SIGTERM);
}

TEST(Sys, TerminateEscalatesToSigkill) {
    PARAFORK_LEAK_CHECK();
    // The child says when it ignores SIGTERM: on a loaded machine it may not have run yet.
    auto ready = sys::make_pipe();
    sys::child c(sys::fork_call([w = ready.write.get()] {
        ::signal(SIGTERM, SIG_IGN);
        char b = 1;
        sys::write_all(w, &b, 1);
        for (;;) ::pause();
    }));
    ready.write.reset();
    char b = 0;
    ASSERT_TRUE(sys::read_exact(ready.read.get(), &b, 1));
    auto st = c.terminate(std::chrono::milliseconds(50));
    EXPECT_EQ(st.signal, SIGKILL);
}

TEST(Sys, MemfdMappingSharedAcrossFork) {
    PARAFORK_LEAK_CHECK();
    auto fd = sys::make_memfd("shared", 4096);
    sys::mapping m(fd.get(), 4096);
    auto* word = static_cast<std::atomic<std::uint32_t>*>(m.data());
    word->store(0);
    sys::child c(sys::fork_call([&] {
        word->store(42);
        sys::futex_wake_all(word);
    }));
    while (word->load() != 42) sys::futex_wait(word, 0, std::chrono::milliseconds(100));
    EXPECT_EQ(word->load(), 42u);
    c.wait();
}

TEST(Sys, ReadProcessMemoryCopiesFromAChild) {
    PARAFORK_LEAK_CHECK();
    // Big enough to be split across two threads, odd-sized so the halves are uneven.
    const std::size_t n = (std::size_t{40} << 20) + 12345;
    std::vector<unsigned char> buf(n, 0);
    // One readable page, then one that is not (kept reserved, so nothing else lands there).
    auto* edge = static_cast<char*>(
        ::mmap(nullptr, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(edge, MAP_FAILED);
    ASSERT_EQ(::mprotect(edge + 4096, 4096, PROT_NONE), 0);
    auto ready = sys::make_pipe();
    sys::child c(sys::fork_call([&] {
        for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<unsigned char>(i * 7 + 1);
        char x = 1;
        (void)::write(ready.write.get(), &x, 1);
        for (;;) ::pause();
    }));
    char x;
    ASSERT_EQ(::read(ready.read.get(), &x, 1), 1);
    // The child's copy of the buffer, not ours (ours is still all zero).
    std::vector<unsigned char> got(n, 0);
    ASSERT_TRUE(sys::read_process_memory(c.pid(), reinterpret_cast<std::uintptr_t>(buf.data()),
                                         got.data(), n));
    for (std::size_t i = 0; i < n; i += 997) ASSERT_EQ(got[i], static_cast<unsigned char>(i * 7 + 1));
    EXPECT_EQ(got[n - 1], static_cast<unsigned char>((n - 1) * 7 + 1));
    EXPECT_EQ(buf[n - 1], 0);
    // A range that is not mapped there: refused, not a crash.
    errno = 0;
    EXPECT_FALSE(sys::read_process_memory(c.pid(), 4096, got.data(), 4096));
    EXPECT_NE(errno, 0);
    // A range that runs off the end of a mapping: refused as a whole (the kernel copies the
    // part before the hole), the big split copy too.
    EXPECT_FALSE(sys::read_process_memory(c.pid(), reinterpret_cast<std::uintptr_t>(edge), got.data(), 8192));
    EXPECT_FALSE(sys::read_process_memory(c.pid(), reinterpret_cast<std::uintptr_t>(edge), got.data(), n));
    ::munmap(edge, 2 * 4096);
    pid_t pid = c.pid();
    c.terminate(std::chrono::milliseconds(50));
    // Gone and reaped: nothing to read.
    EXPECT_FALSE(sys::read_process_memory(pid, reinterpret_cast<std::uintptr_t>(buf.data()), got.data(), 16));
}

TEST(Sys, JobsRule) {
    ::unsetenv("PARAFORK_JOBS");
    ::unsetenv("PP_JOBS");
    EXPECT_GE(parafork::default_jobs(), 1u);
    EXPECT_EQ(parafork::resolve_jobs(5), 5u);
    ::setenv("PP_JOBS", "3", 1);
    EXPECT_EQ(parafork::default_jobs(), 3u);
    ::setenv("PARAFORK_JOBS", "7", 1);
    EXPECT_EQ(parafork::default_jobs(), 7u);
    EXPECT_EQ(parafork::resolve_jobs(2), 2u);
    ::setenv("PARAFORK_JOBS", "seven", 1);
    try {
        parafork::default_jobs();
        FAIL();
    } catch (const parafork::error& e) {
        EXPECT_NE(std::string(e.what()).find("PARAFORK_JOBS"), std::string::npos);
    }
    ::setenv("PARAFORK_JOBS", "0", 1);
    EXPECT_THROW(parafork::default_jobs(), parafork::error);
    ::unsetenv("PARAFORK_JOBS");
    ::setenv("PP_JOBS", "-1", 1);
    EXPECT_THROW(parafork::default_jobs(), parafork::error);
    ::unsetenv("PP_JOBS");
}

TEST(Sys, StatusLostWhenSigchldIsIgnored) {
    PARAFORK_LEAK_CHECK();
    // With SIGCHLD ignored the kernel reaps children itself: waiting must neither throw nor
    // invent a status, only say it is lost.
    parafork::testing::run_bounded("sigchld ignored", 20, [] {
        ::signal(SIGCHLD, SIG_IGN);
        sys::child a(sys::fork_call([] { sys::exit_child(3); }));
        auto st = a.wait();
        EXPECT_TRUE(st.lost);
        EXPECT_FALSE(st.ok());
        EXPECT_NE(st.describe().find("lost"), std::string::npos) << st.describe();
        sys::child b(sys::fork_call([] { ::pause(); }));
        b.kill_and_reap();
        ASSERT_TRUE(b.status().has_value());
        EXPECT_TRUE(b.status()->lost);
        sys::child c(sys::fork_call([] { sys::exit_child(0); }));
        auto st2 = c.wait_for(std::chrono::seconds(10));
        ASSERT_TRUE(st2.has_value());
        EXPECT_TRUE(st2->lost);
        EXPECT_FALSE(c.running());
    });
}

TEST(Sys, SpinPollSpinsThenGivesUpOrSleeps) {
    PARAFORK_LEAK_CHECK();
    using namespace std::chrono;
    auto p = sys::make_pipe();
    pollfd fds{p.read.get(), POLLIN, 0};
    // Nothing ready: spin_poll returns 0 once the spin is over, poll_spin then sleeps its timeout.
    auto t0 = steady_clock::now();
    EXPECT_EQ(sys::spin_poll(&fds, 1, microseconds(2000)), 0);
    EXPECT_GE(steady_clock::now() - t0, microseconds(2000));
    t0 = steady_clock::now();
    EXPECT_EQ(sys::poll_spin(&fds, 1, 30, microseconds(100)), 0);
    EXPECT_GE(steady_clock::now() - t0, milliseconds(25));
    // Ready: both return at once.
    sys::write_all(p.write.get(), "x", 1);
    EXPECT_EQ(sys::spin_poll(&fds, 1, seconds(10)), 1);
    EXPECT_EQ(sys::poll_spin(&fds, 1, -1, seconds(10)), 1);
    EXPECT_TRUE(fds.revents & POLLIN);
}

namespace {

// The process whose fork wait_for_parent_death delays; 0: no delay.
pid_t g_hook_parent = 0;

// A fork child handler runs in the child before fork() returns, so before fork_process sets
// the death signal: waiting there for the parent to exit makes the fork/prctl race certain.
void wait_for_parent_death() {
    if (g_hook_parent == 0) return;
    for (int i = 0; i < 10000 && ::getppid() == g_hook_parent; ++i) ::usleep(1000);
}

bool g_hit_race = false;

// Forks a middle process that makes a child with fork_process and exits, and returns how that
// orphan ended. This process is a subreaper, so the orphan is reparented to it and reaped here;
// one still alive 5 s after the middle process exited fails the test.
sys::exit_status orphan_end(bool hit_race) {
    g_hit_race = hit_race;
    EXPECT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    auto report = sys::make_pipe();
    pid_t mid = sys::fork_call([&] {
        auto ready = sys::make_pipe();
        if (g_hit_race) {
            g_hook_parent = ::getpid();
            ::pthread_atfork(nullptr, nullptr, wait_for_parent_death);
        }
        pid_t orphan = sys::fork_process();
        if (orphan == 0) {
            char b = 1;
            sys::write_all(ready.write.get(), &b, 1);
            for (;;) ::pause();
        }
        char b;
        if (!g_hit_race) sys::read_exact(ready.read.get(), &b, 1);  // its death signal is set
        sys::write_all(report.write.get(), &orphan, sizeof orphan);
    });
    report.write.reset();
    pid_t orphan = -1;
    EXPECT_TRUE(sys::read_exact(report.read.get(), &orphan, sizeof orphan));
    EXPECT_TRUE(sys::wait_pid(mid).ok());
    if (orphan <= 0) return {};
    if (auto st = sys::wait_pid_for(orphan, std::chrono::seconds(5))) return *st;
    ADD_FAILURE() << "the child " << orphan << " outlived its parent";
    ::kill(orphan, SIGKILL);
    return sys::wait_pid(orphan);
}

} // namespace

TEST(Sys, ChildDiesWithItsParent) {
    PARAFORK_LEAK_CHECK();
    parafork::testing::run_bounded("death signal", 20, [] {
        auto st = orphan_end(false);
        EXPECT_EQ(st.signal, SIGKILL) << st.describe();
    });
}

TEST(Sys, ChildWhoseParentDiedBeforePrctlExits) {
    PARAFORK_LEAK_CHECK();
    // The parent is gone before the child sets PR_SET_PDEATHSIG, so no signal will ever come:
    // the getppid() re-check must end the child (exit code 1) before it runs anything.
    parafork::testing::run_bounded("death before prctl", 30, [] {
        auto st = orphan_end(true);
        EXPECT_EQ(st.signal, 0) << st.describe();
        EXPECT_EQ(st.code, 1) << st.describe();
    });
}

namespace {

int g_argc = 0;
char* g_argv[64];

// glibc passes argc and argv to ELF constructors; gtest_main keeps them to itself and then
// drops its own flags from the array, so keep a copy of the array as the kernel made it.
[[gnu::constructor]] void keep_argv(int argc, char** argv, char**) {
    g_argc = std::min(argc, 63);
    std::copy(argv, argv + g_argc, g_argv);
}

std::string read_proc(pid_t pid, const char* what) {
    return parafork::testing::read_proc("/proc/" + std::to_string(pid) + "/" + what);
}

// /proc/<pid>/cmdline and comm of a child that fork_process titled `title`.
std::pair<std::string, std::string> titled_child(const std::string& title) {
    auto ready = sys::make_pipe();
    sys::child_options co;
    co.title = title;
    sys::child c(sys::fork_call(
        [&] {
            char b = 1;
            sys::write_all(ready.write.get(), &b, 1);
            for (;;) ::pause();
        },
        co));
    ready.write.reset();
    char b;
    EXPECT_TRUE(sys::read_exact(ready.read.get(), &b, 1));
    std::pair<std::string, std::string> out{read_proc(c.pid(), "cmdline"), read_proc(c.pid(), "comm")};
    c.kill_and_reap();
    return out;
}

} // namespace

TEST(Sys, ProcessTitleInCommAndCmdline) {
    PARAFORK_LEAK_CHECK();
    ASSERT_GT(g_argc, 0);
    // 19 characters: comm keeps the first 15 (the kernel's limit), the argv area all of them.
    const std::string title = "parafork-title-test";
    // Before init_process_title only comm changes.
    auto [cmdline0, comm0] = titled_child(title);
    EXPECT_EQ(comm0, "parafork-title-\n");
    EXPECT_EQ(cmdline0, read_proc(::getpid(), "cmdline"));

    sys::init_process_title(g_argc, g_argv);
    auto [cmdline, comm] = titled_child(title);
    EXPECT_EQ(comm, "parafork-title-\n");
    // The title takes the extent of the original argv strings (a title longer than that is
    // cut there); the rest of that extent is zeroed, so ps shows the title alone.
    std::size_t area = std::strlen(g_argv[0]);
    for (int i = 1; i < g_argc && g_argv[i] == g_argv[0] + area + 1; ++i) area += 1 + std::strlen(g_argv[i]);
    std::string want = title.substr(0, std::min(title.size(), area));
    ASSERT_GT(cmdline.size(), want.size());
    EXPECT_EQ(cmdline.substr(0, want.size()), want);
    EXPECT_EQ(cmdline.find_first_not_of('\0', want.size()), std::string::npos);
}

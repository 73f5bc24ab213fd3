#include <parafork/error.hpp>
#include <parafork/options.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <system_error>
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
    // Buffered output of the parent must not be printed again by the child.
    auto p = sys::make_pipe();
    sys::child c(sys::fork_call([&] {
        ::dup2(p.write.get(), 1);
        std::printf("parent-line\n");  // buffered in a FILE pointing at the pipe
        sys::child inner(sys::fork_call([] { std::printf("kid\n"); }));
        inner.wait();
    }));
    p.write.reset();
    std::string all;
    char buf[256];
    long n;
    while ((n = sys::read_some(p.read.get(), buf, sizeof buf)) > 0) all.append(buf, n);
    c.wait();
    EXPECT_EQ(all, "parent-line\nkid\n");
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

TEST(Sys, TerminateEscalatesToSigkill) {
    PARAFORK_LEAK_CHECK();
    sys::child c(sys::fork_call([] {
        ::signal(SIGTERM, SIG_IGN);
        for (;;) ::pause();
    }));
    ::usleep(20000);
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

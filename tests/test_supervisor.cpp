// The supervisor every executor forks, watches and stops its children through.
#include <parafork/exec/core/supervisor.hpp>
#include <parafork/sys/signals.hpp>

#include <support/leak_check.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <system_error>
#include <unistd.h>

namespace pf = parafork;
using pf::detail::supervisor;
using namespace std::chrono_literals;

namespace {

auto in(std::chrono::milliseconds d) { return supervisor::clock::now() + d; }

[[noreturn]] void sleep_then_exit(int seconds) {
    ::sleep(static_cast<unsigned>(seconds));
    ::_exit(0);
}

// A child that ignores SIGTERM and says so on `ready` once it does.
supervisor::id fork_ignoring_sigterm(supervisor& s, int ready) {
    return s.fork([ready] {
        ::signal(SIGTERM, SIG_IGN);
        pf::sys::write_all(ready, "r");
        sleep_then_exit(60);
    });
}

} // namespace

TEST(Supervisor, ReportsAnExitWithItsStatus) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    auto k = s.fork([] { ::_exit(3); });
    EXPECT_TRUE(s.alive(k) || s.status(k));
    std::size_t seen = 0;
    auto w = s.wait({}, in(30s), [&](supervisor::id id, const pf::sys::exit_status& st) {
        EXPECT_EQ(id, k);
        EXPECT_EQ(st.code, 3);
        ++seen;
    });
    ASSERT_EQ(w, supervisor::wake::exited);
    EXPECT_EQ(seen, 1u);
    EXPECT_FALSE(s.alive(k));
    EXPECT_EQ(s.status(k)->code, 3);
    EXPECT_EQ(s.live(), 0u);
}

TEST(Supervisor, AThrowingBodyExitsWithOne) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    auto k = s.fork([] { throw std::runtime_error("told to"); });
    ASSERT_EQ(s.wait({}, in(30s)), supervisor::wake::exited);
    EXPECT_EQ(s.status(k)->code, 1);
}

// The death must be seen when the child dies, not when the grandchild that inherited its pipe
// lets go of it: the pipe gives no EOF here, the pidfd still fires.
TEST(Supervisor, ADeathIsSeenWhileAGrandchildHoldsThePipe) {
    PARAFORK_LEAK_CHECK();
    auto p = pf::sys::make_pipe();
    supervisor s;
    int w_fd = p.write.get();
    auto k = s.fork([w_fd] {
        pid_t g = ::fork();
        if (g == 0) sleep_then_exit(60);  // holds the write end
        pf::sys::write_all(w_fd, &g, sizeof g);
        ::raise(SIGKILL);
    });
    p.write.reset();
    pid_t grandchild = -1;
    ASSERT_TRUE(pf::sys::read_exact(p.read.get(), &grandchild, sizeof grandchild));
    pollfd pipe_fd{p.read.get(), POLLIN, 0};
    auto w = s.wait({&pipe_fd, 1}, in(30s));
    EXPECT_EQ(w, supervisor::wake::exited);
    EXPECT_EQ(pipe_fd.revents, 0) << "the pipe is still held open by the grandchild";
    EXPECT_EQ(s.status(k)->signal, SIGKILL);
    ::kill(grandchild, SIGKILL);  // not our child: its parent died, so init reaps it
}

TEST(Supervisor, CallerDescriptorsWakeTheWait) {
    PARAFORK_LEAK_CHECK();
    auto p = pf::sys::make_pipe();
    supervisor s;
    auto k = s.fork([] { sleep_then_exit(60); });
    pf::sys::write_all(p.write.get(), "x");
    pollfd fd{p.read.get(), POLLIN, 0};
    EXPECT_EQ(s.wait({&fd, 1}, in(30s)), supervisor::wake::ready);
    EXPECT_TRUE(fd.revents & POLLIN);
    EXPECT_TRUE(s.alive(k));
}

TEST(Supervisor, ADeadlineEndsTheWait) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    s.fork([] { sleep_then_exit(60); });
    auto start = supervisor::clock::now();
    EXPECT_EQ(s.wait({}, start + 50ms), supervisor::wake::timeout);
    EXPECT_GE(supervisor::clock::now() - start, 50ms);
}

TEST(Supervisor, CtrlCEndsTheWaitWhileAGuardLives) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    s.fork([] { sleep_then_exit(60); });
    pf::sys::sigint_guard guard;
    ::raise(SIGINT);
    EXPECT_EQ(s.wait({}, in(30s)), supervisor::wake::interrupted);
    EXPECT_TRUE(pf::sys::sigint_guard::pending());
    pf::sys::sigint_guard::clear();
}

TEST(Supervisor, StopFollowsThePolicy) {
    PARAFORK_LEAK_CHECK();
    supervisor s({.signal = SIGTERM, .grace = 10s});
    auto polite = s.fork([] { sleep_then_exit(60); });  // SIGTERM's default action ends it
    EXPECT_EQ(s.stop(polite).signal, SIGTERM);

    supervisor hard({.signal = SIGTERM, .grace = 100ms});
    auto ready = pf::sys::make_pipe();
    auto stubborn = fork_ignoring_sigterm(hard, ready.write.get());
    ready.write.reset();
    char c;
    ASSERT_TRUE(pf::sys::read_exact(ready.read.get(), &c, 1));
    EXPECT_EQ(hard.stop(stubborn).signal, SIGKILL);

    supervisor none({.signal = 0, .grace = 10s});
    auto k = none.fork([] { sleep_then_exit(60); });
    auto start = supervisor::clock::now();
    EXPECT_EQ(none.stop(k).signal, SIGKILL);  // no first signal: killed at once, no grace
    EXPECT_LT(supervisor::clock::now() - start, 5s);
}

// Eight children that ignore SIGTERM cost one grace period, not eight.
TEST(Supervisor, StopAllSharesOneGracePeriod) {
    PARAFORK_LEAK_CHECK();
    constexpr int n = 8;
    auto ready = pf::sys::make_pipe();
    supervisor s({.signal = SIGTERM, .grace = 500ms});
    int w_fd = ready.write.get();
    for (int i = 0; i < n; ++i) fork_ignoring_sigterm(s, w_fd);
    ready.write.reset();
    char buf[n];
    ASSERT_TRUE(pf::sys::read_exact(ready.read.get(), buf, n));
    auto start = supervisor::clock::now();
    s.stop_all();
    auto took = supervisor::clock::now() - start;
    EXPECT_EQ(s.live(), 0u);
    for (supervisor::id k = 0; k < s.size(); ++k) EXPECT_EQ(s.status(k)->signal, SIGKILL);
    EXPECT_GE(took, 500ms);
    EXPECT_LT(took, 4s) << "one grace for all, not one per child (8 x 500 ms)";
}

TEST(Supervisor, TheDestructorStopsAndReapsEveryone) {
    PARAFORK_LEAK_CHECK();
    std::vector<pid_t> pids;
    {
        supervisor s;
        for (int i = 0; i < 4; ++i) pids.push_back(s.pid(s.fork([] { sleep_then_exit(60); })));
    }
    for (pid_t p : pids) EXPECT_NE(::kill(p, 0), 0) << "pid " << p << " outlived its supervisor";
    EXPECT_TRUE(pf::testing::zombie_children().empty());
}

TEST(Supervisor, ForgottenSlotsAreReused) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    for (int i = 0; i < 50; ++i) {
        auto k = s.fork([] { ::_exit(0); });
        EXPECT_THROW(s.forget(s.size() + 5), std::out_of_range);
        ASSERT_EQ(s.wait({}, in(30s)), supervisor::wake::exited);
        s.forget(k);
    }
    EXPECT_EQ(s.size(), 1u);
}

TEST(Supervisor, ALiveChildCannotBeForgotten) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    auto k = s.fork([] { sleep_then_exit(60); });
    EXPECT_THROW(s.forget(k), std::logic_error);
}

TEST(Supervisor, SpawnWatchesACommandAndReportsOneThatCannotRun) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    auto k = s.spawn({"sh", "-c", "exit 7"});
    ASSERT_EQ(s.wait({}, in(30s)), supervisor::wake::exited);
    EXPECT_EQ(s.status(k)->code, 7);
    EXPECT_THROW(s.spawn({"/nonexistent/parafork-no-such-command"}), std::system_error);
    EXPECT_EQ(s.live(), 0u);
}

// Without a pidfd a child could die unseen: the fork fails instead, and the child is gone.
TEST(Supervisor, AChildThatCannotBeWatchedIsNotLeftRunning) {
    pf::testing::run_bounded("pidfd_open fails", 60, [] {
        rlimit old{};
        ::getrlimit(RLIMIT_NOFILE, &old);
        // Fill the table up to a low limit, so the pidfd is the descriptor that cannot be had.
        rlimit low = old;
        low.rlim_cur = 64;
        ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
        std::vector<pf::sys::unique_fd> filler;
        while (true) {
            pf::sys::unique_fd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
            if (!fd) break;
            filler.push_back(std::move(fd));
        }
        supervisor s;
        try {
            s.fork([] { sleep_then_exit(60); });
            ADD_FAILURE() << "fork without a pidfd did not throw";
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code().value(), EMFILE);
        }
        EXPECT_EQ(s.live(), 0u);
        EXPECT_TRUE(pf::testing::child_pids().empty()) << "the unwatched child still exists";
        filler.clear();
        ::setrlimit(RLIMIT_NOFILE, &old);
    });
}

TEST(Supervisor, MovedSupervisorKeepsItsChildren) {
    PARAFORK_LEAK_CHECK();
    supervisor a;
    auto k = a.fork([] { ::_exit(5); });
    supervisor b(std::move(a));
    EXPECT_EQ(a.size(), 0u);
    ASSERT_EQ(b.wait({}, in(30s)), supervisor::wake::exited);
    EXPECT_EQ(b.status(k)->code, 5);
}

// A child forked later must not inherit the pidfds of those before it (an executor's parts
// would each hold one more descriptor than the last, and keep its siblings' pidfds open).
TEST(Supervisor, ALaterChildDoesNotHoldEarlierPidfds) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    auto fd_count = [] { ::_exit(static_cast<int>(pf::testing::open_fds().size())); };
    auto a = s.fork(fd_count);
    auto b = s.fork(fd_count);  // a's pidfd is open in the parent now
    while (s.live() > 0) ASSERT_NE(s.wait({}, in(30s)), supervisor::wake::timeout);
    EXPECT_EQ(s.status(b)->code, s.status(a)->code);
}

TEST(Supervisor, APidfdIsReadableOnceItsChildExits) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    auto k = s.fork([] { ::_exit(0); });
    pollfd p{s.pidfd(k), POLLIN, 0};
    ASSERT_GE(p.fd, 0);
    EXPECT_EQ(pf::sys::poll_fds(&p, 1, 30000), 1);  // exited, not yet reaped
    EXPECT_TRUE(s.alive(k));
    ASSERT_EQ(s.wait({}, in(30s)), supervisor::wake::exited);
    EXPECT_EQ(s.pidfd(k), -1);
}

// kill() is for a child past saving (a task past its deadline): no first signal, no grace.
TEST(Supervisor, KillEndsAChildAtOnceWhateverThePolicy) {
    PARAFORK_LEAK_CHECK();
    supervisor s({.signal = SIGTERM, .grace = 30s});
    auto ready = pf::sys::make_pipe();
    auto k = fork_ignoring_sigterm(s, ready.write.get());
    ready.write.reset();
    char c;
    ASSERT_TRUE(pf::sys::read_exact(ready.read.get(), &c, 1));
    auto start = supervisor::clock::now();
    EXPECT_EQ(s.kill(k).signal, SIGKILL);
    EXPECT_LT(supervisor::clock::now() - start, 10s) << "kill waited for the grace period";
    EXPECT_FALSE(s.alive(k));
    EXPECT_EQ(s.kill(k).signal, SIGKILL);  // once reaped, its status again, no signal sent
}

// A wait that spins first still wakes for every kind of event, and sleeps after the spin.
TEST(Supervisor, ASpinningWaitSeesDescriptorsExitsAndDeadlines) {
    PARAFORK_LEAK_CHECK();
    supervisor s;
    s.set_spin(2ms);
    auto p = pf::sys::make_pipe();
    pf::sys::write_all(p.write.get(), "x");
    pollfd fds[1] = {{p.read.get(), POLLIN, 0}};
    EXPECT_EQ(s.wait(fds, in(30s)), supervisor::wake::ready);
    EXPECT_TRUE(fds[0].revents & POLLIN);

    char c;
    ASSERT_TRUE(pf::sys::read_exact(p.read.get(), &c, 1));
    auto k = s.fork([] { ::_exit(3); });
    int seen = -1;
    EXPECT_EQ(s.wait(fds, in(30s), [&](supervisor::id id, const pf::sys::exit_status& st) {
        EXPECT_EQ(id, k);
        seen = st.code;
    }), supervisor::wake::exited);
    EXPECT_EQ(seen, 3);

    EXPECT_EQ(s.wait(fds, in(50ms)), supervisor::wake::timeout);
}

#include <parafork/error.hpp>
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/exec/core/zygote.hpp>
#include <parafork/sys/fd.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <sys/resource.h>
#include <system_error>
#include <fcntl.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
namespace sys = parafork::sys;

namespace {

void write_greeting(std::span<const int> fds, std::string who, int times) {
    std::string out;
    for (int i = 0; i < times; ++i) out += "hello " + who + "\n";
    sys::write_all(fds[0], out);
}

void exit_with(std::span<const int>, int code) { ::_exit(code); }

void allocate_and_report(std::span<const int> fds, int n) {
    // malloc and stdio in the worker: these deadlock in a child forked while another thread
    // held their locks; from the zygote they cannot.
    std::vector<std::string> v;
    for (int i = 0; i < n; ++i) v.push_back(std::string(100 + i, 'x'));
    std::string msg = std::to_string(v.size()) + "\n";
    sys::write_all(fds[0], msg);
}

std::string read_all(int fd) {
    std::string s;
    char buf[4096];
    long n;
    while ((n = sys::read_some(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
    return s;
}

} // namespace

TEST(Zygote, SpawnsWorkersWithArgumentsAndDescriptors) {
    PARAFORK_LEAK_CHECK();
    pf::zygote z;
    auto p = sys::make_pipe();
    int fds[] = {p.write.get()};
    pid_t w = z.spawn(&write_greeting, fds, std::string("zygote"), 2);
    p.write.reset();
    EXPECT_EQ(read_all(p.read.get()), "hello zygote\nhello zygote\n");
    EXPECT_TRUE(z.wait(w).ok());
}

TEST(Zygote, ReportsExitCodesAndSignals) {
    PARAFORK_LEAK_CHECK();
    pf::zygote z;
    pid_t a = z.spawn(&exit_with, {}, 5);
    EXPECT_EQ(z.wait(a).code, 5);
    auto p = sys::make_pipe();
    int fds[] = {p.read.get()};
    pid_t b = z.spawn(+[](std::span<const int> f) {
        char c;
        [[maybe_unused]] auto n = ::read(f[0], &c, 1);  // blocks until killed
    }, fds);
    EXPECT_FALSE(z.wait_for(b, std::chrono::milliseconds(50)));
    z.signal(b, SIGKILL);
    EXPECT_EQ(z.wait(b).signal, SIGKILL);
}

TEST(Zygote, ThreadedParentForksWithoutDeadlock) {
    // In a bounded child (so the test process itself stays single-threaded): start the zygote,
    // then threads that hammer malloc and a mutex, then fork 100 workers through the zygote.
    pf::testing::run_bounded("threaded parent", 60, [] {
        pf::zygote z;
        std::atomic<bool> stop{false};
        std::mutex m;
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&] {
                while (!stop) {
                    std::lock_guard lock(m);
                    std::vector<std::string> junk(64, std::string(256, 'j'));
                }
            });
        for (int i = 0; i < 100; ++i) {
            auto p = sys::make_pipe();
            int fds[] = {p.write.get()};
            pid_t w = z.spawn(&allocate_and_report, fds, 50);
            p.write.reset();
            EXPECT_EQ(read_all(p.read.get()), "50\n");
            EXPECT_TRUE(z.wait(w).ok());
        }
        stop = true;
        for (auto& t : threads) t.join();
    });
}

TEST(Zygote, SurvivesAFailedPidfdOpen) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("pidfd_open fails", 30, [] {
        // The zygote's server inherits a descriptor limit that leaves it one free slot: the
        // pidfd of its first worker fits, that of a second fails with EMFILE.
        int k = ::dup(0);
        ASSERT_GE(k, 0);
        ::close(k);
        ASSERT_EQ(::fcntl(k + 1, F_GETFD), -1);  // k and k + 1 are free: the socketpair takes them
        rlimit old{};
        ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
        rlimit low = old;
        low.rlim_cur = static_cast<rlim_t>(k + 2);
        ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
        std::optional<pf::zygote> z;
        z.emplace();
        ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);  // ours only; the server keeps the low one
        pid_t a = z->spawn(+[](std::span<const int>) { ::pause(); }, {});
        try {
            z->spawn(&exit_with, {}, 3);
            ADD_FAILURE() << "spawn succeeded without a free descriptor in the zygote";
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code().value(), EMFILE) << e.what();
        }
        // The zygote is still there: it reaps the first worker and forks others once a slot frees.
        z->signal(a, SIGKILL);
        EXPECT_EQ(z->wait(a).signal, SIGKILL);
        pid_t c = z->spawn(&exit_with, {}, 7);
        EXPECT_EQ(z->wait(c).code, 7);
    });
}

TEST(Zygote, StatusesNobodyWaitsForAreBounded) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("unclaimed", 90, [] {
        pf::zygote z;
        constexpr std::size_t n = pf::zygote::max_unclaimed + 200;
        std::vector<pid_t> pids;
        for (std::size_t i = 0; i < n; ++i) pids.push_back(z.spawn(&exit_with, {}, 0));
        // The last ones are kept (waiting also reads every exit that came before theirs)...
        for (std::size_t i = n - 50; i < n; ++i) EXPECT_EQ(z.wait(pids[i]).code, 0);
        // ...the oldest were dropped: waiting for one is an error at once, not a hang.
        EXPECT_THROW(z.wait(pids[0]), pf::error);
        // As is a pid already waited for, and one the zygote never spawned.
        EXPECT_THROW(z.wait(pids[n - 1]), pf::error);
        EXPECT_THROW(z.wait(::getpid()), pf::error);
    });
}

TEST(Zygote, WorkersDieWithTheZygote) {
    PARAFORK_LEAK_CHECK();
    auto p = sys::make_pipe();
    pid_t worker;
    {
        pf::zygote z;
        int fds[] = {p.read.get()};
        worker = z.spawn(+[](std::span<const int> f) {
            char c;
            [[maybe_unused]] auto n = ::read(f[0], &c, 1);
        }, fds);
        EXPECT_EQ(::kill(worker, 0), 0);
    }
    // The zygote reaped it on the way out (it was the zygote's child, not ours).
    for (int i = 0; i < 100 && ::kill(worker, 0) == 0; ++i) ::usleep(10000);
    EXPECT_EQ(::kill(worker, 0), -1);
}

TEST(Zygote, DeadZygoteIsAnErrorNotAHang) {
    PARAFORK_LEAK_CHECK();
    pf::zygote z;
    ::kill(z.pid(), SIGKILL);
    EXPECT_THROW(z.spawn(&exit_with, {}, 0), pf::error);
}

TEST(Sys, ThreadCount) {
    EXPECT_EQ(sys::thread_count(), 1u);
    std::atomic<bool> go{false};
    std::thread t([&] { while (!go) std::this_thread::yield(); });
    EXPECT_EQ(sys::thread_count(), 2u);
    go = true;
    t.join();
}

namespace {
void echo_kid(int in, int out) {
    pf::serve(in, out, pf::frames::lines, [](std::string_view s) {
        if (s == "crash") ::raise(SIGSEGV);
        return std::string(s);
    });
}
} // namespace

TEST(Zygote, ProcPoolThroughAZygoteInAThreadedProgram) {
    pf::testing::run_bounded("pool through zygote", 60, [] {
        pf::zygote z;  // before any thread
        std::atomic<bool> stop{false};
        std::thread noisy([&] {
            while (!stop) std::vector<std::string> junk(32, std::string(512, 'n'));
        });
        pf::options o;
        o.jobs = 2;
        o.zygote = &z;
        o.ordered = true;
        {
            pf::proc_pool pp(pf::kid_fn(&echo_kid), pf::frames::lines, o);
            std::vector<std::string> reqs;
            for (int i = 0; i < 1000; ++i) reqs.push_back(std::to_string(i));
            std::vector<std::string> got;
            pp.eval(reqs, [&](std::string_view r) { got.emplace_back(r); });
            EXPECT_EQ(got, reqs);
            // A kid's death is still reported with its signal (the zygote reaped it).
            try {
                pp.eval(std::vector<std::string>{"a", "crash", "b"}, [](std::string_view) {});
                ADD_FAILURE() << "no error";
            } catch (const pf::worker_died& e) {
                EXPECT_EQ(e.signal(), SIGSEGV);
            }
        }
        // Capturing lambdas cannot go through a zygote: a clear error, not a crash.
        int captured = 1;
        EXPECT_THROW(pf::proc_pool(pf::kid_fn([captured](int, int) { (void)captured; }), pf::frames::lines, o),
                     std::invalid_argument);
        stop = true;
        noisy.join();
    });
}

namespace {
// Exits with `code` once a byte arrives on fds[0] (or at EOF).
void exit_when_told(std::span<const int> fds, int code) {
    char c;
    [[maybe_unused]] auto n = ::read(fds[0], &c, 1);
    ::_exit(code);
}
} // namespace

// Several threads wait at once: one reads the zygote's socket, the others sleep until it hands
// them news; each gets its own worker's status, and a short wait_for beside a long wait ends at
// its own deadline.
TEST(Zygote, ThreadsWaitingAtOnceEachGetTheirWorkersStatus) {
    PARAFORK_LEAK_CHECK();
    pf::zygote z;
    auto pa = sys::make_pipe(), pb = sys::make_pipe();
    int fa[] = {pa.read.get()}, fb[] = {pb.read.get()};
    pid_t a = z.spawn(&exit_when_told, fa, 3);
    pid_t b = z.spawn(&exit_when_told, fb, 4);
    pa.read.reset();
    pb.read.reset();
    std::atomic<int> got_a{-1}, got_b{-1};
    std::thread ta([&] { got_a = z.wait(a).code; });
    std::thread tb([&] { got_b = z.wait(b).code; });
    // Both threads are (or soon will be) waiting; a third waiter times out on its own.
    EXPECT_FALSE(z.wait_for(b, std::chrono::milliseconds(100)));
    pb.write.reset();  // b exits first
    tb.join();
    EXPECT_EQ(got_b.load(), 4);
    EXPECT_EQ(got_a.load(), -1);
    pa.write.reset();
    ta.join();
    EXPECT_EQ(got_a.load(), 3);
}

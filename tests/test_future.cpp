// future<R>: one type for pool::submit and process::ask; wait_for / wait_until; wait_any and
// as_completed over futures of a pool and a process at once; deaths, stopped executors, Ctrl-C.
// Tasks that must not finish yet block on a gate (a pipe the test writes to), so completion
// order is the test's to choose, not the scheduler's. Every test runs in a bounded child.
#include <parafork/exec/core/future.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/exec/process/process.hpp>

#include "support/leak_check.hpp"
#include "support/sigint_timer.hpp"

#include <chrono>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
using namespace std::chrono_literals;
using pf::testing::run_bounded;

namespace {

// A pipe whose read end a child blocks on until the test opens the gate. Made before the pool
// or process forks, so the child has it.
struct gate {
    int fd[2] = {-1, -1};
    gate() { EXPECT_EQ(::pipe2(fd, O_CLOEXEC), 0); }
    ~gate() {
        ::close(fd[0]);
        ::close(fd[1]);
    }
    gate(const gate&) = delete;
    gate& operator=(const gate&) = delete;
    void open(char c = 'x') { EXPECT_EQ(::write(fd[1], &c, 1), 1); }
};

// Waits for one byte on `fd`; returns it plus `add`.
int through_gate(int fd, int add) {
    char c = 0;
    long n;
    while ((n = ::read(fd, &c, 1)) < 0 && errno == EINTR) {
    }
    return n == 1 ? c + add : -1000;
}
int square(int x) { return x * x; }
int my_pid() { return static_cast<int>(::getpid()); }
int die(int) {
    ::raise(SIGKILL);
    return 0;
}

struct actor : pf::actor {
    int square(int x) { return x * x; }
    long twice(int x) { return 2L * x; }
    int through_gate(int fd, int add) { return ::through_gate(fd, add); }
    int die(int) {
        ::raise(SIGKILL);
        return 0;
    }
    bool deaf() { return std::signal(SIGTERM, SIG_IGN) != SIG_ERR; }
};

using clock_type = std::chrono::steady_clock;

} // namespace

TEST(future, ask_and_submit_return_the_same_type) {
    using from_pool = decltype(std::declval<pf::pool<>&>().submit(&square, 1));
    using from_process = decltype(std::declval<pf::process<actor>&>().ask(&actor::square, 1));
    using from_fixed = decltype(std::declval<pf::process<actor>&>().ask<&actor::square>(1));
    static_assert(std::is_same_v<from_pool, pf::future<int>>);
    static_assert(std::is_same_v<from_process, pf::future<int>>);
    static_assert(std::is_same_v<from_fixed, pf::future<int>>);
    // The old name still compiles for one release, as the same type.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    static_assert(std::is_same_v<pf::process_future<int>, pf::future<int>>);
#pragma GCC diagnostic pop

    run_bounded("same type", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::pool p({.jobs = 2});
        pf::process<actor> w;
        w.start();
        // One container holds both; one loop reads both.
        std::vector<pf::future<int>> fs;
        for (int i = 0; i < 6; ++i) fs.push_back(i % 2 ? w.ask(&actor::square, i) : p.submit(&square, i));
        for (int i = 0; i < 6; ++i) {
            auto& f = fs[static_cast<std::size_t>(i)];
            ASSERT_TRUE(f.valid());
            EXPECT_EQ(f.get(), i * i);
            EXPECT_FALSE(f.valid());
            EXPECT_THROW(f.get(), pf::error);
        }
        w.join();
    });
}

TEST(future, wait_for_times_out_then_reports_ready_once_done) {
    run_bounded("wait_for", 60, +[] {
        PARAFORK_LEAK_CHECK();
        gate pool_gate, proc_gate;
        pf::pool p({.jobs = 1});
        pf::process<actor> w;
        w.start();
        pf::future<int> a = p.submit(&through_gate, pool_gate.fd[0], 1);
        pf::future<int> b = w.ask(&actor::through_gate, proc_gate.fd[0], 2);
        for (pf::future<int>* f : {&a, &b}) {
            EXPECT_FALSE(f->ready());
            auto t0 = clock_type::now();
            EXPECT_FALSE(f->wait_for(100ms));
            EXPECT_GE(clock_type::now() - t0, 100ms);  // it waited the time asked, not less
            t0 = clock_type::now();
            EXPECT_FALSE(f->wait_until(clock_type::now() + 50ms));
            EXPECT_GE(clock_type::now() - t0, 50ms);
            EXPECT_FALSE(f->wait_for(0ms));
            EXPECT_FALSE(f->wait_for(-5ms));
        }
        pool_gate.open('a');
        proc_gate.open('b');
        EXPECT_TRUE(a.wait_for(30s));
        EXPECT_TRUE(b.wait_until(std::chrono::system_clock::now() + 30s));
        EXPECT_TRUE(a.ready());
        EXPECT_TRUE(b.ready());
        EXPECT_TRUE(a.wait_for(0ms));  // ready stays ready, without waiting
        EXPECT_EQ(a.get(), 'a' + 1);
        EXPECT_EQ(b.get(), 'b' + 2);
        EXPECT_THROW(a.ready(), pf::error);
        EXPECT_THROW(b.wait_for(1ms), pf::error);
        pf::future<int> none;
        EXPECT_FALSE(none.valid());
        EXPECT_THROW(none.wait(), pf::error);
        w.join();
    });
}

TEST(future, as_completed_yields_in_completion_order_across_a_pool_and_a_process) {
    run_bounded("as_completed", 60, +[] {
        PARAFORK_LEAK_CHECK();
        gate g0, g1, g2, g3, h0, h1, k;  // before the fork: the children read them
        pf::pool p({.jobs = 2});
        pf::pool q({.jobs = 1});
        pf::process<actor> w;
        w.start();
        std::vector<pf::future<int>> fs;
        fs.push_back(p.submit(&through_gate, g0.fd[0], 0));
        fs.push_back(w.ask(&actor::through_gate, g1.fd[0], 1));
        fs.push_back(p.submit(&through_gate, g2.fd[0], 2));
        fs.push_back(q.submit(&through_gate, g3.fd[0], 3));
        // Only one task can finish at a time: the test opens the next gate after each yield.
        // Index order (0, 1, 2, 3) would wait for gate 0 forever.
        const int order[] = {2, 1, 3, 0};
        std::size_t step = 0;
        char mark = 'A';
        g2.open(mark);
        std::vector<int> got;
        std::vector<std::size_t> indices;
        auto completed = pf::as_completed(fs);
        for (auto it = completed.begin(); it != completed.end(); ++it) {
            indices.push_back(it.index());
            got.push_back(it->get() - mark);  // the task's number
            if (++step < 4) {
                gate* next[] = {&g0, &g1, &g2, &g3};
                next[order[step]]->open(++mark);
            }
        }
        EXPECT_EQ(got, (std::vector<int>{2, 1, 3, 0}));
        EXPECT_EQ(indices, (std::vector<std::size_t>{2, 1, 3, 0}));

        // wait_any: the index of the one that is ready; wait_any_for times out when none is.
        std::vector<pf::future<int>> two;
        two.push_back(p.submit(&through_gate, h0.fd[0], 0));
        two.push_back(w.ask(&actor::through_gate, h1.fd[0], 0));
        auto t0 = clock_type::now();
        EXPECT_EQ(pf::wait_any_for(two, 100ms), std::nullopt);
        EXPECT_GE(clock_type::now() - t0, 100ms);
        h1.open();
        EXPECT_EQ(pf::wait_any(two), 1u);
        EXPECT_EQ(two[1].get(), 'x');
        h0.open();
        EXPECT_EQ(pf::wait_any(two), 0u);  // a future already got is skipped
        EXPECT_EQ(two[0].get(), 'x');
        EXPECT_THROW(pf::wait_any(two), pf::error);  // none left to wait on

        // Different result types: the position among the arguments.
        pf::future<int> slow = p.submit(&through_gate, k.fd[0], 0);
        pf::future<long> quick = w.ask(&actor::twice, 5);
        EXPECT_EQ(pf::wait_any(slow, quick), 1u);
        EXPECT_EQ(quick.get(), 10L);
        k.open();
        EXPECT_EQ(slow.get(), 'x');
        w.join();
    });
}

TEST(future, a_death_arrives_as_worker_died_with_pid_and_signal_through_any_wait) {
    run_bounded("death", 60, +[] {
        PARAFORK_LEAK_CHECK();
        gate never;  // a future on it stays pending: only the death can end the waits below
        pf::pool p({.jobs = 1});
        pf::pool other({.jobs = 1});
        pf::process<actor> w;
        w.start();

        const int worker = p.submit(&my_pid).get();
        pf::future<int> f = p.submit(&die, 0);
        try {
            f.get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.pid(), worker);
            EXPECT_EQ(e.signal(), SIGKILL);
            EXPECT_EQ(e.task(), 1u);
        }

        // Through wait_any: the pool's task blocks for good; the process's backend dies, and
        // its pidfd, polled beside the pool's descriptors, ends the wait.
        std::vector<pf::future<int>> fs;
        fs.push_back(other.submit(&through_gate, never.fd[0], 0));
        fs.push_back(w.ask(&actor::die, 0));
        EXPECT_EQ(pf::wait_any(fs), 1u);
        try {
            fs[1].get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.pid(), w.pid());
            EXPECT_EQ(e.signal(), SIGKILL);
        }
        EXPECT_EQ(w.join().signal, SIGKILL);  // the future reported it: join does not throw

        // And the other way round: a pool worker's death ends a wait that a process shares.
        pf::process<actor> v;
        v.start();
        std::vector<pf::future<int>> gs;
        gs.push_back(v.ask(&actor::through_gate, never.fd[0], 0));
        gs.push_back(p.submit(&die, 0));
        for (auto& g : pf::as_completed(gs)) {
            EXPECT_THROW(g.get(), pf::worker_died);
            break;  // the process's ask never ends; its destructor stops it
        }
        EXPECT_TRUE(gs[0].valid());
        EXPECT_FALSE(gs[1].valid());
        v.terminate();
        EXPECT_THROW(gs[0].get(), pf::worker_died);
        other.terminate();
    });
}

TEST(future, a_future_that_outlives_its_executor_throws_a_clear_error) {
    run_bounded("outlive", 60, +[] {
        PARAFORK_LEAK_CHECK();
        gate never;
        pf::future<int> pending_pool, done_pool, pending_proc, done_proc;
        {
            pf::pool p({.jobs = 1, .grace = 50ms});
            done_pool = p.submit(&square, 4);
            ASSERT_TRUE(done_pool.wait_for(30s));
            pending_pool = p.submit(&through_gate, never.fd[0], 0);
        }
        {
            pf::process<actor> w(actor{}, {.grace = 50ms});
            w.start();
            done_proc = w.ask(&actor::square, 5);
            ASSERT_TRUE(done_proc.wait_for(30s));
            pending_proc = w.ask(&actor::through_gate, never.fd[0], 0);
        }
        // An answer that came before the end is still there.
        EXPECT_EQ(done_pool.get(), 16);
        EXPECT_EQ(done_proc.get(), 25);
        // One that did not come fails at once, naming why, in every kind of wait.
        try {
            pending_pool.wait_for(30s);
            ADD_FAILURE() << "no exception";
        } catch (const pf::error& e) {
            EXPECT_NE(std::string(e.what()).find("pool was stopped"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("task 1"), std::string::npos) << e.what();
        }
        EXPECT_THROW(pending_pool.ready(), pf::error);
        EXPECT_THROW(pending_pool.get(), pf::error);
        EXPECT_TRUE(pending_proc.ready());  // failed: the backend was terminated before answering
        try {
            pending_proc.get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_NE(std::string(e.what()).find("terminated before answering"), std::string::npos) << e.what();
            EXPECT_EQ(e.task(), 1u);
        }
        // wait_any over a future of a stopped pool: the same error, not a hang.
        pf::future<int> again;
        {
            pf::pool p({.jobs = 1, .grace = 50ms});
            again = p.submit(&through_gate, never.fd[0], 0);
        }
        std::vector<pf::future<int>> one;
        one.push_back(std::move(again));
        EXPECT_THROW(pf::wait_any(one), pf::error);
    });
}

TEST(future, ctrl_c_during_wait_any_stops_every_executor_and_throws_interrupted) {
    run_bounded("ctrl-c", 60, +[] {
        PARAFORK_LEAK_CHECK();
        gate never;
        pf::pool p({.jobs = 1, .grace = 50ms});
        pf::process<actor> w(actor{}, {.grace = 50ms});
        w.start();
        std::vector<pf::future<int>> fs;
        fs.push_back(p.submit(&through_gate, never.fd[0], 0));
        fs.push_back(w.ask(&actor::through_gate, never.fd[0], 0));
        {
            pf::testing::sigint_timer ctrl_c(200);
            EXPECT_THROW(pf::wait_any(fs), pf::interrupted);
        }
        EXPECT_FALSE(w.running());  // the process's backend was stopped too
        EXPECT_THROW(fs[1].get(), pf::worker_died);
        EXPECT_THROW(fs[0].get(), pf::error);
    });
}

// Ctrl-C stops the processes of a wait_any at once: the stop signal to all, one grace period
// shared by all, then SIGKILL; three processes deaf to SIGTERM take one grace, not three.
TEST(future, ctrl_c_during_wait_any_stops_all_processes_within_one_grace_period) {
    run_bounded("ctrl-c grace", 60, +[] {
        PARAFORK_LEAK_CHECK();
        constexpr auto grace = 1000ms;
        constexpr auto fire = 100ms;
        gate never;
        std::vector<pf::process<actor>> ws;
        std::vector<pf::future<int>> fs;
        for (int i = 0; i < 3; ++i) {
            ws.emplace_back(actor{}, pf::options{.grace = grace});
            ws.back().start();
            ASSERT_TRUE(ws.back().ask(&actor::deaf).get());
            fs.push_back(ws.back().ask(&actor::through_gate, never.fd[0], 0));
        }
        auto t0 = clock_type::now();
        {
            pf::testing::sigint_timer ctrl_c(fire.count());
            EXPECT_THROW(pf::wait_any(fs), pf::interrupted);
        }
        auto took = clock_type::now() - t0;
        EXPECT_LT(took, fire + grace * 2) << "the processes were stopped one after another";
        for (std::size_t i = 0; i < ws.size(); ++i) {
            EXPECT_FALSE(ws[i].running());
            ASSERT_TRUE(ws[i].exit_status());
            EXPECT_EQ(ws[i].exit_status()->signal, SIGKILL);  // deaf to SIGTERM: ended at the grace
            EXPECT_THROW(fs[i].get(), pf::worker_died);
        }
    });
}

// selector: many processes' messages, plain fds and a timeout at once.
#include <parafork/exec/process/process.hpp>
#include <parafork/exec/process/selector.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/signals.hpp>

#include "support/leak_check.hpp"
#include "support/sigint_timer.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <set>
#include <thread>
#include <vector>

namespace pf = parafork;
using namespace std::chrono_literals;
using pf::testing::run_bounded;


namespace {

struct job_done {
    int worker = 0, job = 0;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(worker, job);
    }
};

struct worker : pf::actor {
    int id = 0;
    explicit worker(int i = 0) : id(i) {}
    void work(int job, int ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        emit(job_done{id, job});
    }
    int square(int x) { return x * x; }
    void fail() { throw std::runtime_error("job failed"); }
    bool deaf() { return std::signal(SIGTERM, SIG_IGN) != SIG_ERR; }
};

TEST(selector, sixteen_processes_and_a_pipe) {
    run_bounded("16 + pipe", 60, +[] {
        PARAFORK_LEAK_CHECK();
        std::vector<pf::process<worker>> ws;
        pf::selector sel;
        for (int i = 0; i < 16; ++i) {
            ws.emplace_back(worker(i), pf::options{.name = "w" + std::to_string(i)});
            ws.back().start();
            EXPECT_EQ(sel.add(ws.back()), static_cast<std::size_t>(i));
        }
        auto pipe = pf::sys::make_pipe();
        std::size_t pipe_id = sel.add_fd(pipe.read.get());
        EXPECT_EQ(pipe_id, 16u);
        EXPECT_EQ(sel.size(), 17u);

        // Nothing is ready yet: the timeout passes.
        EXPECT_TRUE(sel.wait(10ms).empty());

        // Three jobs per worker, answered in varying order.
        for (int j = 0; j < 3; ++j)
            for (int i = 0; i < 16; ++i) ws[static_cast<std::size_t>(i)].call(&worker::work, j, (i * 7 + j * 3) % 11);
        std::set<std::pair<int, int>> done;
        bool pipe_seen = false;
        pf::sys::write_all(pipe.write.get(), "x", 1);
        while (done.size() < 48 || !pipe_seen) {
            auto& ready = sel.wait(10s);
            ASSERT_FALSE(ready.empty()) << "timed out";
            EXPECT_TRUE(std::is_sorted(ready.begin(), ready.end()));
            for (std::size_t id : ready) {
                if (id == pipe_id) {
                    EXPECT_TRUE(sel.revents(id) & POLLIN);
                    char c;
                    EXPECT_EQ(pf::sys::read_some(pipe.read.get(), &c, 1), 1);
                    pipe_seen = true;
                    continue;
                }
                // Everything queued for this worker, without blocking.
                while (auto m = ws[id].try_receive<job_done>()) {
                    EXPECT_EQ(m->worker, static_cast<int>(id));
                    EXPECT_TRUE(done.insert({m->worker, m->job}).second);
                }
            }
        }
        EXPECT_EQ(done.size(), 48u);
        for (auto& w : ws) EXPECT_TRUE(w.join().ok());
    });
}

TEST(selector, reports_a_dead_process_and_keeps_futures_moving) {
    run_bounded("dead", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<worker> a(worker(1)), b(worker(2));
        a.start();
        b.start();
        pf::selector sel;
        auto ia = sel.add(a);
        auto ib = sel.add(b);
        auto f = b.ask(&worker::square, 9);
        ::kill(a.pid(), SIGKILL);
        auto& ready = sel.wait(10s);
        ASSERT_EQ(ready.size(), 1u);
        EXPECT_EQ(ready[0], ia);
        EXPECT_FALSE(a.running());
        EXPECT_THROW(a.receive<job_done>(), pf::worker_died);
        sel.remove(ia);
        EXPECT_EQ(sel.size(), 1u);
        // b's answer was read while waiting; its call error is a ready message.
        b.call(&worker::fail);
        auto& r2 = sel.wait(10s);
        ASSERT_EQ(r2.size(), 1u);
        EXPECT_EQ(r2[0], ib);
        EXPECT_TRUE(f.ready());
        EXPECT_EQ(f.get(), 81);
        EXPECT_THROW(b.receive<job_done>(), pf::remote_error);
        b.join();
        a.join();
    });
}

TEST(selector, empty_selector_needs_a_timeout) {
    pf::selector sel;
    EXPECT_THROW(sel.wait(), pf::error);
    EXPECT_TRUE(sel.wait(1ms).empty());
}

TEST(selector, processes_never_started_need_a_timeout) {
    run_bounded("never started", 30, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<worker> a(worker{1}), b(worker{2});
        pf::selector sel;
        sel.add(a);
        sel.add(b);
        // Nothing could ever wake this wait: it throws instead of blocking forever.
        EXPECT_THROW(sel.wait(), pf::error);
        EXPECT_TRUE(sel.wait(1ms).empty());
        // With a started process beside them, it waits for that one.
        pf::process<worker> c(worker{3});
        c.start();
        std::size_t ic = sel.add(c);
        c.call(&worker::work, 7, 10);
        auto& ready = sel.wait();
        ASSERT_EQ(ready.size(), 1u);
        EXPECT_EQ(ready[0], ic);
        EXPECT_EQ(c.receive<job_done>().job, 7);
        c.join();
        // An ended process is ready at once, so a wait with no timeout does not block either.
        EXPECT_EQ(sel.wait().size(), 1u);
    });
}

// Ctrl-C during a wait stops every process at once: the stop signal to all, one grace period
// shared by all, then SIGKILL; four busy processes deaf to SIGTERM take one grace, not four.
TEST(selector, ctrl_c_stops_all_processes_within_one_grace_period) {
    run_bounded("ctrl-c", 60, +[] {
        PARAFORK_LEAK_CHECK();
        constexpr auto grace = 800ms;
        constexpr auto fire = 100ms;
        std::vector<pf::process<worker>> ws;
        pf::selector sel;
        for (int i = 0; i < 4; ++i) {
            ws.emplace_back(worker(i), pf::options{.grace = grace});
            ws.back().start();
            ASSERT_TRUE(ws.back().ask(&worker::deaf).get());
            ws.back().call(&worker::work, 0, 30'000);  // busy: it does not read its end of file
            sel.add(ws.back());
        }
        auto t0 = std::chrono::steady_clock::now();
        {
            pf::testing::sigint_timer ctrl_c(fire.count());
            EXPECT_THROW(sel.wait(10s), pf::interrupted);
        }
        auto took = std::chrono::steady_clock::now() - t0;
        EXPECT_LT(took, fire + grace * 5 / 2) << "the processes were stopped one after another";
        for (auto& w : ws) {
            EXPECT_FALSE(w.running());
            ASSERT_TRUE(w.exit_status());
            EXPECT_EQ(w.exit_status()->signal, SIGKILL);  // deaf to SIGTERM: ended at the grace
        }
    });
}

} // namespace

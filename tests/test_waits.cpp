// Every wait in the library wakes on its event: an idle pool worker, an idle process<Actor>
// backend, a channel receiver and the stages of a pipeline (and the parent reading its output)
// must not wake on a timer. A wait that re-checks every 20 ms wakes 100 times in 2 s; one that
// sleeps until its event wakes not at all. Counted from the kernel's context-switch counters.
#include <parafork/exec/thread/generator.hpp>
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/exec/core/zygote.hpp>
#include <parafork/exec/process/process.hpp>
#include <parafork/exec/pipeline/stages.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include "support/gated_source.hpp"
#include "support/leak_check.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/syscall.h>
#include <unistd.h>

namespace pf = parafork;
using namespace std::chrono_literals;
using pf::testing::run_bounded;

namespace {

// Sleeps of one thread: each time it blocks, its voluntary context-switch count goes up by one.
// Preemptions (nonvoluntary switches) are not wake-ups and vary with the machine's load, so
// they are not counted.
long switches_of_task(const std::string& status_path) {
    std::istringstream in(pf::testing::read_proc(status_path));
    std::string line;
    long n = 0;
    while (std::getline(in, line))
        if (line.rfind("voluntary_ctxt_switches:", 0) == 0)
            n += std::stol(line.substr(line.find(':') + 1));
    return n;
}

// Of every thread of `pid`.
long switches(pid_t pid) {
    long n = 0;
    std::error_code ec;
    auto dir = "/proc/" + std::to_string(pid) + "/task";
    for (auto& t : std::filesystem::directory_iterator(dir, ec))
        n += switches_of_task(t.path().string() + "/status");
    return n;
}

constexpr long max_wakeups = 5;  // in 2 s; a 20 ms poll would make 100, a 500 ms one 4 per thread
constexpr auto quiet = 2s;

// Lets the waits reach their sleep (spins and yields end within a millisecond), then counts.
template <class Count>
long wakeups_over_quiet(Count count) {
    std::this_thread::sleep_for(200ms);
    long before = count();
    std::this_thread::sleep_for(quiet);
    return count() - before;
}

int square(int x) { return x * x; }
int add1(int x) { return x + 1; }
pid_t my_pid() { return ::getpid(); }

struct echo : pf::actor {
    int twice(int x) const { return 2 * x; }
};

struct napper : pf::actor {
    void nap() {
        emit(1);  // the nap has begun
        std::this_thread::sleep_for(2s);
    }
    std::size_t take(const std::string& s) const { return s.size(); }
};

} // namespace

TEST(waits, an_idle_pool_worker_does_not_wake) {
    run_bounded("idle pool", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::options o;
        o.jobs = 1;
        pf::pool p(o);
        EXPECT_EQ(p.submit(&square, 3).get(), 9);
        std::vector<pid_t> pids{p.submit(&my_pid).get()};
        long n = wakeups_over_quiet([&] {
            long s = 0;
            for (pid_t pid : pids) s += switches(pid);
            return s;
        });
        EXPECT_LT(n, max_wakeups) << "idle pool workers woke up";
        EXPECT_EQ(p.submit(&square, 4).get(), 16);
    });
}

TEST(waits, an_idle_process_backend_does_not_wake) {
    run_bounded("idle process", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<echo> w;
        w.start();
        EXPECT_EQ(w.ask(&echo::twice, 3).get(), 6);
        long n = wakeups_over_quiet([&] { return switches(w.pid()); });
        EXPECT_LT(n, max_wakeups) << "an idle process<Actor> woke up";
        EXPECT_EQ(w.ask(&echo::twice, 4).get(), 8);
        w.join();
    });
}

TEST(waits, a_channel_receiver_sleeps_until_data_comes) {
    run_bounded("idle receiver", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::channel ch(4096), back(4096);
        pf::sys::child kid(pf::sys::fork_call([&] { back.send(ch.receive<int>() + 1); }));
        long n = wakeups_over_quiet([&] { return switches(kid.pid()); });
        EXPECT_LT(n, max_wakeups) << "a receiver on an empty channel woke up";
        ch.send(41);
        EXPECT_EQ(back.receive<int>(), 42);
        EXPECT_TRUE(kid.wait().ok());
    });
}

TEST(waits, a_channel_sender_sleeps_while_the_ring_is_full) {
    run_bounded("idle sender", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::channel ch(4096), done(4096);
        pf::sys::child kid(pf::sys::fork_call([&] {
            const std::string block(1000, 'x');
            for (int i = 0; i < 16; ++i) ch.send_bytes(block);  // 16 KB into a 4 KiB ring
            done.send(1);
        }));
        long n = wakeups_over_quiet([&] { return switches(kid.pid()); });
        EXPECT_LT(n, max_wakeups) << "a sender on a full channel woke up";
        std::string buf;
        for (int i = 0; i < 16; ++i) ch.receive_bytes(buf);
        EXPECT_EQ(done.receive<int>(), 1);
        EXPECT_TRUE(kid.wait().ok());
    });
}

TEST(waits, idle_pipeline_stages_and_the_reading_parent_do_not_wake) {
    run_bounded("idle pipeline", 60, +[] {
        PARAFORK_LEAK_CHECK();
        auto gate = pf::sys::make_pipe();
        int gate_fd = gate.read.get();
        pf::sys::private_fd gate_write(std::move(gate.write));
        auto p = pf::ez(pf::testing::gated_source(gate_fd), add1, pf::workers(2, add1));
        auto items = p.items();  // starts the stages
        gate.read.reset();
        std::atomic<pid_t> reader_tid{0};
        std::atomic<long> sum{0};
        std::thread reader([&] {
            reader_tid = static_cast<pid_t>(::syscall(SYS_gettid));
            for (int v : items) sum += v;
        });
        while (reader_tid == 0) std::this_thread::sleep_for(1ms);
        pf::sys::write_all(gate_write.get(), "a", 1);
        while (sum == 0) std::this_thread::sleep_for(1ms);  // traffic went all the way through
        auto pids = p.pids();
        std::string reader_status = "/proc/self/task/" + std::to_string(reader_tid.load()) + "/status";
        long stages = 0, parent = 0;
        std::vector<long> before;
        std::this_thread::sleep_for(200ms);
        for (pid_t pid : pids) before.push_back(switches(pid));
        long parent_before = switches_of_task(reader_status);
        std::this_thread::sleep_for(quiet);
        for (std::size_t i = 0; i < pids.size(); ++i) {
            long n = switches(pids[i]) - before[i];
            EXPECT_LT(n, max_wakeups) << "stage process " << pids[i] << " woke up";
            stages += n;
        }
        parent = switches_of_task(reader_status) - parent_before;
        EXPECT_LT(parent, max_wakeups) << "the parent waiting for output woke up";
        gate_write.reset();  // the source sees EOF and the graph finishes
        reader.join();
        EXPECT_EQ(sum.load(), 'a' + 2);
        (void)stages;
    });
}

// A call whose frame does not fit in the backend's ring waits for room; the backend frees it
// only after a 2 s call. The frontend sleeps until the backend says it made room, not in
// 50 ms slices.
TEST(waits, a_call_waiting_for_room_in_a_full_ring_does_not_wake) {
    run_bounded("full ring", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<napper> w;
        w.start();
        w.call(&napper::nap);
        EXPECT_EQ(w.receive<int>(), 1);
        const std::string big(300 * 1024, 'x');  // more than the 256 KiB ring
        auto self = "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/status";
        long before = switches_of_task(self);
        auto f = w.ask(&napper::take, big);  // returns once the whole frame is in the ring
        EXPECT_LT(switches_of_task(self) - before, max_wakeups);
        EXPECT_EQ(f.get(), big.size());
        w.join();
    });
}

// join waits for each worker's worker_exit; it sleeps until a worker exits (pidfd), not in
// 100 ms slices.
TEST(waits, a_pool_joining_workers_that_take_their_time_does_not_wake) {
    run_bounded("pool join", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::options o;
        o.jobs = 2;
        o.worker_exit = [] { std::this_thread::sleep_for(2s); };
        pf::pool p(o);
        EXPECT_EQ(p.submit(&square, 3).get(), 9);
        p.close();
        auto self = "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/status";
        long before = switches_of_task(self);
        p.join();
        // Each worker's exit wakes the joiner once; anything beyond that is a timer.
        EXPECT_LT(switches_of_task(self) - before, max_wakeups + o.jobs);
    });
}

// A parent waiting on a generator whose producer is slow sleeps until a value or the producer's
// exit, not in 50 ms slices.
TEST(waits, a_parent_waiting_on_a_slow_generator_does_not_wake) {
    run_bounded("generator next", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::generator<int> g([](pf::yield<int>& y) {
            std::this_thread::sleep_for(2s);
            y(7);
        });
        g.start();
        auto self = "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/status";
        long before = switches_of_task(self);
        auto v = g.next();
        EXPECT_LT(switches_of_task(self) - before, max_wakeups);
        ASSERT_TRUE(v);
        EXPECT_EQ(*v, 7);
        EXPECT_FALSE(g.next());
        g.join();
    });
}

// A thread waiting for a zygote's worker sleeps until the worker's exit is reported, not in
// 10 ms slices.
TEST(waits, a_thread_waiting_for_a_zygote_worker_does_not_wake) {
    run_bounded("zygote wait", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::zygote z;
        pid_t w = z.spawn(+[](std::span<const int>) { std::this_thread::sleep_for(2s); }, {});
        auto self = "/proc/self/task/" + std::to_string(::syscall(SYS_gettid)) + "/status";
        long before = switches_of_task(self);
        EXPECT_TRUE(z.wait(w).ok());
        EXPECT_LT(switches_of_task(self) - before, max_wakeups);
    });
}

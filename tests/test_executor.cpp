// The executor seam on its own: jobs pushed as bytes, answers and deaths received through a
// sink, with nothing of pool, forked or the engine's own headers. This is what a binding for
// another language or another transport sees; if it cannot run work through it, the seam is
// broken.
#include <parafork/error.hpp>
#include <parafork/exec/core/executor.hpp>

#include "support/leak_check.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <unistd.h>

namespace pf = parafork;
namespace pd = parafork::detail;
using pf::testing::run_bounded;

namespace {

// Shared with every worker (mapped before they fork): what the workers tell the test.
struct shared_notes {
    std::atomic<int> died_pid{0};  // the worker that ran item `dies_at`, just before it died
    std::atomic<int> deaths{0};    // how many times item `dies_at` has killed its worker
};

shared_notes* notes() {
    static auto* p = [] {
        void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) throw std::runtime_error("mmap");
        return new (m) shared_notes();
    }();
    return p;
}

constexpr std::uint64_t dies_at = 13, throws_at = 7;

// Items and values are 8-byte integers, as the caller's own encoding: the executor never looks
// inside them. Item x answers x * x + 1; item 7 throws; item 13 kills its worker (the first
// time only, when `die_once`).
struct square_job {
    bool die_once = false;
    unsigned sleep_us = 0;  // each item's own cost

    static void run(void* ctx, pd::job_kind kind, std::uint64_t first, std::uint32_t count,
                    std::string_view body, pd::kid_output& out) {
        auto& self = *static_cast<square_job*>(ctx);
        if (kind != pd::job_kind::items || body.size() != count * sizeof(std::uint64_t))
            throw std::runtime_error("unexpected job");
        for (std::uint32_t k = 0; k < count; ++k) {
            pd::put_start(out, first + k);
            std::uint64_t x;
            std::memcpy(&x, body.data() + k * sizeof x, sizeof x);
            if (self.sleep_us) ::usleep(self.sleep_us);
            try {
                if (x == throws_at) throw std::runtime_error("seven is not welcome");
                if (x == dies_at && (!self.die_once || notes()->deaths.load() == 0)) {
                    notes()->died_pid = static_cast<int>(::getpid());
                    notes()->deaths.fetch_add(1);
                    ::raise(SIGKILL);
                }
                std::uint64_t y = x * x + 1;
                pd::put_value(out, first + k, {reinterpret_cast<const char*>(&y), sizeof y});
            } catch (...) {
                pd::put_failure(out, first + k);
            }
        }
    }
};

struct recording_sink final : pd::executor_sink {
    std::map<std::uint64_t, std::uint64_t> values;
    std::map<std::uint64_t, pd::failure_info> failures;
    void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override {
        EXPECT_EQ(bytes.size(), count * sizeof(std::uint64_t));
        for (std::uint32_t k = 0; k < count; ++k) {
            std::uint64_t y;
            std::memcpy(&y, bytes.data() + k * sizeof y, sizeof y);
            EXPECT_TRUE(values.emplace(first + k, y).second) << "item " << first + k << " twice";
        }
    }
    void on_failure(std::uint64_t index, const pd::failure_info& f) override {
        EXPECT_TRUE(failures.emplace(index, f).second) << "item " << index << " failed twice";
    }
};

// Items [first, first + count) as one job of encoded integers.
pd::job items_job(std::uint64_t first, std::uint32_t count) {
    pd::job j;
    j.kind = pd::job_kind::items;
    j.first = first;
    j.count = count;
    for (std::uint32_t k = 0; k < count; ++k) {
        std::uint64_t x = first + k;
        j.offsets.push_back(static_cast<std::uint32_t>(j.body.size()));
        j.body.append(reinterpret_cast<const char*>(&x), sizeof x);
    }
    return j;
}

constexpr std::uint64_t total = 40;

void run_all(pd::executor& ex, recording_sink& sink) {
    for (std::uint64_t first = 0; first < total; first += 10) ex.push(items_job(first, 10));
    ex.kick();
    while (ex.pump(sink)) {
    }
}

} // namespace

TEST(Executor, ValuesFailuresAndADeathWithPidAndSignal) {
    PARAFORK_LEAK_CHECK();
    run_bounded("executor seam", 60, [] {
        notes();  // mapped before the workers fork
        pf::options o;
        o.jobs = 2;
        square_job ctx;
        auto ex = pd::make_local_executor(o, &square_job::run, &ctx);
        ASSERT_EQ(ex->size(), 2u);
        EXPECT_EQ(ex->counters().workers, 2u);
        recording_sink sink;
        run_all(*ex, sink);

        ASSERT_EQ(sink.values.size() + sink.failures.size(), total);
        for (std::uint64_t x = 0; x < total; ++x) {
            if (x == throws_at || x == dies_at) continue;
            ASSERT_TRUE(sink.values.count(x)) << "no value for item " << x;
            EXPECT_EQ(sink.values[x], x * x + 1);
        }
        ASSERT_TRUE(sink.failures.count(throws_at));
        const auto& thrown = sink.failures[throws_at];
        EXPECT_EQ(thrown.what, pd::failure_info::kind::remote);
        EXPECT_NE(thrown.type_name.find("runtime_error"), std::string::npos) << thrown.type_name;
        EXPECT_EQ(thrown.message, "seven is not welcome");
        EXPECT_GT(thrown.pid, 0);
        EXPECT_NE(thrown.pid, ::getpid());

        ASSERT_TRUE(sink.failures.count(dies_at));
        const auto& died = sink.failures[dies_at];
        EXPECT_EQ(died.what, pd::failure_info::kind::died);
        EXPECT_EQ(died.signal, SIGKILL);
        EXPECT_EQ(died.pid, notes()->died_pid.load());  // the very worker that ran it
        EXPECT_EQ(notes()->deaths.load(), 1);  // no retries asked for: not run again

        auto c = ex->counters();
        EXPECT_EQ(c.answered, total);
        EXPECT_EQ(c.failed, 2u);
        EXPECT_EQ(c.retried, 0u);
        EXPECT_EQ(c.queued, 0u);
        EXPECT_EQ(c.in_flight, 0u);
        EXPECT_EQ(c.workers, 2u);  // the dead worker was replaced

        ex->join(sink);
        EXPECT_EQ(ex->counters().workers, 0u);
    });
}

TEST(Executor, RetriedItemIsCountedAndAnswered) {
    PARAFORK_LEAK_CHECK();
    run_bounded("executor seam retries", 60, [] {
        notes();
        pf::options o;
        o.jobs = 2;
        o.retries = 1;
        square_job ctx;
        ctx.die_once = true;
        auto ex = pd::make_local_executor(o, &square_job::run, &ctx);
        recording_sink sink;
        run_all(*ex, sink);
        EXPECT_EQ(notes()->deaths.load(), 1);
        ASSERT_TRUE(sink.values.count(dies_at));
        EXPECT_EQ(sink.values[dies_at], dies_at * dies_at + 1);
        EXPECT_EQ(sink.failures.size(), 1u);  // item 7's exception only
        auto c = ex->counters();
        EXPECT_EQ(c.answered, total);
        EXPECT_EQ(c.failed, 1u);
        EXPECT_EQ(c.retried, 1u);
        ex->join(sink);
    });
}

// Chunk sizes follow what the workers say their jobs cost, not the caller's wall clock (which
// counts round trips: on a busy machine it kept chunks small). Every finished job says it.
TEST(Executor, WorkersSayWhatTheirJobsCost) {
    PARAFORK_LEAK_CHECK();
    run_bounded("executor seam costs", 60, [] {
        pf::options o;
        o.jobs = 2;
        square_job ctx;
        ctx.sleep_us = 2'000;
        auto ex = pd::make_local_executor(o, &square_job::run, &ctx);
        EXPECT_EQ(ex->counters().timed, 0u);
        recording_sink sink;
        ex->push(items_job(20, 10));  // no item here throws or dies
        ex->push(items_job(30, 10));
        while (ex->pump(sink)) {
        }
        ASSERT_EQ(sink.values.size(), 20u);
        auto c = ex->counters();
        EXPECT_EQ(c.timed, 20u);
        EXPECT_GE(c.busy_ns, 20u * 2'000'000u);  // at least the items' own sleeps
        ex->join(sink);
    });
}

TEST(Executor, TerminateStopsEveryWorkerAndForgetsTheQueue) {
    PARAFORK_LEAK_CHECK();
    run_bounded("executor seam terminate", 60, [] {
        pf::options o;
        o.jobs = 2;
        square_job ctx;
        auto ex = pd::make_local_executor(o, &square_job::run, &ctx);
        for (std::uint64_t first = 0; first < total; first += 10) ex->push(items_job(first, 10));
        EXPECT_EQ(ex->counters().queued, 4u);
        ex->terminate();
        EXPECT_TRUE(ex->stopped());
        auto c = ex->counters();
        EXPECT_EQ(c.workers, 0u);
        EXPECT_EQ(c.queued, 0u);
        recording_sink sink;
        EXPECT_THROW(ex->pump(sink), pf::error);
    });
}

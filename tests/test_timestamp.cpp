// parafork::timestamp: monotonic, and comparable across processes.

#include <parafork/ipc/channel.hpp>
#include <parafork/ipc/timestamp.hpp>
#include <parafork/sys/process.hpp>

#include "support/leak_check.hpp"

#include <ctime>

namespace pf = parafork;

TEST(timestamp, is_monotonic) {
    pf::timestamp_t prev = pf::timestamp();
    for (int i = 0; i < 100000; ++i) {
        pf::timestamp_t t = i % 2 ? pf::timestamp() : pf::timestamp_serialized();
        ASSERT_GE(t, prev);
        prev = t;
    }
}

// The documented contract: CLOCK_MONOTONIC nanoseconds (so it agrees with any other process's
// reading of that clock, whatever reads it).
TEST(timestamp, is_clock_monotonic_in_nanoseconds) {
    auto mono = [] {
        timespec ts;
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        return static_cast<pf::timestamp_t>(ts.tv_sec) * 1'000'000'000u + static_cast<pf::timestamp_t>(ts.tv_nsec);
    };
    for (int i = 0; i < 1000; ++i) {
        pf::timestamp_t a = mono();
        pf::timestamp_t t = i % 2 ? pf::timestamp() : pf::timestamp_serialized();
        pf::timestamp_t b = mono();
        ASSERT_LE(a, t);
        ASSERT_LE(t, b);
    }
}

TEST(timestamp, orders_events_across_processes) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("two children", 30, [] {
        pf::channel ch(4096);
        pf::timestamp_t before = pf::timestamp();
        pf::sys::child a(pf::sys::fork_call([&] { ch.send(pf::timestamp()); }));
        EXPECT_TRUE(a.wait().ok());
        pf::timestamp_t between = pf::timestamp();
        pf::sys::child b(pf::sys::fork_call([&] { ch.send(pf::timestamp()); }));
        EXPECT_TRUE(b.wait().ok());
        auto ta = ch.receive<pf::timestamp_t>();
        auto tb = ch.receive<pf::timestamp_t>();
        // a ran before `between`, b after it: the readings say so.
        EXPECT_LE(before, ta);
        EXPECT_LE(ta, between);
        EXPECT_LE(between, tb);
    });
}

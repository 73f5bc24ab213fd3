// parafork::timestamp: monotonic, and comparable across processes.

#include <parafork/ipc/channel.hpp>
#include <parafork/ipc/timestamp.hpp>
#include <parafork/sys/process.hpp>

#include "support/leak_check.hpp"

namespace pf = parafork;

TEST(timestamp, is_monotonic) {
    pf::timestamp_t prev = pf::timestamp();
    for (int i = 0; i < 100000; ++i) {
        pf::timestamp_t t = i % 2 ? pf::timestamp() : pf::timestamp_serialized();
        ASSERT_GE(t, prev);
        prev = t;
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

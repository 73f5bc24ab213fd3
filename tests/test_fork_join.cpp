#include <parafork/error.hpp>
#include <parafork/exec/coproc/fork_join.hpp>
#include <parafork/sys/memory.hpp>

#include <gtest/gtest.h>

#include "support/grandchild.hpp"
#include "support/leak_check.hpp"
#include "support/sigint_timer.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace pf = parafork;

TEST(NSplit, BalancedAndCovering) {
    auto s = pf::nsplit(10, 3);
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(s[0], (pf::slice{0, 4}));
    EXPECT_EQ(s[1], (pf::slice{4, 7}));
    EXPECT_EQ(s[2], (pf::slice{7, 10}));
    auto few = pf::nsplit(2, 4);  // more parts than items: some are empty
    ASSERT_EQ(few.size(), 4u);
    EXPECT_EQ(few[1], (pf::slice{1, 2}));
    EXPECT_TRUE(few[3].empty());
    std::size_t total = 0;
    for (auto& sl : pf::nsplit(1000003, 7)) {
        total += sl.size();
        std::size_t n = 0;
        for (std::size_t i : sl) n += (i >= sl.start && i < sl.stop);
        EXPECT_EQ(n, sl.size());
    }
    EXPECT_EQ(total, 1000003u);
    EXPECT_THROW(pf::nsplit(10, 0), std::invalid_argument);
}

TEST(ForkJoin, ResultsInPartOrderFromParentData) {
    PARAFORK_LEAK_CHECK();
    std::vector<int> data(100000);
    std::iota(data.begin(), data.end(), 1);  // made before the fork: children read it directly
    auto sums = pf::fork_join(pf::nsplit(data.size(), 4), [&](std::size_t, pf::slice s) {
        long long sum = 0;
        for (std::size_t i : s) sum += data[i];
        return sum;
    });
    ASSERT_EQ(sums.size(), 4u);
    EXPECT_EQ(std::accumulate(sums.begin(), sums.end(), 0LL), 100000LL * 100001 / 2);
    auto strings = pf::fork_join(pf::nsplit(3, 3), [](std::size_t k, pf::slice) {
        return std::vector<std::string>(k + 1, "part" + std::to_string(k));
    });
    EXPECT_EQ(strings[2], (std::vector<std::string>(3, "part2")));
}

TEST(ForkJoin, VoidWorkRunsEveryPart) {
    PARAFORK_LEAK_CHECK();
    pf::sys::mapping shared(-1, 4096);
    auto* hits = static_cast<std::atomic<int>*>(shared.data());
    pf::fork_join(pf::nsplit(5, 5), [&](std::size_t, pf::slice) { hits->fetch_add(1); });
    EXPECT_EQ(hits->load(), 5);
}

TEST(ForkJoin, AnExceptionIsRemoteErrorWithItsTypeMessageAndPart) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("remote_error", 30, [] {
        try {
            pf::fork_join(pf::nsplit(3, 3), [](std::size_t k, pf::slice) {
                if (k == 1) throw std::out_of_range("part one fails");
                if (k == 2) ::sleep(20);  // stopped once part 1 has failed
                return 0;
            });
            ADD_FAILURE() << "no error";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.message(), "part one fails");
            EXPECT_NE(e.type_name().find("out_of_range"), std::string::npos) << e.type_name();
            EXPECT_EQ(e.task(), 1u);
            EXPECT_GT(e.pid(), 0);
        }
    });
}

TEST(ForkJoin, ADeathIsWorkerDiedWithPidSignalAndPart) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("worker_died", 30, [] {
        try {
            pf::fork_join(pf::nsplit(3, 3), [](std::size_t k, pf::slice) {
                if (k == 2) ::raise(SIGSEGV);
                if (k == 0) ::sleep(20);  // stopped once part 2 has died
            });
            ADD_FAILURE() << "no error";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGSEGV);
            EXPECT_EQ(e.task(), 2u);
            EXPECT_GT(e.pid(), 0);
        }
        try {
            pf::fork_join(pf::nsplit(2, 2), [](std::size_t k, pf::slice) {
                if (k == 1) ::_exit(5);
                return 1;
            });
            ADD_FAILURE() << "no error";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), 0);
            EXPECT_EQ(e.exit_code(), 5);
            EXPECT_EQ(e.task(), 1u);
        }
    });
}

TEST(ForkJoin, ADeathIsReportedAtOnceThoughAGrandchildHoldsThePipe) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("grandchild", 20, [] {
        pf::testing::lingering_grandchild g;
        try {
            pf::fork_join(pf::nsplit(2, 2), [&g](std::size_t k, pf::slice) {
                if (k == 0) g.leave_and_die(30);
                return 7;
            });
            ADD_FAILURE() << "no error";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
            EXPECT_EQ(e.task(), 0u);
            EXPECT_GT(e.pid(), 0);
        }
        EXPECT_TRUE(g.alive());  // reported while the grandchild still holds the pipe
    });
}

TEST(ForkJoin, CtrlCStopsEveryPart) {
    PARAFORK_LEAK_CHECK();
    pf::testing::sigint_timer ctrl_c(100);
    EXPECT_THROW(pf::fork_join(pf::nsplit(2, 2), [](std::size_t, pf::slice) { ::sleep(30); }),
                 pf::interrupted);
}

// Ctrl-C stops every part within one grace period in all, not one per part: twenty parts that
// ignore SIGTERM took twenty grace periods (4 s) when they were stopped one by one.
TEST(ForkJoin, CtrlCStopsPartsThatIgnoreSigtermInOneGracePeriod) {
    PARAFORK_LEAK_CHECK();
    // Ctrl-C comes once every part has set SIGTERM aside: the last one to do so sends it.
    pf::sys::mapping shared(-1, 4096);
    auto* ready = static_cast<std::atomic<int>*>(shared.data());
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(pf::fork_join(pf::nsplit(20, 20),
                               [&](std::size_t, pf::slice) {
                                   ::signal(SIGTERM, SIG_IGN);
                                   if (ready->fetch_add(1) + 1 == 20) ::kill(::getppid(), SIGINT);
                                   ::sleep(30);
                               }),
                 pf::interrupted);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));  // not the 30 s
}

TEST(ForkJoin, CtrlCWhilePartsAreStillForkedIsInterrupted) {
    PARAFORK_LEAK_CHECK();
    // The first part sends Ctrl-C while the parent is forking the others: the call stops the
    // parts it started and throws, instead of the parent dying of SIGINT.
    pf::testing::run_bounded("ctrl-c while forking", 60, [] {
        bool interrupted = false;
        try {
            pf::fork_join(pf::nsplit(50, 50), [](std::size_t k, pf::slice) {
                if (k == 0) ::kill(::getppid(), SIGINT);
                ::sleep(30);
            });
        } catch (const pf::interrupted&) {
            interrupted = true;
        }
        if (!interrupted) throw std::runtime_error("fork_join returned without interrupted");
    });
}

TEST(ForkJoin, PartsDoNotHoldEarlierPartsResultPipes) {
    PARAFORK_LEAK_CHECK();
    // Each part reports how many fds it has: a part that inherited the read ends of the parts
    // forked before it would see more than the first part does.
    auto counts = pf::fork_join(pf::nsplit(4, 4), [](std::size_t, pf::slice) {
        return pf::testing::open_fds().size();
    });
    ASSERT_EQ(counts.size(), 4u);
    for (std::size_t k = 1; k < counts.size(); ++k) EXPECT_EQ(counts[k], counts[0]) << "part " << k;
}

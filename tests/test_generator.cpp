// parafork::generator: streaming with read-ahead, blocking and polling reads, the producer's
// exception at its item, a killed producer, extract/merge, and join before consumption.

#include <parafork/exec/generator.hpp>
#include <parafork/sys/signals.hpp>

#include "support/leak_check.hpp"

#include <csignal>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
using namespace std::chrono_literals;

namespace {


struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

int g_counter = 0;

} // namespace

TEST(generator, streams_every_value_in_order) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("stream", 60, [] {
        pf::generator<std::string> g([](pf::yield<std::string>& y) {
            for (int i = 0; i < 100000; ++i) y(std::to_string(i));
        }, 64 * 1024);
        EXPECT_THROW(g.next(), pf::error);  // not started
        g.start();
        for (int i = 0; i < 100000; ++i) {
            auto v = g.next();
            ASSERT_TRUE(v.has_value());
            ASSERT_EQ(*v, std::to_string(i));
        }
        EXPECT_FALSE(g.next().has_value());
        EXPECT_FALSE(g.next().has_value());
        EXPECT_TRUE(g.done());
        g.join();
        EXPECT_EQ(g.exit_status(), 0);
        EXPECT_FALSE(g.is_alive());
    });
}

TEST(generator, try_next_does_not_wait) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("try_next", 60, [] {
        pf::generator<int> g([](pf::yield<int>& y) {
            for (int i = 0; i < 5; ++i) {
                std::this_thread::sleep_for(10ms);
                y(i);
            }
        });
        g.start();
        std::vector<int> got;
        int empty_polls = 0;
        while (!g.done()) {
            if (auto v = g.try_next()) got.push_back(*v);
            else {
                ++empty_polls;
                std::this_thread::sleep_for(1ms);
            }
        }
        EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4}));
        EXPECT_GT(empty_polls, 0);
        EXPECT_TRUE(g.try_join() || (g.join(), true));
    });
}

TEST(generator, an_exception_is_rethrown_at_its_item) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("exception", 60, [] {
        pf::generator<int> g([](pf::yield<int>& y) {
            y(0);
            y(1);
            y(2);
            throw my_error("after three");
        });
        g.start();
        for (int i = 0; i < 3; ++i) EXPECT_EQ(g.next(), i);
        try {
            g.next();
            ADD_FAILURE() << "next did not throw";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.type_name(), "(anonymous namespace)::my_error");
            EXPECT_EQ(e.message(), "after three");
        }
        EXPECT_FALSE(g.next().has_value());
        EXPECT_TRUE(g.done());
        g.join();  // the exception was next()'s to report
        EXPECT_EQ(g.exit_status(), 0);
    });
}

TEST(generator, a_killed_producer_is_worker_died) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("killed", 60, [] {
        pf::generator<int> g([](pf::yield<int>& y) {
            for (int i = 0;; ++i) y(i);
        }, 4096);
        // A sibling forked later holds an end of g's channel too: g must not wait for it.
        pf::generator<int> sibling([](pf::yield<int>&) { ::pause(); });
        g.start();
        sibling.start();
        EXPECT_EQ(g.next(), 0);
        ::kill(g.pid(), SIGKILL);
        int n = 1;
        try {
            while (auto v = g.next()) EXPECT_EQ(*v, n++);
            ADD_FAILURE() << "next did not throw";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
        }
        EXPECT_THROW(g.join(), pf::worker_died);
        EXPECT_EQ(g.exit_status(), -SIGKILL);
        EXPECT_TRUE(sibling.is_alive());
    });
}

TEST(generator, extract_and_merge) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("merge", 60, [] {
        g_counter = 0;
        pf::generator<int> g(
            [](pf::yield<int>& y) {
                for (int i = 0; i < 10; ++i) {
                    ++g_counter;
                    y(i);
                }
            },
            [] { return g_counter; }, [](int n) { g_counter += n; });
        g.start();
        int sum = 0;
        while (auto v = g.next()) sum += *v;
        EXPECT_EQ(sum, 45);
        EXPECT_EQ(g_counter, 0);
        g.join();
        EXPECT_EQ(g_counter, 10);
    });
}

TEST(generator, join_before_consuming_keeps_the_values) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("join first", 60, [] {
        pf::generator<int> g([](pf::yield<int>& y) {
            for (int i = 0; i < 5000; ++i) y(i);
        }, 1024);  // far less than the values: the producer must wait for the join
        g.start();
        g.join();
        EXPECT_FALSE(g.is_alive());
        for (int i = 0; i < 5000; ++i) ASSERT_EQ(g.next(), i);
        EXPECT_FALSE(g.next().has_value());
    });
}

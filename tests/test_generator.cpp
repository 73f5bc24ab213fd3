// parafork::generator: streaming with read-ahead, blocking and polling reads, the producer's
// exception at its item, a killed producer, extract/merge, and join before consumption.

#include <parafork/exec/thread/generator.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/signals.hpp>

#include "support/grandchild.hpp"
#include "support/leak_check.hpp"

#include <atomic>
#include <csignal>
#include <fcntl.h>
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
        while (!g.try_join()) std::this_thread::sleep_for(1ms);  // done; its exit may lag
        EXPECT_EQ(g.exit_status(), 0);
    });
}

TEST(generator, try_join_is_false_while_the_producer_runs) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("try_join", 60, [] {
        pf::channel go(4096);
        pf::generator<int> g([&](pf::yield<int>& y) {
            y(1);
            (void)go.receive<int>();  // the test says when the producer may finish
            y(2);
        });
        g.start();
        EXPECT_EQ(g.next(), 1);
        for (int i = 0; i < 5; ++i) {
            EXPECT_FALSE(g.try_join());
            EXPECT_TRUE(g.is_alive());
            EXPECT_FALSE(g.try_next().has_value());
            std::this_thread::sleep_for(10ms);
        }
        go.send(1);
        while (!g.try_join()) std::this_thread::sleep_for(1ms);
        EXPECT_TRUE(g.joined());
        EXPECT_FALSE(g.is_alive());
        EXPECT_EQ(g.next(), 2);  // read ahead by try_join, kept for next()
        EXPECT_FALSE(g.next().has_value());
        EXPECT_TRUE(g.try_join());
    });
}

TEST(generator, the_producer_reads_ahead_without_a_round_trip_per_item) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("read-ahead", 60, [] {
        pf::sys::mapping flag(-1, 4096);  // shared with the child: set once it yielded everything
        auto* finished = reinterpret_cast<std::atomic<std::uint32_t>*>(flag.data());
        constexpr int n = 1000;
        pf::generator<int> g([&](pf::yield<int>& y) {
            for (int i = 0; i < n; ++i) y(i);
            finished->store(1);
        });
        g.start();
        // No next() yet: the producer got through every value on its own.
        while (finished->load() == 0) std::this_thread::sleep_for(1ms);
        for (int i = 0; i < n; ++i) ASSERT_EQ(g.next(), i);
        EXPECT_FALSE(g.next().has_value());
        g.join();
        EXPECT_EQ(g.exit_status(), 0);
    });
}

TEST(generator, join_rethrows_an_exception_the_consumer_never_reached) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("join throws", 60, [] {
        pf::generator<int> g([](pf::yield<int>& y) {
            y(0);
            y(1);
            throw my_error("nobody called next");
        });
        g.start();
        try {
            g.join();
            ADD_FAILURE() << "join did not throw";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.type_name(), "(anonymous namespace)::my_error");
            EXPECT_EQ(e.message(), "nobody called next");
        }
        EXPECT_EQ(g.exit_status(), 0);  // the producer reported it and exited normally
        EXPECT_THROW(g.join(), pf::remote_error);  // again, at once
        EXPECT_THROW(g.try_join(), pf::remote_error);
        // The values before it are still next()'s, then the exception at its item; after
        // that, join has nothing left to report.
        EXPECT_EQ(g.next(), 0);
        EXPECT_EQ(g.next(), 1);
        EXPECT_THROW(g.next(), pf::remote_error);
        EXPECT_FALSE(g.next().has_value());
        EXPECT_NO_THROW(g.join());
        EXPECT_TRUE(g.try_join());
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
        EXPECT_EQ(g.status().signal, SIGKILL);
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

// join() keeps what nobody took, but not without bound: a producer that never ends is stopped
// once 64 MiB wait, and join says so; what was kept is still next()'s, then the same error.
TEST(generator, join_holds_a_bounded_amount_of_values_nobody_took) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("endless producer joined", 60, [] {
        pf::generator<std::string> g([](pf::yield<std::string>& y) {
            for (;;) y(std::string(64 * 1024, 'v'));
        });
        g.start();
        try {
            g.join();
            ADD_FAILURE() << "join returned";
        } catch (const pf::error& e) {
            EXPECT_NE(std::string(e.what()).find("64 MiB"), std::string::npos) << e.what();
        }
        EXPECT_FALSE(g.is_alive());
        std::size_t kept = 0;
        try {
            while (auto v = g.next()) {
                ASSERT_EQ(v->size(), 64u * 1024);
                ++kept;
            }
            ADD_FAILURE() << "next() ended without the error";
        } catch (const pf::error&) {
        }
        EXPECT_GE(kept, 1024u);  // 64 MiB of 64 KiB values
        EXPECT_LE(kept, 1100u);
    });
}

TEST(generator, a_death_is_reported_at_once_though_a_grandchild_holds_the_channel) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("grandchild", 20, [] {
        pf::testing::lingering_grandchild g;
        pf::generator<int> gen([&g](pf::yield<int>& y) {
            y(1);
            g.leave_and_die(30);
        });
        gen.start();
        ASSERT_GT(g.pid(), 0);
        EXPECT_EQ(gen.next(), 1);
        try {
            gen.next();
            ADD_FAILURE() << "next did not throw";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.pid(), gen.pid());
            EXPECT_EQ(e.signal(), SIGKILL);
        }
        EXPECT_THROW(gen.join(), pf::worker_died);
        EXPECT_TRUE(g.alive());  // reported while the grandchild still holds the channel
    });
}

TEST(generator, a_moved_from_generator_throws_not_started) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("moved from", 30, [] {
        pf::generator<int> a([](pf::yield<int>& y) { y(5); });
        a.start();
        pf::generator<int> b(std::move(a));
        EXPECT_THROW(a.next(), pf::error);
        EXPECT_THROW(a.try_next(), pf::error);
        EXPECT_THROW(a.join(), pf::error);
        EXPECT_THROW(a.try_join(), pf::error);
        EXPECT_THROW(a.start(), pf::error);
        EXPECT_THROW(a.exit_status(), pf::error);
        EXPECT_THROW(a.status(), pf::error);
        EXPECT_FALSE(a.started());
        EXPECT_FALSE(a.is_alive());
        EXPECT_EQ(a.pid(), -1);
        EXPECT_EQ(b.next(), 5);
        b.join();
    });
}

// The destructor stops a running producer by the shared stop policy: SIGTERM first, then
// SIGKILL after the grace period.
TEST(generator, the_destructor_stops_a_running_producer_with_sigterm_first) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("destructor", 30, [] {
        int p[2];
        ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
        static int note_fd = -1;
        note_fd = p[1];
        {
            pf::generator<int> g([](pf::yield<int>& yield) {
                ::signal(SIGTERM, [](int) {
                    (void)!::write(note_fd, "t", 1);
                    ::_exit(0);
                });
                yield(1);
                for (;;) ::pause();
            });
            g.start();
            EXPECT_EQ(g.next(), 1);  // the handler is in place
        }
        ::close(p[1]);
        char c = 0;
        EXPECT_EQ(::read(p[0], &c, 1), 1);  // the producer is reaped: what it wrote is there
        EXPECT_EQ(c, 't');
        ::close(p[0]);
    });
}

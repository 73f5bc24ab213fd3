// parafork::thread: results of any codec type, extract/merge, exceptions with their own type
// and message (100 at once), children killed from outside or exiting early, polling, and
// 1,000 threads without a leaked fd, mapping or zombie.

#include <parafork/exec/thread/thread.hpp>
#include <parafork/sys/signals.hpp>

#include "support/grandchild.hpp"
#include "support/leak_check.hpp"

#include <csignal>
#include <fcntl.h>
#include <sys/mman.h>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
using namespace std::chrono_literals;

namespace {

// The SIGINT guard keeps a self-pipe for the life of the process: make it before counting fds.

// Mappings of this process: all of them, and those of memfds (what parafork maps). Sanitizer
// runtimes map memory as they go, so under them only the memfd count is compared.
using parafork::testing::expect_same_maps;
using parafork::testing::map_count;

struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
template <int N>
struct numbered_error : std::logic_error {
    using std::logic_error::logic_error;
};

int g_counter = 0;  // the "global" a snakefish program would merge

} // namespace

TEST(thread, returns_values_of_codec_types) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("values", 60, [] {
        pf::thread a([] { return 6 * 7; });
        pf::thread b([] { return std::map<std::string, std::vector<int>>{{"x", {1, 2}}, {"y", {}}}; });
        pf::thread c([] { return std::vector<char>(8 << 20, 'z'); });  // larger than a pipe
        pf::thread d([] {});
        for (auto* t : {&a, &b, &c, &d}) t->start();
        EXPECT_EQ(a.result<int>(), 42);
        EXPECT_EQ((b.result<std::map<std::string, std::vector<int>>>().at("x")), (std::vector<int>{1, 2}));
        EXPECT_EQ(c.result<std::vector<char>>(), std::vector<char>(8 << 20, 'z'));
        d.join();
        d.result<void>();
        for (auto* t : {&a, &b, &c, &d}) {
            EXPECT_TRUE(t->joined());
            EXPECT_EQ(t->exit_status(), 0);
            EXPECT_FALSE(t->is_alive());
        }
        EXPECT_THROW(a.result<long>(), std::bad_cast);
        EXPECT_THROW(a.start(), pf::error);
    });
}

TEST(thread, extract_runs_in_the_child_and_merge_in_the_parent) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("merge", 60, [] {
        g_counter = 0;
        std::vector<pf::thread> ts;
        for (int i = 1; i <= 4; ++i)
            ts.emplace_back([i] { g_counter += i * 10; }, [] { return g_counter; },
                            [](int child_counter) { g_counter += child_counter; });
        for (auto& t : ts) t.start();
        EXPECT_EQ(g_counter, 0);  // the children changed their own copies
        for (auto& t : ts) t.join();
        EXPECT_EQ(g_counter, 100);
        ts[0].join();  // joining again merges nothing twice
        EXPECT_EQ(g_counter, 100);
    });
}

// A report above a pipe's worth goes through a memfd the child seals: a large result with a
// large extract, and a large exception message, arrive whole.
TEST(thread, large_reports_of_every_kind_arrive_whole) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("large reports", 60, [] {
        std::string got_extract;
        pf::thread t([] { return std::string(3 << 20, 'r'); }, [] { return std::string(2 << 20, 'x'); },
                     [&](std::string x) { got_extract = std::move(x); });
        pf::thread e([]() -> int { throw my_error(std::string(1 << 20, 'm')); });
        t.start();
        e.start();
        EXPECT_EQ(t.result<std::string>(), std::string(3 << 20, 'r'));
        EXPECT_EQ(got_extract, std::string(2 << 20, 'x'));
        try {
            e.join();
            ADD_FAILURE() << "join did not throw";
        } catch (const pf::remote_error& err) {
            EXPECT_EQ(err.message(), std::string(1 << 20, 'm'));
        }
    });
}

// The child cannot seal the memfd while something maps it writable (here its own code does):
// the report then goes through the pipe, and still arrives.
TEST(thread, a_report_that_cannot_be_sealed_goes_through_the_pipe) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("unsealable", 60, [] {
        pf::thread t([] {
            int found = -1;
            for (int fd = 3; fd < 1024 && found < 0; ++fd) {
                char link[128] = {};
                std::string path = "/proc/self/fd/" + std::to_string(fd);
                if (::readlink(path.c_str(), link, sizeof link - 1) > 0 &&
                    std::string(link).find("memfd:parafork-thread") != std::string::npos)
                    found = fd;
            }
            if (found < 0) throw std::runtime_error("no report memfd in the child");
            ::ftruncate(found, 4096);
            void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, found, 0);
            if (p == MAP_FAILED) throw std::runtime_error("mmap of the report memfd failed");
            return std::string(1 << 20, 'p');  // the mapping stays until the child exits
        });
        t.start();
        EXPECT_EQ(t.result<std::string>(), std::string(1 << 20, 'p'));
    });
}

TEST(thread, an_exception_comes_back_with_its_type_and_message) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("exception", 60, [] {
        pf::thread t([]() -> int { throw my_error("it broke"); });
        t.start();
        try {
            t.join();
            ADD_FAILURE() << "join did not throw";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.type_name(), "(anonymous namespace)::my_error");
            EXPECT_EQ(e.message(), "it broke");
            EXPECT_EQ(e.pid(), t.pid());
        }
        EXPECT_THROW(t.result<int>(), pf::remote_error);  // and again, from result
        EXPECT_EQ(t.exit_status(), 0);

        pf::thread u([] { throw 17; });
        u.start();
        try {
            u.join();
            ADD_FAILURE() << "join did not throw";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.type_name(), "int");
        }
    });
}

TEST(thread, a_hundred_threads_each_throwing_its_own_exception) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("100 exceptions", 100, [] {
        std::vector<pf::thread> ts;
        for (int i = 0; i < 100; ++i)
            ts.emplace_back([i]() -> int {
                std::this_thread::sleep_for(std::chrono::milliseconds(i % 7));
                switch (i % 3) {
                case 0: throw numbered_error<0>("error " + std::to_string(i));
                case 1: throw numbered_error<1>("error " + std::to_string(i));
                default: throw std::out_of_range("error " + std::to_string(i));
                }
            });
        for (auto& t : ts) t.start();
        for (int i = 99; i >= 0; --i) {  // joined in another order than they finish
            try {
                ts[static_cast<std::size_t>(i)].join();
                ADD_FAILURE() << "thread " << i << " did not throw";
            } catch (const pf::remote_error& e) {
                const char* want = i % 3 == 0   ? "(anonymous namespace)::numbered_error<0>"
                                   : i % 3 == 1 ? "(anonymous namespace)::numbered_error<1>"
                                                : "std::out_of_range";
                EXPECT_EQ(e.type_name(), want);
                EXPECT_EQ(e.message(), "error " + std::to_string(i));
            }
        }
    });
}

TEST(thread, killed_from_outside_is_worker_died_not_a_hang) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("killed", 60, [] {
        pf::thread t([] {
            for (;;) ::pause();
        });
        t.start();
        EXPECT_TRUE(t.is_alive());
        EXPECT_FALSE(t.try_join());
        ::kill(t.pid(), SIGKILL);
        try {
            t.join();
            ADD_FAILURE() << "join did not throw";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
            EXPECT_EQ(e.pid(), t.pid());
        }
        EXPECT_EQ(t.exit_status(), -SIGKILL);
        EXPECT_EQ(t.status().signal, SIGKILL);  // the type every executor reports
        EXPECT_FALSE(t.status().ok());
        EXPECT_FALSE(t.is_alive());
    });
}

TEST(thread, a_death_is_reported_at_once_though_a_grandchild_holds_the_pipe) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("grandchild", 20, [] {
        pf::testing::lingering_grandchild g;
        pf::thread t([&g] {
            g.leave_and_die(30);
            return 1;
        });
        t.start();
        ASSERT_GT(g.pid(), 0);
        try {
            t.join();
            ADD_FAILURE() << "join returned";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.pid(), t.pid());
            EXPECT_EQ(e.signal(), SIGKILL);
        }
        EXPECT_TRUE(g.alive());  // reported while the grandchild still holds the pipe
        EXPECT_FALSE(t.is_alive());
    });
}

TEST(thread, a_child_that_exits_early_is_worker_died) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("exit", 60, [] {
        pf::thread t([]() -> int { ::_exit(3); });
        t.start();
        try {
            t.join();
            ADD_FAILURE() << "join did not throw";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), 0);
            EXPECT_EQ(e.exit_code(), 3);
        }
        EXPECT_EQ(t.exit_status(), 3);
        EXPECT_EQ(t.status().code, 3);
        EXPECT_EQ(t.status().signal, 0);
    });
}

TEST(thread, try_join_polls_without_waiting) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("try_join", 60, [] {
        pf::thread t([] {
            std::this_thread::sleep_for(50ms);
            return std::string("done");
        });
        EXPECT_THROW(t.try_join(), pf::error);  // not started
        t.start();
        int polls = 0;
        while (!t.try_join()) {
            ++polls;
            std::this_thread::sleep_for(1ms);
        }
        EXPECT_GT(polls, 0);
        EXPECT_EQ(t.result<std::string>(), "done");
    });
}

TEST(thread, a_thousand_threads_leave_no_fd_mapping_or_zombie) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("1000 threads", 110, [] {
        PARAFORK_LEAK_CHECK();
        auto fds = pf::testing::open_fds();
        auto maps = map_count();
        for (int round = 0; round < 100; ++round) {
            std::vector<pf::thread> ts;
            for (int i = 0; i < 10; ++i) ts.emplace_back([i] { return i; });
            for (int i = 0; i < 8; ++i) ts[static_cast<std::size_t>(i)].start();  // 8 run, 2 never start
            for (int i = 0; i < 5; ++i) EXPECT_EQ(ts[static_cast<std::size_t>(i)].result<int>(), i);
            // 3 are destroyed while they may still run: killed and reaped by the destructor.
        }
        EXPECT_EQ(pf::testing::open_fds(), fds);
        expect_same_maps(maps, map_count());
        EXPECT_TRUE(pf::testing::zombie_children().empty());
    });
}

TEST(thread, a_moved_from_thread_throws_not_started) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("moved from", 30, [] {
        pf::thread a([] { return 3; });
        a.start();
        pf::thread b(std::move(a));
        EXPECT_THROW(a.join(), pf::error);
        EXPECT_THROW(a.try_join(), pf::error);
        EXPECT_THROW(a.start(), pf::error);
        EXPECT_THROW(a.result<int>(), pf::error);
        EXPECT_THROW(a.exit_status(), pf::error);
        EXPECT_THROW(a.status(), pf::error);
        EXPECT_FALSE(a.started());
        EXPECT_FALSE(a.is_alive());
        EXPECT_EQ(a.pid(), -1);
        EXPECT_EQ(b.result<int>(), 3);
    });
}

// The destructor stops a running thread by the shared stop policy: SIGTERM first, so the child
// can clean up, then SIGKILL after the grace period.
TEST(thread, the_destructor_stops_a_running_child_with_sigterm_first) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("destructor", 30, [] {
        int p[2];
        ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
        static int note_fd = -1;
        note_fd = p[1];
        {
            pf::thread t([] {
                ::signal(SIGTERM, [](int) {
                    (void)!::write(note_fd, "t", 1);
                    ::_exit(0);
                });
                (void)!::write(note_fd, "r", 1);
                for (;;) ::pause();
            });
            t.start();
            char c = 0;
            ASSERT_EQ(::read(p[0], &c, 1), 1);
            EXPECT_EQ(c, 'r');
        }
        ::close(p[1]);
        char c = 0;
        EXPECT_EQ(::read(p[0], &c, 1), 1);  // the child is reaped: what it wrote is there
        EXPECT_EQ(c, 't');
        ::close(p[0]);
    });
}

// forked, map and starmap: results, order, indices, void bodies, streams, errors, Ctrl-C.
#include <parafork/exec/forked/forked.hpp>
#include <parafork/exec/forked/map.hpp>
#include <parafork/sys/memory.hpp>

#include "support/grandchild.hpp"
#include "support/leak_check.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <pty.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <forward_list>
#include <list>
#include <map>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace pf = parafork;

namespace {

// A vector of a..b-1. (Tests use it rather than std::views::iota, which clang 14 cannot compile
// against libstdc++ 12's <ranges>.)
template <class T>
std::vector<T> seq(T a, T b) {
    std::vector<T> v;
    for (T x = a; x < b; ++x) v.push_back(x);
    return v;
}

struct foo {
    std::string s;
    double x = 0;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(s, x);
    }
};

pf::options jobs(unsigned n) {
    pf::options o;
    o.jobs = n;
    return o;
}

} // namespace

TEST(Forked, SumsOverIndexRange) {
    PARAFORK_LEAK_CHECK();
    std::vector<int> v(10000);
    std::iota(v.begin(), v.end(), 0);
    long long sum = 0;
    std::size_t joins = 0;
    pf::forked(v, [](int x) { return static_cast<long long>(x) * 2; },
               [&](long long y) {
                   sum += y;
                   ++joins;
               },
               jobs(3));
    EXPECT_EQ(joins, v.size());
    EXPECT_EQ(sum, 2LL * 9999 * 10000 / 2);
}

TEST(Forked, IndexedBodyAndJoin) {
    PARAFORK_LEAK_CHECK();
    std::vector<foo> result(10);
    pf::forked(seq(0, 10),
               [](std::size_t i, int x) { return foo{std::to_string(x), static_cast<double>(i)}; },
               [&](std::size_t i, foo&& f) { result[i] = std::move(f); }, jobs(2));
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(result[i].s, std::to_string(i));
        EXPECT_EQ(result[i].x, i);
    }
}

TEST(Forked, OrderedJoinSeesInputOrder) {
    PARAFORK_LEAK_CHECK();
    std::vector<int> v(5000);
    std::iota(v.begin(), v.end(), 0);
    std::vector<int> seen;
    pf::options o = jobs(2);
    o.ordered = true;
    o.chunksize = 7;
    pf::forked(v, [](int x) { return x + 1; }, [&](int y) { seen.push_back(y); }, o);
    ASSERT_EQ(seen.size(), v.size());
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(seen[i], i + 1);
}

// Results that wait for a slower earlier item are held in the parent; past a bound no more
// work goes out, so the parent's memory stays bounded. Item 0 waits until the other items stop
// getting done (or all are): unbounded, all 2,999 others (64 KiB each) would be done and held.
TEST(Forked, OrderedHoldsABoundedAmountBehindASlowItem) {
    PARAFORK_LEAK_CHECK();
    constexpr long total = 3000;
    pf::sys::mapping shared(-1, 4096);
    auto* done = static_cast<std::atomic<long>*>(shared.data());
    auto* seen_by_first = done + 1;
    std::vector<int> v(total);
    std::iota(v.begin(), v.end(), 0);
    pf::options o = jobs(2);
    o.ordered = true;
    o.chunksize = 1;
    long joined = 0;
    pf::forked(
        v,
        [&](int x) {
            if (x != 0) {
                done->fetch_add(1);
                return std::string(64 * 1024, static_cast<char>('a' + x % 26));
            }
            long last = -1;
            auto still = std::chrono::steady_clock::now();
            while (done->load() < total - 1 && std::chrono::steady_clock::now() - still < std::chrono::seconds(2)) {
                if (long now = done->load(); now != last) {
                    last = now;
                    still = std::chrono::steady_clock::now();
                }
                ::usleep(10000);
            }
            seen_by_first->store(done->load());
            return std::string();
        },
        [&](std::size_t i, std::string&& y) {
            ASSERT_EQ(i, static_cast<std::size_t>(joined));
            ASSERT_EQ(y.size(), i == 0 ? 0u : 64u * 1024);
            ++joined;
        },
        o);
    EXPECT_EQ(joined, total);
    // 64 MiB of 64 KiB results is 1,024 held, plus the few in flight when sending stopped.
    EXPECT_LT(seen_by_first->load(), 1100);
}

TEST(Forked, VoidBodyCountsJoins) {
    PARAFORK_LEAK_CHECK();
    std::size_t n = 0, index_sum = 0;
    pf::forked(seq(0, 100), [](int) {}, [&](std::size_t i) {
        ++n;
        index_sum += i;
    }, jobs(2));
    EXPECT_EQ(n, 100u);
    EXPECT_EQ(index_sum, 4950u);
}

TEST(Forked, StreamsItemsOfAListInputs) {
    PARAFORK_LEAK_CHECK();
    std::list<std::string> words;
    for (int i = 0; i < 300; ++i) words.push_back("w" + std::to_string(i));
    std::vector<std::string> out(300);
    pf::forked(words, [](std::size_t i, const std::string& w) { return w + "/" + std::to_string(i); },
               [&](std::size_t i, std::string&& s) { out[i] = std::move(s); }, jobs(2));
    for (int i = 0; i < 300; ++i) EXPECT_EQ(out[i], "w" + std::to_string(i) + "/" + std::to_string(i));
}

#if !defined(__clang__) || __clang_major__ >= 15  // <ranges> views: see seq()
TEST(Forked, StreamsALazyInputRange) {
    PARAFORK_LEAK_CHECK();
    // A filtered view is not sized: its items are pulled lazily in the parent and streamed.
    auto evens = std::views::iota(0, 1000) | std::views::filter([](int x) { return x % 2 == 0; });
    auto squares = pf::map([](int x) { return x * x; }, evens, jobs(2));
    ASSERT_EQ(squares.size(), 500u);
    for (int i = 0; i < 500; ++i) EXPECT_EQ(squares[i], 4 * i * i);
}
#endif

TEST(Map, ReturnsInputOrderAndStarmapUnpacks) {
    PARAFORK_LEAK_CHECK();
    std::vector<int> v(1000);
    std::iota(v.begin(), v.end(), 0);
    auto r = pf::map([](int x) { return x * 3; }, v, jobs(2));
    ASSERT_EQ(r.size(), v.size());
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(r[i], 3 * i);

    std::vector<std::tuple<int, std::string>> t{{1, "a"}, {2, "b"}, {3, "c"}};
    auto s = pf::starmap([](int n, const std::string& c) {
        std::string out;
        for (int k = 0; k < n; ++k) out += c;
        return out;
    }, t, jobs(2));
    EXPECT_EQ(s, (std::vector<std::string>{"a", "bb", "ccc"}));
}

TEST(Map, BodyReadsParentStateBuiltAtTheCall) {
    PARAFORK_LEAK_CHECK();
    // The kids fork at the call: a table made just before is simply there.
    std::vector<std::string> table;
    for (int i = 0; i < 64; ++i) table.push_back(std::string(static_cast<std::size_t>(i), 'x'));
    auto lens = pf::map([&table](int i) { return table[static_cast<std::size_t>(i)].size(); },
                        seq(0, 64), jobs(2));
    for (int i = 0; i < 64; ++i) EXPECT_EQ(lens[i], static_cast<std::size_t>(i));
}

TEST(Map, MillionItemsExact) {
    PARAFORK_LEAK_CHECK();
    std::vector<std::uint32_t> v(1'000'000);
    std::iota(v.begin(), v.end(), 0u);
    auto r = pf::map([](std::uint32_t x) { return std::uint64_t{x} * x; }, v, jobs(2));
    ASSERT_EQ(r.size(), v.size());
    for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(r[i], std::uint64_t{v[i]} * v[i]);
}

TEST(Map, RemoteErrorsCarryTypeMessageAndIndex) {
    PARAFORK_LEAK_CHECK();
    try {
        pf::map([](int x) {
            if (x == 37) throw std::out_of_range("thirty-seven");
            return x;
        }, seq(0, 100), jobs(2));
        FAIL() << "no exception";
    } catch (const pf::remote_error& e) {
        EXPECT_EQ(e.type_name(), "std::out_of_range");
        EXPECT_EQ(e.message(), "thirty-seven");
        EXPECT_EQ(e.task(), std::optional<std::size_t>(37));
        EXPECT_EQ(e.rank(), -1);
        EXPECT_GT(e.pid(), 0);
    }
}

TEST(Map, SegfaultIsWorkerDiedAtItsItem) {
    PARAFORK_LEAK_CHECK();
    try {
        pf::map([](int x) {
            if (x == 55) ::raise(SIGSEGV);
            return x;
        }, seq(0, 200), jobs(2));
        FAIL() << "no exception";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.signal(), SIGSEGV);
        EXPECT_EQ(e.task(), std::optional<std::size_t>(55));
        EXPECT_EQ(e.rank(), -1);  // ran here, not on an MPI rank
        EXPECT_EQ(e.host(), "");
    }
}

TEST(Map, InterruptedBySigint) {
    PARAFORK_LEAK_CHECK();
    // A helper child sends SIGINT to us while the map runs; the call must throw interrupted.
    pid_t self = ::getpid();
    pid_t helper = ::fork();
    ASSERT_GE(helper, 0);
    if (helper == 0) {
        ::usleep(300'000);
        ::kill(self, SIGINT);
        ::_exit(0);
    }
    EXPECT_THROW(pf::map([](int x) {
        ::sleep(5);
        return x;
    }, seq(0, 8), jobs(2)), pf::interrupted);
    int st = 0;
    ::waitpid(helper, &st, 0);
}

TEST(Forked, TaskPastTimeoutFailsTheCall) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(2);
    o.task_timeout = std::chrono::milliseconds(800);  // generous: slow shared CI
    try {
        pf::forked(seq(0, 6), [](int x) {
            if (x == 4) ::sleep(30);
            return x;
        }, [](int) {}, o);
        FAIL() << "no exception";
    } catch (const pf::timeout_error& e) {
        EXPECT_NE(std::string(e.what()).find("task 4"), std::string::npos) << e.what();
        EXPECT_EQ(e.task(), std::optional<std::size_t>(4));
        EXPECT_GT(e.pid(), 0);
    }
}

// A task that answered in time is not blamed because the parent read the answer late: here the
// parent is busy in join(0) (3 s) while item 1 answers at 0.3 s and its deadline (1.5 s)
// passes. The answer waiting in the pipe is read before any verdict on lateness.
TEST(Forked, AnswerWaitingInThePipeIsNotATimeout) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(2);
    o.chunksize = 1;
    o.task_timeout = std::chrono::milliseconds(1500);
    std::vector<int> joined;
    pf::forked(seq(0, 2), [](int x) {
        ::usleep(x == 0 ? 100'000 : 300'000);
        return x;
    }, [&](int y) {
        if (y == 0) ::usleep(3'000'000);
        joined.push_back(y);
    }, o);
    EXPECT_EQ(joined, (std::vector<int>{0, 1}));
}

TEST(Forked, RetriesReRunAnItemWhoseKidWasKilled) {
    PARAFORK_LEAK_CHECK();
    // The kid running item 3 kills itself the first time only (a marker file remembers).
    char marker[] = "/tmp/parafork_retry_XXXXXX";
    int fd = ::mkstemp(marker);
    ASSERT_GE(fd, 0);
    ::close(fd);
    ::unlink(marker);
    std::string path = marker;
    pf::options o = jobs(2);
    o.retries = 1;
    o.chunksize = 1;
    auto r = pf::map([&path](int x) {
        if (x == 3 && ::access(path.c_str(), F_OK) != 0) {
            int m = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
            ::close(m);
            ::raise(SIGKILL);
        }
        return x * 10;
    }, seq(0, 8), o);
    ::unlink(path.c_str());
    for (int i = 0; i < 8; ++i) EXPECT_EQ(r[static_cast<std::size_t>(i)], i * 10);
}

TEST(Forked, WithoutRetriesAKilledKidFailsItsItem) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(2);
    o.chunksize = 1;
    try {
        pf::map([](int x) {
            if (x == 2) ::raise(SIGKILL);
            return x;
        }, seq(0, 8), o);
        FAIL() << "no exception";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.signal(), SIGKILL);
        EXPECT_EQ(e.task(), std::optional<std::size_t>(2));
    }
}

TEST(Forked, ProgressBarOnATerminal) {
    PARAFORK_LEAK_CHECK();
    int master = -1, slave = -1;
    ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
    ::fcntl(master, F_SETFD, FD_CLOEXEC);
    ::fcntl(slave, F_SETFD, FD_CLOEXEC);
    int saved = ::dup(2);
    ::dup2(slave, 2);
    pf::options o = jobs(2);
    o.progress = true;
    o.name = "bar";
    auto r = pf::map([](int x) { return x; }, seq(0, 100), o);
    ::dup2(saved, 2);
    ::close(saved);
    ::close(slave);
    char buf[4096];
    ::fcntl(master, F_SETFL, O_NONBLOCK);
    long n = ::read(master, buf, sizeof buf);
    ::close(master);
    ASSERT_GT(n, 0);
    std::string out(buf, static_cast<std::size_t>(n));
    EXPECT_NE(out.find("bar"), std::string::npos) << out;
    EXPECT_NE(out.find("100/100"), std::string::npos) << out;
    EXPECT_NE(out.find("/s"), std::string::npos) << out;  // the rate
    EXPECT_NE(out.find("ETA"), std::string::npos) << out;
    EXPECT_NE(out.find("[##"), std::string::npos) << out;  // the bar itself
    EXPECT_EQ(r.size(), 100u);
}

TEST(Forked, MaxTasksPerWorkerRecyclesKids) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(2);
    o.max_tasks_per_worker = 3;
    o.chunksize = 2;
    std::map<int, int> per_pid;
    pf::forked(seq(0, 30), [](int) { return static_cast<int>(::getpid()); },
               [&](int pid) { ++per_pid[pid]; }, o);
    int total = 0;
    for (auto [pid, n] : per_pid) {
        EXPECT_LE(n, 3) << "kid " << pid;
        total += n;
    }
    EXPECT_EQ(total, 30);
    EXPECT_GE(per_pid.size(), 10u);
}

TEST(Forked, WorkerInitAndExitRunInEachKid) {
    PARAFORK_LEAK_CHECK();
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    pf::options o = jobs(3);
    o.worker_init = [&] { [[maybe_unused]] auto w = ::write(p[1], "i", 1); };
    o.worker_exit = [&] { [[maybe_unused]] auto w = ::write(p[1], "e", 1); };
    pf::forked(seq(0, 30), [](int x) { return x; }, [](int) {}, o);
    ::close(p[1]);
    std::string got;
    char c;
    while (::read(p[0], &c, 1) == 1) got += c;
    ::close(p[0]);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, "eeeiii");
}

TEST(Forked, AJoinThatThrowsStopsTheKids) {
    PARAFORK_LEAK_CHECK();
    EXPECT_THROW(pf::forked(seq(0, 1000), [](int x) { return x; },
                            [](int y) {
                                if (y == 10) throw std::logic_error("join gave up");
                            }, jobs(2)),
                 std::logic_error);
}

using parafork::testing::grandchild_page;

// A kid that forks a grandchild (which inherits its pipe ends and sleeps on) and then dies is
// reported at once, by its pidfd, not when the grandchild finally exits.
TEST(Forked, DeathIsReportedAtOnceWhileAGrandchildHoldsThePipe) {
    grandchild_page();
    pf::testing::run_bounded("grandchild", 25, [] {
        auto t0 = std::chrono::steady_clock::now();
        try {
            pf::forked(seq(0, 4), [](int x) {
                if (x == 1) {
                    pid_t g = ::fork();
                    if (g == 0) {
                        ::sleep(30);
                        ::_exit(0);
                    }
                    grandchild_page()->store(g);
                    ::raise(SIGKILL);
                }
                return x;
            }, [](int) {}, jobs(2));
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
            EXPECT_EQ(e.task(), std::optional<std::size_t>(1));
        }
        if (int g = grandchild_page()->exchange(0); g > 0) ::kill(g, SIGKILL);
        EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10))
            << "waited for the grandchild";
    });
}

// The first error ends a map of slow tasks at once: the worker that threw reports it without
// finishing its chunk (10,000 tasks of 20 ms in automatic chunks used to take 12 s here).
TEST(Map, FirstErrorOfSlowTasksIsReportedPromptly) {
    pf::testing::run_bounded("first error", 60, [] {
        auto t0 = std::chrono::steady_clock::now();
        try {
            pf::map([](int x) {
                if (x == 3) throw std::runtime_error("task 3 failed");
                ::usleep(20'000);
                return x;
            }, seq(0, 10'000), jobs(2));
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.task(), std::optional<std::size_t>(3));
            EXPECT_EQ(e.message(), "task 3 failed");
        }
        EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
    });
}

namespace {
int* ran_by_page() {  // which kid ran each item (a page the kids share)
    static int* p = static_cast<int*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    return p;
}
} // namespace

// The automatic chunk size: 1 until the workers have said what an item costs, then about 10 ms
// of their time, growing at most 4x a chunk, never past the cap. No clock of the caller's: a
// busy machine's slow round trips do not make trivial items look slow.
TEST(Map, AutomaticChunkSizesFollowTheWorkersMeasuredCost) {
    pf::detail::chunk_sizer trivial;
    pf::detail::executor_counters c;
    EXPECT_EQ(trivial.next(65536, c), 1u);
    EXPECT_EQ(trivial.next(65536, c), 1u);  // nothing measured yet
    c.timed = 4;
    c.busy_ns = 40;  // 10 ns an item: 10 ms is a million
    std::uint64_t want = 1;
    for (int k = 0; k < 12; ++k) {
        want = std::min<std::uint64_t>(want * 4, 65536);
        EXPECT_EQ(trivial.next(65536, c), want);
    }
    EXPECT_EQ(trivial.next(100, c), 100u);  // the cap holds whatever the cost

    pf::detail::chunk_sizer slow;
    c.timed = 100;
    c.busy_ns = 100'000'000;  // 1 ms an item: 10 ms is 10
    EXPECT_EQ(slow.next(65536, c), 4u);
    EXPECT_EQ(slow.next(65536, c), 10u);
    EXPECT_EQ(slow.next(65536, c), 10u);
    c.busy_ns = 10'000'000'000;  // 100 ms an item: one at a time
    EXPECT_EQ(slow.next(65536, c), 1u);
}

// Automatic chunks follow the measured cost of an item: 5 ms items go a chunk or two at a
// time, so the kids take turns along the range (fixed chunks of total / (8 * jobs) = 25 items
// made about 16 long runs), and the tail, a timeout or a cancel waits for little.
TEST(Map, AutomaticChunksAreSmallForSlowItems) {
    ran_by_page();
    pf::testing::run_bounded("chunks", 60, [] {
        int* ran = ran_by_page();
        auto out = pf::map([](int x) {
            ran_by_page()[x] = ::getpid();
            ::usleep(5'000);
            return x;
        }, seq(0, 400), jobs(2));
        ASSERT_EQ(out.size(), 400u);
        int runs = 1;
        for (int i = 1; i < 400; ++i) runs += ran[i] != ran[i - 1];
        EXPECT_GE(runs, 60) << "items went in long chunks";
    });
}

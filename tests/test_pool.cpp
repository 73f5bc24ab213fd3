// pool: futures, map / imap / imap_unordered, errors, crashes, kills, timeouts, recycling,
// worker hooks, titles, Ctrl-C.
#include <parafork/exec/forked/map.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/exec/core/zygote.hpp>

#include "support/grandchild.hpp"
#include "support/leak_check.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <numeric>
#include <ranges>
#include <set>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
using namespace std::chrono_literals;

namespace {

// A vector of a..b-1. (Tests use it rather than std::views::iota, which clang 14 cannot compile
// against libstdc++ 12's <ranges>.)
template <class T>
std::vector<T> seq(T a, T b) {
    std::vector<T> v;
    for (T x = a; x < b; ++x) v.push_back(x);
    return v;
}

int square(int x) { return x * x; }
int my_pid() { return static_cast<int>(::getpid()); }
int nap(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}
std::size_t total_length(const std::vector<std::string>& v) {
    std::size_t n = 0;
    for (auto& s : v) n += s.size();
    return n;
}
std::string comm() {
    std::ifstream f("/proc/self/comm");
    std::string s;
    std::getline(f, s);
    return s;
}

struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
int throws(int kind) {
    switch (kind) {
        case 0: throw std::invalid_argument("bad argument");
        case 1: throw my_error("mine");
        case 2: throw 42;
        default: return kind;
    }
}
int crash(int x) {
    if (x == 3) ::raise(SIGSEGV);
    return x;
}

struct point {
    int x = 0, y = 0;
    int sum() const { return x + y; }
};

int g_init_mark = 0;

// CPU time (user + system) of this process so far.
std::chrono::microseconds self_cpu() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto us = [](const timeval& t) { return std::int64_t{t.tv_sec} * 1'000'000 + t.tv_usec; };
    return std::chrono::microseconds(us(ru.ru_utime) + us(ru.ru_stime));
}

// Sends `sig` to this process after `ms` from a helper child; returns the helper's pid.
pid_t signal_self_later(int sig, int ms) {
    pid_t self = ::getpid();
    pid_t helper = ::fork();
    if (helper == 0) {
        ::usleep(static_cast<useconds_t>(ms) * 1000);
        ::kill(self, sig);
        ::_exit(0);
    }
    return helper;
}
void reap(pid_t helper) {
    int st = 0;
    ::waitpid(helper, &st, 0);
}

pf::options jobs(unsigned n) {
    pf::options o;
    o.jobs = n;
    return o;
}

} // namespace

TEST(Pool, SubmitGetAndFutureStates) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    auto f = p.submit(&square, 7);
    EXPECT_EQ(f.get(), 49);
    std::vector<pf::future<int>> fs;
    for (int i = 0; i < 100; ++i) fs.push_back(p.submit(&square, i));
    for (int i = 0; i < 100; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].get(), i * i);
    auto slow = p.submit(&nap, 300);
    EXPECT_FALSE(slow.ready());
    EXPECT_FALSE(slow.wait_for(10ms));
    EXPECT_TRUE(slow.wait_for(10s));
    EXPECT_TRUE(slow.ready());
    EXPECT_EQ(slow.get(), 300);
}

TEST(Pool, CaptorlessLambdasMemberPointersAndVoid) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    EXPECT_EQ(p.submit([](int a, int b) { return a + b; }, 2, 3).get(), 5);
    EXPECT_EQ(p.submit(&point::sum, point{4, 5}).get(), 9);
    EXPECT_EQ(p.submit([](std::string s) { return s + s; }, std::string("ab")).get(), "abab");
    EXPECT_EQ(p.submit([](const std::string& s) { return s.size(); }, "four").get(), 4u);
    p.submit([](int) {}, 1).get();  // void tasks complete too
}

TEST(Pool, MapImapAndImapUnordered) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    std::vector<int> in(1000);
    std::iota(in.begin(), in.end(), 0);
    auto m = p.map(&square, in);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(m[static_cast<std::size_t>(i)], i * i);

    int k = 0;
    for (auto&& r : p.imap(&square, seq(0, 500))) {
        ASSERT_EQ(r, k * k);
        ++k;
    }
    EXPECT_EQ(k, 500);

    std::set<std::size_t> seen;
    for (auto&& [i, r] : p.imap_unordered(&square, in)) {
        EXPECT_EQ(r, static_cast<int>(i * i));
        seen.insert(i);
    }
    EXPECT_EQ(seen.size(), 1000u);

    std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}};
    auto s = p.starmap([](int a, int b) { return a * b; }, pairs);
    EXPECT_EQ(s, (std::vector<int>{2, 12}));
}

TEST(Pool, MillionTasksExact) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    auto r = p.map([](std::uint32_t x) { return std::uint64_t{x} * 3 + 1; },
                   seq(0u, 1'000'000u));
    ASSERT_EQ(r.size(), 1'000'000u);
    for (std::uint32_t i = 0; i < 1'000'000u; ++i) ASSERT_EQ(r[i], std::uint64_t{i} * 3 + 1);
}

TEST(Pool, ExceptionsOfSeveralTypes) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    auto a = p.submit(&throws, 0);
    auto b = p.submit(&throws, 1);
    auto c = p.submit(&throws, 2);
    auto d = p.submit(&throws, 3);
    try {
        a.get();
        FAIL();
    } catch (const pf::remote_error& e) {
        EXPECT_EQ(e.type_name(), "std::invalid_argument");
        EXPECT_EQ(e.message(), "bad argument");
        EXPECT_EQ(e.task(), std::optional<std::size_t>(0));
    }
    try {
        b.get();
        FAIL();
    } catch (const pf::remote_error& e) {
        EXPECT_NE(e.type_name().find("my_error"), std::string::npos) << e.type_name();
        EXPECT_EQ(e.message(), "mine");
        EXPECT_EQ(e.task(), std::optional<std::size_t>(1));
    }
    try {
        c.get();
        FAIL();
    } catch (const pf::remote_error& e) {
        EXPECT_EQ(e.type_name(), "int");
    }
    EXPECT_EQ(d.get(), 3);
    // map stops at the first error and rethrows it.
    EXPECT_THROW(p.map(&throws, std::vector<int>{5, 6, 0, 7}), pf::remote_error);
    EXPECT_EQ(p.submit(&square, 3).get(), 9);  // and the pool still serves
}

TEST(Pool, SegfaultingTaskIsWorkerDiedAndThePoolGoesOn) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    auto f = p.submit(&crash, 3);
    try {
        f.get();
        FAIL();
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.signal(), SIGSEGV);
        EXPECT_EQ(e.task(), std::optional<std::size_t>(0));
    }
    try {
        p.map(&crash, seq(0, 50));
        FAIL();
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.task(), std::optional<std::size_t>(3));  // blamed exactly, despite batching
    }
    EXPECT_EQ(p.submit(&square, 4).get(), 16);
}

TEST(Pool, WorkerKilledFromOutsideWithoutRetries) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(1));
    int pid = p.submit(&my_pid).get();
    auto f = p.submit(&nap, 3000);
    std::this_thread::sleep_for(100ms);
    ::kill(pid, SIGKILL);
    try {
        f.get();
        FAIL();
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.pid(), pid);
        EXPECT_EQ(e.signal(), SIGKILL);
        EXPECT_EQ(e.task(), std::optional<std::size_t>(1));
    }
    EXPECT_NE(p.submit(&my_pid).get(), pid);  // replaced
}

TEST(Pool, WorkerKilledWhileIdleBlamesNoTask) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(1));  // no retries: a blamed task would fail
    int pid = p.submit(&my_pid).get();
    ::kill(pid, SIGKILL);
    std::this_thread::sleep_for(100ms);  // dead before the next task is even sent to it
    int next = p.submit(&my_pid).get();  // runs on the replacement, not worker_died
    EXPECT_NE(next, pid);
    EXPECT_EQ(p.submit(&nap, 7).get(), 7);
}

namespace {
// Makes this worker's job pipe read as empty for good: it leaves at once, before starting
// anything (the one read-only pipe a worker has is its job pipe).
void lose_the_job_pipe() {
    for (int fd = 3; fd < 256; ++fd) {
        struct stat st;
        int fl = ::fcntl(fd, F_GETFL);
        if (fl < 0 || ::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode) || (fl & O_ACCMODE) != O_RDONLY)
            continue;
        int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        ::dup3(null, fd, O_CLOEXEC);
        ::close(null);
    }
}
} // namespace

TEST(Pool, WorkerThatAlwaysDiesBeforeStartingIsBlamedInTheEnd) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(1);
    o.worker_init = &lose_the_job_pipe;
    pf::pool p(o);
    auto f = p.submit(&nap, 1);
    ASSERT_TRUE(f.wait_for(60s)) << "re-queued forever";
    EXPECT_THROW(f.get(), pf::worker_died);
}

TEST(Pool, WorkerKilledFromOutsideWithRetries) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(1);
    o.retries = 1;
    pf::pool p(o);
    int pid = p.submit(&my_pid).get();
    auto f = p.submit(&nap, 400);
    std::this_thread::sleep_for(100ms);
    ::kill(pid, SIGKILL);
    EXPECT_EQ(f.get(), 400);  // ran again on the replacement
}

TEST(Pool, TaskPastTimeoutFailsAndItsWorkerIsReplaced) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(1);
    o.task_timeout = 600ms;  // generous: the CI machine is slow and shared
    pf::pool p(o);
    int pid = p.submit(&my_pid).get();
    auto f = p.submit(&nap, 20'000);
    try {
        f.get();
        ADD_FAILURE() << "no timeout_error";
    } catch (const pf::timeout_error& e) {
        EXPECT_EQ(e.pid(), pid);  // the worker that ran it, and which task it was
        EXPECT_EQ(e.task(), std::optional<std::size_t>(1));
    }
    EXPECT_NE(p.submit(&my_pid).get(), pid);
    EXPECT_EQ(p.submit(&nap, 10).get(), 10);
}

TEST(Pool, InputsBuiltAfterThePoolForked) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    std::vector<std::string> made_later;
    for (int i = 0; i < 1000; ++i) made_later.push_back(std::string(static_cast<std::size_t>(i % 17), 'q'));
    EXPECT_EQ(p.submit(&total_length, made_later).get(), total_length(made_later));
    std::vector<std::vector<std::string>> batches(10, made_later);
    auto r = p.map(&total_length, batches);
    for (auto n : r) EXPECT_EQ(n, total_length(made_later));
}

TEST(Pool, ImapDeliversEachErrorAtItsItem) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    std::vector<int> in{3, 4, 0, 5, 1, 6};
    auto seq = p.imap(&throws, in);
    std::vector<int> ok;
    int errors = 0;
    for (auto it = seq.begin(); it != seq.end(); ++it) {
        try {
            ok.push_back(*it);
        } catch (const pf::remote_error&) {
            ++errors;
        }
    }
    EXPECT_EQ(ok, (std::vector<int>{3, 4, 5, 6}));
    EXPECT_EQ(errors, 2);
}

TEST(Pool, AroundOneCapturingCallable) {
    PARAFORK_LEAK_CHECK();
    std::vector<std::string> table{"zero", "one", "two", "three"};
    pf::pool p([&table](int i) { return table[static_cast<std::size_t>(i)]; }, jobs(2));
    EXPECT_EQ(p.apply(2).get(), "two");
    EXPECT_EQ(p.map(std::vector<int>{3, 1}), (std::vector<std::string>{"three", "one"}));
    std::vector<std::string> got;
    for (auto&& s : p.imap(seq(0, 4))) got.push_back(s);
    EXPECT_EQ(got, table);
}

TEST(Pool, RecyclesWorkersAfterMaxTasks) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(1);
    o.max_tasks_per_worker = 2;
    o.chunksize = 1;
    pf::pool p(o);
    std::set<int> pids;
    for (int i = 0; i < 6; ++i) pids.insert(p.submit(&my_pid).get());
    EXPECT_EQ(pids.size(), 3u);
}

TEST(Pool, WorkerHooksAndTitles) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(2);
    o.name = "tt";
    o.worker_init = [] { g_init_mark = 7; };
    pf::pool p(o);
    EXPECT_EQ(p.submit([] { return g_init_mark; }).get(), 7);
    EXPECT_EQ(g_init_mark, 0);  // it ran in the workers only
    auto title = p.submit(&comm).get();
    EXPECT_TRUE(title == "parafork:tt#0" || title == "parafork:tt#1") << title;
    p.close();
    EXPECT_THROW(p.submit(&square, 1), pf::error);
    p.join();
}

TEST(Pool, CloseJoinFinishesPendingWork) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    auto a = p.submit(&nap, 100);
    auto b = p.submit(&square, 5);
    p.close();
    p.join();
    EXPECT_EQ(a.get(), 100);
    EXPECT_EQ(b.get(), 25);
}

TEST(Pool, SigintDuringMapThrowsInterrupted) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    pid_t self = ::getpid();
    pid_t helper = ::fork();
    ASSERT_GE(helper, 0);
    if (helper == 0) {
        ::usleep(300'000);
        ::kill(self, SIGINT);
        ::_exit(0);
    }
    EXPECT_THROW(p.map(&nap, std::vector<int>(8, 5000)), pf::interrupted);
    int st = 0;
    ::waitpid(helper, &st, 0);
    EXPECT_THROW(p.submit(&square, 2).get(), pf::error);  // its workers are gone
}

TEST(Pool, LeavingAnImapEarlyLeavesThePoolUsable) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    {
        auto seq = p.imap(&nap, std::vector<int>(50, 20));
        int seen = 0;
        for (auto&& r : seq) {
            EXPECT_EQ(r, 20);
            if (++seen == 3) break;
        }
    }
    EXPECT_EQ(p.submit(&square, 6).get(), 36);
    EXPECT_EQ(p.map(&square, std::vector<int>{1, 2, 3}), (std::vector<int>{1, 4, 9}));
}

TEST(Pool, MovesAndTerminates) {
    PARAFORK_LEAK_CHECK();
    pf::pool a(jobs(2));
    pf::pool b(std::move(a));
    EXPECT_EQ(b.submit(&square, 2).get(), 4);
    auto slow = b.submit(&nap, 10'000);
    b.terminate();
    EXPECT_THROW(slow.get(), pf::error);
}

TEST(Pool, ForkedCallsWhileAPoolRuns) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    EXPECT_EQ(p.submit(&square, 3).get(), 9);
    // The map's kids fork while the pool's workers live: they must not keep the pool's pipes.
    std::vector<int> in(100);
    std::iota(in.begin(), in.end(), 0);
    pf::options o = jobs(2);
    auto r = pf::map([](int x) { return x + 1; }, in, o);
    EXPECT_EQ(r[99], 100);
    EXPECT_EQ(p.map(&square, in)[10], 100);
}

namespace {
// An endless input range: imap must pull from it lazily and stay a bounded distance ahead.
struct counting_range {
    struct iterator {
        using value_type = int;
        using difference_type = std::ptrdiff_t;
        int* pulled;
        int v = 0;
        int operator*() const { return v; }
        iterator& operator++() {
            ++v;
            ++*pulled;
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(std::default_sentinel_t) const { return false; }
    };
    int* pulled;
    iterator begin() const { return {pulled}; }
    std::default_sentinel_t end() const { return {}; }
};
} // namespace

TEST(Pool, ImapPullsAnEndlessRangeLazily) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(2);
    o.chunksize = 4;
    pf::pool p(o);
    int pulled = 0;
    int k = 0;
    {
        auto seq = p.imap(&square, counting_range{&pulled});
        for (auto&& r : seq) {
            ASSERT_EQ(r, k * k);
            if (++k == 200) break;
        }
    }
    EXPECT_LT(pulled, 200 + 4 * 3 * 2 + 8);  // bounded read-ahead, not the whole (endless) range
}

TEST(Pool, WaitingSpinsBrieflyThenSleeps) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(1));
    int pid = p.submit(&my_pid).get();
    // The parent waits 300 ms for a sleeping task: a bounded spin, then poll sleeps.
    auto before = self_cpu();
    EXPECT_EQ(p.submit(&nap, 300).get(), 300);
    EXPECT_LT(self_cpu() - before, 100ms);
    // An idle worker sleeps in its read once its spin has passed.
    auto worker_before = pf::testing::cpu_time(pid);
    std::this_thread::sleep_for(300ms);
    EXPECT_LT(pf::testing::cpu_time(pid) - worker_before, 50ms);
    // Without the spin every wait sleeps at once; answers are the same.
    pf::options o = jobs(1);
    o.spin = std::chrono::microseconds(0);
    pf::pool q(o);
    EXPECT_EQ(q.submit(&square, 9).get(), 81);
    EXPECT_EQ(q.map(&square, seq(0, 100))[99], 99 * 99);
}

TEST(Pool, MaxTasksPerWorkerIsNeverExceeded) {
    PARAFORK_LEAK_CHECK();
    for (std::size_t chunk : {1u, 3u}) {
        pf::options o = jobs(2);
        o.max_tasks_per_worker = 2;
        o.chunksize = chunk;
        pf::pool p(o);
        auto pids = p.map([](int) { return my_pid(); }, seq(0, 20));
        std::map<int, int> per_pid;
        for (int pid : pids) ++per_pid[pid];
        for (auto [pid, n] : per_pid) EXPECT_LE(n, 2) << "worker " << pid << ", chunksize " << chunk;
        EXPECT_GE(per_pid.size(), 10u);
    }
}

TEST(Pool, WorkerInitThatThrowsIsTheCallersError) {
    pf::testing::run_bounded("worker_init throws", 60, [] {
        pf::options o = jobs(2);
        o.worker_init = [] { throw std::runtime_error("no database"); };
        pf::pool p(o);
        try {
            p.submit(&square, 1).get();
            ADD_FAILURE() << "no error";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.type_name(), "std::runtime_error");
            EXPECT_NE(e.message().find("worker_init"), std::string::npos) << e.message();
            EXPECT_NE(e.message().find("no database"), std::string::npos) << e.message();
        }
        EXPECT_TRUE(pf::testing::child_pids().empty());  // stopped, not forked again and again
        EXPECT_THROW(p.map(&square, seq(0, 10)), pf::remote_error);
        // One that exits instead of throwing is worker_died, also without a fork storm.
        pf::options e = jobs(1);
        e.worker_init = [] { ::_exit(3); };
        pf::pool q(e);
        try {
            q.submit(&square, 1).get();
            ADD_FAILURE() << "no error";
        } catch (const pf::worker_died& d) {
            EXPECT_EQ(d.exit_code(), 3);
        }
    });
}

TEST(Pool, TaskTimeoutClockStartsAfterWorkerInit) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(1);
    o.worker_init = [] { std::this_thread::sleep_for(900ms); };
    o.task_timeout = 600ms;
    pf::pool p(o);
    EXPECT_EQ(p.submit(&nap, 10).get(), 10);  // 900 ms of worker_init are not the task's
}

TEST(Pool, FutureAfterGetHasNoState) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(1));
    auto f = p.submit(&square, 3);
    f.wait();
    EXPECT_TRUE(f.ready());
    EXPECT_EQ(f.get(), 9);
    EXPECT_FALSE(f.valid());
    EXPECT_THROW(f.get(), pf::error);
    EXPECT_THROW(f.wait(), pf::error);
    EXPECT_THROW(f.ready(), pf::error);
    EXPECT_THROW(f.wait_for(1ms), pf::error);
    pf::future<int> none;
    EXPECT_THROW(none.wait(), pf::error);
    // wait() only waits: the task's error is get()'s to throw.
    auto bad = p.submit(&throws, 1);
    EXPECT_NO_THROW(bad.wait());
    EXPECT_TRUE(bad.ready());
    EXPECT_THROW(bad.get(), pf::remote_error);
}

TEST(Pool, FailedRespawnIsAnErrorAndLosesNothing) {
    // RLIMIT_NPROC does not bind root, so drop to an unprivileged user in a bounded child.
    pf::testing::run_bounded("respawn failure", 60, [] {
        if (::getuid() == 0) {
            ASSERT_EQ(::setgid(65534), 0);
            ASSERT_EQ(::setuid(65534), 0);
        }
        pf::options o = jobs(1);
        o.retries = 1;
        pf::pool p(o);
        int pid = p.submit(&my_pid).get();
        auto f = p.submit(&nap, 800);
        std::this_thread::sleep_for(100ms);
        rlimit old{};
        ASSERT_EQ(::getrlimit(RLIMIT_NPROC, &old), 0);
        rlimit none = old;
        none.rlim_cur = 0;
        ASSERT_EQ(::setrlimit(RLIMIT_NPROC, &none), 0);
        ::kill(pid, SIGKILL);
        try {
            f.get();
            ADD_FAILURE() << "the replacement forked with RLIMIT_NPROC 0";
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code().value(), EAGAIN) << e.what();
        }
        ASSERT_EQ(::setrlimit(RLIMIT_NPROC, &old), 0);
        EXPECT_EQ(f.get(), 800);  // it was queued again, and runs once a worker can be forked
        EXPECT_NE(p.submit(&my_pid).get(), pid);
    });
}

namespace {
// Runs imap over one batch of naps while a helper kills the worker in the middle of item 2.
std::vector<std::string> batch_killed(unsigned retries) {
    pf::options o = jobs(1);
    o.chunksize = 8;
    o.retries = retries;
    pf::pool p(o);
    int pid = p.submit(&my_pid).get();
    std::vector<int> in{10, 10, 1000, 10, 10, 10, 10, 10};
    pid_t helper = ::fork();
    if (helper == 0) {
        ::usleep(300'000);  // items 0 and 1 are done (unsent, in the batch), item 2 sleeps
        ::kill(pid, SIGKILL);
        ::_exit(0);
    }
    std::vector<std::string> got;
    auto s = p.imap(&nap, in);
    for (auto it = s.begin(); it != s.end(); ++it) {
        try {
            got.push_back(std::to_string(*it));
        } catch (const pf::worker_died& e) {
            got.push_back("died@" + std::to_string(e.task().value_or(99)) + "/" +
                          std::to_string(e.signal()));
        }
    }
    reap(helper);
    return got;
}
} // namespace

TEST(Pool, WorkerKilledInABatchBlamesTheRunningItemOnly) {
    PARAFORK_LEAK_CHECK();
    auto kill_no = std::to_string(SIGKILL);
    EXPECT_EQ(batch_killed(0), (std::vector<std::string>{"10", "10", "died@2/" + kill_no, "10", "10",
                                                         "10", "10", "10"}));
    EXPECT_EQ(batch_killed(1),
              (std::vector<std::string>{"10", "10", "1000", "10", "10", "10", "10", "10"}));
}

TEST(Pool, SigintDuringJoinThrowsInterrupted) {
    pf::testing::run_bounded("SIGINT during join", 60, [] {
        pf::options o = jobs(1);
        o.worker_exit = [] { std::this_thread::sleep_for(30s); };  // a hung worker_exit
        pf::pool p(o);
        EXPECT_EQ(p.submit(&square, 2).get(), 4);
        p.close();
        pid_t helper = signal_self_later(SIGINT, 300);
        auto t0 = std::chrono::steady_clock::now();
        EXPECT_THROW(p.join(), pf::interrupted);
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
        reap(helper);
        EXPECT_TRUE(pf::testing::child_pids().empty());
    });
}

TEST(Pool, ZygoteOptionIsRejected) {
    PARAFORK_LEAK_CHECK();
    pf::zygote z;
    pf::options o = jobs(1);
    o.zygote = &z;
    EXPECT_THROW(pf::pool<> p(o), std::invalid_argument);
    EXPECT_THROW(pf::map([](int x) { return x; }, seq(0, 4), o), std::invalid_argument);
}

TEST(Pool, ImapUnorderedYieldsInCompletionOrder) {
    PARAFORK_LEAK_CHECK();
    pf::options o = jobs(2);
    o.chunksize = 1;
    pf::pool p(o);
    std::vector<std::size_t> order;
    for (auto&& [i, r] : p.imap_unordered(&nap, std::vector<int>{500, 10, 10})) {
        EXPECT_EQ(r, i == 0 ? 500 : 10);
        order.push_back(i);
    }
    ASSERT_EQ(order.size(), 3u);
    EXPECT_NE(order.front(), 0u);  // the slow first item does not hold back the others
}

using parafork::testing::grandchild_page;
namespace {
// Forks a grandchild that holds every pipe end the worker had and sleeps 30 s, then dies:
// by SIGKILL when `how` is 1, by _exit(3) otherwise.
int orphan_then_die(int how) {
    pid_t g = ::fork();
    if (g == 0) {
        ::sleep(30);
        ::_exit(0);
    }
    grandchild_page()->store(g);
    if (how == 1) ::raise(SIGKILL);
    ::_exit(3);
}
void kill_grandchild() {
    int g = grandchild_page()->exchange(0);
    if (g > 0) ::kill(g, SIGKILL);
}
} // namespace

// The death is seen by its pidfd at once, not when the grandchild lets the results pipe close.
TEST(Pool, DeathIsReportedAtOnceWhileAGrandchildHoldsThePipe) {
    grandchild_page();
    pf::testing::run_bounded("grandchild", 25, [] {
        pf::pool p(jobs(2));
        auto t0 = std::chrono::steady_clock::now();
        auto f = p.submit(&orphan_then_die, 1);
        try {
            f.get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
            EXPECT_EQ(e.task(), std::optional<std::size_t>(0));
        }
        kill_grandchild();
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "waited for the grandchild";
        EXPECT_EQ(p.submit(&square, 5).get(), 25);
    });
}

TEST(Map, DeathIsReportedAtOnceWhileAGrandchildHoldsThePipe) {
    grandchild_page();
    pf::testing::run_bounded("grandchild", 25, [] {
        auto t0 = std::chrono::steady_clock::now();
        try {
            pf::map([](int x) { return x == 2 ? orphan_then_die(0) : x; }, seq(0, 4), jobs(2));
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.exit_code(), 3);
            EXPECT_EQ(e.task(), std::optional<std::size_t>(2));
        }
        kill_grandchild();
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "waited for the grandchild";
    });
}

namespace {
// Encodes fine in the worker; refuses to decode in the parent.
struct refused_on_load {
    int x = 0;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(x);
        if constexpr (Ar::is_loading) throw std::runtime_error("refused on load");
    }
};
refused_on_load make_refused(int x) { return {x}; }
std::string big_string(int n) { return std::string(static_cast<std::size_t>(n), 'x'); }
} // namespace

// An answer whose handling throws does not strand the answers read with it: the lent value
// after it still gets its verdict, so its worker does not wait forever.
TEST(Pool, AFrameThatThrowsDoesNotStrandTheRestOfItsBatch) {
    pf::testing::run_bounded("batch", 30, [] {
        pf::pool p(jobs(1));
        auto a = p.submit(&make_refused, 1);
        auto b = p.submit(&big_string, 4 << 20);  // lent: its worker waits for a verdict
        std::this_thread::sleep_for(500ms);       // both answers wait in the pipe: one read
        EXPECT_THROW(a.get(), std::runtime_error);
        ASSERT_TRUE(b.wait_for(10s)) << "the lent value's worker was stranded";
        EXPECT_EQ(b.get().size(), std::size_t{4} << 20);
        EXPECT_EQ(p.submit(&square, 6).get(), 36);
    });
}

namespace {
// A sized range whose size() says more than it yields.
struct overstated {
    std::vector<int> v{1, 2, 3, 4};
    auto begin() const { return v.begin(); }
    auto end() const { return v.end(); }
    std::size_t size() const { return v.size() + 3; }
};
} // namespace

// map's result has one answered value per item, or map throws: never default values standing
// in for items that were never run.
TEST(Pool, MapNeverReturnsAResultWithUnansweredItems) {
    PARAFORK_LEAK_CHECK();
    pf::pool p(jobs(2));
    overstated in;
    EXPECT_THROW(p.map(&square, in), pf::error);
    EXPECT_EQ(p.map(&square, seq(0, 5)), (std::vector<int>{0, 1, 4, 9, 16}));  // still serves
}

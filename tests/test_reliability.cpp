// The library's promises under hostile conditions: the parent killed outright, Ctrl-C to the
// whole process group, descriptors, processes or memory running out, forking while threads run.
#include <parafork/error.hpp>
#include <parafork/exec/coproc/fork_join.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/exec/core/zygote.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/ipc/shared_array.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <new>
#include <set>
#include <string>
#include <thread>
#include <fcntl.h>
#include <iterator>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
namespace sys = parafork::sys;
using namespace std::chrono_literals;

namespace {

void park(std::span<const int>) { ::pause(); }

// The test process is a subreaper, so the orphans of the killed parent become its children:
// a process is gone when we could reap it (it died) within the limit.
bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        int ws;
        pid_t r = ::waitpid(pid, &ws, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD && ::kill(pid, 0) != 0)) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        ::usleep(5000);
    }
}

// Every descendant of `pid` (children, their children, ...).
std::vector<pid_t> descendants_of(pid_t pid) {
    std::vector<pid_t> all;
    for (pid_t c : pf::testing::child_pids_of(pid)) {
        all.push_back(c);
        for (pid_t g : descendants_of(c)) all.push_back(g);
    }
    return all;
}

// A pool task that says it started (one byte on `fd`), then outlasts any test.
int announce_and_sleep(int fd) {
    char c = 's';
    sys::write_all(fd, &c, 1);
    ::sleep(30);
    return fd;
}

int twice(int x) { return 2 * x; }

} // namespace

TEST(Reliability, ParentKilledTakesEveryChildWithIt) {
    PARAFORK_LEAK_CHECK();
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    // A wrapper process plays the parent: it starts pool kids, fork_join parts and zygote
    // workers, reports their pids, and is then killed with SIGKILL.
    auto report = sys::make_pipe();
    sys::child parent(sys::fork_call([&] {
        report.read.reset();
        std::vector<pid_t> pids;
        pf::options o;
        o.jobs = 3;
        pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                             pf::serve(in, out, pf::frames::lines, [](std::string_view s) { return s; });
                         }),
                         pf::frames::lines, o);
        for (pid_t p : pp.pids()) pids.push_back(p);
        pf::proc_pool ext(pf::kid_cmd{"cat"}, pf::frames::lines, o);
        for (pid_t p : ext.pids()) pids.push_back(p);
        pf::zygote z;
        pids.push_back(z.pid());
        pids.push_back(z.spawn(&park, {}));
        pids.push_back(sys::fork_call([] { ::pause(); }));
        sys::write_all(report.write.get(), pids.data(), pids.size() * sizeof(pid_t));
        report.write.reset();
        ::pause();
    }));
    report.write.reset();
    std::vector<pid_t> pids(9);
    ASSERT_TRUE(sys::read_exact(report.read.get(), pids.data(), pids.size() * sizeof(pid_t)));
    for (pid_t p : pids) ASSERT_EQ(::kill(p, 0), 0);
    parent.signal(SIGKILL);
    EXPECT_EQ(parent.wait().signal, SIGKILL);
    for (pid_t p : pids) EXPECT_TRUE(gone_within(p, 1000ms)) << "pid " << p << " outlived its parent";
    // Zygote workers were the zygote's children: they too were handed to us when it died.
    for (pid_t p : pf::testing::child_pids()) EXPECT_TRUE(gone_within(p, 1000ms)) << "pid " << p;
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST(Reliability, DescriptorExhaustionIsAClearErrorAndRecoverable) {
    PARAFORK_LEAK_CHECK();
    rlimit old{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
    // Leave room for what is open now plus a few: not enough for 8 kids' pipes.
    auto open_now = pf::testing::open_fds().size();
    rlimit tight = old;
    tight.rlim_cur = open_now + 6;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
    pf::options o;
    o.jobs = 8;
    try {
        pf::proc_pool pp(pf::kid_cmd{"cat"}, pf::frames::lines, o);
        ADD_FAILURE() << "no error with " << tight.rlim_cur << " descriptors";
    } catch (const std::system_error& e) {
        // Lift the limit first: sanitizer runtimes need descriptors of their own to check even
        // this member access.
        ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
        EXPECT_EQ(e.code().value(), EMFILE) << e.what();
    }
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
    // No partial state: the kids that did start are gone (the leak check also asserts it), and
    // a pool works now that descriptors are available.
    pf::proc_pool pp(pf::kid_cmd{"cat"}, pf::frames::lines, o);
    std::size_t n = 0;
    pp.eval(std::vector<std::string>(100, "x"), [&](std::string_view) { ++n; });
    EXPECT_EQ(n, 100u);
}

TEST(Reliability, ForkFailureIsAClearErrorAndRecoverable) {
    // RLIMIT_NPROC does not bind root, so drop to an unprivileged user in a bounded child.
    pf::testing::run_bounded("fork failure", 60, [] {
        if (::getuid() == 0) {
            ASSERT_EQ(::setgid(65534), 0);
            ASSERT_EQ(::setuid(65534), 0);
        }
        rlimit old{};
        ASSERT_EQ(::getrlimit(RLIMIT_NPROC, &old), 0);
        rlimit none = old;
        none.rlim_cur = 0;
        ASSERT_EQ(::setrlimit(RLIMIT_NPROC, &none), 0);
        pf::options o;
        o.jobs = 2;
        try {
            pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                                 pf::serve(in, out, pf::frames::lines, [](std::string_view s) { return s; });
                             }),
                             pf::frames::lines, o);
            ADD_FAILURE() << "fork succeeded with RLIMIT_NPROC 0";
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code().value(), EAGAIN) << e.what();
            EXPECT_NE(std::string(e.what()).find("fork"), std::string::npos);
        }
        EXPECT_THROW(pf::fork_join(pf::nsplit(2, 2), [](std::size_t, pf::slice) {}), std::system_error);
        ASSERT_EQ(::setrlimit(RLIMIT_NPROC, &old), 0);
        EXPECT_TRUE(pf::testing::child_pids().empty());
        pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                             pf::serve(in, out, pf::frames::lines, [](std::string_view s) { return s; });
                         }),
                         pf::frames::lines, o);
        std::size_t n = 0;
        pp.eval(std::vector<std::string>(10, "y"), [&](std::string_view) { ++n; });
        EXPECT_EQ(n, 10u);
    });
}

// The parent killed while a pool map is mid-run, with a channel receiver blocked and shared
// arrays mapped: every worker and child goes with it. Anonymous objects are memfds, never in
// /dev/shm; a named array's name stays (its creator could not unlink it: the documented limit
// in ipc/shared_array.hpp), so it is the only new entry there.
TEST(Reliability, ParentKilledMidMapTakesWorkersAndLeavesOnlyTheNamedArray) {
    PARAFORK_LEAK_CHECK();
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    const std::string name = "/parafork-test-pdeath-" + std::to_string(::getpid());
    auto shm_before = pf::testing::shm_entries();
    auto report = sys::make_pipe();
    constexpr int jobs = 2;
    sys::child parent(sys::fork_call([&] {
        report.read.reset();
        pf::shared_array<double> anon({1 << 16});
        auto named = pf::shared_array<double>::create_named(name, {1 << 16});
        pf::channel ch(64 * 1024);
        sys::child receiver(sys::fork_call([&] { (void)ch.receive<int>(); }));
        pf::options o;
        o.jobs = jobs;
        o.chunksize = 1;
        pf::pool p(o);
        p.map(&announce_and_sleep, std::vector<int>(jobs, report.write.get()));  // never returns
    }));
    report.write.reset();
    char started[jobs];
    ASSERT_TRUE(sys::read_exact(report.read.get(), started, sizeof started));  // both tasks run
    auto pids = descendants_of(parent.pid());
    ASSERT_GE(pids.size(), jobs + 1u) << "pool workers and the receiver";
    EXPECT_EQ(pf::testing::shm_entries().count(name.substr(1)), 1u);
    auto t0 = std::chrono::steady_clock::now();
    parent.signal(SIGKILL);
    EXPECT_EQ(parent.wait().signal, SIGKILL);
    for (pid_t p : pids)
        EXPECT_TRUE(gone_within(p, 3000ms)) << "pid " << p << " outlived its parent";
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    for (pid_t p : pf::testing::child_pids()) EXPECT_TRUE(gone_within(p, 3000ms)) << "pid " << p;
    std::printf("every child gone %lld ms after the parent's SIGKILL\n",
                static_cast<long long>(took.count()));
    RecordProperty("gone_ms", static_cast<int>(took.count()));
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);

    // The name stays; anything else new would be the wrapper's too, unless a test running
    // alongside owns it - those are gone a moment later, the dead wrapper's never are.
    auto shm_after = pf::testing::shm_entries();
    EXPECT_EQ(shm_after.count(name.substr(1)), 1u) << "the named array's name went away";
    pf::shared_array<double>::unlink_named(name);  // the cleanup the creator could not do
    std::set<std::string> added;
    std::ranges::set_difference(shm_after, shm_before, std::inserter(added, added.end()));
    added.erase(name.substr(1));
    if (!added.empty()) std::this_thread::sleep_for(500ms);
    for (auto& e : pf::testing::shm_entries())
        EXPECT_FALSE(added.count(e)) << "/dev/shm/" << e << " left by the killed parent";
}

// Ctrl-C at a terminal signals the whole foreground process group: the parent, its workers
// and any other process in it. The map ends with interrupted well before its tasks would, and
// the workers are gone.
TEST(Reliability, CtrlCToTheProcessGroupEndsAMapPromptly) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("ctrl-c to the group", 60, [] {
        PARAFORK_LEAK_CHECK();  // in the bounded child too: its own children and descriptors
        ASSERT_EQ(::setpgid(0, 0), 0);  // a group of our own, so the test runner is not hit
        // The helper strikes once a task has started (so the map is surely running: a SIGINT
        // before it would kill this process), and 200 ms later. Children ignore SIGINT, so it
        // survives its own kill. The pipe comes first: the workers must inherit its write end.
        auto started = sys::make_pipe();
        pf::options o;
        o.jobs = 2;
        pf::pool p(o);
        sys::child helper(sys::fork_call([&] {
            started.write.reset();
            char c;
            if (!sys::read_exact(started.read.get(), &c, 1)) return;
            std::this_thread::sleep_for(200ms);
            ::kill(-::getpgrp(), SIGINT);
        }));
        started.read.reset();
        auto t0 = std::chrono::steady_clock::now();
        EXPECT_THROW(p.map(&announce_and_sleep, std::vector<int>(4, started.write.get())),
                     pf::interrupted);
        auto took = std::chrono::steady_clock::now() - t0;
        started.write.reset();  // whatever happened, the helper is not left waiting
        EXPECT_LT(took, 5s) << "tasks take 30 s; interrupted must come long before";
        EXPECT_TRUE(helper.wait().ok());
        EXPECT_TRUE(pf::testing::child_pids().empty()) << "a worker outlived the interrupted map";
    });
}

// The fork warning: a process that runs a second thread and forks through the library gets
// one line on stderr, however often it forks.
TEST(Reliability, ForkingWhileThreadsRunWarnsOnce) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("fork warning", 30, [] {
        PARAFORK_LEAK_CHECK();  // in the bounded child too: its own children and descriptors
        std::atomic<bool> stop{false};
        std::thread t([&] {
            while (!stop) std::this_thread::sleep_for(1ms);
        });
        auto err = sys::make_pipe();
        int saved = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
        ASSERT_GE(saved, 0);
        ASSERT_EQ(::dup2(err.write.get(), 2), 2);
        sys::child a(sys::fork_call([] {}));
        sys::child b(sys::fork_call([] {}));
        EXPECT_TRUE(a.wait().ok());
        EXPECT_TRUE(b.wait().ok());
        ASSERT_EQ(::dup2(saved, 2), 2);
        ::close(saved);
        err.write.reset();
        stop = true;
        t.join();
        std::string text;
        char buf[4096];
        for (long n; (n = ::read(err.read.get(), buf, sizeof buf)) > 0;)
            text.append(buf, static_cast<std::size_t>(n));
        const std::string line = "parafork: warning: forking a process that runs 2 threads";
        std::size_t count = 0;
        for (auto at = text.find(line); at != std::string::npos; at = text.find(line, at + 1))
            ++count;
        EXPECT_EQ(count, 1u) << "stderr was: " << text;
    });
}

// Memory that cannot be had: a shared array larger than the address space fails its mmap with
// a clear std::system_error (ENOMEM), leaves no descriptor or mapping, and a normal one works.
TEST(Reliability, SharedMemoryTooLargeIsAClearErrorAndLeavesNothing) {
    PARAFORK_LEAK_CHECK();
    auto before = pf::testing::map_count();
    try {
        pf::shared_array<char> huge({std::size_t{1} << 47});  // 128 TiB: every user address space
        ADD_FAILURE() << "mapped " << huge.size_bytes() << " bytes";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOMEM) << e.what();
    }
    pf::testing::expect_same_maps(before, pf::testing::map_count());
    pf::shared_array<int> ok({1000});
    ok[999] = 7;
    EXPECT_EQ(ok[999], 7);
}

// The same for a channel's ring, with the address space limited (RLIMIT_AS) in a bounded child
// so that a 1 GiB ring cannot be mapped; a small channel works afterwards.
TEST(Reliability, ChannelRingThatCannotBeMappedIsAClearError) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("channel ENOMEM", 30, [] {
        auto fds = pf::testing::open_fds();
        auto maps = pf::testing::map_count();
        rlimit old{};
        ASSERT_EQ(::getrlimit(RLIMIT_AS, &old), 0);
        // What is mapped now (sanitizers reserve terabytes) plus 256 MiB: less than the ring.
        std::size_t now = 0;
        {
            FILE* f = std::fopen("/proc/self/statm", "re");
            ASSERT_NE(f, nullptr);
            unsigned long pages = 0;
            ASSERT_EQ(std::fscanf(f, "%lu", &pages), 1);
            std::fclose(f);
            now = pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        }
        rlimit tight = old;
        tight.rlim_cur = now + (std::size_t{256} << 20);
        ASSERT_EQ(::setrlimit(RLIMIT_AS, &tight), 0);
        bool refused = false;
        try {
            pf::channel ch(pf::channel::max_capacity);
        } catch (const std::system_error& e) {
            refused = true;
            ASSERT_EQ(::setrlimit(RLIMIT_AS, &old), 0);
            EXPECT_EQ(e.code().value(), ENOMEM) << e.what();
        } catch (const std::bad_alloc&) {
            refused = true;
        }
        ASSERT_EQ(::setrlimit(RLIMIT_AS, &old), 0);
        EXPECT_TRUE(refused) << "a 1 GiB ring was mapped under a limit of " << tight.rlim_cur;
        EXPECT_EQ(pf::testing::open_fds(), fds);
        pf::testing::expect_same_maps(maps, pf::testing::map_count());
        pf::channel small(4096);
        small.send(41);
        EXPECT_EQ(small.receive<int>(), 41);
    });
}

// fork failing after the pool started: a worker is killed and cannot be replaced. The map
// must end (results or a clear error), never hang, and a pool works once the limit is lifted.
TEST(Reliability, ForkFailingWhenAWorkerMustBeReplacedIsClear) {
    pf::testing::run_bounded("respawn failure", 60, [] {
        if (::getuid() == 0) {
            ASSERT_EQ(::setgid(65534), 0);
            ASSERT_EQ(::setuid(65534), 0);
        }
        pf::options o;
        o.jobs = 2;
        o.chunksize = 1;
        {
            pf::pool p(o);
            ASSERT_EQ(p.map(&twice, std::vector<int>{1, 2, 3, 4}), (std::vector<int>{2, 4, 6, 8}));
            auto workers = pf::testing::child_pids();
            ASSERT_EQ(workers.size(), 2u);
            rlimit old{};
            ASSERT_EQ(::getrlimit(RLIMIT_NPROC, &old), 0);
            rlimit none = old;
            none.rlim_cur = 0;
            ASSERT_EQ(::setrlimit(RLIMIT_NPROC, &none), 0);
            ::kill(*workers.begin(), SIGKILL);
            std::vector<int> in(200, 5);
            try {
                auto out = p.map(&twice, in);
                EXPECT_EQ(out, std::vector<int>(200, 10)) << "results from the surviving worker";
            } catch (const std::system_error& e) {
                EXPECT_EQ(e.code().value(), EAGAIN) << e.what();
            } catch (const pf::worker_died& e) {
                EXPECT_EQ(e.signal(), SIGKILL) << e.what();
            }
            ASSERT_EQ(::setrlimit(RLIMIT_NPROC, &old), 0);
        }
        EXPECT_TRUE(pf::testing::child_pids().empty());
        pf::pool again(o);
        EXPECT_EQ(again.map(&twice, std::vector<int>{21}), std::vector<int>{42});
    });
}

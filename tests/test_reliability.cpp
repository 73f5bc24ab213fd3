// The library's promises under hostile conditions: the parent killed outright, descriptors
// or processes running out.
#include <parafork/error.hpp>
#include <parafork/exec/fork_join.hpp>
#include <parafork/exec/proc_pool.hpp>
#include <parafork/exec/zygote.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"

#include <cerrno>
#include <csignal>
#include <string>
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

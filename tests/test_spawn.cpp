// sys::spawn, the one way parafork starts a program (the library's kid_cmd and stage commands,
// the command's jobs).
#include <parafork/sys/process.hpp>

#include <support/leak_check.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <string>
#include <sys/resource.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace sys = parafork::sys;

namespace {

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    return {std::istreambuf_iterator<char>(f), {}};
}

std::string temp_path(const char* what) {
    return std::string(::testing::TempDir()) + "parafork_spawn_" + what + "_" + std::to_string(::getpid());
}

// The SigIgn mask of a process, from /proc/<pid>/status.
unsigned long long ignored_signals(pid_t pid) {
    std::string s = parafork::testing::read_proc("/proc/" + std::to_string(pid) + "/status");
    auto at = s.find("SigIgn:");
    return at == std::string::npos ? 0 : std::strtoull(s.c_str() + at + 7, nullptr, 16);
}

} // namespace

// With only two descriptors left, a child asked to write its output to our fd 2 must still do so
// (the fd has to be moved above 2 first): never on whatever fd 1 it inherited instead.
TEST(Spawn, AFullDescriptorTableNeverRunsTheJobOnTheWrongOutput) {
    parafork::testing::run_bounded("spawn with two descriptors left", 60, [] {
        std::string ours = temp_path("ours"), theirs = temp_path("theirs");
        int o = ::open(ours.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int t = ::open(theirs.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_GE(o, 0);
        ASSERT_GE(t, 0);
        ::dup2(o, 1);  // what the job would inherit as its stdout
        ::dup2(t, 2);  // what it is asked to use
        ::close(o);
        ::close(t);
        rlimit low{64, 64};
        ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
        std::vector<int> filler;
        for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.push_back(fd);
        ::close(filler.back());
        filler.pop_back();
        ::close(filler.back());
        filler.pop_back();
        sys::spawn_options so;
        so.stdout_fd = 2;
        so.path = "/bin/echo";
        try {
            sys::child c(sys::spawn({"echo", "where"}, so));
            EXPECT_TRUE(c.wait().ok());
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code().value(), EMFILE) << e.what();  // refusing is fine; running wrong is not
        }
        for (int fd : filler) ::close(fd);
        EXPECT_EQ(slurp(ours), "");
        std::string got = slurp(theirs);
        EXPECT_TRUE(got == "where\n" || got.empty()) << got;
        ::unlink(ours.c_str());
        ::unlink(theirs.c_str());
    });
}

// No descriptor left at all: the job cannot get the one it asked for, so it must not run.
TEST(Spawn, NoDescriptorLeftMeansTheJobDoesNotRun) {
    parafork::testing::run_bounded("spawn with no descriptor left", 60, [] {
        std::string marker = temp_path("marker");
        rlimit low{64, 64};
        ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
        std::vector<int> filler;
        for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.push_back(fd);
        sys::spawn_options so;
        so.stdin_fd = 0;  // must be moved above 2 first, and there is no room
        so.path = "/bin/sh";
        EXPECT_THROW(sys::spawn({"sh", "-c", "touch " + marker}, so), std::system_error);
        for (int fd : filler) ::close(fd);
        EXPECT_NE(::access(marker.c_str(), F_OK), 0) << "the job ran without its stdin";
        EXPECT_TRUE(parafork::testing::zombie_children().empty());
    });
}

TEST(Spawn, AFileWithoutAnInterpreterLineRunsThroughTheShell) {
    PARAFORK_LEAK_CHECK();
    std::string script = temp_path("script");
    {
        std::ofstream f(script);
        f << "exit 4\n";
    }
    ::chmod(script.c_str(), 0700);
    sys::child c(sys::spawn({script}));
    EXPECT_EQ(c.wait().code, 4);
    ::unlink(script.c_str());
}

TEST(Spawn, FindsProgramsAsExecvpDoes) {
    EXPECT_EQ(sys::find_executable("/no/such/dir/prog"), "/no/such/dir/prog");  // a path is kept
    std::string sh = sys::find_executable("sh");
    EXPECT_FALSE(sh.empty());
    EXPECT_EQ(sh.front(), '/');
    EXPECT_EQ(sys::find_executable("parafork-no-such-command-xyz"), "");
}

TEST(Spawn, ProcessGroupAndCtrlCAreAsAsked) {
    PARAFORK_LEAK_CHECK();
    constexpr unsigned long long sigint_bit = 1ull << (SIGINT - 1);
    sys::spawn_options lead;
    lead.new_process_group = true;
    lead.child.ignore_sigint = false;
    sys::child a(sys::spawn({"sleep", "30"}, lead));
    sys::child b(sys::spawn({"sleep", "30"}));  // the library's default: Ctrl-C is the parent's
    // The exec may not have happened yet when spawn returns? It has: vfork waits for it.
    EXPECT_EQ(::getpgid(a.pid()), a.pid());
    EXPECT_EQ(::getpgid(b.pid()), ::getpgrp());
    EXPECT_EQ(ignored_signals(a.pid()) & sigint_bit, 0u);
    EXPECT_NE(ignored_signals(b.pid()) & sigint_bit, 0u);
}

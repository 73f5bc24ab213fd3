// Ctrl-C is the parent's: the guard's descriptor, and how children stay out of it.
#include <parafork/error.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <support/leak_check.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <fcntl.h>
#include <string>
#include <unistd.h>

namespace pf = parafork;

TEST(Signals, GuardTurnsCtrlCIntoAReadableDescriptor) {
    PARAFORK_LEAK_CHECK();
    {
        pf::sys::sigint_guard guard;
        ASSERT_GE(pf::sys::sigint_guard::fd(), 0);
        ::raise(SIGINT);
        EXPECT_TRUE(pf::sys::sigint_guard::pending());
        char c;
        EXPECT_EQ(::read(pf::sys::sigint_guard::fd(), &c, 1), 1);
        EXPECT_THROW(pf::sys::sigint_guard::check(), pf::interrupted);
        EXPECT_FALSE(pf::sys::sigint_guard::pending());
    }
    EXPECT_EQ(pf::sys::sigint_guard::fd(), -1);  // closed with the last guard
}

// A forked child must not hold the Ctrl-C pipe: it could write into its parent's, and it would
// keep the descriptor alive after the parent closed it.
TEST(Signals, ChildrenDoNotInheritTheCtrlCPipe) {
    PARAFORK_LEAK_CHECK();
    pf::sys::sigint_guard guard;
    int fd = pf::sys::sigint_guard::fd();
    auto report = pf::sys::make_pipe();
    int w = report.write.get();
    pid_t pid = pf::sys::fork_call([fd, w] {
        // The read end's number, and the write end's (the next one, or near): neither open.
        std::string open_ones;
        for (int probe = fd; probe < fd + 2; ++probe)
            if (probe != w && ::fcntl(probe, F_GETFD) >= 0) open_ones += std::to_string(probe) + " ";
        pf::sys::write_all(w, open_ones + "|");
    });
    report.write.reset();
    std::string got;
    char buf[64];
    long n;
    while ((n = pf::sys::read_some(report.read.get(), buf, sizeof buf)) > 0) got.append(buf, n);
    EXPECT_TRUE(pf::sys::wait_pid(pid).ok());
    EXPECT_EQ(got, "|") << "the child held the Ctrl-C pipe: fds " << got;
}

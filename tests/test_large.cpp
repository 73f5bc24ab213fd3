// Large values: sealed memfds over a UNIX socket, mapped by the receiver; nothing in /dev/shm.
#include <parafork/exec/forked/forked.hpp>
#include <parafork/exec/forked/map.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/wire/large.hpp>

#include "support/leak_check.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <numeric>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <ranges>
#include <string>
#include <thread>
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

std::vector<double> ramp(std::size_t n) {
    std::vector<double> v(n);
    std::iota(v.begin(), v.end(), 0.0);
    return v;
}
double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

void expect_ramp(const std::vector<double>& v, std::size_t n) {
    ASSERT_EQ(v.size(), n);
    for (std::size_t i = 0; i < n; i += 4093) ASSERT_EQ(v[i], static_cast<double>(i));
    ASSERT_EQ(v.back(), static_cast<double>(n - 1));
}

constexpr std::size_t mib64 = (64u << 20) / sizeof(double);

} // namespace

TEST(Large, SendAndReceiveOverASocket) {
    PARAFORK_LEAK_CHECK();
    auto sp = pf::sys::make_socketpair();
    std::string big(3u << 20, 'x');
    big[12345] = 'y';
    pf::wire::send_large(sp.read.get(), big);
    auto v = pf::wire::recv_large(sp.write.get());
    EXPECT_EQ(v.bytes(), big);
}

TEST(Large, RefusesAnUnsealedDescriptor) {
    PARAFORK_LEAK_CHECK();
    auto sp = pf::sys::make_socketpair();
    auto fd = pf::sys::make_memfd("unsealed", 4096);
    std::uint64_t size = 4096;
    int raw = fd.get();
    pf::sys::send_fds(sp.read.get(), {&raw, 1},
                      std::string_view(reinterpret_cast<const char*>(&size), sizeof size));
    EXPECT_THROW(pf::wire::recv_large(sp.write.get()), pf::protocol_error);
}

TEST(Large, ForkedMapReturns64MiBValues) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 2;
    auto r = pf::map([](int) { return ramp(mib64); }, seq(0, 3), o);
    ASSERT_EQ(r.size(), 3u);
    for (auto& v : r) expect_ramp(v, mib64);
}

TEST(Large, PoolMovesLargeArgumentsAndResults) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 2;
    pf::pool p(o);
    auto made = p.submit(&ramp, mib64).get();
    expect_ramp(made, mib64);
    // Made after the pool forked: it can only cross as bytes (here: by memfd).
    auto big = ramp(3u << 20);
    EXPECT_EQ(p.submit(&sum, big).get(), sum(big));
    auto sums = p.map(&sum, std::vector<std::vector<double>>(3, big));
    for (double s : sums) EXPECT_EQ(s, sum(big));
}

TEST(Large, OneGiBResult) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 1;
    pf::pool p(o);
    constexpr std::size_t n = (std::size_t{1} << 30) / sizeof(double);
    auto v = p.submit(&ramp, n).get();
    expect_ramp(v, n);
}

TEST(Large, NothingLeftWhenThePoolStopsMidTransfer) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 1;
    pf::pool p(o);
    auto f = p.submit(&ramp, mib64);
    ::usleep(300'000);  // the memfd is likely made, maybe already queued in the socket
    p.terminate();
    EXPECT_THROW(f.get(), pf::error);
}

// Large vectors and strings are lent: the parent copies them straight out of the worker's
// memory while the worker waits. Where the kernel refuses that (a sandbox without
// process_vm_readv, here a seccomp filter), the worker sends them by memfd instead.
namespace {

void refuse_process_vm_readv() {
    sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog fprog{static_cast<unsigned short>(std::size(prog)), prog};
    ASSERT_EQ(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    ASSERT_EQ(::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog), 0);
}

std::string letters(std::size_t n) {
    std::string s(n, 'a');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
    return s;
}

} // namespace

TEST(Large, LentValuesFallBackToMemfdWhereTheKernelRefuses) {
    pf::testing::run_bounded("seccomp", 100, [] {
        PARAFORK_LEAK_CHECK();
        refuse_process_vm_readv();
        // The filter works: the parent cannot read a child's memory.
        std::vector<double> mine = ramp(1024);
        pf::sys::child c(pf::sys::fork_call([] { for (;;) ::pause(); }));
        std::vector<double> got(1024);
        errno = 0;
        EXPECT_FALSE(pf::sys::read_process_memory(c.pid(), reinterpret_cast<std::uintptr_t>(mine.data()),
                                                  got.data(), sizeof(double) * 1024));
        EXPECT_EQ(errno, EPERM);
        c.terminate(std::chrono::milliseconds(50));
        // So every large result below came by memfd, and all are whole.
        pf::options o;
        o.jobs = 2;
        pf::pool p(o);
        expect_ramp(p.submit(&ramp, mib64 / 8).get(), mib64 / 8);
        EXPECT_EQ(p.submit(&letters, std::size_t{3} << 20).get(), letters(std::size_t{3} << 20));
        auto r = pf::map([](int) { return ramp(mib64 / 16); }, seq(0, 3), o);
        ASSERT_EQ(r.size(), 3u);
        for (auto& v : r) expect_ramp(v, mib64 / 16);
    });
}

TEST(Large, LentStringsAndVectorsOfStructs) {
    PARAFORK_LEAK_CHECK();
    struct point {
        float x, y, z;
    };
    pf::options o;
    o.jobs = 2;
    pf::pool p(o);
    EXPECT_EQ(p.submit(&letters, (std::size_t{5} << 20) + 3).get(), letters((std::size_t{5} << 20) + 3));
    auto pts = p.submit([](std::size_t n) {
        std::vector<point> v(n);
        for (std::size_t i = 0; i < n; ++i) v[i] = {float(i), float(i) * 2, -float(i)};
        return v;
    }, std::size_t{300'001}).get();
    ASSERT_EQ(pts.size(), 300'001u);
    for (std::size_t i = 0; i < pts.size(); i += 977) {
        ASSERT_EQ(pts[i].x, float(i));
        ASSERT_EQ(pts[i].y, float(i) * 2);
        ASSERT_EQ(pts[i].z, -float(i));
    }
}

// 32 MiB and more: sized part by part in this thread while a helper copies the sized parts;
// elements of 24 bytes, so the parts (whole elements each) are not a power of two and the last
// one is short.
TEST(Large, LentValueSplitAcrossTwoThreads) {
    PARAFORK_LEAK_CHECK();
    struct triple {
        double a, b, c;
    };
    constexpr std::size_t n = (std::size_t{48} << 20) / sizeof(triple) + 7;
    pf::options o;
    o.jobs = 1;
    pf::pool p(o);
    auto v = p.submit([](std::size_t k) {
        std::vector<triple> out(k);
        for (std::size_t i = 0; i < k; ++i) out[i] = {double(i), -double(i), 0.5 * double(i)};
        return out;
    }, n).get();
    ASSERT_EQ(v.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
        if (v[i].a != double(i) || v[i].b != -double(i) || v[i].c != 0.5 * double(i)) {
            ADD_FAILURE() << "element " << i << " is wrong";
            break;
        }
    }
    auto s = p.submit(&letters, (std::size_t{40} << 20) + 1).get();
    EXPECT_EQ(s, letters((std::size_t{40} << 20) + 1));
}

// The worker dies while the parent copies the value it lent (a thread of its own kills it a
// moment after the value is handed over). Whatever the timing, the caller gets either the
// whole value or worker_died: never a hang, never a torn value. (A killer that fires after its
// value got through kills the worker during the next task, which then fails: also counted.)
TEST(Large, WorkerKilledWhileItsValueIsCopied) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 1;
    pf::pool p(o);
    int whole = 0, died = 0;
    for (unsigned delay_us : {0u, 5'000u, 20'000u, 60'000u}) {
        auto f = p.submit([](unsigned us) {
            auto v = ramp(mib64 * 2);  // 128 MiB
            std::thread([us] {
                ::usleep(us);
                ::raise(SIGKILL);
            }).detach();
            return v;
        }, delay_us);
        try {
            expect_ramp(f.get(), mib64 * 2);
            ++whole;
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
            ++died;
        }
    }
    EXPECT_EQ(whole + died, 4);
    // A worker whose value got through dies a moment later all the same (its thread still
    // fires): let the last one go, then the pool, which replaced each, still works.
    ::usleep(200'000);
    expect_ramp(p.submit(&ramp, std::size_t{100}).get(), 100);
}

TEST(Large, AbandonedLargeResultsDoNotStallTheWorker) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 1;
    pf::pool p(o);
    // Nobody wants these values: the worker must still be told to go on.
    { auto dropped = p.submit(&ramp, mib64 / 8); }
    {
        auto it = p.imap(&ramp, std::vector<std::size_t>(4, mib64 / 16));
        auto first = it.begin();
        expect_ramp(*first, mib64 / 16);
    }
    // The one worker answers the next call: it was not left waiting on a verdict.
    auto f = p.submit(&ramp, std::size_t{10});
    ASSERT_TRUE(f.wait_for(std::chrono::seconds(60)));
    expect_ramp(f.get(), 10);
}

TEST(Large, ForkedOrderedJoinsLargeValuesThatArriveOutOfOrder) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 2;
    o.chunksize = 1;
    o.ordered = true;
    std::vector<std::size_t> seen;
    // Item 0 is late: items after it arrive first and must wait, held, for their turn.
    pf::forked(
        seq(0, 4),
        [](int i) {
            if (i == 0) ::usleep(300'000);
            return ramp(mib64 / 32 + static_cast<std::size_t>(i));
        },
        [&](std::size_t i, std::vector<double>&& v) {
            expect_ramp(v, mib64 / 32 + i);
            seen.push_back(i);
        },
        o);
    EXPECT_EQ(seen, (std::vector<std::size_t>{0, 1, 2, 3}));
}

TEST(Large, MapStopsAtAnErrorWhileLargeValuesArrive) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 2;
    o.chunksize = 1;
    EXPECT_THROW(pf::map(
                     [](int i) {
                         if (i == 1) throw std::runtime_error("no");
                         return ramp(mib64 / 32);
                     },
                     seq(0, 6), o),
                 pf::remote_error);
}

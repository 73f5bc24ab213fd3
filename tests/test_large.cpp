// Large values: sealed memfds over a UNIX socket, mapped by the receiver; nothing in /dev/shm.
#include <parafork/exec/map.hpp>
#include <parafork/exec/pool.hpp>
#include <parafork/wire/large.hpp>

#include "support/leak_check.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <unistd.h>
#include <ranges>
#include <string>
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

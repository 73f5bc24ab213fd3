// map / starmap with extract and merge: each worker's state comes back and is merged once.
#include <parafork/error.hpp>
#include <parafork/exec/forked/map.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"

#include <csignal>
#include <fcntl.h>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unistd.h>
#include <vector>

namespace pf = parafork;

namespace {
int g_calls = 0;  // a "global" each worker counts in its own copy
} // namespace

TEST(MapMerge, EachWorkersStateIsMergedOnce) {
    PARAFORK_LEAK_CHECK();
    std::vector<int> in(1000);
    std::iota(in.begin(), in.end(), 0);
    pf::options o;
    o.jobs = 3;
    int total_calls = 0, merges = 0;
    std::set<int> pids;
    auto out = pf::map([](int x) { ++g_calls; return x * x; }, in,
                       [] { return std::pair<int, int>(g_calls, ::getpid()); },
                       [&](std::pair<int, int> st) {
                           total_calls += st.first;
                           pids.insert(st.second);
                           ++merges;
                       },
                       o);
    ASSERT_EQ(out.size(), in.size());
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i * i);
    EXPECT_EQ(total_calls, 1000);
    EXPECT_EQ(merges, 3);
    EXPECT_EQ(pids.size(), 3u);
    EXPECT_EQ(pids.count(::getpid()), 0u);
    EXPECT_EQ(g_calls, 0);  // the parent's copy was never touched
}

TEST(MapMerge, StarmapAndAnExceptionComeBackTyped) {
    PARAFORK_LEAK_CHECK();
    std::vector<std::tuple<int, std::string>> in = {{1, "a"}, {2, "bb"}, {3, "ccc"}};
    std::string seen;
    auto out = pf::starmap([](int n, const std::string& s) { return s.size() * static_cast<std::size_t>(n); },
                           in, [] { return std::string("w"); }, [&](std::string w) { seen += w; });
    EXPECT_EQ(out, (std::vector<std::size_t>{1, 4, 9}));
    EXPECT_FALSE(seen.empty());
    try {
        pf::map([](int x) -> int { if (x == 7) throw std::out_of_range("seven"); return x; },
                std::vector<int>{1, 2, 7, 8}, [] { return 0; }, [](int) {});
        FAIL() << "no error";
    } catch (const pf::remote_error& e) {
        EXPECT_EQ(e.type_name(), "std::out_of_range");
        EXPECT_EQ(e.message(), "seven");
        EXPECT_EQ(e.task(), std::optional<std::size_t>(2));
    }
}

TEST(MapMerge, AKilledWorkerIsWorkerDiedAndAnyThrownTypeIsRemoteError) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 2;
    std::vector<int> in(10);
    std::iota(in.begin(), in.end(), 0);
    try {
        pf::map([](int x) {
                    if (x == 7) ::raise(SIGKILL);
                    return x;
                },
                in, [] { return 0; }, [](int) {}, o);
        FAIL() << "no error";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.signal(), SIGKILL);
        EXPECT_EQ(e.task(), std::optional<std::size_t>(5));  // the first item of its part
    }
    try {
        pf::map([](int x) -> int {
                    if (x == 3) throw 17;
                    return x;
                },
                in, [] { return 0; }, [](int) {}, o);
        FAIL() << "no error";
    } catch (const pf::remote_error& e) {
        EXPECT_EQ(e.type_name(), "int");
        EXPECT_EQ(e.task(), std::optional<std::size_t>(3));
    }
}

TEST(MapMerge, OptionsAreHonouredOrRejected) {
    PARAFORK_LEAK_CHECK();
    std::vector<int> in(20);
    std::iota(in.begin(), in.end(), 0);
    pf::options o;
    o.jobs = 2;
    o.chunksize = 3;  // parts, not chunks: cannot be honoured
    EXPECT_THROW(pf::map([](int x) { return x; }, in, [] { return 0; }, [](int) {}, o),
                 std::invalid_argument);
    // worker_init runs in each worker before its part; retries re-run a part whose worker died,
    // in a fresh process (its extract sees that run only).
    pf::options r;
    r.jobs = 2;
    r.retries = 1;
    r.worker_init = [] { g_calls = 100; };
    static std::string marker;
    marker = "/tmp/parafork_map_merge_" + std::to_string(::getpid());
    std::vector<int> states;
    auto out = pf::map([](int x) {
                           // The first run of item 12 kills its worker; the retry finds the mark.
                           if (x == 12) {
                               int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
                               if (fd >= 0) ::raise(SIGKILL);
                           }
                           ++g_calls;
                           return x * 2;
                       },
                       in, [] { return g_calls; }, [&](int st) { states.push_back(st); }, r);
    EXPECT_EQ(::unlink(marker.c_str()), 0);  // the first run happened
    ASSERT_EQ(out.size(), in.size());
    for (int i = 0; i < 20; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], 2 * i);
    EXPECT_EQ(states, (std::vector<int>{110, 110}));
    EXPECT_EQ(g_calls, 0);
}

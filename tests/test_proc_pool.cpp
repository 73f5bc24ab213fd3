#include <parafork/error.hpp>
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/sys/fd.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"
#include "support/sigint_timer.hpp"

#include <parafork/sys/memory.hpp>

#include <atomic>
#include <thread>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <iterator>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <sys/resource.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
namespace frames = parafork::frames;
using namespace std::chrono_literals;

static_assert(frames::default_max_frame == std::size_t{1} << 30, "frames up to 1 GiB by default");

namespace {

pf::options jobs(unsigned n) {
    pf::options o;
    o.jobs = n;
    return o;
}

pf::kid_fn echo_kid(frames::framing f) {
    return pf::kid_fn([f](int in, int out) { pf::serve(in, out, f, [](std::string_view s) { return s; }); });
}

// n bytes of noise (no delimiter of f in it), cheap to make even at 64 MiB.
std::string payload(const frames::framing& f, std::size_t n, unsigned seed) {
    static const std::string block = [] {
        std::string b(65536, '\0');
        std::mt19937 rng(12345);
        for (auto& c : b) c = static_cast<char>(rng() % 256);
        return b;
    }();
    std::string s(n, '\0');
    for (std::size_t off = 0; off < n; off += block.size() - 1024)
        std::memcpy(s.data() + off, block.data() + (seed * 7919) % 1024, std::min(block.size() - 1024, n - off));
    char avoid = f.type == frames::kind::lines ? '\n' : f.type == frames::kind::zero_term ? '\0' : 1;
    if (avoid != 1) std::replace(s.begin(), s.end(), avoid, 'x');
    if (n) s[0] = static_cast<char>('a' + seed % 26);  // requests differ from each other
    return s;
}

// Every request's reply equals the request, in both directions, for each framing and size.
void echo_sizes(bool external) {
    const std::size_t sizes[] = {0, 1, 4095, 4096, 4097, 8191, 8192, 65536, 1 << 20, 64 << 20};
    for (std::size_t n : sizes) {
        std::vector<frames::framing> fs = {frames::lines, frames::zero_term, frames::len_prefix};
        if (n > 0) fs.push_back(frames::fixed_size(n));
        for (auto f : fs) {
            unsigned count = n >= (64 << 20) ? 1 : n >= (1 << 20) ? 2 : 5;
            std::vector<std::string> reqs;
            for (unsigned i = 0; i < count; ++i) reqs.push_back(payload(f, n, i));
            auto o = jobs(2);
            o.ordered = true;
            std::unique_ptr<pf::proc_pool> pp;
            if (external) pp = std::make_unique<pf::proc_pool>(pf::kid_cmd{"cat"}, f, o);
            else pp = std::make_unique<pf::proc_pool>(echo_kid(f), f, o);
            std::size_t got = 0;
            pp->eval(reqs, [&](std::size_t i, std::string_view r) {
                ASSERT_EQ(i, got);
                EXPECT_TRUE(r == reqs[i]) << f.name() << " size " << n << " request " << i;
                ++got;
            });
            EXPECT_EQ(got, count) << f.name() << " size " << n;
        }
    }
}

} // namespace

TEST(ProcPool, EchoEverySizeEveryFramingFunctionKids) {
    PARAFORK_LEAK_CHECK();
    echo_sizes(false);
}

TEST(ProcPool, EchoEverySizeEveryFramingExternalKids) {
    PARAFORK_LEAK_CHECK();
    echo_sizes(true);
}

TEST(ProcPool, RepliesTricklingOneByteAtATime) {
    PARAFORK_LEAK_CHECK();
    for (auto f : {frames::lines, frames::zero_term, frames::len_prefix, frames::fixed<3>}) {
        // The kid writes its replies one byte per write(2), so the parent sees them split at
        // every byte boundary.
        pf::kid_fn trickle([f](int in, int out) {
            frames::frame_reader r(f);
            std::string framed;
            for (;;) {
                while (auto req = r.next()) {
                    framed.clear();
                    f.append(framed, *req);
                    for (char c : framed) pf::sys::write_all(out, &c, 1);
                }
                if (r.fill(in) == 0) return;
            }
        });
        pf::proc_pool pp(std::move(trickle), f, jobs(2));
        std::vector<std::string> reqs;
        for (int i = 0; i < 200; ++i) reqs.push_back(f.type == frames::kind::fixed ? std::to_string(100 + i) : std::to_string(i * 7919));
        std::multiset<std::string> want(reqs.begin(), reqs.end()), got;
        pp.eval(reqs, [&](std::string_view r) { got.emplace(r); });
        EXPECT_EQ(got, want) << f.name();
    }
}

namespace {

// An input range that makes its strings on demand (a generator, not a container).
struct numbers_as_text {
    std::size_t n;
    struct iterator {
        using value_type = std::string;
        using difference_type = std::ptrdiff_t;
        std::size_t i;
        std::string operator*() const { return std::to_string(i); }
        iterator& operator++() {
            ++i;
            return *this;
        }
        void operator++(int) { ++i; }
        bool operator==(const iterator&) const = default;
    };
    iterator begin() const { return {0}; }
    iterator end() const { return {n}; }
};
static_assert(std::ranges::input_range<numbers_as_text>);

} // namespace

TEST(ProcPool, MillionRequestsNoLoss) {
    PARAFORK_LEAK_CHECK();
    constexpr std::size_t n = 1'000'000;
    pf::kid_fn twice([](int in, int out) {
        pf::serve(in, out, frames::zero_term, [](std::string_view s) {
            return std::to_string(2 * std::stoull(std::string(s)));
        });
    });
    pf::proc_pool pp(std::move(twice), frames::zero_term, jobs(2));
    numbers_as_text reqs{n};  // produced lazily: eval pulls as it goes
    std::size_t count = 0;
    unsigned long long sum = 0;
    std::vector<bool> seen(n);
    pp.eval(reqs, [&](std::size_t i, std::string_view r) {
        ++count;
        sum += std::stoull(std::string(r));
        ASSERT_FALSE(seen[i]);
        seen[i] = true;
        EXPECT_EQ(std::stoull(std::string(r)), 2 * i);
    });
    EXPECT_EQ(count, n);
    EXPECT_EQ(sum, static_cast<unsigned long long>(n) * (n - 1));
}

TEST(ProcPool, OrderedModeKeepsRequestOrder) {
    PARAFORK_LEAK_CHECK();
    pf::kid_fn uneven([](int in, int out) {
        pf::serve(in, out, frames::lines, [](std::string_view s) {
            if (std::stoi(std::string(s)) % 7 == 0) ::usleep(2000);  // some replies are late
            return std::string(s);
        });
    });
    auto o = jobs(3);
    o.ordered = true;
    pf::proc_pool pp(std::move(uneven), frames::lines, o);
    std::vector<std::string> reqs;
    for (int i = 0; i < 300; ++i) reqs.push_back(std::to_string(i));
    std::vector<std::string> got;
    pp.eval(reqs, [&](std::string_view r) { got.emplace_back(r); });
    EXPECT_EQ(got, reqs);
}

TEST(ProcPool, ExternalFilter) {
    PARAFORK_LEAK_CHECK();
    auto o = jobs(2);
    o.ordered = true;
    pf::proc_pool pp(pf::kid_cmd{"tr", "a-z", "A-Z"}, frames::lines, o);
    std::vector<std::string> reqs = {"alpha", "beta", "gamma", "delta"};
    std::vector<std::string> got;
    pp.eval(reqs, [&](std::string_view r) { got.emplace_back(r); });
    EXPECT_EQ(got, (std::vector<std::string>{"ALPHA", "BETA", "GAMMA", "DELTA"}));
}

TEST(ProcPool, MissingCommandIsAnErrorAtStart) {
    PARAFORK_LEAK_CHECK();
    try {
        pf::proc_pool pp(pf::kid_cmd{"parafork-no-such-filter"}, frames::lines, jobs(2));
        FAIL() << "no error";
    } catch (const std::system_error& e) {
        EXPECT_NE(std::string(e.what()).find("parafork-no-such-filter"), std::string::npos);
    }
}

namespace {

// A kid that fails on the request "die" in the given way, echoing everything else. It writes
// each reply at once (serve() batches), so every request before "die" is answered and "die"
// is the oldest one it holds when it fails.
pf::kid_fn dying_kid(int how) {
    return pf::kid_fn([how](int in, int out) {
        frames::frame_reader r(frames::lines);
        std::string framed;
        for (;;) {
            while (auto req = r.next()) {
                if (*req == "die") {
                    if (how == 0) ::raise(SIGSEGV);
                    if (how == 1) ::_exit(7);
                }
                framed.clear();
                frames::lines.append(framed, *req);
                pf::sys::write_all(out, framed);
            }
            if (r.fill(in) == 0) return;
        }
    });
}

std::vector<std::string> with_die(std::size_t n, std::size_t at) {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < n; ++i) v.push_back(i == at ? "die" : std::to_string(i));
    return v;
}

} // namespace

TEST(ProcPool, KidSegfaultIsReported) {
    PARAFORK_LEAK_CHECK();
    pf::proc_pool pp(dying_kid(0), frames::lines, jobs(2));
    try {
        pp.eval(with_die(100, 50), [](std::string_view) {});
        FAIL() << "no error";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.signal(), SIGSEGV);
        EXPECT_GT(e.pid(), 0);
        EXPECT_EQ(e.task(), 50u) << e.what();
        ASSERT_FALSE(e.tasks().empty());
        EXPECT_EQ(e.tasks().front(), 50u);
        // Requests are striped over the two kids: the dead one held 50 and those queued behind it.
        EXPECT_TRUE(std::is_sorted(e.tasks().begin(), e.tasks().end()));
        EXPECT_LE(e.tasks().back(), 99u);
    }
}

TEST(ProcPool, KidExitIsReported) {
    PARAFORK_LEAK_CHECK();
    pf::proc_pool pp(dying_kid(1), frames::lines, jobs(2));
    auto pids = pp.pids();
    try {
        pp.eval(with_die(100, 10), [](std::string_view) {});
        FAIL() << "no error";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.signal(), 0);
        EXPECT_EQ(e.exit_code(), 7);
        EXPECT_EQ(e.task(), 10u) << e.what();
        EXPECT_EQ(std::count(pids.begin(), pids.end(), e.pid()), 1) << e.pid();
    }
}

TEST(ProcPool, RetriesReplaceTheKidAndLoseNothing) {
    PARAFORK_LEAK_CHECK();
    // Kids die at their third request until three have died (a counter in shared memory);
    // with retries, every request still gets exactly one reply.
    pf::sys::mapping shared(-1, 4096);
    auto* deaths = static_cast<std::atomic<int>*>(shared.data());
    deaths->store(0);
    pf::kid_fn flaky([deaths](int in, int out) {
        int served = 0;
        pf::serve(in, out, frames::lines, [&](std::string_view s) {
            if (++served == 3 && deaths->fetch_add(1) < 3) ::raise(SIGKILL);
            return std::string(s);
        });
    });
    auto o = jobs(2);
    o.retries = 3;
    o.ordered = true;
    pf::proc_pool pp(std::move(flaky), frames::lines, o);
    std::vector<std::string> reqs;
    for (int i = 0; i < 40; ++i) reqs.push_back(std::to_string(i));
    std::vector<std::string> got;
    pp.eval(reqs, [&](std::string_view r) { got.emplace_back(r); });
    EXPECT_EQ(got, reqs);
    EXPECT_GE(deaths->load(), 3);
}

TEST(ProcPool, RetriesRunOut) {
    PARAFORK_LEAK_CHECK();
    // A request that kills every kid it reaches fails once its retries are spent.
    pf::kid_fn poisoned([](int in, int out) {
        pf::serve(in, out, frames::lines, [](std::string_view s) {
            if (s == "poison") ::raise(SIGKILL);
            return std::string(s);
        });
    });
    auto o = jobs(2);
    o.retries = 2;
    pf::proc_pool pp(std::move(poisoned), frames::lines, o);
    try {
        pp.eval(std::vector<std::string>{"poison"}, [](std::string_view) {});
        FAIL() << "no error";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.task(), 0u);
        EXPECT_EQ(e.signal(), SIGKILL);
    }
}

TEST(ProcPool, KidKilledFromOutside) {
    PARAFORK_LEAK_CHECK();
    pf::kid_fn slow([](int in, int out) {
        pf::serve(in, out, frames::lines, [](std::string_view s) {
            ::usleep(1000);
            return std::string(s);
        });
    });
    pf::proc_pool pp(std::move(slow), frames::lines, jobs(2));
    pid_t victim = pp.pids().at(0);
    std::size_t replies = 0;
    try {
        std::vector<std::string> reqs(2000, "x");
        pp.eval(reqs, [&](std::string_view) {
            if (++replies == 20) ::kill(victim, SIGKILL);
        });
        FAIL() << "no error";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.pid(), victim);
        EXPECT_EQ(e.signal(), SIGKILL);
        // It was busy: it held requests, the oldest first, none answered yet.
        ASSERT_TRUE(e.task().has_value());
        ASSERT_FALSE(e.tasks().empty());
        EXPECT_EQ(*e.task(), e.tasks().front());
        EXPECT_LT(e.tasks().back(), 2000u);
    }
}

TEST(ProcPool, AllKidsDying) {
    PARAFORK_LEAK_CHECK();
    // Kids that exit without reading anything, with and without retries: always worker_died
    // naming a kid and what it held, never a hang.
    for (unsigned retries : {0u, 3u}) {
        pf::kid_fn quitter([](int, int) { ::_exit(0); });
        auto o = jobs(2);
        o.retries = retries;
        pf::proc_pool pp(std::move(quitter), frames::lines, o);
        std::vector<std::string> reqs(10, "x");
        try {
            pp.eval(reqs, [](std::string_view) { ADD_FAILURE() << "a reply from a dead kid"; });
            ADD_FAILURE() << "no error, retries " << retries;
        } catch (const pf::worker_died& e) {
            EXPECT_GT(e.pid(), 0) << e.what();
            EXPECT_EQ(e.signal(), 0) << e.what();
            EXPECT_EQ(e.exit_code(), 0) << e.what();
            // Without retries the first kid to die held requests; with them the pool may
            // instead give up replacing kids that die idle (then it names no request).
            if (retries == 0) {
                EXPECT_FALSE(e.tasks().empty()) << e.what();
            }
            for (auto t : e.tasks()) EXPECT_LT(t, 10u);
        }
        EXPECT_TRUE(pp.pids().empty()) << "retries " << retries;
    }
}

TEST(ProcPool, SilentKidTimesOut) {
    PARAFORK_LEAK_CHECK();
    pf::kid_fn mute([](int in, int) {
        char buf[4096];
        while (::read(in, buf, sizeof buf) > 0) {
        }
        ::pause();
    });
    auto o = jobs(2);
    o.task_timeout = 200ms;
    pf::proc_pool pp(std::move(mute), frames::lines, o);
    std::vector<std::string> reqs(4, "hello");
    try {
        pp.eval(reqs, [](std::string_view) {});
        ADD_FAILURE() << "no timeout_error";
    } catch (const pf::timeout_error& e) {
        // The error names the request and the kid, as fields (the command reads them).
        ASSERT_TRUE(e.task().has_value());
        EXPECT_LT(*e.task(), reqs.size());
        EXPECT_GT(e.pid(), 0);
    }
}

TEST(ProcPool, OnReplyThrowingStopsEverything) {
    PARAFORK_LEAK_CHECK();
    pf::proc_pool pp(echo_kid(frames::lines), frames::lines, jobs(2));
    auto pids = pp.pids();
    std::vector<std::string> reqs(10000, "abc");
    int seen = 0;
    EXPECT_THROW(pp.eval(reqs,
                         [&](std::string_view) {
                             if (++seen == 100) throw std::logic_error("stop");
                         }),
                 std::logic_error);
    for (pid_t p : pids) EXPECT_EQ(::kill(p, 0), -1) << "kid " << p << " still exists";
    // The pool is usable again: fresh kids start on the next request.
    std::size_t n = 0;
    pp.eval(std::vector<std::string>(5, "z"), [&](std::string_view r) {
        EXPECT_EQ(r, "z");
        ++n;
    });
    EXPECT_EQ(n, 5u);
}

TEST(ProcPool, SendAndReadyFinalReplies) {
    PARAFORK_LEAK_CHECK();
    pf::proc_pool pp(echo_kid(frames::len_prefix), frames::len_prefix, jobs(2));
    std::set<std::string> got;
    for (int i = 0; i < 100; ++i) {
        pp.send(std::to_string(i));
        pp.ready_replies([&](std::string_view r) { got.emplace(r); });
    }
    pp.final_replies([&](std::string_view r) { got.emplace(r); });
    EXPECT_EQ(got.size(), 100u);
    EXPECT_EQ(pp.in_flight(), 0u);
}

TEST(ProcPool, KidsDoNotInheritEachOthersPipes) {
    PARAFORK_LEAK_CHECK();
    // Each kid reports how many fds it has open; with inherited sibling pipes the later kids
    // would have more.
    pf::kid_fn count([](int in, int out) {
        pf::serve(in, out, frames::lines, [](std::string_view) {
            return std::to_string(pf::testing::open_fds().size());
        });
    });
    auto o = jobs(4);
    pf::proc_pool pp(std::move(count), frames::lines, o);
    std::set<std::string> counts;
    pp.eval(std::vector<std::string>(400, "?"), [&](std::string_view r) { counts.emplace(r); });
    EXPECT_EQ(counts.size(), 1u) << "kids see different numbers of fds";
}

using pf::testing::sigint_timer;

TEST(ProcPool, CtrlCStopsTheKidsAndThrowsInterrupted) {
    PARAFORK_LEAK_CHECK();
    pf::kid_fn slow([](int in, int out) {
        pf::serve(in, out, frames::lines, [](std::string_view s) {
            ::usleep(10000);
            return std::string(s);
        });
    });
    pf::proc_pool pp(std::move(slow), frames::lines, jobs(2));
    auto pids = pp.pids();
    {
        sigint_timer t(100);
        EXPECT_THROW(pp.eval(std::vector<std::string>(2000, "x"), [](std::string_view) {}),
                     pf::interrupted);
    }
    for (pid_t p : pids) EXPECT_EQ(::kill(p, 0), -1) << "kid " << p << " survived Ctrl-C";
}

namespace {

// An endless input range of "x" requests: eval() over it ends only by an error.
struct endless_requests {
    struct iterator {
        using value_type = std::string_view;
        using difference_type = std::ptrdiff_t;
        std::string_view operator*() const { return "x"; }
        iterator& operator++() { return *this; }
        void operator++(int) {}
    };
    iterator begin() const { return {}; }
    std::unreachable_sentinel_t end() const { return {}; }
};

} // namespace

TEST(ProcPool, CtrlCStopsAnEvalWhoseKidsAreAlwaysReady) {
    // Kids that answer at once keep a reply ready within every spin, so the pump never sleeps
    // in poll; a Ctrl-C must still end the call as interrupted (not wait for the input's end,
    // which never comes here).
    pf::testing::run_bounded("Ctrl-C during a busy eval", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto o = jobs(2);
        o.spin = std::chrono::seconds(2);  // every reply comes within the spin: no sleep at all
        pf::proc_pool pp(echo_kid(frames::lines), frames::lines, o);
        auto pids = pp.pids();
        std::size_t replies = 0;
        {
            sigint_timer t(200);
            EXPECT_THROW(pp.eval(endless_requests{}, [&](std::string_view) { ++replies; }),
                         pf::interrupted);
        }
        EXPECT_GT(replies, 0u);
        for (pid_t p : pids) EXPECT_EQ(::kill(p, 0), -1) << "kid " << p << " survived Ctrl-C";
    });
}

TEST(ProcPool, ParentSleepsWhileAKidWorks) {
    PARAFORK_LEAK_CHECK();
    // The spin before poll sleeps is bounded (options.spin): while a kid takes 300 ms, the
    // parent uses almost no CPU.
    pf::kid_fn slow([](int in, int out) {
        pf::serve(in, out, frames::lines, [](std::string_view s) {
            ::usleep(300000);
            return std::string(s);
        });
    });
    pf::proc_pool pp(std::move(slow), frames::lines, jobs(1));
    auto cpu = [] {
        rusage ru{};
        ::getrusage(RUSAGE_SELF, &ru);
        return std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    };
    auto wall0 = std::chrono::steady_clock::now();
    auto cpu0 = cpu();
    std::size_t n = 0;
    pp.eval(std::vector<std::string>{"slow"}, [&](std::string_view r) {
        EXPECT_EQ(r, "slow");
        ++n;
    });
    auto used = cpu() - cpu0;
    EXPECT_EQ(n, 1u);
    EXPECT_GE(std::chrono::steady_clock::now() - wall0, 300ms);
    EXPECT_LT(used, 100ms) << std::chrono::duration_cast<std::chrono::microseconds>(used).count()
                           << " us of CPU while waiting";
}

namespace {

// The pid a kid's background process wrote, to clean it up after the test.
struct stray_sleeper {
    pid_t pid = -1;
    ~stray_sleeper() {
        if (pid > 0) ::kill(pid, SIGKILL);
    }
};

} // namespace

TEST(ProcPool, KidDeathSeenWhileADescendantHoldsItsStdout) {
    PARAFORK_LEAK_CHECK();
    // The kid starts a long sleeper that inherits its stdout, then exits 3 on its first request:
    // the pipe stays open, yet the death must be reported at once (pidfd), not in 20 s.
    pf::sys::mapping shared(-1, 4096);
    auto* sleeper = static_cast<std::atomic<pid_t>*>(shared.data());
    sleeper->store(-1);
    pf::kid_fn leaver([sleeper](int in, int) {
        pid_t p = ::fork();
        if (p == 0) {
            ::sleep(20);
            ::_exit(0);
        }
        sleeper->store(p);
        char c;
        [[maybe_unused]] auto n = ::read(in, &c, 1);
        ::_exit(3);
    });
    stray_sleeper cleanup;
    auto t0 = std::chrono::steady_clock::now();
    try {
        pf::proc_pool pp(std::move(leaver), frames::lines, jobs(1));
        pp.eval(std::vector<std::string>{"a", "b"}, [](std::string_view) {});
        ADD_FAILURE() << "no error";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.exit_code(), 3) << e.what();
        EXPECT_EQ(e.tasks(), (std::vector<std::size_t>{0, 1})) << e.what();
    }
    cleanup.pid = sleeper->load();
    EXPECT_GT(cleanup.pid, 0);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST(ProcPool, ExternalKidDeathSeenWhileItsBackgroundJobHoldsStdout) {
    PARAFORK_LEAK_CHECK();
    char path[] = "/tmp/parafork_test_XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::close(fd);
    stray_sleeper cleanup;
    auto t0 = std::chrono::steady_clock::now();
    try {
        pf::proc_pool pp(pf::kid_cmd{"sh", "-c", std::string("sleep 20 & echo $! > ") + path + "; exit 3"},
                         frames::lines, jobs(1));
        pp.eval(std::vector<std::string>{"a"}, [](std::string_view) {});
        ADD_FAILURE() << "no error";
    } catch (const pf::worker_died& e) {
        EXPECT_EQ(e.exit_code(), 3) << e.what();
        EXPECT_EQ(e.task(), 0u) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
    std::ifstream(path) >> cleanup.pid;
    EXPECT_GT(cleanup.pid, 0);
    ::unlink(path);
}

TEST(ProcPool, ExtraReplyIsAProtocolErrorNamingTheKid) {
    PARAFORK_LEAK_CHECK();
    // A kid that answers every request twice breaks the one-reply-per-request protocol.
    pf::kid_fn chatty([](int in, int out) {
        frames::frame_reader r(frames::lines);
        std::string framed;
        for (;;) {
            while (auto req = r.next()) {
                framed.clear();
                frames::lines.append(framed, *req);
                frames::lines.append(framed, *req);
                pf::sys::write_all(out, framed);
            }
            if (r.fill(in) == 0) return;
        }
    });
    pf::kid_fn chatty_too = chatty;
    pf::proc_pool pp(std::move(chatty), frames::lines, jobs(1));
    pid_t kid = pp.pids().at(0);
    try {
        pp.eval(std::vector<std::string>{"a", "b", "c"}, [](std::string_view) {});
        FAIL() << "no error";
    } catch (const pf::protocol_error& e) {
        EXPECT_EQ(e.pid(), kid);
        EXPECT_NE(std::string(e.what()).find(std::to_string(kid)), std::string::npos) << e.what();
        // All three were sent before any reply came: any of their replies may be wrong.
        EXPECT_EQ(e.tasks(), (std::vector<std::size_t>{0, 1, 2})) << e.what();
        EXPECT_NE(std::string(e.what()).find("0, 1, 2"), std::string::npos) << e.what();
    }
    EXPECT_EQ(::kill(kid, 0), -1) << "the kid was not stopped";
    // With 100 outstanding, only the latest 64 answered are named, oldest first.
    pf::proc_pool many(std::move(chatty_too), frames::lines, jobs(1));
    try {
        many.eval(std::vector<std::string>(100, "x"), [](std::string_view) {});
        FAIL() << "no error";
    } catch (const pf::protocol_error& e) {
        std::vector<std::size_t> latest;
        for (std::size_t i = 36; i < 100; ++i) latest.push_back(i);
        EXPECT_EQ(e.tasks(), latest) << e.what();
        EXPECT_NE(std::string(e.what()).find("(64 in all)"), std::string::npos) << e.what();
    }
}

TEST(ProcPool, FramesOverMaxFrameAreProtocolErrorsAndStopTheKids) {
    PARAFORK_LEAK_CHECK();
    auto small = frames::lines.with_max_frame(16);
    {
        pf::proc_pool pp(echo_kid(small), small, jobs(2));
        auto pids = pp.pids();
        EXPECT_THROW(pp.eval(std::vector<std::string>{"ok", std::string(17, 'x')}, [](std::string_view) {}),
                     pf::protocol_error);
        for (pid_t p : pids) EXPECT_EQ(::kill(p, 0), -1) << "kid " << p << " survived";
        EXPECT_TRUE(pp.pids().empty());
    }
    {
        // The kid frames without the limit, so its long reply reaches the parent, which refuses it.
        pf::kid_fn longer([](int in, int out) {
            pf::serve(in, out, frames::lines, [](std::string_view s) { return std::string(s) + std::string(100, 'y'); });
        });
        pf::proc_pool pp(std::move(longer), small, jobs(2));
        auto pids = pp.pids();
        EXPECT_THROW(pp.eval(std::vector<std::string>{"a", "b"}, [](std::string_view) {}), pf::protocol_error);
        for (pid_t p : pids) EXPECT_EQ(::kill(p, 0), -1) << "kid " << p << " survived";
        EXPECT_TRUE(pp.pids().empty());
    }
}

namespace {

// Numbers as text; the pool pulls them lazily. Tracks the most requests ever outstanding
// (pulled, not yet delivered): in flight plus replies waiting in the parent.
struct outstanding {
    std::size_t pulled = 0, delivered = 0, peak = 0;
};
struct counted_numbers {
    std::size_t n;
    outstanding* o;
    struct iterator {
        using value_type = std::string;
        using difference_type = std::ptrdiff_t;
        std::size_t i;
        outstanding* o;
        std::string operator*() const {
            ++o->pulled;
            o->peak = std::max(o->peak, o->pulled - o->delivered);
            return std::to_string(i);
        }
        iterator& operator++() {
            ++i;
            return *this;
        }
        void operator++(int) { ++i; }
        bool operator==(const iterator& other) const { return i == other.i; }
    };
    iterator begin() const { return {0, o}; }
    iterator end() const { return {n, o}; }
};

} // namespace

TEST(ProcPool, OrderedModeBoundsRepliesWaitingBehindASlowOne) {
    PARAFORK_LEAK_CHECK();
    // Request 0 is slow; the replies after it wait in the parent. They count against the
    // window, so the pool pulls no more input until they are delivered: requests in flight
    // plus waiting replies stay within one window (without that, two).
    pf::kid_fn first_slow([](int in, int out) {
        pf::serve(in, out, frames::lines, [](std::string_view s) {
            if (s == "0") ::usleep(300000);
            return std::string(s);
        });
    });
    auto o = jobs(2);
    o.ordered = true;
    pf::proc_pool pp(std::move(first_slow), frames::lines, o);
    constexpr std::size_t n = 20000, window = 2 * 2048;  // jobs x window_requests
    outstanding out;
    pp.eval(counted_numbers{n, &out}, [&](std::size_t i, std::string_view r) {
        ASSERT_EQ(i, out.delivered);
        EXPECT_EQ(r, std::to_string(i));
        ++out.delivered;
    });
    EXPECT_EQ(out.delivered, n);
    EXPECT_EQ(out.pulled, n);
    EXPECT_GE(out.peak, window / 2);  // the window was used
    EXPECT_LE(out.peak, window + 1) << "replies piled up behind request 0";
}

TEST(ProcPool, CtrlCDuringASingleNextReply) {
    PARAFORK_LEAK_CHECK();
    // Outside eval() the SIGINT guard is made by the wait itself, once the spin is over.
    pf::kid_fn slow([](int in, int out) {
        pf::serve(in, out, frames::lines, [](std::string_view s) {
            ::sleep(5);
            return std::string(s);
        });
    });
    pf::proc_pool pp(std::move(slow), frames::lines, jobs(1));
    auto pids = pp.pids();
    pp.send("x");
    {
        sigint_timer t(100);
        EXPECT_THROW(pp.next_reply(true), pf::interrupted);
    }
    for (pid_t p : pids) EXPECT_EQ(::kill(p, 0), -1) << "kid " << p << " survived Ctrl-C";
    // Round trips one at a time, as an interactive caller makes them.
    pf::proc_pool echo(echo_kid(frames::lines), frames::lines, jobs(1));
    for (int i = 0; i < 100; ++i) {
        std::size_t idx = echo.send(std::to_string(i));
        auto r = echo.next_reply(true);
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(r->index, idx);
        EXPECT_EQ(r->data, std::to_string(i));
    }
    EXPECT_FALSE(echo.next_reply(true).has_value());
}

TEST(ProcPool, AMovedFromPoolThrowsLogicError) {
    PARAFORK_LEAK_CHECK();
    pf::proc_pool a(pf::kid_cmd{PARAFORK_KID_ECHO}, frames::lines, jobs(1));
    pf::proc_pool b(std::move(a));
    EXPECT_THROW(a.size(), std::logic_error);
    EXPECT_THROW(a.pids(), std::logic_error);
    EXPECT_THROW(a.in_flight(), std::logic_error);
    EXPECT_THROW(a.send("x"), std::logic_error);
    EXPECT_THROW(a.next_reply(), std::logic_error);
    EXPECT_THROW(a.finish(), std::logic_error);
    EXPECT_THROW(a.terminate(), std::logic_error);
    std::vector<std::string> got;
    b.eval(std::vector<std::string>{"hi"}, [&](std::string_view r) { got.emplace_back(r); });
    EXPECT_EQ(got, (std::vector<std::string>{"hi"}));
}

TEST(ProcPool, FinishRunsEveryRequestInFlightAndDiscardsTheReplies) {
    PARAFORK_LEAK_CHECK();
    // Each kid counts, in shared memory, the requests it answered; they are slow enough that
    // finish() must wait for them.
    pf::sys::mapping shared(-1, 4096);
    auto* answered = static_cast<std::atomic<int>*>(shared.data());
    answered->store(0);
    pf::kid_fn slow([answered](int in, int out) {
        pf::serve(in, out, frames::lines, [answered](std::string_view r) {
            std::this_thread::sleep_for(50ms);
            answered->fetch_add(1);
            return std::string(r);
        });
    });
    pf::proc_pool pp(std::move(slow), frames::lines, jobs(2));
    for (int i = 0; i < 6; ++i) pp.send("r" + std::to_string(i));
    pp.finish();
    EXPECT_EQ(answered->load(), 6);   // every request ran to its reply
    EXPECT_EQ(pp.in_flight(), 0u);
    EXPECT_FALSE(pp.next_reply(false));  // and none of the replies is left to take
    EXPECT_FALSE(pp.next_reply(true));
}

// Kids that ignore SIGTERM are stopped all at once: the destructor gives them one grace period
// to exit after their input closes and one after SIGTERM, in all. Stopped one by one, ten
// such kids took twenty grace periods (4 s).
TEST(ProcPool, KidsThatIgnoreSigtermAreStoppedInOneGracePeriodInAll) {
    PARAFORK_LEAK_CHECK();
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    static int ready_fd = -1;
    ready_fd = ready[1];
    auto t0 = std::chrono::steady_clock::now();
    {
        pf::proc_pool pool(pf::kid_fn([](int, int) {
                               ::signal(SIGTERM, SIG_IGN);
                               (void)!::write(ready_fd, "r", 1);
                               ::sleep(30);
                           }),
                           frames::lines, jobs(10));
        for (int i = 0; i < 10; ++i) {
            char c;
            ASSERT_EQ(::read(ready[0], &c, 1), 1);
        }
        t0 = std::chrono::steady_clock::now();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2500));
    EXPECT_TRUE(pf::testing::child_pids().empty());
    ::close(ready[0]);
    ::close(ready[1]);
}

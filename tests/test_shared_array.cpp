// parafork::shared_array: shape and element access, sharing with children forked later and
// with a running child (fd over SCM_RIGHTS), as the result of pool / forked / map tasks, named
// arrays, and nothing left in /dev/shm.

#include <parafork/exec/forked/forked.hpp>
#include <parafork/exec/forked/map.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/ipc/shared_array.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include "support/leak_check.hpp"

#include <csignal>
#include <cstring>
#include <list>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace pf = parafork;

TEST(shared_array, shape_and_row_major_access) {
    PARAFORK_LEAK_CHECK();
    pf::shared_array<float> a({2, 3, 4});
    EXPECT_EQ(a.size(), 24u);
    EXPECT_EQ(a.rank(), 3u);
    EXPECT_EQ(a.shape(), (std::vector<std::size_t>{2, 3, 4}));
    EXPECT_EQ(a.size_bytes(), 24 * sizeof(float));
    for (float x : a) EXPECT_EQ(x, 0.0f);  // zero-filled
    std::iota(a.begin(), a.end(), 0.0f);
    EXPECT_EQ(a(1, 2, 3), 23.0f);
    EXPECT_EQ(a(1, 0, 2), 14.0f);
    EXPECT_EQ(&a(0, 1, 0), &a[4]);
    EXPECT_EQ(a.at(1, 1, 1), 17.0f);
    EXPECT_THROW(a.at(2, 0, 0), std::out_of_range);
    EXPECT_THROW(a.at(0, 0), std::out_of_range);
    std::span<float> s = a;
    EXPECT_EQ(s.size(), 24u);
    EXPECT_GE(a.fd(), 0);

    pf::shared_array<int> empty({0, 5});
    EXPECT_TRUE(empty.empty());
    EXPECT_THROW(pf::shared_array<int>({SIZE_MAX / 2, 4}), std::length_error);
}

TEST(shared_array, children_forked_later_share_it) {
    PARAFORK_LEAK_CHECK();
    pf::shared_array<long> a({4, 1000});
    std::vector<pf::sys::child> kids;
    for (std::size_t row = 0; row < 4; ++row)
        kids.emplace_back(pf::sys::fork_call([&, row] {
            for (std::size_t j = 0; j < 1000; ++j) a(row, j) = static_cast<long>(row * 1000 + j);
        }));
    for (auto& k : kids) EXPECT_TRUE(k.wait().ok());
    for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], static_cast<long>(i));
}

TEST(shared_array, sent_to_a_running_child_over_a_socket) {
    PARAFORK_LEAK_CHECK();
    auto [mine, theirs] = pf::sys::make_socketpair();
    pf::sys::child kid(pf::sys::fork_call([&, sock = theirs.get()] {
        pf::sys::unique_fd got[1];
        std::size_t n = 0;
        ASSERT_EQ(pf::sys::recv_fds(sock, got, &n, sizeof n), sizeof n);
        auto a = pf::shared_array<int>::from_fd(got[0].get(), {n});
        for (std::size_t i = 0; i < n; ++i) a[i] = static_cast<int>(i * i);
        if (::testing::Test::HasFailure()) pf::sys::exit_child(3);
    }));
    theirs.reset();
    // Made after the fork: the child can only reach it through the descriptor.
    pf::shared_array<int> a({100});
    std::size_t n = a.size();
    int fds[] = {a.fd()};
    pf::sys::send_fds(mine.get(), fds, std::string_view(reinterpret_cast<const char*>(&n), sizeof n));
    EXPECT_TRUE(kid.wait().ok());
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(a[i], static_cast<int>(i * i));
    EXPECT_THROW(pf::shared_array<int>::from_fd(a.fd(), {101}), std::invalid_argument);
}

TEST(shared_array, named_is_unlinked_by_its_creator) {
    PARAFORK_LEAK_CHECK();
    std::string name = "/parafork-test-" + std::to_string(::getpid());
    {
        auto a = pf::shared_array<double>::create_named(name, {8});
        EXPECT_THROW(pf::shared_array<double>::create_named(name, {8}), std::system_error);
        pf::sys::child kid(pf::sys::fork_call([&] {
            auto b = pf::shared_array<double>::open_named(name, {8});
            b[7] = 2.5;
            // b and the inherited copy of a are dropped here: only the creator unlinks.
        }));
        EXPECT_TRUE(kid.wait().ok());
        EXPECT_EQ(a[7], 2.5);
        EXPECT_TRUE(pf::testing::shm_entries().count(name.substr(1)));
    }
    EXPECT_FALSE(pf::testing::shm_entries().count(name.substr(1)));
    EXPECT_THROW(pf::shared_array<double>::open_named(name, {8}), std::system_error);
}

TEST(shared_array, nothing_in_dev_shm_after_the_creator_is_killed) {
    PARAFORK_LEAK_CHECK();
    auto before = pf::testing::shm_entries();
    auto [rd, wr] = pf::sys::make_pipe();
    pf::sys::child creator(pf::sys::fork_call([&, w = wr.get()] {
        pf::shared_array<char> a({64, 1024, 1024});
        pf::shared_array<int> b({1000});
        a[0] = 1;
        b[0] = 1;
        pf::sys::write_all(w, "r");
        for (;;) ::pause();
    }));
    wr.reset();
    char c;
    ASSERT_TRUE(pf::sys::read_exact(rd.get(), &c, 1));
    creator.signal(SIGKILL);
    EXPECT_EQ(creator.wait().signal, SIGKILL);
    EXPECT_EQ(pf::testing::shm_entries(), before);
}

// A shared_array returned by a pool, forked or map task arrives as its memory, not a copy: its
// descriptor goes beside the answer and the parent maps the same pages.
namespace {

pf::shared_array<double> ramp_array(std::size_t n) {
    pf::shared_array<double> a({n});
    std::iota(a.begin(), a.end(), 0.0);
    return a;
}

void expect_ramp(const pf::shared_array<double>& a, std::size_t n) {
    ASSERT_EQ(a.size(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(a[i], static_cast<double>(i));
}

std::vector<pf::shared_array<double>> several(int k) {
    std::vector<pf::shared_array<double>> out;
    for (int i = 0; i < k; ++i) out.push_back(ramp_array(100 + static_cast<std::size_t>(i)));
    return out;
}

std::vector<int> seq(int a, int b) {
    std::vector<int> v;
    for (int x = a; x < b; ++x) v.push_back(x);
    return v;
}

} // namespace

TEST(shared_array, pool_result_is_the_same_memory) {
    PARAFORK_LEAK_CHECK();
    auto before = pf::testing::map_count();
    {
        // Made before the pool: the worker returns the very array it inherited.
        pf::shared_array<double> mine({1000});
        pf::options o;
        o.jobs = 1;
        pf::pool p([mine](double x) {
            mine[0] = x;
            return mine;
        }, o);
        auto back = p.apply(42.0).get();
        EXPECT_EQ(mine[0], 42.0);  // the worker's write, seen here
        back[1] = 7.0;             // and ours through what came back, seen in the original
        EXPECT_EQ(mine[1], 7.0);
        EXPECT_EQ(back.shape(), mine.shape());
    }
    {
        // Made in the worker after the fork: it arrives whole, and outlives the worker.
        pf::options o;
        o.jobs = 2;
        pf::shared_array<double> kept;
        {
            pf::pool p(o);
            expect_ramp(p.submit(&ramp_array, std::size_t{5000}).get(), 5000);
            auto many = p.submit(&several, 5).get();
            ASSERT_EQ(many.size(), 5u);
            for (std::size_t i = 0; i < many.size(); ++i) expect_ramp(many[i], 100 + i);
            auto mapped = p.map(&ramp_array, std::vector<std::size_t>{10, 20, 30});
            for (std::size_t i = 0; i < mapped.size(); ++i) expect_ramp(mapped[i], 10 * (i + 1));
            kept = p.submit(&ramp_array, std::size_t{64}).get();
        }
        expect_ramp(kept, 64);  // the pool and its workers are gone, the memory is not
    }
    pf::testing::expect_same_maps(before, pf::testing::map_count());
}

TEST(shared_array, forked_and_map_results_in_and_out_of_order) {
    PARAFORK_LEAK_CHECK();
    auto before = pf::testing::map_count();
    {
        pf::options o;
        o.jobs = 2;
        o.chunksize = 1;
        auto r = pf::map([](int i) { return ramp_array(static_cast<std::size_t>(50 + i)); }, seq(0, 8), o);
        ASSERT_EQ(r.size(), 8u);
        for (std::size_t i = 0; i < r.size(); ++i) expect_ramp(r[i], 50 + i);
        // Ordered: item 0 is late, the others are held (with their descriptors) until it comes.
        o.ordered = true;
        std::vector<std::size_t> seen;
        pf::forked(seq(0, 5), [](int i) {
            if (i == 0) ::usleep(300'000);
            return ramp_array(static_cast<std::size_t>(10 + i));
        }, [&](std::size_t i, pf::shared_array<double>&& a) {
            expect_ramp(a, 10 + i);
            seen.push_back(i);
        }, o);
        EXPECT_EQ(seen, (std::vector<std::size_t>{0, 1, 2, 3, 4}));
    }
    pf::testing::expect_same_maps(before, pf::testing::map_count());
}

TEST(shared_array, too_many_in_one_result_fail_that_task_only) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 1;
    pf::pool p(o);
    try {
        (void)p.submit(&several, 65).get();
        FAIL() << "no exception";
    } catch (const pf::remote_error& e) {
        EXPECT_NE(std::string(e.what()).find("at most 64 descriptors"), std::string::npos) << e.what();
    }
    EXPECT_EQ(p.submit(&several, 64).get().size(), 64u);  // the limit itself is fine
}

TEST(shared_array, as_a_pool_argument_is_refused_clearly) {
    PARAFORK_LEAK_CHECK();
    pf::shared_array<double> a({16});
    pf::options o;
    o.jobs = 1;
    pf::pool p(o);
    auto first = [](pf::shared_array<double> x) { return x[0]; };
    EXPECT_THROW((void)p.submit(first, a), std::invalid_argument);
    EXPECT_THROW((void)p.map(first, std::vector<pf::shared_array<double>>(3, a)), std::invalid_argument);
    // An input range forked cannot index is encoded item by item: refused the same way.
    std::list<pf::shared_array<double>> items(2, a);
    EXPECT_THROW(pf::forked(items, first, [](double) {}, o), std::invalid_argument);
    // The pool is fine afterwards, and an array made before the pool reaches it by fork.
    a[0] = 3.5;
    pf::pool q([a](int) { return a[0]; }, o);
    EXPECT_EQ(q.apply(0).get(), 3.5);
}

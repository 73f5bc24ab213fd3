// parafork::shared_array: shape and element access, sharing with children forked later and
// with a running child (fd over SCM_RIGHTS), named arrays, and nothing left in /dev/shm.

#include <parafork/ipc/shared_array.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include "support/leak_check.hpp"

#include <csignal>
#include <cstring>
#include <numeric>
#include <string>

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

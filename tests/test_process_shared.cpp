// process<Actor> with shared_array: made before start (shared by fork), made after start (handed
// over as a descriptor), the same memory on both sides, nothing in /dev/shm after any kill.
#include <parafork/exec/process/process.hpp>
#include <parafork/sys/signals.hpp>

#include "support/leak_check.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <numeric>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>

namespace pf = parafork;
using namespace std::chrono_literals;
using pf::testing::run_bounded;


namespace {

struct filler {
    pf::shared_array<int> before;  // made by the frontend before start
    pf::shared_array<int> later;   // handed over after start

    void fill_before(int v) { std::fill(before.begin(), before.end(), v); }
    long sum_before() const { return std::accumulate(before.begin(), before.end(), 0L); }
    std::size_t attach(pf::shared_array<int> a) {
        later = std::move(a);
        return later.size();
    }
    void fill_later(int v) {
        for (std::size_t i = 0; i < later.size(); ++i) later[i] = v + static_cast<int>(i);
    }
    long sum_later() const { return std::accumulate(later.begin(), later.end(), 0L); }
    std::vector<std::size_t> later_shape() const { return later.shape(); }
    void drop_before() { before = {}; }
    void drop_later() { later = {}; }
    // The backend's memfd mappings and descriptors: a dropped array leaves neither.
    std::size_t memfd_refs() const {
        std::size_t n = pf::testing::map_count().memfd;
        for (int fd : pf::testing::open_fds()) {
            char target[256];
            auto path = "/proc/self/fd/" + std::to_string(fd);
            ssize_t k = ::readlink(path.c_str(), target, sizeof target - 1);
            if (k > 0 && std::string_view(target, static_cast<std::size_t>(k)).starts_with("/memfd:")) ++n;
        }
        return n;
    }
};

// This process's memfd mappings and descriptors.
std::size_t memfd_refs_here() { return filler{}.memfd_refs(); }

TEST(process_shared, array_made_before_start_is_shared) {
    run_bounded("before start", 60, +[] {
        PARAFORK_LEAK_CHECK();
        filler f;
        f.before = pf::shared_array<int>({10, 10});
        pf::process<filler> w(std::move(f));
        w.start();
        w.ask(&filler::fill_before, 3).get();
        auto& a = w.actor().before;
        EXPECT_EQ(std::accumulate(a.begin(), a.end(), 0L), 300);
        a(9, 9) = 103;
        EXPECT_EQ(w.ask(&filler::sum_before).get(), 400);
        w.join();
    });
}

TEST(process_shared, array_made_after_start_is_handed_over) {
    run_bounded("on demand", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<filler> w;
        w.start();
        pf::shared_array<int> a({4, 25});
        EXPECT_EQ(w.ask(&filler::attach, a).get(), 100u);
        EXPECT_EQ(w.ask(&filler::later_shape).get(), (std::vector<std::size_t>{4, 25}));
        w.ask(&filler::fill_later, 1).get();
        EXPECT_EQ(a[0], 1);
        EXPECT_EQ(a(3, 24), 100);
        std::fill(a.begin(), a.end(), 2);
        EXPECT_EQ(w.ask(&filler::sum_later).get(), 200);
        // The frontend may drop its copy: the backend's mapping keeps the memory.
        a = {};
        EXPECT_EQ(w.ask(&filler::sum_later).get(), 200);
        w.join();
    });
}

TEST(process_shared, backend_killed_leaves_memory_to_the_frontend_and_nothing_in_dev_shm) {
    run_bounded("backend killed", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<filler> w;
        w.start();
        pf::shared_array<int> a({1000});
        w.call(&filler::attach, a);
        w.ask(&filler::fill_later, 5).get();
        ::kill(w.pid(), SIGKILL);
        EXPECT_THROW(w.ask(&filler::sum_later).get(), pf::worker_died);
        EXPECT_EQ(a[999], 5 + 999);
        EXPECT_EQ(w.join().signal, SIGKILL);
    });
}

TEST(process_shared, frontend_killed_takes_its_backend_and_leaves_nothing) {
    run_bounded("frontend killed", 60, +[] {
        PARAFORK_LEAK_CHECK();
        auto report = pf::sys::make_pipe();
        pid_t frontend = pf::sys::fork_process();
        if (frontend == 0) {
            pf::process<filler> w;
            w.start();
            pf::shared_array<int> a({1 << 16});
            w.ask(&filler::attach, a).get();
            pid_t backend = w.pid();
            pf::sys::write_all(report.write.get(), &backend, sizeof backend);
            ::kill(::getpid(), SIGKILL);
        }
        pf::sys::child kid(frontend);
        report.write.reset();
        pid_t backend = 0;
        ASSERT_TRUE(pf::sys::read_exact(report.read.get(), &backend, sizeof backend));
        EXPECT_EQ(kid.wait().signal, SIGKILL);
        // The backend dies with its frontend (PDEATHSIG); init reaps it.
        for (int i = 0; i < 500 && ::kill(backend, 0) == 0; ++i) std::this_thread::sleep_for(10ms);
        EXPECT_EQ(::kill(backend, 0), -1);
        EXPECT_EQ(errno, ESRCH);
    });
}

TEST(process_shared, released_when_the_last_side_drops_it) {
    run_bounded("release", 60, +[] {
        PARAFORK_LEAK_CHECK();
        // Neither side has any other memfd (the ring is anonymous shared memory): every count
        // below is the arrays' alone, and both reach 0 once both sides dropped both arrays.
        ASSERT_EQ(memfd_refs_here(), 0u);
        filler f;
        f.before = pf::shared_array<int>({1000});
        pf::process<filler> w(std::move(f));
        w.start();
        std::size_t one = memfd_refs_here();  // `before`: its mapping and descriptor
        ASSERT_GE(one, 1u);
        EXPECT_EQ(w.ask(&filler::memfd_refs).get(), one);
        pf::shared_array<int> a({2000});
        EXPECT_EQ(w.ask(&filler::attach, a).get(), 2000u);
        EXPECT_EQ(w.ask(&filler::memfd_refs).get(), 2 * one);
        // Made after start: the frontend drops first, the backend still has it; then it drops.
        a = {};
        EXPECT_EQ(memfd_refs_here(), one);
        EXPECT_EQ(w.ask(&filler::sum_later).get(), 0);
        w.call(&filler::drop_later);
        EXPECT_EQ(w.ask(&filler::memfd_refs).get(), one);
        // Made before start: the backend drops first, the frontend still maps it; then it drops.
        w.call(&filler::drop_before);
        EXPECT_EQ(w.ask(&filler::memfd_refs).get(), 0u);
        w.actor().before[0] = 1;
        w.actor().before = {};
        EXPECT_EQ(memfd_refs_here(), 0u);
        EXPECT_EQ(pf::testing::map_count().memfd, 0u);
        w.join();
    });
}

} // namespace

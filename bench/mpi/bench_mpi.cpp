// parafork::mpi against the local pool, on every rank of an mpirun job (SPMD). Rank 0 prints
// one line per measure; the figures feed docs/scale-out.md's model.
//   mpirun --oversubscribe -np 3 build/release/bench/mpi/bench_mpi [tasks]
// - tiny tasks (x -> 2x+1): tasks/s of parafork::map on this host, of parafork::mpi::map over
//   all ranks; messages and bytes rank 0 received per task
// - call overhead: an mpi::map of one item per worker (ranks fork their workers per call)
// - per-task overhead of 1 ms tasks: wall time over the ideal (tasks * 1 ms / all workers)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <thread>
#include <vector>

#include <parafork/exec/map.hpp>
#include <parafork/mpi/mpi.hpp>

namespace pf = parafork;
using clk = std::chrono::steady_clock;

template <class F>
double seconds(F&& f) {
    const auto t0 = clk::now();
    f();
    return std::chrono::duration<double>(clk::now() - t0).count();
}

int main(int argc, char** argv) {
    auto& w = pf::mpi::init();
    const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2000000;
    std::vector<std::uint32_t> xs(n);
    std::iota(xs.begin(), xs.end(), 0u);
    auto tiny = [](std::uint32_t x) { return std::uint64_t{x} * 2 + 1; };
    const unsigned jobs = pf::resolve_jobs(0);

    // Local first on rank 0 only (the others wait in the next collective call).
    double local = 0;
    if (w.root()) local = seconds([&] { (void)pf::map(tiny, xs); });
    const auto before = w.counted();
    const double remote = seconds([&] { (void)pf::mpi::map(w, tiny, xs); });
    const auto after = w.counted();
    std::vector<int> one(static_cast<std::size_t>(jobs) * static_cast<std::size_t>(w.size()));
    double call = 1e9;
    for (int k = 0; k < 5; ++k)
        call = std::min(call, seconds([&] { (void)pf::mpi::map(w, [](int x) { return x; }, one); }));
    // Small chunks: how many messages a second rank 0 takes in (each chunk is a round trip).
    pf::options small;
    small.chunksize = 16;
    std::vector<std::uint32_t> some(xs.begin(), xs.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(n, 200000)));
    const auto b2 = w.counted();
    const double small_s = seconds([&] { (void)pf::mpi::map(w, tiny, some, small); });
    const auto a2 = w.counted();
    double local_call = 1e9;
    if (w.root())
        for (int k = 0; k < 5; ++k)
            local_call = std::min(local_call, seconds([&] { (void)pf::map([](int x) { return x; }, one); }));
    const std::size_t slow_n = 600;
    std::vector<int> slow(slow_n);
    const double slow_s = seconds([&] {
        (void)pf::mpi::map(w, [](int x) { std::this_thread::sleep_for(std::chrono::milliseconds(1)); return x; }, slow);
    });
    if (!w.root()) return 0;
    const double ideal = static_cast<double>(slow_n) * 1e-3 / (jobs * static_cast<unsigned>(w.size()));
    std::printf("ranks %d, jobs per rank %u, tiny tasks %zu\n", w.size(), jobs, n);
    std::printf("tiny local map      %10.0f tasks/s\n", static_cast<double>(n) / local);
    std::printf("tiny mpi::map       %10.0f tasks/s\n", static_cast<double>(n) / remote);
    // Answers are 8-byte values: received bytes / 8 is about how many tasks other ranks ran.
    const auto msgs = after.received - before.received, bytes = after.received_bytes - before.received_bytes;
    std::printf("rank 0 received     %10llu messages, %llu bytes: ~%llu tasks' results, %.0f per message\n",
                static_cast<unsigned long long>(msgs), static_cast<unsigned long long>(bytes),
                static_cast<unsigned long long>(bytes / 8), msgs ? static_cast<double>(bytes / 8) / static_cast<double>(msgs) : 0.0);
    std::printf("chunks of 16        %10.0f tasks/s, rank 0 took in %.0f messages/s, sent %.0f/s\n",
                static_cast<double>(some.size()) / small_s, static_cast<double>(a2.received - b2.received) / small_s,
                static_cast<double>(a2.sent - b2.sent) / small_s);
    std::printf("call overhead       %10.2f ms (one item per worker, workers forked per call; local map %.2f ms)\n",
                call * 1e3, local_call * 1e3);
    std::printf("1 ms tasks          %10.3f s for %zu, ideal %.3f s: %.0f us overhead per task per worker\n",
                slow_s, slow_n, ideal, (slow_s - ideal) / static_cast<double>(slow_n) * jobs * w.size() * 1e6);
    return 0;
}

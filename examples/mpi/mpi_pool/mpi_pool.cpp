// A pool over MPI ranks: workers forked once on every rank serve several calls.
//   mpirun -np 3 build/dev/examples/mpi/mpi_pool
// Every rank runs this program and makes the same pool calls; results arrive at rank 0.
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include <parafork/mpi/mpi.hpp>

namespace {
std::uint64_t collatz_steps(std::uint64_t n) {
    std::uint64_t steps = 0;
    for (; n > 1; ++steps) n = n % 2 ? 3 * n + 1 : n / 2;
    return steps;
}
std::string label(std::uint64_t n, std::uint64_t steps) { return std::to_string(n) + ":" + std::to_string(steps); }
} // namespace

int main() {
    auto& world = parafork::mpi::init();  // first thing: forks this rank's MPI process off
    parafork::mpi::pool pool(world);      // every rank forks its workers, once

    // submit is rank 0's: its arguments travel; other ranks get a future with no state and run
    // rank 0's tasks while they are in a pool call (here: the map below, or join).
    auto one = pool.submit(&collatz_steps, std::uint64_t{27});

    std::vector<std::uint64_t> ns(100000);
    std::iota(ns.begin(), ns.end(), 1);                   // every rank has the same items
    auto steps = pool.map(&collatz_steps, ns);            // rank 0: input order; others: empty

    std::uint64_t longest = 0, at = 0;
    for (auto&& [i, s] : pool.imap_unordered(&collatz_steps, ns))  // rank 0 iterates;
        if (s > longest) longest = s, at = ns[i];                  // others serve, get none

    pool.close();
    pool.join();                                          // every rank

    if (!world.root()) return 0;
    const auto total = std::accumulate(steps.begin(), steps.end(), std::uint64_t{0});
    const auto of27 = one.get();
    std::printf("27 takes %llu steps; below %zu the longest is %s; %llu steps in all, over %d ranks\n",
                static_cast<unsigned long long>(of27), ns.size() + 1, label(at, longest).c_str(),
                static_cast<unsigned long long>(total), world.size());
    return of27 == 111 && longest == 350 && at == 77031 ? 0 : 1;
}

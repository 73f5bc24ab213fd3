// pi by Monte Carlo over MPI ranks: the same program on every rank; rank 0 prints.
//   mpirun -np 3 build/dev/examples/mpi/mpi_pi
// Each task counts the hits of one block of random points; blocks are spread over every rank's
// workers, and only the counts travel back to rank 0.
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include <parafork/mpi/mpi.hpp>

int main() {
    auto& world = parafork::mpi::init();  // first thing: forks this rank's MPI process off

    constexpr std::uint64_t points_per_block = 50000;
    std::vector<std::uint64_t> blocks(240);
    std::iota(blocks.begin(), blocks.end(), 0);  // a block's number seeds its generator

    auto hits = parafork::mpi::map(world, [](std::uint64_t block) {
        std::mt19937_64 gen(block);
        std::uniform_real_distribution<double> u(0, 1);
        std::uint64_t in = 0;
        for (std::uint64_t k = 0; k < points_per_block; ++k) {
            const double x = u(gen), y = u(gen);
            in += x * x + y * y <= 1;
        }
        return in;
    }, blocks);

    if (world.root()) {
        const auto total = std::accumulate(hits.begin(), hits.end(), std::uint64_t{0});
        const double pi = 4.0 * static_cast<double>(total) / static_cast<double>(blocks.size() * points_per_block);
        std::printf("pi ~ %.6f from %zu blocks over %d ranks (", pi, blocks.size(), world.size());
        for (int r = 0; r < world.size(); ++r) std::printf("%s%s", r ? ", " : "", world.host(r).c_str());
        std::printf(")\n");
        return pi > 3.13 && pi < 3.15 ? 0 : 1;
    }
    return 0;
}

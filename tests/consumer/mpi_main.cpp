// A user's MPI program (consumer.find_package_mpi builds it against the installed mpi component
// and runs it on 2 ranks): squares spread over every rank's workers, checked on rank 0. It exits
// non-zero (with a message) if anything is off, so building and running it is the test.
#include <parafork/mpi/mpi.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

int main() {
    auto& world = parafork::mpi::init();
    std::vector<long> v(1000);
    std::iota(v.begin(), v.end(), 0L);
    auto squares = parafork::mpi::map(world, [](long x) { return x * x; }, v);
    if (!world.root()) return squares.empty() ? 0 : 1;
    for (long i = 0; i < static_cast<long>(v.size()); ++i) {
        if (squares.at(static_cast<std::size_t>(i)) != i * i) {
            std::fprintf(stderr, "parafork consumer (mpi): FAILED: item %ld\n", i);
            return 1;
        }
    }
    std::printf("parafork consumer (mpi): %zu squares over %d ranks\n", squares.size(), world.size());
    return world.size() == 2 ? 0 : 1;
}

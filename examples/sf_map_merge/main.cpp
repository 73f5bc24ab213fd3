// snakefish's map with extract/merge, and starmap: each worker counts the items it handled in
// its own copy of a global; the parent merges the counts once per worker.
#include <parafork/parafork.hpp>

#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

namespace pf = parafork;

namespace {
long handled = 0;  // each worker's own copy after the fork
} // namespace

int main() try {
    std::vector<int> xs;
    for (int i = 1; i <= 100; ++i) xs.push_back(i);

    long total = 0;
    long sum = 0;
    auto squares = pf::map([](int x) { ++handled; return x * x; }, xs,
                           [] { return handled; },              // runs in each worker
                           [&](long n) { total += n; });        // runs in the parent
    for (int v : squares) sum += v;
    std::printf("sum of squares %ld, items handled %ld (parent's own counter %ld)\n", sum, total,
                handled);

    std::vector<std::tuple<std::string, int>> jobs = {{"ab", 3}, {"xyz", 2}};
    auto repeated = pf::starmap([](const std::string& s, int n) {
        std::string out;
        for (int i = 0; i < n; ++i) out += s;
        return out;
    }, jobs);
    for (auto& r : repeated) std::printf("%s\n", r.c_str());
    bool ok = total == 100 && handled == 0 && sum == 338350 &&
              repeated == std::vector<std::string>{"ababab", "xyzxyz"};
    if (!ok) std::fprintf(stderr, "sf_map_merge: wrong results\n");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "sf_map_merge: %s\n", e.what());
    return 1;
}

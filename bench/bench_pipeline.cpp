// Items per second through Iter -> add1 -> (mul2, mul2 in parallel) -> collect in the parent:
// the topology mpyx's documentation measures (6,154 items/s there).
#include <parafork/exec/pipeline.hpp>
#include <parafork/exec/stages.hpp>

#include <benchmark/benchmark.h>


namespace pf = parafork;

namespace {

int add1(int x) { return x + 1; }
int mul2(int x) { return x * 2; }

void pipeline_iter_add1_mul2x2_collect(benchmark::State& state) {
    const int n = static_cast<int>(state.range(0));
    for (auto _ : state) {
        auto p = pf::ez(pf::iter(0, n), add1, pf::parallel(mul2, mul2));
        long long sum = 0;
        for (int v : p.items()) sum += v;
        benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(pipeline_iter_add1_mul2x2_collect)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same with one stage per queue hop, to show the per-hop cost.
void pipeline_iter_collect(benchmark::State& state) {
    const int n = static_cast<int>(state.range(0));
    for (auto _ : state) {
        auto p = pf::ez(pf::iter(0, n));
        long long sum = 0;
        for (int v : p.items()) sum += v;
        benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(pipeline_iter_collect)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();

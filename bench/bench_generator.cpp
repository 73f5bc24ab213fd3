// Generator cost per item streamed from the child (snakefish's Generator.next: 72.8 us), and
// the cost of a timestamp (CLOCK_MONOTONIC through the vDSO; docs/thread.md says why).
#include <parafork/exec/thread/generator.hpp>
#include <parafork/ipc/timestamp.hpp>

#include <benchmark/benchmark.h>

#include <string>

namespace pf = parafork;

namespace {

void BM_generator_next_int(benchmark::State& state) {
    pf::generator<long> g([](pf::yield<long>& y) {
        for (long i = 0;; ++i) y(i);
    });
    g.start();
    for (auto _ : state) benchmark::DoNotOptimize(g.next());
    state.SetItemsProcessed(state.iterations());
}  // the destructor kills the endless producer
BENCHMARK(BM_generator_next_int)->UseRealTime();

void BM_generator_next_string(benchmark::State& state) {
    const std::size_t size = static_cast<std::size_t>(state.range(0));
    pf::generator<std::string> g([size](pf::yield<std::string>& y) {
        std::string s(size, 'x');
        for (;;) y(s);
    });
    g.start();
    for (auto _ : state) benchmark::DoNotOptimize(g.next());
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}
BENCHMARK(BM_generator_next_string)->Arg(100)->Arg(10000)->UseRealTime();

void BM_timestamp(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(pf::timestamp());
}
BENCHMARK(BM_timestamp);

void BM_timestamp_serialized(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(pf::timestamp_serialized());
}
BENCHMARK(BM_timestamp_serialized);

} // namespace

BENCHMARK_MAIN();

// Items per second through Iter -> add1 -> (mul2, mul2 in parallel) -> collect in the parent:
// the topology mpyx's documentation measures (6,154 items/s there).
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>
#include <vector>

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

// A short run from start to list() returned: what a wait that wakes late (a poll interval)
// would add to every small pipeline. One run per iteration; median and p99 over 200.
double p99(const std::vector<double>& v) {
    std::vector<double> s(v);
    std::sort(s.begin(), s.end());
    return s.empty() ? 0 : s[std::min(s.size() - 1, s.size() * 99 / 100)];
}

void pipeline_10_items(benchmark::State& state) {
    for (auto _ : state) {
        auto t0 = std::chrono::steady_clock::now();
        auto v = pf::ez(pf::iter(0, 10), add1, pf::parallel(mul2, mul2)).list();
        auto dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        benchmark::DoNotOptimize(v);
        state.SetIterationTime(dt);
    }
}
BENCHMARK(pipeline_10_items)
    ->Iterations(1)
    ->Repetitions(200)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->ComputeStatistics("p99", p99)
    ->ReportAggregatesOnly(true);

// From a stage's last act to the caller's return, while the caller sleeps: the last stage's
// item is out and it returns (end of stream: list() returns once every stage has exited), or
// it is killed by SIGKILL (a death: list() throws worker_died, noticed by the stage's pidfd).
// The stage stamps CLOCK_MONOTONIC into shared memory just before. Median over 100 runs.
std::atomic<std::int64_t>* g_stamp = nullptr;
bool g_kill = false;

int last_act(int x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));  // the caller is asleep by now
    g_stamp->store(std::chrono::steady_clock::now().time_since_epoch().count());
    if (g_kill) ::kill(::getpid(), SIGKILL);
    return x;
}

void notice_latency(benchmark::State& state, bool kill_stage) {
    g_stamp = static_cast<std::atomic<std::int64_t>*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    g_kill = kill_stage;
    for (auto _ : state) {
        try {
            benchmark::DoNotOptimize(pf::ez(pf::iter(0, 1), last_act).list());
        } catch (const pf::worker_died&) {
        }
        auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        state.SetIterationTime(static_cast<double>(now - g_stamp->load()) / 1e9);
    }
    ::munmap(g_stamp, 4096);
}
void pipeline_end_of_stream_latency(benchmark::State& state) { notice_latency(state, false); }
void pipeline_death_notice_latency(benchmark::State& state) { notice_latency(state, true); }
BENCHMARK(pipeline_end_of_stream_latency)
    ->Iterations(1)->Repetitions(100)->UseManualTime()->Unit(benchmark::kMicrosecond)->ReportAggregatesOnly(true);
BENCHMARK(pipeline_death_notice_latency)
    ->Iterations(1)->Repetitions(100)->UseManualTime()->Unit(benchmark::kMicrosecond)->ReportAggregatesOnly(true);

} // namespace

BENCHMARK_MAIN();

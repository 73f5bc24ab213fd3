// Scaling of CPU-bound work: pi by the Leibniz series (2^32 terms, as cligen's piPar; set
// PARAFORK_BENCH_PI_LOG2 for another size) with fork_join over nsplit at jobs = 1 ... 2 x CPUs,
// next to the same split on std::jthread and the plain serial loop. bench/report.py turns the
// times into speedup and efficiency (serial time / (time x jobs)).
#include <parafork/exec/coproc/fork_join.hpp>
#include <parafork/exec/core/options.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace pf = parafork;

namespace {

// Terms [start, stop) of pi = 4 (1 - 1/3 + 1/5 - ...), taken in pairs so the loop has no
// branch and vectorizes (the same kernel as examples/pi_fork_join).
[[gnu::noinline]] double leibniz(std::size_t start, std::size_t stop) {
    double sum = 0;
    std::size_t k = start;
    if (k % 2 && k < stop) sum -= 4.0 / double(2 * k++ + 1);
    for (; k + 1 < stop; k += 2) sum += 4.0 / double(2 * k + 1) - 4.0 / double(2 * k + 3);
    if (k < stop) sum += 4.0 / double(2 * k + 1);
    return sum;
}

std::size_t terms() {
    const char* e = std::getenv("PARAFORK_BENCH_PI_LOG2");
    return std::size_t{1} << (e ? std::atoi(e) : 32);
}

void BM_PiSerial(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(leibniz(0, terms()));
    state.counters["terms"] = static_cast<double>(terms());
}

void BM_PiForkJoin(benchmark::State& state) {
    const auto jobs = static_cast<std::size_t>(state.range(0));
    for (auto _ : state) {
        double pi = 0;
        for (double p : pf::fork_join(pf::nsplit(terms(), jobs),
                                      [](std::size_t, pf::slice s) { return leibniz(s.start, s.stop); }))
            pi += p;
        benchmark::DoNotOptimize(pi);
    }
    state.counters["jobs"] = static_cast<double>(jobs);
}

void BM_PiThreads(benchmark::State& state) {
    const auto jobs = static_cast<std::size_t>(state.range(0));
    for (auto _ : state) {
        auto parts = pf::nsplit(terms(), jobs);
        std::vector<double> sums(jobs);
        {
            std::vector<std::jthread> ts;
            for (std::size_t k = 0; k < jobs; ++k)
                ts.emplace_back([&, k] { sums[k] = leibniz(parts[k].start, parts[k].stop); });
        }
        double pi = 0;
        for (double p : sums) pi += p;
        benchmark::DoNotOptimize(pi);
    }
    state.counters["jobs"] = static_cast<double>(jobs);
}

} // namespace

// Registered at run time: the job counts depend on the CPUs this process may use. The thread
// variant runs last, after every fork (forking a process that ran threads is avoided).
int main(int argc, char** argv) {
    const unsigned cpus = pf::default_jobs();
    benchmark::RegisterBenchmark("BM_PiSerial", BM_PiSerial)
        ->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
    auto* fj = benchmark::RegisterBenchmark("BM_PiForkJoin", BM_PiForkJoin);
    auto* th = benchmark::RegisterBenchmark("BM_PiThreads", BM_PiThreads);
    for (unsigned j = 1; j <= 2 * cpus; ++j) {
        fj->Arg(j);
        th->Arg(j);
    }
    fj->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
    th->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

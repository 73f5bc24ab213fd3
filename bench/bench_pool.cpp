// forked / map / pool against the targets of docs/pool.md:
//   submit().get() round trip <= 10 us; map of a trivial function over 10M ints >= 48 M items/s;
//   a 256 MiB std::vector<double> result >= 8 GB/s; pi over 2^32 terms on 2 jobs: efficiency
//   >= 0.95 (PARAFORK_BENCH_PI_LOG2=28 for a shorter run).
#include <parafork/exec/forked/map.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/ipc/shared_array.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <numeric>
#include <vector>

namespace pf = parafork;

namespace {

int ident(int x) { return x; }

pf::options jobs(unsigned n) {
    pf::options o;
    o.jobs = n;
    return o;
}

void submit_round_trip(benchmark::State& state) {
    pf::pool p(jobs(1));
    for (auto _ : state) benchmark::DoNotOptimize(p.submit(&ident, 1).get());
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(submit_round_trip)->UseRealTime();

// The same with options::spin = 0: both sides sleep in poll at once, so each round trip pays
// the wake-up of an idle CPU (what the spin saves; see docs/pool.md, "Latency").
void no_spin_submit_round_trip(benchmark::State& state) {
    pf::options o = jobs(1);
    o.spin = std::chrono::microseconds(0);
    pf::pool p(o);
    for (auto _ : state) benchmark::DoNotOptimize(p.submit(&ident, 1).get());
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(no_spin_submit_round_trip)->UseRealTime();

void map_10m_ints(benchmark::State& state) {
    std::vector<int> v(10'000'000);
    std::iota(v.begin(), v.end(), 0);
    for (auto _ : state) {
        auto r = pf::map([](int x) { return x + 1; }, v, jobs(2));
        benchmark::DoNotOptimize(r.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * v.size()));
}
BENCHMARK(map_10m_ints)->UseRealTime()->Unit(benchmark::kMillisecond);

void pool_map_10m_ints(benchmark::State& state) {
    std::vector<int> v(10'000'000);
    std::iota(v.begin(), v.end(), 0);
    pf::pool p(jobs(2));
    for (auto _ : state) {
        auto r = p.map([](int x) { return x + 1; }, v);
        benchmark::DoNotOptimize(r.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * v.size()));
}
BENCHMARK(pool_map_10m_ints)->UseRealTime()->Unit(benchmark::kMillisecond);

void result_256mib(benchmark::State& state) {
    // The value exists before the workers fork, so this times the transfer, not its making.
    std::vector<double> big((256u << 20) / sizeof(double));
    std::iota(big.begin(), big.end(), 0.0);
    pf::pool p([&big](int) -> const std::vector<double>& { return big; }, jobs(1));
    benchmark::DoNotOptimize(p.apply(0).get().data());  // warm-up: the first one also pays
                                                        // for the worker's first huge allocations
    for (auto _ : state) {
        auto r = p.apply(0).get();
        benchmark::DoNotOptimize(r.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (256u << 20)));
}
BENCHMARK(result_256mib)->UseRealTime()->Unit(benchmark::kMillisecond);

// The same 256 MiB as a shared_array: what comes back is the memory itself (a descriptor and a
// mapping), so the cost does not depend on the size.
void result_256mib_shared_array(benchmark::State& state) {
    pf::shared_array<double> big({(256u << 20) / sizeof(double)});
    std::iota(big.begin(), big.end(), 0.0);
    pf::pool p([big](int) { return big; }, jobs(1));
    benchmark::DoNotOptimize(p.apply(0).get().data());
    for (auto _ : state) {
        auto r = p.apply(0).get();
        benchmark::DoNotOptimize(r.data()[r.size() - 1]);  // touch it: the mapping is real
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (256u << 20)));
}
BENCHMARK(result_256mib_shared_array)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The floor on this machine: one copy of 256 MiB into a fresh std::vector (page faults and
// all), what any result that ends in a new vector must pay at least once.
void baseline_copy_256mib(benchmark::State& state) {
    std::vector<double> big((256u << 20) / sizeof(double));
    std::iota(big.begin(), big.end(), 0.0);
    for (auto _ : state) {
        std::vector<double> copy(big.begin(), big.end());
        benchmark::DoNotOptimize(copy.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (256u << 20)));
}
BENCHMARK(baseline_copy_256mib)->UseRealTime()->Unit(benchmark::kMillisecond);

// The part of the floor no transfer can avoid: a new 256 MiB std::vector<double> cannot exist
// without its zero-fill, even with huge pages asked for first (as the pool does).
void baseline_sized_vector_256mib(benchmark::State& state) {
    constexpr std::size_t n = (256u << 20) / sizeof(double);
    for (auto _ : state) {
        std::vector<double> v;
        v.reserve(n);
        pf::detail::prepare_bulk_destination(v.data(), n * sizeof(double));
        v.resize(n);
        benchmark::DoNotOptimize(v.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * (256u << 20)));
}
BENCHMARK(baseline_sized_vector_256mib)->UseRealTime()->Unit(benchmark::kMillisecond);

double term(std::int64_t k) { return (0.5 - static_cast<double>(k % 2)) * 8.0 / static_cast<double>(2 * k + 1); }

// Not inlined: the serial and the parallel runs execute the very same machine code.
[[gnu::noinline]] double pi_terms(std::int64_t lo, std::int64_t hi) {
    double s = 0;
    for (std::int64_t k = lo; k < hi; ++k) s += term(k);
    return s;
}

std::int64_t pi_n() {
    const char* e = std::getenv("PARAFORK_BENCH_PI_LOG2");
    int log2 = e ? std::atoi(e) : 32;
    return std::int64_t{1} << log2;
}

void pi_serial(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(pi_terms(0, pi_n()));
}
BENCHMARK(pi_serial)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1);

void pi_forked_2_jobs(benchmark::State& state) {
    const std::int64_t n = pi_n(), batch = n / 64;
    std::vector<std::int64_t> starts;
    for (std::int64_t s = 0; s < n; s += batch) starts.push_back(s);
    for (auto _ : state) {
        double pi = 0;
        pf::forked(starts, [batch](std::int64_t s) { return pi_terms(s, s + batch); },
                   [&pi](double y) { pi += y; }, jobs(2));
        benchmark::DoNotOptimize(pi);
    }
}
BENCHMARK(pi_forked_2_jobs)->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(1);

} // namespace

BENCHMARK_MAIN();

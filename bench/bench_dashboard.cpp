// The dashboard's cost (docs/dashboard.md): the same workloads with it off (Arg 0) and on
// (Arg 1, serving on a free loopback port, its page not even open). Goal: task rates on within
// 3% of off. Compare with interleaved repetitions:
//   bench_dashboard --benchmark_repetitions=9 --benchmark_enable_random_interleaving=true
//                   --benchmark_report_aggregates_only=true
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/exec/forked/map.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/exec/process/process.hpp>

#include <benchmark/benchmark.h>

#include <numeric>
#include <string>
#include <vector>

namespace pf = parafork;

namespace {

int ident(int x) { return x; }

pf::options opts(unsigned jobs, bool dashboard) {
    pf::options o;
    o.jobs = jobs;
    if (dashboard) o.dashboard = "127.0.0.1:0";
    return o;
}

// One task at a time: every answer passes the hooks once (worker busy, answered, idle).
void submit_round_trip(benchmark::State& state) {
    pf::pool p(opts(1, state.range(0) != 0));
    for (auto _ : state) benchmark::DoNotOptimize(p.submit(&ident, 1).get());
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(submit_round_trip)->Arg(0)->Arg(1)->UseRealTime();

// Many small futures in flight on 2 workers.
void submit_10k_futures(benchmark::State& state) {
    pf::pool p(opts(2, state.range(0) != 0));
    std::vector<pf::future<int>> fs;
    fs.reserve(10'000);
    for (auto _ : state) {
        fs.clear();
        for (int i = 0; i < 10'000; ++i) fs.push_back(p.submit(&ident, i));
        for (auto& f : fs) benchmark::DoNotOptimize(f.get());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 10'000));
}
BENCHMARK(submit_10k_futures)->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

// A map in small chunks: many batches, so the hooks run often.
void map_1m_ints_chunks_of_100(benchmark::State& state) {
    std::vector<int> v(1'000'000);
    std::iota(v.begin(), v.end(), 0);
    pf::options o = opts(2, state.range(0) != 0);
    o.chunksize = 100;
    for (auto _ : state) {
        auto r = pf::map([](int x) { return x + 1; }, v, o);
        benchmark::DoNotOptimize(r.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * v.size()));
}
BENCHMARK(map_1m_ints_chunks_of_100)->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

// A message process: one ask at a time (its hooks: busy, answered, idle on every ask).
struct echo_actor : pf::actor {
    int ident(int x) { return x; }
};
void process_ask_round_trip(benchmark::State& state) {
    pf::options o;
    if (state.range(0) != 0) o.dashboard = "127.0.0.1:0";
    pf::process<echo_actor> a(echo_actor{}, o);
    a.start();
    for (auto _ : state) benchmark::DoNotOptimize(a.ask(&echo_actor::ident, 1).get());
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    a.join();
}
BENCHMARK(process_ask_round_trip)->Arg(0)->Arg(1)->UseRealTime();

// proc_pool: 10,000 one-line requests to 2 kids (its hooks on every request and reply).
void proc_pool_10k_lines(benchmark::State& state) {
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, pf::frames::lines, [](std::string_view s) { return std::string(s); });
                     }),
                     pf::frames::lines, opts(2, state.range(0) != 0));
    std::vector<std::string> reqs(10'000, "x");
    for (auto _ : state) {
        std::size_t n = 0;
        pp.eval(reqs, [&](std::string_view) { ++n; });
        benchmark::DoNotOptimize(n);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * reqs.size()));
}
BENCHMARK(proc_pool_10k_lines)->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();

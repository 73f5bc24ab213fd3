// proc_pool throughput and latency. Reference (2-core development VM): cligen's procpool does
// 1.04 M req/s with 0term frames and 0.56 M req/s with 8-byte objects; goal >= 3x that. A pipe
// round trip there is 6-7 us; goal for one request's round trip <= 10 us.
#include <parafork/exec/coproc/proc_pool.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

namespace pf = parafork;
namespace frames = parafork::frames;

namespace {

pf::options with_jobs(unsigned n) {
    pf::options o;
    o.jobs = n;
    return o;
}

// Tiny requests: 1,000,000 short numbers through 2 kids that answer each with its length.
void BM_TinyRequestsZeroTerm(benchmark::State& state) {
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    std::vector<std::string> reqs;
    reqs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) reqs.push_back(std::to_string(i));
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, frames::zero_term, [](std::string_view s, std::string& r) {
                             r.assign(1, static_cast<char>('0' + s.size()));
                         });
                     }),
                     frames::zero_term, with_jobs(2));
    for (auto _ : state) {
        std::size_t got = 0;
        pp.eval(reqs, [&](std::string_view) { ++got; });
        if (got != n) state.SkipWithError("lost replies");
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_TinyRequestsZeroTerm)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// 8-byte objects both ways (procpool's Ob framing).
void BM_TinyRequestsFixed8(benchmark::State& state) {
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    std::vector<std::string> reqs;
    reqs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::string s(8, '\0');
        std::uint64_t v = i;
        std::memcpy(s.data(), &v, 8);
        reqs.push_back(std::move(s));
    }
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, frames::fixed<8>, [](std::string_view s, std::string& r) {
                             std::uint64_t v;
                             std::memcpy(&v, s.data(), 8);
                             v *= 2;
                             r.assign(reinterpret_cast<const char*>(&v), 8);
                         });
                     }),
                     frames::fixed<8>, with_jobs(2));
    for (auto _ : state) {
        std::size_t got = 0;
        pp.eval(reqs, [&](std::string_view) { ++got; });
        if (got != n) state.SkipWithError("lost replies");
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_TinyRequestsFixed8)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// One request, one reply, through one kid: the latency floor of the pool.
void BM_RoundTrip(benchmark::State& state) {
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, frames::len_prefix, [](std::string_view s) { return s; });
                     }),
                     frames::len_prefix, with_jobs(1));
    for (auto _ : state) {
        pp.send("ping");
        auto r = pp.next_reply(true);
        benchmark::DoNotOptimize(r);
    }
}
BENCHMARK(BM_RoundTrip)->UseRealTime();

} // namespace

BENCHMARK_MAIN();

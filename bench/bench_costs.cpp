// Costs that grow with the work:
// - starting children versus the parent's resident memory (fork copies page tables: about
//   30 ms per GiB of 4 KiB pages on the development VM),
// - moving a payload to a kid and back versus its size (proc_pool, len_prefix frames),
// - one request's round trip versus the message size.
#include <parafork/exec/coproc/fork_join.hpp>
#include <parafork/exec/coproc/proc_pool.hpp>

#include <benchmark/benchmark.h>

#include <sched.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace pf = parafork;
namespace frames = parafork::frames;

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

// Resident memory of the parent while it forks: allocated and touched (every page written),
// so fork has that many page-table entries to copy and the child's exit that many to drop.
struct resident {
    std::unique_ptr<char[]> mem;
    explicit resident(std::size_t bytes) : mem(bytes ? new char[bytes] : nullptr) {
        if (bytes) std::memset(mem.get(), 1, bytes);
        benchmark::DoNotOptimize(mem.get());
    }
};

pf::options jobs(unsigned n) {
    pf::options o;
    o.jobs = n;
    return o;
}

// fork_join with one part that does nothing: fork, child exit, reap.
void BM_ForkJoinStart(benchmark::State& state) {
    resident r(static_cast<std::size_t>(state.range(0)) * mib);
    for (auto _ : state)
        pf::fork_join(pf::nsplit(1, 1), [](std::size_t, pf::slice) {});
    state.counters["rss_mib"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_ForkJoinStart)->Arg(0)->Arg(256)->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond);

// A proc_pool of 2 function kids: start them, one round trip each, stop and reap them.
void BM_ProcPoolStart(benchmark::State& state) {
    resident r(static_cast<std::size_t>(state.range(0)) * mib);
    for (auto _ : state) {
        pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                             pf::serve(in, out, frames::len_prefix, [](std::string_view s) { return s; });
                         }),
                         frames::len_prefix, jobs(2));
        pp.send("a");
        pp.send("b");
        while (pp.next_reply(true)) {
        }
    }
    state.counters["rss_mib"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_ProcPoolStart)->Arg(0)->Arg(256)->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Parent -> kid: a payload of the given size, answered with its 8-byte length.
void BM_TransferToKid(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const std::string payload(size, 'x');
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, frames::len_prefix, [](std::string_view s, std::string& r) {
                             std::uint64_t n = s.size();
                             r.assign(reinterpret_cast<const char*>(&n), sizeof n);
                         });
                     }),
                     frames::len_prefix, jobs(1));
    for (auto _ : state) {
        pp.send(payload);
        auto r = pp.next_reply(true);
        if (!r || r->data.size() != 8) state.SkipWithError("bad reply");
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
    state.counters["bytes"] = static_cast<double>(size);
}

// Kid -> parent: an 8-byte request answered with a payload of the given size (made before the
// fork, so only the transfer is timed).
void BM_TransferFromKid(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const std::string payload(size, 'y');
    pf::proc_pool pp(pf::kid_fn([&payload](int in, int out) {
                         pf::serve(in, out, frames::len_prefix,
                                   [&payload](std::string_view) -> std::string_view { return payload; });
                     }),
                     frames::len_prefix, jobs(1));
    for (auto _ : state) {
        pp.send("12345678");
        auto r = pp.next_reply(true);
        if (!r || r->data.size() != size) state.SkipWithError("bad reply");
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
    state.counters["bytes"] = static_cast<double>(size);
}

// Small and medium sizes: let Google Benchmark pick the iterations. The largest ones run a
// fixed, small number of times to keep the run short (a 1 GiB frame is the default maximum).
#define PARAFORK_TRANSFER_SIZES(bm)                                                                \
    BENCHMARK(bm)->RangeMultiplier(16)->Range(1 << 10, 4 << 20)->UseRealTime()->Unit(benchmark::kMicrosecond); \
    BENCHMARK(bm)->Arg(64 << 20)->Arg(256 << 20)->Iterations(3)->UseRealTime()->Unit(benchmark::kMillisecond); \
    BENCHMARK(bm)->Arg(1 << 30)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond)
PARAFORK_TRANSFER_SIZES(BM_TransferToKid);
PARAFORK_TRANSFER_SIZES(BM_TransferFromKid);

// Echo round trip through one kid versus message size.
void BM_RoundTripSize(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const std::string msg(size, 'z');
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, frames::len_prefix, [](std::string_view s) { return s; });
                     }),
                     frames::len_prefix, jobs(1));
    for (auto _ : state) {
        pp.send(msg);
        auto r = pp.next_reply(true);
        if (!r || r->data.size() != size) state.SkipWithError("bad reply");
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size * 2));
    state.counters["bytes"] = static_cast<double>(size);
}
BENCHMARK(BM_RoundTripSize)->RangeMultiplier(8)->Range(8, 1 << 20)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The same 8-byte echo with the parent and its kid on one CPU (the kid inherits the parent's
// affinity). On a VM, waking a peer on an idle CPU costs tens of microseconds (the idle vCPU
// must be woken); on one CPU the round trip is two context switches and four pipe calls.
void BM_RoundTripOneCpu(benchmark::State& state) {
    cpu_set_t saved, one;
    sched_getaffinity(0, sizeof saved, &saved);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &saved)) {
            CPU_SET(c, &one);
            break;
        }
    sched_setaffinity(0, sizeof one, &one);
    {
        pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                             pf::serve(in, out, frames::len_prefix, [](std::string_view s) { return s; });
                         }),
                         frames::len_prefix, jobs(1));
        for (auto _ : state) {
            pp.send("ping");
            auto r = pp.next_reply(true);
            benchmark::DoNotOptimize(r);
        }
    }
    sched_setaffinity(0, sizeof saved, &saved);
}
BENCHMARK(BM_RoundTripOneCpu)->UseRealTime()->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();

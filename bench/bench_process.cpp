// process<Actor>: ask round trip, call throughput (written through, and batched), against the
// floor of a raw socketpair round trip between the same two processes.
// Targets: ask().get() <= 10 us; call >= 1 M calls/s.
#include <parafork/exec/process/process.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include <benchmark/benchmark.h>

namespace pf = parafork;

namespace {

struct echo {
    long total = 0;
    int square(int x) { return x * x; }
    void add(int x) { total += x; }
    long get_total() const { return total; }
};

void ask_round_trip(benchmark::State& state) {
    pf::process<echo> w;
    w.start();
    int i = 0;
    for (auto _ : state) benchmark::DoNotOptimize(w.ask(&echo::square, ++i & 1023).get());
    w.join();
}
BENCHMARK(ask_round_trip)->UseRealTime();

void ask_round_trip_fixed_member(benchmark::State& state) {
    pf::process<echo> w;
    w.start();
    int i = 0;
    for (auto _ : state) benchmark::DoNotOptimize(w.ask<&echo::square>(++i & 1023).get());
    w.join();
}
BENCHMARK(ask_round_trip_fixed_member)->UseRealTime();

// Both sides sleep at once (options.spin = 0): each round trip pays two wake-ups of an idle CPU.
void ask_round_trip_no_spin(benchmark::State& state) {
    pf::process<echo> w(echo{}, {.spin = std::chrono::microseconds(0)});
    w.start();
    int i = 0;
    for (auto _ : state) benchmark::DoNotOptimize(w.ask<&echo::square>(++i & 1023).get());
    w.join();
}
BENCHMARK(ask_round_trip_no_spin)->UseRealTime();

// Calls until the backend has run them all (the final ask waits for the last one).
void call_throughput(benchmark::State& state) {
    pf::process<echo> w;
    w.start();
    const int n = 100000;
    for (auto _ : state) {
        for (int i = 0; i < n; ++i) w.call(&echo::add, 1);
        benchmark::DoNotOptimize(w.ask(&echo::get_total).get());
    }
    state.SetItemsProcessed(state.iterations() * n);
    w.join();
}
BENCHMARK(call_throughput)->UseRealTime()->Unit(benchmark::kMillisecond);

void call_throughput_batched(benchmark::State& state) {
    pf::process<echo> w;
    w.start();
    const int n = 100000;
    for (auto _ : state) {
        {
            auto b = w.batch();
            for (int i = 0; i < n; ++i) w.call(&echo::add, 1);
        }
        benchmark::DoNotOptimize(w.ask(&echo::get_total).get());
    }
    state.SetItemsProcessed(state.iterations() * n);
    w.join();
}
BENCHMARK(call_throughput_batched)->UseRealTime()->Unit(benchmark::kMillisecond);

// Pipelined asks: many in flight, then every answer.
void ask_pipelined(benchmark::State& state) {
    pf::process<echo> w;
    w.start();
    const int n = 10000;
    std::vector<pf::future<int>> futs;
    futs.reserve(n);
    for (auto _ : state) {
        futs.clear();
        {
            auto b = w.batch();
            for (int i = 0; i < n; ++i) futs.push_back(w.ask(&echo::square, i & 1023));
        }
        for (auto& f : futs) benchmark::DoNotOptimize(f.get());
    }
    state.SetItemsProcessed(state.iterations() * n);
    w.join();
}
BENCHMARK(ask_pipelined)->UseRealTime()->Unit(benchmark::kMillisecond);

// The floor: 8 bytes there and back over a socketpair, no framing or codec.
void raw_socketpair_round_trip(benchmark::State& state) {
    auto sp = pf::sys::make_socketpair();
    pid_t pid = pf::sys::fork_call([&] {
        sp.read.reset();
        long v;
        while (pf::sys::read_exact(sp.write.get(), &v, sizeof v)) pf::sys::write_all(sp.write.get(), &v, sizeof v);
    });
    pf::sys::child kid(pid);
    sp.write.reset();
    long v = 0;
    for (auto _ : state) {
        pf::sys::write_all(sp.read.get(), &v, sizeof v);
        pf::sys::read_exact(sp.read.get(), &v, sizeof v);
        ++v;
    }
    sp.read.reset();
    kid.wait();
}
BENCHMARK(raw_socketpair_round_trip)->UseRealTime();

} // namespace

BENCHMARK_MAIN();

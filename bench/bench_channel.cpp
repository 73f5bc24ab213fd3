// Channel throughput (one sender, one receiver in a child) for 1 KiB and 1 MiB messages, and
// ping-pong latency over two channels.
#include <parafork/ipc/channel.hpp>
#include <parafork/sys/process.hpp>

#include <benchmark/benchmark.h>

#include <string>

namespace pf = parafork;

namespace {

void BM_channel_throughput(benchmark::State& state) {
    const std::size_t size = static_cast<std::size_t>(state.range(0));
    const std::size_t ring = static_cast<std::size_t>(state.range(1));
    pf::channel data(ring), ack(4096);
    pf::sys::child peer(pf::sys::fork_call([&] {
        std::string buf;
        for (;;) {
            data.receive_bytes(buf);
            if (buf.size() == 1 && buf[0] == 'q') break;
        }
        ack.send(1);
    }));
    const std::string msg(size, 'x');
    for (auto _ : state) data.send_bytes(msg);
    data.send_bytes("q");
    ack.receive<int>();  // every byte was taken before the clock stops
    peer.wait();
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
    state.SetItemsProcessed(state.iterations());
}
// Arguments: message size, ring size (the default ring is 1 MiB).
BENCHMARK(BM_channel_throughput)
    ->Args({64, 1 << 20})
    ->Args({1024, 1 << 20})
    ->Args({64 * 1024, 1 << 20})
    ->Args({1 << 20, 1 << 20})
    ->Args({1 << 20, 4 << 20})
    ->Args({16 << 20, 1 << 20})
    ->UseRealTime();

void BM_channel_ping_pong(benchmark::State& state) {
    pf::channel ping(4096), pong(4096);
    pf::sys::child peer(pf::sys::fork_call([&] {
        for (;;) {
            int v = ping.receive<int>();
            pong.send(v);
            if (v < 0) break;
        }
    }));
    int i = 0;
    for (auto _ : state) {
        ping.send(i);
        benchmark::DoNotOptimize(pong.receive<int>());
        ++i;
    }
    ping.send(-1);
    pong.receive<int>();
    peer.wait();
    state.SetLabel("round trip");
}
BENCHMARK(BM_channel_ping_pong)->UseRealTime();

} // namespace

BENCHMARK_MAIN();

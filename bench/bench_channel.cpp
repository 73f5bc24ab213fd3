// Channel throughput (one sender, one receiver in a child) for 1 KiB and 1 MiB messages, and
// ping-pong latency over two channels.
#include <parafork/ipc/channel.hpp>
#include <parafork/sys/process.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>

#include <sys/mman.h>
#include <unistd.h>

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

// From a sender's last act to the receiver's channel_closed, while the receiver sleeps: the
// sender closes its end (end of stream), or is killed by SIGKILL (a death noticed by pidfd).
// The sender stamps CLOCK_MONOTONIC into shared memory just before. Median over 100 runs.
void closed_latency(benchmark::State& state, bool kill_sender) {
    auto* stamp = static_cast<std::atomic<std::int64_t>*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    for (auto _ : state) {
        pf::channel ch(4096);
        pf::sys::child peer(pf::sys::fork_call([&] {
            ch.send(1);
            std::this_thread::sleep_for(std::chrono::milliseconds(3));  // the receiver is asleep by now
            stamp->store(std::chrono::steady_clock::now().time_since_epoch().count());
            if (kill_sender) ::kill(::getpid(), SIGKILL);
            ch.close();
            for (;;) ::pause();  // still alive: only the closed end tells the receiver
        }));
        ch.receive<int>();
        try {
            ch.receive<int>();
        } catch (const pf::channel_closed&) {
        }
        auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        state.SetIterationTime(static_cast<double>(now - stamp->load()) / 1e9);
        ::kill(peer.pid(), SIGKILL);
        peer.wait();
    }
    ::munmap(stamp, 4096);
}
void BM_channel_end_of_stream_latency(benchmark::State& state) { closed_latency(state, false); }
void BM_channel_death_notice_latency(benchmark::State& state) { closed_latency(state, true); }
BENCHMARK(BM_channel_end_of_stream_latency)
    ->Iterations(1)->Repetitions(100)->UseManualTime()->Unit(benchmark::kMicrosecond)->ReportAggregatesOnly(true);
BENCHMARK(BM_channel_death_notice_latency)
    ->Iterations(1)->Repetitions(100)->UseManualTime()->Unit(benchmark::kMicrosecond)->ReportAggregatesOnly(true);

} // namespace

BENCHMARK_MAIN();

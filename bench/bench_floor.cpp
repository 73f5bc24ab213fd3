// The in-process floor: the same work as the process benchmarks, done on a plain std::jthread
// pool (a mutex, a condition variable and a queue of tasks). Comparing parafork with these
// figures shows what crossing a process boundary costs. One benchmark forks: the floor under
// any short multi-process run, bare processes that do nothing.
#include <benchmark/benchmark.h>

#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

// The pool a C++ programmer writes first: one queue, one lock, futures for results.
class thread_pool {
public:
    explicit thread_pool(unsigned n) {
        for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this](std::stop_token st) { run(st); });
    }
    ~thread_pool() {
        for (auto& t : threads_) t.request_stop();
        cv_.notify_all();
    }

    template <class F>
    auto submit(F f) -> std::future<decltype(f())> {
        auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
        auto fut = task->get_future();
        {
            std::lock_guard lk(m_);
            q_.emplace_back([task] { (*task)(); });
        }
        cv_.notify_one();
        return fut;
    }

private:
    void run(std::stop_token st) {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock lk(m_);
                cv_.wait(lk, st, [&] { return !q_.empty(); });
                if (q_.empty()) return;  // stop requested
                job = std::move(q_.front());
                q_.pop_front();
            }
            job();
        }
    }
    std::mutex m_;
    std::condition_variable_any cv_;
    std::deque<std::function<void()>> q_;
    std::vector<std::jthread> threads_;  // last: joined before the queue goes away
};

unsigned two() { return 2; }  // the jobs the process benchmarks use

// submit().get() through one worker thread: the floor under every process round trip.
void BM_FloorRoundTrip(benchmark::State& state) {
    thread_pool p(1);
    int x = 0;
    for (auto _ : state) {
        x = p.submit([x] { return x + 1; }).get();
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(BM_FloorRoundTrip)->UseRealTime();

// The same on one CPU (the worker thread inherits the affinity): no cross-CPU wake-up.
void BM_FloorRoundTripOneCpu(benchmark::State& state) {
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
        thread_pool p(1);
        int x = 0;
        for (auto _ : state) {
            x = p.submit([x] { return x + 1; }).get();
            benchmark::DoNotOptimize(x);
        }
    }
    sched_setaffinity(0, sizeof saved, &saved);
}
BENCHMARK(BM_FloorRoundTripOneCpu)->UseRealTime();

[[gnu::noinline]] std::int64_t trivial(std::int64_t x) { return 2 * x + 1; }

// map of a trivial function over N ints on 2 threads, in chunks (4 per thread).
void BM_FloorMapTrivial(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    std::vector<std::int64_t> in(n), out(n);
    for (std::size_t i = 0; i < n; ++i) in[i] = static_cast<std::int64_t>(i);
    thread_pool p(two());
    const std::size_t chunks = 4 * two(), step = (n + chunks - 1) / chunks;
    for (auto _ : state) {
        std::vector<std::future<void>> fs;
        for (std::size_t lo = 0; lo < n; lo += step)
            fs.push_back(p.submit([&, lo] {
                for (std::size_t i = lo; i < std::min(n, lo + step); ++i) out[i] = trivial(in[i]);
            }));
        for (auto& f : fs) f.get();
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_FloorMapTrivial)->Arg(10'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

std::vector<std::string> tiny_requests(std::size_t n) {
    std::vector<std::string> reqs;
    reqs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) reqs.push_back(std::to_string(i));
    return reqs;
}

// proc_pool's tiny-request workload (each request answered with its length) with one task per
// request: what a naive pool costs per message.
void BM_FloorTinyRequestsPerTask(benchmark::State& state) {
    const auto reqs = tiny_requests(static_cast<std::size_t>(state.range(0)));
    thread_pool p(two());
    for (auto _ : state) {
        std::vector<std::future<char>> fs;
        fs.reserve(reqs.size());
        for (const auto& r : reqs) fs.push_back(p.submit([&r] { return static_cast<char>('0' + r.size()); }));
        std::size_t got = 0;
        for (auto& f : fs) got += f.get() != 0;
        if (got != reqs.size()) state.SkipWithError("lost replies");
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * reqs.size()));
}
BENCHMARK(BM_FloorTinyRequestsPerTask)->Arg(100'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same requests in batches of 2048 per task (proc_pool's window): the floor that batching
// reaches in one address space.
void BM_FloorTinyRequestsBatched(benchmark::State& state) {
    const auto reqs = tiny_requests(static_cast<std::size_t>(state.range(0)));
    constexpr std::size_t batch = 2048;
    thread_pool p(two());
    std::vector<char> replies(reqs.size());
    for (auto _ : state) {
        std::vector<std::future<void>> fs;
        for (std::size_t lo = 0; lo < reqs.size(); lo += batch)
            fs.push_back(p.submit([&, lo] {
                for (std::size_t i = lo; i < std::min(reqs.size(), lo + batch); ++i)
                    replies[i] = static_cast<char>('0' + reqs[i].size());
            }));
        for (auto& f : fs) f.get();
        benchmark::DoNotOptimize(replies.data());
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * reqs.size()));
}
BENCHMARK(BM_FloorTinyRequestsBatched)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// A 256 MiB result handed over in one address space is one memcpy.
void BM_FloorMemcpy(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    std::vector<char> src(n, 1), dst(n, 0);
    for (auto _ : state) {
        std::memcpy(dst.data(), src.data(), n);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_FloorMemcpy)->Arg(256 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

// A bounded blocking queue, one lock per item: the thread version of a pipeline edge.
template <class T>
class bounded_queue {
public:
    explicit bounded_queue(std::size_t cap) : cap_(cap) {}
    void push(T v) {
        std::unique_lock lk(m_);
        not_full_.wait(lk, [&] { return q_.size() < cap_; });
        q_.push_back(std::move(v));
        not_empty_.notify_one();
    }
    T pop() {
        std::unique_lock lk(m_);
        not_empty_.wait(lk, [&] { return !q_.empty(); });
        T v = std::move(q_.front());
        q_.pop_front();
        not_full_.notify_one();
        return v;
    }

private:
    std::size_t cap_;
    std::mutex m_;
    std::condition_variable not_full_, not_empty_;
    std::deque<T> q_;
};

// mpyx's topology on threads: Iter -> add1 -> (mul2, mul2 competing) -> collect.
void BM_FloorPipeline3(benchmark::State& state) {
    const auto n = static_cast<std::int64_t>(state.range(0));
    using item = std::optional<std::int64_t>;  // nullopt: end of stream
    for (auto _ : state) {
        bounded_queue<item> a(1024), b(1024), c(1024);
        std::int64_t sum = 0;
        {
            std::jthread src([&] {
                for (std::int64_t i = 0; i < n; ++i) a.push(i);
                a.push(std::nullopt);
            });
            std::jthread add1([&] {
                while (auto v = a.pop()) b.push(*v + 1);
                b.push(std::nullopt);
                b.push(std::nullopt);  // one end marker per mul2 worker
            });
            auto mul2 = [&] {
                while (auto v = b.pop()) c.push(*v * 2);
                c.push(std::nullopt);
            };
            std::jthread m1(mul2), m2(mul2);
            for (int ends = 0; ends < 2;)
                if (auto v = c.pop()) sum += *v;
                else ++ends;
        }
        benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_FloorPipeline3)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// n bare processes forked one after another, each exiting at once, all reaped: what a short
// pipeline of n stage processes cannot go below on this machine. One run per iteration;
// median and p99 over 200, as bench_pipeline's pipeline_10_items.
double p99(const std::vector<double>& v) {
    std::vector<double> s(v);
    std::sort(s.begin(), s.end());
    return s.empty() ? 0 : s[std::min(s.size() - 1, s.size() * 99 / 100)];
}

void BM_FloorForkExitWait(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    std::vector<pid_t> kids(n);
    for (auto _ : state) {
        for (auto& k : kids)
            if ((k = ::fork()) == 0) ::_exit(0);
        for (pid_t k : kids) ::waitpid(k, nullptr, 0);
    }
}
BENCHMARK(BM_FloorForkExitWait)
    ->Arg(3)
    ->Arg(4)
    ->Iterations(1)
    ->Repetitions(200)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->ComputeStatistics("p99", p99)
    ->ReportAggregatesOnly(true);


// 10,000 `true N` started the cheapest way there is, `posix_spawn` + `waitpid`, as many at once
// as there are CPUs, with no output captured and no scheduling: what `parafork run -- true :::
// $(seq 10000)` (the "10,000 tiny jobs" goal) cannot go below on this machine.
void BM_FloorSpawnTrue(benchmark::State& state) {
    const int jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const auto n = state.range(0);
    for (auto _ : state) {
        int running = 0;
        for (std::int64_t i = 0; i < n || running > 0;) {
            if (i < n && running < jobs) {
                std::string arg = std::to_string(++i);
                char* argv[] = {const_cast<char*>("true"), arg.data(), nullptr};
                pid_t pid = 0;
                if (::posix_spawnp(&pid, "true", nullptr, nullptr, argv, ::environ) != 0) {
                    state.SkipWithError("posix_spawnp failed");
                    return;
                }
                ++running;
                continue;
            }
            if (::waitpid(-1, nullptr, 0) > 0) {
                --running;
            } else if (errno != EINTR) {
                state.SkipWithError("waitpid failed");
                return;
            }
        }
    }
    state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_FloorSpawnTrue)->Arg(10'000)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();

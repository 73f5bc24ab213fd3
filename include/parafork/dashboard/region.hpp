#pragma once
// The dashboard's shared counters (see docs/dashboard.md): one fixed-size region of memory
// (a memfd mapped before the server process is forked) that the engines write with relaxed
// atomics and the server only reads. No lock, no system call and no allocation on the write
// side; everything is bounded: so many pools, so many workers per pool, a ring of the last
// errors. Strings are written under a sequence number (odd while being written) and a reader
// that sees it change copies again.
//
// Private to the library and its tests: nothing in the public headers includes this.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace parafork::detail::dash {

inline constexpr std::uint64_t region_magic = 0x70667f6461736831ULL;
inline constexpr std::uint32_t max_pools = 32;      // live and finished calls shown at once
inline constexpr std::uint32_t max_workers = 128;   // per pool; more are counted, not listed
inline constexpr std::uint32_t max_errors = 32;     // the ring of the last errors
inline constexpr std::size_t name_bytes = 64, kind_bytes = 16, type_bytes = 96, message_bytes = 256;

enum class pool_state : std::uint32_t { free = 0, claimed = 1, live = 2, finished = 3 };
// A pipeline's stage processes are `running` until they end: `exited` when they did so cleanly.
enum class worker_state : std::uint32_t { none = 0, starting = 1, idle = 2, busy = 3, dead = 4, running = 5, exited = 6 };
enum class error_kind : std::uint32_t { remote = 0, died = 1, timeout = 2 };

// One worker slot of a pool: its current process (a replacement takes the slot over).
struct worker_slot {
    std::atomic<std::int32_t> pid{0};
    std::atomic<std::uint32_t> state{0};
    std::atomic<std::uint64_t> task{0};      // busy: the item it is on
    std::atomic<std::uint64_t> since_ns{0};  // steady clock: since when in this state / on it
    std::atomic<std::uint64_t> done{0};      // items this process answered
};

struct pool_slot {
    std::atomic<std::uint32_t> state{0};
    std::atomic<std::uint32_t> seq{0};  // odd while name and kind are written
    std::atomic<std::uint64_t> serial{0};
    char name[name_bytes]{};
    char kind[kind_bytes]{};
    std::atomic<std::uint64_t> jobs{0}, total{0}, done{0}, failed{0}, retried{0}, queued{0},
        in_flight{0}, deaths{0}, started_ns{0}, ended_ns{0};
    worker_slot workers[max_workers];
};

struct error_slot {
    std::atomic<std::uint64_t> seq{0};  // odd while written; 0: never written
    std::atomic<std::uint64_t> pool_serial{0}, task{0}, at_ns{0};
    std::atomic<std::int32_t> pid{0}, signal{0}, code{0};
    std::atomic<std::uint32_t> kind{0};
    char type[type_bytes]{};
    char message[message_bytes]{};
};

// A pipeline's graph and counters, beside its call's pool_slot (kind "pipeline", a worker per
// stage process). The graph is written once, under `seq`; each stage process counts the items it
// took and put (one writer each); the pipeline's own queue counters (sent and received per queue,
// bumped per batch by the stages) live in `counters` while it runs, so the server reads depths
// with no extra work on the hot path.
inline constexpr std::uint32_t max_pipes = 8;     // pipelines shown at once
inline constexpr std::uint32_t max_stages = 64;   // processes of one pipeline: a bit each in a mask
inline constexpr std::uint32_t max_queues = 64;
inline constexpr std::size_t pipe_counters_bytes = 4096;

enum class pipe_state : std::uint32_t { free = 0, claimed = 1, live = 2, released = 3 };

struct stage_slot {
    std::atomic<std::uint64_t> in{0}, out{0};  // items taken from queues, put into queues
    char name[name_bytes]{};
};
struct queue_slot {
    std::atomic<std::uint64_t> writers{0}, readers{0};  // bit i: stage i
    std::atomic<std::uint32_t> parent_reads{0};
    std::atomic<std::uint32_t> counter{0};  // its sent/received: the pipeline's edge_stats at this index
    char type[name_bytes]{};
};
struct pipe_slot {
    std::atomic<std::uint32_t> state{0};
    std::atomic<std::uint32_t> seq{0};  // odd while the graph is written
    std::atomic<std::uint64_t> pool_serial{0}, released_ns{0};
    std::atomic<std::uint32_t> stages{0}, queues{0};
    stage_slot stage[max_stages];
    queue_slot queue[max_queues];
    alignas(64) unsigned char counters[pipe_counters_bytes]{};
};

struct region {
    std::atomic<std::uint64_t> magic{0};
    std::atomic<std::uint64_t> next_serial{0};
    std::atomic<std::uint64_t> errors_written{0};
    std::atomic<std::int32_t> owner_pid{0};
    pool_slot pools[max_pools];
    error_slot errors[max_errors];
    pipe_slot pipes[max_pipes];
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// Steady-clock nanoseconds (CLOCK_MONOTONIC: the same clock in every process of the machine).
std::uint64_t now_ns() noexcept;

// ---- the writer's side (the engines, in the process that forks workers) ----

// A free slot, or the finished call that ended first; null when all are live. The name and
// kind are cut to fit.
pool_slot* open_pool(region& r, std::string_view name, std::string_view kind, std::uint64_t jobs,
                     std::uint64_t total) noexcept;
void close_pool(pool_slot& p) noexcept;  // finished: kept on show until the slot is needed

inline void relaxed_set(std::atomic<std::uint64_t>& a, std::uint64_t v) noexcept {
    a.store(v, std::memory_order_relaxed);
}
inline void worker_started(pool_slot& p, std::size_t slot, int pid) noexcept {
    if (slot >= max_workers) return;
    auto& w = p.workers[slot];
    w.pid.store(pid, std::memory_order_relaxed);
    w.done.store(0, std::memory_order_relaxed);
    w.since_ns.store(now_ns(), std::memory_order_relaxed);
    w.state.store(static_cast<std::uint32_t>(worker_state::starting), std::memory_order_relaxed);
}
// `since_ns` is passed in: the engine has the time already.
inline void worker_busy(pool_slot& p, std::size_t slot, std::uint64_t task, std::uint64_t since) noexcept {
    if (slot >= max_workers) return;
    auto& w = p.workers[slot];
    w.task.store(task, std::memory_order_relaxed);
    w.since_ns.store(since, std::memory_order_relaxed);
    w.state.store(static_cast<std::uint32_t>(worker_state::busy), std::memory_order_relaxed);
}
inline void worker_idle(pool_slot& p, std::size_t slot, std::uint64_t since) noexcept {
    if (slot >= max_workers) return;
    auto& w = p.workers[slot];
    w.since_ns.store(since, std::memory_order_relaxed);
    w.state.store(static_cast<std::uint32_t>(worker_state::idle), std::memory_order_relaxed);
}
inline void worker_answered(pool_slot& p, std::size_t slot, std::uint64_t n) noexcept {
    if (slot >= max_workers) return;
    auto& d = p.workers[slot].done;
    d.store(d.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // one writer
}
inline void worker_gone(pool_slot& p, std::size_t slot) noexcept {
    if (slot >= max_workers) return;
    auto& w = p.workers[slot];
    w.since_ns.store(now_ns(), std::memory_order_relaxed);
    w.state.store(static_cast<std::uint32_t>(worker_state::dead), std::memory_order_relaxed);
}

// A pipeline's slot for the call `p`: a free one, or the released one that was released first;
// null when all are in use. The caller writes the graph between begin_graph and end_graph.
pipe_slot* open_pipe(region& r, const pool_slot& p) noexcept;
void begin_graph(pipe_slot& s) noexcept;
void set_stage(pipe_slot& s, std::size_t i, std::string_view name) noexcept;
void set_queue(pipe_slot& s, std::size_t q, std::uint64_t writers, std::uint64_t readers, bool parent_reads,
               std::uint32_t counter, std::string_view type) noexcept;
void end_graph(pipe_slot& s, std::size_t stages, std::size_t queues) noexcept;
// The pipeline is over and its counters are no longer written: the slot may be reused.
void release_pipe(pipe_slot& s) noexcept;
// One writer (the stage's process): a plain relaxed add.
inline void tally(std::atomic<std::uint64_t>& a, std::uint64_t n) noexcept {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct error_note {
    error_kind kind = error_kind::remote;
    std::string_view type, message;
    int pid = 0, signal = 0, code = 0;
    std::uint64_t task = 0;
};
// Into the ring (the oldest entry gives way); only on failures, never on the hot path.
void note_error(region& r, const pool_slot* p, const error_note& e) noexcept;

// ---- the reader's side (the server process) ----

struct worker_view {
    std::size_t slot = 0;
    int pid = 0;
    worker_state state = worker_state::none;
    std::uint64_t task = 0, since_ns = 0, done = 0;
};
struct stage_view {
    std::string name;
    std::uint64_t in = 0, out = 0;
};
struct queue_view {
    std::uint64_t writers = 0, readers = 0;  // bit i: stage i
    bool parent_reads = false;
    std::uint64_t sent = 0, received = 0;
    std::string type;
};
struct pool_view {
    std::uint64_t serial = 0;
    pool_state state = pool_state::free;
    std::string name, kind;
    std::uint64_t jobs = 0, total = 0, done = 0, failed = 0, retried = 0, queued = 0,
                  in_flight = 0, deaths = 0, started_ns = 0, ended_ns = 0;
    std::vector<worker_view> workers;
    bool has_graph = false;  // a pipeline with its graph on show
    std::vector<stage_view> stages;
    std::vector<queue_view> queues;
};
struct error_view {
    std::uint64_t seq = 0, pool_serial = 0, task = 0, at_ns = 0;
    error_kind kind = error_kind::remote;
    int pid = 0, signal = 0, code = 0;
    std::string type, message;
};
struct snapshot {
    std::uint64_t at_ns = 0;
    std::vector<pool_view> pools;    // live and finished, oldest first
    std::vector<error_view> errors;  // newest first
    std::uint64_t errors_total = 0;
};
snapshot read(const region& r);
// A stage's throughput count: the items it took, or for a source (it reads no queue) put.
std::uint64_t stage_items(const pool_view& p, std::size_t stage);

// What the server adds from /proc and its own sampling: per pid CPU seconds and RSS bytes; the
// rate of answers per pool over the last seconds, and the history behind the chart.
struct proc_stats {
    double cpu_seconds = 0;
    std::uint64_t rss_bytes = 0;
    bool known = false;
};
proc_stats read_proc_stats(int pid);

struct extras {
    std::vector<std::pair<int, proc_stats>> procs;           // by pid
    std::vector<std::pair<std::uint64_t, double>> rates;     // per pool serial: answers/s
    // per pipeline serial: each stage's items/s (taken, or put for a source), by stage index
    std::vector<std::pair<std::uint64_t, std::vector<double>>> stage_rates;
    std::vector<std::pair<double, double>> history;          // (seconds ago <= 0, answers/s)
};

// The /api/state document and the /metrics text (Prometheus exposition format).
std::string state_json(const snapshot& s, const extras& x);
std::string metrics_text(const snapshot& s, const extras& x);

} // namespace parafork::detail::dash

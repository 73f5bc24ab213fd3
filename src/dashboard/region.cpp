// The dashboard region: its writers (the engines) and its reader (the server process).
#include <parafork/dashboard/region.hpp>
#include <parafork/exec/pipeline/detail/edge.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cerrno>
#include <fcntl.h>
#include <sstream>
#include <unistd.h>

namespace parafork::detail::dash {

std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count());
}

namespace {

constexpr auto as_u32(pool_state s) { return static_cast<std::uint32_t>(s); }

// Writes a string into a fixed field, cut to fit (at a UTF-8 boundary) and zero-terminated.
void put(char* dst, std::size_t cap, std::string_view s) noexcept {
    std::size_t n = std::min(s.size(), cap - 1);
    while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    if (n > 0) std::memcpy(dst, s.data(), n);  // an empty view's data() may be null
    std::memset(dst + n, 0, cap - n);
}

std::string get(const char* src, std::size_t cap) { return std::string(src, strnlen(src, cap)); }

// Takes slot `p` from state `from` (another thread may race for it).
bool claim(pool_slot& p, pool_state from) noexcept {
    std::uint32_t expect = as_u32(from);
    return p.state.compare_exchange_strong(expect, as_u32(pool_state::claimed),
                                           std::memory_order_acq_rel);
}

} // namespace

pool_slot* open_pool(region& r, std::string_view name, std::string_view kind, std::uint64_t jobs,
                     std::uint64_t total) noexcept {
    pool_slot* p = nullptr;
    for (auto& s : r.pools)
        if (s.state.load(std::memory_order_relaxed) == as_u32(pool_state::free) &&
            claim(s, pool_state::free)) {
            p = &s;
            break;
        }
    while (!p) {  // none free: the finished call that ended first gives way
        pool_slot* oldest = nullptr;
        for (auto& s : r.pools)
            if (s.state.load(std::memory_order_relaxed) == as_u32(pool_state::finished) &&
                (!oldest || s.ended_ns.load(std::memory_order_relaxed) <
                                oldest->ended_ns.load(std::memory_order_relaxed)))
                oldest = &s;
        if (!oldest) return nullptr;
        if (claim(*oldest, pool_state::finished)) p = oldest;
    }
    p->seq.fetch_add(1, std::memory_order_relaxed);  // odd: a reader copying now retries
    std::atomic_thread_fence(std::memory_order_release);
    put(p->name, name_bytes, name);
    put(p->kind, kind_bytes, kind);
    p->serial.store(r.next_serial.fetch_add(1, std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    for (auto* a : {&p->done, &p->failed, &p->retried, &p->queued, &p->in_flight, &p->deaths,
                    &p->ended_ns})
        relaxed_set(*a, 0);
    relaxed_set(p->jobs, jobs);
    relaxed_set(p->total, total);
    relaxed_set(p->started_ns, now_ns());
    for (auto& w : p->workers) {
        w.pid.store(0, std::memory_order_relaxed);
        w.state.store(0, std::memory_order_relaxed);
        w.done.store(0, std::memory_order_relaxed);
    }
    p->seq.fetch_add(1, std::memory_order_release);  // even again
    p->state.store(as_u32(pool_state::live), std::memory_order_release);
    return p;
}

void close_pool(pool_slot& p) noexcept {
    relaxed_set(p.ended_ns, now_ns());
    for (auto& w : p.workers)
        if (auto st = w.state.load(std::memory_order_relaxed);
            st != 0 && st != static_cast<std::uint32_t>(worker_state::exited))
            w.state.store(static_cast<std::uint32_t>(worker_state::dead), std::memory_order_relaxed);
    p.state.store(as_u32(pool_state::finished), std::memory_order_release);
}

pipe_slot* open_pipe(region& r, const pool_slot& p) noexcept {
    auto take = [](pipe_slot& s, pipe_state from) {
        std::uint32_t expect = static_cast<std::uint32_t>(from);
        return s.state.compare_exchange_strong(expect, static_cast<std::uint32_t>(pipe_state::claimed),
                                               std::memory_order_acq_rel);
    };
    pipe_slot* got = nullptr;
    for (auto& s : r.pipes)
        if (take(s, pipe_state::free)) {
            got = &s;
            break;
        }
    while (!got) {  // none free: the one released first gives way
        pipe_slot* oldest = nullptr;
        for (auto& s : r.pipes)
            if (s.state.load(std::memory_order_relaxed) == static_cast<std::uint32_t>(pipe_state::released) &&
                (!oldest || s.released_ns.load(std::memory_order_relaxed) <
                                oldest->released_ns.load(std::memory_order_relaxed)))
                oldest = &s;
        if (!oldest) return nullptr;
        if (take(*oldest, pipe_state::released)) got = oldest;
    }
    got->pool_serial.store(p.serial.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return got;
}

void begin_graph(pipe_slot& s) noexcept {
    s.seq.fetch_add(1, std::memory_order_relaxed);  // odd: a reader copying now retries
    std::atomic_thread_fence(std::memory_order_release);
    for (auto& st : s.stage) {
        relaxed_set(st.in, 0);
        relaxed_set(st.out, 0);
    }
}

void set_stage(pipe_slot& s, std::size_t i, std::string_view name) noexcept {
    if (i < max_stages) put(s.stage[i].name, name_bytes, name);
}

void set_queue(pipe_slot& s, std::size_t q, std::uint64_t writers, std::uint64_t readers, bool parent_reads,
               std::uint32_t counter, std::string_view type) noexcept {
    if (q >= max_queues) return;
    auto& x = s.queue[q];
    relaxed_set(x.writers, writers);
    relaxed_set(x.readers, readers);
    x.parent_reads.store(parent_reads ? 1 : 0, std::memory_order_relaxed);
    x.counter.store(counter, std::memory_order_relaxed);
    put(x.type, name_bytes, type);
}

void end_graph(pipe_slot& s, std::size_t stages, std::size_t queues) noexcept {
    s.stages.store(static_cast<std::uint32_t>(std::min<std::size_t>(stages, max_stages)), std::memory_order_relaxed);
    s.queues.store(static_cast<std::uint32_t>(std::min<std::size_t>(queues, max_queues)), std::memory_order_relaxed);
    s.seq.fetch_add(1, std::memory_order_release);  // even again
    s.state.store(static_cast<std::uint32_t>(pipe_state::live), std::memory_order_release);
}

void release_pipe(pipe_slot& s) noexcept {
    relaxed_set(s.released_ns, now_ns());
    s.state.store(static_cast<std::uint32_t>(pipe_state::released), std::memory_order_release);
}

void note_error(region& r, const pool_slot* p, const error_note& e) noexcept {
    std::uint64_t n = r.errors_written.fetch_add(1, std::memory_order_relaxed);
    auto& s = r.errors[n % max_errors];
    std::uint64_t seq = s.seq.load(std::memory_order_relaxed);
    s.seq.store(seq | 1, std::memory_order_relaxed);  // odd while written
    std::atomic_thread_fence(std::memory_order_release);
    s.pool_serial.store(p ? p->serial.load(std::memory_order_relaxed) : 0, std::memory_order_relaxed);
    s.task.store(e.task, std::memory_order_relaxed);
    s.at_ns.store(now_ns(), std::memory_order_relaxed);
    s.pid.store(e.pid, std::memory_order_relaxed);
    s.signal.store(e.signal, std::memory_order_relaxed);
    s.code.store(e.code, std::memory_order_relaxed);
    s.kind.store(static_cast<std::uint32_t>(e.kind), std::memory_order_relaxed);
    put(s.type, type_bytes, e.type);
    put(s.message, message_bytes, e.message);
    s.seq.store((seq | 1) + 1, std::memory_order_release);
}

snapshot read(const region& r) {
    snapshot out;
    out.at_ns = now_ns();
    for (const auto& p : r.pools) {
        pool_view v;
        v.state = static_cast<pool_state>(p.state.load(std::memory_order_acquire));
        if (v.state != pool_state::live && v.state != pool_state::finished) continue;
        // The strings under the sequence number; a slot being reopened is skipped this time.
        bool ok = false;
        for (int tries = 0; tries < 8 && !ok; ++tries) {
            std::uint32_t s1 = p.seq.load(std::memory_order_acquire);
            if (s1 & 1) continue;
            v.name = get(p.name, name_bytes);
            v.kind = get(p.kind, kind_bytes);
            v.serial = p.serial.load(std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_acquire);
            ok = p.seq.load(std::memory_order_relaxed) == s1;
        }
        if (!ok) continue;
        auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
        v.jobs = ld(p.jobs);
        v.total = ld(p.total);
        v.done = ld(p.done);
        v.failed = ld(p.failed);
        v.retried = ld(p.retried);
        v.queued = ld(p.queued);
        v.in_flight = ld(p.in_flight);
        v.deaths = ld(p.deaths);
        v.started_ns = ld(p.started_ns);
        v.ended_ns = ld(p.ended_ns);
        for (std::size_t k = 0; k < max_workers; ++k) {
            const auto& w = p.workers[k];
            auto st = static_cast<worker_state>(w.state.load(std::memory_order_relaxed));
            if (st == worker_state::none) continue;
            v.workers.push_back({k, w.pid.load(std::memory_order_relaxed), st,
                                 w.task.load(std::memory_order_relaxed),
                                 w.since_ns.load(std::memory_order_relaxed),
                                 w.done.load(std::memory_order_relaxed)});
        }
        out.pools.push_back(std::move(v));
    }
    for (const auto& ps : r.pipes) {
        auto st = static_cast<pipe_state>(ps.state.load(std::memory_order_acquire));
        if (st != pipe_state::live && st != pipe_state::released) continue;
        const std::uint64_t serial = ps.pool_serial.load(std::memory_order_relaxed);
        pool_view* v = nullptr;
        for (auto& p : out.pools)
            if (p.serial == serial && p.kind == "pipeline") v = &p;
        if (!v) continue;
        bool ok = false;
        std::vector<stage_view> stages;
        std::vector<queue_view> queues;
        for (int tries = 0; tries < 8 && !ok; ++tries) {
            std::uint32_t s1 = ps.seq.load(std::memory_order_acquire);
            if (s1 & 1) continue;
            stages.assign(std::min<std::uint32_t>(ps.stages.load(std::memory_order_relaxed), max_stages), {});
            queues.assign(std::min<std::uint32_t>(ps.queues.load(std::memory_order_relaxed), max_queues), {});
            for (std::size_t i = 0; i < stages.size(); ++i) stages[i].name = get(ps.stage[i].name, name_bytes);
            for (std::size_t q = 0; q < queues.size(); ++q) {
                const auto& x = ps.queue[q];
                queues[q].writers = x.writers.load(std::memory_order_relaxed);
                queues[q].readers = x.readers.load(std::memory_order_relaxed);
                queues[q].parent_reads = x.parent_reads.load(std::memory_order_relaxed) != 0;
                queues[q].type = get(x.type, name_bytes);
                // The pipeline's own counters, in place; an index that could not be one reads 0.
                std::uint32_t c = x.counter.load(std::memory_order_relaxed);
                if ((static_cast<std::size_t>(c) + 1) * sizeof(edge_stats) <= pipe_counters_bytes) {
                    const auto* es = reinterpret_cast<const edge_stats*>(ps.counters) + c;
                    queues[q].sent = es->sent.load(std::memory_order_relaxed);
                    queues[q].received = es->received.load(std::memory_order_relaxed);
                }
            }
            std::atomic_thread_fence(std::memory_order_acquire);
            ok = ps.seq.load(std::memory_order_relaxed) == s1 &&
                 ps.pool_serial.load(std::memory_order_relaxed) == serial;
        }
        if (!ok) continue;
        for (std::size_t i = 0; i < stages.size(); ++i) {
            stages[i].in = ps.stage[i].in.load(std::memory_order_relaxed);
            stages[i].out = ps.stage[i].out.load(std::memory_order_relaxed);
        }
        // What left the graph: what its sinks took and what the program read of its output.
        std::uint64_t done = 0, queued = 0;
        std::uint64_t writes = 0;
        for (const auto& q : queues) writes |= q.writers;
        for (std::size_t i = 0; i < stages.size(); ++i)
            if (!(writes >> i & 1)) done += stages[i].in;
        for (const auto& q : queues) {
            if (q.parent_reads) done += q.received;
            queued += q.sent > q.received ? q.sent - q.received : 0;
        }
        v->done = done;
        v->queued = queued;
        v->has_graph = true;
        v->stages = std::move(stages);
        v->queues = std::move(queues);
    }
    std::sort(out.pools.begin(), out.pools.end(),
              [](const pool_view& a, const pool_view& b) { return a.serial < b.serial; });
    out.errors_total = r.errors_written.load(std::memory_order_acquire);
    std::uint64_t n = std::min<std::uint64_t>(out.errors_total, max_errors);
    for (std::uint64_t k = 0; k < n; ++k) {
        const auto& s = r.errors[(out.errors_total - 1 - k) % max_errors];
        error_view e;
        bool ok = false;
        for (int tries = 0; tries < 8 && !ok; ++tries) {
            std::uint64_t s1 = s.seq.load(std::memory_order_acquire);
            if (s1 == 0 || (s1 & 1)) continue;
            e.seq = s1;
            e.pool_serial = s.pool_serial.load(std::memory_order_relaxed);
            e.task = s.task.load(std::memory_order_relaxed);
            e.at_ns = s.at_ns.load(std::memory_order_relaxed);
            e.pid = s.pid.load(std::memory_order_relaxed);
            e.signal = s.signal.load(std::memory_order_relaxed);
            e.code = s.code.load(std::memory_order_relaxed);
            e.kind = static_cast<error_kind>(s.kind.load(std::memory_order_relaxed));
            e.type = get(s.type, type_bytes);
            e.message = get(s.message, message_bytes);
            std::atomic_thread_fence(std::memory_order_acquire);
            ok = s.seq.load(std::memory_order_relaxed) == s1;
        }
        if (ok) out.errors.push_back(std::move(e));
    }
    return out;
}

std::uint64_t stage_items(const pool_view& p, std::size_t stage) {
    if (stage >= p.stages.size()) return 0;
    for (const auto& q : p.queues)
        if (q.readers >> stage & 1) return p.stages[stage].in;
    return p.stages[stage].out;
}

proc_stats read_proc_stats(int pid) {
    proc_stats st;
    // Read with read(2), not a stream: a worker that exits between the listing and the read
    // makes read fail with ESRCH, which is "not known", never an error of the page.
    const std::string path = "/proc/" + std::to_string(pid) + "/stat";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st;
    char buf[1024];
    ssize_t n;
    do n = ::read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n <= 0) return st;
    const std::string text(buf, static_cast<std::size_t>(n));
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    auto close = text.rfind(')');
    if (close == std::string::npos) return st;
    std::istringstream in(text.substr(close + 2));
    std::vector<std::string> fields;
    for (std::string s; in >> s;) fields.push_back(s);
    // Fields 3.. of proc(5): state is [0]; utime 14 -> [11], stime 15 -> [12], rss 24 -> [21].
    if (fields.size() < 22) return st;
    try {
        const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
        st.cpu_seconds = static_cast<double>(std::stoull(fields[11]) + std::stoull(fields[12])) / tick;
        st.rss_bytes = std::stoull(fields[21]) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
        st.known = true;
    } catch (const std::exception&) {
    }
    return st;
}

} // namespace parafork::detail::dash

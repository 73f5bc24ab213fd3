// The parent's side of the engine: forking workers, feeding them, reading their answers,
// noticing deaths and timeouts, and stopping everything on Ctrl-C.
#include "engine.hpp"
#include "engine_kid.hpp"
#include "../../dashboard/hub.hpp"

#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/frames.hpp>
#include <parafork/wire/large.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <optional>
#include <poll.h>
#include <sched.h>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <sys/mman.h>
#include <unistd.h>

namespace parafork::detail {

// One page shared with a worker: it stores 1 + the item it starts, so after its death the
// parent knows which item it was running even when the answers before it were still unsent;
// and, on a cache line of its own, the parent's verdict on a value the worker lent.
struct shared_word {
    static constexpr std::size_t bytes = 4096;
    sys::mapping page{-1, bytes};  // anonymous, shared with the worker forked after it
    std::uint64_t* p = static_cast<std::uint64_t*>(page.data());
    std::atomic<std::uint32_t>* verdict =
        new (page.bytes() + 64) std::atomic<std::uint32_t>(verdict_pending);
    shared_word() = default;
    void answer(std::uint32_t v) noexcept {
        verdict->store(v, std::memory_order_release);
        sys::futex_wake(verdict);
    }
    shared_word(const shared_word&) = delete;
    shared_word& operator=(const shared_word&) = delete;
    std::uint64_t load() const noexcept { return __atomic_load_n(p, __ATOMIC_RELAXED); }
};

struct worker {
    unsigned slot = 0;
    std::size_t id = 0;  // launch number: tells a worker from its successor in the same slot
    shared_word running;
    supervisor::id kid = 0;  // its entry in the engine's supervisor
    pid_t pid = -1;
    sys::private_fd task_w, result_r, sock;
    // Our own copy of the job pipe's read end: with a reader always there, writing to a worker
    // that died is never SIGPIPE (no signal-mask juggling per write).
    sys::private_fd task_keep;
    // EOF on the results pipe: nothing more to read. Not a death (a grandchild may hold the
    // pipe long after, or the worker may still be exiting): the supervisor's pidfd says that.
    bool eof = false;
    frames::frame_reader reader{frames::len_prefix, 256 * 1024};
    std::string out;
    std::size_t out_off = 0;
    std::deque<job> flight;            // jobs sent, in the order the worker runs them
    std::uint32_t front_done = 0;      // items of flight.front() already answered
    engine::clock::time_point front_since{};
    std::size_t completed = 0;         // items answered over the worker's life
    bool ready = false;                // worker_init is done: the task_timeout clock may run
    bool retiring = false;             // max_tasks_per_worker reached: no new jobs
    std::vector<sys::unique_fd> inbox;  // descriptors for the value of item inbox_item
    std::uint64_t inbox_item = 0;

    std::size_t unanswered() const noexcept {
        std::size_t n = 0;
        for (auto& j : flight) n += j.count;
        return n - front_done;
    }
};

namespace {

// Bigger pipes mean fewer wake-ups per MiB; the default 64 KiB is the floor if this fails.
void widen_pipe(int fd) { (void)sys::set_pipe_size(fd, 1 << 20); }

job slice(const job& j, std::uint32_t from, std::uint32_t to) {
    job s;
    s.kind = j.kind;
    s.first = j.first + from;
    s.count = to - from;
    s.tries = j.tries;
    s.unstarted = j.unstarted;
    s.prefix = j.prefix;
    if (j.kind != job_kind::range) {
        std::size_t begin = j.offsets[from];
        std::size_t end = to < j.count ? j.offsets[to] : j.body.size();
        s.body.reserve(j.prefix + (end - begin));
        s.body.append(j.body, 0, j.prefix);
        s.body.append(j.body, begin, end - begin);
        s.offsets.reserve(s.count);
        for (std::uint32_t k = from; k < to; ++k)
            s.offsets.push_back(static_cast<std::uint32_t>(j.offsets[k] - begin + j.prefix));
    }
    return s;
}

} // namespace

bool copy_lent(const lent_ref& r, char* dst, std::size_t elem,
               void (*size_to)(void* ctx, std::size_t elems), void* ctx) {
    const auto bytes = static_cast<std::size_t>(r.v.bytes);
    const auto count = static_cast<std::size_t>(r.v.count);
    // One byte from the far end first: a range that is not there, or a worker we may not read,
    // costs nothing rather than a huge zero-fill.
    char last;
    if (bytes && !sys::read_process_memory(r.pid, r.v.address + bytes - 1, &last, 1)) return false;
    constexpr std::size_t split_at = std::size_t{32} << 20, part_bytes = std::size_t{8} << 20;
    cpu_set_t cpus;
    if (bytes < split_at || ::sched_getaffinity(0, sizeof cpus, &cpus) != 0 || CPU_COUNT(&cpus) < 2) {
        size_to(ctx, count);
        return sys::read_process_memory(r.pid, r.v.address, dst, bytes);
    }
    // This thread sizes part after part; a helper copies each part once it is sized, and this
    // thread joins in the copying when it is done sizing. Both are bound by the kernel's page
    // handling (faults, zeroing, pinning), not by memory bandwidth.
    const std::size_t part = std::max<std::size_t>(1, part_bytes / elem) * elem;
    const std::size_t parts = (bytes + part - 1) / part;
    std::atomic<std::uint32_t> sized{0};
    std::atomic<std::size_t> next{0};
    std::atomic<bool> ok{true};
    auto copy = [&](bool behind) noexcept {
        for (std::size_t k; (k = next.fetch_add(1)) < parts;) {
            if (behind)
                for (std::uint32_t s; (s = sized.load(std::memory_order_acquire)) <= k;) sized.wait(s);
            std::size_t at = k * part, len = std::min(part, bytes - at);
            if (ok.load(std::memory_order_relaxed) &&
                !sys::read_process_memory(r.pid, r.v.address + at, dst + at, len))
                ok.store(false, std::memory_order_relaxed);
        }
    };
    std::optional<std::thread> helper;
    try {
        helper.emplace(copy, true);
    } catch (const std::system_error&) {
        // No thread to be had: this one does everything, in order.
    }
    for (std::size_t k = 0; k < parts; ++k) {
        size_to(ctx, std::min((k + 1) * part, bytes) / elem);
        sized.store(static_cast<std::uint32_t>(k + 1), std::memory_order_release);
        sized.notify_one();
    }
    copy(false);
    if (helper) helper->join();
    return ok.load();
}

void prepare_bulk_destination(void* p, std::size_t bytes) noexcept {
    if (bytes < (std::size_t{4} << 20)) return;  // two huge pages at least
    sys::advise_huge_pages(p, bytes);
}

std::exception_ptr make_failure(const failure_info& f, std::size_t task) {
    switch (f.what) {
        case failure_info::kind::remote:
            return std::make_exception_ptr(remote_error(f.type_name, f.message, f.pid, task));
        case failure_info::kind::died:
            return std::make_exception_ptr(worker_died(f.pid, f.signal, f.code, task));
        case failure_info::kind::timeout:
            return std::make_exception_ptr(timeout_error(
                "parafork: task " + std::to_string(task) + " ran past task_timeout; worker " +
                std::to_string(f.pid) + " was killed", f.pid, task));
    }
    return {};
}

engine::engine(const options& o, job_runner runner, void* ctx, std::uint64_t total_items)
    : opts_(o), sup_(stop_policy{SIGTERM, o.grace}), runner_(runner), ctx_(ctx),
      jobs_(resolve_jobs(o.jobs)), total_(total_items) {
    if (opts_.zygote)
        throw std::invalid_argument("parafork: options::zygote is honoured by proc_pool only; "
                                    "pool, forked and map fork their workers themselves");
    progress_tty_ = opts_.progress && ::isatty(2);
    started_ = last_draw_ = clock::now();
    workers_.resize(jobs_);
    // Before the workers: a server forked now holds none of their descriptors.
    dash_ = dash::attach(opts_, runner_ ? "map" : "pool", jobs_, total_);
    try {
        for (std::size_t k = 0; k < jobs_; ++k) spawn(k);
    } catch (...) {
        terminate();
        throw;
    }
}

engine::~engine() { terminate(); }

executor_counters engine::counters() const noexcept {
    executor_counters c;
    c.answered = done_;
    c.failed = failed_;
    c.retried = retried_;
    c.timed = timed_;
    c.busy_ns = busy_ns_;
    c.queued = queue_.size();
    c.in_flight = in_flight();
    for (auto& w : workers_) c.workers += w ? 1 : 0;
    return c;
}

std::unique_ptr<executor> make_local_executor(const options& o, job_runner runner, void* ctx,
                                              std::uint64_t total_items) {
    return std::make_unique<engine>(o, runner, ctx, total_items);
}

namespace {
std::uint64_t ns_of(engine::clock::time_point t) noexcept {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}
} // namespace

void engine::show(const worker& w) noexcept {
    if (!dash_) return;
    if (w.flight.empty()) dash::worker_idle(*dash_, w.slot, ns_of(w.front_since));
    else dash::worker_busy(*dash_, w.slot, w.flight.front().first + w.front_done, ns_of(w.front_since));
}

void engine::publish() noexcept {
    if (!dash_) return;
    dash::relaxed_set(dash_->total, total_);
    dash::relaxed_set(dash_->done, done_);
    dash::relaxed_set(dash_->failed, failed_);
    dash::relaxed_set(dash_->retried, retried_);
    dash::relaxed_set(dash_->queued, queue_.size());
    dash::relaxed_set(dash_->in_flight, in_flight());
}

void engine::note_failure(std::uint64_t item, const failure_info& why) noexcept try {
    if (!dash_) return;
    dash::error_note e;
    e.kind = why.what == failure_info::kind::remote ? dash::error_kind::remote
             : why.what == failure_info::kind::died ? dash::error_kind::died
                                                    : dash::error_kind::timeout;
    e.type = why.what == failure_info::kind::remote ? std::string_view(why.type_name)
             : why.what == failure_info::kind::died ? std::string_view("parafork::worker_died")
                                                    : std::string_view("parafork::timeout_error");
    std::string said;  // a death or a timeout has no message of its own: say what happened
    if (why.what == failure_info::kind::died)
        said = "worker " + std::to_string(why.pid) + ": " + sys::exit_status{why.code, why.signal}.describe();
    else if (why.what == failure_info::kind::timeout)
        said = "ran past task_timeout; worker " + std::to_string(why.pid) + " was killed";
    e.message = why.what == failure_info::kind::remote ? std::string_view(why.message) : said;
    e.pid = why.pid;
    e.signal = why.signal;
    e.code = why.code;
    e.task = item;
    dash::note(*dash_, e);
    publish();
} catch (...) {
    // Shown or not (out of memory for its message), the failure reaches the caller.
}

std::size_t engine::in_flight() const noexcept {
    std::size_t n = 0;
    for (auto& w : workers_)
        if (w) n += w->flight.size();
    return n;
}

void engine::spawn(std::size_t slot) {
    auto tasks = sys::make_pipe();
    auto results = sys::make_pipe();
    auto sp = sys::make_socketpair();
    widen_pipe(results.write.get());
    widen_pipe(tasks.write.get());
    auto w = std::make_unique<worker>();
    w->slot = static_cast<unsigned>(slot);
    w->id = launches_;
    // Registered before the fork: this worker and every later child close them at once.
    w->task_w = sys::private_fd(std::move(tasks.write));
    w->result_r = sys::private_fd(std::move(results.read));
    w->sock = sys::private_fd(std::move(sp.read));
    sys::child_options co;
    co.title = "parafork:" + opts_.name + "#" + std::to_string(slot);
    kid_config c{tasks.read.get(), results.write.get(), sp.write.get(), runner_, ctx_, &opts_,
                 w->running.p, w->running.verdict};
    w->kid = sup_.fork([&c] { kid_main(c); }, co);
    w->pid = sup_.pid(w->kid);
    if (dash_) dash::worker_started(*dash_, slot, w->pid);
    // Children forked later (other workers, forked's kids) have no use for this worker's page.
    sys::dont_fork(w->running.p, shared_word::bytes);
    w->task_keep = sys::private_fd(std::move(tasks.read));
    ++launches_;
    sys::set_nonblocking(w->task_w.get());
    sys::set_nonblocking(w->result_r.get());
    workers_[slot] = std::move(w);
}

std::uint64_t engine::drop_queued(std::uint64_t lo, std::uint64_t hi) {
    std::uint64_t dropped = 0;
    std::erase_if(queue_, [&](const job& j) {
        bool in = j.first >= lo && j.first < hi;
        if (in) dropped += j.count;
        return in;
    });
    return dropped;
}

void engine::respawn_missing() {
    if (stopped_ || closing_ || queue_.empty()) return;
    // A slot whose replacement could not be forked: try again (there is work for it), or let
    // the caller see why.
    for (std::size_t k = 0; k < workers_.size(); ++k)
        if (!workers_[k]) spawn(k);
}

void engine::rethrow_fatal() {
    if (!fatal_) return;
    if (!stopped_) terminate();
    std::rethrow_exception(fatal_);
}

void engine::dispatch() {
    if (stopped_ || closing_) return;
    const std::size_t max = opts_.max_tasks_per_worker;
    // Idle workers first, then a second job each so no worker waits for its next one.
    for (std::size_t depth = 0; depth < 2 && !queue_.empty(); ++depth)
        for (auto& w : workers_) {
            if (queue_.empty()) break;
            if (!w || w->retiring || !w->task_w || w->flight.size() != depth) continue;
            job j = std::move(queue_.front());
            queue_.pop_front();
            if (max) {
                // A worker runs at most `max` items: a job bigger than what it has left is cut,
                // the rest goes back to the queue's front for the next worker.
                std::size_t owed = w->completed + w->unanswered();
                if (owed >= max) {
                    queue_.push_front(std::move(j));
                    continue;
                }
                if (j.count > max - owed) {
                    auto keep = static_cast<std::uint32_t>(max - owed);
                    queue_.push_front(slice(j, keep, j.count));
                    j = slice(j, 0, keep);
                }
            }
            send(*w, std::move(j));
        }
}

void engine::send(worker& w, job&& j) {
    if (w.flight.empty()) {
        w.front_since = clock::now();
        w.front_done = 0;
    }
    msg_header h{static_cast<std::uint8_t>(j.kind), 0, 0, j.count, j.first};
    std::string_view body = j.body;
    if (body.size() > wire::default_large_threshold) {
        wire::send_large(w.sock.get(), body);
        h.flags = flag_large;
        body = {};
    }
    std::uint64_t len = sizeof h + body.size();
    if (w.out_off == w.out.size()) {
        w.out.clear();
        w.out_off = 0;
    }
    w.out.append(reinterpret_cast<const char*>(&len), sizeof len);
    w.out.append(reinterpret_cast<const char*>(&h), sizeof h);
    w.out.append(body);
    w.flight.push_back(std::move(j));
    last_event_ = clock::now();
    if (w.flight.size() == 1) show(w);
    flush_out(w);
}

bool engine::flush_out(worker& w) {
    while (w.out_off < w.out.size()) {
        long n;
        try {
            n = sys::write_some(w.task_w.get(), w.out.data() + w.out_off, w.out.size() - w.out_off);
        } catch (const std::system_error&) {
            // EPIPE: the worker is gone; its pidfd tells the story.
            w.out.clear();
            w.out_off = 0;
            return true;
        }
        if (n < 0) return false;
        w.out_off += static_cast<std::size_t>(n);
    }
    return true;
}

void engine::advance(worker& w, std::uint32_t n) {
    w.front_done += n;
    w.completed += n;
    done_ += n;
    w.front_since = clock::now();
    if (w.front_done >= w.flight.front().count) {
        w.flight.pop_front();
        w.front_done = 0;
    }
    if (dash_) {
        dash::worker_answered(*dash_, w.slot, n);
        show(w);
    }
    if (opts_.max_tasks_per_worker && w.completed >= opts_.max_tasks_per_worker) w.retiring = true;
    // A retiring worker exits once it has answered everything: close its job pipe.
    if (done_with(w)) w.task_w.reset();
}

bool engine::done_with(const worker& w) const noexcept {
    return w.flight.empty() && (w.retiring || closing_ || (input_closed_ && queue_.empty()));
}

void engine::close_input() noexcept {
    input_closed_ = true;
    for (auto& w : workers_)
        if (w && done_with(*w)) w->task_w.reset();
}

void engine::handle_frame(worker& w, std::string_view f, executor_sink& sink) {
    if (f.size() < sizeof(msg_header)) throw protocol_error("parafork: short answer frame");
    msg_header h;
    std::memcpy(&h, f.data(), sizeof h);
    std::string_view body = f.substr(sizeof h);
    if (static_cast<msg>(h.kind) == msg::ready) {
        // The task_timeout clock runs from here: worker_init's time is not the first task's.
        w.ready = true;
        if (!w.flight.empty()) w.front_since = clock::now();
        show(w);
        return;
    }
    if (static_cast<msg>(h.kind) == msg::spent) {
        std::uint64_t ns = 0;
        if (body.size() != sizeof ns) throw protocol_error("parafork: bad spent frame");
        std::memcpy(&ns, body.data(), sizeof ns);
        busy_ns_ += ns;
        timed_ += h.count;
        return;
    }
    if (static_cast<msg>(h.kind) == msg::init_failed) {
        std::string type, what;
        wire::reader r(body);
        r(type, what);
        if (!fatal_)
            fatal_ = std::make_exception_ptr(remote_error(type, "worker_init: " + what, w.pid));
        return;
    }
    if (w.flight.empty()) throw protocol_error("parafork: a worker answered without a job");
    const job& j = w.flight.front();
    if (h.first != j.first + w.front_done || h.count == 0 || h.count > j.count - w.front_done)
        throw protocol_error("parafork: a worker answered out of order");
    // Descriptors announced for this value are its to take while it is decoded; any it does not
    // take close here. Decoding never reaches for descriptors of anything else.
    std::vector<sys::unique_fd> fds;
    if (!w.inbox.empty() && w.inbox_item == h.first && static_cast<msg>(h.kind) != msg::descriptors)
        fds = std::move(w.inbox);
    w.inbox.clear();
    incoming_fds_scope fd_scope(fds);
    switch (static_cast<msg>(h.kind)) {
        case msg::values:
            advance(w, h.count);
            sink.on_values(h.first, h.count, body);
            return;
        case msg::descriptors: {
            std::uint64_t n = 0;
            if (body.size() != sizeof n) throw protocol_error("parafork: bad descriptors frame");
            std::memcpy(&n, body.data(), sizeof n);
            if (n == 0 || n > max_descriptors)
                throw protocol_error("parafork: a result announced " + std::to_string(n) + " descriptors");
            std::vector<sys::unique_fd> got(static_cast<std::size_t>(n));
            std::uint64_t sent = 0;
            if (sys::recv_fds(w.sock.get(), got, &sent, sizeof sent) == 0 || sent != n)
                throw protocol_error("parafork: a result's descriptors did not arrive");
            for (auto& fd : got)
                if (!fd) throw protocol_error("parafork: a result's descriptors did not arrive");
            w.inbox = std::move(got);
            w.inbox_item = h.first;
            return;
        }
        case msg::failure: {
            failure_info fi;
            fi.what = failure_info::kind::remote;
            fi.pid = w.pid;
            wire::reader r(body);
            r(fi.type_name, fi.message);
            advance(w, 1);
            ++failed_;
            note_failure(h.first, fi);
            sink.on_failure(h.first, fi);
            return;
        }
        case msg::lent: {
            lent_value lv;
            if (body.size() != sizeof lv) throw protocol_error("parafork: bad lent-value frame");
            std::memcpy(&lv, body.data(), sizeof lv);
            // The worker waits for the verdict whatever happens here: taken, or (when the sink
            // cannot read it, or throws) sent again by memfd.
            bool taken = false;
            struct answer_at_exit {
                shared_word& word;
                const bool& taken;
                ~answer_at_exit() { word.answer(taken ? verdict_taken : verdict_resend); }
            } answer{w.running, taken};
            taken = sink.on_lent(h.first, lent_ref{w.pid, lv});
            if (taken) advance(w, 1);
            return;
        }
        case msg::large: {
            std::uint64_t size = 0;
            if (body.size() != sizeof size) throw protocol_error("parafork: bad large frame");
            std::memcpy(&size, body.data(), sizeof size);
            auto v = wire::recv_large(w.sock.get());
            if (v.size() != size) throw protocol_error("parafork: large value size mismatch");
            advance(w, 1);
            sink.on_values(h.first, 1, v.bytes());
            return;
        }
        default: throw protocol_error("parafork: unknown answer kind");
    }
}

void engine::handle_frames(worker& w, executor_sink& sink) {
    std::exception_ptr first;
    for (;;) {
        std::optional<std::string_view> f;
        try {
            f = w.reader.next();
        } catch (...) {  // the stream itself is broken: nothing after this can be framed
            if (!first) first = std::current_exception();
            break;
        }
        if (!f) break;
        try {
            handle_frame(w, *f, sink);
        } catch (...) {
            if (!first) first = std::current_exception();
        }
    }
    if (first) std::rethrow_exception(first);
}

void engine::requeue_front(job&& j) { queue_.push_front(std::move(j)); }

void engine::lost(worker& w, executor_sink& sink, const failure_info& why) {
    std::deque<job> flight = std::move(w.flight);
    std::uint32_t done = w.front_done;
    std::uint64_t running = w.running.load();
    std::size_t slot = w.slot;
    drop(w);  // closes its fds; the process is already reaped
    // Everything it held goes back to the queue before a replacement is forked: if that fork
    // fails, nothing is lost and the next pump tries again.
    if (!flight.empty()) {
        job front = std::move(flight.front());
        flight.pop_front();
        for (auto it = flight.rbegin(); it != flight.rend(); ++it) requeue_front(std::move(*it));
        job rest = done ? slice(front, done, front.count) : std::move(front);
        const bool started = running > rest.first && running - 1 < rest.first + rest.count;
        // Not one item of the job was started (each notes itself before its arguments are even
        // decoded): the worker died idle or between jobs, in library code only, so nothing in
        // it is to blame and no retry is spent. Bounded, so that a worker that dies that way
        // again and again (before it can start anything) is blamed like any other in the end.
        constexpr unsigned max_unstarted = 3;
        if (!started && why.what == failure_info::kind::died && rest.unstarted < max_unstarted) {
            ++rest.unstarted;
            requeue_front(std::move(rest));
        } else {
            // The item it was running; none of this job's: the first unanswered one, which it
            // was about to start.
            blame(std::move(rest), started ? static_cast<std::uint32_t>(running - 1 - rest.first) : 0,
                  sink, why);
        }
    }
    if (!stopped_) spawn(slot);  // a pool keeps its size: the replacement takes the next jobs
}

void engine::blame(job&& rest, std::uint32_t at, executor_sink& sink, const failure_info& why) {
    if (at + 1 < rest.count) requeue_front(slice(rest, at + 1, rest.count));  // never started
    job culprit = rest.count == 1 ? std::move(rest) : slice(rest, at, at + 1);
    bool again = why.what != failure_info::kind::timeout && culprit.tries < opts_.retries;
    std::uint64_t blamed = culprit.first;
    if (again) {
        ++culprit.tries;
        ++retried_;
        requeue_front(std::move(culprit));
    }
    // Finished, but their answers died in its buffer: they run again.
    if (at > 0) requeue_front(slice(rest, 0, at));
    if (!again) {
        ++done_;
        ++failed_;
        note_failure(blamed, why);
        sink.on_failure(blamed, why);
    }
}

long engine::read_from(worker& w, executor_sink& sink) {
    long n = w.reader.fill(w.result_r.get());
    if (n < 0) return n;
    if (n > 0) {
        last_event_ = clock::now();
        handle_frames(w, sink);
        return n;
    }
    // EOF: the worker is exiting (or dead); its pidfd reports that, and then it is read to the
    // end once more. Not polled from here on: an empty pipe at EOF is always readable.
    w.eof = true;
    return 0;
}

void engine::exited(worker& w, const sys::exit_status& st, executor_sink& sink) {
    // What it wrote before it went is in the pipe already: read all of it before blaming. A
    // grandchild may still hold the pipe open (no EOF), so stop at the first empty read. A
    // frame that throws is rethrown once the death is dealt with (it is reaped: no second
    // notice would come).
    std::exception_ptr unread;
    try {
        for (long n; (n = w.reader.fill(w.result_r.get())) > 0;)
            handle_frames(w, sink);
    } catch (...) {
        unread = std::current_exception();
    }
    died(w, st, sink);
    if (unread) std::rethrow_exception(unread);
}

void engine::died(worker& w, const sys::exit_status& st, executor_sink& sink) {
    failure_info why;
    why.what = failure_info::kind::died;
    why.pid = w.pid;
    why.signal = st.signal;
    why.code = st.code;
    std::size_t slot = w.slot;
    // A worker whose job pipe was closed (retired, or no more work) did not die.
    if (dash_ && !(st.ok() && (w.retiring || closing_ || !w.task_w))) {
        dash::relaxed_set(dash_->deaths, dash_->deaths.load(std::memory_order_relaxed) + 1);
        dash::worker_gone(*dash_, slot);
    }
    bool crashed = st.signal == SIGSEGV || st.signal == SIGBUS || st.signal == SIGABRT ||
                   st.signal == SIGFPE || st.signal == SIGILL;
    if (!w.ready && !fatal_ && (st.signal == 0 || crashed))
        // It exited or crashed before it was ready: worker_init will do the same in every
        // replacement, so replacing it would only fork again and again.
        fatal_ = std::make_exception_ptr(worker_died(why.pid, why.signal, why.code, std::nullopt,
                                                     "before it was ready (in worker_init?)"));
    if (fatal_) {
        drop(w);
        return;
    }
    if (w.flight.empty()) {
        drop(w);
        // Recycled, or died between jobs; with the input closed, replaced when work a lost
        // worker held is queued again (respawn_missing).
        if (!stopped_ && !closing_ && !(input_closed_ && queue_.empty())) spawn(slot);
        return;
    }
    lost(w, sink, why);
}

void engine::drop(worker& w) {
    sup_.forget(w.kid);
    workers_[w.slot].reset();
}

void engine::wait_once(std::span<pollfd> fds, std::optional<clock::time_point> deadline,
                       executor_sink* sink) {
    sup_.wait(fds, deadline, [this](supervisor::id k, const sys::exit_status& st) {
        exits_.emplace_back(k, st);
    });
    if (sys::sigint_guard::pending()) {
        exits_.clear();
        terminate();
        sys::sigint_guard::clear();
        throw interrupted();
    }
    handle_exits(sink);
}

void engine::handle_exits(executor_sink* sink) {
    // The supervisor reaped them; which worker each was is found by its entry (a replacement
    // forked meanwhile may reuse an entry, so each is looked up just before it is handled).
    std::exception_ptr first;
    for (auto& [kid, st] : exits_) {
        auto w = std::find_if(workers_.begin(), workers_.end(),
                              [k = kid](const auto& p) { return p && p->kid == k; });
        try {
            if (w == workers_.end()) sup_.forget(kid);  // forked, but never made a worker
            else if (sink) exited(**w, st, *sink);
            else drop(**w);
        } catch (...) {
            if (!first) first = std::current_exception();
        }
    }
    exits_.clear();
    if (first) std::rethrow_exception(first);
}

bool engine::drain(std::size_t slot, executor_sink& sink) {
    worker* w = workers_[slot].get();
    for (;;) {
        long n = read_from(*w, sink);
        if (n == 0) return false;  // it is exiting: its pidfd will say so
        if (n < 0) return true;
    }
}

void engine::draw_progress(bool final) {
    if (!progress_tty_) return;
    auto now = clock::now();
    if (!final && now - last_draw_ < std::chrono::milliseconds(200)) return;
    last_draw_ = now;
    double secs = std::chrono::duration<double>(now - started_).count();
    double rate = secs > 0 ? static_cast<double>(done_) / secs : 0;
    char line[160];
    if (total_) {
        double eta = rate > 0 ? static_cast<double>(total_ - std::min(done_, total_)) / rate : 0;
        int width = 30;
        int fill = static_cast<int>(width * static_cast<double>(std::min(done_, total_)) /
                                    static_cast<double>(total_));
        std::string bar(static_cast<std::size_t>(fill), '#');
        bar.resize(static_cast<std::size_t>(width), '.');
        std::snprintf(line, sizeof line, "\r%s [%s] %" PRIu64 "/%" PRIu64 " %.0f/s ETA %.1fs",
                      opts_.name.c_str(), bar.c_str(), done_, total_, rate, eta);
    } else {
        std::snprintf(line, sizeof line, "\r%s %" PRIu64 " done %.0f/s", opts_.name.c_str(), done_,
                      rate);
    }
    std::fputs(line, stderr);
    if (final) std::fputc('\n', stderr);
    std::fflush(stderr);
}

bool engine::pump(executor_sink& sink, std::optional<clock::time_point> deadline) {
    rethrow_fatal();
    if (stopped_) throw error("parafork: the workers were stopped (terminate or Ctrl-C)");
    respawn_missing();
    dispatch();
    if (idle()) return false;
    // Ctrl-C is taken over only by a pump that may sleep: one that only looks (its deadline
    // passed) costs no pipe and no sigaction, and a signal meanwhile stays its owner's.
    std::optional<sys::sigint_guard> guard;
    if (!deadline || *deadline > clock::now()) guard.emplace();
    auto& fds = pollfds_;
    fds.clear();
    polled_.clear();
    for (auto& w : workers_) {
        if (!w) continue;
        if (!w->eof) {
            fds.push_back({w->result_r.get(), POLLIN, 0});
            polled_.emplace_back(w->slot, w->id);
        }
        if (w->out_off < w->out.size() && w->task_w) {
            fds.push_back({w->task_w.get(), POLLOUT, 0});
            polled_.emplace_back(w->slot, w->id);
        }
    }
    auto now = clock::now();
    std::optional<clock::time_point> wake = deadline;
    if (opts_.task_timeout.count() > 0)
        for (auto& w : workers_)
            if (w && w->ready && !w->flight.empty()) {
                auto t = w->front_since + opts_.task_timeout;
                if (!wake || t < *wake) wake = t;
            }
    if (progress_tty_) {
        auto t = now + std::chrono::milliseconds(200);
        if (!wake || t < *wake) wake = t;
    }
    // An answer due within microseconds (a job just sent, answers just read) is polled for
    // briefly before sleeping; once a spin has passed with nothing, the wait is a long one and
    // sleeps at once, so an idle or busy-with-long-tasks pool costs no CPU.
    sup_.set_spin(now - last_event_ < opts_.spin ? opts_.spin : std::chrono::microseconds(0));
    // One poll: these pipes, every worker's pidfd and the Ctrl-C descriptor. Exits come first.
    wait_once(fds, wake, &sink);
    for (std::size_t i = 0; i < fds.size(); ++i) {
        const auto& p = fds[i];
        if (!p.revents) continue;
        // Only a worker still in its slot: one replaced during this loop is gone, and its
        // descriptors' numbers may belong to its successor by now.
        auto [slot, id] = polled_[i];
        worker* w = workers_[slot].get();
        if (!w || w->id != id) continue;
        if (p.events == POLLOUT) flush_out(*w);
        else read_from(*w, sink);
    }
    rethrow_fatal();
    if (opts_.task_timeout.count() > 0) {
        auto late = [&](const worker* w) {
            return w && w->ready && !w->flight.empty() &&
                   clock::now() >= w->front_since + opts_.task_timeout;
        };
        for (std::size_t k = 0; k < workers_.size(); ++k) {
            if (!late(workers_[k].get())) continue;
            // The answer may be in the pipe already: read what is there before blaming.
            if (!drain(k, sink) || !late(workers_[k].get())) continue;
            auto* w = workers_[k].get();
            sup_.kill(w->kid);
            if (dash_) {
                dash::relaxed_set(dash_->deaths, dash_->deaths.load(std::memory_order_relaxed) + 1);
                dash::worker_gone(*dash_, w->slot);
            }
            failure_info why;
            why.what = failure_info::kind::timeout;
            why.pid = w->pid;
            lost(*w, sink, why);
        }
        rethrow_fatal();
    }
    dispatch();
    draw_progress(false);
    publish();
    return true;
}

std::optional<executor::clock::time_point> engine::watch(std::vector<pollfd>& fds) {
    if (stopped_) return std::nullopt;
    std::optional<clock::time_point> wake;
    for (auto& w : workers_) {
        if (!w) continue;
        if (!w->eof) fds.push_back({w->result_r.get(), POLLIN, 0});
        if (w->out_off < w->out.size() && w->task_w) fds.push_back({w->task_w.get(), POLLOUT, 0});
        fds.push_back({sup_.pidfd(w->kid), POLLIN, 0});  // -1 once reaped: poll skips it
        if (opts_.task_timeout.count() > 0 && w->ready && !w->flight.empty()) {
            auto t = w->front_since + opts_.task_timeout;
            if (!wake || t < *wake) wake = t;
        }
    }
    if (progress_tty_) {
        auto t = clock::now() + std::chrono::milliseconds(200);
        if (!wake || t < *wake) wake = t;
    }
    return wake;
}

void engine::kick() {
    rethrow_fatal();
    if (stopped_) throw error("parafork: the workers were stopped (terminate or Ctrl-C)");
    dispatch();
}

void engine::join(executor_sink& sink) {
    sys::sigint_guard ctrl_c;  // from the first pump to the last reap
    while (pump(sink)) {
    }
    publish();
    draw_progress(true);
    closing_ = true;
    for (auto& w : workers_)
        if (w) w->task_w.reset();  // EOF: the worker runs worker_exit and exits
    wait_for_exits();
    workers_.clear();
}

void engine::wait_for_exits() {
    // The supervisor's wait says when each worker has exited (its results pipe is read
    // meanwhile, so it never blocks writing), with the Ctrl-C descriptor in the same poll:
    // Ctrl-C during a worker_exit that hangs is still ours.
    for (;;) {
        auto& fds = pollfds_;
        fds.clear();
        polled_.clear();
        bool any = false;
        for (auto& w : workers_) {
            if (!w) continue;
            any = true;
            if (w->eof) continue;
            fds.push_back({w->result_r.get(), POLLIN, 0});
            polled_.emplace_back(w->slot, w->id);
        }
        if (!any) return;
        sup_.set_spin(std::chrono::microseconds(0));
        wait_once(fds, std::nullopt, nullptr);
        for (std::size_t i = 0; i < fds.size(); ++i) {
            auto [slot, id] = polled_[i];
            worker* w = workers_[slot].get();
            if (!fds[i].revents || !w || w->id != id) continue;
            long n = w->reader.fill(w->result_r.get());
            if (n == 0) w->eof = true;
            while (n > 0 && w->reader.next()) {  // nothing is owed after the last job: drop it
            }
        }
    }
}

void engine::terminate() noexcept {
    stopped_ = true;
    sup_.stop_all();  // the stop signal to all, one grace period, SIGKILL, all reaped
    workers_.clear();
    queue_.clear();
    if (dash_) {
        publish();
        dash::close_pool(*dash_);
        dash_ = nullptr;
    }
}

} // namespace parafork::detail

// The frontend of process<Actor>: writing tasks, reading answers and messages, and the
// backend's life. Waits never block forever: every wait here is the supervisor's, which watches
// the backend's pidfd beside its socket, so a death wakes it even when a child the backend
// forked keeps the socket open.
#include "state.hpp"

#include <parafork/sys/signals.hpp>

#include "../../dashboard/hub.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <vector>

namespace parafork {
namespace detail {
namespace {

using clock = std::chrono::steady_clock;

constexpr std::size_t batch_limit = 64 * 1024;      // a batch writes when this much is held
constexpr std::size_t batch_hard_limit = 4 << 20;   // and waits for room beyond this
// A call looks at the pidfd at most this often: a stream of calls stays free of system calls.
constexpr auto alive_check_every = std::chrono::microseconds(20);

// Runs pump() until done() holds, the backend is gone, or the timeout passes. A SIGINT while
// waiting terminates the backend and throws interrupted.
template <class Done>
bool wait_until(process_state& st, Done done, std::optional<std::chrono::milliseconds> timeout) {
    if (done()) return true;
    if (!st.live()) return done();
    if (timeout && timeout->count() <= 0) {
        pump(st, 0, false);
        return done();
    }
    auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
    // Most waits (an ask's round trip) end within microseconds: the first look spins for
    // options.spin (a sleeping CPU's wake-up would cost more than the answer) and then sleeps
    // up to 1 ms, both without the SIGINT guard, sparing them its two sigaction calls. A Ctrl-C
    // in that millisecond gets the program's own SIGINT disposition, as outside any call.
    {
        pump(st, 1, false, st.opts.spin);
        if (done()) return true;
        if (!st.live()) return done();
        if (timeout && clock::now() >= deadline) return false;
    }
    sys::sigint_guard guard;
    for (;;) {
        int ms = -1;
        if (timeout) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
            ms = static_cast<int>(std::max<std::int64_t>(0, left.count()));
        }
        pump(st, ms, true);
        if (done()) return true;
        if (!st.live()) return done();
        if (timeout && clock::now() >= deadline) return false;
    }
}

// Waits as long as it takes: only where the caller asked for that (a call outside a batch, the
// end of a batch, flush()). Timed waits write what they hold as room appears, within their time.
void flush_all(process_state& st) {
    if (!st.out_pending()) return;
    if (try_flush(st)) return;
    wait_until(st, [&] { return !st.out_pending(); }, std::nullopt);
}

// A frame whose arguments hold descriptors: they go first, over the socket (SCM_RIGHTS, one
// byte of payload); the frame follows through the ring, and the backend, on reaching it, reads
// the socket until its descriptors are there.
void send_fds_ahead(process_state& st, const std::vector<int>& fds) {
    const char mark = 'f';
    while (st.live()) {
        if (sys::send_with_fds(st.sock.get(), &mark, 1, fds, MSG_DONTWAIT) >= 0) return;
        if (errno == EPIPE || errno == ECONNRESET) {
            read_ready(st);
            return;
        }
        // No room (unlikely: only wake-up bytes travel this way): read meanwhile. Sleeps until
        // room, a reply, or the backend's exit (pidfd: a grandchild may hold the socket open).
        pollfd p{st.sock.get(), POLLIN | POLLOUT, 0};
        st.sup.wait({&p, 1}, std::nullopt);
        if (!st.sup.alive(st.kid)) on_backend_exit(st);
        else if (p.revents & (POLLIN | POLLHUP | POLLERR)) read_ready(st);
    }
}

void finish_frame(process_state& st, std::size_t start) {
    proto::close_frame(st.out, start);
    auto& fds = outgoing_fds();
    if (fds.empty()) return;
    if (fds.size() > proto::max_fds) {
        st.out.resize(start);
        fds.clear();
        throw error("parafork: at most 16 descriptors per call");
    }
    st.out[start + proto::header + 1] = static_cast<char>(fds.size());
    std::vector<int> sending;
    sending.swap(fds);
    send_fds_ahead(st, sending);
}

// After a task frame: written through, or held while a batch is open.
void write_policy(process_state& st) {
    if (st.batch_depth == 0) {
        flush_all(st);
    } else if (st.out.size() - st.out_off >= batch_limit) {
        if (!try_flush(st) && st.out.size() - st.out_off >= batch_hard_limit) flush_all(st);
    }
}

// An ask answered (or a call that threw), on the dashboard: counters, the backend's state, the
// error. A few relaxed stores; the clock is read only when the backend falls idle.
void shown_answer(process_state& st, bool failed, const std::exception_ptr* e) noexcept {
    auto& d = *st.dash;
    if (failed) {
        dash::relaxed_set(d.failed, d.failed.load(std::memory_order_relaxed) + 1);
        dash::note_exception(d, *e, st.pid, 0);
    } else {
        dash::relaxed_set(d.done, d.done.load(std::memory_order_relaxed) + 1);
        dash::worker_answered(d, 0, 1);
    }
    dash::relaxed_set(d.in_flight, st.pending.size());
    if (st.pending.empty()) dash::worker_idle(d, 0, dash::now_ns());
    else d.workers[0].task.store(st.pending.front().first, std::memory_order_relaxed);
}

void handle_frame(process_state& st, std::string_view frame) {
    wire::reader r(frame);
    char kind;
    r.read_bytes(&kind, 1);
    switch (kind) {
        case proto::reply:
        case proto::ask_error: {
            std::uint64_t task;
            r.read_bytes(&task, sizeof task);
            if (st.pending.empty() || st.pending.front().first != task)
                wire::reader::fail("an answer for a task that was not asked");
            auto slot = std::move(st.pending.front().second);
            st.pending.pop_front();
            if (kind == proto::reply) {
                put_reply(*slot, r.take(r.remaining()));
                if (st.dash) shown_answer(st, false, nullptr);
            } else {
                std::string type, what;
                r(type, what);
                auto e = std::make_exception_ptr(remote_error(type, what, st.pid, task));
                if (st.dash) shown_answer(st, true, &e);
                slot->put_error(std::move(e));
            }
            return;
        }
        case proto::call_error: {
            std::uint64_t task;
            std::string type, what;
            r(task, type, what);
            std::optional<std::size_t> t;
            if (task != proto::no_task) t = task;
            auto e = std::make_exception_ptr(remote_error(type, what, st.pid, t));
            if (st.dash) shown_answer(st, true, &e);
            st.inbox.push_back({{}, std::move(e)});
            return;
        }
        case proto::wake: return;  // ring space: the next try_flush uses it
        case proto::msg: {
            std::uint64_t tag;
            r.read_bytes(&tag, sizeof tag);
            st.inbox.push_back({message(tag, std::string(r.take(r.remaining()))), nullptr});
            return;
        }
        default: wire::reader::fail("unknown frame kind from a backend");
    }
}

} // namespace

namespace {

// Copies what fits of the held bytes into the ring; returns the count copied.
std::size_t ring_write(process_state& st) {
    auto* h = ring_head(st.ring);
    std::uint64_t tail = h->tail.load(std::memory_order_relaxed);  // ours alone
    std::uint64_t head = h->head.load(std::memory_order_acquire);
    std::size_t space = ring_capacity - static_cast<std::size_t>(tail - head);
    std::size_t k = std::min(space, st.out.size() - st.out_off);
    if (k == 0) return 0;
    std::size_t pos = static_cast<std::size_t>(tail % ring_capacity);
    std::size_t first = std::min(k, ring_capacity - pos);
    const char* src = st.out.data() + st.out_off;
    std::memcpy(ring_data(st.ring) + pos, src, first);
    std::memcpy(ring_data(st.ring), src + first, k - first);
    h->tail.store(tail + k, std::memory_order_release);
    st.out_off += k;
    return k;
}

// After moving tail: a sleeping backend gets one wake-up byte.
void wake_backend(process_state& st) {
    auto* h = ring_head(st.ring);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!h->backend_sleeping.load(std::memory_order_relaxed)) return;
    if (h->backend_sleeping.exchange(0) == 0) return;
    char c = proto::wake;
    // Full of wake-ups already (EAGAIN): the backend will wake anyway. A backend that is gone
    // (EPIPE): read what it left; its pidfd tells the rest.
    if (sys::send_some(st.sock.get(), &c, 1, MSG_DONTWAIT) < 0 && errno != EAGAIN) read_ready(st);
}

} // namespace

bool try_flush(process_state& st) {
    if (st.out_pending() && st.live()) {
        if (ring_write(st)) wake_backend(st);
        if (st.out_pending() && st.live()) {
            // Full: ask the backend for a wake-up when it frees space, then look once more.
            auto* h = ring_head(st.ring);
            h->frontend_waiting.store(1, std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_seq_cst);
            if (ring_write(st)) wake_backend(st);
            if (st.out_pending() && st.live()) return false;
        }
    }
    st.out.clear();
    st.out_off = 0;
    return true;
}

void read_ready(process_state& st) {
    if (!st.live()) return;
    long n = st.in.fill(st.sock.get());
    if (n == 0) {
        on_backend_end(st, false);
        return;
    }
    while (auto f = st.in.next()) handle_frame(st, *f);
    sync_ready(st);
}

void sync_ready(process_state& st) noexcept {
    if (!st.ready_ev) return;
    bool want = !st.inbox.empty() || st.ph == process_state::phase::finished;
    if (want == st.ready_on) return;
    if (want)
        sys::eventfd_signal(st.ready_ev.get());
    else
        sys::eventfd_drain(st.ready_ev.get());
    st.ready_on = want;
}

short wanted_events(const process_state&) noexcept {
    // Room in the ring is announced by a 'w' frame: only ever POLLIN.
    return POLLIN;
}

void handle_events(process_state& st, short sock_revents, short pidfd_revents) {
    if (!st.live()) return;
    if (sock_revents & (POLLIN | POLLHUP | POLLERR)) read_ready(st);
    if (pidfd_revents & (POLLIN | POLLHUP | POLLERR)) on_backend_exit(st);
    if (st.live() && st.out_pending()) try_flush(st);
}

void on_backend_exit(process_state& st) {
    // What it wrote before exiting is still in the socket: read it (bounded, in case a child
    // of the backend that holds the socket keeps writing), then reap.
    for (int i = 0; i < 1024 && st.live(); ++i) {
        pollfd p{st.sock.get(), POLLIN, 0};
        if (sys::poll_fds(&p, 1, 0) <= 0) break;
        read_ready(st);
    }
    on_backend_end(st, false);
}

void check_alive(process_state& st) {
    if (!st.live()) return;
    pollfd p{st.pidfd(), POLLIN, 0};
    if (!st.sup.alive(st.kid) || sys::poll_fds(&p, 1, 0) > 0) on_backend_exit(st);
}

void pump(process_state& st, int timeout_ms, bool with_sigint, std::chrono::microseconds spin) {
    if (!st.live()) return;
    if (st.out_pending()) try_flush(st);
    if (!st.live()) return;
    pollfd p[2] = {{st.sock.get(), wanted_events(st), 0}, {st.pidfd(), POLLIN, 0}};
    // Room in a full ring comes as the backend's 'w' on the socket: try_flush raised
    // frontend_waiting and looked at the ring again after a full fence, and the backend looks at
    // the flag after a fence once it has moved head, so one of the two always sees the other.
    // The spin sees the pidfd too; the sleep is the supervisor's, which watches it itself.
    int n = spin.count() > 0 && timeout_ms != 0 ? sys::spin_poll(p, 2, spin) : 0;
    if (n == 0) {
        std::optional<supervisor::clock::time_point> deadline;
        if (timeout_ms >= 0) deadline = supervisor::clock::now() + std::chrono::milliseconds(timeout_ms);
        p[1].revents = 0;
        auto w = st.sup.wait({p, 1}, deadline);
        if (w == supervisor::wake::interrupted && with_sigint) {
            // Ctrl-C is the parent's: stop the backend, then tell the caller.
            on_backend_end(st, true);
            sys::sigint_guard::check();
        }
        if (w == supervisor::wake::exited) p[1].revents = POLLIN;
    }
    if (n >= 0) handle_events(st, p[0].revents, p[1].revents);
}

void on_backend_end(process_state& st, bool by_terminate) {
    if (!st.live()) return;
    st.sock.reset();
    if (by_terminate) {
        st.terminated = true;
    } else {
        // Its pidfd, or EOF (it closes its end only by exiting): give it time to be gone.
        auto deadline = supervisor::clock::now() + std::max(st.opts.grace, std::chrono::milliseconds(1000));
        while (st.sup.alive(st.kid) && supervisor::clock::now() < deadline)
            if (st.sup.wait({}, deadline) == supervisor::wake::interrupted) break;
    }
    st.status = st.sup.stop(st.kid);
    st.ph = process_state::phase::finished;
    st.ring.reset();
    st.out.clear();
    st.out_off = 0;
    const auto& s = *st.status;
    std::string why = "process '" + st.opts.name + "' " +
                      (by_terminate ? "was terminated" : "ended") + " before answering";
    for (auto& [task, slot] : st.pending) {
        slot->put_error(std::make_exception_ptr(worker_died(st.pid, s.signal, s.code, task, why)));
    }
    if (st.dash) {
        auto& d = *st.dash;
        if (!s.ok() && !by_terminate) {  // died: what it held fails with it
            dash::relaxed_set(d.deaths, 1);
            dash::relaxed_set(d.failed, d.failed.load(std::memory_order_relaxed) + st.pending.size());
            dash::note_exception(d, std::make_exception_ptr(worker_died(
                                        st.pid, s.signal, s.code,
                                        st.pending.empty() ? std::nullopt : std::optional<std::size_t>(st.pending.front().first),
                                        "process '" + st.opts.name + "' has ended")),
                                 st.pid, 0);
            dash::worker_gone(d, 0);
        } else {
            dash::worker_idle(d, 0, dash::now_ns());
        }
        dash::relaxed_set(d.in_flight, 0);
        dash::close_pool(d);
        st.dash = nullptr;
    }
    st.pending.clear();
    sync_ready(st);
}

void begin_terminate(process_state& st) noexcept {
    if (!st.live() || st.stop_by) return;
    const stop_policy& pol = st.sup.policy();
    st.sock.reset();  // an idle backend leaves at its end of file
    st.sup.signal(st.kid, pol.signal);
    st.stop_by = clock::now() + (pol.signal ? std::chrono::duration_cast<clock::duration>(pol.grace)
                                            : clock::duration::zero());
}

void end_terminate(process_state& st) {
    if (!st.live()) return;
    begin_terminate(st);
    pollfd p{st.pidfd(), POLLIN, 0};
    for (;;) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*st.stop_by - clock::now()).count();
        if (sys::poll_fds(&p, 1, static_cast<int>(std::max<std::int64_t>(0, left))) > 0) break;
        if (clock::now() >= *st.stop_by) {
            st.sup.kill(st.kid);  // past its grace; reaped, so no second grace below
            break;
        }
        // A signal (another Ctrl-C): the deadline still bounds the wait.
    }
    on_backend_end(st, true);
}

void terminate_all(std::span<process_state* const> procs) {
    for (auto* st : procs) begin_terminate(*st);
    // Waited one after another, but each grace runs from the same start: one grace in all.
    for (auto* st : procs) end_terminate(*st);
}

void throw_died(process_state& st, std::optional<std::uint64_t> task) {
    st.reported = true;
    const auto& s = *st.status;
    throw worker_died(st.pid, s.signal, s.code, task, "process '" + st.opts.name + "' has ended");
}

bool wait_reply(process_state& st, const answer_slot& slot,
                std::optional<std::chrono::milliseconds> timeout) {
    auto done = [&] { return slot.done; };
    if (done()) return true;
    // No flush first: wait_until writes held calls as room appears, within the timeout.
    return wait_until(st, done, timeout);
}

} // namespace detail

using detail::process_state;
namespace proto = detail::proto;

void message::wrong_type(const char* wanted) {
    throw protocol_error("parafork: the next message is not a " + detail::demangle(wanted) +
                         " (it was emitted as another type)");
}

namespace {
// One process, one loop, calls in send order: the pool options mean nothing here.
options checked(options o) {
    detail::reject_options(o, "parafork::process",
                           {option::jobs, option::chunksize, option::ordered, option::task_timeout,
                            option::retries, option::max_tasks_per_worker, option::progress,
                            option::zygote});
    return o;
}
} // namespace

process_base::process_base(options o) : st_(std::make_shared<process_state>(checked(std::move(o)))) {}
process_base::process_base(process_base&&) noexcept = default;
process_base& process_base::operator=(process_base&& o) noexcept {
    if (this != &o) {
        shutdown();
        st_ = std::move(o.st_);
    }
    return *this;
}

process_base::~process_base() { shutdown(); }

void process_base::shutdown() noexcept {
    if (!st_ || !st_->live()) return;
    auto& st = *st_;
    try {
        // Bounded: the stop is written as room appears while we wait, never more than grace.
        if (st.ph == process_state::phase::running) queue_stop();
        detail::wait_until(st, [&] { return !st.live(); }, st.opts.grace);
    } catch (...) {
    }
    try {
        if (st.live()) detail::on_backend_end(st, true);
    } catch (...) {
        // The supervisor's destructor still stops and reaps it.
    }
}

process_state& process_base::live_state() const {
    if (!st_) throw std::logic_error("parafork::process: used after it was moved from");
    return *st_;
}

const std::string& process_base::name() const { return live_state().opts.name; }
pid_t process_base::pid() const { return live_state().pid; }
bool process_base::started() const { return live_state().ph != process_state::phase::idle; }
bool process_base::running() const { return live_state().live(); }
int process_base::fd() const { return live_state().live() ? st_->sock.get() : -1; }

int process_base::ready_fd() {
    auto& st = live_state();
    if (st.ph == process_state::phase::idle) return -1;
    if (!st.ready_ev) {
        auto ep = sys::make_epoll();
        auto ev = sys::make_eventfd();
        sys::epoll_watch(ep.get(), ev.get());
        if (st.live()) {
            sys::epoll_watch(ep.get(), st.sock.get());
            sys::epoll_watch(ep.get(), st.pidfd());
        }
        st.ready_ep = sys::private_fd(std::move(ep));
        st.ready_ev = sys::private_fd(std::move(ev));
        st.ready_on = false;
        detail::sync_ready(st);
    }
    return st.ready_ep.get();
}
std::optional<sys::exit_status> process_base::exit_status() const { return live_state().status; }
std::size_t process_base::pending_asks() const { return live_state().pending.size(); }

void process_base::start_backend(const detail::backend_hooks& hooks) {
    auto& st = live_state();
    if (st.ph != process_state::phase::idle)
        throw error("parafork: process '" + st.opts.name + "' was already started");
    auto pair = sys::make_socketpair();
    st.ring = sys::mapping(-1, detail::ring_map_size);
    new (st.ring.data()) detail::ring_header{};
    // Registered before the fork: this backend and every later child close it at once.
    st.sock = sys::private_fd(std::move(pair.read));
    sys::child_options co;
    co.title = st.opts.name;
    // Before the fork: a dashboard server started now holds none of this backend's descriptors.
    if (!st.dash) st.dash = detail::dash::attach(st.opts, "process", 1, 0);
    st.kid = st.sup.fork([&] { detail::run_backend(pair.write.get(), st.ring.data(), hooks, st.opts); }, co);
    pair.write.reset();
    // Children forked later need not inherit this backend's ring.
    sys::dont_fork(st.ring.data(), st.ring.size());
    st.pid = st.sup.pid(st.kid);
    if (st.dash) {
        detail::dash::worker_started(*st.dash, 0, st.pid);
        detail::dash::worker_idle(*st.dash, 0, detail::dash::now_ns());
    }
    // Every read follows a poll; a read that finds nothing must not sleep.
    sys::set_nonblocking(st.sock.get());
    st.ph = process_state::phase::running;
}

std::string& process_base::begin_task(bool ask, detail::trampoline t, std::size_t& frame_start) {
    auto& st = live_state();
    if (st.ph == process_state::phase::running) {
        // A backend that died while busy (no wake-up to send, no reply awaited) would go
        // unnoticed until the next wait: a cheap look at its pidfd makes this call throw.
        auto now = detail::clock::now();
        if (now - st.alive_checked >= detail::alive_check_every) {
            st.alive_checked = now;
            detail::check_alive(st);
        }
    }
    switch (st.ph) {
        case process_state::phase::idle:
            throw error("parafork: process '" + st.opts.name + "' is not started");
        case process_state::phase::stopping:
            throw error("parafork: process '" + st.opts.name + "' is stopping; no more calls");
        case process_state::phase::finished:
            if (st.died()) detail::throw_died(st, st.next_task);
            throw error("parafork: process '" + st.opts.name + "' has ended; no more calls");
        case process_state::phase::running: break;
    }
    if (!st.out_pending()) {
        st.out.clear();
        st.out_off = 0;
    }
    detail::outgoing_fds().clear();
    frame_start = proto::open_frame(st.out, ask ? proto::ask : proto::call);
    st.out.push_back('\0');  // descriptors riding with the frame, patched in finish_frame
    proto::put_u64(st.out, reinterpret_cast<std::uint64_t>(t));
    return st.out;
}

void process_base::abort_task(std::size_t frame_start) noexcept {
    st_->out.resize(frame_start);
    detail::outgoing_fds().clear();
}

void process_base::end_call(std::size_t frame_start) {
    auto& st = live_state();
    detail::finish_frame(st, frame_start);
    ++st.next_task;
    detail::write_policy(st);
    if (st.ph == process_state::phase::finished && st.died()) detail::throw_died(st, st.next_task - 1);
}

void process_base::end_ask(std::size_t frame_start, std::shared_ptr<detail::answer_slot> slot) {
    auto& st = live_state();
    detail::finish_frame(st, frame_start);
    slot->task = st.next_task;
    st.pending.emplace_back(st.next_task++, std::move(slot));
    if (st.dash) {
        if (st.pending.size() == 1) detail::dash::worker_busy(*st.dash, 0, st.pending.front().first, detail::dash::now_ns());
        detail::dash::relaxed_set(st.dash->in_flight, st.pending.size());
    }
    // Written now unless batching: the caller will wait for it soon, and a deep pipeline of
    // asks is the point of futures.
    detail::write_policy(st);
}

void process_base::stop() {
    auto& st = live_state();
    if (st.ph == process_state::phase::idle)
        throw error("parafork: process '" + st.opts.name + "' is not started");
    if (st.ph != process_state::phase::running) return;
    // Never waits: what does not fit in the ring now is written by the next wait (join,
    // receive, a future, a selector) or by the destructor.
    queue_stop();
}

void process_base::queue_stop() {
    auto& st = live_state();
    if (!st.out_pending()) {
        st.out.clear();
        st.out_off = 0;
    }
    proto::close_frame(st.out, proto::open_frame(st.out, proto::stop));
    st.ph = process_state::phase::stopping;
    detail::try_flush(st);
}

sys::exit_status process_base::join() {
    auto& st = live_state();
    stop();
    detail::wait_until(st, [&] { return !st.live(); }, std::nullopt);
    if (st.died() && !st.reported) detail::throw_died(st, std::nullopt);
    return *st.status;
}

sys::exit_status process_base::terminate() {
    auto& st = live_state();
    if (st.ph == process_state::phase::idle)
        throw error("parafork: process '" + st.opts.name + "' is not started");
    if (st.live()) detail::on_backend_end(st, true);
    return *st.status;
}

process_base::batch_guard::batch_guard(process_base& p) : st_(p.st_) { ++p.live_state().batch_depth; }
process_base::batch_guard::~batch_guard() {
    if (--st_->batch_depth == 0) {
        try {
            detail::flush_all(*st_);
        } catch (...) {
            // A backend that died is reported by the next call, ask or receive.
        }
    }
}

void process_base::flush() { detail::flush_all(live_state()); }

bool process_base::has_message() {
    auto& st = live_state();
    if (st.inbox.empty() && st.live()) detail::pump(st, 0, false);
    return !st.inbox.empty();
}

namespace {

[[noreturn]] void no_message_left(process_state& st) {
    if (st.died() && !st.reported) detail::throw_died(st, std::nullopt);
    throw error("parafork: process '" + st.opts.name + "' has ended; no message is left");
}

} // namespace

message* process_base::next_message(wait_mode mode, std::chrono::milliseconds timeout) {
    auto& st = live_state();
    if (st.ph == process_state::phase::idle)
        throw error("parafork: process '" + st.opts.name + "' is not started");
    if (st.inbox.empty()) {
        if (mode == wait_mode::poll) {
            if (st.live()) detail::pump(st, 0, false);
        } else {
            std::optional<std::chrono::milliseconds> limit;
            if (mode == wait_mode::timed) limit = timeout;
            detail::wait_until(st, [&] { return !st.inbox.empty(); }, limit);
        }
    }
    if (st.inbox.empty()) {
        if (st.live()) return nullptr;
        if (mode == wait_mode::poll) {
            if (st.died() && !st.reported) detail::throw_died(st, std::nullopt);
            return nullptr;
        }
        no_message_left(st);
    }
    auto& front = st.inbox.front();
    if (front.error) {
        auto e = std::move(front.error);
        st.inbox.pop_front();
        detail::sync_ready(st);
        std::rethrow_exception(e);
    }
    return &front.msg;
}

void process_base::drop_message() noexcept {
    st_->inbox.pop_front();
    detail::sync_ready(*st_);
}

message process_base::receive_message() {
    message m = std::move(*next_message(wait_mode::block, {}));
    drop_message();
    return m;
}

std::optional<message> process_base::try_receive_message() {
    message* m = next_message(wait_mode::poll, {});
    if (!m) return std::nullopt;
    message out = std::move(*m);
    drop_message();
    return out;
}

std::optional<message> process_base::receive_message_for(std::chrono::milliseconds timeout) {
    message* m = next_message(wait_mode::timed, timeout);
    if (!m) return std::nullopt;
    message out = std::move(*m);
    drop_message();
    return out;
}

} // namespace parafork

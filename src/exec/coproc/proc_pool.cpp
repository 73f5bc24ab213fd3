#include <parafork/exec/coproc/proc_pool.hpp>

#include "../../dashboard/hub.hpp"
#include <parafork/exec/core/supervisor.hpp>
#include <parafork/exec/core/zygote.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <poll.h>
#include <stdexcept>
#include <system_error>
#include <span>
#include <variant>

namespace parafork {
namespace {

using clock = std::chrono::steady_clock;

// How much the parent keeps in flight per kid during eval(): enough to batch many tiny
// requests into one write, little enough to bound memory.
constexpr std::size_t window_requests = 2048;
constexpr std::size_t window_bytes = 4u << 20;

// How long serve() spins before it sleeps waiting for a request. A function kid's startup sets
// it to its pool's options.spin; serve() outside a pool keeps the default.
std::chrono::microseconds g_serve_spin{50};

// Requests answered since a kid was last idle: if it then sends a reply too many, these are
// the ones whose replies may be someone else's. Only the latest are kept.
constexpr std::size_t suspects_kept = 64;

// A kid process: forked or spawned through the pool's supervisor, or forked by a zygote, which
// reaps it and tells us (a supervisor reaps only its own children).
class kid_handle {
public:
    kid_handle() = default;
    kid_handle(detail::supervisor& s, detail::supervisor::id id) : sup_(&s), id_(id) {}
    kid_handle(zygote& z, pid_t pid) : z_(&z), zpid_(pid), zpidfd_(sys::open_pidfd(pid)) {}
    kid_handle(kid_handle&& o) noexcept { *this = std::move(o); }
    kid_handle& operator=(kid_handle&& o) noexcept {
        if (this != &o) {
            kill_and_reap();
            sup_ = std::exchange(o.sup_, nullptr);
            id_ = o.id_;
            z_ = std::exchange(o.z_, nullptr);
            zpid_ = std::exchange(o.zpid_, -1);
            zpidfd_ = std::move(o.zpidfd_);
            zst_ = o.zst_;
        }
        return *this;
    }
    ~kid_handle() { kill_and_reap(); }

    pid_t pid() const { return sup_ ? sup_->pid(id_) : zpid_; }
    const std::optional<sys::exit_status>& status() const { return sup_ ? sup_->status(id_) : zst_; }
    bool running() const { return (sup_ || z_) && !status(); }
    // Readable once it has exited (see sys::open_pidfd); -1 once reaped.
    int pidfd() const { return sup_ ? sup_->pidfd(id_) : (zst_ ? -1 : zpidfd_.get()); }

    // Up to the deadline for it to exit by itself, then stopped by the stop policy (SIGTERM,
    // `grace`, SIGKILL: the supervisor's for its own kids).
    sys::exit_status reap(clock::time_point deadline, std::chrono::milliseconds grace) {
        if (sup_) {
            while (sup_->alive(id_) && clock::now() < deadline)
                if (sup_->wait({}, deadline) == detail::supervisor::wake::interrupted) break;
            return sup_->stop(id_);
        }
        if (!zst_) zst_ = wait_zygote(deadline - clock::now());
        if (!zst_ && sys::send_signal(zpid_, SIGTERM)) zst_ = wait_zygote(grace);
        if (!zst_) kill_and_reap();
        return *zst_;
    }
    void kill_and_reap() noexcept {
        if (sup_ && sup_->alive(id_)) sup_->signal(id_, SIGKILL);
        if (sup_) {
            try {
                sup_->stop(id_);  // at once: it is dying
                sup_->forget(id_);
            } catch (...) {
            }
        }
        if (z_ && !zst_) {
            sys::send_signal(zpid_, SIGKILL);
            try {
                zst_ = z_->wait(zpid_);
            } catch (...) {
                zst_ = sys::exit_status{0, SIGKILL};  // the zygote is gone, and the kid with it
            }
        }
        sup_ = nullptr;
    }

private:
    std::optional<sys::exit_status> wait_zygote(clock::duration d) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(std::max(d, clock::duration::zero()));
        return z_->wait_for(zpid_, ms);
    }

    detail::supervisor* sup_ = nullptr;
    detail::supervisor::id id_ = 0;
    zygote* z_ = nullptr;
    pid_t zpid_ = -1;
    sys::private_fd zpidfd_;
    std::optional<sys::exit_status> zst_;
};

// Runs a function-pointer kid in a worker forked by a zygote.
void zygote_kid(std::span<const int> fds, std::uintptr_t fn) {
    reinterpret_cast<void (*)(int, int)>(fn)(fds[0], fds[1]);
}

struct held_request {
    std::size_t index;
    std::size_t framed_len;
    unsigned attempts;
};

} // namespace

struct proc_pool::impl {
    struct kid {
        unsigned number = 0;
        kid_handle proc;
        sys::private_fd to, from;
        // Since it was last idle: the latest suspects_kept answered requests, in a ring (no
        // allocation per reply); answered_n counts them all.
        std::array<std::size_t, suspects_kept> answered{};
        std::size_t answered_n = 0;
        std::string out;           // framed requests; [acked, size) unanswered, [written, size) unsent
        std::size_t acked = 0, written = 0;
        std::deque<held_request> held;
        frames::frame_reader in;
        bool input_closed = false;  // we closed its stdin (finish)
        bool eof = false;           // its stdout reached EOF
        clock::time_point progress{};

        explicit kid(frames::framing f) : in(f) {}
        std::size_t unanswered_bytes() const noexcept { return out.size() - acked; }
    };

    std::variant<kid_fn, kid_cmd> spec;
    frames::framing framing;
    options opts;
    unsigned jobs;
    detail::supervisor sup;  // before kids: it outlives their handles
    std::vector<std::unique_ptr<kid>> kids;
    bool started = false;
    bool closing = false;
    std::size_t next_index = 0;
    unsigned idle_restarts = 0;  // replacements of idle kids since the last reply
    std::size_t total_held = 0, total_held_bytes = 0;
    unsigned rr = 0;
    // ordered mode
    std::size_t next_deliver = 0;
    std::map<std::size_t, std::string> stash;  // counted in the window with what is in flight
    std::size_t stash_bytes = 0;
    pid_t last_death_pid = -1;  // the kid buried last, for "every kid has died"
    sys::exit_status last_death;
    std::string current;  // storage for a reply handed out from the stash
    std::vector<pollfd> pfds;
    std::vector<std::pair<kid*, bool>> pfd_kid;  // whose entry each is; true: its pidfd
    std::optional<sys::sigint_guard> call_guard;  // alive during eval() / final_replies()
    std::optional<sys::sigint_guard> wait_guard;  // made by a pump about to sleep without one
    sys::sigpipe_guard* sigpipe = nullptr;         // the one of the current pump()
    detail::dash::pool_slot* dash = nullptr;       // this run on the dashboard; null: off

    impl(std::variant<kid_fn, kid_cmd> s, frames::framing f, const options& o)
        : spec(std::move(s)), framing(f), opts(o), jobs(resolve_jobs(o.jobs)),
          sup(stop_policy{SIGTERM, o.grace}) {}

    ~impl() { shutdown(true); }

    static std::uint64_t ns_of(clock::time_point t) noexcept {
        return static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
    }

    void start_kid(kid& k) {
        auto req = sys::make_pipe();  // parent writes requests
        auto rep = sys::make_pipe();  // parent reads replies
        sys::child_options co;
        co.title = opts.name + "#" + std::to_string(k.number);
        if (opts.zygote) {
            auto* fn = std::get_if<kid_fn>(&spec);
            if (!fn || !fn->ptr)
                throw std::invalid_argument("proc_pool: through a zygote, kids must be plain function "
                                            "pointers (a captureless lambda will do)");
            int fds[] = {req.read.get(), rep.write.get()};
            pid_t pid = opts.zygote->spawn(&zygote_kid, fds, reinterpret_cast<std::uintptr_t>(fn->ptr));
            k.proc = kid_handle(*opts.zygote, pid);
        } else if (auto* cmd = std::get_if<kid_cmd>(&spec)) {
            sys::spawn_options so;
            so.stdin_fd = req.read.get();
            so.stdout_fd = rep.write.get();
            so.child = co;
            k.proc = kid_handle(sup, sup.spawn(cmd->argv, so));
        } else {
            auto& fn = std::get<kid_fn>(spec).fn;
            k.proc = kid_handle(sup, sup.fork(
                                         [&] {
                                             req.write.reset();
                                             rep.read.reset();
                                             g_serve_spin = opts.spin;
                                             if (opts.worker_init) opts.worker_init();
                                             fn(req.read.get(), rep.write.get());
                                             if (opts.worker_exit) opts.worker_exit();
                                         },
                                         co));
        }
        // Bigger pipes mean fewer wake-ups for bulk replies; the kernel may refuse (limits):
        // then the default 64 KiB stays, which is only slower.
        sys::set_pipe_size(rep.read.get(), 1 << 20);
        sys::set_pipe_size(req.write.get(), 1 << 20);
        k.to = sys::private_fd(std::move(req.write));
        k.from = sys::private_fd(std::move(rep.read));
        k.answered_n = 0;
        sys::set_nonblocking(k.to.get());
        sys::set_nonblocking(k.from.get());
        k.out.clear();
        k.acked = k.written = 0;
        k.held.clear();
        k.in = frames::frame_reader(framing);
        k.input_closed = k.eof = false;
        k.progress = clock::now();
        if (dash) detail::dash::worker_started(*dash, k.number, k.proc.pid());
    }

    void ensure_started() {
        if (started) return;
        if (jobs == 0) throw std::invalid_argument("proc_pool: jobs must be at least 1");
        kids.clear();
        // Before the kids: a server forked now holds none of their pipes. One slot per run.
        if (!dash) dash = detail::dash::attach(opts, "proc_pool", jobs, 0);
        try {
            for (unsigned i = 0; i < jobs; ++i) {
                kids.push_back(std::make_unique<kid>(framing));
                kids.back()->number = i;
                start_kid(*kids.back());
            }
        } catch (...) {
            sup.stop_all();
            kids.clear();
            throw;
        }
        started = true;
        closing = false;
    }

    bool alive(const kid& k) const noexcept { return k.proc.pid() > 0 && !k.eof && k.from; }

    kid* pick_kid() {
        kid* best = nullptr;
        std::size_t n = kids.size();
        for (std::size_t j = 0; j < n; ++j) {
            kid& k = *kids[(rr + j) % n];
            if (!alive(k) || k.input_closed) continue;
            if (!best || k.held.size() < best->held.size()) best = &k;
        }
        rr = (rr + 1) % std::max<std::size_t>(n, 1);
        return best;
    }

    void assign(kid& k, std::size_t index, std::string_view payload, unsigned attempts) {
        if (k.held.empty()) {
            k.progress = clock::now();
            k.answered_n = 0;
        }
        std::size_t before = k.out.size();
        framing.append(k.out, payload);
        std::size_t len = k.out.size() - before;
        k.held.push_back({index, len, attempts});
        ++total_held;
        total_held_bytes += len;
        if (dash) {
            if (k.held.size() == 1) detail::dash::worker_busy(*dash, k.number, index, ns_of(k.progress));
            detail::dash::relaxed_set(dash->in_flight, total_held);
        }
    }

    std::size_t send(std::string_view request) {
        ensure_started();
        if (closing) throw error("proc_pool: send() after final_replies() began");
        kid* k = pick_kid();
        if (!k) {
            // Every kid is dead but not yet buried (its EOF seen, its replies maybe still
            // buffered). Queue on one of them: burying it re-sends its requests to a
            // replacement (with retries) or reports them lost.
            for (auto& kp : kids)
                if (kp->from && !kp->input_closed) k = kp.get();
        }
        if (!k) {
            if (last_death_pid > 0)
                throw worker_died(last_death_pid, last_death.signal, last_death.code, std::nullopt,
                                  "every kid has died; none is left to take the request");
            throw error("proc_pool: no kid is alive to take the request");
        }
        std::size_t index = next_index++;
        assign(*k, index, request, 0);
        return index;
    }

    void flush(kid& k) {
        while (k.written < k.out.size()) {
            long n;
            try {
                n = sys::write_some(k.to.get(), k.out.data() + k.written, k.out.size() - k.written);
            } catch (const std::system_error& e) {
                if (e.code() != std::errc::broken_pipe) throw;
                if (sigpipe) sigpipe->note_epipe();  // it closed its stdin: its pidfd tells the rest
                k.to.reset();
                return;
            }
            if (n < 0) return;  // pipe full: poll tells us when to go on
            k.written += static_cast<std::size_t>(n);
        }
        if (k.input_closed && k.to) k.to.reset();
    }

    // Matches one reply frame to the oldest request the kid holds.
    std::size_t take_held(kid& k) {
        if (k.held.empty()) {
            std::vector<std::size_t> suspects;
            for (std::size_t i = k.answered_n > suspects_kept ? k.answered_n - suspects_kept : 0;
                 i < k.answered_n; ++i)
                suspects.push_back(k.answered[i % suspects_kept]);
            std::string what = "proc_pool: kid " + std::to_string(k.proc.pid()) +
                               " sent a reply with no request outstanding (more than one reply "
                               "per request?); the replies to the requests it held " +
                               (suspects.empty() ? std::string("(none)") : list(suspects)) +
                               " may be wrong";
            throw protocol_error(what, k.proc.pid(), std::move(suspects));
        }
        held_request h = k.held.front();
        k.held.pop_front();
        --total_held;
        total_held_bytes -= h.framed_len;
        k.acked += h.framed_len;
        if (k.acked > k.written) k.written = k.acked;  // (cannot happen with honest kids)
        if (k.acked == k.out.size()) {
            k.out.clear();
            k.acked = k.written = 0;
        } else if (k.acked > (1u << 20) && k.acked > k.out.size() / 2) {
            k.out.erase(0, k.acked);
            k.written -= k.acked;
            k.acked = 0;
        }
        if (opts.task_timeout.count() > 0) k.progress = clock::now();
        idle_restarts = 0;
        k.answered[k.answered_n++ % suspects_kept] = h.index;
        if (dash) shown_answer(k);
        return h.index;
    }

    void shown_answer(const kid& k) noexcept {
        namespace d = detail::dash;
        d::relaxed_set(dash->done, dash->done.load(std::memory_order_relaxed) + 1);
        d::relaxed_set(dash->in_flight, total_held);
        d::worker_answered(*dash, k.number, 1);
        if (k.held.empty()) d::worker_idle(*dash, k.number, d::now_ns());
        else if (k.number < d::max_workers)
            dash->workers[k.number].task.store(k.held.front().index, std::memory_order_relaxed);
    }

    static std::string list(const std::vector<std::size_t>& v) {
        std::string s;
        std::size_t shown = 0;
        for (std::size_t i : v) {
            if (shown++ == 8) {
                s += ", ... (" + std::to_string(v.size()) + " in all)";
                break;
            }
            s += (s.empty() ? "" : ", ") + std::to_string(i);
        }
        return s;
    }

    static std::vector<std::size_t> held_indices(const kid& k) {
        std::vector<std::size_t> v;
        v.reserve(k.held.size());
        for (auto& h : k.held) v.push_back(h.index);
        return v;
    }

    // A kid's stdout ended and every whole reply it sent was taken.
    void on_kid_gone(kid& k) {
        k.from.reset();
        k.to.reset();
        // Its stdout is closed, so it is exiting: give it the grace period, then stop it.
        auto st = std::make_optional(k.proc.reap(clock::now() + opts.grace, opts.grace));
        last_death_pid = k.proc.pid();
        last_death = *st;
        if (dash && !(st->ok() && k.input_closed)) {  // a kid told to finish did not die
            detail::dash::relaxed_set(dash->deaths, dash->deaths.load(std::memory_order_relaxed) + 1);
            detail::dash::worker_gone(*dash, k.number);
        }
        if (k.held.empty()) {
            if (k.in.buffered())
                throw protocol_error("proc_pool: kid " + std::to_string(k.proc.pid()) +
                                     " ended inside a reply frame");
            // A kid that died idle lost nothing. With retries it is replaced, so the pool keeps
            // its size; a kid that keeps dying before any reply cannot make us fork forever.
            if (!k.input_closed && opts.retries > 0) {
                if (++idle_restarts > jobs * (opts.retries + 1))
                    throw worker_died(k.proc.pid(), st->signal, st->code, std::nullopt,
                                      "kids keep dying without answering; gave up replacing them");
                start_kid(k);
                if (closing) k.input_closed = true;
            }
            return;  // a normal exit at finish(), or an idle kid that left
        }
        // The oldest request is the one the kid was working on: it alone is charged a retry;
        // the ones queued behind it are merely re-sent.
        if (k.held.front().attempts >= opts.retries) {
            auto tasks = held_indices(k);
            throw worker_died(k.proc.pid(), st->signal, st->code, tasks,
                              "kid held " + std::to_string(tasks.size()) + " request(s): " + list(tasks));
        }
        // Replace the kid and hand its requests out again, oldest first.
        std::deque<held_request> lost;
        lost.swap(k.held);
        std::string bytes = k.out.substr(k.acked);
        total_held -= lost.size();
        for (auto& h : lost) total_held_bytes -= h.framed_len;
        start_kid(k);
        ++lost.front().attempts;
        if (dash) detail::dash::relaxed_set(dash->retried, dash->retried.load(std::memory_order_relaxed) + 1);
        std::size_t off = 0;
        for (auto& h : lost) {
            std::string_view framed(bytes.data() + off, h.framed_len);
            off += h.framed_len;
            kid* dest = pick_kid();
            if (!dest) dest = &k;
            if (dest->held.empty()) dest->progress = clock::now();
            dest->out.append(framed);
            dest->held.push_back(h);
            ++total_held;
            total_held_bytes += h.framed_len;
        }
        if (closing) k.input_closed = true;
    }

    // Hands out the next reply that is already buffered, if any.
    std::optional<reply> buffered_reply() {
        if (opts.ordered) {
            auto it = stash.find(next_deliver);
            if (it != stash.end()) {
                current = std::move(it->second);
                stash.erase(it);
                stash_bytes -= current.size();
                return reply{next_deliver++, current};
            }
        }
        std::size_t n = kids.size();
        for (std::size_t j = 0; j < n; ++j) {
            kid& k = *kids[(rr + j) % n];
            while (auto f = k.in.next()) {
                std::size_t index = take_held(k);
                if (!opts.ordered) {
                    rr = static_cast<unsigned>((rr + j) % n);
                    return reply{index, *f};
                }
                if (index == next_deliver) {
                    ++next_deliver;
                    return reply{index, *f};
                }
                stash.emplace(index, std::string(*f));
                stash_bytes += f->size();
            }
            if (k.eof && k.from) on_kid_gone(k);
        }
        return std::nullopt;
    }

    bool anything_pending() const noexcept {
        if (total_held || !stash.empty()) return true;
        for (auto& k : kids)
            if (k->from) return closing;  // at finish we wait for every kid's EOF
        return false;
    }

    // When the first request in flight times out, if one can.
    std::optional<clock::time_point> timeout_deadline() const {
        if (opts.task_timeout.count() <= 0) return std::nullopt;
        std::optional<clock::time_point> soonest;
        for (auto& k : kids)
            if (!k->held.empty() && (!soonest || k->progress + opts.task_timeout < *soonest))
                soonest = k->progress + opts.task_timeout;
        return soonest;
    }

    // It has exited, though a process it started may still hold its stdout: take what it
    // wrote (bounded: such a process could write on), then call it ended.
    static void ended(kid& k) {
        for (int j = 0; j < 64 && !k.eof && k.from; ++j) {
            long n = k.in.fill(k.from.get());
            if (n == 0) k.eof = true;
            if (n < 0) break;
        }
        k.eof = true;
    }

    void check_timeouts() {
        if (opts.task_timeout.count() <= 0) return;
        auto now = clock::now();
        for (auto& kp : kids) {
            kid& k = *kp;
            if (k.held.empty() || now - k.progress < opts.task_timeout) continue;
            pid_t pid = k.proc.pid();
            std::size_t task = k.held.front().index;
            k.proc.kill_and_reap();
            throw timeout_error("proc_pool: kid " + std::to_string(pid) + " gave no reply to request " +
                                    std::to_string(task) + " within " +
                                    std::to_string(opts.task_timeout.count()) + " ms; killed",
                                pid, task);
        }
    }

    // One round of I/O: write what is queued, sleep in poll, read what came.
    // Returns false if nothing happened within a non-waiting poll.
    bool pump(bool wait) {
        // A kid that closed its stdin is EPIPE, not our death. Only taken when there is
        // something to write: a round trip should cost poll, write and read, little more.
        std::optional<sys::sigpipe_guard> no_sigpipe;
        struct reset_t {
            sys::sigpipe_guard*& p;
            ~reset_t() { p = nullptr; }
        } reset{sigpipe};
        for (auto& kp : kids)
            if (kp->to && kp->written < kp->out.size()) {
                sigpipe = &no_sigpipe.emplace(true);
                break;
            }
        pfds.clear();
        pfd_kid.clear();
        for (auto& kp : kids) {
            kid& k = *kp;
            if (k.to && k.written < k.out.size()) flush(k);
            else if (k.to && k.input_closed) k.to.reset();
            if (k.from && !k.eof && !k.proc.running()) ended(k);  // reaped by a wait for another
            if (k.from && !k.eof) {
                pfds.push_back({k.from.get(), POLLIN, 0});
                pfd_kid.push_back({&k, false});
                if (int fd = k.proc.pidfd(); fd >= 0) {  // also watched by the supervisor: the spin sees it too
                    pfds.push_back({fd, POLLIN, 0});
                    pfd_kid.push_back({&k, true});
                }
            }
            if (k.to && k.written < k.out.size()) {
                pfds.push_back({k.to.get(), POLLOUT, 0});
                pfd_kid.push_back({&k, false});
            }
        }
        if (pfds.empty()) return false;
        // A Ctrl-C that came while we were busy: kids that always have a reply ready within the
        // spin never let the sleeping wait below see it, so look before every round.
        if (sys::sigint_guard::fd() >= 0 && sys::sigint_guard::pending()) {
            sys::sigint_guard::clear();
            throw interrupted();
        }
        int r = 0;
        // Spin briefly first: a kid that answers within opts.spin costs no wake-up (and no
        // SIGINT guard either).
        if (wait && opts.spin.count() > 0) r = std::max(sys::spin_poll(pfds.data(), pfds.size(), opts.spin), 0);
        if (r == 0) {
            // About to sleep: Ctrl-C must then wake us (and become `interrupted`). One guard
            // serves the whole next_reply() (or the whole call that holds call_guard).
            if (wait && sys::sigint_guard::fd() < 0) wait_guard.emplace();
            auto w = sup.wait(pfds, wait ? timeout_deadline() : clock::now());
            if (w == detail::supervisor::wake::interrupted) {
                sys::sigint_guard::clear();
                throw interrupted();
            }
            if (w == detail::supervisor::wake::timeout) {
                check_timeouts();
                return false;
            }
        }
        for (std::size_t i = 0; i < pfds.size(); ++i) {
            auto [k, exited] = pfd_kid[i];
            short ev = pfds[i].revents;
            if (!ev || k->eof || !k->from) continue;  // (its pidfd, seen first, ended it)
            if (exited) {
                ended(*k);
            } else if (pfds[i].events & POLLOUT) {
                if (ev & (POLLERR | POLLHUP)) {
                    // The kid closed its stdin: it is dying; its EOF on stdout follows.
                    k->to.reset();
                } else {
                    flush(*k);
                }
            } else if (k->in.fill(k->from.get()) == 0) {
                k->eof = true;
            }
        }
        check_timeouts();
        return true;
    }

    // Any error leaves the batch in an unknown state: stop every kid, so the caller sees a
    // clean pool (a later send() starts fresh kids) and nothing is left running.
    std::optional<reply> next_reply(bool wait) {
        // At most one SIGINT guard per call, made only when a poll is about to sleep (eval and
        // final_replies hold one for the whole run): making one costs a pipe and two sigactions.
        struct drop_t {
            std::optional<sys::sigint_guard>& g;
            ~drop_t() { g.reset(); }
        } drop{wait_guard};
        try {
            return next_reply_unguarded(wait);
        } catch (...) {
            if (dash) {
                detail::dash::relaxed_set(dash->failed, dash->failed.load(std::memory_order_relaxed) + 1);
                detail::dash::note_exception(*dash, std::current_exception(), -1, 0);
            }
            shutdown(false);
            throw;
        }
    }

    std::optional<reply> next_reply_unguarded(bool wait) {
        if (!started) return std::nullopt;
        for (;;) {
            if (auto r = buffered_reply()) return r;
            if (!anything_pending()) {
                if (closing) shutdown(true);
                return std::nullopt;
            }
            if (total_held && std::none_of(kids.begin(), kids.end(), [&](auto& k) { return alive(*k); })) {
                std::vector<std::size_t> tasks;
                for (auto& k : kids)
                    for (auto& h : k->held) tasks.push_back(h.index);
                std::sort(tasks.begin(), tasks.end());
                throw worker_died(last_death_pid, last_death.signal, last_death.code, tasks,
                                  "every kid has died; " + std::to_string(tasks.size()) +
                                      " request(s) unanswered: " + list(tasks));
            }
            if (!pump(wait) && !wait) {
                if (auto r = buffered_reply()) return r;
                return std::nullopt;
            }
        }
    }

    void close_input() {
        if (!started) return;
        closing = true;
        for (auto& k : kids) k->input_closed = true;
    }

    // EOF on their stdin asks them to exit: graceful, they get the grace period to do so; then
    // the rest are stopped by the stop policy, all at once.
    void shutdown(bool graceful) noexcept {
        for (auto& k : kids) {
            k->to.reset();
            k->from.reset();
        }
        try {
            auto deadline = clock::now() + (graceful ? opts.grace : std::chrono::milliseconds(0));
            while (sup.live() > 0 && clock::now() < deadline)
                if (sup.wait({}, deadline) == detail::supervisor::wake::interrupted) break;
            sup.stop_all();
            for (auto& k : kids)  // a zygote's kids
                if (k->proc.running()) k->proc.reap(deadline, opts.grace);
        } catch (...) {
        }
        kids.clear();  // their handles kill and reap anything left
        if (dash) {
            detail::dash::relaxed_set(dash->in_flight, 0);
            detail::dash::close_pool(*dash);
            dash = nullptr;
        }
        started = false;
        closing = false;
        stash.clear();
        stash_bytes = 0;
        next_index = next_deliver = 0;
        total_held = total_held_bytes = 0;
    }
};

namespace {
// Requests go one by one to whichever kid is free; there are no chunks, no recycling and no
// progress bar here.
const options& checked(const options& o) {
    detail::reject_options(o, "parafork::proc_pool",
                           {option::chunksize, option::max_tasks_per_worker, option::progress});
    return o;
}
} // namespace

proc_pool::proc_pool(kid_fn kid, frames::framing framing, const options& opts)
    : impl_(std::make_unique<impl>(std::move(kid), framing, checked(opts))) {
    impl_->ensure_started();
}

namespace {
kid_cmd checked(kid_cmd k) {
    if (k.argv.empty() || k.argv[0].empty()) throw std::invalid_argument("proc_pool: empty command");
    return k;
}
} // namespace

proc_pool::proc_pool(kid_cmd kid, frames::framing framing, const options& opts)
    : impl_(std::make_unique<impl>(checked(std::move(kid)), framing, checked(opts))) {
    impl_->ensure_started();
}

proc_pool::~proc_pool() = default;
proc_pool::proc_pool(proc_pool&&) noexcept = default;
proc_pool& proc_pool::operator=(proc_pool&&) noexcept = default;

proc_pool::impl& proc_pool::live() const {
    if (!impl_) throw std::logic_error("parafork::proc_pool: used after it was moved from");
    return *impl_;
}

unsigned proc_pool::size() const { return live().jobs; }

std::vector<pid_t> proc_pool::pids() const {
    std::vector<pid_t> out;
    for (auto& k : live().kids)
        if (k->proc.running()) out.push_back(k->proc.pid());
    return out;
}

std::size_t proc_pool::in_flight() const { return live().total_held; }
std::size_t proc_pool::send(std::string_view request) { return live().send(request); }
std::optional<reply> proc_pool::next_reply(bool wait) { return live().next_reply(wait); }
void proc_pool::terminate() { live().shutdown(false); }
void proc_pool::close_input() { live().close_input(); }

void proc_pool::hold_sigint(bool on) {
    if (on && !live().call_guard) live().call_guard.emplace();
    if (!on) live().call_guard.reset();
}

void proc_pool::finish() {
    close_input();
    while (next_reply(true)) {
    }
    live().shutdown(true);
}

bool proc_pool::over_window() const {
    // Replies stashed in ordered mode (waiting behind a slow one) count as in flight: else a
    // slow first request would let the stash grow with the whole input.
    return live().total_held + live().stash.size() >= window_requests * live().jobs ||
           live().total_held_bytes + live().stash_bytes >= window_bytes * live().jobs;
}

void serve(int in, int out, frames::framing framing,
           const std::function<void(std::string_view, std::string&)>& fn) {
    frames::frame_reader reader(framing);
    std::string batch, rep;
    clock::time_point oldest{};  // when the oldest unsent reply was made
    auto flush = [&] {
        sys::write_all(out, batch);
        batch.clear();
    };
    for (;;) {
        while (auto req = reader.next()) {
            rep.clear();
            fn(*req, rep);
            if (batch.empty()) oldest = clock::now();
            framing.append(batch, rep);
            // Batch fast replies into big writes, but never sit on a reply for long: slow
            // requests behind it must not delay it (progress, timeouts, ordered output).
            if (batch.size() >= (64u << 10) || clock::now() - oldest >= std::chrono::microseconds(500))
                flush();
        }
        if (!batch.empty()) flush();  // before we block: the parent may be waiting for these
        if (g_serve_spin.count() > 0) {
            // A parent that sends the next request within the spin costs us no wake-up.
            pollfd p{in, POLLIN, 0};
            sys::poll_spin(&p, 1, -1, g_serve_spin);
        }
        long n = reader.fill(in);
        if (n == 0) break;
        if (n < 0) throw error("serve: input descriptor is non-blocking");
    }
    if (auto last = reader.finish()) {
        rep.clear();
        fn(*last, rep);
        framing.append(batch, rep);
        flush();
    }
}

} // namespace parafork

#include <parafork/exec/thread/generator.hpp>

#include <parafork/exec/core/supervisor.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <poll.h>
#include <span>
#include <tuple>

namespace parafork::detail {

// Messages on the channel, by their first byte: 'v' a value, 'e' the end (then the extract
// value), 'x' an exception (then its type name and message).
struct generator_base::state {
    producer_body body;
    merge_body merge;
    std::size_t read_ahead = 0;

    std::optional<channel> ch;
    supervisor sup;  // forks, watches (pidfd) and stops the producer
    supervisor::id kid = 0;
    pid_t pid = -1;
    std::deque<std::string> pending;  // values read ahead by join/try_join, not yet taken
    std::size_t pending_bytes = 0;
    bool ended = false;               // the end, the exception or the death was seen
    std::exception_ptr err;           // the producer's exception or death, at the stream's end
    bool err_thrown = false;          // next() already threw it (join then does not)
    bool died = false;
    std::string extracted;
    bool joined = false;
    const std::optional<sys::exit_status>& status() const { return sup.status(kid); }
};

namespace {

[[noreturn]] void run_producer(producer_body& body, channel& ch) noexcept {
    try {
        std::string x = body(ch);
        x.insert(x.begin(), 'e');
        ch.send_bytes(x);
    } catch (...) {
        auto info = describe_current_exception();
        try {
            std::string msg = "x" + wire::encode(std::make_pair(info.type, info.what));
            ch.send_bytes(msg);
        } catch (...) {
            sys::exit_child(1);
        }
    }
    sys::exit_child(0);
}

// Handles one message; false for anything that is not a value (the value stays in `msg`).
bool take(generator_base::state& s, std::string& msg, pid_t pid) {
    if (msg.empty()) throw protocol_error("parafork: empty generator message");
    switch (msg[0]) {
    case 'v': return true;
    case 'e':
        s.ended = true;
        s.extracted.assign(msg, 1);
        return false;
    case 'x': {
        auto [type, what] = wire::decode<std::pair<std::string, std::string>>(std::string_view(msg).substr(1));
        s.ended = true;
        s.err = std::make_exception_ptr(remote_error(std::move(type), std::move(what), pid));
        return false;
    }
    default: throw protocol_error("parafork: bad generator message");
    }
}

} // namespace

generator_base::generator_base() noexcept = default;
generator_base::generator_base(generator_base&&) noexcept = default;
generator_base& generator_base::operator=(generator_base&&) noexcept = default;
generator_base::~generator_base() = default;

generator_base::generator_base(producer_body body, merge_body merge, std::size_t read_ahead)
    : st_(std::make_unique<state>()) {
    st_->body = std::move(body);
    st_->merge = std::move(merge);
    st_->read_ahead = read_ahead;
}

void generator_base::start() {
    if (!st_) throw error("parafork::generator: empty generator");
    if (st_->pid > 0) throw error("parafork::generator: already started");
    auto& s = *st_;
    s.ch.emplace(s.read_ahead);
    s.kid = s.sup.fork([&s] { run_producer(s.body, *s.ch); });
    s.pid = s.sup.pid(s.kid);
}

bool generator_base::started() const noexcept { return st_ && st_->pid > 0; }
bool generator_base::joined() const noexcept { return st_ && st_->joined; }
pid_t generator_base::pid() const noexcept { return st_ ? st_->pid : -1; }

bool generator_base::done() const noexcept {
    return st_ && st_->ended && st_->pending.empty() && (!st_->err || st_->err_thrown);
}

sys::exit_status generator_base::status() const {
    if (!started() || !st_->status()) throw error("parafork::generator: not joined");
    return *st_->status();
}

int generator_base::exit_status() const { return status().as_int(); }

namespace {

// Notes the producer's exit without sleeping; true while it runs.
bool look(generator_base::state& s) {
    if (s.sup.alive(s.kid)) s.sup.wait({}, supervisor::clock::now());
    return s.sup.alive(s.kid);
}

} // namespace

bool generator_base::is_alive() { return started() && look(*st_); }

namespace {

// A message if one is ready. A closed channel (every end gone) is no message: the producer's
// exit status says what happened.
bool poll_message(channel& ch, std::string& msg) {
    try {
        return ch.try_receive_bytes(msg);
    } catch (const channel_closed&) {
        return false;
    }
}

// One sleep: until `fds` are ready or the producer exits; Ctrl-C stops it and throws.
void sleep_once(generator_base::state& s, std::span<pollfd> fds) {
    if (s.sup.wait(fds, std::nullopt) != supervisor::wake::interrupted) return;
    sys::sigint_guard::clear();
    s.sup.stop(s.kid);
    s.ended = s.died = true;
    s.err = std::make_exception_ptr(interrupted());
    throw interrupted();
}

bool pump(generator_base::state& s, std::string& msg, bool block) {
    pid_t pid = s.pid;
    channel& ch = *s.ch;
    if (poll_message(ch, msg)) return take(s, msg, pid);
    // A producer usually sends within microseconds: look again for a while before sleeping, as
    // the channel's own waits do. A sleep costs the Ctrl-C guard, the producer's eventfd write
    // and a wake-up, which on a busy machine waits in the run queue behind other processes.
    if (block && detail::channel_spin(ch, 0) && poll_message(ch, msg)) return take(s, msg, pid);
    std::optional<sys::sigint_guard> guard;  // only once we really wait
    for (;;) {
        if (block && s.sup.alive(s.kid)) {
            if (!guard) guard.emplace();
            // Until a value comes (the channel's eventfd), the producer exits or Ctrl-C.
            if (int fd = detail::channel_arm(ch, 0); fd >= 0) {
                struct disarm {
                    channel& ch;
                    ~disarm() { detail::channel_disarm(ch, 0); }
                } armed{ch};
                pollfd p{fd, POLLIN, 0};
                sleep_once(s, {&p, 1});
            }
            if (poll_message(ch, msg)) return take(s, msg, pid);
        }
        // Nothing came: is the producer still there?
        if (!look(s)) {
            // It wrote everything before it exited: what is in the ring is all there is.
            if (poll_message(ch, msg)) return take(s, msg, pid);
            const sys::exit_status& st = *s.status();
            s.ended = s.died = true;
            s.err = std::make_exception_ptr(
                worker_died(pid, st.signal, st.code, std::nullopt, "generator producer ended without finishing"));
            return false;
        }
        if (!block) return false;
    }
}

} // namespace

bool generator_base::next_raw(std::string& out, bool block) {
    if (!started()) throw error("parafork::generator: not started");
    auto& s = *st_;
    for (;;) {
        if (!s.pending.empty()) {
            out = std::move(s.pending.front());
            s.pending.pop_front();
            s.pending_bytes -= out.size();
            return true;
        }
        if (s.ended) {
            if (s.err && !s.err_thrown) {
                s.err_thrown = true;
                std::rethrow_exception(s.err);
            }
            return false;
        }
        if (pump(s, out, block)) return true;
        if (!block && !s.ended) return false;
    }
}

namespace {

// After the stream's end: the producer exits right after sending it.
void finish_join(generator_base::state& s) {
    if (s.sup.alive(s.kid)) {
        sys::sigint_guard guard;
        while (s.sup.alive(s.kid)) sleep_once(s, {});
    }
    s.joined = true;
    s.ch.reset();
    if (!s.err && s.merge) s.merge(s.extracted);  // user code: its exception goes to the caller
}

} // namespace

namespace {

// join/try_join keep the values nobody took yet for next(), up to a bound: a producer that
// yields on and on past it is stopped, and the caller told, rather than held without limit.
constexpr std::size_t max_pending_bytes = std::size_t{64} << 20;

void hold(generator_base::state& s, std::string&& msg) {
    s.pending_bytes += msg.size();
    s.pending.push_back(std::move(msg));
    if (s.pending_bytes <= max_pending_bytes) return;
    s.sup.stop(s.kid);
    s.ended = s.died = true;
    s.err = std::make_exception_ptr(error(
        "parafork::generator: the producer was stopped: join() would have held more than 64 MiB "
        "of values nobody took (take them with next() before joining)"));
}

} // namespace

void generator_base::join() {
    if (!started()) throw error("parafork::generator: not started");
    auto& s = *st_;
    if (!s.joined) {
        // Values nobody took yet are kept for next(); the producer must be able to finish.
        std::string msg;
        while (!s.ended)
            if (pump(s, msg, true)) hold(s, std::move(msg));
        finish_join(s);
    }
    // A death is join's to report too. A producer's exception is next()'s to throw at its
    // item; one the consumer never reached is join's as well, as a thread's join reports it.
    if (s.err && (s.died || !s.err_thrown)) std::rethrow_exception(s.err);
}

bool generator_base::try_join() {
    if (!started()) throw error("parafork::generator: not started");
    auto& s = *st_;
    if (!s.joined) {
        std::string msg;
        while (!s.ended) {
            if (pump(s, msg, false)) hold(s, std::move(msg));
            else if (!s.ended) return false;
        }
        if (look(s)) return false;
        finish_join(s);
    }
    if (s.err && (s.died || !s.err_thrown)) std::rethrow_exception(s.err);
    return true;
}

} // namespace parafork::detail

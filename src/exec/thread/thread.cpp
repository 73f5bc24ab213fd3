#include <parafork/exec/thread/thread.hpp>

#include "../../dashboard/hub.hpp"

#include <parafork/exec/core/supervisor.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/large.hpp>

#include <cstring>
#include <poll.h>
#include <tuple>

namespace parafork {
namespace detail {

// The child's report: (0, result, extracted) or (1, type name, what).
using report = std::tuple<std::uint8_t, std::string, std::string>;

// A report larger than this goes into the memfd the parent made before the fork (sealed by the
// child, mapped by the parent), and the pipe carries only spilled_mark and its size: a 64 KiB
// pipe would take one hand-over between the two processes per 64 KiB, and the parent's buffer
// would grow by copies.
constexpr std::size_t spill_above = std::size_t{256} << 10;
constexpr char spilled_mark = '\xff';  // never a report's first byte (its kind is 0 or 1)
constexpr std::size_t spilled_size = 1 + sizeof(std::uint64_t);

struct thread_state {
    child_body body;
    merge_body merge;
    const std::type_info* result_type = nullptr;

    sys::private_fd pipe;  // read end of the child's report
    sys::private_fd spill;  // where a large report goes (see spill_above)
    supervisor sup;        // forks, watches (pidfd) and stops the child
    supervisor::id kid = 0;
    pid_t pid = -1;
    std::string buf;
    bool eof = false;
    bool done = false;  // joined: status, result or err are final
    std::string result;
    std::exception_ptr err;
    dash::pool_slot* dash = nullptr;  // the dashboard's view of this thread; null: off

    thread_state() = default;
    thread_state(const thread_state&) = delete;
    thread_state& operator=(const thread_state&) = delete;
    ~thread_state() { shown_done(); }
    // The child's end, on the dashboard: answered, failed or died; then the slot is finished.
    void shown_done() noexcept {
        if (!dash) return;
        dash::relaxed_set(dash->in_flight, 0);
        if (done && !err) {
            dash::relaxed_set(dash->done, 1);
            dash::worker_answered(*dash, 0, 1);
            dash::worker_idle(*dash, 0, dash::now_ns());
        } else if (err) {
            dash::relaxed_set(dash->failed, 1);
            dash::note_exception(*dash, err, pid, 0);
        }
        bool died = false;
        try {
            if (pid > 0)
                if (const auto& st = sup.status(kid); st && !st->ok()) died = true;
        } catch (...) {
        }
        if (died) {
            dash::relaxed_set(dash->deaths, 1);
            dash::worker_gone(*dash, 0);
        }
        dash::close_pool(*dash);
        dash = nullptr;
    }
};

namespace {

// Puts a large report into the memfd and seals it; false if that cannot be done (a process
// the user's code forked may map it writable, which forbids the seal): then the pipe takes it.
bool spill_report(int spill, const std::string& msg) noexcept {
    try {
        sys::write_all(spill, msg);
        sys::seal_memfd(spill);
        return true;
    } catch (...) {
        return false;
    }
}

[[noreturn]] void run_child(child_body& body, int fd, int spill) noexcept {
    // Our report pipe and memfd must not leak into processes the user's code forks.
    sys::register_private_fd(fd);
    sys::register_private_fd(spill);
    std::string msg;
    try {
        auto [r, x] = body();
        msg = wire::encode(report{0, std::move(r), std::move(x)});
    } catch (...) {
        auto info = describe_current_exception();
        try {
            msg = wire::encode(report{1, std::move(info.type), std::move(info.what)});
        } catch (...) {
            sys::exit_child(1);
        }
    }
    try {
        if (msg.size() > spill_above && spill_report(spill, msg)) {
            char mark[spilled_size] = {spilled_mark};
            const std::uint64_t n = msg.size();
            std::memcpy(mark + 1, &n, sizeof n);
            sys::write_all(fd, std::string_view(mark, sizeof mark));
        } else {
            sys::write_all(fd, msg);
        }
    } catch (...) {
        sys::exit_child(1);  // the parent is gone
    }
    sys::exit_child(0);
}

// Reads what the pipe holds, until it would block or its end.
void drain(thread_state& s) {
    while (!s.eof) {
        std::size_t at = s.buf.size();
        s.buf.resize(at + 65536);
        long n = sys::read_some(s.pipe.get(), s.buf.data() + at, 65536);
        s.buf.resize(at + (n > 0 ? static_cast<std::size_t>(n) : 0));
        if (n == 0) s.eof = true;
        if (n < 0) return;
    }
}

// The child has exited and was reaped: all it wrote is in the pipe.
void finish(thread_state& s) {
    drain(s);
    s.pipe.reset();
    sys::private_fd spill = std::move(s.spill);
    s.done = true;
    const sys::exit_status& st = *s.sup.status(s.kid);
    try {
        wire::large_view spilled;
        std::string_view bytes = s.buf;
        if (s.buf.size() == spilled_size && s.buf[0] == spilled_mark) {
            std::uint64_t n;
            std::memcpy(&n, s.buf.data() + 1, sizeof n);
            // Refused (protocol_error) unless sealed and exactly that long.
            spilled = wire::map_sealed_memfd(spill.release(), static_cast<std::size_t>(n));
            bytes = spilled.bytes();
        }
        auto [kind, a, b] = wire::decode<report>(bytes);
        if (kind == 1) {
            s.err = std::make_exception_ptr(remote_error(std::move(a), std::move(b), s.pid));
        } else if (kind == 0) {
            s.result = std::move(a);
            std::string().swap(s.buf);
            s.shown_done();
            if (s.merge) s.merge(b);  // user code: its exception goes to the join caller
            return;
        } else {
            throw protocol_error("bad report kind");
        }
    } catch (const protocol_error&) {
        s.err = std::make_exception_ptr(
            worker_died(s.pid, st.signal, st.code, std::nullopt,
                        s.buf.empty() ? "thread ended without a result" : "thread sent a corrupt result"));
    }
    std::string().swap(s.buf);
    s.shown_done();
}

// Reads the pipe and notes an exit, without sleeping; true once the child was reaped.
bool look(thread_state& s) {
    drain(s);
    if (s.sup.alive(s.kid)) s.sup.wait({}, supervisor::clock::now());
    return !s.sup.alive(s.kid);
}

thread_state& need_started(const std::unique_ptr<thread_state>& st) {
    if (!st || st->pid <= 0) throw error("parafork::thread: not started");
    return *st;
}

} // namespace
} // namespace detail

using detail::thread_state;

thread::thread() noexcept = default;
thread::thread(thread&&) noexcept = default;
thread& thread::operator=(thread&&) noexcept = default;
thread::~thread() = default;

thread::thread(detail::child_body body, detail::merge_body merge, const std::type_info* result_type)
    : st_(std::make_unique<thread_state>()) {
    st_->body = std::move(body);
    st_->merge = std::move(merge);
    st_->result_type = result_type;
}

void thread::start() {
    if (!st_) throw error("parafork::thread: empty thread");
    if (st_->pid > 0) throw error("parafork::thread: already started");
    auto [rd, wr] = sys::make_pipe();
    sys::private_fd read_end(std::move(rd));  // later children close it at once
    sys::unique_fd spill = sys::make_memfd("parafork-thread", 0);  // the child writes it
    auto& s = *st_;
    // Before the fork: a dashboard server started now holds none of this child's descriptors.
    if (!s.dash) s.dash = detail::dash::attach(options{}, "thread", 1, 1);
    try {
        s.kid = s.sup.fork([&s, fd = wr.get(), sp = spill.get()] { detail::run_child(s.body, fd, sp); });
    } catch (...) {
        s.shown_done();
        throw;
    }
    wr.reset();
    sys::set_nonblocking(read_end.get());
    s.pid = s.sup.pid(s.kid);
    if (s.dash) {
        detail::dash::worker_started(*s.dash, 0, s.pid);
        detail::dash::worker_busy(*s.dash, 0, 0, detail::dash::now_ns());
        detail::dash::relaxed_set(s.dash->in_flight, 1);
    }
    s.pipe = std::move(read_end);
    s.spill = sys::private_fd(std::move(spill));  // children forked later close it
}

void thread::join() {
    auto& s = detail::need_started(st_);
    if (!s.done) {
        sys::sigint_guard guard;
        // The child's pidfd, not end of file, tells of its end: a grandchild that inherited
        // the pipe's write end keeps it open. The pipe is read as it fills.
        while (s.sup.alive(s.kid)) {
            detail::drain(s);
            pollfd fd{s.pipe.get(), POLLIN, 0};
            auto w = s.sup.wait({&fd, s.eof ? 0u : 1u}, std::nullopt);
            if (w == detail::supervisor::wake::interrupted) {
                sys::sigint_guard::clear();
                s.sup.stop(s.kid);
                s.pipe.reset();
                s.done = true;
                s.err = std::make_exception_ptr(interrupted());
                s.shown_done();
                break;
            }
        }
        if (!s.done) detail::finish(s);
    }
    if (s.err) std::rethrow_exception(s.err);
}

bool thread::try_join() {
    auto& s = detail::need_started(st_);
    if (!s.done) {
        if (!detail::look(s)) return false;  // still running
        detail::finish(s);
    }
    if (s.err) std::rethrow_exception(s.err);
    return true;
}

bool thread::is_alive() {
    if (!st_ || st_->pid <= 0 || st_->done) return false;
    return !detail::look(*st_);  // a child blocked writing a large report is alive until we read it
}

bool thread::started() const noexcept { return st_ && st_->pid > 0; }
bool thread::joined() const noexcept { return st_ && st_->done; }
pid_t thread::pid() const noexcept { return st_ ? st_->pid : -1; }

sys::exit_status thread::status() const {
    if (!st_ || !st_->done || !st_->sup.status(st_->kid)) throw error("parafork::thread: not joined");
    return *st_->sup.status(st_->kid);
}

int thread::exit_status() const { return status().as_int(); }

std::string_view thread::result_bytes(const std::type_info& want) {
    auto& s = detail::need_started(st_);
    if (*s.result_type != want) throw std::bad_cast();
    join();
    return s.result;
}

} // namespace parafork

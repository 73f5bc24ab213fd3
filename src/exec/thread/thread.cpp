#include <parafork/exec/thread/thread.hpp>

#include <parafork/exec/core/supervisor.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <poll.h>
#include <tuple>

namespace parafork {
namespace detail {

// The child's report: (0, result, extracted) or (1, type name, what).
using report = std::tuple<std::uint8_t, std::string, std::string>;

struct thread_state {
    child_body body;
    merge_body merge;
    const std::type_info* result_type = nullptr;

    sys::private_fd pipe;  // read end of the child's report
    supervisor sup;        // forks, watches (pidfd) and stops the child
    supervisor::id kid = 0;
    pid_t pid = -1;
    std::string buf;
    bool eof = false;
    bool done = false;  // joined: status, result or err are final
    std::string result;
    std::exception_ptr err;
};

namespace {

[[noreturn]] void run_child(child_body& body, int fd) noexcept {
    // Our report pipe must not leak into processes the user's code forks.
    sys::register_private_fd(fd);
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
        sys::write_all(fd, msg);
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
    s.done = true;
    const sys::exit_status& st = *s.sup.status(s.kid);
    try {
        auto [kind, a, b] = wire::decode<report>(s.buf);
        if (kind == 1) {
            s.err = std::make_exception_ptr(remote_error(std::move(a), std::move(b), s.pid));
        } else if (kind == 0) {
            s.result = std::move(a);
            std::string().swap(s.buf);
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
    auto& s = *st_;
    s.kid = s.sup.fork([&s, fd = wr.get()] { detail::run_child(s.body, fd); });
    wr.reset();
    sys::set_nonblocking(read_end.get());
    s.pid = s.sup.pid(s.kid);
    s.pipe = std::move(read_end);
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

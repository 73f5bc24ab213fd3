#include <parafork/exec/thread/thread.hpp>

#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <cerrno>
#include <cstdlib>
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
    sys::child child;
    sys::unique_fd pidfd;  // readable once the child is gone, whoever still holds the pipe
    std::string buf;
    bool done = false;  // joined: status, result or err are final
    std::optional<sys::exit_status> status;
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

// Reads what the pipe holds; true at end of file.
bool drain(thread_state& s) {
    for (;;) {
        std::size_t at = s.buf.size();
        s.buf.resize(at + 65536);
        long n = sys::read_some(s.pipe.get(), s.buf.data() + at, 65536);
        s.buf.resize(at + (n > 0 ? static_cast<std::size_t>(n) : 0));
        if (n == 0) return true;
        if (n < 0) return false;
    }
}

void finish(thread_state& s) {
    s.pipe.reset();
    s.done = true;
    pid_t pid = s.child.pid();
    try {
        auto [kind, a, b] = wire::decode<report>(s.buf);
        if (kind == 1) {
            s.err = std::make_exception_ptr(remote_error(std::move(a), std::move(b), pid));
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
            worker_died(pid, s.status->signal, s.status->code, std::nullopt,
                        s.buf.empty() ? "thread ended without a result" : "thread sent a corrupt result"));
    }
    std::string().swap(s.buf);
}

thread_state& need_started(const std::unique_ptr<thread_state>& st) {
    if (!st || st->child.pid() <= 0) throw error("parafork::thread: not started");
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
    if (st_->child.pid() > 0) throw error("parafork::thread: already started");
    auto [rd, wr] = sys::make_pipe();
    sys::private_fd read_end(std::move(rd));  // later children close it at once
    pid_t pid = sys::fork_process();
    if (pid == 0) detail::run_child(st_->body, wr.get());
    wr.reset();
    sys::set_nonblocking(read_end.get());
    st_->child = sys::child(pid);
    st_->pipe = std::move(read_end);
    st_->pidfd = sys::open_pidfd(pid);
}

void thread::join() {
    auto& s = detail::need_started(st_);
    if (!s.done) {
        sys::sigint_guard guard;
        // Done at end of file or when the child is gone: a grandchild that inherited the
        // pipe's write end keeps it open, so the pidfd, not end of file, tells of a death.
        // Once the child has exited, all it wrote is in the pipe.
        for (;;) {
            if (detail::drain(s)) break;
            if (auto st = s.child.try_wait()) {
                s.status = st;
                detail::drain(s);
                break;
            }
            pollfd fds[3] = {{s.pipe.get(), POLLIN, 0},
                             {sys::sigint_guard::fd(), POLLIN, 0},
                             {s.pidfd.get(), POLLIN, 0}};
            // Without a pidfd (a kernel before 5.3, or out of descriptors), look again now and then.
            int n = ::poll(fds, s.pidfd ? 3 : 2, s.pidfd ? -1 : 50);
            if (n < 0 && errno != EINTR) sys::throw_errno("poll");
            if (sys::sigint_guard::pending()) {
                sys::sigint_guard::clear();
                s.status = s.child.terminate();
                s.pipe.reset();
                s.pidfd.reset();
                s.done = true;
                s.err = std::make_exception_ptr(interrupted());
                break;
            }
        }
        if (!s.done) {
            if (!s.status) s.status = s.child.wait();
            s.pidfd.reset();
            detail::finish(s);
        }
    }
    if (s.err) std::rethrow_exception(s.err);
}

bool thread::try_join() {
    auto& s = detail::need_started(st_);
    if (!s.done) {
        bool eof = detail::drain(s);
        auto st = s.child.try_wait();
        if (!st) return false;  // still running, or the report is in and it is on its way out
        if (!eof) detail::drain(s);  // what it wrote before exiting; a grandchild may hold the pipe
        s.status = st;
        s.pidfd.reset();
        detail::finish(s);
    }
    if (s.err) std::rethrow_exception(s.err);
    return true;
}

bool thread::is_alive() {
    if (!st_ || st_->child.pid() <= 0 || st_->done) return false;
    detail::drain(*st_);  // a child blocked writing a large report is alive until we read it
    return !st_->child.try_wait();
}

bool thread::started() const noexcept { return st_ && st_->child.pid() > 0; }
bool thread::joined() const noexcept { return st_ && st_->done; }
pid_t thread::pid() const noexcept { return st_ ? st_->child.pid() : -1; }

int thread::exit_status() const {
    if (!st_ || !st_->done || !st_->status) throw error("parafork::thread: not joined");
    return st_->status->as_int();
}

std::string_view thread::result_bytes(const std::type_info& want) {
    auto& s = detail::need_started(st_);
    if (*s.result_type != want) throw std::bad_cast();
    join();
    return s.result;
}

} // namespace parafork

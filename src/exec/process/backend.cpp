// The backend of process<Actor>: the forked child's loop. It reads task frames, runs them one at
// a time in send order, and answers asks. Answers are gathered and written together: before the
// backend blocks for more input, when 64 KiB are held, or when an answer has waited 200 us
// behind later tasks (so a slow call never holds back the answer to an earlier ask). With the
// ring empty it watches the ring for options.spin before it sleeps on the socket: a frontend
// that sends its next task within microseconds then spares both sides an idle CPU's wake-up.
#include "state.hpp"

#include <parafork/sys/process.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <typeinfo>
#include <vector>

namespace parafork::detail {
namespace {

using clock = std::chrono::steady_clock;
constexpr std::size_t out_limit = 64 * 1024;
constexpr auto out_max_age = std::chrono::microseconds(200);
constexpr std::size_t drain_chunk = 64 * 1024;  // ring bytes taken at a time

struct backend {
    int sock;
    std::string out;
    std::string reply;  // the running ask's answer
    clock::time_point out_since{};
    std::size_t emit_start = 0;
    std::deque<sys::unique_fd> fds;  // received, not yet given to a task
    std::vector<sys::unique_fd> task_fds;  // the running task's (decoded in its fds scope)

    void flush() {
        std::size_t off = 0;
        while (off < out.size()) {
            long n = sys::send_some(sock, out.data() + off, out.size() - off);
            if (n >= 0) {
                off += static_cast<std::size_t>(n);
                continue;
            }
            // The frontend is gone (it closed its end or died): nobody is left to serve.
            sys::exit_child(0);
        }
        out.clear();
    }

    void note_output() {
        if (out.size() >= out_limit) flush();
    }

    // Before a task: an answer that has waited long enough goes now.
    void flush_stale() {
        if (out.empty()) return;
        auto now = clock::now();
        if (out_since == clock::time_point{}) out_since = now;
        else if (now - out_since >= out_max_age) {
            flush();
            out_since = {};
        }
    }

    void append_error(char kind, std::uint64_t task) {
        auto [type, what] = describe_current_exception();
        std::size_t start = proto::open_frame(out, kind);
        wire::writer w(out);
        w(task, type, what);
        proto::close_frame(out, start);
    }

    // Reads the socket once (blocking): wake-up bytes, descriptors sent ahead of their
    // frames (queued in `fds`). Returns false at EOF: the frontend is gone.
    bool read_socket() {
        char buf[4096];
        std::vector<sys::unique_fd> got;
        std::size_t n = sys::recv_with_fds(sock, buf, sizeof buf, got);
        for (auto& fd : got) fds.push_back(std::move(fd));
        return n > 0;
    }
};

backend* g_backend = nullptr;

} // namespace

std::string& emit_begin(std::uint64_t tag) {
    if (!g_backend) throw error("parafork: emit() called outside a process backend");
    outgoing_fds().clear();
    g_backend->emit_start = proto::open_frame(g_backend->out, proto::msg);
    proto::put_u64(g_backend->out, tag);
    return g_backend->out;
}

void emit_end() {
    if (!outgoing_fds().empty()) {
        outgoing_fds().clear();
        emit_abort();
        throw error("parafork: descriptors cannot be emitted, only passed to a backend");
    }
    proto::close_frame(g_backend->out, g_backend->emit_start);
    // Messages go at once: a long method's progress reports must not wait for it to end.
    g_backend->flush();
    g_backend->out_since = {};
}

void emit_abort() noexcept {
    if (g_backend) g_backend->out.resize(g_backend->emit_start);
}

void run_backend(int sock, void* ring, const backend_hooks& hooks, const options& opts) {
    // Our end of the socket and our ring must not leak into children this backend forks.
    sys::register_private_fd(sock);
    sys::dont_fork(ring, ring_map_size);
    int code = 0;
    try {
        backend b{sock, {}, {}, {}, 0, {}, {}};
        g_backend = &b;
        frames::frame_reader in(frames::len_prefix, 64 * 1024);
        auto* h = static_cast<ring_header*>(ring);
        const char* data = static_cast<const char*>(ring) + sizeof(ring_header);
        std::uint64_t head = h->head.load(std::memory_order_relaxed);
        bool eof = false;

        try {
            if (opts.worker_init) opts.worker_init();
            if (hooks.pre_run) hooks.pre_run(hooks.actor);
        } catch (...) {
            b.append_error(proto::call_error, proto::no_task);
            b.flush();
            sys::exit_child(1);
        }

        std::uint64_t task = 0;
        bool stop = false;
        while (!stop) {
            while (auto frame = in.next()) {
                wire::reader r(*frame);
                char kind;
                r.read_bytes(&kind, 1);
                if (kind == proto::stop) {
                    stop = true;
                    break;
                }
                if (kind != proto::call && kind != proto::ask)
                    wire::reader::fail("unknown frame kind from the frontend");
                unsigned char nfds;
                r.read_bytes(&nfds, 1);
                // This task's descriptors: what it does not take is closed after it.
                b.task_fds.clear();
                // They were sent ahead of the frame: on the socket by now, if not yet read.
                while (b.fds.size() < nfds && !eof)
                    if (!b.read_socket()) eof = true;
                for (unsigned i = 0; i < nfds && !b.fds.empty(); ++i) {
                    b.task_fds.push_back(std::move(b.fds.front()));
                    b.fds.pop_front();
                }
                std::uint64_t addr;
                r.read_bytes(&addr, sizeof addr);
                // The frontend is our own parent, the same binary: the address is a trampoline
                // it instantiated (see exec/process/process.hpp).
                auto t = reinterpret_cast<trampoline>(addr);
                incoming_fds_scope task_fd_scope(b.task_fds);  // what passed_fd arguments take
                b.flush_stale();
                if (kind == proto::call) {
                    try {
                        t(hooks.actor, r, nullptr);
                    } catch (...) {
                        b.append_error(proto::call_error, task);
                    }
                } else {
                    // The answer is encoded apart: a method that emits writes whole frames to
                    // `out` (and sends them) while it runs, before its answer exists.
                    b.reply.clear();
                    try {
                        t(hooks.actor, r, &b.reply);
                        std::size_t start = proto::open_frame(b.out, proto::reply);
                        proto::put_u64(b.out, task);
                        b.out += b.reply;
                        proto::close_frame(b.out, start);
                    } catch (...) {
                        b.append_error(proto::ask_error, task);
                    }
                }
                b.task_fds.clear();
                ++task;
                b.note_output();
            }
            if (stop) break;
            std::uint64_t tail = h->tail.load(std::memory_order_acquire);
            if (tail != head) {
                std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(tail - head, drain_chunk));
                std::size_t pos = static_cast<std::size_t>(head % ring_capacity);
                std::size_t first = std::min(n, ring_capacity - pos);
                in.feed(std::string_view(data + pos, first));
                if (n > first) in.feed(std::string_view(data, n - first));
                head += n;
                h->head.store(head, std::memory_order_release);
                std::atomic_thread_fence(std::memory_order_seq_cst);
                if (h->frontend_waiting.load(std::memory_order_relaxed) && h->frontend_waiting.exchange(0)) {
                    proto::close_frame(b.out, proto::open_frame(b.out, proto::wake));
                    b.flush();
                    b.out_since = {};
                }
                continue;
            }
            if (eof) break;  // the frontend is gone and nothing it wrote is left
            b.flush();
            b.out_since = {};
            // The ring, not the socket, is where the next frame appears: watching it costs no
            // system call (a yield lets another runnable process on this CPU go first).
            if (opts.spin.count() > 0) {
                auto until = clock::now() + opts.spin;
                while (h->tail.load(std::memory_order_acquire) == head && clock::now() < until)
                    ::sched_yield();
                if (h->tail.load(std::memory_order_acquire) != head) continue;
            }
            h->backend_sleeping.store(1, std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_seq_cst);
            if (h->tail.load(std::memory_order_acquire) == head && !b.read_socket()) eof = true;
            h->backend_sleeping.store(0, std::memory_order_relaxed);
        }

        try {
            if (hooks.post_run) hooks.post_run(hooks.actor);
            if (opts.worker_exit) opts.worker_exit();
        } catch (...) {
            b.append_error(proto::call_error, proto::no_task);
            code = 1;
        }
        b.flush();
        g_backend = nullptr;
    } catch (...) {
        code = sys::report_child_exception();
    }
    sys::exit_child(code);
}

} // namespace parafork::detail

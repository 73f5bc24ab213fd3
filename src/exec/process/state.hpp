#pragma once
// Internals of process<Actor> shared by the frontend (process_base.cpp), the backend
// (process_backend.cpp) and the selector: the wire protocol and the frontend's state.
//
// Frontend -> backend frames go through a ring in shared memory (made before the fork), so a
// call costs a copy, not a system call, while the backend is busy; the socket then carries
// only wake-up bytes (when the backend sleeps) and descriptors (SCM_RIGHTS, sent before the
// frame that uses them). Backend -> frontend frames go over the socket. The backend learns of the
// frontend's end by EOF on the socket; the frontend forks the backend through a supervisor and
// learns of its end by its pidfd, since a child the backend forked may still hold the
// backend's end of the socket.
//
// Every frame is frames::len_prefix (8-byte length, then the payload); a payload starts with a
// kind byte. Tasks (calls and asks) are numbered by both sides in send order, so no frame
// carries its number downwards; answers carry it back for checking.
//   frontend -> backend   'c' nfds trampoline member-bytes args a call
//                         'a' nfds trampoline member-bytes args an ask
//                         's'                                   leave the loop
// (nfds: a byte, the descriptors sent with the frame's first bytes for passed_fd arguments)
//   backend -> frontend   'r' task result                       an ask's answer
//                         'e' task type what                    an ask that threw
//                         'E' task type what                    a call (or pre/post_run) that threw
//                         'm' tag bytes                         emit(value)
//                         'w'                                   ring space freed (a wake-up)

#include <parafork/exec/core/supervisor.hpp>
#include <parafork/exec/process/detail/base.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/wire/frames.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace parafork::detail {

namespace dash {
struct pool_slot;  // the dashboard's counters (src/dashboard/hub.hpp)
}

namespace proto {
constexpr char call = 'c', ask = 'a', stop = 's';
constexpr char reply = 'r', ask_error = 'e', call_error = 'E', msg = 'm', wake = 'w';
constexpr std::uint64_t no_task = ~std::uint64_t{0};
constexpr std::size_t header = 8;
constexpr std::size_t max_fds = 16;  // descriptors per task frame

inline std::size_t open_frame(std::string& out, char kind) {
    std::size_t start = out.size();
    out.append(header, '\0');
    out.push_back(kind);
    return start;
}
inline void close_frame(std::string& out, std::size_t start) {
    std::uint64_t n = out.size() - start - header;
    std::memcpy(out.data() + start, &n, header);
}
inline void put_u64(std::string& out, std::uint64_t v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
} // namespace proto

// The frontend -> backend byte stream. tail and head only grow; each side writes one of them.
// A side about to sleep raises its flag, then re-checks the ring (with a full fence between,
// as the other side has between moving its counter and reading the flag): one of the two always
// sees the other, so no wake-up is lost.
struct ring_header {
    alignas(64) std::atomic<std::uint64_t> tail{0};
    alignas(64) std::atomic<std::uint64_t> head{0};
    alignas(64) std::atomic<std::uint32_t> backend_sleeping{0};
    alignas(64) std::atomic<std::uint32_t> frontend_waiting{0};
};
constexpr std::size_t ring_capacity = 256 * 1024;
constexpr std::size_t ring_map_size = sizeof(ring_header) + ring_capacity;
inline ring_header* ring_head(const sys::mapping& m) noexcept { return static_cast<ring_header*>(m.data()); }
inline char* ring_data(const sys::mapping& m) noexcept {
    return static_cast<char*>(m.data()) + sizeof(ring_header);
}

struct inbox_item {
    message msg;
    std::exception_ptr error;  // set: a call that threw in the backend
};

// The frontend's state; shared by the process object, its futures (as their driver) and the
// selectors that watch it.
struct process_state final : future_driver {
    enum class phase : std::uint8_t { idle, running, stopping, finished };

    explicit process_state(options o) : opts(std::move(o)), sup(stop_policy{SIGTERM, opts.grace}) {}

    options opts;
    phase ph = phase::idle;
    sys::private_fd sock;           // frontend's end (non-blocking)
    sys::mapping ring;              // ring_header + ring_capacity bytes, shared with the backend
    supervisor sup;                 // forks, watches and stops the backend
    supervisor::id kid = 0;
    pid_t pid = -1;
    frames::frame_reader in{frames::len_prefix, 4096};
    std::string out;                // frames not yet written
    std::size_t out_off = 0;        // bytes of `out` already written
    std::uint64_t next_task = 0;
    std::deque<std::pair<std::uint64_t, std::shared_ptr<answer_slot>>> pending;
    std::deque<inbox_item> inbox;
    int batch_depth = 0;
    std::optional<sys::exit_status> status;
    bool terminated = false;        // ended by terminate(): not a surprise
    bool reported = false;          // the user has seen an error about its end
    std::chrono::steady_clock::time_point alive_checked{};  // the last look at pidfd by a call
    std::optional<clock::time_point> stop_by;  // sent its stop signal: the end of its grace
    // ready_fd(): an epoll of sock, pidfd and ready_ev, made on first use; ready_ev is kept
    // readable exactly while a message waits in the inbox or the backend has ended.
    sys::private_fd ready_ep;
    sys::private_fd ready_ev;
    bool ready_on = false;
    dash::pool_slot* dash = nullptr;  // this backend on the dashboard; null: off

    bool out_pending() const noexcept { return out_off < out.size(); }
    bool died() const noexcept { return status && !status->ok() && !terminated; }
    bool live() const noexcept { return ph == phase::running || ph == phase::stopping; }
    // The backend's pidfd while it lives, else -1 (ignored by poll).
    int pidfd() const { return live() ? sup.pidfd(kid) : -1; }

    // future_driver (src/exec/process/future.cpp): a wait runs this frontend.
    bool wait(const answer_slot& slot, std::optional<clock::time_point> deadline) override;
    std::optional<clock::time_point> watch(std::vector<pollfd>& fds) override;
    bool poll() override;
    void interrupt() noexcept override;
    void interrupt_begin() noexcept override;
    void error_seen(const answer_slot& slot) noexcept override;
};

// Writes what it can without blocking; false if bytes remain (socket full).
bool try_flush(process_state& st);
// Brings ready_ev in line with the inbox (a system call only when that changes, and only once
// ready_fd() was asked for).
void sync_ready(process_state& st) noexcept;
// Reads once from the socket and handles every whole frame; handles EOF.
void read_ready(process_state& st);
// One wait on the socket and the backend (and Ctrl-C with_sigint) for up to timeout_ms,
// spinning first for up to `spin` (sys::spin_poll).
void pump(process_state& st, int timeout_ms, bool with_sigint,
          std::chrono::microseconds spin = std::chrono::microseconds(0));
// The backend exited, or closed its socket (only ever by exiting), or is to be terminated:
// reap it, fail what is pending.
void on_backend_end(process_state& st, bool by_terminate);
// Terminating in two steps, so that several backends share one grace period: the stop signal
// now (its grace counted from here; nothing if already sent), then the wait for its end,
// SIGKILL once its grace is over, and what on_backend_end(st, true) does.
void begin_terminate(process_state& st) noexcept;
void end_terminate(process_state& st);
// Terminates several backends at once (a selector's Ctrl-C): the stop signal to all first,
// then each one's wait; so n processes take one grace period, not n.
void terminate_all(std::span<process_state* const> procs);
// What to poll for on the socket, and what to do with the results for the socket and the
// pidfd (the selector's hooks).
short wanted_events(const process_state& st) noexcept;
void handle_events(process_state& st, short sock_revents, short pidfd_revents);
// The pidfd became readable: reads what the backend wrote before it exited, then ends it.
void on_backend_exit(process_state& st);
// A look at the pidfd that never blocks (a call's liveness check): ends a backend that exited.
void check_alive(process_state& st);
[[noreturn]] void throw_died(process_state& st, std::optional<std::uint64_t> task);
// Waits (doing the frontend's I/O meanwhile) until `slot` is answered or the timeout passes.
bool wait_reply(process_state& st, const answer_slot& slot,
                std::optional<std::chrono::milliseconds> timeout);
// An ask's answer arrived: decoded into its future, or (bad bytes) that future's error.
void put_reply(answer_slot& slot, std::string_view bytes);


// The backend: runs the actor's loop on `sock`; never returns.
[[noreturn]] void run_backend(int sock, void* ring, const backend_hooks& hooks, const options& opts);

} // namespace parafork::detail

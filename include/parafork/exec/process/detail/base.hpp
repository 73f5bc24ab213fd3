#pragma once
// The type-independent half of parafork::process<Actor> (see exec/process/process.hpp): the socket to
// the backend, the queue of messages it emitted, the futures of asks in flight, and the
// backend's life (start, stop, join, terminate). Everything here is compiled once, in src/exec.

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <parafork/error.hpp>
#include <parafork/exec/core/future.hpp>
#include <parafork/exec/core/options.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/wire/codec.hpp>
#include <parafork/wire/descriptors.hpp>

namespace parafork {

class selector;
class process_base;

namespace detail {

// A type's tag is the address of a per-type variable. Frontend and backend are the same binary
// after fork, so the address names the same type on both sides.
template <class T>
inline char type_tag_anchor = 0;
template <class T>
std::uint64_t type_tag() noexcept {
    return reinterpret_cast<std::uint64_t>(&type_tag_anchor<std::remove_cvref_t<T>>);
}

struct process_state;  // src/exec/process/state.hpp

// Runs in the backend: decodes the arguments that follow in `in`, calls the member on the
// actor, and appends the encoded result to `*reply` when it is an ask (reply == nullptr: call).
using trampoline = void (*)(void* actor, wire::reader& in, std::string* reply);

struct backend_hooks {
    void* actor;
    void (*pre_run)(void* actor);   // nullptr when the actor has none
    void (*post_run)(void* actor);
};

// Backend side of emit(): frames `tag` plus the bytes `encode` appends, and writes them to the
// frontend at once. Throws parafork::error outside a backend.
std::string& emit_begin(std::uint64_t tag);
void emit_end();
void emit_abort() noexcept;

} // namespace detail

// A message a backend emitted, as the frontend received it. Its type is checked on the way out.
class message {
public:
    message() = default;
    message(std::uint64_t tag, std::string bytes) : tag_(tag), bytes_(std::move(bytes)) {}

    template <class T>
    bool is() const noexcept {
        return tag_ == detail::type_tag<T>();
    }
    // Decodes the message as T; protocol_error if it was emitted as another type.
    template <class T>
    T as() const {
        if (!is<T>()) wrong_type(typeid(T).name());
        return wire::decode<T>(bytes_);
    }
    std::string_view bytes() const noexcept { return bytes_; }

private:
    [[noreturn]] static void wrong_type(const char* wanted);
    std::uint64_t tag_ = 0;
    std::string bytes_;
};

// process<Actor>::ask returns the pool's future<R> (exec/core/future.hpp): get() waits for the
// backend's answer (doing the frontend's I/O meanwhile) and returns it, or throws remote_error
// (the method threw), worker_died (the backend died first, with pid and signal) or interrupted
// (SIGINT while waiting; the backend is then terminated). The old name stays for one release.
template <class R>
using process_future [[deprecated("parafork::process_future<R> is now parafork::future<R>")]] = future<R>;

class process_base {
public:
    explicit process_base(options o);
    process_base(process_base&&) noexcept;
    process_base& operator=(process_base&&) noexcept;
    process_base(const process_base&) = delete;
    process_base& operator=(const process_base&) = delete;
    // A backend still running is stopped after its queued calls, given options.grace to
    // exit, then terminated. Prefer join(): it waits as long as the calls take.
    ~process_base();

    // Every member below throws std::logic_error on a process that was moved from.
    const std::string& name() const;
    pid_t pid() const;  // -1 before start
    bool started() const;
    bool running() const;  // started and not yet seen to exit
    // The frontend's socket to the backend (-1 when not running): poll it for POLLIN to learn
    // that messages or replies arrived (or use a selector, which also handles what is buffered).
    int fd() const;
    // A descriptor to hand to select(2)/poll(2)/epoll with other descriptors, readable whenever
    // has_message() would be true (including messages already read off the socket while a
    // future waited), when the backend sent anything or ended, and from then on for good;
    // -1 before start. Owned by the process, made on first call (keeping it in step costs a
    // system call each time the inbox turns empty or non-empty).
    int ready_fd();
    // How the backend ended; nullopt while it runs.
    std::optional<sys::exit_status> exit_status() const;

    // Asks the backend to leave its loop after every call sent before this one (they all run,
    // then post_run); returns at once, never waiting even for room in the ring (the next wait
    // on this process writes what is held). Calls and asks after stop() throw.
    void stop();
    // stop() if not yet, then waits for the backend to exit, keeping its messages for
    // receive. Throws worker_died if it died and nothing (a future, receive) reported that yet.
    sys::exit_status join();
    // SIGTERM, options.grace to exit, SIGKILL; always reaps. Asks pending fail with worker_died.
    sys::exit_status terminate();

    // A call is in the backend's hands when call() returns: copied into a ring of shared
    // memory the backend drains (a system call only to wake a sleeping backend; when the ring
    // is full, call() waits for room, reading what the backend sends meanwhile). Inside a
    // batch, calls are held in the frontend and copied 64 KiB at a time, and when the batch
    // ends or anything waits: a little less work per call, and no wake-up until the end.
    class batch_guard {
    public:
        explicit batch_guard(process_base& p);
        ~batch_guard();
        batch_guard(const batch_guard&) = delete;
        batch_guard& operator=(const batch_guard&) = delete;

    private:
        std::shared_ptr<detail::process_state> st_;
    };
    batch_guard batch() { return batch_guard(*this); }
    // Writes whatever is held, waiting for room in the ring as long as it takes.
    void flush();

    // Messages the backend emitted, in order; a call that threw in the backend is an entry too:
    // receiving it throws remote_error (its task is the call's index in send order).
    bool has_message();                      // never blocks
    std::size_t pending_asks() const;
    message receive_message();               // waits; throws when the backend ended and none is left
    std::optional<message> try_receive_message();
    std::optional<message> receive_message_for(std::chrono::milliseconds timeout);

protected:
    enum class wait_mode : std::uint8_t { poll, timed, block };
    // The message at the front of the queue, waiting as `mode` says; nullptr when none came.
    // A call's error at the front is removed and thrown; an ended backend with nothing left
    // throws (poll: only a death nobody was told of).
    message* next_message(wait_mode mode, std::chrono::milliseconds timeout);
    void drop_message() noexcept;

    void start_backend(const detail::backend_hooks& hooks);
    // Appends a task frame header (call or ask) to the outgoing buffer and returns the buffer
    // for the arguments; returns the frame's start for end_* / abort_task.
    std::string& begin_task(bool ask, detail::trampoline t, std::size_t& frame_start);
    void end_call(std::size_t frame_start);
    // Registers `slot` for the ask's answer (the backend answers asks in send order).
    void end_ask(std::size_t frame_start, std::shared_ptr<detail::answer_slot> slot);
    // What runs this process's frontend for its futures (shares its state: a future that
    // outlives the process still reaches valid memory, and fails, never hangs).
    std::shared_ptr<detail::future_driver> driver() const;
    void abort_task(std::size_t frame_start) noexcept;
    const std::shared_ptr<detail::process_state>& state() const noexcept { return st_; }
    detail::process_state& live_state() const;  // throws std::logic_error once moved from

private:
    friend class selector;
    void shutdown() noexcept;
    void queue_stop();
    std::shared_ptr<detail::process_state> st_;
};

// Backend side: sends `value` to the frontend, which reads it with receive<T>() (or
// receive_message()). Callable from any code running in a backend (methods, pre_run, post_run).
template <class T>
void emit(const T& value) {
    std::string& out = detail::emit_begin(detail::type_tag<T>());
    try {
        wire::encode_to(out, value);
    } catch (...) {
        detail::emit_abort();
        throw;
    }
    detail::emit_end();
}

// An optional base for actors: emit() as a member, for readability in methods.
class actor {
protected:
    template <class T>
    static void emit(const T& value) {
        parafork::emit(value);
    }
};

} // namespace parafork


#pragma once
// parafork::thread: run a function in a forked child, snakefish-style.
//
//   int counter = 0;
//   pf::thread t([] { return heavy(); },                 // runs in the child
//                [] { return local_count; },              // extract: in the child, after f
//                [&](int n) { counter += n; });           // merge: in the parent, at join
//   t.start();
//   t.join();                                             // merges; throws if f threw or died
//   auto r = t.result<Result>();
//
// f may return any codec type (wire/codec.hpp) or void. An exception escaping f (or extract)
// comes back from join()/result() as remote_error with its own type name and message. A child
// that dies before reporting (signal, exit) is worker_died at join, never a hang. Each thread
// has its own pipe, so any number of threads report independently.

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include <parafork/error.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork {

namespace detail {

// What a child runs, type-erased: returns (encoded result, encoded extract).
using child_body = std::function<std::pair<std::string, std::string>()>;
using merge_body = std::function<void(std::string_view)>;

struct no_extract {};
struct no_merge {};

template <class F>
child_body make_child_body(F f) {
    return [f = std::move(f)]() mutable -> std::pair<std::string, std::string> {
        using R = std::invoke_result_t<F&>;
        if constexpr (std::is_void_v<R>) {
            f();
            return {};
        } else {
            return {wire::encode(f()), std::string()};
        }
    };
}

template <class F, class E>
child_body make_child_body(F f, E extract) {
    if constexpr (std::is_same_v<E, no_extract>) {
        return make_child_body(std::move(f));
    } else {
        return [body = make_child_body(std::move(f)), e = std::move(extract)]() mutable {
            auto out = body();
            out.second = wire::encode(e());
            return out;
        };
    }
}

// extract/merge for other executors (map/starmap over workers): run the extract body in each
// worker after its last task, send the bytes up with its final message, and call the merge body
// with them in the parent.
using extract_body = std::function<std::string()>;
template <class E>
extract_body make_extract_body(E extract) {
    return [e = std::move(extract)]() mutable { return wire::encode(e()); };
}

template <class E, class M>
merge_body make_merge_body(M merge) {
    if constexpr (std::is_same_v<M, no_merge>) {
        return {};
    } else {
        using X = std::decay_t<std::invoke_result_t<E&>>;
        return [m = std::move(merge)](std::string_view bytes) mutable { m(wire::decode<X>(bytes)); };
    }
}

struct thread_state;

} // namespace detail

class thread {
public:
    thread() noexcept;
    template <class F>
        requires std::is_invocable_v<F&>
    explicit thread(F f) : thread(std::move(f), detail::no_extract{}, detail::no_merge{}) {}
    // extract() runs in the child after f and returns a codec value; merge(value) runs in the
    // parent at join.
    template <class F, class E, class M>
        requires std::is_invocable_v<F&>
    thread(F f, E extract, M merge)
        : thread(detail::make_child_body(std::move(f), std::move(extract)),
                 detail::make_merge_body<E>(std::move(merge)), &typeid(std::invoke_result_t<F&>)) {}

    thread(thread&&) noexcept;
    thread& operator=(thread&&) noexcept;
    thread(const thread&) = delete;
    thread& operator=(const thread&) = delete;
    // A thread still running is stopped by the shared stop_policy (SIGTERM, up to 200 ms, then
    // SIGKILL) and reaped.
    ~thread();

    // Forks the child. Throws parafork::error if already started.
    void start();
    // Waits for the child, reaps it, runs merge. Throws remote_error (f threw), worker_died
    // (the child died without reporting) or interrupted (SIGINT: the child is stopped).
    // Calling it again returns, or throws the same error, at once.
    void join();
    // join() if the child has finished, else false at once.
    bool try_join();
    // Started and not yet finished.
    bool is_alive();
    bool started() const noexcept;
    bool joined() const noexcept;
    pid_t pid() const noexcept;
    // After join: how the child ended, in the type every executor reports (exit code or signal).
    // Throws parafork::error before.
    sys::exit_status status() const;
    // snakefish's form of status(): the exit code, or minus the signal that killed the child.
    int exit_status() const;

    // f's value (joins first if needed). Throws what join throws; std::bad_cast if R is not
    // f's return type.
    template <class R>
    R result() {
        std::string_view bytes = result_bytes(typeid(R));
        if constexpr (!std::is_void_v<R>) return wire::decode<R>(bytes);
    }

private:
    thread(detail::child_body body, detail::merge_body merge, const std::type_info* result_type);
    std::string_view result_bytes(const std::type_info& want);

    std::unique_ptr<detail::thread_state> st_;
};

} // namespace parafork

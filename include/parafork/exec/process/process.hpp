#pragma once
// process<Actor>: an object whose member functions run in its own process (valkka's
// MessageProcess). The frontend (this object, in the parent) hands calls to the backend (a
// forked copy of the actor), which runs them one at a time, in send order. See docs/process.md.
//
//   struct worker : pf::actor {
//       void pre_run();                       // optional: runs in the backend before its loop
//       void ping(std::string s);
//       int square(int x) { emit(x); return x * x; }
//       void post_run();                      // optional: runs in the backend after its loop
//   };
//   pf::process<worker> w(worker{}, {.name = "worker"});
//   w.start();                                // fork: the backend gets a copy of the actor
//   w.call(&worker::ping, "hi");              // fire and forget
//   int r = w.ask(&worker::square, 7).get();  // request / reply
//   int e = w.receive<int>();                 // what the backend emitted
//   w.join();                                 // stop after the queued calls, wait
//
// A member is named by pointer: the bytes of the member pointer and the address of a function
// instantiated for its type (a trampoline that decodes the arguments and calls it) travel with
// the encoded arguments; after fork both are valid in the backend, which is the same binary.
// call<&worker::ping>("hi") names the member at compile time and sends only the trampoline.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include <parafork/exec/process/detail/base.hpp>
#include <parafork/exec/process/detail/shared.hpp>

namespace parafork {

namespace detail {

template <class M>
struct member_traits;

// One specialization per qualifier set a member function may carry.
#define PARAFORK_MEMBER_TRAITS(QUALS)                                                        \
    template <class C, class R, class... P>                                                  \
    struct member_traits<R (C::*)(P...) QUALS> {                                             \
        using cls = C;                                                                       \
        using result = std::remove_cvref_t<R>;                                               \
        using args = std::tuple<std::remove_cvref_t<P>...>;                                  \
        static constexpr std::size_t arity = sizeof...(P);                                   \
        template <class Actor, class M>                                                      \
        static decltype(auto) invoke(M m, Actor& a, args& t) {                               \
            return std::apply(                                                               \
                [&](auto&... v) -> decltype(auto) { return (a.*m)(std::forward<P>(v)...); }, \
                t);                                                                          \
        }                                                                                    \
        template <class W, class... A>                                                       \
        static void encode(W& w, A&&... a) {                                                 \
            (encode_arg<std::remove_cvref_t<P>>(w, std::forward<A>(a)), ...);                \
        }                                                                                    \
    };
#define PARAFORK_MEMBER_TRAITS_REF(QUALS) \
    PARAFORK_MEMBER_TRAITS(QUALS)         \
    PARAFORK_MEMBER_TRAITS(QUALS&)        \
    PARAFORK_MEMBER_TRAITS(QUALS noexcept) \
    PARAFORK_MEMBER_TRAITS(QUALS& noexcept)

// Encodes one argument as the decayed parameter type, so the backend can decode it as that.
template <class P, class A>
void encode_arg(wire::writer& w, A&& a) {
    using D = std::remove_cvref_t<A>;
    if constexpr (std::is_same_v<D, P>) {
        w.write(a);
    } else if constexpr (std::is_same_v<P, std::string> &&
                         std::is_convertible_v<A&&, std::string_view>) {
        w.write(std::string_view(a));  // encodes exactly as a std::string, without building one
    } else {
        static_assert(std::is_convertible_v<A&&, P>,
                      "parafork: an argument does not convert to the member's parameter type");
        const P converted = std::forward<A>(a);
        w.write(converted);
    }
}

PARAFORK_MEMBER_TRAITS_REF()
PARAFORK_MEMBER_TRAITS_REF(const)
#undef PARAFORK_MEMBER_TRAITS_REF
#undef PARAFORK_MEMBER_TRAITS

template <class Actor, class M>
void run_decoded(M m, void* self, wire::reader& in, std::string* reply) {
    using T = member_traits<M>;
    typename T::args args{};
    std::apply([&](auto&... v) { (in.read(v), ...); }, args);
    if (in.remaining() != 0) wire::reader::fail("trailing bytes after a call's arguments");
    Actor& actor = *static_cast<Actor*>(self);
    if constexpr (std::is_void_v<typename T::result>) {
        T::invoke(m, actor, args);
    } else {
        decltype(auto) r = T::invoke(m, actor, args);
        if (reply) wire::encode_to(*reply, r);
    }
}

// The member pointer travels as bytes in front of the arguments.
template <class Actor, class M>
void run_member(void* self, wire::reader& in, std::string* reply) {
    M m;
    in.read_bytes(&m, sizeof m);
    run_decoded<Actor>(m, self, in, reply);
}

// The member is part of the trampoline itself.
template <class Actor, auto M>
void run_fixed(void* self, wire::reader& in, std::string* reply) {
    run_decoded<Actor>(M, self, in, reply);
}

template <class Actor>
void actor_pre_run(void* a) {
    static_cast<Actor*>(a)->pre_run();
}
template <class Actor>
void actor_post_run(void* a) {
    static_cast<Actor*>(a)->post_run();
}

template <class Actor, class M>
concept member_of = std::is_member_function_pointer_v<M> &&
                    std::is_base_of_v<typename member_traits<M>::cls, Actor>;

} // namespace detail

template <class Actor>
class process : public process_base {
public:
    explicit process(Actor a = Actor{}, options o = {})
        : process_base(std::move(o)), actor_(std::make_unique<Actor>(std::move(a))) {}

    // Forks the backend: it runs pre_run(), then the calls as they come, then post_run().
    void start() {
        detail::backend_hooks hooks{actor_.get(), nullptr, nullptr};
        if constexpr (requires(Actor& a) { a.pre_run(); }) hooks.pre_run = &detail::actor_pre_run<Actor>;
        if constexpr (requires(Actor& a) { a.post_run(); }) hooks.post_run = &detail::actor_post_run<Actor>;
        start_backend(hooks);
    }

    // Runs m(args...) in the backend after every call sent before; returns without waiting for
    // it. An exception it throws comes back as an entry in the message queue (receive throws
    // remote_error). Throws worker_died at once when the backend is known dead.
    template <class M, class... A>
        requires detail::member_of<Actor, M>
    void call(M m, A&&... args) {
        send<false>(&detail::run_member<Actor, M>, &m, sizeof m, m, std::forward<A>(args)...);
    }
    template <auto M, class... A>
        requires detail::member_of<Actor, decltype(M)>
    void call(A&&... args) {
        send<false>(&detail::run_fixed<Actor, M>, nullptr, 0, M, std::forward<A>(args)...);
    }

    // Runs m(args...) in the backend in send order; the future holds its result.
    template <class M, class... A>
        requires detail::member_of<Actor, M>
    future<typename detail::member_traits<M>::result> ask(M m, A&&... args) {
        return send<true>(&detail::run_member<Actor, M>, &m, sizeof m, m, std::forward<A>(args)...);
    }
    template <auto M, class... A>
        requires detail::member_of<Actor, decltype(M)>
    future<typename detail::member_traits<decltype(M)>::result> ask(A&&... args) {
        return send<true>(&detail::run_fixed<Actor, M>, nullptr, 0, M, std::forward<A>(args)...);
    }

    // The next message the backend emitted, decoded as T (protocol_error if it was emitted
    // as another type; it then stays queued). Waits; throws worker_died / error when the
    // backend ended with nothing left to receive.
    template <class T>
    T receive() {
        return take<T>(next_message(wait_mode::block, {}));
    }
    template <class T>
    std::optional<T> try_receive() {
        if (message* m = next_message(wait_mode::poll, {})) return take<T>(m);
        return std::nullopt;
    }
    template <class T>
    std::optional<T> receive_for(std::chrono::milliseconds timeout) {
        if (message* m = next_message(wait_mode::timed, timeout)) return take<T>(m);
        return std::nullopt;
    }

    // The frontend's copy of the actor. After start() the backend has its own: changes on
    // either side are not seen by the other.
    Actor& actor() noexcept { return *actor_; }
    const Actor& actor() const noexcept { return *actor_; }

private:
    template <class T>
    T take(message* m) {
        T v = m->template as<T>();  // throws before the message is dropped: it stays queued
        drop_message();
        return v;
    }

    template <bool Ask, class M, class... A>
    auto send(detail::trampoline t, const void* member, std::size_t member_size, M, A&&... args) {
        using traits = detail::member_traits<M>;
        static_assert(sizeof...(A) == traits::arity,
                      "parafork: wrong number of arguments for this member function");
        std::size_t start = 0;
        std::string& out = begin_task(Ask, t, start);
        try {
            if (member_size) out.append(static_cast<const char*>(member), member_size);
            wire::writer w(out);
            traits::encode(w, std::forward<A>(args)...);
        } catch (...) {
            abort_task(start);
            throw;
        }
        if constexpr (Ask) {
            auto slot = std::make_shared<detail::future_state<typename traits::result>>();
            end_ask(start, slot);
            return future<typename traits::result>(std::move(slot), driver());
        } else {
            end_call(start);
        }
    }

    // On the heap so that the address the backend uses is the one the frontend had at fork,
    // whatever happens to this object (moves) afterwards.
    std::unique_ptr<Actor> actor_;
};

} // namespace parafork

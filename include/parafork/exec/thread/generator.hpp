#pragma once
// parafork::generator<T>: a producer running in a forked child, streaming values to the parent.
//
//   pf::generator<int> g([](pf::yield<int>& yield) {
//       for (int i = 0; i < 10; ++i) yield(i * i);
//   });
//   g.start();
//   while (auto v = g.next()) use(*v);     // empty at the end
//   g.join();
//
// Values go through a shared-memory channel with read-ahead: the producer runs ahead of the
// consumer by up to the channel's capacity (no round trip per item) and waits when it is full.
// An exception in the producer is rethrown by next() at the item where it happened (after the
// values yielded before it), as remote_error; join() and try_join() rethrow it too unless
// next() already did (so a caller that only joins still learns of it). A producer that dies is
// worker_died, from next() and from join(), never a hang. extract/merge as for
// parafork::thread: extract runs in the child after the producer returns, merge in the parent
// at join.

#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <type_traits>
#include <utility>

#include <parafork/error.hpp>
#include <parafork/exec/thread/thread.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork {

template <class T>
class generator;

// The producer's handle: yield(v) sends v to the parent (waiting while the read-ahead is full).
template <class T>
class yield {
public:
    void operator()(const T& value) {
        std::string& buf = detail::channel_encode_buffer();
        buf.clear();
        buf.push_back('v');
        wire::encode_to(buf, value);
        ch_->send_bytes(buf);
        ++count_;
    }
    // Values yielded so far.
    std::size_t count() const noexcept { return count_; }

    explicit yield(channel& ch) noexcept : ch_(&ch) {}

private:
    channel* ch_;
    std::size_t count_ = 0;
};

namespace detail {

// Runs in the child: the producer (with its yield bound to the channel), then extract; returns
// the encoded extract value (empty without one).
using producer_body = std::function<std::string(channel&)>;

class generator_base {
public:
    generator_base() noexcept;
    generator_base(producer_body body, merge_body merge, std::size_t read_ahead);
    generator_base(generator_base&&) noexcept;
    generator_base& operator=(generator_base&&) noexcept;
    ~generator_base();

    void start();
    void join();
    bool try_join();
    bool is_alive();
    bool started() const noexcept;
    bool joined() const noexcept;
    // The producer finished (or failed) and every value was taken.
    bool done() const noexcept;
    pid_t pid() const noexcept;
    // After join: how the producer ended (see thread::status); exit_status() is snakefish's int.
    sys::exit_status status() const;
    int exit_status() const;

    struct state;  // opaque; defined in the library

protected:
    // The next value's encoding (in `out`, from offset 1); false at the end, or, when !block,
    // when none is ready yet. Throws the producer's exception at its place in the stream.
    bool next_raw(std::string& out, bool block);

private:
    std::unique_ptr<state> st_;
};

} // namespace detail

template <class T>
class generator : public detail::generator_base {
public:
    static constexpr std::size_t default_read_ahead = std::size_t{1} << 20;

    generator() noexcept = default;
    // f(yield<T>&) runs in the child. read_ahead: bytes of values in flight (the channel size).
    template <class F>
        requires std::is_invocable_v<F&, yield<T>&>
    explicit generator(F f, std::size_t read_ahead = default_read_ahead)
        : generator(std::move(f), detail::no_extract{}, detail::no_merge{}, read_ahead) {}
    template <class F, class E, class M>
        requires std::is_invocable_v<F&, yield<T>&>
    generator(F f, E extract, M merge, std::size_t read_ahead = default_read_ahead)
        : detail::generator_base(make_body(std::move(f), std::move(extract)),
                                 detail::make_merge_body<E>(std::move(merge)), read_ahead) {}

    // Waits for the next value; empty at the end.
    std::optional<T> next() {
        if (!next_raw(buf_, true)) return std::nullopt;
        return wire::decode<T>(std::string_view(buf_).substr(1));
    }
    // The next value if one is ready; empty if none is (yet): done() tells the end apart.
    std::optional<T> try_next() {
        if (!next_raw(buf_, false)) return std::nullopt;
        return wire::decode<T>(std::string_view(buf_).substr(1));
    }

private:
    template <class F, class E>
    static detail::producer_body make_body(F f, E extract) {
        return [f = std::move(f), e = std::move(extract)](channel& ch) mutable -> std::string {
            yield<T> y(ch);
            f(y);
            if constexpr (std::is_same_v<E, detail::no_extract>) {
                return {};
            } else {
                return wire::encode(e());
            }
        };
    }

    std::string buf_;
};

} // namespace parafork

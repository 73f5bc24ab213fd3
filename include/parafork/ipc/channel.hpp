#pragma once
// A channel: a ring buffer in anonymous shared memory (memfd) that many processes send to and
// receive from. Create it before forking; every child forked while it exists shares it (a copy
// of the object in the child refers to the same ring).
//
//  - send waits while the ring is full (backpressure); try_send does not wait for a message to
//    start; send_for bounds the whole message. Messages larger than the ring are streamed
//    through it in pieces.
//  - receive waits; try_receive never waits; receive_for waits at most a timeout.
//  - many senders and many receivers: each message is delivered once and whole (a sender holds
//    the send side for a whole message, a receiver the receive side).
//  - a process that dies holding a side is detected (robust mutexes: the kernel releases them
//    at death) and its half-written message is dropped, never delivered.
//  - ends: every process holding the channel may send, like a process holding a pipe's write
//    end. A process gives its end up by close(), by destroying its last channel object, by
//    exiting or dying, or by receiving before it ever sent (so a parent that receives from its
//    children needs no ceremony). When no end is left and the ring is drained, receivers get
//    channel_closed.
//  - receive ends, the mirror image: every process holding the channel may receive until it
//    sends before it ever received. A send that has to wait for room while no receive end is
//    left (every receiver died or left) throws channel_closed instead of waiting forever.
//    See docs/channel.md for the details and limits.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <parafork/error.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork {

// Every sender is gone and the ring is drained (receivers); this process closed its end, or a
// send would wait for room while no receiver is left (senders).
class channel_closed : public error {
public:
    channel_closed() : error("parafork: channel closed") {}
    using error::error;
};

namespace detail {
struct channel_core;
using channel_clock = std::chrono::steady_clock;
// How long a call may wait: not at all, until a deadline, or forever.
struct channel_wait {
    enum kind_t : std::uint8_t { never, until, forever } kind = forever;
    channel_clock::time_point deadline{};
    static channel_wait none() { return {never, {}}; }
    static channel_wait infinite() { return {forever, {}}; }
    template <class Rep, class Period>
    static channel_wait within(std::chrono::duration<Rep, Period> d) {
        return {until, channel_clock::now() + std::chrono::duration_cast<channel_clock::duration>(d)};
    }
};
// The encode buffer of the calling thread: typed sends reuse it (no allocation per message).
std::string& channel_encode_buffer();
} // namespace detail
class channel;
namespace detail {
// For a caller that sleeps in its own poll(2) beside a channel (the pipeline parent on its
// queues): registers as the sleeper for data (`bytes` == 0) or for room for `bytes`, and
// returns the descriptor to poll; -1 if that is there already (nothing registered). After the
// poll, channel_disarm with the same `bytes`. A side has one sleeper at a time: a channel's
// own waits hold its send or receive lock, so this caller must be the only one on that side.
int channel_arm(channel& ch, std::size_t bytes);
void channel_disarm(channel& ch, std::size_t bytes) noexcept;
// The channel's own waits look again for a while before they sleep (a brief spin, then
// yielding the CPU): the same, for a caller about to arm. True once that is there.
bool channel_spin(channel& ch, std::size_t bytes);
// For a child that never uses the channels it was forked with (the dashboard server): gives up
// the end of each that the fork gave it, so its peers do not count it as a sender or receiver
// for as long as it lives. Call before the child starts any thread.
void channel_leave_all() noexcept;
// send_bytes that also gives up (channel_closed) once `abandoned` is set; whoever sets it
// calls channel_wake_senders so a sender asleep on a full ring sees it at once.
void channel_send_unless(channel& ch, std::string_view bytes, const std::atomic<std::uint32_t>& abandoned);
void channel_wake_senders(channel& ch) noexcept;
// A queue whose owner accounts for its ends (the pipeline: end markers and its stages' pidfds)
// in shared memory the owner maps once for all its queues, before forking: no end table, no
// fork hooks, never channel_closed by a count of ends. It takes channel_region_bytes(capacity)
// bytes (a multiple of 64) at `at` (64-byte aligned); `region` keeps that memory alive.
std::size_t channel_region_bytes(std::size_t capacity);
channel make_region_channel(std::shared_ptr<void> region, void* at, std::size_t capacity);
} // namespace detail

class channel {
public:
    static constexpr std::size_t default_capacity = std::size_t{1} << 20;
    static constexpr std::size_t max_capacity = std::size_t{1} << 30;

    // capacity: bytes of ring (rounded up to a multiple of 16, at least 64, at most 1 GiB).
    explicit channel(std::size_t capacity = default_capacity);

    // Typed messages, encoded with the codec (wire/codec.hpp).
    template <class T>
    void send(const T& value) {
        send_bytes(encode(value));
    }
    // False if the message cannot start now (ring too full, or another sender is mid-message).
    // A message larger than the ring, once started, is finished: that may wait for room.
    template <class T>
    bool try_send(const T& value) {
        return try_send_bytes(encode(value));
    }
    // Throws timeout_error if the message did not go through within `timeout`. A streamed
    // message that ran out of time part way is voided (receivers drop it, dropped_messages()).
    template <class T, class Rep, class Period>
    void send_for(const T& value, std::chrono::duration<Rep, Period> timeout) {
        send_bytes_until(encode(value), detail::channel_wait::within(timeout));
    }

    template <class T>
    T receive() {
        std::string& buf = receive_buffer();
        receive_bytes(buf);
        return wire::decode<T>(buf);
    }
    template <class T>
    std::optional<T> try_receive() {
        std::string& buf = receive_buffer();
        if (!try_receive_bytes(buf)) return std::nullopt;
        return wire::decode<T>(buf);
    }
    // Throws timeout_error if no message began within `timeout`.
    template <class T, class Rep, class Period>
    T receive_for(std::chrono::duration<Rep, Period> timeout) {
        std::string& buf = receive_buffer();
        receive_bytes_until(buf, detail::channel_wait::within(timeout));
        return wire::decode<T>(buf);
    }

    // Raw bytes (for layers with their own encoding). Receive timeouts bound the wait for a
    // message to start (one that began is finished); send timeouts bound the whole message.
    void send_bytes(std::string_view bytes);
    bool try_send_bytes(std::string_view bytes);
    template <class Rep, class Period>
    void send_bytes_for(std::string_view bytes, std::chrono::duration<Rep, Period> timeout) {
        send_bytes_until(bytes, detail::channel_wait::within(timeout));
    }
    void receive_bytes(std::string& out);
    bool try_receive_bytes(std::string& out);
    template <class Rep, class Period>
    void receive_bytes_for(std::string& out, std::chrono::duration<Rep, Period> timeout) {
        receive_bytes_until(out, detail::channel_wait::within(timeout));
    }

    // This process sends no more (sending afterwards throws channel_closed). Children forked
    // later still get an end of their own.
    void close();

    std::size_t capacity() const noexcept;
    // Bytes in the ring right now (a snapshot).
    std::size_t size_bytes() const noexcept;
    // Messages dropped unfinished: their sender died, timed out part way, or lost its receivers.
    std::uint64_t dropped_messages() const noexcept;
    // Ends open right now (processes that may still send).
    std::size_t open_ends() const;
    // Receive ends open right now (processes that may still receive).
    std::size_t open_receivers() const;

private:
    friend int detail::channel_arm(channel&, std::size_t);
    friend bool detail::channel_spin(channel&, std::size_t);
    friend void detail::channel_disarm(channel&, std::size_t) noexcept;
    friend void detail::channel_send_unless(channel&, std::string_view, const std::atomic<std::uint32_t>&);
    friend void detail::channel_wake_senders(channel&) noexcept;
    friend channel detail::make_region_channel(std::shared_ptr<void>, void*, std::size_t);
    explicit channel(std::shared_ptr<detail::channel_core> core) : core_(std::move(core)) {}
    void send_bytes_until(std::string_view bytes, detail::channel_wait w);
    void receive_bytes_until(std::string& out, detail::channel_wait w);
    template <class T>
    static std::string_view encode(const T& value) {
        std::string& buf = detail::channel_encode_buffer();
        buf.clear();
        wire::encode_to(buf, value);
        return buf;
    }
    std::string& receive_buffer();

    std::shared_ptr<detail::channel_core> core_;
};

} // namespace parafork

#pragma once
// The queue between two groups of pipeline stages (internal): a parafork::channel (a ring in
// shared memory; senders sleep while it is full, receivers while it is empty) plus the
// pipeline's own end-of-stream rule, which does not depend on which processes happen to hold
// the channel:
//  - the parent knows how many stage processes write a queue and how many read it, and keeps
//    the count of writers still writing in shared memory. A writer that has put its last item
//    counts itself out; the last one publishes one end marker per reader behind its last
//    messages, and each reader stops at the first marker it takes. A stage that exits cleanly
//    without having counted itself out (it called exit) is counted out by the parent;
//  - once every reader has exited, the parent flags the queue abandoned and wakes a writer
//    blocked on the full ring, which then stops writing there.
// So the end of a stream travels with the data, at the speed of the queue, and never waits
// for a process to exit; a stage that dies before counting itself out never ends its queues:
// the parent sees the death (pidfd) and stops the graph.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <parafork/ipc/channel.hpp>

namespace parafork::detail {

inline constexpr std::size_t edge_capacity = 1024 * 1024;

// Per-queue counters in a shared mapping: items sent and taken (for watch), the abandoned
// flag, and the end-of-stream count: writers still writing, and the end markers owed to the
// readers (the parent counted among them when it reads the queue) once none is.
struct edge_stats {
    std::atomic<std::uint64_t> sent{0};
    std::atomic<std::uint64_t> received{0};
    std::atomic<std::uint32_t> abandoned{0};
    std::atomic<std::uint32_t> writers_left{0};
    std::uint32_t readers = 0;  // set before the fork, then read only
    // The window of an ordered group, on the queue into it: the reader after the group
    // publishes how many inputs it has passed on (low 32 bits) and whether it holds too many
    // bytes; the numbering writer sleeps on window_events while it is too far ahead. Every
    // change to the window (and abandoned) bumps window_events after it.
    std::atomic<std::uint32_t> released{0};
    std::atomic<std::uint32_t> held_over{0};
    std::atomic<std::uint32_t> window_gone{0};  // that reader has ended: nothing to wait for
    std::atomic<std::uint32_t> window_events{0};
    std::atomic<std::uint32_t> writer_waiting{0};
};

// Once per stage process (in the same mapping): set by whichever of the stage or the parent
// first counts the stage out of the queues it writes.
using outputs_closed_flag = std::atomic<std::uint32_t>;

// The end marker: a message no encoder produces (a record count of all ones, nothing else).
inline constexpr std::string_view edge_end_marker{"\xff\xff\xff\xff", 4};

class edge_writer {
public:
    edge_writer() = default;
    edge_writer(channel ch, edge_stats* stats) : ch_(std::move(ch)), stats_(stats), open_(true) {}
    // Sends one message, sleeping while the queue is full. False once every reader is gone.
    bool send(std::string_view msg);
    // Never sleeps: false if the message does not fit now (or the writer is closed).
    bool try_send(std::string_view msg) { return open_ && ch_->try_send_bytes(msg); }
    void close() noexcept {
        open_ = false;
        ch_.reset();
    }
    explicit operator bool() const noexcept { return open_; }

private:
    std::optional<channel> ch_;
    edge_stats* stats_ = nullptr;
    bool open_ = false;
};

class edge_reader {
public:
    edge_reader() = default;
    explicit edge_reader(channel ch) : ch_(std::move(ch)), open_(true) {}
    // The next message, sleeping until one arrives; false at the end of the stream. The view
    // stays valid until the next receive.
    bool receive(std::string_view& msg);
    // Non-blocking: 1 a message, 0 nothing yet, -1 the end.
    int try_receive(std::string_view& msg);
    // For a caller's own poll: the descriptor that turns readable when data comes (after
    // try_receive returned 0), or -1 if data is there already; then disarm().
    int arm() { return open_ ? channel_arm(*ch_, 0) : -1; }
    void disarm() noexcept {
        if (open_) channel_disarm(*ch_, 0);
    }
    void close() noexcept {
        open_ = false;
        ch_.reset();
    }
    explicit operator bool() const noexcept { return open_; }

private:
    int classify(std::string_view& msg);
    std::optional<channel> ch_;
    std::string buf_;
    bool open_ = false;
};

} // namespace parafork::detail

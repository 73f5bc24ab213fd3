#pragma once
// The shared-memory layout of a channel and the per-process state around it (internal).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <string>

#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>

namespace parafork::detail {

inline constexpr std::uint64_t channel_magic = 0x70666368616e6e31ULL;  // "pfchann1"
inline constexpr std::size_t channel_slots = 256;

// A chunk in the ring: a 16-byte header (payload length, flags, the whole message's length)
// then the payload, padded to 16 bytes so headers never wrap around the end of the ring.
inline constexpr std::uint64_t chunk_first = 1;  // starts a message
inline constexpr std::uint64_t chunk_last = 2;   // ends a message
inline constexpr std::uint64_t chunk_abort = 4;  // the message in progress is void (sender died)
inline constexpr std::size_t chunk_align = 16;
struct chunk_header {
    std::uint32_t len;    // payload bytes in this chunk
    std::uint32_t flags;  // chunk_first | chunk_last | chunk_abort
    std::uint64_t total;  // the whole message's length (lets the receiver reserve once)
};
static_assert(sizeof(chunk_header) == chunk_align);

// One end: a process that may send (or receive). Its robust mutex is held by that process for
// as long as the end is open, so the kernel tells us (EOWNERDEAD) when the process died with it.
enum : std::uint32_t { slot_free = 0, slot_pending = 1, slot_live = 2, slot_reserving = 3 };
struct alignas(64) end_slot {
    pthread_mutex_t mu;
    std::atomic<std::uint32_t> state;
    std::atomic<std::int32_t> pid;  // live: the owner; pending: the parent forking the owner
    std::atomic<std::uint64_t> since;  // pending: when it was reserved (CLOCK_MONOTONIC ns)
    std::atomic<std::uint64_t> token;  // pending: which reservation (so no one takes another's)
};

// The ends of one kind.
struct alignas(64) end_table {
    std::atomic<std::uint32_t> slot_hwm;           // slots [0, hwm) were ever used
    std::atomic<std::uint32_t> unregistered_ends;  // forks that found no free slot
    end_slot slots[channel_slots];
};
enum end_role : int { send_end = 0, recv_end = 1 };

struct alignas(64) channel_shared {
    std::uint64_t magic;
    std::uint64_t capacity;

    alignas(64) std::atomic<std::uint64_t> head;  // senders publish whole chunks here
    std::atomic<std::uint32_t> data_seq;          // unused (kept for the layout)
    std::atomic<std::uint32_t> data_waiters;      // receivers asleep: senders signal the eventfd

    alignas(64) std::atomic<std::uint64_t> tail;  // receivers consume whole chunks here
    std::atomic<std::uint32_t> space_seq;         // unused (kept for the layout)
    std::atomic<std::uint32_t> space_waiters;     // senders asleep: receivers signal the eventfd

    alignas(64) pthread_mutex_t send_mu;  // held by a sender for a whole message
    std::uint32_t need_abort;             // under send_mu: a message was left unfinished
    alignas(64) pthread_mutex_t recv_mu;  // held by a receiver for a whole message

    alignas(64) std::atomic<std::uint64_t> dropped;  // unfinished messages discarded
};

// Right after channel_shared in a channel that counts its own ends: send ends (receivers get
// channel_closed once none is left) and receive ends (a sender that would wait gets
// channel_closed once none is left), indexed by end_role.
struct channel_ends {
    end_table t[2];
};

inline std::size_t channel_data_offset() {
    return (sizeof(channel_shared) + sizeof(channel_ends) + 4095) & ~std::size_t{4095};
}
// A channel in a region its owner provides (no end table): the ring right after the header.
inline constexpr std::size_t region_channel_data_offset = (sizeof(channel_shared) + 63) & ~std::size_t{63};

// Per-process view of a channel, shared by the copies of a channel object in this process.
struct channel_core {
    sys::mapping map;
    std::shared_ptr<void> region;  // or the owner's mapping this channel lives in
    channel_shared* sh = nullptr;
    // Null for a channel in an owner's region: the owner accounts for the ends (no fork hooks,
    // never closed by a count of ends).
    end_table* ends = nullptr;
    std::byte* data = nullptr;
    std::uint64_t cap = 0;
    // Written when a waiter registered in data_waiters / space_waiters (index: wake_side).
    // Children forked later share them, as they share the mapping.
    sys::unique_fd wake[2];

    // This process's ends by end_role (-1: none), and the slots reserved for a child being
    // forked. Atomics: threads of one process may share a channel object; these change on
    // first use (under role_mu).
    std::atomic<int> my_slot[2] = {-1, -1};
    int pending_slot[2] = {-1, -1};
    std::uint64_t pending_token[2] = {0, 0};
    std::mutex role_mu;
    std::atomic<bool> closed{false};     // close() was called in this process
    std::atomic<bool> ever_sent{false};  // this process has sent
    std::atomic<bool> received{false};   // this process has received
    // An end we could not unlock (another thread took it) stays on that thread's robust list,
    // which the kernel walks at exit: its memory must then stay mapped.
    bool keep_mapped = false;

    explicit channel_core(std::size_t capacity);
    channel_core(std::shared_ptr<void> owner, std::byte* at, std::size_t capacity);
    ~channel_core();
    channel_core(const channel_core&) = delete;
    channel_core& operator=(const channel_core&) = delete;
};

} // namespace parafork::detail

#pragma once
// timestamp(): a cheap, monotonic clock reading comparable across the processes of one machine,
// to order events (snakefish's get_timestamp). It is CLOCK_MONOTONIC in nanoseconds: one vDSO
// call (about 20 ns), no system call, shared by every process since boot. We do not read the
// TSC directly: it is only comparable across cores when invariant and synchronized, which a
// VM does not promise, and across processes only with one calibration they all share. The
// vDSO reads the TSC itself when the kernel trusts it, with the kernel's calibration, which
// every process shares (docs/thread.md, "timestamp").
//
// A timestamp is a plain std::uint64_t, so it goes through the codec (and any channel) as is.
// timestamp_serialized() fences first, so the reading is not taken before earlier memory
// operations of this thread complete (snakefish's get_timestamp_serialized).

#include <atomic>
#include <cstdint>
#include <ctime>

namespace parafork {

using timestamp_t = std::uint64_t;  // nanoseconds of CLOCK_MONOTONIC

inline timestamp_t timestamp() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<timestamp_t>(ts.tv_sec) * 1'000'000'000u + static_cast<timestamp_t>(ts.tv_nsec);
}

inline timestamp_t timestamp_serialized() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_lfence();
#endif
    timestamp_t t = timestamp();
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return t;
}

} // namespace parafork

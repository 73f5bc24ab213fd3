#pragma once
// The two halves of every future<R> (internal), whoever runs its task: the slot its answer
// lands in, and the driver that makes answers arrive. An executor has no threads: answers
// arrive only while some thread waits, so a future holds its executor's driver (shared, so a
// future that outlives its pool or process still reaches valid memory) and waits through it.

#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <poll.h>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/wire/codec.hpp>

namespace parafork::detail {

// One task's answer, filled by its executor in the thread that drives it.
class answer_slot {
public:
    virtual ~answer_slot() = default;
    // The task's one encoded value arrived: decode and keep it (protocol_error on bad bytes).
    virtual void put_value(std::string_view bytes) = 0;
    void put_error(std::exception_ptr e) noexcept {
        error = std::move(e);
        done = true;
    }

    std::exception_ptr error;
    std::size_t task = 0;  // the executor's number for it, named in errors
    bool done = false;
};

template <class R>
class future_state : public answer_slot {
public:
    void put_value(std::string_view bytes) override {
        if constexpr (!std::is_void_v<R>) value = wire::decode<R>(bytes);
        done = true;
    }
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
};

// What runs a future's executor while a thread waits: the pool's engine or a process's
// frontend. One driver serves every future of its executor.
class future_driver {
public:
    using clock = std::chrono::steady_clock;

    // Runs the executor in this thread until `slot` is answered or `deadline` passes (nullopt:
    // no limit; a deadline already past: handles what has arrived, never sleeps). Returns
    // slot.done. Throws what the executor's waits throw (interrupted on Ctrl-C, with its
    // children stopped; error once it was stopped with the task unanswered).
    virtual bool wait(const answer_slot& slot, std::optional<clock::time_point> deadline) = 0;

    // For one poll over several executors (wait_any): appends the descriptors a wait would
    // sleep on (pipes, sockets, pidfds) and returns when the executor must run anyway (a task
    // past its timeout, a write waiting for room), if ever.
    virtual std::optional<clock::time_point> watch(std::vector<pollfd>& fds) = 0;
    // After that poll: handles whatever arrived, never sleeping. False once nothing is in
    // flight, so that no answer can come.
    virtual bool poll() = 0;
    // Ctrl-C arrived during that poll: stop the children, as the executor's own wait would.
    virtual void interrupt() noexcept = 0;
    // Called on every executor of the wait before any interrupt(): send the stop signal now,
    // so that the interrupts that follow share one grace period instead of paying one each.
    virtual void interrupt_begin() noexcept {}
    // get() is throwing this slot's error to the caller (a process's join then stays quiet
    // about a death the caller has already seen).
    virtual void error_seen(const answer_slot& slot) noexcept { (void)slot; }

protected:
    ~future_driver() = default;
};

// A future as wait_any sees it, whatever its R.
struct waitable {
    answer_slot* slot;
    future_driver* driver;
};
// Waits until at least one entry is answered (or `deadline`); false on timeout. Every
// executor's descriptors go into one poll with Ctrl-C's; a Ctrl-C stops them all and throws
// interrupted. Entries with a null slot are skipped; throws error if no entry can be waited on.
bool wait_any(std::span<const waitable> entries, std::optional<future_driver::clock::time_point> deadline);

// A caller's deadline as a steady_clock time point, saturating instead of overflowing.
template <class Rep, class Period>
future_driver::clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) {
    using clock = future_driver::clock;
    auto now = clock::now();
    if (d <= d.zero()) return now;
    if (std::chrono::duration<double>(d).count() >= 1e9) return clock::time_point::max();  // ~30 years
    return now + std::chrono::ceil<clock::duration>(d);
}
template <class Clock, class Dur>
future_driver::clock::time_point deadline_at(std::chrono::time_point<Clock, Dur> t) {
    if constexpr (std::is_same_v<Clock, future_driver::clock>) {
        return std::chrono::time_point_cast<future_driver::clock::duration>(t);
    } else {
        return deadline_after(t - Clock::now());
    }
}

} // namespace parafork::detail

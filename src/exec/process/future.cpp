// A process's futures: the frontend as their driver (see exec/core/detail/future.hpp). Waiting
// on one future is the frontend's own wait (wait_reply: a spin, then the supervisor's poll on
// the socket and the backend's pidfd); wait_any puts the same two descriptors in its poll.
#include "state.hpp"

#include <algorithm>
#include <poll.h>

namespace parafork {
namespace detail {

void put_reply(answer_slot& slot, std::string_view bytes) {
    try {
        slot.put_value(bytes);
    } catch (...) {
        // A reply that does not decode fails its own future; the stream is intact (the frame
        // was whole), so the asks after it are unaffected.
        slot.put_error(std::current_exception());
    }
}

bool process_state::wait(const answer_slot& slot, std::optional<clock::time_point> deadline) {
    if (slot.done) return true;
    std::optional<std::chrono::milliseconds> timeout;
    if (deadline) {
        auto now = clock::now();
        if (*deadline <= now) {
            timeout = std::chrono::milliseconds(0);
        } else if (*deadline - now < std::chrono::hours(24 * 365)) {
            timeout = std::chrono::ceil<std::chrono::milliseconds>(*deadline - now);
        }  // else: as good as no limit (and no overflow in the arithmetic below)
    }
    return wait_reply(*this, slot, timeout);
}

std::optional<future_driver::clock::time_point> process_state::watch(std::vector<pollfd>& fds) {
    if (!live()) return std::nullopt;
    if (out_pending()) try_flush(*this);
    if (!live()) return clock::now();  // it ended while writing: run poll() at once
    fds.push_back({sock.get(), wanted_events(*this), 0});
    fds.push_back({pidfd(), POLLIN, 0});
    // Held calls wait for room in the ring: try_flush raised frontend_waiting, so the backend
    // announces room with a 'w' on the socket, which wakes this poll (see pump()).
    return std::nullopt;
}

bool process_state::poll() {
    if (live()) pump(*this, 0, false);
    return true;  // an ended backend has failed every ask it held: none is left waiting
}

void process_state::interrupt_begin() noexcept { begin_terminate(*this); }

// The wait sent every executor's stop signal first (interrupt_begin): this waits out what is
// left of the grace, so the processes of one wait_any are stopped in one grace, not one each.
void process_state::interrupt() noexcept {
    try {
        end_terminate(*this);
    } catch (...) {
        // The supervisor's destructor still stops and reaps it.
    }
}

void process_state::error_seen(const answer_slot&) noexcept { reported = true; }

} // namespace detail

std::shared_ptr<detail::future_driver> process_base::driver() const {
    return std::shared_ptr<detail::future_driver>(state());
}

} // namespace parafork

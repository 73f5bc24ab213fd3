#pragma once
// future<R>: the result of pool::submit. Waiting runs the pool's event loop in the calling
// thread (a pool is driven by whoever waits on it), so get() needs no helper thread.

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>

#include <parafork/exec/core/detail/calls.hpp>
#include <parafork/sys/signals.hpp>

namespace parafork {
namespace detail {

template <class R>
struct future_state final : call_state {
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
    std::exception_ptr error;
    bool done = false;
    std::size_t task = 0;

    void values(std::uint64_t, std::uint32_t count, std::string_view bytes) override {
        if (count != 1) throw protocol_error("parafork: a task answered more than one value");
        if constexpr (!std::is_void_v<R>) value = decode_one<R>(bytes);
        done = true;
    }
    void failed(std::uint64_t, const failure_info& f) override {
        error = make_failure(f, task);
        done = true;
    }
    bool lent(std::uint64_t, const lent_ref& r) override {
        if constexpr (lendable<R>) {
            value = fetch_lent<R>(r);
            done = value.has_value();
        }
        return done;
    }
};

} // namespace detail

template <class R>
class future {
public:
    future() noexcept = default;
    future(std::shared_ptr<detail::future_state<R>> st, std::shared_ptr<detail::pool_core> core) noexcept
        : st_(std::move(st)), core_(std::move(core)) {}

    bool valid() const noexcept { return st_ != nullptr; }
    // True once the value (or error) is here; reads whatever answers are waiting, never blocks.
    bool ready() {
        auto& st = state();
        if (!st.done) core_->pump(detail::executor::clock::now());
        return st.done;
    }
    // Waits for the value or the error; does not throw the task's error (get() does).
    void wait() {
        auto& st = state();
        sys::sigint_guard ctrl_c;  // held across the whole wait, not just each poll
        while (!st.done)
            if (!core_->pump()) throw error("parafork: the pool lost a task");
    }
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> d) {
        auto& st = state();
        auto deadline = detail::executor::clock::now() +
                        std::chrono::duration_cast<detail::executor::clock::duration>(d);
        sys::sigint_guard ctrl_c;
        while (!st.done && detail::executor::clock::now() < deadline)
            if (!core_->pump(deadline)) break;
        return st.done;
    }
    // The value, or the task's exception (remote_error, worker_died, timeout_error). Once:
    // afterwards the future has no state (valid() is false) and every call throws.
    R get() {
        wait();
        auto st = std::move(st_);
        if (st->error) std::rethrow_exception(st->error);
        if constexpr (!std::is_void_v<R>) return std::move(*st->value);
    }

private:
    detail::future_state<R>& state() const {
        if (!st_) throw error("parafork: future has no state (default-made, or get() was called)");
        return *st_;
    }

    std::shared_ptr<detail::future_state<R>> st_;
    std::shared_ptr<detail::pool_core> core_;
};

} // namespace parafork

#pragma once
// future<R>: the result of a task run elsewhere, the one type that pool::submit, pool::apply
// and process<Actor>::ask return. Executors have no threads: waiting on a future runs its
// executor (the pool's engine, the process's frontend) in the calling thread, so get() needs no
// helper thread, and wait_any / as_completed wait on futures of several executors in one poll.
//
//   pf::future<int> a = p.submit(&square, 7), b = w.ask(&worker::square, 8);
//   if (a.wait_for(100ms)) use(a.get());
//   std::vector<pf::future<int>> fs = ...;
//   for (auto& f : pf::as_completed(fs)) use(f.get());   // in the order they are answered

#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/error.hpp>
#include <parafork/exec/core/detail/future.hpp>

namespace parafork {

template <class R>
class future {
public:
    using value_type = R;

    future() noexcept = default;
    // Made by executors: the answer's slot and the driver that fills it.
    future(std::shared_ptr<detail::future_state<R>> st, std::shared_ptr<detail::future_driver> drv) noexcept
        : st_(std::move(st)), drv_(std::move(drv)) {}

    // False for a default-made or moved-from future, and after get(); every call below then
    // throws parafork::error.
    bool valid() const noexcept { return st_ != nullptr; }
    // True once the value (or error) is here; handles what has arrived, never blocks.
    bool ready() { return state().done || drv_->wait(*st_, detail::future_driver::clock::now()); }
    // Waits for the value or the error; does not throw the task's error (get() does). A future
    // whose executor was stopped (terminate, its destructor, Ctrl-C) before answering throws.
    void wait() {
        if (!state().done && !drv_->wait(*st_, std::nullopt))
            throw error("parafork: the executor ended without answering task " + std::to_string(st_->task));
    }
    // True once ready; false when the time passed first.
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> d) {
        return state().done || drv_->wait(*st_, detail::deadline_after(d));
    }
    template <class Clock, class Dur>
    bool wait_until(std::chrono::time_point<Clock, Dur> t) {
        return state().done || drv_->wait(*st_, detail::deadline_at(t));
    }
    // The value, or the task's exception: remote_error (it threw), worker_died (its worker or
    // process died, with pid and signal), timeout_error, interrupted. Once: afterwards the
    // future has no state.
    R get() {
        wait();
        auto st = std::move(st_);
        auto drv = std::move(drv_);
        if (st->error) {
            drv->error_seen(*st);
            std::rethrow_exception(st->error);
        }
        if constexpr (!std::is_void_v<R>) return std::move(*st->value);
    }

    // For wait_any: what a wait on several futures needs of this one (null slot when invalid).
    detail::waitable waitable() const noexcept { return {st_.get(), drv_.get()}; }

private:
    detail::future_state<R>& state() const {
        if (!st_) throw error("parafork: future has no state (default-made, moved from, or get() was called)");
        return *st_;
    }

    std::shared_ptr<detail::future_state<R>> st_;
    std::shared_ptr<detail::future_driver> drv_;
};

// The index of a ready future among `fs` (the lowest, if several are), waiting in one poll
// over all their executors until one is; throws parafork::error if none is valid. Futures may
// come from different pools and processes.
template <class R>
std::size_t wait_any(std::span<future<R>> fs) {
    std::vector<detail::waitable> w;
    w.reserve(fs.size());
    for (auto& f : fs) w.push_back(f.waitable());
    detail::wait_any(w, std::nullopt);
    for (std::size_t i = 0; i < w.size(); ++i)
        if (w[i].slot && w[i].slot->done) return i;
    throw error("parafork: wait_any found no ready future");  // not reached: wait_any waited
}
template <class R>
std::size_t wait_any(std::vector<future<R>>& fs) {
    return wait_any(std::span<future<R>>(fs));
}
// As wait_any, giving up after `d`: nullopt then.
template <class R, class Rep, class Period>
std::optional<std::size_t> wait_any_for(std::span<future<R>> fs, std::chrono::duration<Rep, Period> d) {
    std::vector<detail::waitable> w;
    w.reserve(fs.size());
    for (auto& f : fs) w.push_back(f.waitable());
    if (!detail::wait_any(w, detail::deadline_after(d))) return std::nullopt;
    for (std::size_t i = 0; i < w.size(); ++i)
        if (w[i].slot && w[i].slot->done) return i;
    return std::nullopt;
}
template <class R, class Rep, class Period>
std::optional<std::size_t> wait_any_for(std::vector<future<R>>& fs, std::chrono::duration<Rep, Period> d) {
    return wait_any_for(std::span<future<R>>(fs), d);
}
// Futures of different result types: the position (0-based) of a ready one among the arguments.
template <class... R>
    requires(sizeof...(R) > 1)
std::size_t wait_any(future<R>&... fs) {
    std::vector<detail::waitable> w;
    w.reserve(sizeof...(R));
    (w.push_back(fs.waitable()), ...);
    detail::wait_any(w, std::nullopt);
    for (std::size_t i = 0; i < w.size(); ++i)
        if (w[i].slot && w[i].slot->done) return i;
    throw error("parafork: wait_any found no ready future");
}

// The futures of `fs` in the order they become ready (answered or failed), each once; a future
// not valid when the range is made is skipped. Each step waits like wait_any; the futures
// stay in `fs` (which must outlive the range and not change size), the range yields references.
template <class R>
class as_completed_range {
public:
    explicit as_completed_range(std::span<future<R>> fs) : fs_(fs) {
        for (std::size_t i = 0; i < fs.size(); ++i)
            if (fs[i].valid()) left_.push_back(i);
    }

    struct sentinel {};
    class iterator {
    public:
        using value_type = future<R>;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(as_completed_range* r) : r_(r) { r_->advance(); }
        future<R>& operator*() const { return r_->fs_[r_->ready_[r_->at_]]; }
        future<R>* operator->() const { return &**this; }
        // Its position in the span given to as_completed.
        std::size_t index() const { return r_->ready_[r_->at_]; }
        iterator& operator++() {
            ++r_->at_;
            r_->advance();
            return *this;
        }
        void operator++(int) { ++*this; }
        bool at_end() const noexcept { return r_->at_ == r_->ready_.size(); }
        friend bool operator==(const iterator& it, sentinel) { return it.at_end(); }

    private:
        as_completed_range* r_ = nullptr;
    };
    iterator begin() { return iterator(this); }
    sentinel end() { return {}; }

private:
    // Makes ready_[at_] the next future to yield, waiting if none is ready; at the end, at_ is
    // ready_.size().
    void advance() {
        if (at_ < ready_.size() || left_.empty()) return;
        for (;;) {
            take_ready();
            if (at_ < ready_.size() || left_.empty()) return;
            w_.clear();
            for (std::size_t i : left_) w_.push_back(fs_[i].waitable());
            detail::wait_any(w_, std::nullopt);
        }
    }
    // Moves every answered future from left_ to ready_, in index order.
    void take_ready() {
        std::size_t keep = 0;
        for (std::size_t i : left_) {
            auto w = fs_[i].waitable();
            if (!w.slot || w.slot->done) ready_.push_back(i);  // got (or moved) meanwhile: yield it
            else left_[keep++] = i;
        }
        left_.resize(keep);
    }

    std::span<future<R>> fs_;
    std::vector<std::size_t> left_, ready_;
    std::vector<detail::waitable> w_;
    std::size_t at_ = 0;
};

template <class R>
as_completed_range<R> as_completed(std::span<future<R>> fs) {
    return as_completed_range<R>(fs);
}
template <class R>
as_completed_range<R> as_completed(std::vector<future<R>>& fs) {
    return as_completed_range<R>(std::span<future<R>>(fs));
}

} // namespace parafork

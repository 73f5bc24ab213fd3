#pragma once
// forked: a parallel for loop over processes (cligen's `forked`).
//
//   pf::forked(items, [](const Item& x) { return work(x); }, [&](Result&& r) { use(r); }, o);
//   pf::forked(items, [](std::size_t i, const Item& x) { ... }, [&](std::size_t i, Result&& r) { ... });
//
// The kids fork at the call, so `body` may read anything the parent had (captures, globals).
// A sized random-access range never crosses: kids get index ranges and read the items from
// their copy of the parent's memory. Any other input range is pulled lazily in the parent and
// its items stream to the kids (encoded, a bounded number in flight). Values returned by
// `body` are encoded, batched, and handed to `join` in the parent: in completion order, or in
// input order with options::ordered (results waiting for a slower earlier one are held, at
// most 64 MiB or 4096 runs of them: past that no work is sent until it arrives). `body` may
// return void (then `join()` or `join(i)`). The first failure (remote_error, worker_died, timeout_error) cancels the rest and is
// rethrown; Ctrl-C stops the kids and throws parafork::interrupted.

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>

#include <parafork/exec/core/detail/results.hpp>
#include <parafork/exec/core/detail/worker.hpp>
#include <parafork/exec/core/executor.hpp>
#include <parafork/exec/core/options.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork {
namespace detail {

template <class Range>
inline constexpr bool index_mode =
    std::ranges::random_access_range<Range> && std::ranges::sized_range<Range>;

// What a kid hands to body: the range's own element (index mode) or a decoded copy.
template <class Range>
using forked_item_t = std::conditional_t<index_mode<Range>, std::ranges::range_reference_t<Range>,
                                         std::ranges::range_value_t<Range>&>;

template <class Body, class Item>
decltype(auto) call_body(Body& body, std::uint64_t i, Item&& x) {
    if constexpr (std::is_invocable_v<Body&, std::size_t, Item&&>)
        return std::invoke(body, static_cast<std::size_t>(i), std::forward<Item>(x));
    else
        return std::invoke(body, std::forward<Item>(x));
}

template <class Body, class Item>
using body_result_t =
    std::decay_t<decltype(call_body(std::declval<Body&>(), 0, std::declval<Item>()))>;

template <class Join, class R>
void call_join(Join& join, std::uint64_t i, R& y) {
    auto idx = static_cast<std::size_t>(i);
    if constexpr (std::is_invocable_v<Join&, std::size_t, R&&>) std::invoke(join, idx, std::move(y));
    else if constexpr (std::is_invocable_v<Join&, std::size_t, R&>) std::invoke(join, idx, y);
    else if constexpr (std::is_invocable_v<Join&, R&&>) std::invoke(join, std::move(y));
    else std::invoke(join, y);
}

template <class Join>
void call_join_void(Join& join, std::uint64_t i) {
    if constexpr (std::is_invocable_v<Join&, std::size_t>) std::invoke(join, static_cast<std::size_t>(i));
    else std::invoke(join);
}

// Runs one item in a kid and reports its value or its exception.
template <class R, class Body, class Item>
void run_item(Body& body, std::uint64_t i, Item&& x, kid_output& out) {
    try {
        if constexpr (std::is_void_v<R>) {
            call_body(body, i, std::forward<Item>(x));
            out.value_void(i);
        } else {
            out.value(i, call_body(body, i, std::forward<Item>(x)));
        }
    } catch (...) {
        out.fail_current(i);
    }
}

template <class Range, class Body>
struct forked_kid {
    Range* range;
    Body* body;
    using R = body_result_t<Body, forked_item_t<Range>>;

    static void run(void* ctx, job_kind kind, std::uint64_t first, std::uint32_t count,
                    std::string_view bytes, kid_output& out) {
        auto& self = *static_cast<forked_kid*>(ctx);
        if constexpr (index_mode<Range>) {
            if (kind != job_kind::range) throw protocol_error("parafork: forked kid expected a range");
            auto it = std::ranges::begin(*self.range) +
                      static_cast<std::ranges::range_difference_t<Range>>(first);
            for (std::uint32_t k = 0; k < count; ++k, ++it) {
                out.start(first + k);  // from here a death of this kid is this item's
                run_item<R>(*self.body, first + k, *it, out);
            }
        } else {
            if (kind != job_kind::items) throw protocol_error("parafork: forked kid expected items");
            wire::reader r(bytes);
            for (std::uint32_t k = 0; k < count; ++k) {
                out.start(first + k);
                std::ranges::range_value_t<Range> x{};
                r.read(x);
                run_item<R>(*self.body, first + k, x, out);
            }
        }
    }
};

// Decodes runs of values in the parent and joins them, in input order when asked.
template <class R, class Join>
class forked_sink final : public executor_sink {
public:
    forked_sink(Join& join, bool ordered) : join_(join), ordered_(ordered) {}

    void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override {
        if (error) return;  // cancelled: the rest is not wanted
        if (!ordered_ || first == next_) {
            deliver(first, count, bytes);
            if (ordered_) drain();
        } else {
            // Kept for later with the descriptors it carries (a shared_array's memory).
            std::vector<sys::unique_fd> fds;
            if (auto* scope = current_incoming_fds()) fds = scope->rest();
            held_bytes_ += bytes.size();
            held_.emplace(first, held{count, std::string(bytes), std::move(fds)});
        }
    }
    // Results held back behind a slower earlier one: past these bounds no more work is sent,
    // so memory stays bounded however slow that one item is.
    static constexpr std::size_t max_held_bytes = std::size_t{64} << 20;
    static constexpr std::size_t max_held_runs = 4096;
    bool backed_up() const noexcept { return held_bytes_ > max_held_bytes || held_.size() > max_held_runs; }
    void on_failure(std::uint64_t index, const failure_info& f) override {
        if (!error) error = make_failure(f, index);
    }
    bool on_lent(std::uint64_t index, const lent_ref& r) override {
        if (error) return true;  // cancelled: not even read
        // A value that must wait for earlier ones goes the ordinary way (held as bytes).
        if constexpr (lendable<R>) {
            if (ordered_ && index != next_) return false;
            auto y = fetch_lent<R>(r);
            if (!y) return false;
            call_join(join_, index, *y);
            next_ = index + 1;
            if (ordered_) drain();
            return true;
        }
        return false;
    }

    std::exception_ptr error;

private:
    struct held {
        std::uint32_t count;
        std::string bytes;
        std::vector<sys::unique_fd> fds;
    };

    void deliver(std::uint64_t first, std::uint32_t count, std::string_view bytes) {
        if constexpr (std::is_void_v<R>) {
            for (std::uint32_t k = 0; k < count; ++k) call_join_void(join_, first + k);
        } else if constexpr (requires { join_.bulk(first, count, bytes); }) {
            join_.bulk(first, count, bytes);  // a whole run at once (map of plain values)
        } else if (count == 1) {
            R y = decode_one<R>(bytes);
            call_join(join_, first, y);
        } else {
            wire::reader r(bytes);
            for (std::uint32_t k = 0; k < count; ++k) {
                R y{};
                r.read(y);
                call_join(join_, first + k, y);
            }
            if (r.remaining() != 0) wire::reader::fail("trailing bytes after a run of values");
        }
        next_ = first + count;
    }
    void drain() {
        for (auto it = held_.begin(); it != held_.end() && it->first == next_; it = held_.erase(it)) {
            incoming_fds_scope fd_scope(it->second.fds);
            held_bytes_ -= it->second.bytes.size();
            deliver(it->first, it->second.count, it->second.bytes);
        }
    }

    Join& join_;
    bool ordered_;
    std::uint64_t next_ = 0;
    std::map<std::uint64_t, held> held_;
    std::size_t held_bytes_ = 0;
};

// Chunk sizes when options::chunksize is 0. Index chunks cost nothing to send, so they are big
// enough to make per-chunk overhead vanish yet leave ~8 per worker to balance the tail; items
// that stream grow from 1 as the range turns out long, so short slow ranges still spread.
inline std::uint64_t auto_index_chunk(std::uint64_t total, unsigned jobs) {
    return std::clamp<std::uint64_t>(total / (std::uint64_t{jobs} * 8), 1, 65536);
}
inline std::uint64_t auto_stream_chunk(std::uint64_t seen, unsigned jobs) {
    return std::clamp<std::uint64_t>(seen / (std::uint64_t{jobs} * 4), 1, 1024);
}

// Automatic chunks sized by the measured cost of an item: each takes about 10 ms of a worker's
// time, so slow items go in small chunks (a timeout, a cancel and the tail stay short) and
// trivial ones in big chunks (per-chunk overhead vanishes). The cost is what the workers measured
// running their jobs, not this process's wall clock: that counts round trips and start-up, and on
// a busy machine kept chunks small, whose round trips then kept the estimate small. Chunks start
// at 1, stay there until a cost is known, then at most quadruple from one to the next.
class chunk_sizer {
public:
    static constexpr double target_ns = 10e6;

    std::uint64_t next(std::uint64_t cap, const executor_counters& c) {
        if (c.timed > 0) {
            const double per_item = std::max(1.0, static_cast<double>(c.busy_ns) / static_cast<double>(c.timed));
            const double fit = target_ns / per_item;
            std::uint64_t want = std::min(cap, last_ * 4);
            if (fit < static_cast<double>(want)) want = static_cast<std::uint64_t>(fit);
            last_ = std::max<std::uint64_t>(want, 1);
        }
        return last_ = std::min(last_, std::max<std::uint64_t>(cap, 1));
    }

private:
    std::uint64_t last_ = 1;
};

} // namespace detail

template <std::ranges::input_range Range, class Body, class Join>
void forked(Range&& range, Body&& body, Join&& join, const options& o = {}) {
    using range_t = std::remove_reference_t<Range>;
    using body_t = std::remove_reference_t<Body>;
    using kid_t = detail::forked_kid<range_t, body_t>;
    using R = typename kid_t::R;
    constexpr bool indexed = detail::index_mode<range_t>;

    std::uint64_t total = 0;
    if constexpr (indexed) {
        total = static_cast<std::uint64_t>(std::ranges::size(range));
        if (total == 0) return;
    }
    kid_t kid{&range, &body};
    sys::sigint_guard ctrl_c;  // from the fork to the last reap, Ctrl-C is this call's
    const auto eng = detail::make_local_executor(o, &kid_t::run, &kid, total);
    detail::forked_sink<R, std::remove_reference_t<Join>> sink(join, o.ordered);
    const unsigned jobs = eng->size();

    if constexpr (indexed) {
        const std::uint64_t cap = detail::auto_index_chunk(total, jobs);
        detail::chunk_sizer sizer;
        std::uint64_t next = 0;
        for (;;) {
            while (next < total && eng->counters().queued < 2 * jobs && !sink.backed_up()) {
                const std::uint64_t chunk = o.chunksize ? o.chunksize : sizer.next(cap, eng->counters());
                detail::job j;
                j.kind = detail::job_kind::range;
                j.first = next;
                j.count = static_cast<std::uint32_t>(std::min<std::uint64_t>({chunk, total - next, UINT32_MAX}));
                next += j.count;
                eng->push(std::move(j));
            }
            if (sink.error || !eng->pump(sink) || sink.error) break;
        }
    } else {
        auto it = std::ranges::begin(range);
        auto end = std::ranges::end(range);
        detail::chunk_sizer sizer;
        std::uint64_t next = 0;
        for (;;) {
            while (it != end && eng->counters().queued < 2 * jobs && !sink.backed_up()) {
                const std::uint64_t chunk =
                    o.chunksize ? o.chunksize
                                : sizer.next(detail::auto_stream_chunk(next, jobs), eng->counters());
                detail::job j;
                j.kind = detail::job_kind::items;
                j.first = next;
                while (it != end && j.count < chunk) {
                    j.offsets.push_back(static_cast<std::uint32_t>(j.body.size()));
                    detail::outgoing_fds().clear();
                    wire::encode_to(j.body, static_cast<const std::ranges::range_value_t<range_t>&>(*it));
                    detail::refuse_descriptors("items of a forked input range that is not random access");
                    ++j.count;
                    ++it;
                }
                next += j.count;
                eng->push(std::move(j));
            }
            if (sink.error || !eng->pump(sink) || sink.error) break;
        }
    }
    if (sink.error) {
        eng->terminate();
        std::rethrow_exception(sink.error);
    }
    eng->join(sink);
}

} // namespace parafork

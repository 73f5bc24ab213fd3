#pragma once
// map / starmap over processes forked at the call (snakefish's map and starmap):
//
//   std::vector<R> v = pf::map(f, items, o);        // v[i] = f(items[i])
//   std::vector<R> w = pf::starmap(f, tuples, o);   // w[i] = std::apply(f, tuples[i])
//
// Built on forked, so `f` may be any callable, capturing anything: the kids are copies of the
// caller. Results come back in input order. The first failure cancels the remaining work and is
// rethrown (remote_error, worker_died, timeout_error; interrupted on Ctrl-C).
//
// With extract / merge (snakefish's semantics): each worker runs `extract()` after its last
// item and its value is sent up; the parent calls `merge(value)` once per worker, in worker
// order, before returning. Items are split into one contiguous part per job (a process each,
// not one per chunk), so the range must be sized and random-access, and options::chunksize
// must be 0 (std::invalid_argument otherwise). The parts run under forked, so the other
// options apply per part: task_timeout bounds a whole part, retries re-run a part whose
// worker died (in a fresh process, so its extract() sees that run only). A worker that dies
// is worker_died, its task() the first item of its part; an exception of any type in f or
// extract is remote_error naming the item.
//
//   int hits = 0;   // each worker counts in its own copy
//   auto v = pf::map([&](int x) { ++hits; return x * x; }, items,
//                    [&] { return hits; }, [&](int h) { total += h; }, o);

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <unistd.h>
#include <variant>
#include <functional>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/error.hpp>
#include <parafork/exec/coproc/fork_join.hpp>
#include <parafork/exec/forked/forked.hpp>

namespace parafork {

template <class F, std::ranges::input_range Range>
auto map(F&& f, Range&& range, const options& o = {}) {
    using item_t = detail::forked_item_t<std::remove_reference_t<Range>>;
    using R = std::decay_t<std::invoke_result_t<F&, item_t>>;
    static_assert(!std::is_void_v<R>, "parafork::map needs a function that returns a value; "
                                      "use forked for void bodies");
    std::vector<R> out;
    auto body = [&f](auto&& x) -> R { return std::invoke(f, std::forward<decltype(x)>(x)); };
    if constexpr (std::ranges::sized_range<Range> && wire::detail::memcpy_able<R>) {
        // Plain values: each run of answers is copied into place in one go.
        struct bulk_join {
            std::vector<R>& out;
            std::size_t n;
            void operator()(std::size_t i, R&& y) { out[i] = std::move(y); }
            void bulk(std::uint64_t first, std::uint32_t count, std::string_view bytes) {
                if (bytes.size() != std::size_t{count} * sizeof(R) || first + count > n)
                    wire::reader::fail("a run of values does not fit its place");
                if (out.size() != n) out.resize(n);  // after the fork: see below
                std::memcpy(out.data() + first, bytes.data(), bytes.size());
            }
        };
        const auto n = static_cast<std::size_t>(std::ranges::size(range));
        forked(range, body, bulk_join{out, n}, o);
        out.resize(n);
    } else if constexpr (std::ranges::sized_range<Range>) {
        // Sized at the first answer, after the fork: sized before it, every page the parent then
        // wrote would be a copy-on-write fault against the kids' view of it.
        const auto n = static_cast<std::size_t>(std::ranges::size(range));
        forked(range, body, [&out, n](std::size_t i, R&& y) {
            if (out.size() != n) out.resize(n);
            out[i] = std::move(y);
        }, o);
        out.resize(n);
    } else {
        options in_order = o;
        in_order.ordered = true;
        forked(range, body, [&out](R&& y) { out.push_back(std::move(y)); }, in_order);
    }
    return out;
}

namespace detail {
// What stopped a part of map-with-merge: the exception's type and message, where.
struct map_failure {
    std::string type, what;
    std::int64_t pid = 0, task = 0;
    template <class A>
    void serialize(A& ar) {
        ar(type, what, pid, task);
    }
};
// The exception in flight (call from a catch block), any type: its name and what().
inline map_failure current_failure(std::size_t at) {
    map_failure f;
    f.pid = ::getpid();
    f.task = static_cast<std::int64_t>(at);
    auto info = describe_current_exception();
    f.type = std::move(info.type);
    f.what = std::move(info.what);
    return f;
}
} // namespace detail

template <class F, std::ranges::random_access_range Range, class Extract, class Merge>
    requires std::ranges::sized_range<Range> && std::is_invocable_v<Extract&>
auto map(F&& f, Range&& range, Extract&& extract, Merge&& merge, const options& o = {}) {
    using item_t = std::ranges::range_reference_t<Range>;
    using R = std::decay_t<std::invoke_result_t<F&, item_t>>;
    using E = std::decay_t<std::invoke_result_t<Extract&>>;
    static_assert(!std::is_void_v<R> && !std::is_void_v<E>,
                  "parafork::map with extract/merge needs f and extract to return values");
    // One part per worker, each worker one part: chunks would mix two parts' state in one
    // extract(), so a chunk size cannot be honoured.
    if (o.chunksize)
        throw std::invalid_argument("parafork::map with extract/merge splits the items into one "
                                    "part per job; options::chunksize must be 0");
    // A part's answer: its results and extracted state, or the exception that stopped it.
    using failure = detail::map_failure;
    using answer = std::variant<std::pair<std::vector<R>, E>, failure>;
    const auto n = static_cast<std::size_t>(std::ranges::size(range));
    const unsigned jobs = static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(resolve_jobs(o.jobs), n)));
    // Run by forked (one item per part, as many workers as parts: each worker takes one part,
    // a part lost with its worker runs again in a fresh one): the options, worker_died,
    // timeouts, retries and Ctrl-C are forked's.
    const std::vector<slice> parts = nsplit(n, jobs);
    options po = o;
    po.jobs = jobs;
    po.chunksize = 1;
    // A part run again must not land on a worker that already ran (and extracted) another.
    if (o.retries) po.max_tasks_per_worker = 1;
    std::vector<std::optional<answer>> answers(parts.size());
    try {
        forked(parts,
               [&](const slice& s) -> answer {
                   std::size_t at = s.start;
                   try {
                       std::vector<R> out;
                       out.reserve(s.size());
                       for (; at < s.stop; ++at) out.push_back(std::invoke(f, std::ranges::begin(range)[at]));
                       return std::pair<std::vector<R>, E>(std::move(out), std::invoke(extract));
                   } catch (...) {
                       return detail::current_failure(at);
                   }
               },
               [&](std::size_t k, answer&& a) { answers[k] = std::move(a); }, po);
    } catch (const worker_died& e) {
        // forked names the part; the caller knows items: name the part's items.
        const slice& s = parts.at(e.task().value_or(0));
        throw worker_died(e.pid(), e.signal(), e.exit_code(), s.start,
                          "while running items " + std::to_string(s.start) + " to " +
                              std::to_string(s.stop - 1) + " of its part");
    }
    std::vector<R> out;
    out.reserve(n);
    for (auto& a : answers)
        if (!a) throw error("parafork::map: a part came back without an answer");
    for (auto& a : answers)
        if (auto* bad = std::get_if<failure>(&*a))
            throw remote_error(bad->type, bad->what, static_cast<pid_t>(bad->pid),
                               static_cast<std::size_t>(bad->task));
    for (auto& a : answers) {
        auto& [results, state] = std::get<0>(*a);
        for (auto& r : results) out.push_back(std::move(r));
        std::invoke(merge, std::move(state));
    }
    return out;
}

template <class F, std::ranges::random_access_range Range, class Extract, class Merge>
    requires std::ranges::sized_range<Range> && std::is_invocable_v<Extract&>
auto starmap(F&& f, Range&& tuples, Extract&& extract, Merge&& merge, const options& o = {}) {
    return parafork::map([&f](auto&& t) { return std::apply(f, std::forward<decltype(t)>(t)); },
                         std::forward<Range>(tuples), std::forward<Extract>(extract),
                         std::forward<Merge>(merge), o);
}

template <class F, std::ranges::input_range Range>
auto starmap(F&& f, Range&& tuples, const options& o = {}) {
    return parafork::map([&f](auto&& t) { return std::apply(f, std::forward<decltype(t)>(t)); },
                         std::forward<Range>(tuples), o);
}

} // namespace parafork

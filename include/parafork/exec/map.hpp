#pragma once
// map / starmap over processes forked at the call (snakefish's map and starmap):
//
//   std::vector<R> v = pf::map(f, items, o);        // v[i] = f(items[i])
//   std::vector<R> w = pf::starmap(f, tuples, o);   // w[i] = std::apply(f, tuples[i])
//
// Built on forked, so `f` may be any callable, capturing anything: the kids are copies of the
// caller. Results come back in input order. The first failure cancels the remaining work and is
// rethrown (remote_error, worker_died, timeout_error; interrupted on Ctrl-C).

#include <cstring>
#include <functional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/exec/forked.hpp>

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

template <class F, std::ranges::input_range Range>
auto starmap(F&& f, Range&& tuples, const options& o = {}) {
    return parafork::map([&f](auto&& t) { return std::apply(f, std::forward<decltype(t)>(t)); },
                         std::forward<Range>(tuples), o);
}

} // namespace parafork

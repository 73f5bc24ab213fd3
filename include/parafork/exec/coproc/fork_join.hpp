#pragma once
// fork_join: one forked child per part, all at once; the parent waits for the slowest (join).
// Children see everything the parent had ("set up" memory is shared copy-on-write). A part's
// work may return a value (any codec type): fork_join then returns them in part order.
// The first part to fail stops the others and is thrown: an exception in the work as
// remote_error (its type and message), a death or a nonzero exit as worker_died (pid, signal
// or exit code); either way task() is the part's index.

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/exec/core/supervisor.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork {

// A half-open range of indices [start, stop), iterable: `for (std::size_t i : s)`.
struct slice {
    std::size_t start = 0, stop = 0;

    // (std::views::iota would do, but clang 14 cannot compile libstdc++ 12's iota_view.)
    struct iterator {
        using value_type = std::size_t;
        using difference_type = std::ptrdiff_t;
        std::size_t i = 0;
        std::size_t operator*() const noexcept { return i; }
        iterator& operator++() noexcept {
            ++i;
            return *this;
        }
        iterator operator++(int) noexcept { return {i++}; }
        bool operator==(const iterator&) const = default;
    };

    std::size_t size() const noexcept { return stop - start; }
    bool empty() const noexcept { return stop == start; }
    iterator begin() const noexcept { return {start}; }
    iterator end() const noexcept { return {stop}; }
    bool operator==(const slice&) const = default;
};

// Splits [0, length) into `parts` slices whose sizes differ by at most one (the first
// length % parts slices are one longer). parts == 0 throws std::invalid_argument.
std::vector<slice> nsplit(std::size_t length, std::size_t parts);

namespace detail {

// Part i is child i of `sup`; results[i] the read end of its report (private: later parts never
// hold it). Waits for every part, collecting the encoded results; on the first failure stops
// the rest and throws remote_error or worker_died (or interrupted on SIGINT, after stopping
// them all).
std::vector<std::string> fork_join_wait(supervisor& sup, std::vector<sys::private_fd>& results);
// In a part's child: the report of a result (its encoding), or of the exception being handled.
[[noreturn]] void fork_join_report_result(int fd, const std::string& encoded) noexcept;
[[noreturn]] void fork_join_report_exception(int fd) noexcept;

} // namespace detail

template <std::ranges::forward_range Parts, class Work>
auto fork_join(const Parts& parts, Work&& work) {
    using part_t = std::ranges::range_reference_t<const Parts>;
    using R = std::invoke_result_t<Work&, std::size_t, part_t>;
    // Ctrl-C is the call's from the first fork (before the supervisor, so that the parts are
    // stopped and reaped before an unhandled SIGINT goes back to the program's own handler).
    sys::sigint_guard ctrl_c;
    detail::supervisor sup;  // stops and reaps every part started, however we leave
    std::vector<sys::private_fd> pipes;
    if constexpr (std::ranges::sized_range<const Parts>) pipes.reserve(std::ranges::size(parts));
    std::size_t k = 0;
    for (auto&& part : parts) {
        sys::fd_pair p = sys::make_pipe();
        pipes.emplace_back();  // room for the read end before the fork
        sys::child_options co;
        co.title = "fork_join#" + std::to_string(k);
        sup.fork(
            [&] {
                p.read.reset();
                std::string out;
                try {
                    if constexpr (std::is_void_v<R>) work(k, part);
                    else out = wire::encode(work(k, part));
                } catch (...) {
                    detail::fork_join_report_exception(p.write.get());
                }
                detail::fork_join_report_result(p.write.get(), out);
            },
            co);
        pipes.back() = sys::private_fd(std::move(p.read));
        ++k;
        sys::sigint_guard::check();  // no more forks after Ctrl-C
    }
    auto results = detail::fork_join_wait(sup, pipes);
    if constexpr (!std::is_void_v<R>) {
        std::vector<R> out;
        out.reserve(results.size());
        for (auto& r : results) out.push_back(wire::decode<R>(r));
        return out;
    }
}

} // namespace parafork

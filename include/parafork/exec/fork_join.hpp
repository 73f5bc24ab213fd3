#pragma once
// fork_join: one forked child per part, all at once; the parent waits for the slowest (join).
// Children see everything the parent had ("set up" memory is shared copy-on-write). A part's
// work may return a value (any codec type): fork_join then returns them in part order.
// Failed parts (an exception, an exit code, a signal) are reported together in one error.

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
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

struct fork_join_child {
    pid_t pid;
    sys::private_fd result;  // read end; empty for void work. Private: later parts never hold it
};
// Waits for every child, collecting the encoded results; throws parafork::error listing the
// failed parts (or interrupted on SIGINT, after stopping them all).
std::vector<std::string> fork_join_wait(std::vector<fork_join_child>& kids);

} // namespace detail

template <std::ranges::forward_range Parts, class Work>
auto fork_join(const Parts& parts, Work&& work) {
    using part_t = std::ranges::range_reference_t<const Parts>;
    using R = std::invoke_result_t<Work&, std::size_t, part_t>;
    std::vector<detail::fork_join_child> kids;
    if constexpr (std::ranges::sized_range<const Parts>) kids.reserve(std::ranges::size(parts));
    try {
        std::size_t k = 0;
        for (auto&& part : parts) {
            sys::fd_pair p;
            if constexpr (!std::is_void_v<R>) p = sys::make_pipe();
            sys::child_options co;
            co.title = "fork_join#" + std::to_string(k);
            pid_t pid = sys::fork_process(co);
            if (pid == 0) {
                int code = 0;
                try {
                    p.read.reset();
                    if constexpr (std::is_void_v<R>) {
                        work(k, part);
                    } else {
                        std::string out = wire::encode(work(k, part));
                        sys::write_all(p.write.get(), out);
                    }
                } catch (...) {
                    code = sys::report_child_exception();
                }
                sys::exit_child(code);
            }
            try {
                kids.push_back({pid, sys::private_fd(std::move(p.read))});
            } catch (...) {
                sys::child(pid).kill_and_reap();  // not in `kids` yet: nobody else would reap it
                throw;
            }
            ++k;
        }
    } catch (...) {
        for (auto& c : kids) sys::child(c.pid).kill_and_reap();
        throw;
    }
    auto results = detail::fork_join_wait(kids);
    if constexpr (!std::is_void_v<R>) {
        std::vector<R> out;
        out.reserve(results.size());
        for (auto& r : results) out.push_back(wire::decode<R>(r));
        return out;
    }
}

} // namespace parafork

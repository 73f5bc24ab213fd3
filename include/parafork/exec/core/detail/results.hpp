#pragma once
// The parent's side of a worker's answers (internal): decoding one value, and taking a value a
// worker lent (see lent_value) straight out of its memory.

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <sys/types.h>

#include <parafork/error.hpp>
#include <parafork/exec/core/detail/worker.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork::detail {

// Asks for huge pages on a big fresh destination before it is first written: 512 times fewer
// page faults when a large result is copied in (a no-op for small sizes or where THP is off).
void prepare_bulk_destination(void* p, std::size_t bytes) noexcept;

// Decodes a buffer holding exactly one value. A vector of trivially copyable elements is
// built straight from the bytes (one pass: no zero-fill before the copy); that is most of the
// cost of a large result.
template <class R>
R decode_one(std::string_view bytes) {
    if constexpr (wire::detail::is_std_vector<R>::value) {
        using T = typename R::value_type;
        if constexpr (wire::detail::memcpy_able<T>) {
            std::uint64_t n = 0;
            const char* p = bytes.data() + sizeof n;
            if (bytes.size() >= sizeof n && reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0) {
                std::memcpy(&n, bytes.data(), sizeof n);
                if (n == (bytes.size() - sizeof n) / sizeof(T) &&
                    n * sizeof(T) == bytes.size() - sizeof n) {
                    auto* first = reinterpret_cast<const T*>(p);
                    R v;
                    v.reserve(n);
                    prepare_bulk_destination(v.data(), n * sizeof(T));
                    v.insert(v.end(), first, first + n);
                    return v;
                }
            }
        }
    }
    return wire::decode<R>(bytes);
}

// A value a worker lent (see lent_value), as the parent's sinks see it.
struct lent_ref {
    pid_t pid;
    lent_value v;
};
// Copies r's bytes into dst. `size_to(ctx, k)` makes the destination k elements long (each
// `elem` bytes; dst has room for all); it is called with growing k, in the calling thread, and
// each part is copied only once its elements exist. A big value is cut into parts so that
// sizing (which zero-fills) and copying run on two CPUs at once. False if a part cannot be
// read (see sys::read_process_memory).
bool copy_lent(const lent_ref& r, char* dst, std::size_t elem,
               void (*size_to)(void* ctx, std::size_t elems), void* ctx);

// Builds the lent value in the parent: sized (and given huge pages) first, then filled with
// one copy straight from the worker. Empty when the worker's memory cannot be read (the
// worker then sends the value by memfd instead); protocol_error for sizes that do not fit R.
template <class R>
std::optional<R> fetch_lent(const lent_ref& r) {
    if constexpr (lendable<R>) {
        using T = typename R::value_type;
        R y;
        if (r.v.count > y.max_size() || r.v.bytes / sizeof(T) != r.v.count ||
            r.v.bytes % sizeof(T) != 0)
            throw protocol_error("parafork: a lent value's size does not match its type");
        y.reserve(static_cast<std::size_t>(r.v.count));
        prepare_bulk_destination(y.data(), static_cast<std::size_t>(r.v.bytes));
        // The storage does not move from here on: every size_to stays within the capacity.
        if (!copy_lent(r, reinterpret_cast<char*>(y.data()), sizeof(T),
                       [](void* ctx, std::size_t k) { static_cast<R*>(ctx)->resize(k); }, &y))
            return std::nullopt;
        return y;
    } else {
        return std::nullopt;
    }
}

} // namespace parafork::detail

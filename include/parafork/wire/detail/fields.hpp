#pragma once
// The fields of a plain aggregate (`struct point { int x, y; }`), found without the user
// declaring them, so the codec can check each one: a struct goes by memcpy only when every
// field may hold any byte pattern and none is a pointer, and field by field otherwise.
//
// A field count is first sought as the largest n for which T{{f1}, ..., {fn}} compiles, where
// each fi converts to any non-class type: the braces stop brace elision, so a C-array member
// counts once, and a class member is built by its own constructors from a scalar or a one-item
// initializer list, never ambiguously by a copy. That count is taken if no further plain
// initializer fits after it. Otherwise (a member built only by an explicit constructor, such as
// std::vector or std::chrono::duration) the count is the largest n for which T{f1, ..., fn}
// compiles with each fi converting to anything, which counts each member once unless it is a
// C array. A wrong count cannot slip through: the structured binding that reaches the fields
// must name exactly as many as there are, or the program does not compile, and zero fields is
// trusted only for an empty class. Up to max_fields fields; bigger types, types with base
// classes that hold fields, and bit-fields are not reflected (give them serialize()).

#include <cstddef>
#include <exception>
#include <type_traits>
#include <utility>

namespace parafork::wire::detail {

inline constexpr std::size_t max_fields = 16;
inline constexpr std::size_t no_count = static_cast<std::size_t>(-1);

// Only for the probes below, which never run: a body exists because some compilers instantiate
// the constexpr constructors a probe names, and with them these conversions.
template <class T>
[[noreturn]] std::add_rvalue_reference_t<T> never_called() noexcept {
    std::terminate();
}
struct any_scalar {
    template <class T>
        requires(!std::is_class_v<T>)
    operator T() const noexcept {
        return never_called<T>();
    }
};
struct any_value {
    template <class T>
    operator T() const noexcept {
        return never_called<T>();
    }
};

template <class T, std::size_t... I>
constexpr bool constructible_from_braced(std::index_sequence<I...>) {
    return requires { T{{((void)I, any_scalar{})}...}; };
}
template <class T, std::size_t... I>
constexpr bool one_more_fits(std::index_sequence<I...>) {
    return requires { T{{((void)I, any_scalar{})}..., any_value{}}; };
}

template <class T, std::size_t... I>
constexpr bool constructible_from_values(std::index_sequence<I...>) {
    return requires { T{((void)I, any_value{})...}; };
}

template <class T, bool Braced, std::size_t N = max_fields + 1>
constexpr std::size_t largest_count() {
    constexpr bool fits = Braced ? constructible_from_braced<T>(std::make_index_sequence<N>{})
                                 : constructible_from_values<T>(std::make_index_sequence<N>{});
    if constexpr (fits) return N;
    else if constexpr (N == 0) return no_count;
    else return largest_count<T, Braced, N - 1>();
}

template <class T>
constexpr std::size_t count_initializers() {
    constexpr std::size_t braced = largest_count<T, true>();
    if constexpr (braced != no_count && braced <= max_fields &&
                  !one_more_fits<T>(std::make_index_sequence<braced>{}))
        return braced;
    else return largest_count<T, false>();
}

template <class T>
constexpr std::size_t count_fields() {
    if constexpr (std::is_class_v<T> && std::is_aggregate_v<T> && !std::is_union_v<T>) {
        constexpr std::size_t n = count_initializers<T>();
        if constexpr (n == no_count || n > max_fields) return no_count;
        else if constexpr (n == 0 && !std::is_empty_v<T>) return no_count;
        else return n;
    } else {
        return no_count;  // unions never: which member is live cannot be known
    }
}

template <class T>
constexpr std::size_t field_count = count_fields<T>();

// Aggregate classes whose fields we can reach one by one.
template <class T>
constexpr bool reflectable = field_count<T> != no_count;

template <class... T>
struct type_list {};

// Calls f on each field of t (T may be const), in declaration order.
// NOLINTBEGIN(cppcoreguidelines-macro-usage): one line per field count, written once.
#define PARAFORK_FIELDS_CASE(n, ...)                                                               \
    else if constexpr (N == n) {                                                                   \
        auto& [__VA_ARGS__] = t;                                                                   \
        return f(__VA_ARGS__);                                                                     \
    }
template <class T, class F>
constexpr decltype(auto) apply_fields(T& t, F&& f) {
    constexpr std::size_t N = field_count<std::remove_const_t<T>>;
    if constexpr (N == 0) return f();
    PARAFORK_FIELDS_CASE(1, a)
    PARAFORK_FIELDS_CASE(2, a, b)
    PARAFORK_FIELDS_CASE(3, a, b, c)
    PARAFORK_FIELDS_CASE(4, a, b, c, d)
    PARAFORK_FIELDS_CASE(5, a, b, c, d, e)
    PARAFORK_FIELDS_CASE(6, a, b, c, d, e, g)
    PARAFORK_FIELDS_CASE(7, a, b, c, d, e, g, h)
    PARAFORK_FIELDS_CASE(8, a, b, c, d, e, g, h, i)
    PARAFORK_FIELDS_CASE(9, a, b, c, d, e, g, h, i, j)
    PARAFORK_FIELDS_CASE(10, a, b, c, d, e, g, h, i, j, k)
    PARAFORK_FIELDS_CASE(11, a, b, c, d, e, g, h, i, j, k, l)
    PARAFORK_FIELDS_CASE(12, a, b, c, d, e, g, h, i, j, k, l, m)
    PARAFORK_FIELDS_CASE(13, a, b, c, d, e, g, h, i, j, k, l, m, n_)
    PARAFORK_FIELDS_CASE(14, a, b, c, d, e, g, h, i, j, k, l, m, n_, o)
    PARAFORK_FIELDS_CASE(15, a, b, c, d, e, g, h, i, j, k, l, m, n_, o, p)
    PARAFORK_FIELDS_CASE(16, a, b, c, d, e, g, h, i, j, k, l, m, n_, o, p, q)
}
#undef PARAFORK_FIELDS_CASE
// NOLINTEND(cppcoreguidelines-macro-usage)

struct list_field_types {
    template <class... F>
    type_list<std::remove_cvref_t<F>...> operator()(F&...) const {
        return {};
    }
};

// The declared types of T's fields, as a type_list (unevaluated use only).
template <class T>
using field_types = decltype(apply_fields(std::declval<T&>(), list_field_types{}));

} // namespace parafork::wire::detail

#pragma once
// The codec: values to bytes and back, for everything that crosses a process boundary.
//
//  - plain values go by memcpy: types for which every byte pattern is a valid value and which
//    point nowhere (integers, floating point, enums with a fixed underlying type, arrays and
//    aggregates of those). bool goes as one byte checked on the way in;
//  - std::string, vector, array, map, unordered_map, set, optional, variant, pair and tuple
//    are built in;
//  - user types by cereal's convention: a member or free `serialize(Archive& ar)` calling
//    `ar(a, b, c)`, or a `save(Archive&) const` / `load(Archive&)` pair. Types written for
//    cereal work unchanged; `Archive::is_loading` tells the two directions apart;
//  - other aggregates (`struct item { std::string name; bool ok; };`) field by field.
//
// Decoding trusts no byte: every read is bounds-checked and a truncated or corrupt buffer throws
// parafork::protocol_error; lengths are checked against what remains before anything is
// allocated. Pointers, and anything holding one (std::span, a struct with a pointer field), do
// not compile: they mean nothing in another process. Neither do enums without a fixed
// underlying type (their valid values cannot be known, so a decoded one cannot be checked) nor
// trivially copyable classes the codec cannot look into (constructors, private fields): give
// those serialize(), or vouch for them with trivially_encodable<T> below.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <parafork/error.hpp>
#include <parafork/wire/detail/fields.hpp>

namespace parafork::wire {

class writer;
class reader;

// Specialize codec<T> with static encode(writer&, const T&) and decode(reader&, T&) to take
// over a type completely.
template <class T, class Enable = void>
struct codec;

// Specialize to std::true_type for a trivially copyable class the codec cannot look into (one
// with constructors or private fields) to send it by memcpy. By doing so you promise that every
// byte pattern is a valid value and that it holds no pointer, handle or reference.
template <class T>
struct trivially_encodable : std::false_type {};

namespace detail {

template <class T> struct is_std_vector : std::false_type {};
template <class T, class A> struct is_std_vector<std::vector<T, A>> : std::true_type {};
template <class T> struct is_std_array : std::false_type {};
template <class T, std::size_t N> struct is_std_array<std::array<T, N>> : std::true_type {};
template <class T> struct is_map_like : std::false_type {};
template <class K, class V, class C, class A> struct is_map_like<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct is_map_like<std::unordered_map<K, V, H, E, A>> : std::true_type {};
template <class T> struct is_set_like : std::false_type {};
template <class K, class C, class A> struct is_set_like<std::set<K, C, A>> : std::true_type {};
template <class K, class H, class E, class A>
struct is_set_like<std::unordered_set<K, H, E, A>> : std::true_type {};
template <class T> struct is_optional : std::false_type {};
template <class T> struct is_optional<std::optional<T>> : std::true_type {};
template <class T> struct is_variant : std::false_type {};
template <class... T> struct is_variant<std::variant<T...>> : std::true_type {};
template <class T> struct is_tuple_like : std::false_type {};
template <class A, class B> struct is_tuple_like<std::pair<A, B>> : std::true_type {};
template <class... T> struct is_tuple_like<std::tuple<T...>> : std::true_type {};

template <class T, class Ar>
concept has_member_serialize = requires(T& t, Ar& ar) { t.serialize(ar); };
template <class T, class Ar>
concept has_free_serialize = requires(T& t, Ar& ar) { serialize(ar, t); };
template <class T>
concept has_save_load = requires(const T& c, T& t, writer& w, reader& r) {
    c.save(w);
    t.load(r);
};
template <class T>
concept has_custom_codec = requires { codec<T>::is_custom; };

template <class T>
constexpr bool has_own_codec = has_member_serialize<T, writer> || has_free_serialize<T, writer> ||
                               has_save_load<T> || has_custom_codec<T>;

// An enum whose every underlying value is one of its values ([dcl.enum]): scoped enums and
// `enum E : int`. Only these accept E{n}.
template <class T>
concept fixed_enum = std::is_enum_v<T> && requires { T{std::underlying_type_t<T>{}}; };

template <class T>
constexpr bool plain_check();

template <class L>
struct all_plain;
template <class... F>
struct all_plain<type_list<F...>> : std::bool_constant<(plain_check<F>() && ...)> {};

// Types whose bytes are their value: any byte pattern is valid and nothing points anywhere.
// A user type with serialize() is not memcpy'd even when it would qualify: its author said how
// it goes. std::optional and std::variant are excluded even when trivially copyable: their tag
// bytes must be validated on the way in, not trusted.
template <class T>
constexpr bool plain_check() {
    if constexpr (has_own_codec<T>) return false;
    else if constexpr (trivially_encodable<T>::value) return std::is_trivially_copyable_v<T>;
    else if constexpr (std::is_same_v<T, bool>) return false;
    else if constexpr (std::is_arithmetic_v<T>) return true;
    else if constexpr (std::is_enum_v<T>) return fixed_enum<T>;
    else if constexpr (std::is_array_v<T>) return plain_check<std::remove_extent_t<T>>();
    else if constexpr (is_std_array<T>::value) return plain_check<typename T::value_type>();
    else if constexpr (is_optional<T>::value || is_variant<T>::value || is_tuple_like<T>::value)
        return false;
    else if constexpr (!std::is_trivially_copyable_v<T>) return false;
    else if constexpr (reflectable<T>) return all_plain<field_types<T>>::value;
    else return false;
}

template <class T>
constexpr bool memcpy_able = plain_check<T>();

// Aggregates that are not plain go field by field.
template <class T>
constexpr bool by_fields_check() {
    if constexpr (has_own_codec<T> || memcpy_able<T> || is_std_array<T>::value ||
                  is_tuple_like<T>::value)
        return false;
    else return reflectable<T>;
}
template <class T>
constexpr bool by_fields = by_fields_check<T>();

} // namespace detail

// Appends encoded values to a std::string the caller owns (and may reuse).
class writer {
public:
    static constexpr bool is_loading = false;
    static constexpr bool is_saving = true;

    explicit writer(std::string& out) noexcept : out_(&out) {}

    template <class... T>
    writer& operator()(const T&... values) {
        (write(values), ...);
        return *this;
    }
    template <class T>
    writer& operator&(const T& v) {
        write(v);
        return *this;
    }
    template <class T>
    writer& operator<<(const T& v) {
        write(v);
        return *this;
    }

    void write_bytes(const void* p, std::size_t n) { out_->append(static_cast<const char*>(p), n); }
    void write_size(std::size_t n) {
        std::uint64_t v = n;
        write_bytes(&v, sizeof v);
    }
    template <class T>
    void write(const T& v);

    std::string& buffer() noexcept { return *out_; }

private:
    std::string* out_;
};

// Reads encoded values from a byte view; every read is checked against the end.
class reader {
public:
    static constexpr bool is_loading = true;
    static constexpr bool is_saving = false;

    explicit reader(std::string_view in) noexcept
        : p_(in.data()), end_(in.data() + in.size()), empty_budget_(in.size() + max_empty_elements) {}

    // Elements that may encode to nothing (user types, empty tuples) cannot be checked against
    // the bytes left one by one; instead all such counts in one decode together may not exceed
    // the input's size plus this many, so corrupt counts cannot multiply through nesting.
    static constexpr std::size_t max_empty_elements = 65536;

    template <class... T>
    reader& operator()(T&... values) {
        (read(values), ...);
        return *this;
    }
    template <class T>
    reader& operator&(T& v) {
        read(v);
        return *this;
    }
    template <class T>
    reader& operator>>(T& v) {
        read(v);
        return *this;
    }

    std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
    const char* position() const noexcept { return p_; }

    void read_bytes(void* dst, std::size_t n) {
        need(n);
        if (n) std::memcpy(dst, p_, n);
        p_ += n;
    }
    std::string_view take(std::size_t n) {
        need(n);
        std::string_view v(p_, n);
        p_ += n;
        return v;
    }
    // A count of elements that each take at least `min_each` bytes: checked against what is
    // left before the caller allocates for it.
    std::size_t read_size(std::size_t min_each = 1) {
        std::uint64_t v;
        read_bytes(&v, sizeof v);
        if (min_each == 0) {
            // Elements that may encode to nothing: each count draws on one budget per decode
            // (see max_empty_elements), so memory stays linear in the input.
            if (v > empty_budget_) fail("element count too large");
            empty_budget_ -= static_cast<std::size_t>(v);
        } else if (v > remaining() / min_each) {
            fail("length exceeds the remaining input");
        }
        return static_cast<std::size_t>(v);
    }
    template <class T>
    void read(T& v);

    [[noreturn]] static void fail(const char* what) {
        throw protocol_error(std::string("parafork: cannot decode: ") + what);
    }

private:
    void need(std::size_t n) const {
        if (n > static_cast<std::size_t>(end_ - p_)) fail("truncated input");
    }
    const char* p_;
    const char* end_;
    std::size_t empty_budget_;
};

namespace detail {

template <class T>
constexpr std::size_t min_encoded_size();
template <class L>
struct min_fields_size;
template <class... F>
struct min_fields_size<type_list<F...>> : std::integral_constant<std::size_t, (min_encoded_size<F>() + ... + 0)> {};

template <class T>
constexpr std::size_t min_encoded_size() {
    if constexpr (memcpy_able<T>) return sizeof(T) ? sizeof(T) : 0;
    else if constexpr (std::is_array_v<T>) return std::extent_v<T> * min_encoded_size<std::remove_extent_t<T>>();
    else if constexpr (by_fields<T>) return min_fields_size<field_types<T>>::value;
    else if constexpr (std::is_same_v<T, bool> || is_optional<T>::value) return 1;
    else if constexpr (std::is_same_v<T, std::string> || is_std_vector<T>::value ||
                       is_map_like<T>::value || is_set_like<T>::value)
        return 8;
    else if constexpr (is_variant<T>::value) return 4;
    else return 0;  // user types may encode to nothing
}

template <class T>
constexpr void static_assert_encodable() {
    static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T> &&
                      !std::is_null_pointer_v<T>,
                  "parafork: pointers cannot cross a process boundary (nor types holding one)");
    static_assert(!std::is_enum_v<T> || fixed_enum<T>,
                  "parafork: an enum without a fixed underlying type cannot be checked on decode; "
                  "declare it with one (enum E : int { ... }, or enum class)");
}

template <class T>
void encode_value(writer& w, const T& v) {
    static_assert_encodable<T>();
    if constexpr (has_custom_codec<T>) {
        codec<T>::encode(w, v);
    } else if constexpr (has_member_serialize<T, writer>) {
        const_cast<T&>(v).serialize(w);
    } else if constexpr (has_free_serialize<T, writer>) {
        serialize(w, const_cast<T&>(v));
    } else if constexpr (has_save_load<T>) {
        v.save(w);
    } else if constexpr (std::is_same_v<T, bool>) {
        char b = v ? 1 : 0;
        w.write_bytes(&b, 1);
    } else if constexpr (memcpy_able<T>) {
        w.write_bytes(&v, sizeof v);
    } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::string_view>) {
        w.write_size(v.size());  // a string_view encodes as, and decodes into, a std::string
        w.write_bytes(v.data(), v.size());
    } else if constexpr (is_std_vector<T>::value) {
        using E = typename T::value_type;
        w.write_size(v.size());
        if constexpr (memcpy_able<E>) {
            w.write_bytes(v.data(), v.size() * sizeof(E));
        } else {
            for (const auto& e : v) encode_value(w, static_cast<const E&>(e));
        }
    } else if constexpr (is_std_array<T>::value || std::is_array_v<T>) {
        for (const auto& e : v) encode_value(w, e);
    } else if constexpr (is_map_like<T>::value || is_set_like<T>::value) {
        w.write_size(v.size());
        for (const auto& e : v) {
            if constexpr (is_map_like<T>::value) {
                encode_value(w, e.first);
                encode_value(w, e.second);
            } else {
                encode_value(w, e);
            }
        }
    } else if constexpr (is_optional<T>::value) {
        char has = v.has_value() ? 1 : 0;
        w.write_bytes(&has, 1);
        if (v) encode_value(w, *v);
    } else if constexpr (is_variant<T>::value) {
        if (v.valueless_by_exception()) throw error("parafork: cannot encode a valueless variant");
        auto idx = static_cast<std::uint32_t>(v.index());
        w.write_bytes(&idx, sizeof idx);
        std::visit([&](const auto& alt) { encode_value(w, alt); }, v);
    } else if constexpr (is_tuple_like<T>::value) {
        std::apply([&](const auto&... e) { (encode_value(w, e), ...); }, v);
    } else if constexpr (by_fields<T>) {
        apply_fields(v, [&](const auto&... f) { (encode_value(w, f), ...); });
    } else {
        static_assert(sizeof(T) == 0,
                      "parafork: this type cannot be encoded; give it a serialize(Archive&) member "
                      "(cereal's convention), specialize parafork::wire::codec<T>, or, for a "
                      "trivially copyable type that holds no pointer, parafork::wire::"
                      "trivially_encodable<T>");
    }
}

template <class T>
void decode_value(reader& r, T& v);

template <class V, std::size_t I = 0>
void decode_variant(reader& r, V& v, std::uint32_t idx) {
    if constexpr (I < std::variant_size_v<V>) {
        if (idx == I) {
            std::variant_alternative_t<I, V> alt{};
            decode_value(r, alt);
            v.template emplace<I>(std::move(alt));
        } else {
            decode_variant<V, I + 1>(r, v, idx);
        }
    }
}

template <class T>
void decode_value(reader& r, T& v) {
    static_assert_encodable<T>();
    if constexpr (has_custom_codec<T>) {
        codec<T>::decode(r, v);
    } else if constexpr (has_member_serialize<T, reader>) {
        v.serialize(r);
    } else if constexpr (has_free_serialize<T, reader>) {
        serialize(r, v);
    } else if constexpr (has_save_load<T>) {
        v.load(r);
    } else if constexpr (std::is_same_v<T, bool>) {
        unsigned char b;
        r.read_bytes(&b, 1);
        if (b > 1) reader::fail("bad bool");
        v = b != 0;
    } else if constexpr (memcpy_able<T>) {
        r.read_bytes(&v, sizeof v);
    } else if constexpr (std::is_same_v<T, std::string>) {
        std::size_t n = r.read_size(1);
        v.assign(r.take(n));
    } else if constexpr (is_std_vector<T>::value) {
        using E = typename T::value_type;
        constexpr std::size_t min_each = min_encoded_size<E>();
        std::size_t n = r.read_size(min_each);
        v.clear();
        if constexpr (memcpy_able<E>) {
            v.resize(n);
            r.read_bytes(v.data(), n * sizeof(E));
        } else {
            v.reserve(min_each ? n : std::min<std::size_t>(n, r.remaining()));
            for (std::size_t i = 0; i < n; ++i) {
                E e{};
                decode_value(r, e);
                v.push_back(std::move(e));
            }
        }
    } else if constexpr (is_std_array<T>::value || std::is_array_v<T>) {
        for (auto& e : v) decode_value(r, e);
    } else if constexpr (is_map_like<T>::value) {
        using K = typename T::key_type;
        using M = typename T::mapped_type;
        std::size_t n = r.read_size(min_encoded_size<K>() + min_encoded_size<M>());
        v.clear();
        for (std::size_t i = 0; i < n; ++i) {
            K k{};
            M m{};
            decode_value(r, k);
            decode_value(r, m);
            if (!v.emplace(std::move(k), std::move(m)).second) reader::fail("duplicate map key");
        }
    } else if constexpr (is_set_like<T>::value) {
        using K = typename T::key_type;
        std::size_t n = r.read_size(min_encoded_size<K>());
        v.clear();
        for (std::size_t i = 0; i < n; ++i) {
            K k{};
            decode_value(r, k);
            if (!v.insert(std::move(k)).second) reader::fail("duplicate set key");
        }
    } else if constexpr (is_optional<T>::value) {
        unsigned char has;
        r.read_bytes(&has, 1);
        if (has > 1) reader::fail("bad optional tag");
        if (has) {
            typename T::value_type x{};
            decode_value(r, x);
            v = std::move(x);
        } else {
            v.reset();
        }
    } else if constexpr (is_variant<T>::value) {
        std::uint32_t idx;
        r.read_bytes(&idx, sizeof idx);
        if (idx >= std::variant_size_v<T>) reader::fail("bad variant index");
        decode_variant(r, v, idx);
    } else if constexpr (is_tuple_like<T>::value) {
        std::apply([&](auto&... e) { (decode_value(r, e), ...); }, v);
    } else if constexpr (by_fields<T>) {
        apply_fields(v, [&](auto&... f) { (decode_value(r, f), ...); });
    } else {
        static_assert(sizeof(T) == 0,
                      "parafork: this type cannot be decoded; give it a serialize(Archive&) member "
                      "(cereal's convention) or specialize parafork::wire::codec<T>");
    }
}

} // namespace detail

template <class T>
void writer::write(const T& v) {
    detail::encode_value(*this, v);
}
template <class T>
void reader::read(T& v) {
    detail::decode_value(*this, v);
}

// Appends the encoding of `v` to `out`.
template <class T>
void encode_to(std::string& out, const T& v) {
    writer w(out);
    w.write(v);
}

template <class T>
std::string encode(const T& v) {
    std::string out;
    encode_to(out, v);
    return out;
}

// Decodes a whole buffer; bytes left over are corruption too.
template <class T>
T decode(std::string_view bytes) {
    reader r(bytes);
    T v{};
    r.read(v);
    if (r.remaining() != 0) reader::fail("trailing bytes");
    return v;
}

} // namespace parafork::wire

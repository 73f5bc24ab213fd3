#include <parafork/wire/codec.hpp>

#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

namespace wire = parafork::wire;

namespace {

struct point {
    int x, y;
    bool operator==(const point&) const = default;
};

struct foo {  // the forked document's Foo: not memcpy-able (owns a string)
    std::string s;
    double x = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(s, x);
    }
    bool operator==(const foo&) const = default;
};

struct free_ser {
    std::vector<std::string> names;
    std::optional<int> age;
    bool operator==(const free_ser&) const = default;
};
template <class Archive>
void serialize(Archive& ar, free_ser& v) {
    ar(v.names, v.age);
}

struct split {
    int a = 0;
    std::string b;
    void save(wire::writer& w) const { w(a, b); }
    void load(wire::reader& r) { r(a, b); }
    bool operator==(const split&) const = default;
};

struct empty_thing {
    template <class A>
    void serialize(A&) {}
    bool operator==(const empty_thing&) const = default;
};

template <class T>
void round_trip(const T& v) {
    auto bytes = wire::encode(v);
    EXPECT_EQ(wire::decode<T>(bytes), v);
    // Every strict prefix is truncated input and must throw, never read out of bounds.
    for (std::size_t cut = 0; cut < bytes.size(); ++cut)
        EXPECT_THROW(wire::decode<T>(std::string_view(bytes).substr(0, cut)), parafork::protocol_error)
            << "prefix " << cut << " of " << bytes.size();
    EXPECT_THROW(wire::decode<T>(bytes + "x"), parafork::protocol_error);
}

} // namespace

TEST(Codec, Scalars) {
    round_trip(42);
    round_trip(-1.5);
    round_trip(std::numeric_limits<std::uint64_t>::max());
    round_trip(true);
    round_trip('z');
    round_trip(point{3, -4});
}

TEST(Codec, Containers) {
    round_trip(std::string("hello"));
    round_trip(std::string());
    round_trip(std::vector<int>{1, 2, 3});
    round_trip(std::vector<std::string>{"a", "", "ccc"});
    round_trip(std::vector<bool>{true, false, true});
    round_trip(std::array<int, 3>{7, 8, 9});
    round_trip(std::array<std::string, 2>{"x", "y"});
    round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}});
    round_trip(std::unordered_map<int, std::string>{{1, "one"}, {2, "two"}});
    round_trip(std::set<int>{3, 1, 2});
    round_trip(std::optional<std::string>("v"));
    round_trip(std::optional<std::string>());
    round_trip(std::variant<int, std::string>(std::string("alt")));
    round_trip(std::variant<int, std::string>(5));
    round_trip(std::pair<int, std::string>(1, "p"));
    round_trip(std::tuple<int, double, std::string>(1, 2.5, "t"));
    round_trip(std::vector<std::vector<int>>{{1}, {}, {2, 3}});
}

TEST(Codec, UserTypes) {
    round_trip(foo{"forty-two", 42.0});
    round_trip(std::vector<foo>{{"a", 1}, {"b", 2}});
    round_trip(free_ser{{"ann", "bob"}, 33});
    round_trip(split{7, "seven"});
    round_trip(std::vector<empty_thing>(10));
}

TEST(Codec, CorruptLengthsDoNotAllocate) {
    // A length field claiming 2^62 elements must be refused before any allocation.
    std::string bytes = wire::encode(std::vector<int>{1, 2, 3});
    std::uint64_t huge = std::uint64_t{1} << 62;
    std::memcpy(bytes.data(), &huge, sizeof huge);
    EXPECT_THROW(wire::decode<std::vector<int>>(bytes), parafork::protocol_error);
    EXPECT_THROW(wire::decode<std::string>(bytes), parafork::protocol_error);
    EXPECT_THROW(wire::decode<std::vector<empty_thing>>(bytes), parafork::protocol_error);
    EXPECT_THROW(wire::decode<std::vector<std::string>>(bytes), parafork::protocol_error);
}

TEST(Codec, CorruptTagsThrow) {
    EXPECT_THROW(wire::decode<bool>(std::string(1, '\x02')), parafork::protocol_error);
    EXPECT_THROW(wire::decode<std::optional<int>>(std::string(5, '\x07')), parafork::protocol_error);
    std::string v = wire::encode(std::variant<int, char>(1));
    v[0] = 9;
    EXPECT_THROW((wire::decode<std::variant<int, char>>(v)), parafork::protocol_error);
    std::string m = wire::encode(std::map<int, int>{{1, 1}, {2, 2}});
    std::memcpy(m.data() + 8 + 8, m.data() + 8, 4);  // second key := first key
    EXPECT_THROW((wire::decode<std::map<int, int>>(m)), parafork::protocol_error);
}

TEST(Codec, RandomBytesNeverCrash) {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 20000; ++i) {
        std::string junk(rng() % 64, '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        try {
            (void)wire::decode<std::map<std::string, std::vector<std::optional<foo>>>>(junk);
        } catch (const parafork::protocol_error&) {
        }
    }
}

TEST(Codec, StringViewEncodesItsCharacters) {
    std::string s = "view";
    std::string_view v = s;
    EXPECT_EQ(wire::encode(v), wire::encode(s));  // never the pointer
    EXPECT_EQ(wire::decode<std::string>(wire::encode(v)), "view");
}

TEST(Codec, CountsOfEmptyElementsAreBoundedAcrossNesting) {
    using nested = std::vector<std::vector<empty_thing>>;
    auto counts = [](std::initializer_list<std::uint64_t> ns) {
        std::string b;
        for (auto n : ns) b.append(reinterpret_cast<const char*>(&n), sizeof n);
        return b;
    };
    // 16 corrupt bytes must not become 2^24 elements (nor 8 more bytes 2^25).
    EXPECT_THROW(wire::decode<nested>(counts({1, std::uint64_t{1} << 24})), parafork::protocol_error);
    EXPECT_THROW(wire::decode<nested>(counts({2, 40000, 40000})), parafork::protocol_error);
    EXPECT_THROW(wire::decode<std::vector<empty_thing>>(counts({1u << 20})), parafork::protocol_error);
    // Honest data stays within the budget: empty elements up to the allowance, and elements
    // whose type only might be empty as many as their bytes allow.
    constexpr std::size_t allowed = wire::reader::max_empty_elements;
    EXPECT_EQ(wire::decode<std::vector<empty_thing>>(counts({allowed})).size(), allowed);
    EXPECT_EQ(wire::decode<nested>(counts({2, allowed / 2, allowed / 2}))[1].size(), allowed / 2);
    std::vector<foo> many(100000, foo{"x", 1.0});
    EXPECT_EQ(wire::decode<std::vector<foo>>(wire::encode(many)), many);
}

// What goes by memcpy: only types whose every byte pattern is a value and that point nowhere.
namespace {

enum class colour : unsigned char { red, green };
enum small : short { tiny, big };
struct grid {
    int cells[2][3];
    double scale;
    bool operator==(const grid&) const = default;
};
struct flagged {  // a bool inside: field by field, the bool checked
    int n;
    bool on;
    bool operator==(const flagged&) const = default;
};
struct record {  // not trivially copyable: field by field, no serialize() needed
    std::string name;
    colour c;
    std::vector<flagged> flags;
    std::optional<grid> g;
    bool operator==(const record&) const = default;
};
class sealed {  // a class the codec cannot look into, vouched for below
public:
    sealed() = default;
    explicit sealed(int v) : v_(v) {}
    bool operator==(const sealed&) const = default;

private:
    int v_ = 0;
};

} // namespace

template <>
struct parafork::wire::trivially_encodable<sealed> : std::true_type {};

TEST(Codec, PlainTypesAreThoseWithNoInvalidBytesAndNoPointers) {
    namespace d = wire::detail;
    static_assert(d::memcpy_able<int> && d::memcpy_able<double> && d::memcpy_able<point>);
    static_assert(d::memcpy_able<colour> && d::memcpy_able<small> && d::memcpy_able<std::byte>);
    static_assert(d::memcpy_able<grid> && d::memcpy_able<std::array<grid, 2>>);
    static_assert(!d::memcpy_able<bool> && !d::memcpy_able<flagged>);
    static_assert(!d::memcpy_able<std::optional<int>> && !d::memcpy_able<record>);
    static_assert(d::memcpy_able<sealed>);
    static_assert(d::field_count<grid> == 2 && d::field_count<record> == 4);
    static_assert(d::min_encoded_size<flagged>() == sizeof(int) + 1);
}

TEST(Codec, AggregatesGoFieldByField) {
    round_trip(grid{{{1, 2, 3}, {4, 5, 6}}, 0.5});
    round_trip(flagged{7, true});
    round_trip(std::vector<flagged>{{1, false}, {2, true}});
    round_trip(record{"r", colour::green, {{3, true}}, grid{{{9}}, 2.0}});
    round_trip(record{});
    round_trip(colour::red);
    round_trip(big);
    round_trip(sealed(5));
    EXPECT_EQ(wire::encode(flagged{1, true}).size(), sizeof(int) + 1);
}

TEST(Codec, BoolsInsideAggregatesAreChecked) {
    std::string bytes = wire::encode(flagged{1, true});
    bytes.back() = 2;
    EXPECT_THROW(wire::decode<flagged>(bytes), parafork::protocol_error);
    std::string many = wire::encode(std::vector<flagged>{{1, false}, {2, true}});
    many.back() = '\xff';
    EXPECT_THROW(wire::decode<std::vector<flagged>>(many), parafork::protocol_error);
}

TEST(Codec, AggregateCountsAreCheckedAgainstTheirSmallestEncoding) {
    // Each flagged takes at least 5 bytes: a count of 4 with 19 bytes behind it is corrupt.
    std::string bytes = wire::encode(std::vector<flagged>{{1, false}, {2, true}, {3, true}});
    std::uint64_t four = 4;
    std::memcpy(bytes.data(), &four, sizeof four);
    bytes += "abcd";
    EXPECT_THROW(wire::decode<std::vector<flagged>>(bytes), parafork::protocol_error);
}

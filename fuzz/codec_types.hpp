#pragma once
// The value types fuzz_codec decodes; shared with the seed corpus generator. The first input
// byte picks the type (index into codec_cases), the rest is its encoding.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace parafork_fuzz {

using nested_map =
    std::map<std::string, std::vector<std::optional<std::variant<int, std::string>>>>;

// A user type with a member serialize (cereal's convention).
struct record {
    std::uint32_t id = 0;
    std::string name;
    std::vector<std::pair<std::int16_t, bool>> marks;
    std::optional<std::tuple<int, std::string, std::array<char, 3>>> extra;
    std::set<std::string> tags;

    template <class Archive> void serialize(Archive& ar) { ar(id, name, marks, extra, tags); }
    bool operator==(const record&) const = default;
};

// A trivially copyable user type with a free serialize: must go field by field, not memcpy.
struct pixel {
    std::uint8_t r = 0, g = 0, b = 0;
    bool operator==(const pixel&) const = default;
};
template <class Archive> void serialize(Archive& ar, pixel& p) { ar(p.r, p.g, p.b); }

using record_tuple = std::tuple<std::uint64_t, std::string, std::vector<record>,
                                std::unordered_map<std::int32_t, std::string>>;

using assorted = std::tuple<std::vector<bool>, std::array<std::optional<std::uint8_t>, 2>,
                            std::pair<std::string, std::vector<std::int64_t>>, std::vector<pixel>,
                            std::variant<std::int8_t, record, std::vector<std::string>>>;

// Type index -> type; fuzz_codec and the seed generator both dispatch on it.
enum class codec_case : std::uint8_t { nested_map, record, record_tuple, assorted, count };

} // namespace parafork_fuzz

// Writes small valid inputs for the fuzzers: fuzz_seed_corpus <dir> fills <dir>/fuzz_codec and
// <dir>/fuzz_frames. The committed fuzz/corpus was made by it (scripts/fuzz-seeds).
#include "codec_types.hpp"

#include <parafork/wire/codec.hpp>
#include <parafork/wire/frames.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace {

namespace fs = std::filesystem;
using namespace parafork_fuzz;

void write(const fs::path& dir, const std::string& name, const std::string& bytes) {
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary) << bytes;
}

template <class T>
void codec_seed(const fs::path& dir, codec_case which, const std::string& name, const T& v) {
    write(dir, name, std::string(1, static_cast<char>(which)) + parafork::wire::encode(v));
}

void codec_seeds(const fs::path& dir) {
    codec_seed(dir, codec_case::nested_map, "nested_map_empty", nested_map{});
    codec_seed(dir, codec_case::nested_map, "nested_map",
               nested_map{{"a", {1, std::nullopt, "x"}}, {"bb", {}}, {"c", {-7}}});
    const record r{42,
                   "answer",
                   {{-1, true}, {2, false}},
                   std::tuple{3, "t", std::array{'a', 'b', 'c'}},
                   {"x", "y"}};
    codec_seed(dir, codec_case::record, "record_empty", record{});
    codec_seed(dir, codec_case::record, "record", r);
    codec_seed(dir, codec_case::record_tuple, "record_tuple",
               record_tuple{9, "nine", {r, record{}}, {{1, "one"}, {-2, "minus two"}}});
    codec_seed(dir, codec_case::assorted, "assorted",
               assorted{{true, false, true},
                        {std::uint8_t{5}, std::nullopt},
                        {"p", {1, -2}},
                        {pixel{1, 2, 3}},
                        r});
    codec_seed(dir, codec_case::assorted, "assorted_strings",
               assorted{{}, {}, {}, {}, std::vector<std::string>{"", "s"}});
}

// Header: framing, fixed size - 1, max_frame - 1, split (see fuzz_frames.cpp).
void frames_seed(const fs::path& dir, const std::string& name, std::uint8_t kind,
                 std::size_t fixed_size, std::size_t max_frame, std::uint8_t split,
                 std::string_view stream) {
    std::string bytes{static_cast<char>(kind), static_cast<char>(fixed_size - 1),
                      static_cast<char>(max_frame - 1), static_cast<char>(split)};
    write(dir, name, bytes.append(stream));
}

// The same with a large max_frame: `code` as in fuzz_frames.cpp's large_max_frame.
void frames_seed_large(const fs::path& dir, const std::string& name, std::uint8_t kind,
                       std::uint8_t code, std::uint8_t split, std::string_view stream) {
    std::string bytes{static_cast<char>(kind), static_cast<char>(0x80), static_cast<char>(code),
                      static_cast<char>(split)};
    write(dir, name, bytes.append(stream));
}

void frames_seeds(const fs::path& dir) {
    namespace frames = parafork::frames;
    std::string lp;
    for (std::string_view p : {"", "a", "hello", "0123456789abcdef0123456789"})
        frames::len_prefix.append(lp, p);
    frames_seed(dir, "lines", 0, 1, 64, 0, "one\ntwo\n\nlast");
    frames_seed(dir, "lines_split", 0, 1, 8, 7, "a\nbb\nccc\n");
    frames_seed(dir, "zero_term", 1, 1, 64, 3, std::string_view("a\0bc\0\0d", 7));
    frames_seed(dir, "len_prefix", 2, 1, 64, 0, lp);
    frames_seed(dir, "len_prefix_split", 2, 1, 32, 9, lp);
    frames_seed(dir, "fixed8", 3, 8, 64, 5, "0123456789abcdef");
    frames_seed(dir, "fixed1", 3, 1, 1, 0, "xyz");
    std::string big = lp;
    frames::len_prefix.append(big, std::string(3000, 'x'));
    frames_seed_large(dir, "len_prefix_4k", 2, 6, 11, big);  // max_frame 4095: accepted
    std::string truncated;
    frames::len_prefix.append(truncated, std::string(100'000, 'y'));
    truncated.resize(2000);
    frames_seed_large(dir, "len_prefix_1m_truncated", 2, 14, 0, truncated);  // max 1 MiB - 1
    frames_seed_large(dir, "lines_4k", 0, 6, 5,
                      std::string(3000, 'l') + "\n" + std::string(5000, 'm') + "\n");
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    codec_seeds(fs::path(argv[1]) / "fuzz_codec");
    frames_seeds(fs::path(argv[1]) / "fuzz_frames");
    return 0;
}

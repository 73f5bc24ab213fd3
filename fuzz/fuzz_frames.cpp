// Fuzzes frame_reader in every framing. Input: 4 header bytes, then the byte stream.
//   [0] framing: lines, zero_term, len_prefix, fixed
//   [1] fixed size - 1 (mod 16); bit 7 picks a large max_frame from [2] (see large_max_frame)
//   [2] max_frame - 1 (mod 64: small, so the limit is hit), or the large max_frame's code
//   [3] how the stream is split into reads: 0 = one byte per read, else a seed for read sizes
//       of 0..16 bytes
// The stream is parsed twice, split as chosen and whole; both must give the same frames and
// the same verdict, and the only exception allowed is protocol_error. Every frame must respect
// its framing and max_frame, and framing the frames again must parse back to them.
#include <parafork/error.hpp>
#include <parafork/wire/frames.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace frames = parafork::frames;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_frames: %s\n", what);
    std::abort();
}

struct parsed {
    std::vector<std::string> frames;
    bool rejected = false; // threw protocol_error
    bool operator==(const parsed&) const = default;
};

// Feeds `stream` in pieces (split == 0: one byte at a time; split < 0: all at once).
parsed parse(const frames::framing& f, std::string_view stream, int split) {
    parsed out;
    try {
        frames::frame_reader reader(f, 0); // the smallest buffer, so it must grow
        std::uint32_t rng = static_cast<std::uint32_t>(split) * 2654435761u | 1;
        std::size_t pos = 0;
        while (pos < stream.size()) {
            std::size_t n = stream.size() - pos;
            if (split == 0) {
                n = 1;
            } else if (split > 0) {
                rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
                n = std::min<std::size_t>(n, rng % 17); // 0-byte reads happen too
            }
            reader.feed(stream.substr(pos, n));
            pos += n;
            while (auto frame = reader.next()) out.frames.emplace_back(*frame);
        }
        while (auto frame = reader.finish()) out.frames.emplace_back(*frame);
    } catch (const parafork::protocol_error&) {
        out.rejected = true;
    }
    return out;
}

void check_frame(const frames::framing& f, const std::string& frame) {
    if (frame.size() > f.max_frame) fail("a frame over max_frame was accepted");
    switch (f.type) {
        case frames::kind::lines:
            if (frame.find('\n') != std::string::npos) fail("a line holds a newline");
            break;
        case frames::kind::zero_term:
            if (frame.find('\0') != std::string::npos) fail("a zero_term frame holds a NUL");
            break;
        case frames::kind::fixed:
            if (frame.size() != f.size) fail("a fixed frame has the wrong size");
            break;
        case frames::kind::delimited:
            if (frame.find(f.delimiter()) != std::string::npos) fail("a delimited frame holds its delimiter");
            break;
        case frames::kind::len_prefix: break;
    }
}

// 64 << (code % 15), less 1, plus code / 15: from 63 to just over 1 MiB, near powers of two,
// so a length prefix can be accepted and its frame left to grow (or to end truncated).
std::size_t large_max_frame(std::uint8_t code) {
    return (std::size_t{64} << (code % 15)) - 1 + code / 15;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    static constexpr frames::kind kinds[] = {frames::kind::lines, frames::kind::zero_term,
                                             frames::kind::len_prefix, frames::kind::fixed,
                                             frames::kind::delimited};
    const std::size_t max_frame =
        (data[1] & 0x80) ? large_max_frame(data[2]) : std::size_t{1} + data[2] % 64;
    // The size is a fixed frame's size or, for delimited, its delimiter byte (1 to 16).
    frames::framing f{kinds[data[0] % 5], std::size_t{1} + data[1] % 16, max_frame};
    const std::string_view stream(reinterpret_cast<const char*>(data) + 4, size - 4);

    const parsed split = parse(f, stream, data[3]);
    const parsed whole = parse(f, stream, -1);
    if (!(split == whole)) fail("the frames depend on how the bytes were split into reads");

    if (split.frames.empty()) return 0; // also when the framing itself was refused
    std::string reframed;
    for (const auto& frame : split.frames) {
        check_frame(f, frame);
        try {
            f.append(reframed, frame);
        } catch (const parafork::protocol_error&) {
            fail("a frame that was read cannot be written back");
        }
    }
    const parsed again = parse(f, reframed, 0);
    if (again.rejected || again.frames != split.frames) fail("re-framed frames parse differently");
    return 0;
}

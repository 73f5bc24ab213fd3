#pragma once
// Framing of messages over a byte stream (procpool's Lines / 0term / LenPfx / Ob):
//   frames::lines       payload then '\n' (the payload may not contain '\n')
//   frames::zero_term   payload then '\0' (the payload may not contain '\0')
//   frames::delimited(c) payload then the byte c (the payload may not contain c)
//   frames::len_prefix  8-byte little-endian length, then the payload
//   frames::fixed<N>    exactly N bytes, no header
// A frame may arrive in any number of reads and a read may hold many frames. Frames larger than
// max_frame (default 1 GiB) are refused with protocol_error, in both directions.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace parafork::frames {

enum class kind : std::uint8_t { lines, zero_term, len_prefix, fixed, delimited };

inline constexpr std::size_t default_max_frame = std::size_t{1} << 30;

struct framing {
    kind type = kind::len_prefix;
    std::size_t size = 0;  // the frame size, for kind::fixed; the delimiter byte, for kind::delimited
    std::size_t max_frame = default_max_frame;

    constexpr framing with_max_frame(std::size_t max) const {
        framing f = *this;
        f.max_frame = max;
        return f;
    }
    const char* name() const noexcept;
    // The byte that ends a frame, for lines, zero_term and delimited.
    constexpr char delimiter() const noexcept {
        return type == kind::lines ? '\n' : type == kind::delimited ? static_cast<char>(size) : '\0';
    }
    constexpr bool is_delimited() const noexcept {
        return type == kind::lines || type == kind::zero_term || type == kind::delimited;
    }

    // Appends `payload` framed to `out`. Throws protocol_error when it cannot be framed (a
    // delimiter inside it, a wrong size for fixed, or more than max_frame).
    void append(std::string& out, std::string_view payload) const;
    std::string frame(std::string_view payload) const {
        std::string out;
        append(out, payload);
        return out;
    }
    // Bytes of framing around a payload of n bytes.
    std::size_t overhead() const noexcept;
};

inline constexpr framing lines{kind::lines};
inline constexpr framing zero_term{kind::zero_term};
inline constexpr framing len_prefix{kind::len_prefix};
template <std::size_t N>
inline constexpr framing fixed{kind::fixed, N};
constexpr framing fixed_size(std::size_t n) { return framing{kind::fixed, n}; }
// Records ended by any one byte (a CSV's ',', ASCII's record separator 0x1e ...).
constexpr framing delimited(char delim) { return framing{kind::delimited, static_cast<unsigned char>(delim)}; }

// Accumulates bytes (from an fd or fed by hand) and splits them into frames.
class frame_reader {
public:
    explicit frame_reader(framing f = len_prefix, std::size_t initial_capacity = 64 * 1024);

    // One read(2) from `fd` into the buffer: bytes read, 0 at EOF, -1 if a non-blocking fd had
    // nothing. Views returned by next() before this call become invalid.
    long fill(int fd);
    // Adds bytes by hand (tests, fuzzers, other transports).
    void feed(std::string_view bytes);

    // The next whole frame's payload, or nullopt if none is complete yet. The view stays valid
    // until the next fill() or feed(). Throws protocol_error for a frame over max_frame.
    std::optional<std::string_view> next();
    // At EOF: what is left that is not a whole frame. For lines and zero_term a final
    // unterminated record is returned as a frame (as text tools do); for len_prefix and fixed
    // leftover bytes are a truncated frame and throw protocol_error.
    std::optional<std::string_view> finish();

    std::size_t buffered() const noexcept { return end_ - begin_; }
    std::size_t capacity() const noexcept { return cap_; }  // bytes allocated for the buffer
    bool has_frame();  // a whole frame is buffered
    const framing& format() const noexcept { return f_; }

private:
    void reserve_tail(std::size_t want);
    framing f_;
    std::unique_ptr<char[]> buf_;
    std::size_t cap_ = 0, begin_ = 0, end_ = 0;
    std::size_t scanned_ = 0;  // delimiter search resumes here (relative to begin_)
    std::size_t need_ = 0;     // bytes the frame at begin_ needs in total, when known
};

} // namespace parafork::frames

#pragma once
// How items travel inside a pipeline message (internal).
//
//   message := u32 record_count, record*
//   record  := u32 body_len, u8 flags, body
//   body    := [u64 seq if flags&seq] [u32 meta_len, meta if flags&meta] payload
//
// Many records share one message, so one send/receive moves hundreds of small items. An `end`
// record (flags&end, empty payload) says "input #seq produced everything it will"; it lets an
// ordered consumer restore input order even when a stage puts zero or many items per input.

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

#include <parafork/error.hpp>

namespace parafork {
// The per-item key -> value map that travels with an item through the stages (mpyx's meta).
using meta_map = std::map<std::string, std::string>;
} // namespace parafork

namespace parafork::detail {

enum record_flags : std::uint8_t { rec_meta = 1, rec_seq = 2, rec_end = 4 };

inline constexpr std::size_t record_header = sizeof(std::uint32_t) + 1;
inline constexpr std::size_t message_header = sizeof(std::uint32_t);

struct record_view {
    std::uint8_t flags = 0;
    std::uint64_t seq = 0;
    std::string_view meta;
    std::string_view payload;
    std::string_view whole;  // the record's bytes, header included
};

[[noreturn]] inline void corrupt_record(const char* what) {
    throw protocol_error(std::string("parafork: corrupt pipeline record: ") + what);
}

// Walks the records of one message; validates every length against what is left.
class record_cursor {
public:
    record_cursor() = default;
    explicit record_cursor(std::string_view msg) {
        if (msg.size() < message_header) corrupt_record("short message");
        std::memcpy(&count_, msg.data(), sizeof count_);
        rest_ = msg.substr(message_header);
    }
    std::uint32_t count() const noexcept { return count_; }
    bool empty() const noexcept { return rest_.empty(); }

    bool next(record_view& r) {
        if (rest_.empty()) return false;
        if (rest_.size() < record_header) corrupt_record("short header");
        std::uint32_t len;
        std::memcpy(&len, rest_.data(), sizeof len);
        r.flags = static_cast<std::uint8_t>(rest_[sizeof len]);
        if (len > rest_.size() - record_header) corrupt_record("length past the message");
        r.whole = rest_.substr(0, record_header + len);
        std::string_view body = rest_.substr(record_header, len);
        rest_.remove_prefix(record_header + len);
        if (r.flags & rec_seq) {
            if (body.size() < sizeof r.seq) corrupt_record("short seq");
            std::memcpy(&r.seq, body.data(), sizeof r.seq);
            body.remove_prefix(sizeof r.seq);
        }
        if (r.flags & rec_meta) {
            std::uint32_t ml;
            if (body.size() < sizeof ml) corrupt_record("short meta");
            std::memcpy(&ml, body.data(), sizeof ml);
            if (ml > body.size() - sizeof ml) corrupt_record("meta past the record");
            r.meta = body.substr(sizeof ml, ml);
            body.remove_prefix(sizeof ml + ml);
        } else {
            r.meta = {};
        }
        r.payload = body;
        return true;
    }

private:
    std::string_view rest_;
    std::uint32_t count_ = 0;
};

// Appending records to a message buffer.
inline void begin_message(std::string& buf) {
    buf.clear();
    buf.append(message_header, '\0');
}
inline std::size_t begin_record(std::string& buf) {
    std::size_t start = buf.size();
    buf.append(record_header, '\0');
    return start;
}
inline void end_record(std::string& buf, std::size_t start, std::uint8_t flags) {
    auto len = static_cast<std::uint32_t>(buf.size() - start - record_header);
    std::memcpy(buf.data() + start, &len, sizeof len);
    buf[start + sizeof len] = static_cast<char>(flags);
}
inline void set_message_count(std::string& buf, std::uint32_t n) {
    std::memcpy(buf.data(), &n, sizeof n);
}
template <class T>
void append_pod(std::string& buf, const T& v) {
    buf.append(reinterpret_cast<const char*>(&v), sizeof v);
}

} // namespace parafork::detail

#include <parafork/wire/frames.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/fd.hpp>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace parafork::frames {
namespace {

[[noreturn]] void too_big(std::size_t n, std::size_t max) {
    throw protocol_error("parafork: frame of " + std::to_string(n) + " bytes exceeds max_frame " +
                         std::to_string(max));
}

constexpr std::size_t header = sizeof(std::uint64_t);

} // namespace

const char* framing::name() const noexcept {
    switch (type) {
        case kind::lines: return "lines";
        case kind::zero_term: return "zero_term";
        case kind::len_prefix: return "len_prefix";
        case kind::fixed: return "fixed";
        case kind::delimited: return "delimited";
    }
    return "?";
}

std::size_t framing::overhead() const noexcept {
    switch (type) {
        case kind::lines:
        case kind::zero_term:
        case kind::delimited: return 1;
        case kind::len_prefix: return header;
        case kind::fixed: return 0;
    }
    return 0;
}

void framing::append(std::string& out, std::string_view payload) const {
    if (payload.size() > max_frame) too_big(payload.size(), max_frame);
    switch (type) {
        case kind::lines:
        case kind::zero_term:
        case kind::delimited: {
            char delim = delimiter();
            if (payload.find(delim) != std::string_view::npos)
                throw protocol_error(std::string("parafork: a ") + name() +
                                     " frame cannot contain its delimiter");
            out.append(payload);
            out.push_back(delim);
            return;
        }
        case kind::len_prefix: {
            std::uint64_t n = payload.size();  // little-endian on every Linux we target
            out.append(reinterpret_cast<const char*>(&n), header);
            out.append(payload);
            return;
        }
        case kind::fixed:
            if (payload.size() != size)
                throw protocol_error("parafork: fixed frame needs " + std::to_string(size) +
                                     " bytes, got " + std::to_string(payload.size()));
            out.append(payload);
            return;
    }
}

frame_reader::frame_reader(framing f, std::size_t initial_capacity)
    : f_(f), buf_(std::make_unique_for_overwrite<char[]>(std::max<std::size_t>(initial_capacity, 64))),
      cap_(std::max<std::size_t>(initial_capacity, 64)) {
    if (f_.type == kind::fixed && f_.size == 0)
        throw std::invalid_argument("parafork: fixed frames need a size of at least 1");
    if (f_.type == kind::fixed && f_.size > f_.max_frame) too_big(f_.size, f_.max_frame);
}

void frame_reader::reserve_tail(std::size_t want) {
    if (cap_ - end_ >= want) return;
    std::size_t live = end_ - begin_;
    if (begin_ > 0 && cap_ - live >= want && live <= cap_ / 2) {
        std::memmove(buf_.get(), buf_.get() + begin_, live);
    } else {
        std::size_t ncap = std::max(cap_ * 2, live + want);
        auto nbuf = std::make_unique_for_overwrite<char[]>(ncap);
        std::memcpy(nbuf.get(), buf_.get() + begin_, live);
        buf_ = std::move(nbuf);
        cap_ = ncap;
    }
    begin_ = 0;
    end_ = live;
}

long frame_reader::fill(int fd) {
    // Read at least 64 KiB at a time; when the frame being read is known to be larger, make
    // room for more of it, but at most as much again as has already arrived: the buffer grows
    // geometrically with bytes that came, never with what a (maybe corrupt) header announces.
    std::size_t want = 64 * 1024;
    if (need_ > buffered()) want = std::clamp(need_ - buffered(), want, std::max(want, buffered()));
    reserve_tail(want);
    long n = sys::read_some(fd, buf_.get() + end_, cap_ - end_);
    if (n > 0) end_ += static_cast<std::size_t>(n);
    return n;
}

void frame_reader::feed(std::string_view bytes) {
    reserve_tail(bytes.size());
    std::memcpy(buf_.get() + end_, bytes.data(), bytes.size());
    end_ += bytes.size();
}

bool frame_reader::has_frame() {
    std::size_t avail = buffered();
    const char* p = buf_.get() + begin_;
    switch (f_.type) {
        case kind::lines:
        case kind::zero_term:
        case kind::delimited: {
            char delim = f_.delimiter();
            if (scanned_ < avail) {
                const void* hit = std::memchr(p + scanned_, delim, avail - scanned_);
                if (hit) {
                    std::size_t len = static_cast<std::size_t>(static_cast<const char*>(hit) - p);
                    // A delimiter may arrive in the same read as an over-long record.
                    if (len > f_.max_frame) too_big(len, f_.max_frame);
                    need_ = len + 1;
                    scanned_ = need_ - 1;
                    return true;
                }
                scanned_ = avail;
            }
            if (scanned_ > f_.max_frame) too_big(scanned_, f_.max_frame);
            need_ = 0;
            return false;
        }
        case kind::len_prefix: {
            if (avail < header) {
                need_ = header;
                return false;
            }
            std::uint64_t n;
            std::memcpy(&n, p, header);
            if (n > f_.max_frame) too_big(n, f_.max_frame);
            need_ = header + static_cast<std::size_t>(n);
            return avail >= need_;
        }
        case kind::fixed:
            need_ = f_.size;
            return avail >= need_;
    }
    return false;
}

std::optional<std::string_view> frame_reader::next() {
    if (!has_frame()) return std::nullopt;
    const char* p = buf_.get() + begin_;
    std::string_view payload;
    switch (f_.type) {
        case kind::lines:
        case kind::zero_term:
        case kind::delimited: payload = {p, need_ - 1}; break;
        case kind::len_prefix: payload = {p + header, need_ - header}; break;
        case kind::fixed: payload = {p, need_}; break;
    }
    begin_ += need_;
    need_ = 0;
    scanned_ = 0;
    if (begin_ == end_) begin_ = end_ = 0;  // cheap reset keeps the buffer front hot
    return payload;
}

std::optional<std::string_view> frame_reader::finish() {
    if (auto f = next()) return f;
    std::size_t avail = buffered();
    if (avail == 0) return std::nullopt;
    if (f_.is_delimited()) {
        std::string_view rest(buf_.get() + begin_, avail);
        begin_ = end_ = 0;
        scanned_ = need_ = 0;
        return rest;
    }
    throw protocol_error("parafork: stream ended inside a " + std::string(f_.name()) + " frame (" +
                         std::to_string(avail) + " bytes left over)");
}

} // namespace parafork::frames

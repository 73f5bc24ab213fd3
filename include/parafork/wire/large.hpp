#pragma once
// Large values travel out of band: their bytes go into a sealed memfd whose descriptor is passed
// over a UNIX socket (SCM_RIGHTS) and mapped by the receiver. Nothing is named in /dev/shm, and
// the memory is freed by the kernel once the last descriptor or mapping of it is gone, so a side
// that dies leaves nothing behind (an fd still queued in a socket dies with the socket).

#include <cstddef>
#include <string_view>

#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>

namespace parafork::wire {

// Values whose encoding is larger than this go by memfd (options may lower or raise it).
inline constexpr std::size_t default_large_threshold = std::size_t{1} << 20;

// A read-only view of a received memfd's bytes; unmaps and closes on destruction.
class large_view {
public:
    large_view() noexcept = default;
    large_view(sys::unique_fd fd, sys::mapping map, std::size_t size) noexcept
        : fd_(std::move(fd)), map_(std::move(map)), size_(size) {}
    std::string_view bytes() const noexcept {
        return {reinterpret_cast<const char*>(map_.data()), size_};
    }
    std::size_t size() const noexcept { return size_; }

private:
    sys::unique_fd fd_;
    sys::mapping map_;
    std::size_t size_ = 0;
};

// Copies `bytes` into a new memfd and seals it against any change.
sys::unique_fd to_sealed_memfd(std::string_view bytes);
// The same for a value in two pieces (a header and the memory it describes): no joined copy.
sys::unique_fd to_sealed_memfd(std::string_view head, std::string_view body);
// Maps a received memfd read-only. Refuses (protocol_error) a descriptor that is not a sealed
// memfd of exactly `expected_size` bytes: the sender must not be able to change what we decode.
large_view map_sealed_memfd(sys::unique_fd fd, std::size_t expected_size);
// The same checks, mapped private and writable (copy-on-write: the receiver may change its
// copy, as it could a value it decoded). The descriptor stays the caller's.
sys::mapping map_sealed_memfd_copy(int fd, std::size_t expected_size);

// Sends `bytes` as a sealed memfd over the UNIX socket `sock` (the payload is the size).
void send_large(int sock, std::string_view bytes);
// Receives one memfd sent by send_large and maps it.
large_view recv_large(int sock);

} // namespace parafork::wire

#include <parafork/wire/large.hpp>
#include <parafork/error.hpp>

#include <cstdint>
#include <fcntl.h>
#include <sys/mman.h>
#include <string>

namespace parafork::wire {

sys::unique_fd to_sealed_memfd(std::string_view bytes) {
    auto fd = sys::make_memfd("parafork-large", 0);
    // write(2) fills the memfd's pages in one pass; a writable mapping would have to be gone
    // before F_SEAL_WRITE is allowed anyway.
    sys::write_all(fd.get(), bytes.data(), bytes.size());
    sys::seal_memfd(fd.get());
    return fd;
}

sys::unique_fd to_sealed_memfd(std::string_view head, std::string_view body) {
    auto fd = sys::make_memfd("parafork-large", 0);
    sys::write_all(fd.get(), head.data(), head.size());
    sys::write_all(fd.get(), body.data(), body.size());
    sys::seal_memfd(fd.get());
    return fd;
}

namespace {
// A received memfd must be sealed: a sender that shrank it later would fault the receiver.
std::size_t check_sealed(int fd, std::size_t expected_size) {
    int seals = ::fcntl(fd, F_GET_SEALS);
    constexpr int needed = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    if (seals < 0 || (seals & needed) != needed)
        throw protocol_error("parafork: received a large value that is not a sealed memfd");
    std::size_t size = sys::fd_size(fd);
    if (size != expected_size)
        throw protocol_error("parafork: large value of " + std::to_string(size) +
                             " bytes, expected " + std::to_string(expected_size));
    return size;
}
} // namespace

sys::mapping map_sealed_memfd_copy(int fd, std::size_t expected_size) {
    std::size_t size = check_sealed(fd, expected_size);
    auto map = sys::mapping::private_copy(fd, size);
    if (size) (void)::madvise(map.data(), size, MADV_POPULATE_READ);
    return map;
}

large_view map_sealed_memfd(sys::unique_fd fd, std::size_t expected_size) {
    std::size_t size = check_sealed(fd.get(), expected_size);
    sys::mapping map(fd.get(), size, false);
    // Fault the whole mapping in with one call instead of one fault per page later (ignored
    // where the kernel lacks it: the pages then fault in on first touch as usual).
    if (size) (void)::madvise(map.data(), size, MADV_POPULATE_READ);
    return large_view(std::move(fd), std::move(map), size);
}

void send_large(int sock, std::string_view bytes) {
    auto fd = to_sealed_memfd(bytes);
    std::uint64_t size = bytes.size();
    int raw = fd.get();
    sys::send_fds(sock, {&raw, 1},
                  std::string_view(reinterpret_cast<const char*>(&size), sizeof size));
}

large_view recv_large(int sock) {
    sys::unique_fd fd;
    std::uint64_t size = 0;
    if (sys::recv_fds(sock, {&fd, 1}, &size, sizeof size) == 0)
        throw protocol_error("parafork: peer closed before sending a large value");
    if (!fd) throw protocol_error("parafork: large value arrived without its descriptor");
    return map_sealed_memfd(std::move(fd), static_cast<std::size_t>(size));
}

} // namespace parafork::wire

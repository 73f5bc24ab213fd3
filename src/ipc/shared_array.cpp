#include <parafork/ipc/shared_array.hpp>

#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace parafork::detail {

shared_block::~shared_block() {
    // Only the creating process unlinks: a forked child's copy must not pull the name away.
    if (!name.empty() && creator == ::getpid()) ::shm_unlink(name.c_str());
}

std::size_t shared_bytes(const std::vector<std::size_t>& shape, std::size_t elem, std::size_t* count) {
    std::size_t n = 1;
    for (std::size_t e : shape) {
        if (e != 0 && n > SIZE_MAX / e) throw std::length_error("shared_array: shape too large");
        n *= e;
    }
    if (elem != 0 && n > SIZE_MAX / elem) throw std::length_error("shared_array: shape too large");
    *count = n;
    return n * elem;
}

namespace {

std::shared_ptr<shared_block> map_block(sys::unique_fd fd, std::size_t bytes) {
    auto b = std::make_shared<shared_block>();
    b->map = sys::mapping(fd.get(), bytes);
    b->fd = std::move(fd);
    return b;
}

void check_size(int fd, std::size_t bytes) {
    if (sys::fd_size(fd) < bytes)
        throw std::invalid_argument("shared_array: the shared memory is smaller than the shape needs");
}

} // namespace

std::shared_ptr<shared_block> make_anonymous_block(std::size_t bytes) {
    return map_block(sys::make_memfd("parafork-array", bytes), bytes);
}

std::shared_ptr<shared_block> make_named_block(const std::string& name, std::size_t bytes) {
    int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) sys::throw_errno("shm_open");
    sys::unique_fd owned(fd);
    auto b = std::make_shared<shared_block>();
    b->name = name;  // from here on the destructor unlinks it, also if ftruncate/mmap fail
    b->creator = ::getpid();
    if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) sys::throw_errno("ftruncate");
    b->map = sys::mapping(fd, bytes);
    b->fd = std::move(owned);
    return b;
}

std::shared_ptr<shared_block> open_named_block(const std::string& name, std::size_t bytes) {
    int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) sys::throw_errno("shm_open");
    sys::unique_fd owned(fd);
    check_size(fd, bytes);
    return map_block(std::move(owned), bytes);
}

std::shared_ptr<shared_block> adopt_block(int fd, std::size_t bytes) {
    check_size(fd, bytes);
    return map_block(sys::dup_cloexec(fd), bytes);
}

void unlink_shared_name(const std::string& name) {
    if (::shm_unlink(name.c_str()) != 0 && errno != ENOENT) sys::throw_errno("shm_unlink");
}

} // namespace parafork::detail

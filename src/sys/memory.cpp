#include <parafork/sys/memory.hpp>

#include <cerrno>
#include <climits>
#include <ctime>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace parafork::sys {

unique_fd make_memfd(const char* name, std::size_t size) {
    int fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) throw_errno("memfd_create");
    unique_fd owned(fd);
    if (size && ::ftruncate(fd, static_cast<off_t>(size)) != 0) throw_errno("ftruncate");
    return owned;
}

void seal_memfd(int fd) {
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        throw_errno("fcntl(F_ADD_SEALS)");
}

std::size_t fd_size(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("fstat");
    return static_cast<std::size_t>(st.st_size);
}

mapping::mapping(int fd, std::size_t len, bool writable, std::size_t offset) {
    if (len == 0) return;
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    int flags = MAP_SHARED | (fd < 0 ? MAP_ANONYMOUS : 0);
    void* p = ::mmap(nullptr, len, prot, flags, fd, static_cast<off_t>(offset));
    if (p == MAP_FAILED) throw_errno("mmap");
    addr_ = p;
    len_ = len;
}

mapping mapping::private_copy(int fd, std::size_t len) {
    mapping m;
    if (len == 0) return m;
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) throw_errno("mmap");
    m.addr_ = p;
    m.len_ = len;
    return m;
}

mapping& mapping::operator=(mapping&& o) noexcept {
    if (this != &o) {
        reset();
        addr_ = std::exchange(o.addr_, nullptr);
        len_ = std::exchange(o.len_, 0);
    }
    return *this;
}

void mapping::reset() noexcept {
    if (addr_) ::munmap(addr_, len_);
    addr_ = nullptr;
    len_ = 0;
}

bool futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                std::optional<std::chrono::nanoseconds> timeout) {
    timespec ts{}, *tsp = nullptr;
    if (timeout) {
        auto ns = timeout->count() < 0 ? 0 : timeout->count();
        ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        tsp = &ts;
    }
    long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, tsp,
                       nullptr, 0);
    if (r == 0) return true;
    if (errno == ETIMEDOUT) return false;
    if (errno == EAGAIN || errno == EINTR) return true;  // value changed, or a signal: re-check
    throw_errno("futex(FUTEX_WAIT)");
}

void futex_wake(std::atomic<std::uint32_t>* word, int count) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

void dont_fork(void* addr, std::size_t len) noexcept { ::madvise(addr, len, MADV_DONTFORK); }
void do_fork(void* addr, std::size_t len) noexcept { ::madvise(addr, len, MADV_DOFORK); }

void advise_huge_pages(void* addr, std::size_t len) noexcept {
    constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
    auto begin = (reinterpret_cast<std::uintptr_t>(addr) + huge - 1) & ~(huge - 1);
    auto end = (reinterpret_cast<std::uintptr_t>(addr) + len) & ~(huge - 1);
    if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

unique_fd make_eventfd() {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw_errno("eventfd");
    return unique_fd(fd);
}

void eventfd_signal(int fd) noexcept {
    std::uint64_t one = 1;
    while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

void eventfd_drain(int fd) noexcept {
    std::uint64_t v;
    while (::read(fd, &v, sizeof v) < 0 && errno == EINTR) {
    }
}

} // namespace parafork::sys

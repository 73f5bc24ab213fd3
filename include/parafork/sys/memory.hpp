#pragma once
// Anonymous shared memory (memfd), mappings, and futexes on shared words.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include <parafork/sys/fd.hpp>

namespace parafork::sys {

// memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING), sized to `size`. Nothing appears in /dev/shm;
// the memory lives as long as a descriptor or a mapping of it does.
unique_fd make_memfd(const char* name, std::size_t size);
// Seals a memfd against any further change of size or contents.
void seal_memfd(int fd);
std::size_t fd_size(int fd);

class mapping {
public:
    mapping() noexcept = default;
    // Maps `len` bytes of `fd` (shared). fd == -1: anonymous shared memory.
    mapping(int fd, std::size_t len, bool writable = true, std::size_t offset = 0);
    // Maps `len` bytes of `fd` private and writable: writes go to this process's own copy of
    // a page (copy-on-write), never to the file, so a write-sealed memfd may be mapped so.
    static mapping private_copy(int fd, std::size_t len);
    mapping(mapping&& o) noexcept
        : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
    mapping& operator=(mapping&& o) noexcept;
    mapping(const mapping&) = delete;
    mapping& operator=(const mapping&) = delete;
    ~mapping() { reset(); }

    void* data() const noexcept { return addr_; }
    std::byte* bytes() const noexcept { return static_cast<std::byte*>(addr_); }
    std::size_t size() const noexcept { return len_; }
    explicit operator bool() const noexcept { return addr_ != nullptr; }
    void reset() noexcept;

private:
    void* addr_ = nullptr;
    std::size_t len_ = 0;
};

// Futex on a 32-bit word in shared memory (not FUTEX_PRIVATE: it works across processes).
// Returns false on timeout; spurious wake-ups are possible, callers re-check their condition.
bool futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
void futex_wake(std::atomic<std::uint32_t>* word, int count = 1);
inline void futex_wake_all(std::atomic<std::uint32_t>* word) { futex_wake(word, 0x7fffffff); }

// eventfd(2), close-on-exec and non-blocking: a wake-up that can sit in one poll(2) beside
// pidfds and the SIGINT descriptor. Forked children share it (one counter for all).
unique_fd make_eventfd();
// madvise(MADV_DONTFORK): children forked later do not get this mapping (a ring of the
// parent's, say, that a child must not touch or keep alive). Best effort: never fails.
void dont_fork(void* addr, std::size_t len) noexcept;
// madvise(MADV_DOFORK): undoes dont_fork, for the next child that needs the mapping.
void do_fork(void* addr, std::size_t len) noexcept;
// madvise(MADV_HUGEPAGE) on the whole 2 MiB pages inside [addr, addr + len). Best effort.
void advise_huge_pages(void* addr, std::size_t len) noexcept;
// Makes it readable (adds 1); never blocks (a counter near overflow is readable already).
void eventfd_signal(int fd) noexcept;
// Makes it unreadable again (reads the counter to zero); no effect when it was not readable.
void eventfd_drain(int fd) noexcept;

} // namespace parafork::sys

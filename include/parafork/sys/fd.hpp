#pragma once
// RAII file descriptors and the few fd operations every layer needs. Everything we open
// is O_CLOEXEC, so an exec'd command never inherits a descriptor it was not handed.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

struct pollfd;

namespace parafork::sys {

// Throws std::system_error(errno) whose what() names the call.
[[noreturn]] void throw_errno(const char* call);
[[noreturn]] void throw_errno(const char* call, int err);

class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

// Descriptors only this process should hold: the parent's ends of pipes and sockets to its
// children. Every child forked later closes them at once, so a child never keeps another
// child's pipe open (which would hide that child's EOF from it, or its death from us).
void register_private_fd(int fd);
void unregister_private_fd(int fd);
// Called by fork_process in the child: closes every registered fd.
void close_private_fds_in_child() noexcept;
void lock_private_fds() noexcept;    // held across fork so the child sees a consistent list
void unlock_private_fds() noexcept;

// A unique_fd that is registered as private while it holds a descriptor.
class private_fd {
public:
    private_fd() noexcept = default;
    explicit private_fd(unique_fd fd) : fd_(std::move(fd)) {
        if (fd_) register_private_fd(fd_.get());
    }
    private_fd(private_fd&& o) noexcept = default;
    private_fd& operator=(private_fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::move(o.fd_);
        }
        return *this;
    }
    ~private_fd() { reset(); }
    int get() const noexcept { return fd_.get(); }
    explicit operator bool() const noexcept { return bool(fd_); }
    void reset() noexcept {
        if (fd_) unregister_private_fd(fd_.get());
        fd_.reset();
    }
    // No longer private: the descriptor, for the caller to own.
    unique_fd release() noexcept {
        if (fd_) unregister_private_fd(fd_.get());
        return std::move(fd_);
    }

private:
    unique_fd fd_;
};

struct fd_pair {
    unique_fd read, write;
};

fd_pair make_pipe();                 // pipe2(O_CLOEXEC)
fd_pair make_socketpair();           // AF_UNIX SOCK_STREAM, SOCK_CLOEXEC; both ends bidirectional
fd_pair make_seqpacket_pair();       // AF_UNIX SOCK_SEQPACKET (message boundaries kept), SOCK_CLOEXEC
// An epoll(7) instance (EPOLL_CLOEXEC) that is itself readable while any descriptor it watches
// for reading is: one descriptor a caller's select(2) can wait on for several of ours.
unique_fd make_epoll();
void epoll_watch(int epoll_fd, int fd);  // adds fd for EPOLLIN; throws on failure
// open(2) with O_CLOEXEC added. Empty on failure, errno saying why (the caller names the file).
unique_fd open_file(const char* path, int flags, unsigned mode = 0666) noexcept;
// close(2) now; false if it reported an error (for a written file: data may be lost). The
// descriptor is gone either way.
bool close_now(unique_fd& fd) noexcept;
bool close_now(int& fd) noexcept;  // sets fd to -1
bool truncate_file(int fd, std::uint64_t size) noexcept;  // ftruncate(2); false with errno
void set_nonblocking(int fd, bool on = true);
void set_cloexec(int fd, bool on = true);
// fcntl(F_SETPIPE_SZ); false where the kernel refuses (limits): the pipe keeps its size.
bool set_pipe_size(int fd, int bytes) noexcept;
unique_fd dup_cloexec(int fd);       // fcntl(F_DUPFD_CLOEXEC)

// read(2) retried on EINTR. Returns bytes read, 0 at EOF, -1 with errno EAGAIN when a
// non-blocking fd has nothing. Other failures throw.
long read_some(int fd, void* buf, std::size_t len);
// write(2) retried on EINTR; -1 with errno EAGAIN on a full non-blocking fd. EPIPE throws.
long write_some(int fd, const void* buf, std::size_t len);
// Blocking helpers: the whole buffer, or throw. read_exact returns false on EOF before any byte
// and throws protocol_error on EOF in the middle.
void write_all(int fd, const void* buf, std::size_t len);
inline void write_all(int fd, std::string_view s) { write_all(fd, s.data(), s.size()); }
bool read_exact(int fd, void* buf, std::size_t len);

// poll(2) for up to `timeout_ms` (-1: no limit). Returns the number of ready descriptors, 0
// on timeout, or -1 when a signal handler interrupted the sleep (EINTR): the caller re-checks
// what it waits for (Ctrl-C, a deadline) and polls again. Other failures throw.
int poll_fds(struct pollfd* fds, std::size_t nfds, int timeout_ms);
// send(2) with MSG_NOSIGNAL (a vanished peer is an error, not SIGPIPE), retried on EINTR.
// Returns bytes sent, or -1 with errno EAGAIN, EPIPE or ECONNRESET; other failures throw.
long send_some(int sock, const void* buf, std::size_t len, int flags = 0);

// poll(2) that first spins for up to `spin` (polls that do not sleep, yielding the CPU between
// them) before it sleeps for the rest of `timeout_ms` (-1: no limit; 0: one look, no spin).
// A wake-up of an idle CPU can cost tens of microseconds on a virtual machine; a peer that
// answers within the spin never pays it. Returns what poll returned (-1 with errno EINTR too).
int poll_spin(struct pollfd* fds, unsigned long nfds, int timeout_ms, std::chrono::microseconds spin);
// The spinning half alone: polls that do not sleep, for up to `spin`. Returns what the last
// poll returned (0: nothing became ready within the spin). For callers that must prepare
// something before they sleep (a SIGINT guard, say) but not pay for it when they need not.
int spin_poll(struct pollfd* fds, unsigned long nfds, std::chrono::microseconds spin);

// One sendmsg(2) of `len` bytes carrying `fds` (SCM_RIGHTS, at most 64), with MSG_NOSIGNAL and
// `flags`. Returns bytes sent, or -1 with errno EAGAIN, EPIPE or ECONNRESET (the peer is gone);
// EINTR is retried, other failures throw.
long send_with_fds(int sock, const void* data, std::size_t len, std::span<const int> fds, int flags = 0);
// One recvmsg(2): descriptors that came with the bytes (O_CLOEXEC) are appended to `fds`.
// Returns bytes read, 0 at EOF (a reset connection is EOF too). Truncated descriptors, or a
// datagram larger than `len`, throw protocol_error.
std::size_t recv_with_fds(int sock, void* data, std::size_t len, std::vector<unique_fd>& fds);

// Sends / receives descriptors over a UNIX socket (SCM_RIGHTS) along with a small payload.
void send_fds(int sock, std::span<const int> fds, std::string_view payload);
// Returns the payload size read (0 at EOF); received fds are O_CLOEXEC.
std::size_t recv_fds(int sock, std::span<unique_fd> fds_out, void* payload, std::size_t len);

} // namespace parafork::sys

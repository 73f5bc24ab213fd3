#include <parafork/sys/fd.hpp>
#include <parafork/error.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <system_error>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <vector>
#include <sys/uio.h>

namespace parafork::sys {

void throw_errno(const char* call) { throw_errno(call, errno); }

void throw_errno(const char* call, int err) {
    throw std::system_error(err, std::generic_category(), call);
}

namespace {
std::mutex g_private_mutex;
std::vector<int> g_private_fds;
} // namespace

void register_private_fd(int fd) {
    std::lock_guard lock(g_private_mutex);
    g_private_fds.push_back(fd);
}

void unregister_private_fd(int fd) {
    std::lock_guard lock(g_private_mutex);
    auto it = std::find(g_private_fds.begin(), g_private_fds.end(), fd);
    if (it != g_private_fds.end()) {
        *it = g_private_fds.back();
        g_private_fds.pop_back();
    }
}

void lock_private_fds() noexcept { g_private_mutex.lock(); }
void unlock_private_fds() noexcept { g_private_mutex.unlock(); }

void close_private_fds_in_child() noexcept {
    for (int fd : g_private_fds) ::close(fd);
    g_private_fds.clear();  // no allocation: clear keeps capacity
}

void unique_fd::reset(int fd) noexcept {
    if (fd_ >= 0 && fd_ != fd) ::close(fd_);  // close(2) is never retried on Linux
    fd_ = fd;
}

fd_pair make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
    return {unique_fd(fds[0]), unique_fd(fds[1])};
}

fd_pair make_socketpair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
    return {unique_fd(fds[0]), unique_fd(fds[1])};
}

fd_pair make_seqpacket_pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
    return {unique_fd(fds[0]), unique_fd(fds[1])};
}

unique_fd open_file(const char* path, int flags, unsigned mode) noexcept {
    return unique_fd(::open(path, flags | O_CLOEXEC, static_cast<mode_t>(mode)));
}

bool truncate_file(int fd, std::uint64_t size) noexcept {
    return ::ftruncate(fd, static_cast<off_t>(size)) == 0;
}

bool close_now(int& fd) noexcept {
    if (fd < 0) return true;
    int r = ::close(std::exchange(fd, -1));
    return r == 0 || errno == EINTR;  // after EINTR the descriptor is closed on Linux
}

bool close_now(unique_fd& fd) noexcept {
    int raw = fd.release();
    return close_now(raw);
}

void set_nonblocking(int fd, bool on) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0) throw_errno("fcntl(F_GETFL)");
    int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (nfl != fl && ::fcntl(fd, F_SETFL, nfl) != 0) throw_errno("fcntl(F_SETFL)");
}

bool set_pipe_size(int fd, int bytes) noexcept { return ::fcntl(fd, F_SETPIPE_SZ, bytes) >= 0; }

void set_cloexec(int fd, bool on) {
    int fl = ::fcntl(fd, F_GETFD);
    if (fl < 0) throw_errno("fcntl(F_GETFD)");
    int nfl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
    if (nfl != fl && ::fcntl(fd, F_SETFD, nfl) != 0) throw_errno("fcntl(F_SETFD)");
}

unique_fd make_epoll() {
    int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw_errno("epoll_create1");
    return unique_fd(fd);
}

void epoll_watch(int epoll_fd, int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl");
}

unique_fd dup_cloexec(int fd) {
    int r = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (r < 0) throw_errno("fcntl(F_DUPFD_CLOEXEC)");
    return unique_fd(r);
}

long read_some(int fd, void* buf, std::size_t len) {
    for (;;) {
        ssize_t n = ::read(fd, buf, len);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
        if (errno == ECONNRESET) return 0;  // a socket peer that died: same as EOF
        throw_errno("read");
    }
}

long write_some(int fd, const void* buf, std::size_t len) {
    for (;;) {
        ssize_t n = ::write(fd, buf, len);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
        throw_errno("write");
    }
}

void write_all(int fd, const void* buf, std::size_t len) {
    auto* p = static_cast<const char*>(buf);
    while (len > 0) {
        long n = write_some(fd, p, len);
        if (n < 0) throw_errno("write", EAGAIN);
        p += n;
        len -= static_cast<std::size_t>(n);
    }
}

bool read_exact(int fd, void* buf, std::size_t len) {
    auto* p = static_cast<char*>(buf);
    std::size_t got = 0;
    while (got < len) {
        long n = read_some(fd, p + got, len - got);
        if (n < 0) throw_errno("read", EAGAIN);
        if (n == 0) {
            if (got == 0) return false;
            throw protocol_error("parafork: stream ended in the middle of a message");
        }
        got += static_cast<std::size_t>(n);
    }
    return true;
}

namespace {
constexpr std::size_t max_passed_fds = 64;
} // namespace

long send_with_fds(int sock, const void* data, std::size_t len, std::span<const int> fds, int flags) {
    if (fds.size() > max_passed_fds) throw std::invalid_argument("send_with_fds: at most 64 descriptors");
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_passed_fds)]{};
    iovec iov{const_cast<void*>(data), len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    for (;;) {
        ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EPIPE || errno == ECONNRESET) return -1;
        throw_errno("sendmsg");
    }
}

std::size_t recv_with_fds(int sock, void* data, std::size_t len, std::vector<unique_fd>& fds) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_passed_fds)]{};
    iovec iov{data, len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    while ((n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0) {
        if (errno == ECONNRESET) return 0;
        if (errno != EINTR) throw_errno("recvmsg");
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds.emplace_back(fd);  // owned at once: never leaked, even if we throw below
        }
    }
    if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) throw protocol_error("parafork: message or descriptors truncated");
    return static_cast<std::size_t>(n);
}

void send_fds(int sock, std::span<const int> fds, std::string_view payload) {
    if (payload.empty()) throw std::invalid_argument("send_fds: payload must not be empty");
    long n = send_with_fds(sock, payload.data(), payload.size(), fds);
    if (n < 0) throw_errno("sendmsg");
    // The descriptors went with the first byte; the rest is plain data.
    if (static_cast<std::size_t>(n) < payload.size())
        write_all(sock, payload.data() + n, payload.size() - static_cast<std::size_t>(n));
}

std::size_t recv_fds(int sock, std::span<unique_fd> fds_out, void* payload, std::size_t len) {
    std::vector<unique_fd> got;
    std::size_t n = recv_with_fds(sock, payload, len, got);
    for (std::size_t i = 0; i < got.size() && i < fds_out.size(); ++i) fds_out[i] = std::move(got[i]);
    // (descriptors beyond those asked for close with `got`: never leaked)
    if (n > 0 && n < len)
        if (!read_exact(sock, static_cast<char*>(payload) + n, len - n))
            throw protocol_error("parafork: stream ended in the middle of a message");
    return n == 0 ? 0 : len;
}

} // namespace parafork::sys

namespace parafork::sys {

int spin_poll(pollfd* fds, unsigned long nfds, std::chrono::microseconds spin) {
    using clock = std::chrono::steady_clock;
    const auto end = clock::now() + spin;
    int r;
    do {
        r = ::poll(fds, nfds, 0);
        if (r != 0) return r;
        ::sched_yield();  // another runnable process on this CPU goes first
    } while (clock::now() < end);
    return r;
}

int poll_spin(pollfd* fds, unsigned long nfds, int timeout_ms, std::chrono::microseconds spin) {
    if (timeout_ms != 0 && spin.count() > 0) {
        using clock = std::chrono::steady_clock;
        const auto start = clock::now();
        int r = spin_poll(fds, nfds, spin);
        if (r != 0) return r;
        if (timeout_ms > 0) {
            auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start).count();
            timeout_ms = static_cast<int>(std::max<long long>(timeout_ms - spent, 0));
        }
    }
    return ::poll(fds, nfds, timeout_ms);
}

int poll_fds(pollfd* fds, std::size_t nfds, int timeout_ms) {
    int r = ::poll(fds, static_cast<nfds_t>(nfds), timeout_ms);
    if (r < 0 && errno != EINTR) throw_errno("poll");
    return r;
}

long send_some(int sock, const void* buf, std::size_t len, int flags) {
    for (;;) {
        ssize_t n = ::send(sock, buf, len, flags | MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EPIPE || errno == ECONNRESET) return -1;
        throw_errno("send");
    }
}

} // namespace parafork::sys

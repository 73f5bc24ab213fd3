#include <parafork/sys/fd.hpp>
#include <parafork/error.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
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

void set_nonblocking(int fd, bool on) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0) throw_errno("fcntl(F_GETFL)");
    int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (nfl != fl && ::fcntl(fd, F_SETFL, nfl) != 0) throw_errno("fcntl(F_SETFL)");
}

void set_cloexec(int fd, bool on) {
    int fl = ::fcntl(fd, F_GETFD);
    if (fl < 0) throw_errno("fcntl(F_GETFD)");
    int nfl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
    if (nfl != fl && ::fcntl(fd, F_SETFD, nfl) != 0) throw_errno("fcntl(F_SETFD)");
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

void send_fds(int sock, std::span<const int> fds, std::string_view payload) {
    if (payload.empty()) throw std::invalid_argument("send_fds: payload must not be empty");
    if (fds.size() > 16) throw std::invalid_argument("send_fds: at most 16 descriptors");
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)]{};
    iovec iov{const_cast<char*>(payload.data()), payload.size()};
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
        ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0) {
            // The descriptors went with the first byte; the rest is plain data.
            if (static_cast<std::size_t>(n) < payload.size())
                write_all(sock, payload.data() + n, payload.size() - static_cast<std::size_t>(n));
            return;
        }
        if (errno != EINTR) throw_errno("sendmsg");
    }
}

std::size_t recv_fds(int sock, std::span<unique_fd> fds_out, void* payload, std::size_t len) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)]{};
    iovec iov{payload, len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n;
    do {
        n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("recvmsg");
    std::size_t got = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (got < fds_out.size()) fds_out[got++].reset(fd);
            else ::close(fd);  // more than asked for: never leak them
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) throw protocol_error("parafork: descriptors truncated in recvmsg");
    if (n > 0 && static_cast<std::size_t>(n) < len)
        if (!read_exact(sock, static_cast<char*>(payload) + n, len - static_cast<std::size_t>(n)))
            throw protocol_error("parafork: stream ended in the middle of a message");
    return static_cast<std::size_t>(n) == 0 ? 0 : len;
}

} // namespace parafork::sys

#include <parafork/exec/pipeline_edge.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/memory.hpp>

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>

namespace parafork::detail {
namespace {

// A message that went by memfd is announced by this tag plus its size.
constexpr char big_tag[4] = {'P', 'F', 'M', 'F'};

} // namespace

edge_ends make_edge() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
        sys::throw_errno("socketpair");
    edge_ends e{sys::unique_fd(fds[0]), sys::unique_fd(fds[1])};
    // Readers never write, writers never read: say so, so a reader's stray write cannot block.
    ::shutdown(fds[0], SHUT_WR);
    ::shutdown(fds[1], SHUT_RD);
    return e;
}

bool edge_writer::send(std::string_view msg) {
    if (msg.size() <= edge_max_inline) {
        for (;;) {
            ssize_t n = ::send(fd_.get(), msg.data(), msg.size(), MSG_NOSIGNAL);
            if (n >= 0) return true;
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET) return false;
            sys::throw_errno("send");
        }
    }
    // Too big for the socket buffer: a sealed memfd carries it, the socket carries the fd.
    auto mem = sys::make_memfd("parafork-item", 0);
    sys::write_all(mem.get(), msg.data(), msg.size());
    sys::seal_memfd(mem.get());
    char head[sizeof big_tag + sizeof(std::uint64_t)];
    std::uint64_t size = msg.size();
    std::memcpy(head, big_tag, sizeof big_tag);
    std::memcpy(head + sizeof big_tag, &size, sizeof size);
    int fd = mem.get();
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
    iovec iov{head, sizeof head};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    for (;;) {
        ssize_t n = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
        if (n >= 0) return true;
        if (errno == EINTR) continue;
        if (errno == EPIPE || errno == ECONNRESET) return false;
        sys::throw_errno("sendmsg");
    }
}

edge_reader::edge_reader(sys::unique_fd fd) : fd_(std::move(fd)) {}

int edge_reader::receive_impl(std::string_view& msg, bool block) {
    if (buf_.size() < edge_max_inline + 1) buf_.resize(edge_max_inline + 1);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{buf_.data(), buf_.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n;
    for (;;) {
        n = ::recvmsg(fd_.get(), &mh, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
        if (n >= 0) break;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno == ECONNRESET) return -1;
        sys::throw_errno("recvmsg");
    }
    if (n == 0 && mh.msg_controllen == 0) return -1;  // every writer is gone
    sys::unique_fd big;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (!big) big.reset(fd);
            else ::close(fd);  // never keep descriptors we did not ask for
        }
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) throw protocol_error("parafork: pipeline message truncated");
    if (!big) {
        msg = std::string_view(buf_.data(), static_cast<std::size_t>(n));
        return 1;
    }
    std::uint64_t size = 0;
    if (static_cast<std::size_t>(n) != sizeof big_tag + sizeof size ||
        std::memcmp(buf_.data(), big_tag, sizeof big_tag) != 0)
        throw protocol_error("parafork: bad large-message header in a pipeline queue");
    std::memcpy(&size, buf_.data() + sizeof big_tag, sizeof size);
    if (size != sys::fd_size(big.get())) throw protocol_error("parafork: large message size mismatch");
    if (buf_.size() < size) buf_.resize(size);
    std::size_t got = 0;
    while (got < size) {
        ssize_t r = ::pread(big.get(), buf_.data() + got, size - got, static_cast<off_t>(got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) sys::throw_errno("pread");
        got += static_cast<std::size_t>(r);
    }
    msg = std::string_view(buf_.data(), size);
    return 1;
}

} // namespace parafork::detail

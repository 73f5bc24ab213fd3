#pragma once
// The queue between two groups of pipeline stages (internal). Many writers, many readers; a
// message goes whole to exactly one reader; a writer blocks (sleeps) while the queue is full and
// a reader while it is empty; readers see the end once every writer has closed or died, and a
// writer learns when every reader is gone.
//
// This is an AF_UNIX SOCK_SEQPACKET pair: the kernel keeps message boundaries for any number
// of readers, bounds the bytes in flight (the socket buffer), and turns "every holder of the
// other end is gone" into EOF / EPIPE, which is exactly the lifecycle a pipeline needs. Messages
// larger than max_inline travel as a sealed memfd passed with SCM_RIGHTS.

#include <cstddef>
#include <string>
#include <string_view>

#include <parafork/sys/fd.hpp>

namespace parafork::detail {

inline constexpr std::size_t edge_max_inline = 60 * 1024;

struct edge_ends {
    sys::unique_fd read_end, write_end;
};
edge_ends make_edge();

class edge_writer {
public:
    edge_writer() = default;
    explicit edge_writer(sys::unique_fd fd) : fd_(std::move(fd)) {}
    // Sends one message, sleeping while the queue is full. False once every reader is gone.
    bool send(std::string_view msg);
    int fd() const noexcept { return fd_.get(); }
    void close() noexcept { fd_.reset(); }
    explicit operator bool() const noexcept { return bool(fd_); }

private:
    sys::unique_fd fd_;
};

class edge_reader {
public:
    edge_reader() = default;
    explicit edge_reader(sys::unique_fd fd);
    // The next message: sleeps until one arrives. False at the end (every writer gone).
    // The view stays valid until the next receive.
    bool receive(std::string_view& msg) { return receive_impl(msg, true) > 0; }
    // Non-blocking: 1 a message, 0 nothing yet, -1 the end.
    int try_receive(std::string_view& msg) { return receive_impl(msg, false); }
    int fd() const noexcept { return fd_.get(); }
    void close() noexcept { fd_.reset(); }
    explicit operator bool() const noexcept { return bool(fd_); }

private:
    int receive_impl(std::string_view& msg, bool block);
    sys::unique_fd fd_;
    std::string buf_;
};

} // namespace parafork::detail

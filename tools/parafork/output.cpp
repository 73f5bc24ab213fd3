#include "output.hpp"

#include <parafork/sys/fd.hpp>

#include <cerrno>
#include <memory>
#include <string>
#include <poll.h>
#include <sys/sendfile.h>
#include <unistd.h>

namespace parafork::cli {
namespace {

void wait_writable(int fd) {
    pollfd p{fd, POLLOUT, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
}

} // namespace

void write_out(int to, const char* data, std::size_t len) {
    while (len) {
        long n = ::write(to, data, len);
        if (n > 0) {
            data += n;
            len -= static_cast<std::size_t>(n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            wait_writable(to);  // someone made our stdout non-blocking; stay polite
        } else if (n < 0 && errno == EPIPE) {
            throw output_closed();
        } else {
            sys::throw_errno("write");
        }
    }
}

void copy_file_to(int to, int from, std::size_t len) {
    off_t off = 0;
    while (static_cast<std::size_t>(off) < len) {
        long n = ::sendfile(to, from, &off, len - static_cast<std::size_t>(off));
        if (n > 0) continue;
        if (n == 0) return;  // the file is shorter than we thought: nothing more to send
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            wait_writable(to);
            continue;
        }
        if (errno == EPIPE) throw output_closed();
        if (errno != EINVAL && errno != ENOSYS) sys::throw_errno("sendfile");
        // An fd sendfile cannot write to: copy through a buffer.
        constexpr std::size_t chunk = 256 * 1024;
        auto buf = std::make_unique<char[]>(chunk);
        while (static_cast<std::size_t>(off) < len) {
            long r = ::pread(from, buf.get(), std::min(chunk, len - static_cast<std::size_t>(off)), off);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) sys::throw_errno("pread");
            if (r == 0) return;
            write_out(to, buf.get(), static_cast<std::size_t>(r));
            off += r;
        }
        return;
    }
}

void write_tagged(int to, std::string_view data, std::string_view tag, bool& at_line_start) {
    std::string out;
    out.reserve(data.size() + tag.size() * 4);
    while (!data.empty()) {
        if (at_line_start) out += tag;
        auto nl = data.find('\n');
        std::size_t len = nl == std::string_view::npos ? data.size() : nl + 1;
        out.append(data.data(), len);
        at_line_start = nl != std::string_view::npos;
        data.remove_prefix(len);
    }
    write_out(to, out.data(), out.size());
}

void copy_file_tagged(int to, int from, std::size_t len, std::string_view tag) {
    constexpr std::size_t chunk = 256 * 1024;
    auto buf = std::make_unique<char[]>(chunk);
    bool at_line_start = true;
    for (std::size_t off = 0; off < len;) {
        long r = ::pread(from, buf.get(), std::min(chunk, len - off), static_cast<off_t>(off));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) sys::throw_errno("pread");
        if (r == 0) return;
        write_tagged(to, std::string_view(buf.get(), static_cast<std::size_t>(r)), tag, at_line_start);
        off += static_cast<std::size_t>(r);
    }
}

} // namespace parafork::cli

// Built-in stages with compiled bodies: read_lines and command.
#include <parafork/exec/pipeline/stages.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <system_error>
#include <unistd.h>

namespace parafork {

namespace detail {

namespace {
[[noreturn]] void file_error(const char* what, const std::string& path) {
    throw error(std::string("parafork: ") + what + " " + path + ": " + std::strerror(errno));
}
} // namespace

void line_reader::open(const std::string& path) {
    path_ = path;
    fd_ = sys::open_file(path.c_str(), O_RDONLY);
    if (!fd_) file_error("read_lines cannot open", path);
}

bool line_reader::next(std::string& line) {
    for (;;) {
        if (auto nl = buf_.find('\n', at_); nl != std::string::npos) {
            line.assign(buf_, at_, nl - at_);
            at_ = nl + 1;
            return true;
        }
        if (eof_) {
            if (at_ >= buf_.size()) return false;
            line.assign(buf_, at_);  // a last line without a newline
            at_ = buf_.size();
            return true;
        }
        buf_.erase(0, at_);
        at_ = 0;
        char chunk[64 * 1024];
        long n;
        try {
            n = sys::read_some(fd_.get(), chunk, sizeof chunk);
        } catch (const std::system_error& e) {
            throw error("parafork: read_lines failed reading " + path_ + ": " + e.what());
        }
        if (n <= 0) eof_ = true;  // a blocking fd: -1 (EAGAIN) cannot happen
        else buf_.append(chunk, static_cast<std::size_t>(n));
    }
}

void line_writer::open(const std::string& path) {
    path_ = path;
    fd_ = sys::open_file(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC);
    if (!fd_) file_error("write_lines cannot open", path);
}

void line_writer::write_buffer() {
    try {
        sys::write_all(fd_.get(), buf_.data(), buf_.size());
    } catch (const std::system_error& e) {
        throw error("parafork: write_lines failed writing " + path_ + ": " + e.what());
    }
    buf_.clear();
}

void line_writer::write_if_full() {
    if (buf_.size() >= 64 * 1024) write_buffer();
}

void line_writer::close() {
    if (!fd_) return;
    write_buffer();
    if (!sys::close_now(fd_)) file_error("write_lines failed writing", path_);
}

void read_lines_source::setup() {
    line_reader in;
    in.open(path);
    std::string line;
    while (in.next(line)) put(line);
    stop();
}

} // namespace detail

void command_stage::setup() {
    auto to = sys::make_pipe();
    auto from = sys::make_pipe();
    sys::spawn_options so;
    so.stdin_fd = to.read.get();
    so.stdout_fd = from.write.get();
    pid_ = sys::spawn(argv, so);
    to.read.reset();
    from.write.reset();
    sys::set_nonblocking(to.write.get());
    sys::set_nonblocking(from.read.get());
    in_fd_ = to.write.release();
    out_fd_ = from.read.release();
}

void command_stage::process(const std::string& line) {
    if (in_fd_ < 0) return;  // the program no longer reads
    pending_ += line;
    pending_ += '\n';
    pump(false);
}

// Moves bytes both ways without ever blocking on one side while the other is stuck: writes
// what the program will take, puts every whole line it printed. With `draining`, closes its
// stdin once everything is written and runs until its stdout ends.
void command_stage::pump(bool draining) {
    if (out_fd_ < 0) {  // its output has ended: nothing more will come of input
        pending_.clear();
        return;
    }
    sys::sigpipe_guard no_sigpipe;  // a program that exits early is an EPIPE, not our death
    char buf[64 * 1024];
    for (;;) {
        while (in_fd_ >= 0 && !pending_.empty()) {
            long n;
            try {
                n = sys::write_some(in_fd_, pending_.data(), pending_.size());
            } catch (const std::system_error& e) {
                if (e.code().value() != EPIPE) throw;
                // The program stopped reading (like `head`): the rest of the input is not
                // wanted; its exit status, checked at the end, says whether that was an error.
                pending_.clear();
                sys::close_now(in_fd_);
                break;
            }
            if (n < 0) break;
            pending_.erase(0, static_cast<std::size_t>(n));
        }
        if (draining && pending_.empty() && in_fd_ >= 0) {
            sys::close_now(in_fd_);
        }
        bool eof = false;
        for (;;) {
            long n = sys::read_some(out_fd_, buf, sizeof buf);
            if (n < 0) break;
            if (n == 0) {
                eof = true;
                break;
            }
            partial_.append(buf, static_cast<std::size_t>(n));
            std::size_t start = 0;
            for (auto nl = partial_.find('\n'); nl != std::string::npos; nl = partial_.find('\n', start)) {
                put(partial_.substr(start, nl - start));
                start = nl + 1;
            }
            partial_.erase(0, start);
        }
        if (eof) {
            if (!partial_.empty()) put(partial_);
            partial_.clear();
            sys::close_now(out_fd_);
            if (in_fd_ >= 0) {
                sys::close_now(in_fd_);
            }
            return;
        }
        if (!draining && pending_.size() < 64 * 1024) return;
        pollfd fds[2] = {{out_fd_, POLLIN, 0}, {in_fd_, POLLOUT, 0}};
        nfds_t n = (in_fd_ >= 0 && !pending_.empty()) ? 2 : 1;
        sys::poll_fds(fds, n, -1);  // EINTR: look again
    }
}

void command_stage::teardown() {
    if (pid_ < 0) return;
    pump(true);
    auto st = sys::wait_pid(pid_);
    pid_ = -1;
    if (!st.ok()) throw error("parafork: command " + argv[0] + " ended with " + st.describe());
}

} // namespace parafork

// The worker's side of the engine: its main loop and the results stream it writes.
#include <parafork/exec/pool_engine.hpp>
#include "pool_kid.hpp"
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/wire/frames.hpp>
#include <parafork/wire/large.hpp>

#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <exception>
#include <typeinfo>
#include <unistd.h>

namespace parafork::detail {
namespace {

constexpr std::size_t flush_at = 256 * 1024;  // big writes, but well inside a 1 MiB pipe

std::string demangle(const char* name) {
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string out = status == 0 && d ? d : name;
    std::free(d);
    return out;
}

void put_header(std::string& buf, msg kind, std::uint32_t count, std::uint64_t first,
                std::size_t body) {
    std::uint64_t len = sizeof(msg_header) + body;
    msg_header h{static_cast<std::uint8_t>(kind), 0, 0, count, first};
    buf.append(reinterpret_cast<const char*>(&len), sizeof len);
    buf.append(reinterpret_cast<const char*>(&h), sizeof h);
}

} // namespace

kid_output::kid_output(int out_fd, int sock, std::size_t large_threshold, bool flush_each)
    : fd_(out_fd), sock_(sock), large_threshold_(large_threshold), flush_each_(flush_each) {
    buf_.reserve(flush_at + 64 * 1024);
}

std::size_t kid_output::open_item(std::uint64_t index) {
    if (run_at_ != npos && run_next_ == index && run_count_ != UINT32_MAX) return buf_.size();
    close_run();
    run_at_ = buf_.size();
    put_header(buf_, msg::values, 0, index, 0);
    run_next_ = index;
    run_count_ = 0;
    return buf_.size();
}

void kid_output::close_item(std::size_t mark, std::uint64_t index) {
    std::size_t n = buf_.size() - mark;
    if (n > large_threshold_) {
        auto fd = wire::to_sealed_memfd(std::string_view(buf_.data() + mark, n));
        buf_.resize(mark);
        send_large_frame(index, std::move(fd), n);
        return;
    }
    ++run_count_;
    ++run_next_;
    if (flush_each_ || buf_.size() >= flush_at) flush();
}

void kid_output::large_contiguous(std::uint64_t index, std::uint64_t count, const void* data,
                                  std::size_t bytes) {
    std::string_view head(reinterpret_cast<const char*>(&count), sizeof count);
    auto fd = wire::to_sealed_memfd(head, std::string_view(static_cast<const char*>(data), bytes));
    send_large_frame(index, std::move(fd), sizeof count + bytes);
}

void kid_output::send_large_frame(std::uint64_t index, sys::unique_fd fd, std::uint64_t size) {
    // The frames before it go first, then the descriptor, then the frame that tells the parent
    // to take it: the parent meets descriptors in the order it needs them.
    close_run();
    flush();
    int raw = fd.get();
    sys::send_fds(sock_, {&raw, 1},
                  std::string_view(reinterpret_cast<const char*>(&size), sizeof size));
    put_header(buf_, msg::large, 1, index, sizeof size);
    buf_.append(reinterpret_cast<const char*>(&size), sizeof size);
    flush();
}

void kid_output::close_run() noexcept {
    if (run_at_ == npos) return;
    if (run_count_ == 0) {
        buf_.resize(run_at_);
    } else {
        std::uint64_t len = buf_.size() - run_at_ - sizeof(std::uint64_t);
        std::memcpy(buf_.data() + run_at_, &len, sizeof len);
        std::memcpy(buf_.data() + run_at_ + sizeof len + offsetof(msg_header, count), &run_count_,
                    sizeof run_count_);
    }
    run_at_ = npos;
    run_count_ = 0;
}

void kid_output::fail_current(std::uint64_t index) noexcept {
    try {
        std::string type, what;
        try {
            throw;
        } catch (const std::exception& e) {
            type = demangle(typeid(e).name());
            what = e.what();
        } catch (...) {
            auto* t = abi::__cxa_current_exception_type();
            type = t ? demangle(t->name()) : "unknown exception";
            what = "(not a std::exception)";
        }
        close_run();
        std::string body;
        wire::writer w(body);
        w(type, what);
        put_header(buf_, msg::failure, 1, index, body.size());
        buf_.append(body);
        if (flush_each_) flush();
    } catch (...) {
        ::_exit(70);  // cannot report: the parent sees a dead worker instead
    }
}

void kid_output::flush() {
    close_run();
    if (!buf_.empty()) sys::write_all(fd_, buf_.data(), buf_.size());
    buf_.clear();
}

void kid_main(const kid_config& c) noexcept {
    int code = 0;
    try {
        if (c.opts->worker_init) c.opts->worker_init();
        kid_output out(c.result_fd, c.sock, wire::default_large_threshold,
                       c.opts->task_timeout.count() > 0);
        frames::frame_reader in(frames::len_prefix, 64 * 1024);
        for (;;) {
            if (in.fill(c.task_fd) == 0) break;
            while (auto f = in.next()) {
                if (f->size() < sizeof(msg_header))
                    throw protocol_error("parafork: short job frame");
                msg_header h;
                std::memcpy(&h, f->data(), sizeof h);
                std::string_view body = f->substr(sizeof h);
                wire::large_view large;
                if (h.flags & flag_large) {
                    large = wire::recv_large(c.sock);
                    body = large.bytes();
                }
                auto kind = static_cast<msg>(h.kind);
                if (kind == msg::call) {
                    wire::reader r(body);
                    call_prefix p;
                    r.read_bytes(&p, sizeof p);
                    p.fn(p.ctx, h.first, h.count, r, out);
                } else if ((kind == msg::range || kind == msg::items) && c.runner) {
                    c.runner(c.ctx, kind, h.first, h.count, body, out);
                } else {
                    throw protocol_error("parafork: unknown job kind");
                }
                out.flush();
            }
        }
        if (c.opts->worker_exit) c.opts->worker_exit();
    } catch (...) {
        code = sys::report_child_exception();
    }
    sys::exit_child(code);
}

} // namespace parafork::detail

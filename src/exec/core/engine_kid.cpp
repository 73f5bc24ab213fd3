// The worker's side of the engine: its main loop and the results stream it writes.
#include "engine.hpp"
#include "engine_kid.hpp"

#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/wire/frames.hpp>
#include <parafork/wire/large.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <poll.h>
#include <typeinfo>
#include <unistd.h>

namespace parafork::detail {

kid_output::kid_output(int out_fd, int sock, std::size_t large_threshold, bool flush_each,
                       std::uint64_t* running, std::atomic<std::uint32_t>* verdict)
    : fd_(out_fd), sock_(sock), large_threshold_(large_threshold), flush_each_(flush_each),
      running_(running), verdict_(verdict) {
    grow(flush_at + 64 * 1024);
}

void kid_output::grow(std::size_t n) {
    std::size_t ncap = std::max(cap_ * 2, size_ + n);
    auto nd = std::make_unique_for_overwrite<char[]>(ncap);
    if (size_) std::memcpy(nd.get(), data_.get(), size_);
    data_ = std::move(nd);
    cap_ = ncap;
}

void kid_output::put_header(msg kind, std::uint32_t count, std::uint64_t first, std::size_t body) {
    std::uint64_t len = sizeof(msg_header) + body;
    msg_header h{static_cast<std::uint8_t>(kind), 0, 0, count, first};
    append(&len, sizeof len);
    append(&h, sizeof h);
}

void kid_output::start_run(std::uint64_t index) {
    close_run();
    run_at_ = size_;
    put_header(msg::values, 0, index, 0);
    run_next_ = index;
    run_count_ = 0;
}

void kid_output::close_run() noexcept {
    if (run_at_ == npos) return;
    if (run_count_ == 0) {
        size_ = run_at_;
    } else {
        std::uint64_t len = size_ - run_at_ - sizeof(std::uint64_t);
        std::memcpy(data_.get() + run_at_, &len, sizeof len);
        std::memcpy(data_.get() + run_at_ + sizeof len + offsetof(msg_header, count), &run_count_,
                    sizeof run_count_);
    }
    run_at_ = npos;
    run_count_ = 0;
}

void kid_output::large_contiguous(std::uint64_t index, std::uint64_t count, const void* data,
                                  std::size_t bytes) {
    if (verdict_ && lend(index, count, data, bytes)) return;
    std::string_view head(reinterpret_cast<const char*>(&count), sizeof count);
    auto fd = wire::to_sealed_memfd(head, std::string_view(static_cast<const char*>(data), bytes));
    send_large_frame(index, std::move(fd), sizeof count + bytes);
}

void kid_output::large_scratch(std::uint64_t index) {
    auto fd = wire::to_sealed_memfd(scratch_);
    send_large_frame(index, std::move(fd), scratch_.size());
    scratch_ = std::string();  // do not keep a huge buffer around
}

void kid_output::send_large_frame(std::uint64_t index, sys::unique_fd fd, std::uint64_t size) {
    // The frames before it go first, then the descriptor, then the frame that tells the parent
    // to take it: the parent meets descriptors in the order it needs them.
    flush();
    int raw = fd.get();
    sys::send_fds(sock_, {&raw, 1},
                  std::string_view(reinterpret_cast<const char*>(&size), sizeof size));
    put_header(msg::large, 1, index, sizeof size);
    append(&size, sizeof size);
    flush();
}

bool kid_output::lend(std::uint64_t index, std::uint64_t count, const void* data,
                      std::size_t bytes) {
    lent_value lv{count, reinterpret_cast<std::uintptr_t>(data), bytes};
    verdict_->store(verdict_pending, std::memory_order_relaxed);
    put_header(msg::lent, 1, index, sizeof lv);
    append(&lv, sizeof lv);
    flush();
    // The value must stay as it is until the parent has copied it. A parent that dies takes
    // this process with it (PR_SET_DEATHSIG); one that stops this worker kills it.
    std::uint32_t v;
    while ((v = verdict_->load(std::memory_order_acquire)) == verdict_pending)
        (void)sys::futex_wait(verdict_, verdict_pending);
    return v == verdict_taken;
}

void kid_output::with_descriptors(std::uint64_t index) {
    std::vector<int> fds;
    fds.swap(outgoing_fds());
    if (fds.size() > max_descriptors)
        throw error("parafork: a result may carry at most " + std::to_string(max_descriptors) +
                    " descriptors");
    // The frames before it go first, then the descriptors, then the frame that announces them,
    // then the value in a run of its own: the parent knows which value they belong to.
    flush();
    std::uint64_t n = fds.size();
    sys::send_fds(sock_, fds, std::string_view(reinterpret_cast<const char*>(&n), sizeof n));
    put_header(msg::descriptors, 1, index, sizeof n);
    append(&n, sizeof n);
    if (scratch_.size() > large_threshold_) return large_scratch(index);
    start_run(index);
    append(scratch_.data(), scratch_.size());
    end_item();
    flush();
}

void kid_output::encoded(std::uint64_t index, std::string_view bytes) {
    if (bytes.size() > large_threshold_) {
        scratch_.assign(bytes);
        return large_scratch(index);
    }
    if (!continues(index)) start_run(index);
    append(bytes.data(), bytes.size());
    end_item();
}

void put_start(kid_output& out, std::uint64_t index) noexcept { out.start(index); }
void put_value(kid_output& out, std::uint64_t index, std::string_view encoded) {
    out.encoded(index, encoded);
}
void put_failure(kid_output& out, std::uint64_t index) noexcept { out.fail_current(index); }

void kid_output::fail_current(std::uint64_t index) noexcept {
    try {
        auto [type, what] = describe_current_exception();
        close_run();
        scratch_.clear();
        wire::writer w(scratch_);
        w(type, what);
        put_header(msg::failure, 1, index, scratch_.size());
        append(scratch_.data(), scratch_.size());
        // Sent at once, not with the rest of the chunk: a failure usually ends the call, and the
        // caller should not wait for the items after it (failures are rare: one write each).
        flush();
    } catch (...) {
        sys::exit_child(70);  // cannot report: the parent sees a dead worker instead
    }
}

void kid_output::spent(std::uint32_t count, std::uint64_t ns) {
    close_run();
    put_header(msg::spent, count, 0, sizeof ns);
    append(&ns, sizeof ns);
}

void kid_output::flush() {
    close_run();
    if (size_) sys::write_all(fd_, data_.get(), size_);
    size_ = 0;
}

namespace {

// One frame with no item (ready, init_failed) straight to the results pipe.
void write_note(int fd, msg kind, std::string_view body) {
    std::string buf;
    std::uint64_t len = sizeof(msg_header) + body.size();
    msg_header h{static_cast<std::uint8_t>(kind), 0, 0, 0, 0};
    buf.append(reinterpret_cast<const char*>(&len), sizeof len);
    buf.append(reinterpret_cast<const char*>(&h), sizeof h);
    buf.append(body);
    sys::write_all(fd, buf);
}

// worker_init threw: tell the parent what, so the caller sees it (not a worker that dies and
// is replaced forever).
[[noreturn]] void init_failed(int fd) noexcept {
    try {
        auto [type, what] = describe_current_exception();
        std::string body;
        wire::writer w(body);
        w(type, what);
        write_note(fd, msg::init_failed, body);
    } catch (...) {
    }
    sys::exit_child(1);
}

} // namespace

void kid_main(const kid_config& c) noexcept {
    int code = 0;
    try {
        try {
            if (c.opts->worker_init) c.opts->worker_init();
        } catch (...) {
            init_failed(c.result_fd);
        }
        write_note(c.result_fd, msg::ready, {});
        kid_output out(c.result_fd, c.sock, wire::default_large_threshold,
                       c.opts->task_timeout.count() > 0, c.running, c.verdict);
        frames::frame_reader in(frames::len_prefix, 64 * 1024);
        for (;;) {
            // The next job usually follows within microseconds (the parent keeps two in flight):
            // poll for it briefly before the read sleeps, sparing the wake-up of an idle CPU.
            // (Half a frame buffered: the rest is on its way, just read.)
            if (in.buffered() == 0) {
                pollfd p{c.task_fd, POLLIN, 0};
                (void)sys::poll_spin(&p, 1, -1, c.opts->spin);
            }
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
                __atomic_store_n(c.running, 0, __ATOMIC_RELAXED);  // between items
                if (kind == msg::call) {
                    wire::reader r(body);
                    call_prefix p;
                    r.read_bytes(&p, sizeof p);
                    p.fn(p.ctx, h.first, h.count, r, out);
                } else if ((kind == msg::range || kind == msg::items) && c.runner) {
                    // The job's own cost, measured here: the parent sizes the next chunks by
                    // it, not by its wall clock, which counts round trips and start-up too.
                    const auto t0 = std::chrono::steady_clock::now();
                    c.runner(c.ctx, static_cast<job_kind>(kind), h.first, h.count, body, out);
                    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - t0);
                    out.spent(h.count, static_cast<std::uint64_t>(ns.count()));
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

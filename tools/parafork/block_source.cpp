#include "sources.hpp"

#include <parafork/sys/memory.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace parafork::cli {

block_source::block_source(const settings& s) : s_(s) {
    struct stat st {};
    if (::fstat(0, &st) == 0) {
        if (S_ISREG(st.st_mode)) {
            regular_file_ = true;
            off_t at = ::lseek(0, 0, SEEK_CUR);
            if (at >= 0 && at <= st.st_size) total_ = static_cast<std::size_t>(st.st_size - at);
        } else if (S_ISFIFO(st.st_mode)) {
            // A bigger pipe from our producer means fewer, larger reads. Best effort.
            ::fcntl(0, F_SETPIPE_SZ, 1 << 20);
        }
    }
    reserve(s_.block_size);
}

void block_source::reserve(std::size_t cap) {
    if (cap <= cap_) return;
    auto bigger = std::make_unique_for_overwrite<char[]>(cap);
    if (len_) std::memcpy(bigger.get(), buf_.get(), len_);
    buf_ = std::move(bigger);
    cap_ = cap;
}

void block_source::read_input() {
    while (!eof_ && ready_.size() < cut_ahead) {
        if (len_ == cap_) reserve(cap_ * 2);  // one record longer than the block: keep it whole
        // Stop reading at the block size so blocks come out about that big.
        std::size_t limit = len_ < s_.block_size ? s_.block_size : cap_;
        long n = ::read(0, buf_.get() + len_, limit - len_);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            sys::throw_errno("read stdin");
        }
        if (n == 0) {
            eof_ = true;
            cut(true);
            return;
        }
        len_ += static_cast<std::size_t>(n);
        total_read_ += static_cast<std::size_t>(n);
        cut_what_is_buffered();
        // A pipe or a terminal may block on the next read: go back to poll. A file never does.
        if (!regular_file_) return;
    }
}

void block_source::cut(bool at_eof) {
    if (ready_.size() >= cut_ahead || len_ == 0) return;
    std::size_t end = len_;
    if (!at_eof) {
        auto* p = static_cast<const char*>(::memrchr(buf_.get() + scanned_, s_.record_sep, len_ - scanned_));
        if (!p) {
            scanned_ = len_;
            return;
        }
        end = static_cast<std::size_t>(p - buf_.get()) + 1;
    }
    sys::unique_fd fd = sys::make_memfd("parafork-block", 0);
    // pwrite leaves the file offset at 0, which the job's stdin shares.
    for (std::size_t done = 0; done < end;) {
        long n = ::pwrite(fd.get(), buf_.get() + done, end - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) sys::throw_errno("write block");
        done += static_cast<std::size_t>(n);
    }
    ++blocks_;
    job_spec spec;
    spec.argv = s_.command;
    spec.input = std::move(fd);
    spec.input_bytes = end;
    spec.what = "block " + std::to_string(blocks_) + " (input bytes " + std::to_string(offset_) + "-" +
                std::to_string(offset_ + end - 1) + ")";
    ready_.push_back(std::move(spec));
    offset_ += end;
    std::memmove(buf_.get(), buf_.get() + end, len_ - end);
    len_ -= end;
    scanned_ = 0;
}

// Cuts blocks from what is buffered while whole blocks are there (all of it at EOF).
void block_source::cut_what_is_buffered() {
    while (ready_.size() < cut_ahead && len_ > 0 && (eof_ || len_ >= s_.block_size)) {
        std::size_t before = ready_.size();
        cut(eof_);
        if (ready_.size() == before) return;  // no separator yet: read more
    }
}

std::optional<job_spec> block_source::take(std::size_t) {
    if (ready_.empty()) return std::nullopt;
    std::optional<job_spec> out = std::move(ready_.front());
    ready_.pop_front();
    cut_what_is_buffered();  // what is left may already make the next block
    return out;
}

} // namespace parafork::cli

#include "sources.hpp"

#include <parafork/sys/memory.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <regex>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace parafork::cli {
namespace {

// --header: a line count, or a regexp (":" is one line) matched at the start of `buf`. Empty
// when the input is too short to tell yet (`at_eof` false); the header, possibly "", else.
std::optional<std::string> match_header(const std::string& spec, std::string_view buf, bool at_eof, bool enough) {
    if (spec.find_first_not_of("0123456789") == std::string::npos) {
        std::size_t lines = std::stoul(spec), end = 0;
        for (std::size_t i = 0; i < lines; ++i) {
            auto nl = buf.find('\n', end);
            if (nl == std::string_view::npos) return at_eof ? std::optional<std::string>(buf) : std::nullopt;
            end = nl + 1;
        }
        return std::string(buf.substr(0, end));
    }
    if (!at_eof && !enough) return std::nullopt;
    std::regex re(spec == ":" ? std::string(".*\n") : spec, std::regex::ECMAScript);
    std::cmatch m;
    if (std::regex_search(buf.data(), buf.data() + buf.size(), m, re, std::regex_constants::match_continuous))
        return m.str(0);
    return std::string();
}

void write_at(int fd, const char* data, std::size_t len, std::size_t at) {
    for (std::size_t done = 0; done < len;) {
        long n = ::pwrite(fd, data + done, len - done, static_cast<off_t>(at + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) sys::throw_errno("write block");
        done += static_cast<std::size_t>(n);
    }
}

} // namespace

static command_template pipe_template(const settings& s) {
    return command_template(s.command, s.names, {}, template_options{.no_shell = s.no_shell, .words_are_args = s.words_are_args});
}

block_source::block_source(const settings& s)
    : s_(s), split_(s.pipe.recend, s.pipe.recstart, s.pipe.regexp), template_(pipe_template(s)), block_(s.block_size) {
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
    reserve(block_);
}

void block_source::reserve(std::size_t cap) {
    if (cap <= cap_) return;
    auto bigger = std::make_unique_for_overwrite<char[]>(cap);
    if (len_) std::memcpy(bigger.get(), buf_.get(), len_);
    buf_ = std::move(bigger);
    cap_ = cap;
}

// Block mode stops reading at the block size so blocks come out about that big; -N reads what
// the buffer holds; a --header regexp is matched on a block's worth, 64 KiB at least.
std::size_t block_source::enough() const {
    std::size_t limit = s_.pipe.records ? cap_ : block_;
    if (s_.pipe.header && !header_) limit = std::max(limit, header_window());
    return limit;
}

void block_source::read_input() {
    while (!eof_ && ready_.size() < cut_ahead) {
        reserve(enough());
        if (len_ == cap_) reserve(cap_ * 2);  // -N records longer than the buffer: keep them whole
        std::size_t limit = std::max(enough(), len_ + 1);
        reserve(limit);
        long n = ::read(0, buf_.get() + len_, limit - len_);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            sys::throw_errno("read stdin");
        }
        if (n == 0) {
            eof_ = true;
            cut_what_is_buffered();
            return;
        }
        len_ += static_cast<std::size_t>(n);
        total_read_ += static_cast<std::size_t>(n);
        cut_what_is_buffered();
        // A pipe or a terminal may block on the next read: go back to poll. A file never does.
        if (!regular_file_) return;
    }
}

bool block_source::take_header() {
    if (!s_.pipe.header || header_) return true;
    header_ = match_header(*s_.pipe.header, std::string_view(buf_.get(), len_), eof_, len_ >= header_window());
    if (!header_) return false;
    std::size_t n = header_->size();
    std::memmove(buf_.get(), buf_.get() + n, len_ - n);
    len_ -= n;
    offset_ += n;
    return true;
}

void block_source::cut(bool at_eof) {
    if (ready_.size() >= cut_ahead || len_ == 0) return;
    std::string_view buf(buf_.get(), len_);
    std::size_t end = len_;
    if (s_.pipe.records) {  // -N: the N-th place to cut, counted on from where the last search ended
        while (records_ < s_.pipe.records) {
            std::size_t next = split_.first(buf, scanned_ + 1);
            if (next == splitter::none) break;
            ++records_;
            scanned_ = next;
        }
        if (records_ == s_.pipe.records) end = scanned_;
        else if (!at_eof) return;
    } else {
        // The last place to cut within a block's worth (more may be buffered: at EOF, or after
        // reading ahead for a --header).
        while (!at_eof || len_ > block_) {
            std::string_view window = buf.substr(0, std::min(len_, block_));
            end = split_.last(window, scanned_);
            if (end != splitter::none) break;
            // A record longer than the block: the block grows for good, as GNU parallel's does.
            block_ = static_cast<std::size_t>(std::ceil(double(block_) * 1.3 + 1));
            scanned_ = window.size() - split_.lookback(window.size());
            if (!at_eof) return;
            end = len_;
        }
    }
    const std::string& head = header_ ? *header_ : std::string();
    sys::unique_fd fd = sys::make_memfd("parafork-block", 0);
    // pwrite leaves the file offset at 0, which the job's stdin shares.
    write_at(fd.get(), head.data(), head.size(), 0);
    write_at(fd.get(), buf_.get(), end, head.size());
    ++blocks_;
    job_spec spec;
    spec.input = std::move(fd);
    spec.input_bytes = head.size() + end;
    spec.what = "block " + std::to_string(blocks_) + " (input bytes " + std::to_string(offset_) + "-" +
                std::to_string(offset_ + end - 1) + ")";
    ready_.push_back(std::move(spec));
    offset_ += end;
    std::memmove(buf_.get(), buf_.get() + end, len_ - end);
    len_ -= end;
    scanned_ = 0;
    records_ = 0;
}

// Cuts blocks from what is buffered while whole blocks are there (all of it at EOF).
void block_source::cut_what_is_buffered() {
    if (!take_header()) return;
    while (ready_.size() < cut_ahead && len_ > 0 && (eof_ || s_.pipe.records || len_ >= block_)) {
        std::size_t before = ready_.size();
        cut(eof_);
        if (ready_.size() == before) return;  // no place to cut yet: read more
    }
}

std::optional<job_spec> block_source::take(std::size_t slot) {
    if (ready_.empty()) return std::nullopt;
    std::optional<job_spec> out = std::move(ready_.front());
    ready_.pop_front();
    out->argv = template_.expand({}, ++taken_, slot);
    cut_what_is_buffered();  // what is left may already make the next block
    return out;
}

// ---- part_source -----------------------------------------------------------------------------

part_source::part_source(const settings& s)
    : s_(s), split_(s.pipe.recend, s.pipe.recstart, s.pipe.regexp), template_(pipe_template(s)) {
    file_ = sys::open_file(s.pipe.part_file.c_str(), O_RDONLY);
    if (!file_)
        throw std::system_error(errno, std::generic_category(), "--pipepart: cannot open '" + s.pipe.part_file + "'");
    struct stat st {};
    if (::fstat(file_.get(), &st) != 0) sys::throw_errno("fstat");
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        throw usage_error("--pipepart: '" + s.pipe.part_file + "' is not a regular file (use --pipe for a stream)");
    size_ = static_cast<std::size_t>(st.st_size);
    if (s.pipe.header) {  // the header is read from the start, and every part gets it
        std::string start(std::min<std::size_t>(size_, std::max<std::size_t>(s.block_size, 1 << 20)), '\0');
        long n = ::pread(file_.get(), start.data(), start.size(), 0);
        if (n < 0) sys::throw_errno("read --pipepart file");
        start.resize(static_cast<std::size_t>(n));
        header_ = match_header(*s.pipe.header, start, true, true).value_or("");
    }
    next_ = header_.size();
    block_ = s.block_size;
    if (s.pipe.blocks_per_slot)  // --block -N: N parts per job slot
        block_ = std::max<std::size_t>(1, (size_ - next_) / (std::size_t{s.jobs} * s.pipe.blocks_per_slot));
}

// The first place after pos + 1 where a block may end (GNU parallel's search), or the end.
std::size_t part_source::boundary_after(std::size_t pos) {
    if (pos >= size_) return size_;
    if (split_.anywhere()) return pos;
    std::string window;
    constexpr std::size_t chunk = 128 * 1024;
    for (std::size_t at = pos; at < size_;) {
        std::size_t was = window.size();
        window.resize(was + std::min(chunk, size_ - at));
        long n = ::pread(file_.get(), window.data() + was, window.size() - was, static_cast<off_t>(at));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) sys::throw_errno("read --pipepart file");
        if (n == 0) break;
        window.resize(was + static_cast<std::size_t>(n));
        at += static_cast<std::size_t>(n);
        if (auto split = split_.next_from(window, 0); split != splitter::none) return pos + split;
    }
    return size_;
}

std::optional<job_spec> part_source::take(std::size_t slot) {
    if (next_ >= size_) return std::nullopt;
    std::size_t begin = next_, end = boundary_after(begin + block_);
    next_ = end;
    ++parts_;
    job_spec spec;
    spec.argv = template_.expand({}, parts_, slot);
    spec.input_bytes = header_.size() + (end - begin);
    spec.feed = job_spec::feed_spec{file_.get(), begin, end - begin, header_};
    spec.what = "part " + std::to_string(parts_) + " (bytes " + std::to_string(begin) + "-" + std::to_string(end - 1) +
                " of " + s_.pipe.part_file + ")";
    return spec;
}

} // namespace parafork::cli

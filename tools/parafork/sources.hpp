#pragma once
// Job sources: stdin cut into blocks (pipe mode), or the input sources' values, a job per
// combination (run mode).

#include "engine.hpp"
#include "splitter.hpp"
#include "template.hpp"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace parafork::cli {

// Reads stdin in big reads and cuts it into blocks of about `block_size` bytes ending where a
// record ends (--recend, --recstart), or of -N records (a record longer than a block makes a
// longer block; it is never split). Each block, after the --header when there is one, is
// written to a memfd that becomes the job's stdin, so the job reads it at its own pace with no
// further work from us.
class block_source final : public job_source {
public:
    block_source(const settings& s);
    int input_fd() const override { return 0; }
    bool wants_input() const override { return !eof_ && ready_.size() < cut_ahead; }
    void read_input() override;
    std::optional<job_spec> take(std::size_t slot) override;
    bool exhausted() const override { return eof_ && ready_.empty() && len_ == 0; }
    std::size_t bytes_read() const override { return total_read_; }
    std::optional<std::size_t> bytes_total() const override { return total_; }

private:
    // Blocks cut ahead of the jobs: two, so when two slots free up together the second does
    // not wait for a read and a copy.
    static constexpr std::size_t cut_ahead = 2;

    void cut(bool at_eof);
    void cut_what_is_buffered();
    bool take_header();  // false: more input is needed first
    void reserve(std::size_t cap);
    std::size_t enough() const;  // bytes to read before a block is cut
    std::size_t header_window() const { return std::max<std::size_t>(s_.block_size, 64 * 1024); }

    const settings& s_;
    splitter split_;
    command_template template_;  // a shell command runs through /bin/sh -c; {#} {%} filled in
    std::size_t block_;          // the block size, grown past a record longer than it
    std::unique_ptr<char[]> buf_;
    std::size_t cap_ = 0, len_ = 0;
    std::size_t scanned_ = 0;  // no place to cut in buf_[0, scanned_] (block mode)
    std::size_t records_ = 0;  // -N: records found in buf_[0, scanned_]
    std::size_t total_read_ = 0, offset_ = 0, blocks_ = 0, taken_ = 0;
    std::optional<std::size_t> total_;
    std::optional<std::string> header_;  // --header: known once matched
    bool regular_file_ = false;
    bool eof_ = false;
    std::deque<job_spec> ready_;
};

// --pipepart: parts of a seekable file, each from where a record starts after a multiple of
// the block size, found by reading a little there (GNU parallel's positions). A job's part
// goes to it through a pipe, spliced from the page cache: the parent never copies it.
class part_source final : public job_source {
public:
    part_source(const settings& s);
    int input_fd() const override { return -1; }
    bool wants_input() const override { return false; }
    void read_input() override {}
    std::optional<job_spec> take(std::size_t slot) override;
    bool exhausted() const override { return next_ >= size_; }
    std::size_t bytes_read() const override { return next_; }
    std::optional<std::size_t> bytes_total() const override { return size_; }

private:
    std::size_t boundary_after(std::size_t pos);  // GNU parallel's next split position

    const settings& s_;
    splitter split_;
    command_template template_;
    sys::unique_fd file_;
    std::size_t size_ = 0, next_ = 0, block_ = 0, parts_ = 0;
    std::string header_;
};

// Cuts the records out of one input, a file or stdin ("-"), at the delimiter (-d), a read at a
// time; the end-of-input value (-E) ends it early.
class record_reader {
public:
    record_reader(const std::string& path, const input_settings& in);
    int fd() const { return fd_; }
    bool eof() const { return eof_; }
    // One read(2); the records it completes go to `out`. False when the read would block.
    bool read_some(std::deque<std::string>& out);
    // Reads until `out` holds `count` records or the input ends, waiting for a slow producer.
    void read_until(std::deque<std::string>& out, std::size_t count);
    std::size_t bytes_read() const { return bytes_read_; }
    std::optional<std::size_t> bytes_total() const { return total_; }

private:
    void add(std::string record, std::deque<std::string>& out);

    const input_settings& in_;
    sys::unique_fd owned_;
    int fd_ = 0;
    std::string pending_;  // bytes after the last delimiter
    std::string continued_;  // -L: records ending in a blank, to go before the next
    std::size_t bytes_read_ = 0;
    std::optional<std::size_t> total_;  // a regular file's size
    bool eof_ = false;
};

// One job per combination of the input sources' values (GNU parallel's order: the first
// source varies slowest), linked sources advancing together. The first source is read as
// jobs start, at most a job's worth per slot ahead, when it is alone in its group and read
// from a file or stdin; the others are read whole first, since every one of their values
// pairs with each value of the first.
class arg_source final : public job_source {
public:
    arg_source(const settings& s);
    ~arg_source() override;
    int input_fd() const override { return stream_ ? stream_->fd() : 0; }
    bool wants_input() const override { return stream_ && !stream_->eof() && streamed_.size() < read_ahead_; }
    void read_input() override;
    std::optional<job_spec> take(std::size_t slot) override;
    bool exhausted() const override;
    std::size_t bytes_read() const override { return stream_ ? stream_->bytes_read() : 0; }
    std::optional<std::size_t> bytes_total() const override {
        return stream_ ? stream_->bytes_total() : std::nullopt;
    }
    std::optional<std::size_t> jobs_total() const override { return jobs_total_; }

private:
    struct group;
    bool next_first_row();
    bool next_row(job_args& out);  // the next combination, if it can be had now
    bool rows_exhausted() const;
    std::size_t rows_left() const;  // before any is taken

    const settings& s_;
    std::optional<record_reader> stream_;  // the first source, when it is streamed
    std::deque<std::string> streamed_;     // its records, not yet taken
    std::vector<group> groups_;            // read whole (the first too, when not streamed)
    std::optional<job_args> first_;        // the first group's row being combined
    std::size_t next_row_ = 0;             // of groups_[0], when it is read whole
    std::vector<std::size_t> odometer_;    // the row of each later group
    bool empty_ = false;                   // a later group has no values: no combination at all
    std::optional<std::deque<job_args>> shuffled_;  // --shuf: every row, in the order to run them
    std::unique_ptr<command_template> template_;
    std::unique_ptr<command_template> tag_template_;  // --tagstring
    std::size_t taken_ = 0;
    // Several values per job: the job being filled, and a value that did not fit into it.
    std::size_t per_job_ = 1;              // 0: not known until the input is read (-m, -X)
    bool spreading_ = false;               // -m, -X: full jobs until the rest fits one, then divided
    std::size_t read_ahead_ = 0;           // records of the first source read ahead of the jobs
    std::vector<job_args> batch_;
    std::size_t batch_bytes_ = 0;
    std::optional<job_args> held_;
    std::optional<std::size_t> jobs_total_;  // known when every source is read first
    std::vector<std::string> column_names_;  // --header: by position
};

} // namespace parafork::cli

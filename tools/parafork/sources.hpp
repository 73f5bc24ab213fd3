#pragma once
// Job sources: stdin cut into blocks (pipe mode) or into one job per record (run mode).

#include "engine.hpp"

#include <deque>
#include <memory>

namespace parafork::cli {

// Reads stdin in big reads and cuts it into blocks of about `block_size` bytes ending at a
// record separator (a record longer than a block makes a longer block; it is never split).
// Each block is written to a memfd that becomes the job's stdin, so the job reads it at its
// own pace with no further work from us.
class block_source final : public job_source {
public:
    block_source(const settings& s);
    int input_fd() const override { return 0; }
    bool wants_input() const override { return !eof_ && ready_.size() < cut_ahead; }
    void read_input() override;
    std::optional<job_spec> take() override;
    bool exhausted() const override { return eof_ && ready_.empty() && len_ == 0; }
    std::size_t bytes_read() const override { return total_read_; }
    std::optional<std::size_t> bytes_total() const override { return total_; }

private:
    // Blocks cut ahead of the jobs: two, so when two slots free up together the second does
    // not wait for a read and a copy.
    static constexpr std::size_t cut_ahead = 2;

    void cut(bool at_eof);
    void cut_what_is_buffered();
    void reserve(std::size_t cap);

    const settings& s_;
    std::unique_ptr<char[]> buf_;
    std::size_t cap_ = 0, len_ = 0;
    std::size_t scanned_ = 0;  // no separator in buf_[0, scanned_)
    std::size_t total_read_ = 0, offset_ = 0, blocks_ = 0;
    std::optional<std::size_t> total_;
    bool regular_file_ = false;
    bool eof_ = false;
    std::deque<job_spec> ready_;
};

// One job per stdin record: the command with `{}` (and {.} {/} {//} {/.} {#}) replaced by
// the record, or the record appended when no argument holds a placeholder.
class record_source final : public job_source {
public:
    record_source(const settings& s);
    int input_fd() const override { return 0; }
    bool wants_input() const override { return !eof_ && records_.size() < s_.jobs; }
    void read_input() override;
    std::optional<job_spec> take() override;
    bool exhausted() const override { return eof_ && records_.empty(); }
    std::size_t bytes_read() const override { return total_read_; }
    std::optional<std::size_t> bytes_total() const override { return total_; }

private:
    const settings& s_;
    bool has_placeholder_ = false;
    std::string pending_;  // bytes after the last separator
    std::deque<std::string> records_;
    std::size_t total_read_ = 0, taken_ = 0;
    std::optional<std::size_t> total_;
    bool eof_ = false;
};

// Replaces the placeholders of one argument (exposed for tests of the expansion rules).
std::string expand_placeholders(const std::string& arg, const std::string& record, std::size_t seq);
bool has_placeholder(const std::string& arg);

} // namespace parafork::cli

#pragma once
// --joblog FILE: one tab-separated row per finished job, GNU parallel's columns:
// Seq Host Starttime JobRuntime Send Receive Exitval Signal Command

#include <cstddef>
#include <cstdio>
#include <set>
#include <string>
#include <string_view>

namespace parafork::cli {

struct joblog_row {
    std::size_t seq;
    double start_epoch;  // seconds since the epoch
    double runtime;      // seconds
    std::size_t sent, received;
    int exit_value;      // -1 when the job could not start
    int signal;
    const std::string& command;
    std::string_view host = {};  // empty: ":" (this machine)
};

class joblog {
public:
    joblog() = default;
    // Truncates and writes the header, or (append) adds to what is there, the header only when
    // the file is empty. Throws.
    explicit joblog(const std::string& path, bool append = false);
    joblog(const joblog&) = delete;
    joblog& operator=(const joblog&) = delete;
    ~joblog();
    explicit operator bool() const noexcept { return f_ != nullptr; }
    void write(const joblog_row& row);
    void flush();

private:
    std::FILE* f_ = nullptr;
};

// --resume, --resume-failed: the Seq of every job FILE shows finished (succeeded, when
// `succeeded_only`). A file that does not exist shows none; lines that are not rows are skipped.
std::set<std::size_t> jobs_done(const std::string& path, bool succeeded_only);

} // namespace parafork::cli

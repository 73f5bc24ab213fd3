#pragma once
// --joblog FILE: one tab-separated row per finished job, GNU parallel's columns:
// Seq Host Starttime JobRuntime Send Receive Exitval Signal Command

#include <cstddef>
#include <cstdio>
#include <string>

namespace parafork::cli {

struct joblog_row {
    std::size_t seq;
    double start_epoch;  // seconds since the epoch
    double runtime;      // seconds
    std::size_t sent, received;
    int exit_value;      // -1 when the job could not start
    int signal;
    const std::string& command;
};

class joblog {
public:
    joblog() = default;
    explicit joblog(const std::string& path);  // truncates, writes the header; throws
    joblog(const joblog&) = delete;
    joblog& operator=(const joblog&) = delete;
    ~joblog();
    explicit operator bool() const noexcept { return f_ != nullptr; }
    void write(const joblog_row& row);
    void flush();

private:
    std::FILE* f_ = nullptr;
};

} // namespace parafork::cli

#pragma once
// --bar: one self-overwriting status line on stderr, at most ten updates a second.

#include <chrono>
#include <cstddef>
#include <optional>

namespace parafork::cli {

struct progress_state {
    std::size_t done = 0, failed = 0, running = 0;
    std::size_t bytes_in = 0;
    std::optional<std::size_t> bytes_total;  // known when stdin is a regular file
};

class progress_bar {
public:
    explicit progress_bar(bool enabled) : enabled_(enabled) {}
    void update(const progress_state& s, bool force = false);
    void finish(const progress_state& s);  // last update and a newline

private:
    bool enabled_;
    bool shown_ = false;
    std::chrono::steady_clock::time_point last_{};
};

} // namespace parafork::cli

#pragma once
// --progress, --eta and --bar: GNU parallel's status line on stderr, in its formats, updated
// at most ten times a second and once more, with a newline, at the end.

#include "settings.hpp"

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

namespace parafork::cli {

struct progress_state {
    std::size_t started = 0, running = 0, completed = 0;
    std::optional<std::size_t> total;  // jobs in the run, when known
    std::string newest;                // the newest job's values (--bar)
};

class progress_bar {
public:
    explicit progress_bar(const settings& s);
    void update(const progress_state& s, bool force = false);
    void finish(const progress_state& s);  // last update and a newline

private:
    std::string status(const progress_state& s);
    std::string bar(const progress_state& s);
    struct eta_figures {
        std::size_t total, completed, left;
        double done, average;  // fraction done, seconds per job
        long eta;              // seconds
    };
    eta_figures compute_eta(const progress_state& s);

    bool enabled_, eta_, bar_;
    unsigned jobs_;
    int columns_ = 80;
    long start_;  // whole seconds since the epoch, as GNU parallel's times
    bool shown_ = false;
    std::string last_header_;
    std::chrono::steady_clock::time_point last_{};
    // compute_eta's smoothing, as GNU parallel's
    long first_completed_ = 0;
    double smoothed_ = 0;
    long last_eta_ = 0;
};

} // namespace parafork::cli

#pragma once
// The worker's main loop (internal): reads jobs, runs them, writes answers, exits at EOF.

#include "engine.hpp"

namespace parafork::detail {

struct kid_config {
    int task_fd, result_fd, sock;
    job_runner runner;
    void* ctx;
    const options* opts;
    std::uint64_t* running;  // shared with the parent: see kid_output::start
    std::atomic<std::uint32_t>* verdict;  // shared with the parent: see lent_value
};

[[noreturn]] void kid_main(const kid_config& c) noexcept;

} // namespace parafork::detail

#pragma once
// Options shared by every way of running work in processes.

#include <chrono>
#include <functional>
#include <initializer_list>
#include <string>

namespace parafork {

class zygote;

struct options {
    unsigned jobs = 0;                        // 0: default_jobs()
    std::size_t chunksize = 0;                // 0: automatic
    bool ordered = false;                     // deliver results in input order
    std::chrono::milliseconds task_timeout{}; // 0: none; a task over it kills its worker
    unsigned retries = 0;                     // re-runs of a task lost to a dead worker
    std::size_t max_tasks_per_worker = 0;     // 0: workers live for the whole run
    bool progress = false;                    // a progress bar on stderr when it is a terminal
    std::string name = "parafork";            // process titles: <name>#k
    std::function<void()> worker_init{};      // runs in each worker when it starts
    std::function<void()> worker_exit{};      // runs in each worker before it exits
    std::chrono::milliseconds grace{200};     // SIGTERM to SIGKILL when stopping workers
    std::chrono::microseconds spin{50};       // a waiting side polls this long before it sleeps
                                              // (0: sleep at once); see docs/pool.md, "Latency"
    parafork::zygote* zygote = nullptr;       // fork workers through this fork server (it must
                                              // outlive the pool); see exec/core/zygote.hpp
    std::string dashboard{};                  // "HOST:PORT": serve the live dashboard there;
                                              // "": PARAFORK_DASHBOARD, else none (docs/dashboard.md)
};

// The jobs rule: an explicit count wins; else PARAFORK_JOBS; else PP_JOBS; else the number of
// CPUs this process may run on (sched_getaffinity). A malformed or zero value in either
// variable throws parafork::error naming it.
unsigned default_jobs();
unsigned resolve_jobs(unsigned explicit_jobs);

// The fields of options, by name: for executors that say which ones they cannot honour.
enum class option : unsigned char {
    jobs, chunksize, ordered, task_timeout, retries, max_tasks_per_worker, progress, name,
    worker_init, worker_exit, grace, spin, zygote, dashboard
};
const char* option_name(option f) noexcept;  // "task_timeout", ...

namespace detail {
// An executor that cannot honour some options rejects them rather than ignore them: throws
// std::invalid_argument naming the first of `unsupported` that `o` sets (differs from a
// default-made options) and `executor`.
void reject_options(const options& o, const char* executor, std::initializer_list<option> unsupported);
} // namespace detail

} // namespace parafork

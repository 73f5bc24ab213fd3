#pragma once
// The executor seam (internal to the library): what pool, forked and map ask of the engine that
// runs their items, and what a future MPI executor or Python binding implements or drives.
//
// Encoded jobs go in (push); answers come out through an executor_sink while the caller pumps:
// runs of encoded values, failures (a remote exception, a worker's death with pid and signal,
// a timeout) and values a worker lends instead of copying. The caller's thread does all of it;
// an executor has no threads of its own. See docs/architecture.md, "The executor seam".

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <poll.h>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include <parafork/exec/core/options.hpp>

namespace parafork::detail {

// What a job asks a worker to do with its items [first, first + count).
enum class job_kind : std::uint8_t {
    range = 1,  // run them from the worker's own copy of the caller's range (forked's index mode)
    items = 2,  // body holds count encoded items
    call = 3,   // body: `prefix` bytes naming the function, then count encoded argument packs
};

struct job {
    job_kind kind = job_kind::range;
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    std::string body;                     // items / call: encoded arguments
    std::vector<std::uint32_t> offsets;   // items / call: where each item starts in body
    std::uint32_t prefix = 0;             // call: bytes at the body's front that every part keeps
    unsigned tries = 0;                   // executor's: re-runs spent on this job's items
    unsigned unstarted = 0;               // executor's: workers lost holding it before it started
};

// How an item failed, as the caller learns it.
struct failure_info {
    enum class kind : std::uint8_t { remote, died, timeout } what = kind::remote;
    std::string type_name, message;  // remote: the exception's type and what()
    pid_t pid = 0;                   // the worker that ran (or died running) the item
    int signal = 0, code = 0;        // died: what ended it
};
// The exception for a failed item; `task` is the caller's index for it.
std::exception_ptr make_failure(const failure_info& f, std::size_t task);

struct lent_ref;  // a value still in a worker's memory: see detail/results.hpp

// Receives answers during pump/join, in the calling thread. Every item pushed is answered
// once: by values, by a failure, or (taken) by on_lent.
class executor_sink {
public:
    // `bytes` holds count encoded values (nothing for void); valid during the call only.
    virtual void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) = 0;
    virtual void on_failure(std::uint64_t index, const failure_info& f) = 0;
    // Item `index`'s value is lent by its worker (see fetch_lent). True once it is taken (or
    // dropped, if nobody wants it); false asks for it again as bytes through on_values.
    virtual bool on_lent(std::uint64_t index, const lent_ref& r) {
        (void)index;
        (void)r;
        return false;
    }

protected:
    ~executor_sink() = default;
};

// Progress, for bars and dashboards: items answered so far and what is still out.
struct executor_counters {
    std::uint64_t answered = 0;  // items answered, with a value or a failure
    std::uint64_t failed = 0;    // of those, failures
    std::uint64_t retried = 0;   // items run again after their worker died
    std::uint64_t timed = 0;     // range and items jobs' items whose cost the workers measured,
    std::uint64_t busy_ns = 0;   // and that cost in nanoseconds of the workers' time
    std::size_t queued = 0;      // jobs waiting for a worker
    std::size_t in_flight = 0;   // jobs at a worker
    unsigned workers = 0;
};

class executor {
public:
    using clock = std::chrono::steady_clock;
    virtual ~executor() = default;

    virtual unsigned size() const noexcept = 0;  // workers it keeps
    virtual executor_counters counters() const noexcept = 0;
    virtual bool stopped() const noexcept = 0;

    // Queues a job (sent when a worker is free; see kick and pump).
    virtual void push(job j) = 0;
    // Drops queued jobs whose items lie in [lo, hi); returns how many items were dropped.
    virtual std::uint64_t drop_queued(std::uint64_t lo, std::uint64_t hi) = 0;
    // Hands queued jobs to idle workers without waiting.
    virtual void kick() = 0;
    // Sends what it can and waits for at least one event (or `deadline`), delivering every
    // answer received to `sink`. False at once when nothing is queued or in flight. Throws
    // interrupted on Ctrl-C (workers stopped), the workers' start-up error (worker_init threw),
    // std::system_error when a lost worker cannot be replaced (its work stays queued).
    virtual bool pump(executor_sink& sink,
                      std::optional<clock::time_point> deadline = std::nullopt) = 0;
    // For one poll over several executors (wait_any over futures of several pools and
    // processes): appends the descriptors pump would sleep on and returns when pump must run
    // anyway (a task_timeout, the progress bar), if ever. An executor without descriptors
    // appends none and returns the time at which it wants to be pumped.
    virtual std::optional<clock::time_point> watch(std::vector<pollfd>& fds) = 0;
    // Rethrows what made the workers unable to start, if anything did.
    virtual void rethrow_fatal() = 0;
    // Answers everything queued, then lets the workers run worker_exit and exit; reaps them.
    virtual void join(executor_sink& sink) = 0;
    // Stops every worker now (stop signal, grace, SIGKILL) and forgets queued work. Never throws.
    virtual void terminate() noexcept = 0;
    // The progress bar's denominator: items answered so far plus those the caller now expects.
    virtual void expect_more(std::uint64_t items) noexcept = 0;
    // No more jobs will be pushed (work a lost worker held still runs again): a worker with
    // nothing left to run may exit now, while the others finish, instead of at join.
    virtual void close_input() noexcept {}
};

// Runs in a local worker for range and items jobs: ctx is the caller's object, valid in the
// worker because the worker is a copy of the caller made after it existed. Writes answers to
// `out` (see detail/worker.hpp, or the out-of-line put_* below).
class kid_output;
using job_runner = void (*)(void* ctx, job_kind kind, std::uint64_t first, std::uint32_t count,
                            std::string_view body, kid_output& out);
// For runners that see only this header: note that item `index` starts (a death from here on
// is its), answer it with one encoded value, or with the exception in flight (from a catch).
void put_start(kid_output& out, std::uint64_t index) noexcept;
void put_value(kid_output& out, std::uint64_t index, std::string_view encoded);
void put_failure(kid_output& out, std::uint64_t index) noexcept;

// The local executor: forks options.jobs workers now. `runner`/`ctx` serve range and items
// jobs (null when only call jobs come); `total_items` starts the progress bar's denominator.
std::unique_ptr<executor> make_local_executor(const options& o, job_runner runner = nullptr,
                                              void* ctx = nullptr, std::uint64_t total_items = 0);

} // namespace parafork::detail

#pragma once
// The job engine behind `pipe` and `run`: a fresh process per job, at most N at once, each
// job's stdout and stderr captured whole in a memory file (memfd) and written out in input
// order or as jobs finish. One thread, one poll loop over stdin, the children's pidfds and
// the SIGINT fd; memory stays bounded because at most 2N jobs are in flight.

#include "settings.hpp"

#include <parafork/sys/fd.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace parafork::cli {

struct job_spec {
    std::vector<std::string> argv;
    sys::unique_fd input;        // the job's stdin; empty: /dev/null
    std::size_t input_bytes = 0;
    std::string what;            // names the record in messages ("block 3 (bytes 0-1048575)")
    std::string tag;             // put before each line of its output (--tag, --tagstring)
    std::string values;          // its values, joined by spaces (--bar)
    std::string shown;           // the command as a shell would read it (--dry-run, -v); empty: argv joined
    std::string results_dir;     // --results: its output goes to files here instead
    // --pipepart: the job's stdin is a pipe the engine fills with `head`, then bytes
    // [offset, offset + length) of the file `fd` (owned by the source, open for the run).
    struct feed_spec {
        int fd = -1;
        std::size_t offset = 0, length = 0;
        std::string head;
    };
    std::optional<feed_spec> feed;
};

// Where jobs come from. The engine polls input_fd() while wants_input() and calls
// read_input() when it is readable.
class job_source {
public:
    virtual ~job_source() = default;
    virtual int input_fd() const = 0;
    virtual bool wants_input() const = 0;
    virtual void read_input() = 0;
    // The next ready job, if any, to run in job slot `slot` (1 to -j, free while it runs).
    virtual std::optional<job_spec> take(std::size_t slot) = 0;
    virtual bool exhausted() const = 0;          // nothing is left to take, ever
    virtual std::size_t bytes_read() const = 0;
    virtual std::optional<std::size_t> bytes_total() const = 0;
    // How many jobs the whole run has, when known before it starts (--halt with a percentage).
    virtual std::optional<std::size_t> jobs_total() const { return std::nullopt; }
};

// A job that ran elsewhere (on another MPI rank), as it came back.
struct remote_outcome {
    std::size_t id = 0;          // as given to remote_runner::start
    std::string out, err;        // its captured stdout and stderr
    int code = 0, signal = 0;
    bool timed_out = false;      // --timeout, enforced where it ran
    std::string spawn_error;     // non-empty: it could not start there
    double start_epoch = 0, runtime = 0;  // seconds
    std::string host;            // --joblog's Host column
};

// Where the engine also runs jobs besides its own slots: the other ranks of an MPI run
// (mpi_run.cpp). Seats are numbered 0 to capacity() - 1 over all of them; a job takes one
// from start() until its outcome comes back.
class remote_runner {
public:
    virtual ~remote_runner() = default;
    virtual int fd() const = 0;  // readable: collect() has something
    virtual std::size_t capacity() const = 0;
    virtual std::optional<std::size_t> free_seat() const = 0;
    virtual void start(std::size_t seat, std::size_t id, const job_spec& spec) = 0;
    // The outcomes that came; throws when a rank was lost.
    virtual void collect(std::vector<remote_outcome>& out) = 0;
    // Every job elsewhere is stopped, and no more will come back (halt, Ctrl-C, an error).
    virtual void stop() noexcept = 0;
};

// A finished job, handed to engine_options::report instead of being written out.
struct finished_job {
    std::size_t seq;               // the order the source gave it (1, 2, ...)
    int out_fd, err_fd;            // memory files
    std::size_t out_size, err_size;
    int code, signal;
    bool timed_out;
    const std::string& spawn_error;
    double start_epoch, runtime;
};

struct engine_options {
    // A job that cannot be started (command not found) stops the run with status 127: the
    // next job would fail the same way.
    bool spawn_failure_is_fatal = false;
    remote_runner* remote = nullptr;  // also run jobs there (rank 0 of an MPI run)
    std::string host = {};            // --joblog's Host column for jobs run here; empty: ":"
    // Set (on the other ranks of an MPI run): each finished job goes here, nothing is written
    // to stdout or stderr.
    std::function<void(const finished_job&)> report = {};
};

// Runs every job of `source`; returns the exit status (0, failed count capped at 101, 130 on
// SIGINT, 141 when our stdout closed). Prints a summary on stderr when a job failed.
int run_jobs(job_source& source, const settings& s, const engine_options& o = {});

} // namespace parafork::cli

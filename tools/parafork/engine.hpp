#pragma once
// The job engine behind `pipe` and `run`: a fresh process per job, at most N at once, each
// job's stdout and stderr captured whole in a memory file (memfd) and written out in input
// order or as jobs finish. One thread, one poll loop over stdin, the children's pidfds and
// the SIGINT fd; memory stays bounded because at most 2N jobs are in flight.

#include "settings.hpp"

#include <parafork/sys/fd.hpp>

#include <cstddef>
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

struct engine_options {
    // A job that cannot be started (command not found) stops the run with status 127: the
    // next job would fail the same way.
    bool spawn_failure_is_fatal = false;
};

// Runs every job of `source`; returns the exit status (0, failed count capped at 101, 130 on
// SIGINT, 141 when our stdout closed). Prints a summary on stderr when a job failed.
int run_jobs(job_source& source, const settings& s, const engine_options& o = {});

} // namespace parafork::cli

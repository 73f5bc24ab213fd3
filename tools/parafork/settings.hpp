#pragma once
// What the command line asks for, shared by the pipe, run and coproc modes.

#include "template.hpp"

#include <chrono>
#include <cstddef>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace parafork::cli {

enum class halt_policy { never, now, soon };

// --halt WHEN,WHY=N[%]: what ends the run (GNU parallel's syntax); plain "now" and "soon" are
// fail=1 with the failed count as the exit status.
struct halt_settings {
    halt_policy when = halt_policy::never;
    enum class on { fail, success, done } why = on::fail;
    double threshold = 1;     // jobs, or percent of all jobs
    bool percent = false;
    bool job_status = false;  // fail=1 spelled out: the run exits with the failing job's status
};
// "now", "soon", "never", "now,fail=1", "soon,fail=10%", "now,success=1", "soon,done=3",
// and GNU parallel's old numbers 0, 1, 2, -1, -2, "1-99%". Throws std::invalid_argument.
halt_settings parse_halt(std::string_view text);
// -j: "N", "+N" and "-N" (added to or taken from the default), "N%" (of the default). At least 1.
unsigned parse_jobs(std::string_view text, unsigned default_jobs);

// A command line that cannot mean anything, found after parsing (a bad replacement string):
// exit status 2 like the parser's own errors.
struct usage_error : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// One input source of `run`, in command-line order: values after ":::", or a file ("-" is
// stdin) after "::::" or -a. A linked source (":::+", "::::+") pairs with the one before it.
struct input_source {
    std::vector<std::string> values;
    std::optional<std::string> path;
    bool linked = false;

    static input_source file(std::string path, bool linked = false) { return {{}, std::move(path), linked}; }
};

// How many values (rows of the input sources) one job of `run` takes.
struct batching {
    std::size_t max_args = 1;      // -N, -n; 0: as many as a command line holds (--xargs, -m, -X)
    bool context_replace = false;  // -N, -X: an argument holding {} is repeated per value
    bool spread = false;           // -m, -X: the values divided evenly among the job slots
    bool by_bytes = false;         // -m, -X, --xargs: at most max_line bytes of values per job
    // Bytes of values per job (as a shell command quotes them), about GNU parallel's: half its
    // longest command line. Well under the kernel's 128 KiB for one argument (a shell string).
    static constexpr std::size_t max_line = 62 * 1024;
};

// How `run` reads and splits its input sources.
struct input_settings {
    std::vector<input_source> sources;  // empty: stdin
    std::string delimiter = "\n";       // -d, -0, --record-sep (files and stdin only)
    std::optional<std::regex> colsep;   // --colsep: each value splits into several arguments
    bool header = false;                // --header : (the first value of a source names it)
    bool trim_left = false, trim_right = false;  // --trim
    std::optional<std::string> eof;     // -E: a value equal to it ends its source
    bool link = false;                  // --link: every source linked, the shorter ones wrap
    bool continue_lines = false;        // -L: a value ending in a blank goes on with the next
};

// How pipe mode cuts its input (GNU parallel's --pipe and --pipepart).
struct pipe_settings {
    std::string recend = "\n", recstart;  // a block ends between the two
    bool regexp = false;                   // --regexp: they are regexps (ECMAScript)
    std::optional<std::string> header;     // --header: a regexp matched at the start, or a line count
    std::size_t records = 0;               // -N: records per job (0: --block decides)
    std::string part_file;                 // --pipepart -a FILE: parts of it by offset, never read by us
    std::size_t blocks_per_slot = 0;       // --pipepart --block -N: N parts per job slot
};

struct settings {
    unsigned jobs = 0;                           // resolved (>= 1) before a mode runs
    bool ordered = true;                         // outputs in input order
    std::chrono::milliseconds timeout{};         // per job; 0 = none
    double timeout_percent = 0;                  // --timeout N%: of the median successful runtime
    std::chrono::milliseconds grace{200};        // SIGTERM to SIGKILL
    halt_settings halt;
    bool bar = false;                            // --bar: GNU parallel's progress bar on stderr
    bool progress = false, eta = false;          // --progress, --eta: its status line
    std::string joblog;                          // path, empty = none
    bool resume = false, resume_failed = false;  // skip the jobs --joblog shows done (succeeded)
    unsigned retries = 0;                        // attempts per job (0 and 1: one)
    std::chrono::milliseconds delay{};           // between two job starts
    char record_sep = '\n';
    std::size_t block_size = std::size_t{1} << 20;  // pipe mode
    pipe_settings pipe;
    std::vector<std::string> command;            // CMD ARGS...
    input_settings input;                        // run
    replacement_names names;                     // run: the spelling of {} {.} ... (-I and the like)
    batching batch;                              // run: -N, -n, -m, -X, --xargs
    bool no_shell = false;                       // run -q: the command is never a shell string
    bool words_are_args = false;                 // the command came after "--": its words are arguments
    bool values_are_commands = false;            // run without a command: each job's values are one
    bool shuffle = false;                        // run --shuf: every job made first, run in random order
    // run's output: --tag, --tagstring (with replacement strings), --line-buffer, --dry-run
    bool tag = false;
    std::optional<std::string> tagstring;
    bool line_buffer = false;
    bool dry_run = false;
    bool verbose = false;                        // -v: each job's command on stdout, before its output
    bool verbose_stderr = false;                 // -t, --verbose: each job's command on stderr at its start
    std::string results;                         // --results DIR; empty: none
    std::string dashboard;                       // --dashboard ADDR: the live dashboard; empty: none
    std::string mode;                            // run, pipe or coproc: the run's name there
};

// Cuts the input sources off the end of a `run` command: "::: a b", ":::+ c d" (linked),
// ":::: file1 file2", "::::+ file" (the separators as --arg-sep and --arg-file-sep spell them).
std::vector<input_source> take_input_sources(std::vector<std::string>& command, const std::string& arg_sep,
                                             const std::string& arg_file_sep);
// "10" (seconds), "1.5s", "250ms", "2m", "1h", "1d". Throws std::invalid_argument.
std::chrono::milliseconds parse_duration(std::string_view text);
// "200%" for `option`: a positive percentage. Throws std::invalid_argument.
double parse_percent(std::string_view text, const char* option);
// "1048576", "64K", "1M", "1.5M", "1G" as GNU parallel: K M G T binary, k m g t decimal;
// an optional "B" or "iB".
std::size_t parse_size(std::string_view text);
// C escapes (\n \t \r \0 \\ \xHH \NNN octal) decoded, as GNU parallel's -d. Throws on a bad one.
std::string decode_escapes(std::string_view text);
// One character: a literal, or "\n", "\t", "\0", "\\", or a number like "0x1e".
char parse_separator(std::string_view text);

// Exit statuses (GNU parallel's convention for job failures).
inline constexpr int exit_usage = 2;
inline constexpr int exit_cannot_start = 127;  // as a shell's "command not found"
inline constexpr int exit_interrupted = 130;
inline constexpr int exit_output_closed = 141;  // like a filter killed by SIGPIPE
inline constexpr int exit_internal = 255;
inline int exit_for_failures(std::size_t failed) { return failed == 0 ? 0 : failed > 100 ? 101 : int(failed); }

} // namespace parafork::cli

// parafork: run shell filters and jobs in parallel processes (GNU parallel's --pipe and
// basic modes, and procpool-style coprocesses), order kept, failures reported.

#include "modes.hpp"
#include "mpi_run.hpp"
#include "settings.hpp"
#include "splitter.hpp"

#include <parafork/error.hpp>
#include <parafork/exec/core/options.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace {

using namespace parafork::cli;

constexpr const char* examples = R"(Examples:
  # line lengths of a big file, 1 MiB blocks over all CPUs, output in input order
  parafork pipe -- awk '{print length($0)}' < big.txt
  # compress 4 MiB blocks on 2 cores (gzip members concatenate into one valid stream)
  parafork pipe -j2 --block 4M -- gzip -9 < data > data.gz
  # NUL-separated records, outputs as soon as each block is done
  find . -print0 | parafork pipe --null --unordered -- xargs -0 sha1sum
  # one job per line; {} is the line, {.} without extension, {/} basename, {#} job number
  ls *.wav | parafork run -j4 -k --joblog jobs.tsv -- ffmpeg -i {} {.}.flac
  # records from the command line instead of stdin
  parafork run -k -- gzip -9 {} ::: a.log b.log c.log
  # a command that is shell syntax (in any word, or a builtin such as exit) runs through
  # /bin/sh -c, its words joined, each value quoted in it; after -- words are arguments
  parafork run -k 'zcat {} | wc -l' ::: a.gz b.gz
  parafork run -k echo {}\; exit 0 ::: a b
  # every combination of two input sources; a CSV file's columns by name
  parafork run -k echo {1}-{2} ::: a b ::: 1 2
  parafork run -k --colsep , --header : echo {name} is {age} :::: people.csv
  # 4 persistent copies of a filter, each line answered by exactly one output line
  parafork coproc -j4 -- awk '{print toupper($0); fflush()}' < names.txt

Exit status: 0 when every job succeeded; the number of failed jobs (101 for more than
100); 130 after Ctrl-C; 2 for a usage error; 255 for other errors.
Environment: PARAFORK_JOBS (or PP_JOBS) sets the default of -j.
Over MPI ranks: `mpirun -np N parafork run ...` runs the jobs on every rank (-j each), rank 0
writing the output and the joblog (see docs/scale-out.md).)";

constexpr const char* replacement_help = R"(Replacement strings (GNU parallel's):
  {}  the arguments, joined by spaces    {n}  the n-th argument ({-1}: the last)
  {.} {/} {//} {/.}  without extension, basename, dirname, basename without extension
  {n.} {n/} {n//} {n/.}  the same of the n-th argument    {name}  a column, with --header :
  {#} the job number    {%} the job slot (1 to -j)
  With none of them in CMD, the arguments are appended. {= perl expression =} is not
  supported: it is an error (exit status 2).

)";

struct cli_args {
    std::string jobs, timeout, halt, joblog, block = "1M", record_sep, delay;
    bool resume = false, resume_failed = false;
    unsigned retries = 0;
    bool bar = false, progress = false, eta = false, keep_order = false, unordered = false, null_sep = false;
    std::string dashboard;
    // run's input sources
    std::vector<std::string> arg_files;
    std::string delimiter, colsep, header, trim, eof, arg_sep = ":::", arg_file_sep = "::::";
    bool link = false;
    replacement_names names;  // -I and the like rename them
    long max_replace = -1, max_args = -1, max_lines = -1;  // -N, -n, -L; -1: not given
    bool spread = false, spread_context = false, xargs = false;  // -m, -X, --xargs
    bool quote = false;                                          // -q
    bool shuf = false;
    bool tag = false, line_buffer = false, group = false, dry_run = false, verbose_stderr = false;
    int verbose = 0;  // -v, counted (-vv is -v here)
    std::optional<std::string> tagstring;
    std::string results;
    // pipe mode (pipe, or run --pipe / --pipepart)
    bool pipe = false, pipepart = false, regexp = false;
    std::optional<std::string> recend, recstart;
};

// Pipe mode's own options, on `pipe` and (GNU parallel's --pipe, --pipepart) on `run`.
void add_pipe_options(CLI::App* sub, cli_args& a) {
    sub->add_option("--block,--block-size", a.block,
                    "Block size: 1M (the default), 64K, 16M (K M G binary, k m g decimal); --pipepart: -N is N "
                    "blocks per job slot");
    sub->add_option("--recend", a.recend, "A record ends with STR (default \\n; \\n \\t \\0 decoded)")->type_name("STR");
    sub->add_option("--recstart", a.recstart, "A record starts with STR; blocks are cut between --recend and --recstart")
        ->type_name("STR");
    sub->add_flag("--regexp", a.regexp, "--recend and --recstart are regexps (ECMAScript)");
    sub->add_flag("--pipepart,--pipe-part", a.pipepart,
                  "With -a FILE: give each job a part of FILE, found by offset (the file is never read through)");
}

// run's options that take a string, GNU parallel's spelling.
void add_run_options(CLI::App* run, cli_args& a) {
    const struct {
        const char* flags;
        std::string cli_args::*value;
        const char* type;
        const char* help;
    } strings[] = {
        {"-d,--delimiter", &cli_args::delimiter, "DELIM", "Input records end with DELIM (C escapes: \\n, \\t, \\0, \\x1e)"},
        {"-C,--colsep", &cli_args::colsep, "REGEXP", "Split each input record at REGEXP (ECMAScript) into {1} {2} ..."},
        {"--header", &cli_args::header, ":", "':': the first value of each input source names its columns: {name}"},
        {"--trim", &cli_args::trim, "n|l|r|lr", "Trim blanks around each value: n, l, r, lr (default lr with --colsep, else n)"},
        {"-E", &cli_args::eof, "EOF_STR", "A value equal to EOF_STR ends its input source"},
        {"--arg-sep", &cli_args::arg_sep, "SEP", "Use SEP instead of ::: (and SEP+ instead of :::+)"},
        {"--arg-file-sep", &cli_args::arg_file_sep, "SEP", "Use SEP instead of :::: (and SEP+ instead of ::::+)"},
    };
    for (auto& o : strings) run->add_option(o.flags, a.*o.value, o.help)->type_name(o.type);
    run->add_option("-a,--arg-file", a.arg_files, "An input source: FILE's records (- is stdin); repeatable")
        ->allow_extra_args(false)
        ->type_name("FILE");
    run->add_flag("--link,--xapply", a.link, "Input sources advance together, the shorter ones wrapping around");
    run->add_option("-N,--max-replace-args", a.max_replace, "N values per job; {} repeated per value, {1}..{N}")
        ->type_name("N");
    run->add_option("-n,--max-args", a.max_args, "N values per job; {} is all of them")->type_name("N");
    run->add_option("-L,--max-lines", a.max_lines,
                    "N input lines per job, as -N; a line ending in a blank goes on with the next")
        ->type_name("N");
    run->add_flag("-m", a.spread, "As many values per job as a line holds, the last ones divided among the job slots (as -n)");
    run->add_flag("-X", a.spread_context, "As -m, the values placed as with -N");
    run->add_flag("--xargs", a.xargs, "As many values per job as a command line holds (62 KiB)");
    run->add_flag("-q,--quote", a.quote, "Never run CMD through /bin/sh, whatever it holds");
    run->add_flag("--shuf", a.shuf, "Make every job first (all input read), then run them in random order");
    run->add_flag("--tag", a.tag, "Put the job's values and a tab before each line of its output");
    run->add_option("--tagstring", a.tagstring, "Put STR (replacement strings filled in) and a tab before each line")
        ->type_name("STR");
    run->add_flag("--line-buffer,--lb", a.line_buffer, "Write each job's output a line at a time, as it comes");
    run->add_flag("--group", a.group, "Write each job's output whole when it is done (the default)");
    run->add_flag("--dry-run,--dryrun", a.dry_run, "Print each job's command instead of running it");
    run->add_flag("-v", a.verbose, "Print each job's command on stdout, before its output (GNU parallel's -v)");
    run->add_flag("-t,--verbose", a.verbose_stderr, "Print each job's command on stderr as it starts");
    run->add_option("--results,--res", a.results,
                    "Each job's stdout, stderr and number in files under DIR (GNU parallel's layout), not on ours")
        ->type_name("DIR");
    // GNU parallel's options that rename a replacement string ("-I ,," makes ",," mean {}).
    const struct {
        const char* flags;
        replacement what;
    } renames[] = {
        {"-I", replacement::all},
        {"--er,--extensionreplace", replacement::no_ext},
        {"--bnr,--basenamereplace", replacement::basename},
        {"--dnr,--dirnamereplace", replacement::dirname},
        {"--bner,--basenameextensionreplace", replacement::basename_no_ext},
        {"--seqreplace", replacement::seq},
        {"--slotreplace", replacement::slot},
    };
    for (auto& r : renames)
        run->add_option(r.flags, a.names[r.what], "Use STR instead of " + a.names[r.what])->type_name("STR");
}

// How many values a job of run takes: one, or -N, -n, -m, -X, --xargs (one of them).
batching batching_from(const cli_args& a) {
    // -N, -n or -L with -m, -X or --xargs caps the values a job of theirs takes, as in GNU parallel.
    if (int(a.max_replace >= 0) + int(a.max_args >= 0) + int(a.max_lines >= 0) > 1 ||
        int(a.spread) + int(a.spread_context) + int(a.xargs) > 1)
        throw std::invalid_argument("give one of -N, -n and -L, and one of -m, -X and --xargs");
    batching b;
    for (auto [given, flag] : {std::pair{a.max_replace, "-N"}, std::pair{a.max_args, "-n"}, std::pair{a.max_lines, "-L"}})
        if (given == 0)
            throw std::invalid_argument(std::string(flag) + " 0: a job takes at least one value (GNU parallel's " + flag +
                                        " 0, a job per value without the value, is not supported)");
    if (a.max_replace > 0) b.max_args = std::size_t(a.max_replace);
    if (a.max_lines > 0) b.max_args = std::size_t(a.max_lines);
    if (a.max_args > 0) b.max_args = std::size_t(a.max_args);
    b.by_bytes = a.spread || a.spread_context || a.xargs;
    if (b.by_bytes && a.max_replace < 0 && a.max_args < 0 && a.max_lines < 0) b.max_args = 0;
    b.context_replace = a.max_replace > 0 || a.max_lines > 0 || a.spread_context;
    b.spread = a.spread || a.spread_context;
    return b;
}

// run's input settings from its options and the sources after the command.
input_settings input_from(const cli_args& a, std::vector<std::string>& command) {
    input_settings in;
    in.sources = take_input_sources(command, a.arg_sep, a.arg_file_sep);
    std::vector<input_source> files;
    for (auto& f : a.arg_files) files.push_back(input_source::file(f));
    in.sources.insert(in.sources.begin(), files.begin(), files.end());  // -a first, as GNU parallel
    if (int(a.null_sep) + int(!a.record_sep.empty()) + int(!a.delimiter.empty()) > 1)
        throw std::invalid_argument("give one of -0, -d and --record-sep");
    if (a.null_sep) in.delimiter = std::string(1, '\0');
    else if (!a.record_sep.empty()) in.delimiter = std::string(1, parse_separator(a.record_sep));
    else if (!a.delimiter.empty()) in.delimiter = decode_escapes(a.delimiter);
    if (in.delimiter.empty()) throw std::invalid_argument("the delimiter is empty");
    if (!a.colsep.empty()) {
        try {
            in.colsep.emplace(a.colsep, std::regex::ECMAScript | std::regex::optimize);
        } catch (const std::regex_error& e) {
            throw std::invalid_argument("bad --colsep regexp '" + a.colsep + "': " + e.what());
        }
    }
    if (!a.header.empty() && a.header != ":")
        throw std::invalid_argument("--header takes ':' (the first value names the columns), not '" + a.header + "'");
    in.header = !a.header.empty();
    std::string trim = a.trim.empty() ? (in.colsep ? "lr" : "n") : a.trim;
    if (trim != "n" && trim != "l" && trim != "r" && trim != "lr" && trim != "rl")
        throw std::invalid_argument("--trim takes n, l, r, lr or rl, not '" + trim + "'");
    in.trim_left = trim.find('l') != std::string::npos;
    in.trim_right = trim.find('r') != std::string::npos;
    if (!a.eof.empty()) in.eof = a.eof;
    in.link = a.link;
    in.continue_lines = a.max_lines > 0;
    return in;
}

// Pipe mode's settings: where blocks end, the header, records per job, --pipepart's file.
pipe_settings pipe_from(const cli_args& a, bool pipe_command) {
    pipe_settings p;
    char sep = a.null_sep ? '\0' : !a.record_sep.empty() ? parse_separator(a.record_sep) : '\n';
    p.regexp = a.regexp;
    auto decoded = [&](const std::string& text) { return a.regexp ? text : decode_escapes(text); };
    // As GNU parallel: --recstart alone leaves no record end, and -0/--record-sep are --recend.
    p.recend = a.recend ? decoded(*a.recend) : a.recstart ? std::string() : std::string(1, sep);
    if (a.recstart) p.recstart = decoded(*a.recstart);
    if ((a.recend || a.recstart) && (a.null_sep || !a.record_sep.empty()))
        throw std::invalid_argument("give --recend/--recstart or -0/--record-sep, not both");
    splitter(p.recend, p.recstart, p.regexp);  // a bad regexp is a usage error, found now
    if (!a.header.empty()) {
        p.header = a.header;
        if (a.header.find_first_not_of("0123456789") != std::string::npos && a.header != ":") {
            try {
                std::regex(a.header, std::regex::ECMAScript);
            } catch (const std::regex_error& e) {
                throw std::invalid_argument("bad --header regexp '" + a.header + "': " + e.what());
            }
        }
    }
    if (a.max_replace == 0) throw std::invalid_argument("-N 0: a job takes at least one record");
    // Options of run's jobs that mean something else with --pipe: refused, not silently ignored.
    for (auto [given, flag] : {std::pair{a.max_lines >= 0, "-L (records of N lines)"}, std::pair{a.max_args >= 0, "-n"},
                               std::pair{a.spread, "-m"}, std::pair{a.spread_context, "-X"}, std::pair{a.xargs, "--xargs"}})
        if (given) throw std::invalid_argument(std::string(flag) + " is not supported with --pipe (use -N or --block)");
    if (a.max_replace > 0) p.records = std::size_t(a.max_replace);
    bool part = a.pipepart || (pipe_command && !a.arg_files.empty());
    if (part) {
        if (a.arg_files.size() != 1 || a.arg_files[0] == "-")
            throw std::invalid_argument("--pipepart takes one seekable file, given with -a FILE");
        if (p.records) throw std::invalid_argument("-N does not work with --pipepart (use --block)");
        p.part_file = a.arg_files[0];
    } else if (!a.arg_files.empty()) {
        throw std::invalid_argument("-a FILE with --pipe: use --pipepart, or give the file on stdin");
    }
    if (!a.block.empty() && a.block[0] == '-') {
        if (!part) throw std::invalid_argument("a negative --block (blocks per job slot) is for --pipepart only");
        p.blocks_per_slot = parse_size(std::string_view(a.block).substr(1));
    }
    return p;
}

void add_common(CLI::App* sub, cli_args& a, bool pipe_like) {
    sub->add_option("-j,--jobs", a.jobs,
                    "Jobs in parallel: N, +N or -N (more or fewer than the default), N% (of the default); "
                    "default: PARAFORK_JOBS, PP_JOBS, or the CPUs")
        ->type_name("N");
    sub->add_option("--timeout", a.timeout,
                    "Per-job time limit: 10, 1.5s, 250ms, 2m, or N% of the median runtime of the jobs that "
                    "succeeded so far (SIGTERM, then SIGKILL)")
        ->type_name("DURATION");
    sub->add_option("--halt,--halt-on-error", a.halt,
                    "When to stop: now or soon (on the first failure), or now|soon,fail|success|done=N[%]")
        ->type_name("WHEN");
    sub->add_flag("--bar", a.bar, "GNU parallel's progress bar on stderr (run reads all input first)");
    sub->add_flag("--progress", a.progress, "GNU parallel's progress line on stderr");
    sub->add_flag("--eta", a.eta, "--progress with the estimated time left (run reads all input first)");
    sub->add_option("--joblog", a.joblog, "Write one line per job (GNU parallel's columns) to FILE");
    sub->add_option("--dashboard", a.dashboard,
                    "Serve the live dashboard (the jobs: running, done, failed, each one's pid) at ADDR: "
                    "HOST:PORT, or PORT on loopback; default: PARAFORK_DASHBOARD")
        ->type_name("ADDR");
    sub->add_flag("-k,--keep-order", a.keep_order, pipe_like ? "Outputs in input order (the default)" : "Outputs in input order");
    sub->add_flag("-u,--unordered", a.unordered, "Outputs as jobs finish");
    sub->add_flag("-0,--null", a.null_sep, "Records end with NUL instead of newline");
    sub->add_option("--record-sep", a.record_sep, "Record separator: one character, \\n, \\t, \\0 or 0x1e");
    if (pipe_like || sub->get_name() == "run") {
        sub->add_option("--retries", a.retries, "Run a failed job up to N times in all; only the last run's output is kept")
            ->type_name("N");
        sub->add_option("--delay", a.delay, "Wait DURATION between two job starts: 0.5, 250ms, 1m")->type_name("DURATION");
        sub->add_flag("--resume", a.resume, "With --joblog: skip the jobs the joblog shows done; add to it");
        sub->add_flag("--resume-failed", a.resume_failed,
                      "With --joblog: skip the jobs the joblog shows succeeded, run the rest again; add to it");
    }
    sub->prefix_command();  // CMD's own options are CMD's, even without "--"
    sub->footer(examples);
}

} // namespace

int main(int argc, char** argv) {
    // Invoked as `parallel` (the symlink the install makes on request), the command line is
    // GNU parallel's: `parallel ARGS` is `parafork run ARGS`.
    std::vector<char*> args(argv, argv + argc);
    if (argc > 0) {
        std::string_view self = argv[0];
        if (auto slash = self.rfind('/'); slash != std::string_view::npos) self.remove_prefix(slash + 1);
        if (self == "parallel") {
            static char run_word[] = "run";
            args.insert(args.begin() + 1, run_word);
            argc = static_cast<int>(args.size());
            argv = args.data();
        }
    }
    // Everything after the first "--" is the command, given to it untouched.
    std::vector<std::string> command;
    int own_argc = argc;
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--") == 0) {
            own_argc = i;
            command.assign(argv + i + 1, argv + argc);
            break;
        }

    CLI::App app{"parafork: run shell filters and jobs in parallel processes, order kept, failures reported.",
                 "parafork"};
    app.footer(examples);
    app.require_subcommand(1);
    app.allow_extras(false);
    cli_args a;
    auto* pipe = app.add_subcommand(
        "pipe", "Cut stdin into blocks at record boundaries and run a fresh CMD on each block (GNU parallel --pipe)");
    add_common(pipe, a, true);
    add_pipe_options(pipe, a);
    pipe->add_option("-N,--max-replace-args", a.max_replace, "N records per job (--block is then ignored)")->type_name("N");
    pipe->add_option("--header", a.header, "A header matched at the start (a regexp; ':' is one line; N: N lines), put before each block")
        ->type_name("REGEXP");
    pipe->add_option("-a,--arg-file", a.arg_files, "Cut FILE (seekable) by offset instead of reading stdin: --pipepart")
        ->allow_extra_args(false)
        ->type_name("FILE");
    auto* run = app.add_subcommand("run", "Run CMD once per input line with {} replaced by the line (or appended)");
    add_common(run, a, false);
    add_run_options(run, a);
    add_pipe_options(run, a);
    run->add_flag("--pipe,--spreadstdin", a.pipe, "Pipe mode, as parafork pipe: cut stdin into blocks, a job per block");
    bool will_cite = false;
    run->add_flag("--will-cite", will_cite, "Accepted and ignored (GNU parallel's)");
    run->footer(std::string(replacement_help) + examples);
    auto* coproc = app.add_subcommand(
        "coproc", "N persistent copies of CMD; each record goes to one copy, which answers exactly one record");
    add_common(coproc, a, false);

    try {
        app.parse(own_argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return exit_usage;
    }
    CLI::App* sub = pipe->parsed() ? pipe : run->parsed() ? run : coproc;
    // prefix_command() passes an unknown option on as the command's name: refuse it instead
    // of running a program called "--link". After "--", the command may be anything.
    if (auto rest = sub->remaining(); !rest.empty()) {
        const std::string& first = rest.front();
        if (first.size() > 1 && first[0] == '-') {
            std::fprintf(stderr, "parafork %s: unknown option %s (use -- before a command that starts with -)\n",
                         sub->get_name().c_str(), first.c_str());
            return exit_usage;
        }
    }
    if (command.empty()) command = sub->remaining();
    else if (!sub->remaining().empty()) {
        std::fprintf(stderr, "parafork: unexpected arguments before \"--\": %s\n", sub->remaining().front().c_str());
        return exit_usage;
    }
    // run without a command (GNU parallel's "parallel < jobs"): each input line is one.
    const bool lines_are_commands = sub == run && !a.pipe && !a.pipepart;
    if (command.empty() && !lines_are_commands) {
        std::fprintf(stderr, "parafork %s: no command given (parafork %s [OPTIONS] -- CMD [ARGS...])\n",
                     sub->get_name().c_str(), sub->get_name().c_str());
        return exit_usage;
    }

    if ((a.resume || a.resume_failed) && a.joblog.empty()) {
        // GNU parallel's status for it, so scripts that test for it keep working.
        std::fprintf(stderr, "parafork %s: --resume and --resume-failed need --joblog FILE\n", sub->get_name().c_str());
        return exit_internal;
    }

    settings s;
    try {
        // run: "CMD ARGS ::: A B :::: FILE" takes its records from the command line, as GNU parallel.
        const bool pipe_mode = sub == pipe || a.pipe || a.pipepart;
        if (pipe_mode) {
            s.pipe = pipe_from(a, sub == pipe);
            if (!take_input_sources(command, a.arg_sep, a.arg_file_sep).empty())
                throw std::invalid_argument("::: and :::: input sources are for run only, and not with --pipe");
        } else if (sub == run) {
            s.input = input_from(a, command);
            s.batch = batching_from(a);
        }
        s.names = a.names;
        s.no_shell = a.quote;
        s.words_are_args = own_argc < argc;
        if (a.line_buffer && a.group) throw std::invalid_argument("--line-buffer and --group contradict each other");
        s.tag = a.tag;
        s.tagstring = a.tagstring;
        s.line_buffer = a.line_buffer;
        s.dry_run = a.dry_run;
        s.verbose = a.verbose > 0;
        s.verbose_stderr = a.verbose_stderr;
        if (!a.results.empty() && a.line_buffer)
            throw std::invalid_argument("--results and --line-buffer contradict each other");
        s.results = a.results;
        while (s.results.size() > 1 && s.results.back() == '/') s.results.pop_back();
        for (auto& name : s.names.text)
            if (name.empty()) throw std::invalid_argument("a replacement string cannot be empty");
        if (sub == coproc && !take_input_sources(command, ":::", "::::").empty())
            throw std::invalid_argument("::: and :::: input sources are for run only");
        if (command.empty() && !lines_are_commands) throw std::invalid_argument("no command before the input sources");
        s.values_are_commands = command.empty();
        if (command.empty()) command.push_back(s.names[replacement::all]);
        s.command = std::move(command);
        s.jobs = a.jobs.empty() ? parafork::default_jobs() : parse_jobs(a.jobs, parafork::default_jobs());
        if (!a.timeout.empty() && a.timeout.back() == '%') s.timeout_percent = parse_percent(a.timeout, "--timeout");
        else if (!a.timeout.empty()) s.timeout = parse_duration(a.timeout);
        s.shuffle = a.shuf;
        if (sub == coproc && s.timeout_percent > 0) throw std::invalid_argument("--timeout N% is for run and pipe");
        if (!a.halt.empty()) s.halt = parse_halt(a.halt);
        if (!a.delay.empty()) s.delay = parse_duration(a.delay);
        s.retries = a.retries;
        s.bar = a.bar;
        s.progress = a.progress;
        s.eta = a.eta;
        s.joblog = a.joblog;
        s.dashboard = a.dashboard;
        s.mode = sub->get_name();
        s.resume = a.resume;
        s.resume_failed = a.resume_failed;
        if (a.keep_order && a.unordered) throw std::invalid_argument("-k and --unordered contradict each other");
        s.ordered = sub == run ? a.keep_order : !a.unordered;
        if (a.null_sep && !a.record_sep.empty()) throw std::invalid_argument("--null and --record-sep contradict each other");
        if (a.null_sep) s.record_sep = '\0';
        else if (!a.record_sep.empty()) s.record_sep = parse_separator(a.record_sep);
        if (a.block.empty() || a.block[0] != '-') s.block_size = parse_size(a.block);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parafork %s: %s\n", sub->get_name().c_str(), e.what());
        return exit_usage;
    }

    try {
        // Under mpirun (or srun) with several ranks: run's jobs go over all of them.
        if (under_mpi_launcher()) {
            if (sub == run && !a.pipe && !a.pipepart) return run_each_mpi(s);
            if (launcher_rank() == 0)
                std::fprintf(stderr, "parafork %s: over MPI ranks only `parafork run` without --pipe and --pipepart "
                                     "is supported (jobs that read blocks of our stdin stay on one machine)\n",
                             sub->get_name().c_str());
            return exit_usage;
        }
        if (sub == pipe || a.pipe || a.pipepart) return run_pipe(s);
        if (sub == run) return run_each(s);
        return run_coproc(s);
    } catch (const usage_error& e) {
        std::fprintf(stderr, "parafork %s: %s\n", sub->get_name().c_str(), e.what());
        return exit_usage;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parafork %s: %s\n", sub->get_name().c_str(), e.what());
        return exit_internal;
    }
}

// `parafork run` over MPI ranks. Rank 0 runs the engine as on one machine, with the other
// ranks as seats it hands jobs to (a remote_runner): each rank says how many jobs it runs at
// once (its -j), and holds at most twice that many, so a slow host gets fewer. A job goes out
// as its command line; it comes back as its exit status, times, stdout and stderr, and rank 0
// writes it out as it would a job of its own. The other ranks run an engine too, fed by a
// job_source that reads rank 0's messages, and write nothing themselves.
#include "mpi_run.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#ifdef PARAFORK_CLI_MPI
#include "engine.hpp"
#include "sources.hpp"

#include <parafork/error.hpp>
#include <parafork/mpi/world.hpp>
#include "mpi/frames.hpp"  // the frames and tags of parafork::mpi (src/)
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <deque>
#include <fcntl.h>
#include <functional>
#include <poll.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>
#endif

namespace parafork::cli {

namespace {
int env_int(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : -1;
}
} // namespace

bool under_mpi_launcher() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
        if (env_int(v) > 1) return true;
    // srun with PMIx names the rank only; the step's task count is Slurm's.
    if (std::getenv("PMIX_RANK"))
        for (const char* v : {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"})
            if (env_int(v) > 1) return true;
    return false;
}

int launcher_rank() {
    for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"})
        if (int r = env_int(v); r >= 0) return r;
    return 0;
}

#ifndef PARAFORK_CLI_MPI

int run_each_mpi(const settings&) {
    if (launcher_rank() == 0)
        std::fprintf(stderr, "started by an MPI launcher with several ranks, but this build of "
                             "parafork has no MPI support (build it with Open MPI installed); run it "
                             "without mpirun to use this machine alone\n");
    return exit_usage;
}

#else

namespace {

using parafork::mpi::detail::put;
using parafork::mpi::detail::put_str;
using parafork::mpi::detail::tag_cli_end;
using parafork::mpi::detail::tag_cli_job;
using parafork::mpi::detail::tag_cli_ready;
using parafork::mpi::detail::tag_cli_result;

// Reads a message's fields; a byte short, or one left over, is a protocol_error.
class cursor : public parafork::mpi::detail::cursor {
public:
    using parafork::mpi::detail::cursor::cursor;
    void end() const {
        if (!done()) throw protocol_error("a message from another rank with bytes left over");
    }
};

// A hash of this process's command line: every rank must run the same one, or -j, --timeout
// and the rest would mean different things on different ranks (mpirun's MPMD form, A : B).
std::uint64_t command_line_hash() {
    std::string line;
    auto fd = sys::open_file("/proc/self/cmdline", O_RDONLY);
    if (!fd) sys::throw_errno("open /proc/self/cmdline");
    char buf[1 << 16];
    for (long n; (n = sys::read_some(fd.get(), buf, sizeof buf)) > 0;) line.append(buf, static_cast<std::size_t>(n));
    return std::hash<std::string>{}(line);
}

std::string where(const mpi::world& w, int rank) { return "rank " + std::to_string(rank) + " on " + w.host(rank); }
std::string host_column(const mpi::world& w, int rank) { return w.host(rank) + ":" + std::to_string(rank); }

std::string departure(const mpi::world& w, int rank) {
    const auto& d = w.departed(rank);
    return d.signal ? "killed by signal " + std::to_string(d.signal) : "exit code " + std::to_string(d.code);
}

// Waits for the MPI process's socket (or its death): then receive_ready() has something.
void wait_socket(mpi::world& w) {
    pollfd fds[2] = {{w.socket_fd(), POLLIN, 0}, {w.mpi_process_fd(), POLLIN, 0}};
    sys::poll_fds(fds, 2, -1);
}

// Rank 0's seats on the other ranks.
class rank_seats final : public remote_runner {
public:
    // Waits until every other rank has said how many jobs it runs at once.
    explicit rank_seats(mpi::world& w) : w_(w), ranks_(static_cast<std::size_t>(w.size())) {
        try {
            wait_ready();
        } catch (...) {
            end(true);  // the others end quietly: the error is said once, here
            throw;
        }
    }
    ~rank_seats() override { end(false); }

    void wait_ready() {
        int waiting = w_.size() - 1;
        mpi::world::frame f;
        while (waiting > 0) {
            w_.receive_ready();
            while (w_.next(f)) {
                if (f.tag != tag_cli_ready) throw protocol_error("rank 0 got a message it does not take");
                if (f.peer <= 0 || f.peer >= w_.size()) throw protocol_error("a message from no rank of the run");
                cursor c(f.body);
                const auto jobs = c.get<std::uint32_t>();
                const auto line = c.get<std::uint64_t>();
                c.end();
                if (line != command_line_hash())
                    throw mpi::bad_launch(where(w_, f.peer) + " runs another command line than rank 0: every rank "
                                          "must run the same `parafork run ...`");
                auto& r = ranks_[static_cast<std::size_t>(f.peer)];
                if (f.peer == 0 || r.window != 0 || jobs == 0 || jobs > 1u << 16)
                    throw protocol_error("a rank said twice, or nonsense, how many jobs it runs");
                r.window = 2 * std::size_t{jobs};
                r.base = owner_.size();
                owner_.resize(owner_.size() + r.window, f.peer);
                busy_.resize(owner_.size(), false);
                --waiting;
            }
            check_departures();
            if (waiting > 0) wait_socket(w_);
        }
    }

    int fd() const override { return w_.socket_fd(); }
    std::size_t capacity() const override { return owner_.size(); }

    // A seat of the rank with the most free ones: the jobs spread while there are few.
    std::optional<std::size_t> free_seat() const override {
        int best = -1;
        std::size_t most = 0;
        for (std::size_t k = 1; k < ranks_.size(); ++k) {
            const auto& r = ranks_[k];
            if (r.told || r.window - r.held <= most) continue;
            most = r.window - r.held;
            best = static_cast<int>(k);
        }
        if (best < 0) return std::nullopt;
        const auto& r = ranks_[static_cast<std::size_t>(best)];
        for (std::size_t s = r.base; s < r.base + r.window; ++s)
            if (!busy_[s]) return s;
        return std::nullopt;
    }

    void start(std::size_t seat, std::size_t id, const job_spec& spec) override {
        const int rank = owner_.at(seat);
        msg_.clear();
        put(msg_, static_cast<std::uint64_t>(id));
        put(msg_, static_cast<std::uint32_t>(spec.argv.size()));
        for (const auto& a : spec.argv) put_str(msg_, a);
        w_.send(rank, tag_cli_job, msg_);
        busy_[seat] = true;
        ++ranks_[static_cast<std::size_t>(rank)].held;
        seat_of_[id] = seat;
    }

    void collect(std::vector<remote_outcome>& out) override {
        w_.receive_ready();
        mpi::world::frame f;
        while (w_.next(f)) {
            if (f.tag != tag_cli_result) throw protocol_error("rank 0 got a message it does not take");
            cursor c(f.body);
            remote_outcome o;
            o.id = static_cast<std::size_t>(c.get<std::uint64_t>());
            o.code = c.get<std::int32_t>();
            o.signal = c.get<std::int32_t>();
            o.timed_out = c.get<std::uint8_t>() != 0;
            o.start_epoch = c.get<double>();
            o.runtime = c.get<double>();
            o.spawn_error = c.str();
            o.out = c.str();
            o.err = c.str();
            c.end();
            // Times feed --joblog and --timeout's median: a number that is not one is a bad message.
            if (!std::isfinite(o.start_epoch) || !std::isfinite(o.runtime) || o.runtime < 0 || o.runtime > 1e9)
                throw protocol_error(where(w_, f.peer) + " answered a job with a time that is not one");
            auto it = seat_of_.find(o.id);
            if (it == seat_of_.end() || owner_[it->second] != f.peer)
                throw protocol_error(where(w_, f.peer) + " answered a job it was not given");
            busy_[it->second] = false;
            --ranks_[static_cast<std::size_t>(f.peer)].held;
            seat_of_.erase(it);
            o.host = host_column(w_, f.peer);
            out.push_back(std::move(o));
        }
        check_departures();
    }

    void stop() noexcept override { end(true); }

    // Tells every rank the run is over (stop: with its jobs stopped), once.
    void end(bool stop) noexcept {
        std::string body;
        put(body, static_cast<std::uint8_t>(stop));
        for (std::size_t k = 1; k < ranks_.size(); ++k) {
            auto& r = ranks_[k];
            if (r.told || w_.gone(static_cast<int>(k))) continue;
            r.told = true;
            try {
                w_.send(static_cast<int>(k), tag_cli_end, body);
            } catch (...) {  // our MPI process is gone: nobody to tell
            }
        }
    }

private:
    // A rank that ended before it was told to: the run cannot go on (its jobs are lost).
    void check_departures() {
        for (std::size_t k = 1; k < ranks_.size(); ++k) {
            const int rank = static_cast<int>(k);
            if (!w_.gone(rank) || ranks_[k].told) continue;
            ranks_[k].told = true;
            throw error("the program of " + where(w_, rank) + " ended during the run (" +
                        departure(w_, rank) + ") holding " + std::to_string(ranks_[k].held) + " job(s)");
        }
    }

    struct rank_state {
        std::size_t window = 0, base = 0, held = 0;
        bool told = false;  // sent the end (or gone)
    };
    mpi::world& w_;
    std::vector<rank_state> ranks_;
    std::vector<int> owner_;   // by seat: its rank
    std::vector<bool> busy_;   // by seat
    std::unordered_map<std::size_t, std::size_t> seat_of_;  // job id -> seat
    std::string msg_;
};

// Rank 0 ended the run with its jobs to stop (--halt now, Ctrl-C, an error there).
struct stop_requested {};

// Another rank's jobs: as rank 0 sends them.
class rank_jobs final : public job_source {
public:
    explicit rank_jobs(mpi::world& w) : w_(w) {}
    int input_fd() const override { return w_.socket_fd(); }
    bool wants_input() const override { return !ended_; }
    void read_input() override {
        w_.receive_ready();
        mpi::world::frame f;
        while (w_.next(f)) {
            if (f.peer != 0) throw protocol_error("a message from a rank other than 0");
            cursor c(f.body);
            if (f.tag == tag_cli_job) {
                const auto id = c.get<std::uint64_t>();
                const auto argc = c.get<std::uint32_t>();
                job_spec spec;
                for (std::uint32_t k = 0; k < argc; ++k) spec.argv.emplace_back(c.str());
                c.end();
                if (spec.argv.empty()) throw protocol_error("a job with no command from rank 0");
                spec.what = "job " + std::to_string(id);
                ready_.emplace_back(id, std::move(spec));
            } else if (f.tag == tag_cli_end) {
                const bool stop = c.get<std::uint8_t>() != 0;
                c.end();
                if (stop) throw stop_requested{};
                ended_ = true;
            } else {
                throw protocol_error("a message a rank does not take");
            }
        }
        if (w_.gone(0) && !ended_)
            throw error("the program of " + where(w_, 0) + " ended during the run (" + departure(w_, 0) +
                        ")");
    }
    std::optional<job_spec> take(std::size_t) override {
        if (ready_.empty()) return std::nullopt;
        auto [id, spec] = std::move(ready_.front());
        ready_.pop_front();
        ids_[++taken_] = id;  // the engine numbers what it takes 1, 2, ...
        return std::move(spec);
    }
    bool exhausted() const override { return ended_ && ready_.empty(); }
    std::size_t bytes_read() const override { return 0; }
    std::optional<std::size_t> bytes_total() const override { return std::nullopt; }

    void say_ready(unsigned jobs) {
        std::string body;
        put(body, static_cast<std::uint32_t>(jobs));
        put(body, command_line_hash());
        w_.send(0, tag_cli_ready, body);
    }

    void report(const finished_job& j) {
        auto it = ids_.find(j.seq);
        if (it == ids_.end()) throw error("a job finished that was not taken");
        msg_.clear();
        put(msg_, static_cast<std::uint64_t>(it->second));
        ids_.erase(it);
        // A job's output goes back in its one message. One too big for it fails the job, not
        // the run: no output, and on stderr the reason (a job that exited 0 then counts as
        // failed, with 1). On one machine it would be written whole.
        const std::size_t max_output = output_limit();
        const bool too_big = j.out_size + j.err_size > max_output;
        put(msg_, static_cast<std::int32_t>(too_big && j.code == 0 && j.signal == 0 ? 1 : j.code));
        put(msg_, static_cast<std::int32_t>(j.signal));
        put(msg_, static_cast<std::uint8_t>(j.timed_out));
        put(msg_, j.start_epoch);
        put(msg_, j.runtime);
        put_str(msg_, j.spawn_error);
        if (too_big) {
            append_file(-1, 0);
            put_str(msg_, "parafork: this job's output (" + std::to_string(j.out_size) + " bytes on stdout, " +
                              std::to_string(j.err_size) + " on stderr) is over the " +
                              std::to_string(max_output) + " bytes a job may send back from another rank; it ended with " +
                              sys::exit_status{j.code, j.signal}.describe() + "\n");
        } else {
            append_file(j.out_fd, j.out_size);
            append_file(j.err_fd, j.err_size);
        }
        w_.send(0, tag_cli_result, msg_);
    }
    // 512 MiB, or PARAFORK_RANK_OUTPUT_MAX bytes.
    static std::size_t output_limit() {
        static const std::size_t limit = [] {
            const char* v = std::getenv("PARAFORK_RANK_OUTPUT_MAX");
            char* end = nullptr;
            unsigned long long n = v && *v ? std::strtoull(v, &end, 10) : 0;
            return v && *v && end && !*end && n > 0 && n <= (1ull << 29) ? static_cast<std::size_t>(n) : std::size_t{512} << 20;
        }();
        return limit;
    }

private:
    // A memory file's first `size` bytes, length first.
    void append_file(int fd, std::size_t size) {
        if (fd < 0) size = 0;
        put(msg_, static_cast<std::uint32_t>(size));
        const std::size_t at = msg_.size();
        msg_.resize(at + size);
        std::size_t done = 0;
        while (done < size) {
            long n = ::pread(fd, msg_.data() + at + done, size - done, static_cast<off_t>(done));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) sys::throw_errno("read a job's output");
            if (n == 0) throw error("a job's output got shorter");
            done += static_cast<std::size_t>(n);
        }
    }

    mpi::world& w_;
    std::deque<std::pair<std::uint64_t, job_spec>> ready_;
    std::unordered_map<std::size_t, std::uint64_t> ids_;  // the engine's number -> rank 0's
    std::size_t taken_ = 0;
    bool ended_ = false;
    std::string msg_;
};

} // namespace

// The launcher's variables that say "this process is a rank": a job is not one, so a
// `parafork run` or an MPI program started by a job must not think it is. What the user set
// for Open MPI stays (OMPI_MCA_ settings, OMPI_ALLOW_RUN_AS_ROOT); the ones mpirun sets to
// place a rank in its job go (OMPI_MCA_ess*, orte_*, pmix*, and the other OMPI_, PMIX_, PMI_).
bool launcher_variable(std::string_view name) {
    if (name.starts_with("PMIX_") || name.starts_with("PMI_")) return true;
    if (!name.starts_with("OMPI_") || name.starts_with("OMPI_ALLOW_RUN_AS_ROOT")) return false;
    if (!name.starts_with("OMPI_MCA_")) return true;
    auto mca = name.substr(9);
    return mca.starts_with("ess") || mca.starts_with("orte_") || mca.starts_with("pmix") ||
           mca == "initial_wdir" || mca.starts_with("shmem_RUNTIME_QUERY_hint");
}

void forget_launcher() {
    std::vector<std::string> names;
    for (char** e = environ; *e; ++e) {
        std::string_view v(*e);
        auto eq = v.find('=');
        if (eq != std::string_view::npos && launcher_variable(v.substr(0, eq))) names.emplace_back(v.substr(0, eq));
    }
    for (const auto& n : names) ::unsetenv(n.c_str());
}

int run_each_mpi(const settings& s) {
    mpi::world& w = mpi::init();
    forget_launcher();
    // The jobs can tell where they run (and the tests which rank ran what).
    ::setenv("PARAFORK_RANK", std::to_string(w.rank()).c_str(), 1);
    ::setenv("PARAFORK_RANKS", std::to_string(w.size()).c_str(), 1);
    if (w.root()) {
        // Rank 0 reads the input and makes the jobs; a command that cannot start anywhere
        // would fail for every job, as on one machine.
        rank_seats seats(w);  // first: an error after it still tells the others to end
        arg_source src(s);
        engine_options o;
        o.spawn_failure_is_fatal = true;
        o.remote = &seats;
        o.host = host_column(w, 0);
        const int status = run_jobs(src, s, o);
        seats.end(false);
        return status;
    }
    // The others run what rank 0 sends, as it comes, and report each job as it ends. What
    // shapes the output, the joblog, --halt, --delay and --resume are rank 0's.
    settings mine = s;
    mine.ordered = false;
    mine.halt = {};
    mine.bar = mine.progress = mine.eta = false;
    mine.joblog.clear();
    mine.resume = mine.resume_failed = false;
    mine.delay = {};
    mine.line_buffer = false;
    mine.verbose = mine.verbose_stderr = false;
    mine.dry_run = false;
    mine.results.clear();
    mine.dashboard.clear();
    ::unsetenv("PARAFORK_DASHBOARD");  // the run's dashboard is rank 0's
    rank_jobs src(w);
    src.say_ready(mine.jobs);
    engine_options o;
    o.report = [&](const finished_job& j) { src.report(j); };
    try {
        // Nonzero when this rank stopped on its own (Ctrl-C sent to every rank): rank 0 names
        // it with that status.
        const int status = run_jobs(src, mine, o);
        return status == exit_interrupted ? status : 0;
    } catch (const stop_requested&) {
        // rank 0 ended the run: the engine stopped our jobs on the way out
    }
    return 0;
}

#endif

} // namespace parafork::cli

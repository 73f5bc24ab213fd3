#include "engine.hpp"
#include "joblog.hpp"
#include "launch.hpp"
#include "output.hpp"
#include "progress.hpp"

#include <dashboard/hub.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <poll.h>
#include <set>
#include <unordered_map>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <system_error>
#include <unistd.h>

namespace parafork::cli {
namespace {

using clock = std::chrono::steady_clock;
namespace dash = parafork::detail::dash;


std::string join_command(const std::vector<std::string>& argv) {
    std::string s;
    for (auto& a : argv) {
        if (!s.empty()) s += ' ';
        s += a;
    }
    return s;
}

struct job {
    std::size_t seq = 0;
    std::string what;
    std::vector<std::string> argv;
    sys::child proc;
    sys::unique_fd pidfd;
    // Plain (not private) fds: they are handed to this job's child, and being memory files
    // rather than pipes, a copy held elsewhere hides no EOF.
    sys::unique_fd out, err;
    std::string tag, shown, results_dir;
    // --line-buffer: the output comes through pipes instead, written out a line at a time.
    struct stream {
        sys::unique_fd pipe;
        std::string pending;  // read, not yet written
        bool at_line_start = true;
    } streams[2];
    std::size_t sent = 0, received = 0;
    sys::unique_fd input;                        // its stdin, kept for --retries
    std::optional<job_spec::feed_spec> feed;     // --pipepart: its part of the file
    sys::unique_fd feed_pipe;                    // the write end of its stdin, while feeding
    std::size_t fed = 0;                         // bytes of the head and part written
    unsigned attempts = 1;
    std::size_t slot = 0;                        // while running
    clock::time_point started{};
    double start_epoch = 0;
    std::optional<clock::time_point> deadline;  // timeout, then the SIGKILL deadline
    bool term_sent = false;
    bool timed_out = false;
    bool discard = false;                        // killed by --halt now: output is dropped
    std::optional<sys::exit_status> status;      // set when finished
    std::string spawn_error;
    double runtime = 0;                          // seconds, set when finished
    // Run on another rank (engine_options::remote): no process here; its outcome comes back.
    bool remote = false;
    std::size_t seat = 0;
    std::string host;                            // where it ran, for --joblog; empty: here

    bool running() const { return !status; }
    bool failed() const { return status && (!status->ok() || timed_out); }
    std::string reason() const {
        if (!spawn_error.empty()) return spawn_error;
        if (timed_out) return "timed out (" + status->describe() + ")";
        return status->describe();
    }
};

// The job's command as one line (--dry-run, -v, --verbose): as a shell would read it.
std::string shown_line(const job& j) { return (j.shown.empty() ? join_command(j.argv) : j.shown) + "\n"; }

class engine {
public:
    engine(job_source& src, const settings& s, const engine_options& o)
        : src_(src), s_(s), o_(o), bar_(s),
          slot_busy_(s.jobs, false) {
        bool resuming = s.resume || s.resume_failed;
        if (resuming) skip_ = jobs_done(s.joblog, s.resume_failed);
        if (!s.joblog.empty()) log_ = std::make_unique<joblog>(s.joblog, resuming);
        if (s.halt.percent) {
            total_ = src.jobs_total();
            if (!total_)
                throw usage_error("--halt with a percentage needs the number of jobs before the run, "
                                  "which pipe and --xargs do not know");
        }
        int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) sys::throw_errno("open /dev/null");
        devnull_.reset(fd);
        // Before any job: a dashboard server started now holds none of their descriptors.
        options shown;
        shown.dashboard = s.dashboard;
        shown.name = "parafork " + s.mode;
        dash_ = dash::attach(shown, "jobs", s.jobs, src.jobs_total().value_or(0));
    }
    ~engine() {
        if (dash_) dash::close_pool(*dash_);
    }
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    int run() {
        sys::sigint_guard sigint;
        sys::sigpipe_guard sigpipe;
        try {
            loop();
        } catch (const interrupted&) {
            stop_all(false);
            finish_bar();
            if (!o_.report) std::fprintf(stderr, "parafork: interrupted; stopped %zu running job(s)\n", stopped_);
            return exit_interrupted;
        } catch (const output_closed&) {
            stop_all(false);
            return exit_output_closed;
        } catch (...) {
            stop_all(false);
            throw;
        }
        finish_bar();
        if (log_) log_->flush();
        if (cannot_start_) {
            // Every later job would fail the same way: the run ends here, as a shell's 127.
            std::fprintf(stderr, "parafork: cannot start the command: %s\n", cannot_start_->c_str());
            return exit_cannot_start;
        }
        if (failed_ && !o_.report) {
            std::fprintf(stderr, "parafork: %zu of %zu job(s) failed; first: %s: %s\n", failed_, finished_,
                         first_failure_what_.c_str(), first_failure_reason_.c_str());
        }
        return halt_status_ ? *halt_status_ : exit_for_failures(failed_);
    }

private:
    void loop() {
        std::vector<pollfd> fds;
        std::vector<std::pair<job*, int>> polled;  // the job, and -1 (its pidfd) or its stream
        for (;;) {
            sys::sigint_guard::check();
            // A freed slot is refilled before finished output is written, so a core does not
            // wait on our writes; writing makes room in flight_ for more. Both go on until
            // nothing changes: a job that could not start is finished at once, and polling
            // with no job running would wait forever.
            for (;;) {
                std::size_t taken = taken_, in_flight = flight_.size();
                start_ready();
                emit_ready();
                if (taken_ == taken && flight_.size() == in_flight) break;
            }
            if (flight_.empty() && (halting_ || src_.exhausted())) return;

            fds.clear();
            polled.clear();
            fds.push_back({sys::sigint_guard::fd(), POLLIN, 0});
            bool want_input = !halting_ && src_.wants_input();
            if (want_input) fds.push_back({src_.input_fd(), POLLIN, 0});
            const std::size_t remote_at = fds.size();
            if (o_.remote) fds.push_back({o_.remote->fd(), POLLIN, 0});
            std::optional<clock::time_point> wake;
            for (auto& j : flight_) {
                if (!j->running() || j->remote) continue;
                fds.push_back({j->pidfd.get(), POLLIN, 0});
                polled.emplace_back(j.get(), -1);
                if (j->feed_pipe) {
                    fds.push_back({j->feed_pipe.get(), POLLOUT, 0});
                    polled.emplace_back(j.get(), 2);
                }
                for (int k = 0; k < 2; ++k)
                    if (j->streams[k].pipe) {
                        fds.push_back({j->streams[k].pipe.get(), POLLIN, 0});
                        polled.emplace_back(j.get(), k);
                    }
                if (j->deadline && (!wake || *j->deadline < *wake)) wake = j->deadline;
            }
            if (s_.delay.count() > 0 && !halting_ && has_room() && !src_.exhausted() &&
                (!wake || next_start_ < *wake))
                wake = next_start_;
            int timeout_ms = -1;
            if (s_.bar || s_.progress || s_.eta) timeout_ms = 200;
            if (wake) {
                auto left = std::chrono::ceil<std::chrono::milliseconds>(*wake - clock::now()).count();
                left = std::max<long>(left, 0);
                if (timeout_ms < 0 || left < timeout_ms) timeout_ms = static_cast<int>(left);
            }
            int n = ::poll(fds.data(), fds.size(), timeout_ms);
            if (n < 0) {
                if (errno == EINTR) continue;
                sys::throw_errno("poll");
            }
            if (fds[0].revents) sys::sigint_guard::check();
            std::size_t first_job = remote_at + (o_.remote ? 1 : 0);
            if (want_input && fds[1].revents) src_.read_input();
            if (o_.remote && fds[remote_at].revents) collect_remote();
            // Output first: a job's last lines are read before it is reaped.
            for (std::size_t i = first_job; i < fds.size(); ++i)
                if (auto [j, k] = polled[i - first_job]; fds[i].revents && k >= 0) {
                    if (k == 2) pump_feed(*j);
                    else read_stream(*j, k);
                }
            for (std::size_t i = first_job; i < fds.size(); ++i)
                if (auto [j, k] = polled[i - first_job]; fds[i].revents && k < 0) reap(*j);
            enforce_deadlines();
            bar_.update(progress());
        }
    }

    // Jobs in flight at most: each slot's (and seat's elsewhere), twice over to keep order.
    std::size_t max_flight() const {
        std::size_t places = s_.jobs + (o_.remote ? o_.remote->capacity() : 0);
        return s_.ordered ? 2 * places : places;
    }
    std::optional<std::size_t> remote_seat() const {
        if (!o_.remote || s_.dry_run) return std::nullopt;
        return o_.remote->free_seat();
    }
    bool has_room() const { return running_ < s_.jobs || remote_seat(); }

    void start_ready() {
        while (!halting_ && flight_.size() < max_flight()) {
            if (s_.delay.count() > 0 && clock::now() < next_start_) break;
            // Here first, then a seat elsewhere; {%} of a job elsewhere is -j + its seat + 1.
            std::optional<std::size_t> seat;
            std::size_t slot = 0;
            if (running_ < s_.jobs) slot = std::find(slot_busy_.begin(), slot_busy_.end(), false) - slot_busy_.begin();
            else if ((seat = remote_seat())) slot = s_.jobs + *seat;
            else break;
            auto spec = src_.take(slot + 1);
            if (!spec) break;
            if (skip_.contains(++taken_)) continue;  // --resume: the joblog shows it done
            if (seat) start_remote(std::move(*spec), *seat);
            else start(std::move(*spec), slot);
            next_start_ = clock::now() + s_.delay;
        }
    }

    void start_remote(job_spec spec, std::size_t seat) {
        if (spec.input || spec.feed) throw usage_error("jobs with input on stdin do not run on other ranks");
        auto j = std::make_unique<job>();
        ++started_;
        j->seq = taken_;
        j->remote = true;
        j->seat = seat;
        j->started = clock::now();
        j->start_epoch = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        o_.remote->start(seat, j->seq, spec);
        j->what = std::move(spec.what);
        j->argv = std::move(spec.argv);
        j->tag = std::move(spec.tag);
        j->shown = std::move(spec.shown);
        j->results_dir = std::move(spec.results_dir);
        newest_ = std::move(spec.values);
        if (s_.verbose_stderr) {
            std::string line = shown_line(*j);
            write_out(2, line.data(), line.size());
        }
        ++remote_running_;
        remote_jobs_[j->seq] = j.get();
        flight_.push_back(std::move(j));
    }

    // The outcomes of jobs run elsewhere: each finishes its job here, as if it had run here.
    void collect_remote() {
        outcomes_.clear();
        // A rank lost (or a bad message) is the run's error, but the jobs that came back before
        // it are finished first: in the joblog, a rerun with --resume does not run them again.
        std::exception_ptr lost;
        try {
            o_.remote->collect(outcomes_);
        } catch (const std::exception&) {
            lost = std::current_exception();
        }
        for (auto& r : outcomes_) {
            auto it = remote_jobs_.find(r.id);
            if (it == remote_jobs_.end()) continue;  // stopped meanwhile
            job& j = *it->second;
            remote_jobs_.erase(it);
            --remote_running_;
            if (s_.line_buffer) {
                j.streams[0].pending = std::move(r.out);
                j.streams[1].pending = std::move(r.err);
                j.received = j.streams[0].pending.size();
                if (s_.verbose) j.streams[0].pending.insert(0, shown_line(j));
            } else {
                j.out = sys::make_memfd("parafork-out", 0);
                j.err = sys::make_memfd("parafork-err", 0);
                if (!r.out.empty()) sys::write_all(j.out.get(), r.out);
                if (!r.err.empty()) sys::write_all(j.err.get(), r.err);
            }
            j.status = sys::exit_status{r.code, r.signal};
            j.timed_out = r.timed_out;
            j.spawn_error = std::move(r.spawn_error);
            j.start_epoch = r.start_epoch;
            j.runtime = r.runtime;
            j.host = std::move(r.host);
            finished(j);
            if (!j.spawn_error.empty() && o_.spawn_failure_is_fatal) {
                if (!cannot_start_) cannot_start_ = j.spawn_error;
                halt_now();
            }
        }
        if (lost) std::rethrow_exception(lost);
    }

    void start(job_spec spec, std::size_t slot) {
        auto j = std::make_unique<job>();
        ++started_;
        j->seq = taken_;
        j->what = std::move(spec.what);
        j->argv = std::move(spec.argv);
        j->sent = spec.input_bytes;
        j->started = clock::now();
        j->start_epoch = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        j->tag = std::move(spec.tag);
        j->shown = std::move(spec.shown);
        j->results_dir = std::move(spec.results_dir);
        j->feed = std::move(spec.feed);
        newest_ = std::move(spec.values);
        if (s_.dry_run) {  // the command is shown, as its output, and not run
            j->out = sys::make_memfd("parafork-out", 0);
            sys::write_all(j->out.get(), shown_line(*j));
            j->status = sys::exit_status{0, 0};
            flight_.push_back(std::move(j));
            finished(*flight_.back());
            return;
        }
        j->slot = slot;  // before launch: the dashboard shows the job in its slot
        sys::unique_fd write_ends[2];
        if (s_.line_buffer) {
            for (int k = 0; k < 2; ++k) {
                auto p = sys::make_pipe();
                sys::set_nonblocking(p.read.get());
                j->streams[k].pipe = std::move(p.read);
                write_ends[k] = std::move(p.write);
            }
            if (s_.verbose) j->streams[0].pending = shown_line(*j);  // -v: the first line of its output
        } else {
            j->out = sys::make_memfd("parafork-out", 0);
            j->err = sys::make_memfd("parafork-err", 0);
        }
        try {
            launch(*j, spec.input, write_ends);
            if (s_.verbose_stderr) {
                std::string line = shown_line(*j);
                write_out(2, line.data(), line.size());
            }
            if (s_.retries > 1) j->input = std::move(spec.input);  // else closed now: memory held by no one
        } catch (const std::system_error& e) {
            j->spawn_error = e.what();
            j->status = sys::exit_status{127, 0};
            flight_.push_back(std::move(j));
            finished(*flight_.back());
            if (o_.spawn_failure_is_fatal) {
                if (!cannot_start_) cannot_start_ = flight_.back()->spawn_error;
                halt_now();
            }
            return;
        }
        slot_busy_[slot] = true;
        ++running_;
        if (dash_) dash::relaxed_set(dash_->in_flight, running_);
        flight_.push_back(std::move(j));
    }

    // Starts j's process, with the pipes' write ends as its output under --line-buffer.
    void launch(job& j, const sys::unique_fd& input, sys::unique_fd (&write_ends)[2]) {
        sys::unique_fd feed_read;  // closed here once the job has it: its reader going away is EPIPE
        if (j.feed) {
            auto p = sys::make_pipe();
            feed_read = std::move(p.read);
            j.feed_pipe = std::move(p.write);
            sys::set_nonblocking(j.feed_pipe.get());
            ::fcntl(j.feed_pipe.get(), F_SETPIPE_SZ, 1 << 20);  // fewer wake-ups; best effort
            j.fed = 0;
        }
        launch_fds fds{feed_read ? feed_read.get() : input ? input.get() : devnull_.get(),
                       s_.line_buffer ? write_ends[0].get() : j.out.get(), s_.line_buffer ? write_ends[1].get() : j.err.get()};
        j.proc = sys::child(launcher_.start(j.argv, fds));
        j.pidfd = sys::open_pidfd(j.proc.pid());
        if (!j.pidfd) sys::throw_errno("pidfd_open");
        pump_feed(j);
        if (dash_) {
            dash::worker_started(*dash_, j.slot, j.proc.pid());
            dash::worker_busy(*dash_, j.slot, j.seq, dash::now_ns());
        }
        j.deadline.reset();
        if (s_.timeout.count() > 0) j.deadline = clock::now() + s_.timeout;
        else if (percent_timeout_) j.deadline = j.started + *percent_timeout_;
    }

    // --timeout N%: the limit is N% of the median runtime of the jobs that succeeded (the last
    // 999 of them, so memory stays bounded); none before the first success, as GNU parallel.
    void note_success_runtime(clock::duration runtime) {
        if (runtimes_.size() < 999) runtimes_.push_back(runtime);
        else runtimes_[runtimes_next_++ % 999] = runtime;
        sorted_ = runtimes_;
        auto mid = sorted_.begin() + static_cast<std::ptrdiff_t>((sorted_.size() - 1) / 2);
        std::nth_element(sorted_.begin(), mid, sorted_.end());
        percent_timeout_ = std::chrono::duration_cast<clock::duration>(*mid * (s_.timeout_percent / 100));
        for (auto& r : flight_)
            if (r->running() && !r->term_sent && r->proc.pid() > 0) r->deadline = r->started + *percent_timeout_;
    }

    // --pipepart: fills the job's stdin pipe with its head and then its part of the file,
    // spliced from the page cache (no copy through our memory), until the pipe is full; the
    // poll loop calls again when it has room. A job that closed its stdin ends the feeding.
    void pump_feed(job& j) {
        if (!j.feed_pipe) return;
        const auto& f = *j.feed;
        const int pipe = j.feed_pipe.get();
        while (j.fed < f.head.size()) {
            long n = ::write(pipe, f.head.data() + j.fed, f.head.size() - j.fed);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return;
            if (n < 0 && errno == EPIPE) return j.feed_pipe.reset();
            if (n < 0) sys::throw_errno("write job input");
            j.fed += static_cast<std::size_t>(n);
        }
        while (j.fed < f.head.size() + f.length) {
            std::size_t done = j.fed - f.head.size();
            loff_t from = static_cast<loff_t>(f.offset + done);
            long n = ::splice(f.fd, &from, pipe, nullptr, std::min<std::size_t>(f.length - done, 1 << 20),
                              SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                j.fed += static_cast<std::size_t>(n);
                continue;
            }
            if (n == 0) break;  // the file got shorter
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            if (errno == EPIPE) break;
            sys::throw_errno("splice job input");
        }
        j.feed_pipe.reset();  // EOF for the job
    }

    // --retries: a failed job runs again in its place, its output so far dropped (held output
    // only: lines --line-buffer wrote are out). False when it has had all its attempts.
    bool retry(job& j) {
        if (j.attempts >= s_.retries || halting_) return false;
        ++j.attempts;
        if (dash_) dash::relaxed_set(dash_->retried, dash_->retried.load(std::memory_order_relaxed) + 1);
        sys::unique_fd write_ends[2];
        if (s_.line_buffer) {
            for (int k = 0; k < 2; ++k) {
                auto p = sys::make_pipe();
                sys::set_nonblocking(p.read.get());
                j.streams[k].pipe = std::move(p.read);
                j.streams[k].pending = k == 0 && s_.verbose ? shown_line(j) : std::string();
                write_ends[k] = std::move(p.write);
            }
            j.received = 0;
        } else {
            j.out = sys::make_memfd("parafork-out", 0);
            j.err = sys::make_memfd("parafork-err", 0);
        }
        if (j.input && ::lseek(j.input.get(), 0, SEEK_SET) < 0) sys::throw_errno("lseek job input");
        j.term_sent = j.timed_out = false;
        j.started = clock::now();
        j.start_epoch = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        launch(j, j.input, write_ends);  // it started once, so it can start again: a failure here is ours
        return true;
    }

    void reap(job& j) {
        if (!j.running()) return;  // stopped meanwhile by stop_all
        auto st = j.proc.try_wait();
        if (!st) return;  // a pidfd is readable only once the child exited; be safe anyway
        // What is left of a job we stopped (`sleep` under `sh -c 'sleep 60 | cat'`) goes too.
        if (j.term_sent) signal_job(j.proc.pid(), SIGKILL);
        // What it wrote before it exited is in the pipes now; a grandchild still writing
        // later is not waited for.
        for (int k = 0; k < 2; ++k) {
            read_stream(j, k);
            j.streams[k].pipe.reset();
        }
        j.pidfd.reset();
        j.feed_pipe.reset();
        if ((!st->ok() || j.timed_out) && retry(j)) return;
        j.status = *st;
        stopped_running(j);
        finished(j);
    }

    void finished(job& j) {
        ++finished_;
        if (dash_) shown_end(j);
        if (!j.discard && j.out) j.received = sys::fd_size(j.out.get());
        if (!j.remote) j.runtime = std::chrono::duration<double>(clock::now() - j.started).count();
        if (log_) {
            std::string command = join_command(j.argv);
            int exit_value = j.spawn_error.empty() ? j.status->code : -1;
            log_->write({j.seq, j.start_epoch, j.runtime, j.sent, j.received, exit_value, j.status->signal, command,
                         j.host.empty() ? std::string_view(o_.host) : std::string_view(j.host)});
        }
        if (j.discard) return;
        if (j.failed()) {
            if (failed_++ == 0) {
                first_failure_what_ = j.what;
                first_failure_reason_ = j.reason();
            }
        } else {
            ++succeeded_;
            if (s_.timeout_percent > 0 && !s_.dry_run)
                note_success_runtime(std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(j.runtime)));
        }
        check_halt(j);
    }

    // --halt: the run ends (now, or soon: when the running jobs are done) once enough jobs
    // failed, succeeded or finished; a count of N, or N% of all the jobs.
    void check_halt(const job& j) {
        const halt_settings& h = s_.halt;
        if (h.when == halt_policy::never || halting_) return;
        using on = halt_settings::on;
        if ((h.why == on::fail && !j.failed()) || (h.why == on::success && j.failed())) return;
        std::size_t n = h.why == on::fail ? failed_ : h.why == on::success ? succeeded_ : failed_ + succeeded_;
        if (h.percent ? double(n) * 100 < h.threshold * double(*total_) : double(n) < h.threshold) return;
        // GNU parallel's exit status: the failing job's own with fail=1, the percentage failed
        // with fail=N%, 0 with success.
        if (h.why == on::success) halt_status_ = 0;
        else if (h.why == on::fail && h.job_status)
            halt_status_ = j.status->signal ? 128 + j.status->signal : j.status->code ? j.status->code : 1;
        else if (h.why == on::fail && h.percent)
            halt_status_ = std::max(1, int(std::lround(double(failed_) * 100 / double(*total_))));
        if (h.when == halt_policy::now) halt_now();
        else halting_ = true;
    }

    // --line-buffer: what a job's pipe holds now, written out when its turn allows, up to the
    // last complete line.
    void read_stream(job& j, int k) {
        auto& st = j.streams[k];
        if (!st.pipe) return;
        char buf[64 * 1024];
        for (;;) {
            long n = sys::read_some(st.pipe.get(), buf, sizeof buf);
            if (n < 0) break;  // nothing more for now
            if (n == 0) {
                st.pipe.reset();  // it closed its output, running or not
                break;
            }
            if (!j.discard) st.pending.append(buf, static_cast<std::size_t>(n));
            if (k == 0) j.received += static_cast<std::size_t>(n);
        }
        if (may_stream(j)) write_lines(j, false);
    }

    bool may_stream(const job& j) const { return !s_.ordered || (!flight_.empty() && flight_.front().get() == &j); }

    // The complete lines read from a line-buffered job (all of it when `all`), tagged.
    void write_lines(job& j, bool all) {
        for (int k = 0; k < 2; ++k) {
            auto& st = j.streams[k];
            std::size_t len = all ? st.pending.size() : st.pending.rfind('\n') + 1;  // npos + 1 == 0
            if (len == 0) continue;
            write_tagged(k + 1, std::string_view(st.pending).substr(0, len), j.tag, st.at_line_start);
            st.pending.erase(0, len);
        }
    }

    // --results: the job's stdout, stderr and number in files of its directory, made as needed.
    void write_results(const job& j) {
        for (std::size_t at = 1; at <= j.results_dir.size(); ++at) {
            if (at < j.results_dir.size() && j.results_dir[at] != '/') continue;
            std::string dir = j.results_dir.substr(0, at);
            if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
                throw std::system_error(errno, std::generic_category(), "--results: cannot make " + dir);
        }
        auto file = [&](const char* name) {
            std::string path = j.results_dir + "/" + name;
            auto fd = sys::open_file(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC);
            if (!fd) throw std::system_error(errno, std::generic_category(), "--results: cannot write " + path);
            return fd;
        };
        auto out = file("stdout");
        if (j.received) copy_file_to(out.get(), j.out.get(), j.received);
        auto err = file("stderr");
        if (std::size_t e = sys::fd_size(j.err.get())) copy_file_to(err.get(), j.err.get(), e);
        std::string seq = std::to_string(j.seq);
        sys::write_all(file("seq").get(), seq);
    }

    void emit(job& j) {
        if (o_.report) {
            std::size_t err = j.err ? sys::fd_size(j.err.get()) : 0;
            o_.report({j.seq, j.out.get(), j.err.get(), j.received, err, j.status->code, j.status->signal, j.timed_out,
                       j.spawn_error, j.start_epoch, j.runtime});
            return;
        }
        if (j.discard) return;
        if (!j.results_dir.empty() && !s_.dry_run) {
            write_results(j);
        } else if (s_.line_buffer && !s_.dry_run) {
            write_lines(j, true);
        } else if (!j.tag.empty()) {
            if (s_.verbose && !s_.dry_run) {
                bool at_line_start = true;
                write_tagged(1, shown_line(j), j.tag, at_line_start);
            }
            if (j.received) copy_file_tagged(1, j.out.get(), j.received, j.tag);
            if (j.err)
                if (std::size_t e = sys::fd_size(j.err.get())) copy_file_tagged(2, j.err.get(), e, j.tag);
        } else {
            if (s_.verbose && !s_.dry_run) {
                std::string line = shown_line(j);
                write_out(1, line.data(), line.size());
            }
            if (j.received) copy_file_to(1, j.out.get(), j.received);
            if (j.err)
                if (std::size_t e = sys::fd_size(j.err.get())) copy_file_to(2, j.err.get(), e);
        }
        if (j.failed())
            std::fprintf(stderr, "parafork: %s failed: %s [%s]\n", j.what.c_str(), j.reason().c_str(),
                         join_command(j.argv).c_str());
    }

    // Writes what may be written: the finished jobs at the head (ordered) or any finished job.
    void emit_ready() {
        if (s_.ordered) {
            while (!flight_.empty() && !flight_.front()->running()) {
                emit(*flight_.front());
                flight_.pop_front();
            }
            // --line-buffer: the oldest job's lines go out as they come, the others wait.
            if (s_.line_buffer && !flight_.empty()) write_lines(*flight_.front(), false);
        } else {
            for (auto it = flight_.begin(); it != flight_.end();) {
                if ((*it)->running()) {
                    ++it;
                    continue;
                }
                emit(**it);
                it = flight_.erase(it);
            }
        }
    }

    // A job over its timeout gets SIGTERM, and SIGKILL once the grace period is over too.
    void enforce_deadlines() {
        auto now = clock::now();
        for (auto& j : flight_) {
            if (!j->running() || !j->deadline || *j->deadline > now) continue;
            if (!j->term_sent) {
                j->timed_out = true;
                j->term_sent = true;
                signal_job(j->proc.pid(), SIGTERM);
                j->deadline = now + s_.grace;
            } else {
                signal_job(j->proc.pid(), SIGKILL);
                j->deadline.reset();
            }
        }
    }

    // --halt now: no new jobs; running jobs are stopped and their output dropped.
    void halt_now() {
        halting_ = true;
        for (auto& j : flight_)
            if (j->running()) j->discard = true;
        stop_all(true);
    }

    // SIGTERM to every running job, a grace period for all of them together, then SIGKILL.
    void stop_all(bool account) {
        if (o_.remote) {
            // Every rank stops its jobs; those here count as stopped by SIGTERM.
            o_.remote->stop();
            for (auto& j : flight_)
                if (j->running() && j->remote) {
                    j->status = sys::exit_status{0, SIGTERM};
                    j->runtime = std::chrono::duration<double>(clock::now() - j->started).count();
                    remote_jobs_.erase(j->seq);
                    --remote_running_;
                    ++stopped_;
                    if (account) finished(*j);
                }
        }
        bool any = false;
        for (auto& j : flight_)
            if (j->running() && !j->remote && j->proc.pid() > 0) {
                signal_job(j->proc.pid(), SIGTERM);
                any = true;
            }
        if (!any) return;
        auto deadline = clock::now() + s_.grace;
        for (auto& j : flight_) {
            if (!j->running() || j->remote || j->proc.pid() <= 0) continue;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
            auto st = j->proc.wait_for(std::max(left, std::chrono::milliseconds(0)));
            if (!st) {
                j->proc.kill_and_reap();
                st = j->proc.status();
            }
            signal_job(j->proc.pid(), SIGKILL);  // members of its group that outlived SIGTERM
            j->status = *st;
            j->pidfd.reset();
            stopped_running(*j);
            ++stopped_;
            if (account) finished(*j);
        }
    }

    void stopped_running(job& j) {
        slot_busy_[j.slot] = false;
        --running_;
        if (dash_) {
            dash::relaxed_set(dash_->in_flight, running_);
            dash::worker_idle(*dash_, j.slot, dash::now_ns());
        }
    }

    // A job's end on the dashboard: done, or failed with how (exit code, signal, timeout).
    void shown_end(const job& j) noexcept {
        if (!j.failed()) {
            dash::relaxed_set(dash_->done, dash_->done.load(std::memory_order_relaxed) + 1);
            if (!j.spawn_error.empty() || s_.dry_run || j.remote) return;
            dash::worker_answered(*dash_, j.slot, 1);
            return;
        }
        dash::relaxed_set(dash_->failed, dash_->failed.load(std::memory_order_relaxed) + 1);
        try {
            dash::error_note e;
            e.kind = j.timed_out ? dash::error_kind::timeout : dash::error_kind::died;
            e.type = j.timed_out ? "timeout" : !j.spawn_error.empty() ? "cannot start" : "job failed";
            std::string said = j.what + ": " + j.reason();
            e.message = said;
            e.pid = j.spawn_error.empty() && !j.remote ? j.proc.pid() : 0;
            e.signal = j.status->signal;
            e.code = j.status->code;
            e.task = j.seq;
            dash::note(*dash_, e);
        } catch (...) {
            // Shown or not, the failure is reported on stderr and in the exit status.
        }
    }

    progress_state progress() const {
        std::optional<std::size_t> total = src_.jobs_total();
        // pipe reading a regular file: the blocks to come, judged by the bytes left.
        if (auto bytes = src_.bytes_total(); !total && bytes && src_.bytes_read() > 0 && src_.exhausted() == false)
            total = std::max(taken_, std::size_t(double(taken_) * double(*bytes) / double(src_.bytes_read())));
        return {started_, running_ + remote_running_, finished_, total, newest_};
    }
    void finish_bar() { bar_.finish(progress()); }

    job_source& src_;
    const settings& s_;
    engine_options o_;
    progress_bar bar_;
    std::unique_ptr<joblog> log_;
    sys::unique_fd devnull_;
    launcher launcher_;
    std::vector<bool> slot_busy_;  // by job slot ({%} - 1): a running job holds its slot
    std::deque<std::unique_ptr<job>> flight_;  // in input order
    std::size_t started_ = 0, running_ = 0, finished_ = 0, failed_ = 0, stopped_ = 0;
    std::size_t taken_ = 0, succeeded_ = 0;
    std::set<std::size_t> skip_;               // --resume: job numbers the joblog shows done
    std::optional<std::size_t> total_;         // jobs in the run, for --halt N%
    std::optional<int> halt_status_;           // the exit status --halt's rule gives
    clock::time_point next_start_{};           // --delay
    std::vector<clock::duration> runtimes_, sorted_;  // --timeout N%: successful jobs' runtimes
    std::size_t runtimes_next_ = 0;
    std::optional<clock::duration> percent_timeout_;
    bool halting_ = false;
    std::string first_failure_what_, first_failure_reason_;
    std::string newest_;                       // the values of the newest job started (--bar)
    std::optional<std::string> cannot_start_;  // the first spawn error, when it ends the run
    detail::dash::pool_slot* dash_ = nullptr;  // the run on the dashboard; null: off
    std::size_t remote_running_ = 0;           // jobs out on other ranks
    std::unordered_map<std::size_t, job*> remote_jobs_;  // by seq
    std::vector<remote_outcome> outcomes_;
};

} // namespace

int run_jobs(job_source& source, const settings& s, const engine_options& o) {
    engine e(source, s, o);
    return e.run();
}

} // namespace parafork::cli

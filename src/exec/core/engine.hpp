#pragma once
// The engine under forked, map and pool (private to the library; reached through
// detail::executor, see exec/core/executor.hpp): a set of forked workers, each fed jobs over
// a pipe and answering over another, with a UNIX socket beside them for large values (memfd).
//
// A job covers the items [first, first + count). A worker answers every item, in order, with a
// value or a failure; values of consecutive items travel in one frame ("a run"), so the hot
// path costs one encode per item and one write per batch. The parent keeps each worker's jobs in
// flight in order, and each worker notes the item it is starting in a word of memory shared with
// the parent, so a worker that dies or runs past task_timeout is blamed for exactly the item it
// was running; the items it had not answered are re-queued (retries re-run the blamed one).
// A worker that dies before it starts any item of its job (killed while idle, say) blames none:
// the job runs on the replacement.

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <parafork/exec/core/detail/results.hpp>
#include <parafork/exec/core/detail/worker.hpp>
#include <parafork/exec/core/executor.hpp>
#include <parafork/exec/core/options.hpp>
#include <parafork/exec/core/supervisor.hpp>

namespace parafork::detail {

namespace dash {
struct pool_slot;  // the dashboard's counters for one engine (dashboard/region.hpp)
}

// A frame on the engine's pipes: a length (u64, see frames::len_prefix), then this, then the body.
struct msg_header {
    std::uint8_t kind;
    std::uint8_t flags;
    std::uint16_t reserved;
    std::uint32_t count;
    std::uint64_t first;
};
static_assert(sizeof(msg_header) == 16);
inline constexpr std::uint8_t flag_large = 1;  // the body comes as a memfd on the socket

struct worker;

class engine final : public executor {
public:
    // Forks the workers now. `runner`/`ctx` serve range and items jobs (may be null for pools).
    engine(const options& o, job_runner runner, void* ctx, std::uint64_t total_items = 0);
    ~engine() override;
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    unsigned size() const noexcept override { return jobs_; }
    executor_counters counters() const noexcept override;
    bool stopped() const noexcept override { return stopped_; }

    void push(job j) override { queue_.push_back(std::move(j)); }
    std::uint64_t drop_queued(std::uint64_t lo, std::uint64_t hi) override;
    void kick() override;
    // See executor::pump. A worker_init that threw is rethrown as remote_error naming
    // worker_init, and the workers are stopped.
    bool pump(executor_sink& sink,
              std::optional<clock::time_point> deadline = std::nullopt) override;
    std::optional<clock::time_point> watch(std::vector<pollfd>& fds) override;
    void rethrow_fatal() override;
    // No new jobs; each worker runs worker_exit and exits once its pipe closes. Blocks until
    // all are reaped (pumps until idle first). SIGINT meanwhile (even in a worker_exit that
    // hangs): stops every worker and throws parafork::interrupted.
    void join(executor_sink& sink) override;
    // SIGTERM to every worker, `grace`, then SIGKILL; reaps all.
    void terminate() noexcept override;
    void expect_more(std::uint64_t items) noexcept override { total_ = done_ + items; }
    // Each worker's job pipe closes once it has answered everything and nothing is queued: it
    // runs worker_exit and exits while the others still work.
    void close_input() noexcept override;

private:
    void spawn(std::size_t slot);
    void respawn_missing();
    void dispatch();
    void send(worker& w, job&& j);
    bool flush_out(worker& w);
    long read_from(worker& w, executor_sink& sink);
    // The supervisor saw the worker exit (by pidfd): reads what it left in the pipe, then
    // reports it.
    void exited(worker& w, const sys::exit_status& st, executor_sink& sink);
    // Replaces it, or fails (or re-queues) what it held, or notes that workers cannot start.
    void died(worker& w, const sys::exit_status& st, executor_sink& sink);
    // One supervisor wait over `fds`, the pidfds and Ctrl-C (which stops everyone and throws
    // interrupted); then the exits it saw, in turn.
    void wait_once(std::span<pollfd> fds, std::optional<clock::time_point> deadline,
                   executor_sink* sink);
    // Every worker the last wait saw exit, in turn.
    void handle_exits(executor_sink* sink);
    // Gives a reaped worker's slot and supervisor entry back.
    void drop(worker& w);
    bool drain(std::size_t slot, executor_sink& sink);
    void handle_frame(worker& w, std::string_view frame, executor_sink& sink);
    // Every whole frame read so far; one that throws leaves the others handled (a worker may
    // wait on a verdict in one of them), and the first exception is rethrown after them.
    void handle_frames(worker& w, executor_sink& sink);
    void lost(worker& w, executor_sink& sink, const failure_info& why);
    // Fails (or, with retries left, re-queues) item `at` of `rest`; the others run again.
    void blame(job&& rest, std::uint32_t at, executor_sink& sink, const failure_info& why);
    void wait_for_exits();
    void advance(worker& w, std::uint32_t n);
    void requeue_front(job&& j);
    void draw_progress(bool final);
    std::size_t in_flight() const noexcept;
    // The dashboard, when it is on: what a worker is doing, the counters, a failure.
    void show(const worker& w) noexcept;
    void publish() noexcept;
    void note_failure(std::uint64_t item, const failure_info& why) noexcept;
    bool idle() const noexcept { return queue_.empty() && in_flight() == 0; }
    // The worker has nothing more to do: retiring, closing, or the input closed with nothing
    // queued. Its job pipe is then closed, and it exits.
    bool done_with(const worker& w) const noexcept;

    options opts_;
    supervisor sup_;  // forks, watches (pidfd) and stops the workers
    job_runner runner_;
    void* ctx_;
    unsigned jobs_;
    std::vector<std::unique_ptr<worker>> workers_;
    std::deque<job> queue_;
    bool stopped_ = false;
    bool closing_ = false;
    bool input_closed_ = false;           // close_input: no jobs will be pushed
    std::exception_ptr fatal_;            // the workers cannot start (worker_init threw, ...)
    clock::time_point last_event_{};      // the last job sent or answer read (spin or sleep)
    std::uint64_t total_ = 0, done_ = 0, failed_ = 0, retried_ = 0;
    std::uint64_t timed_ = 0, busy_ns_ = 0;  // items whose workers said what they cost, and that cost
    clock::time_point started_{}, last_draw_{};
    bool progress_tty_ = false;
    std::size_t launches_ = 0;
    std::vector<pollfd> pollfds_;
    // Whose descriptor each pollfds_ entry is: slot and launch number.
    std::vector<std::pair<unsigned, std::size_t>> polled_;
    std::vector<std::pair<supervisor::id, sys::exit_status>> exits_;  // seen by the last wait
    dash::pool_slot* dash_ = nullptr;  // null: no dashboard (the default)
};

} // namespace parafork::detail

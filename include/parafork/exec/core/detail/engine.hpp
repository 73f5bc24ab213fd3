#pragma once
// The engine under forked, map and pool (internal): a set of forked workers, each fed jobs over
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

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <sys/types.h>
#include <vector>

#include <parafork/error.hpp>
#include <parafork/exec/core/options.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/wire/codec.hpp>
#include <parafork/wire/descriptors.hpp>

struct pollfd;

namespace parafork::detail {

enum class msg : std::uint8_t {
    range = 1,      // parent -> worker: run items [first, first + count) of the worker's range
    items = 2,      // parent -> worker: body holds the encoded items
    call = 3,       // parent -> worker: body = call_prefix then count encoded argument packs
    values = 10,    // worker -> parent: a run of count encoded values
    failure = 11,   // worker -> parent: item `first` threw; body = type name, what()
    large = 12,     // worker -> parent: item `first`'s value comes as a memfd on the socket
    ready = 13,     // worker -> parent: worker_init is done (count 0)
    init_failed = 14,  // worker -> parent: worker_init threw; body = type name, what()
    lent = 15,      // worker -> parent: item `first`'s value is still in the worker's memory
                    // (body = lent_value); it waits for the parent's verdict (see kid_output)
    descriptors = 16,  // worker -> parent: item `first`'s value (the next frame, alone) carries
                       // descriptors; body = their number, they come on the socket
};

struct msg_header {
    std::uint8_t kind;
    std::uint8_t flags;
    std::uint16_t reserved;
    std::uint32_t count;
    std::uint64_t first;
};
static_assert(sizeof(msg_header) == 16);
inline constexpr std::uint8_t flag_large = 1;  // the body comes as a memfd on the socket

// A large contiguous value (a vector of plain elements, a string) that a worker lends instead
// of copying it into a memfd: the parent copies it straight out of the worker's memory into
// the new value (process_vm_readv), then tells the worker it may go on. One copy instead of
// two. The worker waits on a futex word in the page it shares with the parent.
struct lent_value {
    std::uint64_t count;    // elements
    std::uint64_t address;  // of the first element, in the worker
    std::uint64_t bytes;    // count * the element's size
};
static_assert(sizeof(lent_value) == 24);
inline constexpr std::size_t max_descriptors = 64;  // per result (one sendmsg)
enum : std::uint32_t { verdict_pending = 0, verdict_taken = 1, verdict_resend = 2 };

template <class R>
struct lendable_t : std::false_type {};
template <class T, class A>
struct lendable_t<std::vector<T, A>> : std::bool_constant<wire::detail::memcpy_able<T>> {};
template <>
struct lendable_t<std::string> : std::true_type {};
// The values a worker may lend: their encoding is a count and then their own memory.
template <class R>
inline constexpr bool lendable = lendable_t<R>::value;

class kid_output;

// Runs in a worker for range and items jobs (forked's kids): ctx is the parent's object, valid
// in the child because the child is a copy of the parent's memory made after it existed.
using job_runner = void (*)(void* ctx, msg kind, std::uint64_t first, std::uint32_t count,
                            std::string_view body, kid_output& out);
// A call job names its trampoline by address (same binary on both sides of fork).
using call_trampoline = void (*)(const void* ctx, std::uint64_t first, std::uint32_t count,
                                 wire::reader& args, kid_output& out);
struct call_prefix {
    call_trampoline fn;
    const void* ctx;
};

// The worker's side of the results stream.
class kid_output {
public:
    kid_output(int out_fd, int sock, std::size_t large_threshold, bool flush_each,
               std::uint64_t* running = nullptr, std::atomic<std::uint32_t>* verdict = nullptr);
    kid_output(const kid_output&) = delete;
    kid_output& operator=(const kid_output&) = delete;

    template <class R>
    void value(std::uint64_t index, const R& v) {
        if constexpr (wire::detail::memcpy_able<R> && sizeof(R) <= 4096) {
            // The hot path: a few bytes copied into the batch, no call, no allocation.
            if (!continues(index)) start_run(index);
            append(&v, sizeof(R));
            end_item();
        } else {
            if constexpr (lendable<R>) {
                // A big vector / string is lent (see lent_value), or where the parent cannot
                // read this process goes straight from its own memory into a memfd.
                std::size_t bytes = v.size() * sizeof(typename R::value_type);
                if (bytes + sizeof(std::uint64_t) > large_threshold_)
                    return large_contiguous(index, v.size(), v.data(), bytes);
            }
            scratch_.clear();
            outgoing_fds().clear();
            wire::encode_to(scratch_, v);  // may throw: then nothing of it was kept
            if (!outgoing_fds().empty()) return with_descriptors(index);
            if (scratch_.size() > large_threshold_) return large_scratch(index);
            if (!continues(index)) start_run(index);
            append(scratch_.data(), scratch_.size());
            end_item();
        }
    }
    void value_void(std::uint64_t index) {
        if (!continues(index)) start_run(index);
        end_item();
    }
    // Notes that item `index` starts now, where the parent reads it if this process dies.
    void start(std::uint64_t index) noexcept {
        if (running_) __atomic_store_n(running_, index + 1, __ATOMIC_RELAXED);
    }
    // Call from a catch block: reports the exception in flight as item `index`'s failure.
    void fail_current(std::uint64_t index) noexcept;
    void flush();

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    static constexpr std::size_t flush_at = 256 * 1024;  // big writes, well inside a 1 MiB pipe

    bool continues(std::uint64_t index) const noexcept {
        return run_at_ != npos && run_next_ == index && run_count_ != UINT32_MAX;
    }
    void append(const void* p, std::size_t n) {
        if (n > cap_ - size_) grow(n);
        std::memcpy(data_.get() + size_, p, n);
        size_ += n;
    }
    void end_item() {
        ++run_count_;
        ++run_next_;
        if (flush_each_ || size_ >= flush_at) flush();
    }
    void grow(std::size_t n);
    void start_run(std::uint64_t index);
    void put_header(msg kind, std::uint32_t count, std::uint64_t first, std::size_t body);
    void large_contiguous(std::uint64_t index, std::uint64_t count, const void* data,
                          std::size_t bytes);
    void large_scratch(std::uint64_t index);
    void send_large_frame(std::uint64_t index, sys::unique_fd fd, std::uint64_t size);
    bool lend(std::uint64_t index, std::uint64_t count, const void* data, std::size_t bytes);
    void with_descriptors(std::uint64_t index);
    void close_run() noexcept;

    int fd_, sock_;
    std::size_t large_threshold_;
    bool flush_each_;
    std::uint64_t* running_;        // shared with the parent: 1 + the item being run, 0 before
    std::atomic<std::uint32_t>* verdict_;  // shared with the parent: see lent_value
    std::unique_ptr<char[]> data_;  // the batch of frames being built
    std::size_t size_ = 0, cap_ = 0;
    std::string scratch_;           // one value's encoding (reused: no allocation per item)
    std::size_t run_at_ = npos;     // offset of the open run's frame in the batch
    std::uint64_t run_next_ = 0;
    std::uint32_t run_count_ = 0;
};

// Asks for huge pages on a big fresh destination before it is first written: 512 times fewer
// page faults when a large result is copied in (a no-op for small sizes or where THP is off).
void prepare_bulk_destination(void* p, std::size_t bytes) noexcept;

// Decodes a buffer holding exactly one value. A vector of trivially copyable elements is
// built straight from the bytes (one pass: no zero-fill before the copy); that is most of the
// cost of a large result.
template <class R>
R decode_one(std::string_view bytes) {
    if constexpr (wire::detail::is_std_vector<R>::value) {
        using T = typename R::value_type;
        if constexpr (wire::detail::memcpy_able<T>) {
            std::uint64_t n = 0;
            const char* p = bytes.data() + sizeof n;
            if (bytes.size() >= sizeof n && reinterpret_cast<std::uintptr_t>(p) % alignof(T) == 0) {
                std::memcpy(&n, bytes.data(), sizeof n);
                if (n == (bytes.size() - sizeof n) / sizeof(T) &&
                    n * sizeof(T) == bytes.size() - sizeof n) {
                    auto* first = reinterpret_cast<const T*>(p);
                    R v;
                    v.reserve(n);
                    prepare_bulk_destination(v.data(), n * sizeof(T));
                    v.insert(v.end(), first, first + n);
                    return v;
                }
            }
        }
    }
    return wire::decode<R>(bytes);
}

// A value a worker lent (see lent_value), as the parent's sinks see it.
struct lent_ref {
    pid_t pid;
    lent_value v;
};
// Copies r's bytes into dst. `size_to(ctx, k)` makes the destination k elements long (each
// `elem` bytes; dst has room for all); it is called with growing k, in the calling thread, and
// each part is copied only once its elements exist. A big value is cut into parts so that
// sizing (which zero-fills) and copying run on two CPUs at once. False if a part cannot be
// read (see sys::read_process_memory).
bool copy_lent(const lent_ref& r, char* dst, std::size_t elem,
               void (*size_to)(void* ctx, std::size_t elems), void* ctx);

// Builds the lent value in the parent: sized (and given huge pages) first, then filled with
// one copy straight from the worker. Empty when the worker's memory cannot be read (the
// worker then sends the value by memfd instead); protocol_error for sizes that do not fit R.
template <class R>
std::optional<R> fetch_lent(const lent_ref& r) {
    if constexpr (lendable<R>) {
        using T = typename R::value_type;
        R y;
        if (r.v.count > y.max_size() || r.v.bytes / sizeof(T) != r.v.count ||
            r.v.bytes % sizeof(T) != 0)
            throw protocol_error("parafork: a lent value's size does not match its type");
        y.reserve(static_cast<std::size_t>(r.v.count));
        prepare_bulk_destination(y.data(), static_cast<std::size_t>(r.v.bytes));
        // The storage does not move from here on: every size_to stays within the capacity.
        if (!copy_lent(r, reinterpret_cast<char*>(y.data()), sizeof(T),
                       [](void* ctx, std::size_t k) { static_cast<R*>(ctx)->resize(k); }, &y))
            return std::nullopt;
        return y;
    } else {
        return std::nullopt;
    }
}

// How an item failed, as the parent learned it.
struct failure_info {
    enum class kind : std::uint8_t { remote, died, timeout } what = kind::remote;
    std::string type_name, message;
    pid_t pid = 0;
    int signal = 0, code = 0;
};
// The exception for a failed item; `task` is the caller's index for it.
std::exception_ptr make_failure(const failure_info& f, std::size_t task);

class event_sink {
public:
    // `bytes` holds count encoded values (nothing for void); valid during the call only.
    virtual void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) = 0;
    virtual void on_failure(std::uint64_t index, const failure_info& f) = 0;
    // Item `index`'s value is lent by its worker (see fetch_lent). True once it is taken (or
    // dropped, if nobody wants it); false asks the worker to send it by memfd instead.
    virtual bool on_lent(std::uint64_t index, const lent_ref& r) {
        (void)index;
        (void)r;
        return false;
    }

protected:
    ~event_sink() = default;
};

struct job {
    msg kind = msg::range;
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    std::string body;                     // items / call: encoded arguments
    std::vector<std::uint32_t> offsets;   // items / call: where each item starts in body
    std::uint32_t prefix = 0;             // call: bytes of call_prefix at the body's front
    unsigned tries = 0;                   // re-runs spent on this job's items
    unsigned unstarted = 0;               // workers lost holding it before it started
};

struct worker;

class engine {
public:
    using clock = std::chrono::steady_clock;

    // Forks the workers now. `runner`/`ctx` serve range and items jobs (may be null for pools).
    engine(const options& o, job_runner runner, void* ctx, std::uint64_t total_items = 0);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    unsigned size() const noexcept { return jobs_; }
    std::size_t queued() const noexcept { return queue_.size(); }
    std::size_t in_flight() const noexcept;
    bool idle() const noexcept { return queue_.empty() && in_flight() == 0; }
    bool stopped() const noexcept { return stopped_; }
    std::uint64_t answered() const noexcept { return done_; }  // items answered or failed

    void push(job j) { queue_.push_back(std::move(j)); }
    // Drops queued jobs whose items lie in [lo, hi); returns how many items were dropped.
    std::uint64_t drop_queued(std::uint64_t lo, std::uint64_t hi);

    // Dispatches what it can and waits for at least one event (or `deadline`), delivering every
    // event received to `sink`. Returns false at once when nothing is queued or in flight.
    // SIGINT meanwhile: stops every worker and throws parafork::interrupted. A worker_init
    // that threw is rethrown here (remote_error naming worker_init) and the workers are
    // stopped; a worker that cannot be replaced (fork failed) throws std::system_error, with
    // the work it held queued again (a later pump tries the fork again).
    bool pump(event_sink& sink, std::optional<clock::time_point> deadline = std::nullopt);

    // Rethrows what made the workers unable to start (see pump), if anything did.
    void rethrow_fatal();

    // Hands queued jobs to idle workers without waiting for anything.
    void kick();

    // Lets the workers finish: no new jobs; each worker runs worker_exit and exits once its
    // pipe closes. Blocks until all are reaped (runs pump until idle first). SIGINT meanwhile
    // (even in a worker_exit that hangs): stops every worker and throws parafork::interrupted.
    void join(event_sink& sink);
    // SIGTERM to every worker, `grace`, then SIGKILL; reaps all.
    void terminate() noexcept;

    // The progress bar's denominator: items answered so far plus those a call now expects.
    void set_total(std::uint64_t total) noexcept { total_ = total; }
    void expect_more(std::uint64_t items) noexcept { total_ = done_ + items; }

private:
    void spawn(std::size_t slot);
    void respawn_missing();
    void dispatch();
    void send(worker& w, job&& j);
    bool flush_out(worker& w);
    long read_from(worker& w, event_sink& sink);
    // The worker's pidfd says it is gone: reads what it left in the pipe, then reports it.
    void exited(worker& w, event_sink& sink);
    bool drain(std::size_t slot, event_sink& sink);
    void handle_frame(worker& w, std::string_view frame, event_sink& sink);
    // Every whole frame read so far; one that throws leaves the others handled (a worker may
    // wait on a verdict in one of them), and the first exception is rethrown after them.
    void handle_frames(worker& w, event_sink& sink);
    void lost(worker& w, event_sink& sink, const failure_info& why);
    // Fails (or, with retries left, re-queues) item `at` of `rest`; the others run again.
    void blame(job&& rest, std::uint32_t at, event_sink& sink, const failure_info& why);
    void wait_for_exits();
    void advance(worker& w, std::uint32_t n);
    void requeue_front(job&& j);
    void draw_progress(bool final);

    options opts_;
    job_runner runner_;
    void* ctx_;
    unsigned jobs_;
    std::vector<std::unique_ptr<worker>> workers_;
    std::deque<job> queue_;
    bool stopped_ = false;
    bool closing_ = false;
    std::exception_ptr fatal_;            // the workers cannot start (worker_init threw, ...)
    clock::time_point last_event_{};      // the last job sent or answer read (spin or sleep)
    std::uint64_t total_ = 0, done_ = 0;
    clock::time_point started_{}, last_draw_{};
    bool progress_tty_ = false;
    std::size_t launches_ = 0;
    std::vector<struct pollfd> pollfds_;
    // Whose descriptor each pollfds_ entry after the first is: slot and launch number.
    std::vector<std::pair<unsigned, std::size_t>> polled_;
};

} // namespace parafork::detail

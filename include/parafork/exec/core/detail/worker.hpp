#pragma once
// The worker's side of the engine's wire (internal): what templates of pool, forked and map run
// in a worker, and the results stream they write. The frames themselves are the engine's own
// (src/exec/core/); nothing here knows of the parent's side.

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <parafork/exec/core/executor.hpp>
#include <parafork/wire/codec.hpp>
#include <parafork/wire/descriptors.hpp>

namespace parafork::detail {

// Frame kinds on the engine's pipes; the job kinds are job_kind's values.
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
    spent = 17,     // worker -> parent, after a range or items job's answers: the job's count
                    // items took body = u64 nanoseconds of this worker's time (chunk sizing)
};

static_assert(static_cast<int>(msg::range) == static_cast<int>(job_kind::range) &&
              static_cast<int>(msg::items) == static_cast<int>(job_kind::items) &&
              static_cast<int>(msg::call) == static_cast<int>(job_kind::call));

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
    // One value already encoded (see put_value): copied into the batch, or sent as a memfd.
    void encoded(std::uint64_t index, std::string_view bytes);
    // Notes that item `index` starts now, where the parent reads it if this process dies.
    void start(std::uint64_t index) noexcept {
        if (running_) __atomic_store_n(running_, index + 1, __ATOMIC_RELAXED);
    }
    // Call from a catch block: reports the exception in flight as item `index`'s failure.
    void fail_current(std::uint64_t index) noexcept;
    // Notes that `count` items took `ns` nanoseconds of this worker's time (a note, no item).
    void spent(std::uint32_t count, std::uint64_t ns);
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

} // namespace parafork::detail

#pragma once
// parafork::pool over MPI ranks: persistent workers on every rank, forked when the pool is made
// (from the MPI-free program), fed by rank 0. Every rank makes the same calls (SPMD):
//
//   auto& w = parafork::mpi::init();
//   parafork::mpi::pool p(w, o);                     // every rank forks o.jobs workers
//   auto f = p.submit(&fib, 30);                     // rank 0: a future; other ranks: no state
//   auto v = p.map(&fib, xs);                        // rank 0: input order; others: empty
//   for (auto&& y : p.imap(&fib, xs)) ...            // rank 0 iterates; others serve, get none
//   for (auto&& [i, y] : p.imap_unordered(&fib, xs)) ...
//   if (w.root()) use(f.get());
//   p.close(); p.join();                             // every rank
//
// Functions go by name: a task carries its function as offsets into the loaded object (same
// binary on every rank), and a pointer that names no code of a loaded object throws before any
// work is sent. map / imap are collective: every rank has the items, only index ranges go out,
// and each rank's program encodes its own items for its workers (imap over an input range that
// is not sized and random access: rank 0 alone reads it, and its items travel encoded, one task
// each). A map's journal (call_options) keeps its answers on rank 0. submit is rank 0's alone: its
// arguments travel (encoded by the codec) to rank 0's own workers or to a rank that is inside a
// pool call (map, imap, join) and so serving. See docs/scale-out.md, "pool over MPI".

#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/exec/core/future.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/mpi/forked.hpp>
#include <parafork/mpi/world.hpp>

namespace parafork::mpi {
namespace detail {

// Rank 0's record of one call of an mpi::pool: where its answers go. On other ranks a range
// call's record only encodes items (encode).
class pool_call {
public:
    virtual ~pool_call() = default;
    virtual void values(std::uint64_t local, std::uint32_t count, std::string_view bytes) = 0;
    virtual void failed(std::uint64_t local, std::exception_ptr e) = 0;
    // Range calls: items [first, first + count) of this rank's own copy as a local call job.
    virtual void encode(std::uint64_t first, std::uint32_t count, parafork::detail::job& j) {
        (void)first;
        (void)count;
        (void)j;
    }

    std::uint64_t base = 0;
    std::uint64_t first_task = 0;              // errors name item i as task first_task + i
    std::uint64_t total = 0;                   // range calls: items in the range
    std::uint64_t handed = 0, answered = 0;    // items given to workers / answered
    bool sealed = false;                       // nothing more will be handed out
    bool abandoned = false;                    // answers are dropped
    bool lazy = false;                         // imap: stay a bounded distance ahead of taken
    bool streamed = false;                     // rank 0 reads the items and sends them, one task each
    std::uint64_t taken = 0;
    bool finished() const noexcept { return sealed && answered == handed; }
};

// The engine of an mpi::pool (src/mpi/pool.cpp): this rank's local executor, and on rank 0
// the dispatch of tasks and chunks to it and to the ranks that serve.
class pool_engine final : public parafork::detail::future_driver {
public:
    pool_engine(world& w, const options& o);
    ~pool_engine();
    world& w;

    unsigned size() const noexcept;  // this rank's workers
    bool stopped() const noexcept;
    void terminate() noexcept;

    // Rank 0: one task, arguments encoded; `local_prefix` names the function here,
    // `remote_prefix` (remote_prefix()) on another rank.
    void submit(std::shared_ptr<pool_call> c, std::string local_prefix, std::string remote_prefix,
                std::string args);
    // Rank 0: item `id` (the call's base + its index) of the streamed call being made, as a task.
    void push(std::uint64_t id, const std::string& local_prefix, const std::string& remote_prefix, std::string args);
    unsigned ranks() const noexcept;
    // Every rank: a call over a range of `total` items (map, imap) or none (join, c null). On
    // rank 0 it opens the call and returns; it is then pumped and ended by finish(). On other
    // ranks it serves rank 0 until rank 0 ends the call, then returns (or throws rank 0's
    // failure as parafork::error). A journal (rank 0, map only: call_options::journal) first
    // gives `c` the values an earlier run kept, which are not handed out again, then keeps the
    // values answered; `code` names the call in it.
    void begin(std::shared_ptr<pool_call> c, std::string_view remote_prefix, std::uint64_t total,
               std::size_t chunksize, char kind, const std::string& journal = {}, const void* code = nullptr);
    // Rank 0: ends the current collective call on every rank. ok = false gives it up (chunks
    // not handed out are dropped; what ranks hold is answered and dropped first).
    void finish(bool ok, std::string_view why);
    // Rank 0: hands out work, waits (up to `deadline`) and delivers what arrived. False when
    // nothing is pending or in flight anywhere.
    bool pump(std::optional<clock::time_point> deadline = std::nullopt);
    void join();  // every rank: workers run worker_exit and exit

    // future_driver
    bool wait(const parafork::detail::answer_slot& slot, std::optional<clock::time_point> deadline) override;
    std::optional<clock::time_point> watch(std::vector<pollfd>& fds) override;
    bool poll() override;
    void interrupt() noexcept override { terminate(); }

    struct state;

private:
    std::unique_ptr<state> s_;
};

// The function of a task by name: trampoline and function as code refs (throws for a pointer
// that names no code of a loaded object).
void append_code_ref(std::string& out, const void* code);
template <class F, class Args>
std::string remote_prefix(const F& f) {
    std::string s;
    append_code_ref(s, reinterpret_cast<const void*>(&parafork::detail::call_trampoline_fn<F, Args, false>));
    if constexpr (std::is_pointer_v<F>) {
        s += '\1';
        append_code_ref(s, reinterpret_cast<const void*>(f));
    } else {  // a captureless lambda: its type says it all; its byte is copied as is
        s += '\0';
        s.push_back(static_cast<char>(sizeof(F)));
        s.append(reinterpret_cast<const char*>(&f), sizeof(F));
    }
    return s;
}

template <class F>
inline constexpr bool nameable_fn =
    std::is_trivially_copyable_v<F> &&
    ((std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
     (std::is_empty_v<F> && std::is_default_constructible_v<F>));

template <class R>
struct submit_call final : pool_call, parafork::detail::future_state<R> {
    void values(std::uint64_t, std::uint32_t count, std::string_view bytes) override {
        if (count != 1) throw protocol_error("parafork::mpi: a task answered more than one value");
        if constexpr (!std::is_void_v<R>) this->value = parafork::detail::decode_one<R>(bytes);
        this->done = true;
    }
    void failed(std::uint64_t, std::exception_ptr e) override { this->put_error(std::move(e)); }
};

enum class mode : std::uint8_t { vector, ordered, unordered };

// map / imap / imap_unordered over a sized random-access range every rank has.
template <class R, class F, class Args, class Range>
struct range_call final : pool_call {
    using value_t = std::conditional_t<std::is_void_v<R>, char, R>;
    struct item {
        std::optional<value_t> value;
        std::exception_ptr error;
    };
    range_call(mode m, const F& f, Range& r) : how(m), header(parafork::detail::call_header<F, Args, false>(&f)), range(r) {}

    mode how;
    std::string header;
    Range& range;
    std::vector<value_t> out;                 // vector mode
    std::exception_ptr first_error;           // vector mode
    std::map<std::uint64_t, item> ordered;    // ordered mode
    std::deque<std::pair<std::size_t, item>> unordered;

    void encode(std::uint64_t first, std::uint32_t count, parafork::detail::job& j) override {
        j.kind = parafork::detail::job_kind::call;
        j.count = count;
        j.body = header;
        j.prefix = static_cast<std::uint32_t>(header.size());
        auto it = std::ranges::begin(range) + static_cast<std::ptrdiff_t>(first);
        for (std::uint32_t k = 0; k < count; ++k, ++it) {
            j.offsets.push_back(static_cast<std::uint32_t>(j.body.size()));
            parafork::detail::outgoing_fds().clear();
            wire::encode_to(j.body, *it);
            parafork::detail::refuse_descriptors("pool task arguments");
        }
    }
    void values(std::uint64_t local, std::uint32_t count, std::string_view bytes) override {
        if (local + count > total) throw protocol_error("parafork::mpi: an answer past its call");
        if constexpr (!std::is_void_v<R>) {
            if (count == 1) return store(local, parafork::detail::decode_one<R>(bytes));
        }
        wire::reader r(bytes);
        for (std::uint32_t k = 0; k < count; ++k) {
            value_t y{};
            if constexpr (!std::is_void_v<R>) r.read(y);
            store(local + k, std::move(y));
        }
        if (r.remaining() != 0) wire::reader::fail("trailing bytes after a run of values");
    }
    void store(std::uint64_t i, value_t&& y) {
        if (how == mode::vector) {
            if (out.size() != total) out.resize(static_cast<std::size_t>(total));
            out[static_cast<std::size_t>(i)] = std::move(y);
        } else {
            put(i, item{std::move(y), nullptr});
        }
    }
    void failed(std::uint64_t local, std::exception_ptr e) override {
        if (how == mode::vector) {
            if (!first_error) first_error = std::move(e);
        } else {
            put(local, item{std::nullopt, std::move(e)});
        }
    }
    void put(std::uint64_t i, item&& it) {
        if (how == mode::ordered) ordered.emplace(i, std::move(it));
        else unordered.emplace_back(static_cast<std::size_t>(i), std::move(it));
    }
};

// imap / imap_unordered over an input range that is not sized and random access: rank 0 alone
// reads it, as the consumer goes, and sends each item encoded as a task (as submit's).
template <class R, class F, class Args, class Range>
struct stream_call final : pool_call {
    using value_t = std::conditional_t<std::is_void_v<R>, char, R>;
    struct item {
        std::optional<value_t> value;
        std::exception_ptr error;
    };
    stream_call(mode m, const F& f, Range& r)
        : how(m), local(parafork::detail::call_header<F, Args, false>(&f)), remote(remote_prefix<F, Args>(f)),
          it(std::ranges::begin(r)), end(std::ranges::end(r)) {
        streamed = true;
    }

    mode how;
    std::string local, remote;
    std::ranges::iterator_t<Range> it;
    std::ranges::sentinel_t<Range> end;
    std::map<std::uint64_t, item> ordered;
    std::deque<std::pair<std::size_t, item>> unordered;

    // Reads and sends items while fewer than `ahead` are handed out and not taken.
    void feed(pool_engine& e, std::uint64_t ahead) {
        while (!sealed && handed - taken < ahead) {
            if (it == end) {
                sealed = true;
                return;
            }
            std::string args;
            parafork::detail::encode_arg(args, *it);
            ++it;
            e.push(base + handed, local, remote, std::move(args));
            ++handed;
        }
    }
    void values(std::uint64_t i, std::uint32_t count, std::string_view bytes) override {
        if (count != 1) throw protocol_error("parafork::mpi: a task answered more than one value");
        value_t y{};
        if constexpr (!std::is_void_v<R>) y = parafork::detail::decode_one<R>(bytes);
        put(i, item{std::move(y), nullptr});
    }
    void failed(std::uint64_t i, std::exception_ptr e) override { put(i, item{std::nullopt, std::move(e)}); }
    void put(std::uint64_t i, item&& x) {
        if (how == mode::ordered) ordered.emplace(i, std::move(x));
        else unordered.emplace_back(static_cast<std::size_t>(i), std::move(x));
    }
};

template <class Call>
inline constexpr bool streamed_call = requires(Call& c, pool_engine& e) { c.feed(e, 1); };

// What imap / imap_unordered return on rank 0 (lazy; the call ends at its end or when it is
// destroyed) and, empty, on the other ranks (which served the whole call before getting it).
template <class R, class Call, bool Ordered>
class imap_sequence {
    using value_t = std::conditional_t<Ordered, R, std::pair<std::size_t, R>>;

public:
    imap_sequence(std::shared_ptr<pool_engine> eng, std::shared_ptr<Call> st)
        : eng_(std::move(eng)), st_(std::move(st)), at_end_(!st_) {}
    imap_sequence(const imap_sequence&) = delete;
    imap_sequence& operator=(const imap_sequence&) = delete;
    ~imap_sequence() {
        if (st_ && !ended_) {
            try {
                eng_->finish(true, {});  // rank 0 left the loop early: the rest is dropped
            } catch (...) {  // the engine is stopped or a rank is gone: nothing more to tell
            }
        }
    }

    using iterator = parafork::detail::pull_iterator<imap_sequence, value_t>;
    using sentinel = parafork::detail::pull_sentinel;
    iterator begin() { return iterator(this); }
    sentinel end() { return {}; }
    bool done() const noexcept { return at_end_; }

private:
    friend iterator;
    value_t& current() {
        if (error_) std::rethrow_exception(error_);
        return *cur_;
    }
    // The call ends on every rank (this rank's own failure is rethrown by the caller).
    void give_up(std::string_view why) noexcept {
        ended_ = true;
        try {
            eng_->finish(false, why);
        } catch (...) {
        }
    }
    void fetch() {
        cur_.reset();
        error_ = nullptr;
        if (at_end_) return;
        std::optional<sys::sigint_guard> ctrl_c;  // made only when a wait is due: it costs syscalls
        for (;;) {
            try {
                // A streamed call reads its input here: the consumer's pace bounds it.
                if constexpr (streamed_call<Call>) st_->feed(*eng_, 4 * std::uint64_t{eng_->size()} * eng_->ranks());
            } catch (...) {
                give_up("reading the imap's input failed on rank 0");
                throw;
            }
            // Every item is known once the call is sealed: a range's at the start, a stream's at its end.
            const auto all = streamed_call<Call> ? st_->handed : st_->total;
            const bool known = !streamed_call<Call> || st_->sealed;
            if constexpr (Ordered) {
                auto it = st_->ordered.find(next_);
                if (it != st_->ordered.end()) {
                    take(next_, std::move(it->second));
                    st_->ordered.erase(it);
                    ++next_;
                    return;
                }
                if (known && next_ == all) break;
            } else {
                if (!st_->unordered.empty()) {
                    auto [i, res] = std::move(st_->unordered.front());
                    st_->unordered.pop_front();
                    take(i, std::move(res));
                    return;
                }
                if (known && st_->taken == all) break;
            }
            try {
                if (!ctrl_c) ctrl_c.emplace();
                if (!eng_->pump()) throw error("parafork::mpi: the pool lost items of an imap");
            } catch (...) {
                give_up("the imap failed on rank 0");
                throw;
            }
        }
        at_end_ = ended_ = true;
        eng_->finish(true, {});
    }
    void take(std::size_t i, typename Call::item&& res) {
        ++st_->taken;
        error_ = res.error;
        if (error_) return;
        if constexpr (Ordered) cur_.emplace(std::move(*res.value));
        else cur_.emplace(i, std::move(*res.value));
    }

    std::shared_ptr<pool_engine> eng_;
    std::shared_ptr<Call> st_;
    std::optional<value_t> cur_;
    std::exception_ptr error_;
    std::uint64_t next_ = 0;
    bool at_end_ = false, ended_ = false;
};

} // namespace detail

class pool {
public:
    // Every rank: forks this rank's o.jobs workers now.
    explicit pool(world& w, const options& o = {}) : eng_(std::make_shared<detail::pool_engine>(w, o)), opts_(o) {}
    ~pool() { terminate(); }
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;

    unsigned size() const noexcept { return eng_->size(); }  // this rank's workers

    // Rank 0: runs f(args...) on some rank's worker and returns its future. Other ranks: does
    // nothing and returns a future with no state (valid() is false); they run rank 0's tasks
    // while they are in a pool call (map, imap, join).
    template <class F, class... A>
    auto submit(F f, A&&... args) {
        static_assert(detail::nameable_fn<F>,
                      "parafork::mpi::pool::submit needs a function named by address: a free function "
                      "or a captureless lambda");
        using Args = std::tuple<parafork::detail::arg_t<A>...>;
        using R = parafork::detail::apply_result_t<F, Args>;
        check_open();
        if (!eng_->w.root()) return future<R>();
        auto remote = detail::remote_prefix<F, Args>(f);  // throws before any work: unnamed code
        std::string args_bytes;
        (parafork::detail::encode_arg(args_bytes, args), ...);
        auto st = std::make_shared<detail::submit_call<R>>();
        st->task = submitted_++;
        st->first_task = st->task;
        eng_->submit(st, parafork::detail::call_header<F, Args, false>(&f), std::move(remote), std::move(args_bytes));
        return future<R>(std::move(st), eng_);
    }

    // Every rank: f over every item of a sized random-access range every rank has. Rank 0 gets
    // the results in input order (the first failure cancels the rest and throws); the other
    // ranks serve and get an empty vector (or parafork::error if rank 0's call failed).
    template <class F, std::ranges::random_access_range Range>
        requires std::ranges::sized_range<Range>
    auto map(F f, Range&& items) {
        static_assert(detail::nameable_fn<F>, "parafork::mpi::pool::map needs a function named by address");
        return map_impl<F, parafork::detail::item_args_t<Range>>(f, items, opts_.chunksize, {});
    }
    template <class F, std::ranges::random_access_range Range>
        requires std::ranges::sized_range<Range>
    auto starmap(F f, Range&& tuples) {
        static_assert(detail::nameable_fn<F>, "parafork::mpi::pool::starmap needs a function named by address");
        using Args = typename parafork::detail::as_tuple<std::ranges::range_value_t<Range>>::type;
        return map_impl<F, Args>(f, tuples, opts_.chunksize, {});
    }
    // map and starmap with a journal (o.journal, a file on rank 0), as mpi::map's: the values
    // answered are kept there as they arrive, and a rerun of the same program takes from it
    // what an earlier run kept and hands out only the rest (docs/scale-out.md, "The journal").
    // Of `o`, only journal and chunksize (when not 0) apply: the workers are the pool's.
    template <class F, std::ranges::random_access_range Range>
        requires std::ranges::sized_range<Range>
    auto map(F f, Range&& items, const call_options& o) {
        static_assert(detail::nameable_fn<F>, "parafork::mpi::pool::map needs a function named by address");
        return map_impl<F, parafork::detail::item_args_t<Range>>(f, items, o.chunksize ? o.chunksize : opts_.chunksize,
                                                                 o.journal);
    }
    template <class F, std::ranges::random_access_range Range>
        requires std::ranges::sized_range<Range>
    auto starmap(F f, Range&& tuples, const call_options& o) {
        static_assert(detail::nameable_fn<F>, "parafork::mpi::pool::starmap needs a function named by address");
        using Args = typename parafork::detail::as_tuple<std::ranges::range_value_t<Range>>::type;
        return map_impl<F, Args>(f, tuples, o.chunksize ? o.chunksize : opts_.chunksize, o.journal);
    }
    // Every rank: on rank 0 a lazy sequence of the results in input order (each item's error
    // thrown at it); the call ends on every rank when rank 0's sequence ends or is destroyed.
    // Other ranks serve the whole call inside imap and get an empty sequence. `items` must
    // outlive the sequence.
    template <class F, std::ranges::random_access_range Range>
        requires std::ranges::sized_range<Range>
    auto imap(F f, Range& items) {
        static_assert(detail::nameable_fn<F>, "parafork::mpi::pool::imap needs a function named by address");
        return lazy<F, parafork::detail::item_args_t<Range>, true>(f, items);
    }
    // As imap, in completion order, each result with its index.
    template <class F, std::ranges::random_access_range Range>
        requires std::ranges::sized_range<Range>
    auto imap_unordered(F f, Range& items) {
        static_assert(detail::nameable_fn<F>, "parafork::mpi::pool::imap_unordered needs a function named by address");
        return lazy<F, parafork::detail::item_args_t<Range>, false>(f, items);
    }
    // imap and imap_unordered over an input range that is not sized and random access (a
    // filtered view, an endless iota, a stream): rank 0 alone reads it, only as far as its
    // consumer goes (a bounded number of items ahead), and each item travels encoded with the
    // codec, as a task of its own. The other ranks serve; their `items` is not read (pass an
    // empty range of the same type). Every item travels: a sized random-access range, which
    // every rank has, is cheaper.
    template <class F, std::ranges::input_range Range>
        requires(!(std::ranges::random_access_range<Range> && std::ranges::sized_range<Range>))
    auto imap(F f, Range& items) {
        static_assert(detail::nameable_fn<F>, "parafork::mpi::pool::imap needs a function named by address");
        return stream<F, parafork::detail::item_args_t<Range>, true>(f, items);
    }
    template <class F, std::ranges::input_range Range>
        requires(!(std::ranges::random_access_range<Range> && std::ranges::sized_range<Range>))
    auto imap_unordered(F f, Range& items) {
        static_assert(detail::nameable_fn<F>, "parafork::mpi::pool::imap_unordered needs a function named by address");
        return stream<F, parafork::detail::item_args_t<Range>, false>(f, items);
    }

    void close() noexcept { closed_ = true; }
    // Every rank, after close(): rank 0 waits for every task submitted; the other ranks serve
    // until then. Then every rank's workers run worker_exit and exit.
    void join() {
        if (!closed_) throw error("parafork::mpi: pool::join needs close() first");
        if (eng_->stopped()) return;
        eng_->begin(nullptr, {}, 0, 0, 'J');
        if (eng_->w.root()) {
            try {
                while (eng_->pump()) {
                }
            } catch (const std::exception& e) {
                eng_->finish(false, e.what());
                throw;
            }
            eng_->finish(true, {});
        }
        eng_->join();
    }
    // Stops this rank's workers now; rank 0's waiting futures then throw.
    void terminate() noexcept {
        closed_ = true;
        if (eng_) eng_->terminate();
    }

private:
    void check_open() const {
        if (closed_) throw error("parafork::mpi: the pool is closed");
    }

    template <class F, class Args, class Range>
    auto map_impl(F f, Range& items, std::size_t chunksize, const std::string& journal) {
        using R = parafork::detail::apply_result_t<F, Args>;
        static_assert(!std::is_void_v<R>, "parafork::mpi::pool::map needs a function returning a value");
        using call_t = detail::range_call<R, F, Args, std::remove_reference_t<Range>>;
        check_open();
        auto st = std::make_shared<call_t>(detail::mode::vector, f, items);
        const auto n = static_cast<std::uint64_t>(std::ranges::size(items));
        // In a journal the call is named by its function: the function itself when it is a
        // pointer, else its trampoline (one for each captureless lambda's type).
        const void* code = nullptr;
        if constexpr (std::is_pointer_v<F>) code = reinterpret_cast<const void*>(f);
        else code = reinterpret_cast<const void*>(&parafork::detail::call_trampoline_fn<F, Args, false>);
        eng_->begin(st, detail::remote_prefix<F, Args>(f), n, chunksize, 'M', journal, code);
        if (!eng_->w.root()) return std::vector<R>();
        sys::sigint_guard ctrl_c;
        try {
            while (!st->first_error && !st->finished())
                if (!eng_->pump()) throw error("parafork::mpi: the pool lost items of a map");
        } catch (const std::exception& e) {
            eng_->finish(false, e.what());
            throw;
        }
        if (st->first_error) {
            std::string why = "a task failed";
            try {
                std::rethrow_exception(st->first_error);
            } catch (const std::exception& e) {
                why = e.what();
            } catch (...) {
            }
            eng_->finish(false, why);
            std::rethrow_exception(st->first_error);
        }
        eng_->finish(true, {});
        st->out.resize(static_cast<std::size_t>(n));
        return std::move(st->out);
    }

    template <class F, class Args, bool Ordered, class Range>
    auto lazy(F f, Range& items) {
        using R = parafork::detail::apply_result_t<F, Args>;
        using call_t = detail::range_call<R, F, Args, Range>;
        using seq_t = detail::imap_sequence<R, call_t, Ordered>;
        check_open();
        auto st = std::make_shared<call_t>(Ordered ? detail::mode::ordered : detail::mode::unordered, f, items);
        st->lazy = true;
        eng_->begin(st, detail::remote_prefix<F, Args>(f), static_cast<std::uint64_t>(std::ranges::size(items)),
                    opts_.chunksize, Ordered ? 'I' : 'U');
        return seq_t(eng_, eng_->w.root() ? std::move(st) : nullptr);
    }

    template <class F, class Args, bool Ordered, class Range>
    auto stream(F f, Range& items) {
        using R = parafork::detail::apply_result_t<F, Args>;
        using call_t = detail::stream_call<R, F, Args, Range>;
        using seq_t = detail::imap_sequence<R, call_t, Ordered>;
        check_open();
        auto remote = detail::remote_prefix<F, Args>(f);  // throws before any work: unnamed code
        std::shared_ptr<call_t> st;
        if (eng_->w.root()) st = std::make_shared<call_t>(Ordered ? detail::mode::ordered : detail::mode::unordered, f, items);
        eng_->begin(st, remote, 0, 1, Ordered ? 'S' : 'T');
        return seq_t(eng_, std::move(st));
    }

    std::shared_ptr<detail::pool_engine> eng_;
    options opts_;
    std::size_t submitted_ = 0;
    bool closed_ = false;
};

} // namespace parafork::mpi

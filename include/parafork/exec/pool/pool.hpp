#pragma once
// pool: persistent pre-forked workers (Python's multiprocessing.Pool, snakefish's map).
//
//   pf::pool p(o);
//   pf::future<int> f = p.submit(&square, 7);     int r = f.get();
//   std::vector<int> v = p.map(&square, items);    // input order; first error cancels + throws
//   for (auto&& r : p.imap(&square, items)) ...    // lazy, input order; an item's error at it
//   for (auto&& [i, r] : p.imap_unordered(&square, items)) ...   // completion order
//   p.close(); p.join();                           // or p.terminate(); the destructor terminates
//
//   pf::pool q([&table](int i) { return table[i]; }, o);   // around one callable, may capture
//   q.apply(3).get();  q.map(items);  q.imap(items);
//
// The workers fork when the pool is made, so a task cannot carry code: it names its function by
// address. Free functions, captureless lambdas and member pointers work (the child is the same
// binary, so the address means the same code there); a capturing lambda cannot be sent (its
// captures live in the parent's memory after the fork) — build the pool around it instead.
// Arguments and results cross by the codec. Waiting (get, iteration, map) runs the pool.

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <parafork/exec/core/future.hpp>
#include <parafork/exec/core/detail/calls.hpp>
#include <parafork/exec/core/detail/results.hpp>
#include <parafork/exec/core/detail/worker.hpp>
#include <parafork/exec/core/options.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork {
namespace detail {

// A function that can be named by address across fork: its bytes are all there is to it.
template <class F>
inline constexpr bool sendable_fn =
    std::is_trivially_copyable_v<F> &&
    ((std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
     std::is_member_pointer_v<F> || (std::is_empty_v<F> && std::is_default_constructible_v<F>));

template <class F, class Args>
struct apply_result;
template <class F, class... A>
struct apply_result<F, std::tuple<A...>> {
    using type = std::decay_t<std::invoke_result_t<F&, A&&...>>;
};
template <class F, class Args>
using apply_result_t = typename apply_result<F, Args>::type;

// Runs in a worker: the parent sent this function's address (instantiated in the parent, the
// same code in the child). Bound: ctx is the pool's callable; else F's bytes lead the arguments.
template <class F, class Args, bool Bound>
void call_trampoline_fn(const void* ctx, std::uint64_t first, std::uint32_t count,
                        wire::reader& r, kid_output& out) {
    using R = apply_result_t<F, Args>;
    alignas(F) unsigned char raw[sizeof(F)];
    F* fp;
    if constexpr (Bound) {
        fp = const_cast<F*>(static_cast<const F*>(ctx));
    } else {
        r.read_bytes(raw, sizeof(F));
        fp = std::launder(reinterpret_cast<F*>(raw));
    }
    for (std::uint32_t k = 0; k < count; ++k) {
        auto i = first + k;
        out.start(i);  // from here a death of this worker is this item's
        Args args{};
        r.read(args);
        try {
            auto call = [fp](auto&&... a) -> decltype(auto) {
                return std::invoke(*fp, std::move(a)...);
            };
            if constexpr (std::is_void_v<R>) {
                std::apply(call, args);
                out.value_void(i);
            } else {
                out.value(i, std::apply(call, args));
            }
        } catch (...) {
            out.fail_current(i);
        }
    }
}

// The bytes every job of one call starts with: trampoline, context, function bytes.
template <class F, class Args, bool Bound>
std::string call_header(const F* f) {
    std::string h;
    call_prefix p{&call_trampoline_fn<F, Args, Bound>, Bound ? static_cast<const void*>(f) : nullptr};
    h.append(reinterpret_cast<const char*>(&p), sizeof p);
    if constexpr (!Bound) h.append(reinterpret_cast<const char*>(f), sizeof(F));
    return h;
}

// Arguments as the worker receives them: a C string travels (and arrives) as a std::string.
template <class A>
using arg_t = std::conditional_t<
    std::is_same_v<std::decay_t<A>, const char*> || std::is_same_v<std::decay_t<A>, char*>,
    std::string, std::decay_t<A>>;
template <class A>
void encode_arg(std::string& out, const A& a) {
    outgoing_fds().clear();
    if constexpr (std::is_same_v<arg_t<A>, std::string> && !std::is_same_v<std::decay_t<A>, std::string>)
        wire::encode_to(out, std::string_view(a));
    else
        wire::encode_to(out, a);
    refuse_descriptors("pool task arguments");
}

template <class R>
struct item_result {
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
    std::exception_ptr error;
};

enum class store_mode : std::uint8_t { vector, ordered, unordered };

// Answers of a map / imap / imap_unordered call, kept the way its reader wants them.
template <class R>
struct stream_state final : call_state {
    explicit stream_state(store_mode m) : mode(m) {}
    store_mode mode;
    std::vector<std::conditional_t<std::is_void_v<R>, char, R>>* out = nullptr;  // vector mode
    std::exception_ptr first_error;
    std::map<std::uint64_t, item_result<R>> ordered;                      // ordered mode
    std::deque<std::pair<std::size_t, item_result<R>>> unordered;          // unordered mode

    void values(std::uint64_t local, std::uint32_t count, std::string_view bytes) override {
        if constexpr (!std::is_void_v<R>) {
            if (count == 1) {  // one value, maybe a large one: decode it in one pass
                store_one(local, decode_one<R>(bytes));
                return;
            }
        }
        wire::reader r(bytes);
        for (std::uint32_t k = 0; k < count; ++k) {
            item_result<R> res;
            if constexpr (!std::is_void_v<R>) {
                R y{};
                r.read(y);
                if (mode == store_mode::vector) {
                    if (out->size() <= local + k) out->resize(local + k + 1);
                    (*out)[local + k] = std::move(y);
                    continue;
                }
                res.value = std::move(y);
            } else {
                if (mode == store_mode::vector) continue;
                res.value = true;
            }
            put(local + k, std::move(res));
        }
        if (r.remaining() != 0) wire::reader::fail("trailing bytes after a run of values");
    }
    bool lent(std::uint64_t local, const lent_ref& r) override {
        if constexpr (lendable<R>) {
            auto y = fetch_lent<R>(r);
            if (!y) return false;
            store_one(local, std::move(*y));
            return true;
        }
        return false;
    }
    void store_one(std::uint64_t local, std::conditional_t<std::is_void_v<R>, char, R>&& y) {
        if (mode == store_mode::vector) {
            if (out->size() <= local) out->resize(local + 1);
            (*out)[local] = std::move(y);
        } else {
            item_result<R> res;
            if constexpr (std::is_void_v<R>) res.value = true;
            else res.value = std::move(y);
            put(local, std::move(res));
        }
    }
    void failed(std::uint64_t local, const failure_info& f) override {
        item_result<R> res;
        res.error = make_failure(f, local);
        if (mode == store_mode::vector) {
            if (!first_error) first_error = res.error;
            return;
        }
        put(local, std::move(res));
    }
    void put(std::uint64_t i, item_result<R>&& res) {
        if (mode == store_mode::ordered) ordered.emplace(i, std::move(res));
        else unordered.emplace_back(static_cast<std::size_t>(i), std::move(res));
    }
};

// Pulls a range lazily into chunked call jobs for one call.
template <class F, class Args, bool Bound, class View>
class feeder {
public:
    feeder(pool_core& core, call_state& st, const F* f, View& view, std::size_t chunksize)
        : core_(core), st_(st), header_(call_header<F, Args, Bound>(f)), view_(view),
          chunksize_(chunksize) {}

    // Queues chunks until enough are outstanding; seals the call at the range's end.
    void fill() {
        if (st_.sealed) return;
        if (!it_) it_.emplace(std::ranges::begin(view_));
        const unsigned jobs = core_.eng->size();
        auto end = std::ranges::end(view_);
        for (;;) {
            std::uint64_t chunk = chunksize_ ? chunksize_ : auto_chunk();
            if (*it_ == end) {
                core_.seal(st_);
                return;
            }
            std::uint64_t behind = st_.lazy ? st_.taken : st_.answered;
            if (st_.pushed - behind >= chunk * 3 * jobs) return;
            job j;
            j.kind = job_kind::call;
            j.first = next_;
            j.body = header_;
            j.prefix = static_cast<std::uint32_t>(header_.size());
            while (*it_ != end && j.count < chunk) {
                j.offsets.push_back(static_cast<std::uint32_t>(j.body.size()));
                encode_item(j.body, **it_);
                ++j.count;
                ++*it_;
            }
            next_ += j.count;
            core_.push(st_, std::move(j));
        }
    }
    std::uint64_t pushed() const noexcept { return next_; }

private:
    template <class Item>
    static void encode_item(std::string& body, const Item& x) {
        // A single argument goes as itself; starmap items already are tuples.
        outgoing_fds().clear();
        wire::encode_to(body, x);
        refuse_descriptors("pool task arguments");
    }
    std::uint64_t auto_chunk() const {
        if constexpr (std::ranges::sized_range<View>) {
            auto n = static_cast<std::uint64_t>(std::ranges::size(view_));
            return std::clamp<std::uint64_t>(n / (std::uint64_t{core_.eng->size()} * 8), 1, 4096);
        } else {
            return std::clamp<std::uint64_t>(next_ / (std::uint64_t{core_.eng->size()} * 4), 1, 1024);
        }
    }

    pool_core& core_;
    call_state& st_;
    std::string header_;
    View& view_;
    std::size_t chunksize_;
    std::optional<std::ranges::iterator_t<View>> it_;
    std::uint64_t next_ = 0;
};

// The input iterator of a sequence that yields its items one at a time (the imap of pool and of
// mpi::pool): Seq has fetch() (to the next item), current() (the item; its error, such as
// remote_error, worker_died or timeout_error, is thrown here) and done().
struct pull_sentinel {};
template <class Seq, class V>
class pull_iterator {
public:
    using value_type = V;
    using difference_type = std::ptrdiff_t;
    pull_iterator() = default;
    explicit pull_iterator(Seq* s) : s_(s) { s_->fetch(); }
    V& operator*() const { return s_->current(); }
    pull_iterator& operator++() {
        s_->fetch();
        return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const pull_iterator& it, pull_sentinel) { return it.s_->done(); }

private:
    Seq* s_ = nullptr;
};

// The lazy sequence imap / imap_unordered return. Not movable: it holds iterators into itself.
// Range is what the caller passed: an lvalue is referred to (it must outlive the sequence), an
// rvalue is kept inside. (No std::views here: they keep the header usable where <ranges> views
// do not compile, e.g. clang 14 with libstdc++ 12.)
template <class R, class F, class Args, bool Bound, class Range, bool Ordered>
class imap_sequence {
    using View = std::remove_reference_t<Range>;
    using holder_t = std::conditional_t<std::is_lvalue_reference_v<Range>, View*, View>;
    static View& held(View* p) { return *p; }
    static View& held(View& v) { return v; }
    using value_t = std::conditional_t<Ordered, R, std::pair<std::size_t, R>>;

public:
    template <class In>
    imap_sequence(std::shared_ptr<pool_core> core, const F* f, In&& items, std::size_t chunksize)
        : core_(std::move(core)),
          st_(std::make_shared<stream_state<R>>(Ordered ? store_mode::ordered : store_mode::unordered)),
          view_(hold(std::forward<In>(items))), feed_(*core_, *st_, f, held(view_), chunksize) {
        st_->lazy = true;
        core_->open(st_);
    }
    imap_sequence(const imap_sequence&) = delete;
    imap_sequence& operator=(const imap_sequence&) = delete;
    ~imap_sequence() {
        if (!st_->finished() && !core_->eng->stopped()) core_->abandon(*st_);
    }

    using iterator = pull_iterator<imap_sequence, value_t>;
    using sentinel = pull_sentinel;
    iterator begin() { return iterator(this); }
    sentinel end() { return {}; }
    bool done() const noexcept { return at_end_; }

private:
    friend iterator;
    value_t& current() {
        if (cur_.error) std::rethrow_exception(cur_.error);
        return *cur_value_;
    }
    // Moves to the next answer (in input order, or as they come), pumping the pool as needed.
    void fetch() {
        sys::sigint_guard ctrl_c;
        cur_value_.reset();
        cur_.error = nullptr;
        for (;;) {
            feed_.fill();
            if constexpr (Ordered) {
                auto it = st_->ordered.find(next_);
                if (it != st_->ordered.end()) {
                    take(next_, std::move(it->second));
                    st_->ordered.erase(it);
                    ++next_;
                    return;
                }
                if (st_->sealed && next_ == feed_.pushed()) break;
            } else {
                if (!st_->unordered.empty()) {
                    auto [i, res] = std::move(st_->unordered.front());
                    st_->unordered.pop_front();
                    take(i, std::move(res));
                    return;
                }
                if (st_->finished()) break;
            }
            if (!core_->pump()) throw error("parafork: the pool lost items of an imap");
        }
        at_end_ = true;
    }
    void take(std::size_t i, item_result<R>&& res) {
        ++st_->taken;
        cur_.error = res.error;
        if (res.error) return;
        if constexpr (Ordered) cur_value_.emplace(std::move(*res.value));
        else cur_value_.emplace(i, std::move(*res.value));
    }

    std::shared_ptr<pool_core> core_;
    std::shared_ptr<stream_state<R>> st_;
    template <class In>
    static holder_t hold(In&& items) {
        if constexpr (std::is_pointer_v<holder_t>) return &items;
        else return holder_t(std::forward<In>(items));
    }

    holder_t view_;
    feeder<F, Args, Bound, View> feed_;
    item_result<R> cur_;
    std::optional<value_t> cur_value_;
    std::uint64_t next_ = 0;
    bool at_end_ = false;
};

template <class Range>
using item_args_t = std::tuple<std::ranges::range_value_t<Range>>;

template <class T>
struct is_tuple : std::false_type {};
template <class... A>
struct is_tuple<std::tuple<A...>> : std::true_type {};
template <class A, class B>
struct is_tuple<std::pair<A, B>> : std::true_type {};

template <class T>
struct as_tuple {
    using type = T;
};
template <class A, class B>
struct as_tuple<std::pair<A, B>> {
    using type = std::tuple<A, B>;
};

} // namespace detail

template <class Fn = void>
class pool {
public:
    explicit pool(const options& o = {})
        requires std::is_void_v<Fn>
        : core_(std::make_shared<detail::pool_core>(o)), opts_(o) {}

    // A pool around one callable, which may capture anything: the workers fork after it exists.
    template <class G>
        requires(!std::is_void_v<Fn> && std::is_same_v<G, Fn>)
    explicit pool(G fn, const options& o = {})
        : fn_(std::make_unique<Fn>(std::move(fn))), core_(std::make_shared<detail::pool_core>(o)),
          opts_(o) {}

    ~pool() { terminate(); }
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;
    pool(pool&&) noexcept = default;
    pool& operator=(pool&& o) noexcept {
        if (this != &o) {
            terminate();
            fn_ = std::move(o.fn_);
            core_ = std::move(o.core_);
            opts_ = std::move(o.opts_);
            closed_ = o.closed_;
        }
        return *this;
    }

    unsigned size() const noexcept { return core_->eng->size(); }

    // Runs f(args...) in a worker.
    template <class F, class... A>
    auto submit(F f, A&&... args) {
        static_assert(detail::sendable_fn<F>,
                      "parafork::pool::submit needs a function named by address: a free function, "
                      "a captureless lambda or a member pointer. Capturing lambdas cannot cross a "
                      "fork made earlier; build the pool around the callable instead.");
        return submit_impl<F, false>(&f, std::forward<A>(args)...);
    }
    // For a pool built around a callable: runs it with args in a worker.
    template <class... A>
        requires(!std::is_void_v<Fn>)
    auto apply(A&&... args) {
        return submit_impl<Fn, true>(fn_.get(), std::forward<A>(args)...);
    }

    // f over every item, results in input order. The first failure cancels the rest and throws.
    template <class F, std::ranges::input_range Range>
    auto map(F f, Range&& items) {
        static_assert(detail::sendable_fn<F>, "parafork::pool::map needs a function named by address");
        return map_impl<F, detail::item_args_t<Range>, false>(&f, std::forward<Range>(items));
    }
    template <std::ranges::input_range Range>
        requires(!std::is_void_v<Fn>)
    auto map(Range&& items) {
        return map_impl<Fn, detail::item_args_t<Range>, true>(fn_.get(), std::forward<Range>(items));
    }
    template <class F, std::ranges::input_range Range>
    auto starmap(F f, Range&& tuples) {
        static_assert(detail::sendable_fn<F>, "parafork::pool::starmap needs a function named by address");
        using args = typename detail::as_tuple<std::ranges::range_value_t<Range>>::type;
        return map_impl<F, args, false>(&f, std::forward<Range>(tuples));
    }

    template <class F, std::ranges::input_range Range>
    auto imap(F f, Range&& items) {
        static_assert(detail::sendable_fn<F>, "parafork::pool::imap needs a function named by address");
        return lazy<F, detail::item_args_t<Range>, false, true>(&f, std::forward<Range>(items));
    }
    template <std::ranges::input_range Range>
        requires(!std::is_void_v<Fn>)
    auto imap(Range&& items) {
        return lazy<Fn, detail::item_args_t<Range>, true, true>(fn_.get(), std::forward<Range>(items));
    }
    template <class F, std::ranges::input_range Range>
    auto imap_unordered(F f, Range&& items) {
        static_assert(detail::sendable_fn<F>, "parafork::pool::imap_unordered needs a function named by address");
        return lazy<F, detail::item_args_t<Range>, false, false>(&f, std::forward<Range>(items));
    }
    template <std::ranges::input_range Range>
        requires(!std::is_void_v<Fn>)
    auto imap_unordered(Range&& items) {
        return lazy<Fn, detail::item_args_t<Range>, true, false>(fn_.get(), std::forward<Range>(items));
    }

    // No more work will be submitted.
    void close() noexcept { closed_ = true; }
    // Waits for all submitted work, then for the workers to run worker_exit and exit.
    void join() {
        if (!closed_) throw error("parafork: pool::join needs close() first");
        if (!core_->eng->stopped()) core_->eng->join(*core_);
    }
    // Stops the workers now (SIGTERM, grace, SIGKILL); waiting futures then throw.
    void terminate() noexcept {
        closed_ = true;
        if (core_) core_->eng->terminate();
    }

private:
    void check_open() const {
        if (closed_) throw error("parafork: the pool is closed");
    }

    template <class F, bool Bound, class... A>
    auto submit_impl(const F* f, A&&... args) {
        check_open();
        using Args = std::tuple<detail::arg_t<A>...>;
        using R = detail::apply_result_t<F, Args>;
        auto st = std::make_shared<detail::submit_state<R>>();
        st->task = core_->submitted++;
        core_->open(st);
        detail::job j;
        j.kind = detail::job_kind::call;
        j.count = 1;
        j.body = detail::call_header<F, Args, Bound>(f);
        j.prefix = static_cast<std::uint32_t>(j.body.size());
        j.offsets.push_back(j.prefix);
        (detail::encode_arg(j.body, args), ...);
        core_->push(*st, std::move(j));
        core_->seal(*st);
        core_->eng->kick();  // start it now: hand it to an idle worker
        return future<R>(std::move(st), core_);
    }

    template <class F, class Args, bool Bound, class Range>
    auto map_impl(const F* f, Range&& items) {
        check_open();
        using R = detail::apply_result_t<F, Args>;
        static_assert(!std::is_void_v<R>, "parafork::pool::map needs a function returning a value");
        std::vector<R> out;
        if constexpr (std::ranges::sized_range<Range>) {
            out.resize(static_cast<std::size_t>(std::ranges::size(items)));
            core_->eng->expect_more(out.size());  // progress: done/total for this map
        }
        auto st = std::make_shared<detail::stream_state<R>>(detail::store_mode::vector);
        st->out = &out;
        core_->open(st);
        sys::sigint_guard ctrl_c;  // held for the whole call: Ctrl-C anywhere in it is ours
        detail::feeder<F, Args, Bound, std::remove_reference_t<Range>> feed(*core_, *st, f, items,
                                                                          opts_.chunksize);
        try {
            for (;;) {
                feed.fill();
                if (st->first_error || st->finished()) break;
                if (!core_->pump()) break;
            }
        } catch (...) {
            if (!core_->eng->stopped()) core_->abandon(*st);
            throw;
        }
        if (st->first_error) {
            core_->abandon(*st);
            std::rethrow_exception(st->first_error);
        }
        // Every item answered, and as many as the result holds (a sized range whose size() is
        // more than it yields would leave default values at the end): never a short result.
        if (!st->finished() || out.size() != st->pushed) {
            if (!st->finished()) core_->abandon(*st);
            throw error("parafork: pool::map: " + std::to_string(st->answered) + " of " +
                        std::to_string(st->pushed) + " items answered for a result of " +
                        std::to_string(out.size()) + (st->finished() ? "" : " (call not finished)"));
        }
        return out;
    }

    template <class F, class Args, bool Bound, bool Ordered, class Range>
    auto lazy(const F* f, Range&& items) {
        check_open();
        using R = detail::apply_result_t<F, Args>;
        return detail::imap_sequence<R, F, Args, Bound, Range, Ordered>(
            core_, f, std::forward<Range>(items), opts_.chunksize);
    }

    std::unique_ptr<std::conditional_t<std::is_void_v<Fn>, char, Fn>> fn_;
    std::shared_ptr<detail::pool_core> core_;
    options opts_;
    bool closed_ = false;
};

template <class G>
    requires(!std::is_convertible_v<G, options>)
pool(G) -> pool<G>;
template <class G>
pool(G, const options&) -> pool<G>;

} // namespace parafork

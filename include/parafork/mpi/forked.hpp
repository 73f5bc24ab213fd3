#pragma once
// parafork::forked, parafork::map and parafork::starmap over MPI ranks. Every rank makes the same call with the
// same sized random-access range (SPMD); rank 0 hands out index ranges as ranks ask for them,
// each rank runs its chunks in its own local workers (forked from the MPI-free program), and
// only results travel back. Results arrive at rank 0 in input order (map) or through `join`
// (forked), with the local calls' error types; other ranks' map returns an empty vector.
//
//   auto& w = parafork::mpi::init();
//   std::vector<double> v = parafork::mpi::map(w, [](int x) { return f(x); }, xs);
//   parafork::mpi::forked(w, xs, body, [&](std::size_t i, R&& r) { ... });   // join on rank 0
//
// With a journal (call_options::journal, a file on rank 0), the values answered are kept as
// they arrive, so a rerun of the same program after a failed call (a rank lost, say) computes
// only what is missing (docs/scale-out.md, "The journal").

#include <cstring>
#include <exception>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include <parafork/exec/forked/forked.hpp>
#include <parafork/mpi/world.hpp>

namespace parafork::mpi {

// The options of a call over ranks: the local ones (each rank's workers), and rank 0's journal.
// Each call also takes plain options (then no journal).
struct call_options : parafork::options {
    // A file on rank 0 ("": none). Each call of the program keeps there the values it was
    // answered, and a later run of the same program (same binary, same calls, same sizes) takes
    // them from it instead of computing them again. Results lent by a worker (too large for a
    // message) are not kept: they are computed again.
    std::string journal{};
};

namespace detail {

// What rank 0's call delivers answers to (every rank's, local or remote).
class call_sink {
public:
    virtual void values(std::uint64_t first, std::uint32_t count, std::string_view bytes) = 0;
    virtual void fail(std::exception_ptr e) = 0;  // keeps the first
    virtual bool lent(std::uint64_t index, const parafork::detail::lent_ref& r) = 0;
    virtual bool failed() const noexcept = 0;
    virtual std::exception_ptr error() const noexcept = 0;
    virtual bool backed_up() const noexcept = 0;

protected:
    ~call_sink() = default;
};

template <class Sink>
class sink_adapter final : public call_sink {
public:
    explicit sink_adapter(Sink& s) : s_(s) {}
    void values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override {
        s_.on_values(first, count, bytes);
    }
    void fail(std::exception_ptr e) override {
        if (!s_.error) s_.error = std::move(e);
    }
    bool lent(std::uint64_t index, const parafork::detail::lent_ref& r) override { return s_.on_lent(index, r); }
    bool failed() const noexcept override { return bool(s_.error); }
    std::exception_ptr error() const noexcept override { return s_.error; }
    bool backed_up() const noexcept override { return s_.backed_up(); }

private:
    Sink& s_;
};

// Runs one call over every rank: `local` is this rank's executor (its workers run `code` on
// the caller's range); `sink` is rank 0's (null elsewhere). Rethrows the call's first failure
// on rank 0; on other ranks throws when rank 0 abandons the call.
void run_call(world& w, parafork::detail::executor& local, call_sink* sink, const code_ref& ref,
              const void* code, std::uint64_t total, const call_options& o);

template <class F>
const void* code_address(F* fn) noexcept {
    return reinterpret_cast<const void*>(fn);
}

} // namespace detail

template <std::ranges::random_access_range Range, class Body, class Join>
    requires std::ranges::sized_range<Range>
void forked(world& w, Range&& range, Body&& body, Join&& join, const call_options& o) {
    using range_t = std::remove_reference_t<Range>;
    using body_t = std::remove_reference_t<Body>;
    using kid_t = parafork::detail::forked_kid<range_t, body_t>;
    using R = typename kid_t::R;
    // The call is named by its code: each rank checks it makes the same call, in the same
    // build, before any work starts.
    const void* code = detail::code_address(&kid_t::run);
    const auto ref = detail::to_code_ref(code);
    const auto total = static_cast<std::uint64_t>(std::ranges::size(range));
    kid_t kid{&range, &body};
    sys::sigint_guard ctrl_c;
    const auto eng = parafork::detail::make_local_executor(o, &kid_t::run, &kid, w.root() ? total : 0);
    parafork::detail::forked_sink<R, std::remove_reference_t<Join>> sink(join, o.ordered);
    detail::sink_adapter<decltype(sink)> adapter(sink);
    detail::run_call(w, *eng, w.root() ? &adapter : nullptr, ref, code, total, o);
    if (sink.error) std::rethrow_exception(sink.error);
}

// Rank 0 gets f over every item, in input order; the other ranks get an empty vector.
template <class F, std::ranges::random_access_range Range>
    requires std::ranges::sized_range<Range>
auto map(world& w, F&& f, Range&& range, const call_options& o) {
    using item_t = std::ranges::range_reference_t<Range>;
    using R = std::decay_t<std::invoke_result_t<F&, item_t>>;
    static_assert(!std::is_void_v<R>, "parafork::mpi::map needs a function that returns a value; "
                                      "use parafork::mpi::forked for void bodies");
    std::vector<R> out;
    const auto n = static_cast<std::size_t>(std::ranges::size(range));
    auto body = [&f](auto&& x) -> R { return std::invoke(f, std::forward<decltype(x)>(x)); };
    if constexpr (wire::detail::memcpy_able<R>) {
        struct bulk_join {
            std::vector<R>& out;
            std::size_t n;
            void operator()(std::size_t i, R&& y) {
                if (out.size() != n) out.resize(n);
                out[i] = std::move(y);
            }
            void bulk(std::uint64_t first, std::uint32_t count, std::string_view bytes) {
                if (bytes.size() != std::size_t{count} * sizeof(R) || first + count > n)
                    wire::reader::fail("a run of values does not fit its place");
                if (out.size() != n) out.resize(n);
                std::memcpy(out.data() + first, bytes.data(), bytes.size());
            }
        };
        forked(w, range, body, bulk_join{out, n}, o);
    } else {
        forked(w, range, body, [&out, n](std::size_t i, R&& y) {
            if (out.size() != n) out.resize(n);
            out[i] = std::move(y);
        }, o);
    }
    if (w.root()) out.resize(n);
    return out;
}

// map with each item a tuple of arguments: rank 0 gets std::apply(f, tuples[i]).
template <class F, std::ranges::random_access_range Range>
    requires std::ranges::sized_range<Range>
auto starmap(world& w, F&& f, Range&& tuples, const call_options& o) {
    return mpi::map(w, [&f](auto&& t) { return std::apply(f, std::forward<decltype(t)>(t)); },
                    std::forward<Range>(tuples), o);
}

// The same calls with plain options: no journal.
template <std::ranges::random_access_range Range, class Body, class Join>
    requires std::ranges::sized_range<Range>
void forked(world& w, Range&& range, Body&& body, Join&& join, const options& o = {}) {
    mpi::forked(w, std::forward<Range>(range), std::forward<Body>(body), std::forward<Join>(join), call_options{o});
}

template <class F, std::ranges::random_access_range Range>
    requires std::ranges::sized_range<Range>
auto map(world& w, F&& f, Range&& range, const options& o = {}) {
    return mpi::map(w, std::forward<F>(f), std::forward<Range>(range), call_options{o});
}

template <class F, std::ranges::random_access_range Range>
    requires std::ranges::sized_range<Range>
auto starmap(world& w, F&& f, Range&& tuples, const options& o = {}) {
    return mpi::starmap(w, std::forward<F>(f), std::forward<Range>(tuples), call_options{o});
}

} // namespace parafork::mpi

#pragma once
// Multi-process pipelines (mpyx's EZ): every stage is its own process, stages are joined by
// bounded shared queues, and the graph is checked when it is built.
//
//   struct AddX : pf::stage<int> { int amount; void process(int n) { put(n + amount); } };
//   pf::ez(pf::iter(1, 6), AddX{{}, 10}, pf::print()).join();   // prints 11..15
//
// Graph: ez(a, b, c) and serial(...) chain stages; parallel(...) / as<S>(n, args...) /
// workers(n, x) are competing workers on one queue; broadcast(...) / by<S>(n, args...) give
// every branch every item; zip(...) merges broadcast branches per item; an ez is a stage too.
// A stage is a function U(T) (one output per input; void: a sink) or a class deriving from
// stage<U> with any of initialize() (parent, before fork), setup() (child; a source puts here
// and calls stop()), process(T), teardown() (child, after the input is drained), and put(u),
// stop(), meta(), xcut<Q>(name).
//
// Faults: an exception in any stage, or a stage killed from outside, stops every process of
// the graph; join() / list() / items() then throw remote_error or worker_died naming the stage.

#include <iostream>
#include <iterator>
#include <utility>
#include <string>
#include <vector>

#include <parafork/error.hpp>
#include <parafork/exec/pipeline/detail/types.hpp>

namespace parafork {

// The items a pipeline puts out of its last stage, lazily, in the parent. A loop that breaks
// leaves the graph running; the pipeline's destructor stops it.
template <class T>
class item_range {
public:
    class iterator {
    public:
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(item_range* r) : r_(r) {}
        T& operator*() const { return r_->cur_; }
        T* operator->() const { return &r_->cur_; }
        iterator& operator++() {
            if (!r_->advance()) r_ = nullptr;
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(std::default_sentinel_t) const noexcept { return r_ == nullptr; }

    private:
        item_range* r_ = nullptr;
    };

    explicit item_range(detail::runtime* rt) : rt_(rt) {}
    item_range(item_range&& o) noexcept
        : rt_(std::exchange(o.rt_, nullptr)), cur_(std::move(o.cur_)), meta_(std::move(o.meta_)) {}
    item_range& operator=(item_range&&) = delete;
    iterator begin() {
        if (!advance()) return iterator();
        return iterator(this);
    }
    std::default_sentinel_t end() const noexcept { return {}; }
    // The meta map that came with the current item.
    const meta_map& meta() const noexcept { return meta_; }

private:
    bool advance() {
        detail::record_view r;
        if (!rt_->next_output(r)) return false;
        cur_ = wire::decode<T>(r.payload);
        if (r.flags & detail::rec_meta) meta_ = wire::decode<meta_map>(r.meta);
        else if (!meta_.empty()) meta_.clear();
        return true;
    }
    detail::runtime* rt_;
    T cur_{};
    meta_map meta_;
};

template <class In, class Out>
class pipeline;

// items() of a temporary pipeline (`for (auto x : ez(...).items())`): the range keeps the
// pipeline alive for as long as the loop runs.
template <class T>
class owning_item_range {
public:
    explicit owning_item_range(pipeline<void, T>&& p);
    auto begin() { return r_.begin(); }
    std::default_sentinel_t end() const noexcept { return {}; }
    const meta_map& meta() const noexcept { return r_.meta(); }

private:
    pipeline<void, T> p_;  // declared first: destroyed after the range has said how it ended
    item_range<T> r_;
};

// A built graph. In is what its first stage takes (void: it begins with a source, so it can
// run on its own); Out is what its last stage puts (void: it ends in sinks).
template <class In, class Out>
class pipeline {
public:
    using in_type = In;
    using out_type = Out;
    using pipeline_tag = void;

    explicit pipeline(std::shared_ptr<detail::node_spec> root) : root_(std::move(root)) {}
    pipeline(pipeline&&) noexcept = default;
    pipeline& operator=(pipeline&&) = delete;
    pipeline(const pipeline&) = delete;
    pipeline& operator=(const pipeline&) = delete;

    // Not run to its end (join(), or items() read to the end): stops every process by the
    // shared stop policy (SIGTERM, one grace period for all, SIGKILL). Never waits for the
    // graph, never prints; output nobody read is dropped.
    ~pipeline() { stop(); }

    // Attaches a side pipeline: every stage of this graph can put into it through
    // xcut<Q>(name); it starts with this one and ends when all of this graph's stages have.
    template <class Q, class O2>
    pipeline& xcut(std::string name, const pipeline<Q, O2>& side) & {
        static_assert(!std::is_void_v<Q>, "parafork: an xcut pipeline must take input (no source first)");
        static_assert(std::is_void_v<O2>, "parafork: an xcut pipeline must end in sinks");
        root_->xcuts.push_back({std::move(name), typeid(Q), side.spec()});
        return *this;
    }
    template <class Q, class O2>
    pipeline&& xcut(std::string name, const pipeline<Q, O2>& side) && {
        return std::move(xcut(std::move(name), side));
    }
    // A watcher process prints each queue's depth and items/s to stderr while this runs.
    pipeline& watch(bool on = true) & {
        opts_.watch = on;
        return *this;
    }
    pipeline&& watch(bool on = true) && { return std::move(watch(on)); }
    // The destructor always stops the graph now; kept so that code calling it still builds.
    pipeline& daemonize(bool = true) & { return *this; }
    pipeline&& daemonize(bool on = true) && { return std::move(daemonize(on)); }
    // Process titles are <name>:<stage>.
    pipeline& named(std::string n) & {
        opts_.name = std::move(n);
        return *this;
    }
    pipeline&& named(std::string n) && { return std::move(named(std::move(n))); }

    pipeline&& start() && { return std::move(start()); }
    pipeline& start() & {
        static_assert(std::is_void_v<In>,
                      "parafork: only a graph that begins with a source stage can run on its own");
        if (rt_) throw std::logic_error("parafork: pipeline already started");
        opts_.has_output = !std::is_void_v<Out>;
        opts_.out_type = typeid(Out);
        rt_ = std::make_unique<detail::runtime>(root_, opts_);
        rt_->start();
        return *this;
    }
    // Waits until every stage has finished (starting the graph first if needed); output
    // nobody reads is discarded. Throws remote_error / worker_died for a failed stage.
    void join() {
        if (!rt_) start();
        rt_->join();
    }
    // Ends every process now.
    void stop() noexcept {
        if (rt_) rt_->stop();
    }
    bool started() const noexcept { return rt_ && rt_->started(); }
    bool finished() const noexcept { return rt_ && rt_->finished(); }

    // The output, lazily, as it comes (starts the graph if needed).
    item_range<Out> items() &
        requires(!std::is_void_v<Out>)
    {
        if (!rt_) start();
        return item_range<Out>(rt_.get());
    }
    // Of a temporary: the range owns the pipeline.
    owning_item_range<Out> items() &&
        requires(!std::is_void_v<Out>)
    {
        if (!rt_) start();
        return owning_item_range<Out>(std::move(*this));
    }
    // The whole output once the graph has finished.
    std::vector<Out> list()
        requires(!std::is_void_v<Out>)
    {
        std::vector<Out> v;
        for (auto& x : items()) v.push_back(std::move(x));
        return v;
    }

    // The graph as nested text: serial(iter, parallel(mul2, mul2), print).
    std::string graph() const { return detail::describe(*root_); }
    // Every process and queue, one per line (dot = true: Graphviz DOT).
    void print_layout(std::ostream& os = std::cout, bool dot = false) const {
        if (rt_) {
            rt_->print_layout(os, dot);
            return;
        }
        auto o = opts_;
        o.has_output = !std::is_void_v<Out>;
        o.out_type = typeid(Out);
        detail::runtime(root_, o).print_layout(os, dot);
    }
    // The stage processes (empty before start).
    std::vector<pid_t> pids() const { return rt_ ? rt_->pids() : std::vector<pid_t>{}; }

    const std::shared_ptr<detail::node_spec>& spec() const noexcept { return root_; }

private:
    template <class T>
    friend class owning_item_range;

    std::shared_ptr<detail::node_spec> root_;
    std::unique_ptr<detail::runtime> rt_;
    detail::run_options opts_;
};

template <class T>
owning_item_range<T>::owning_item_range(pipeline<void, T>&& p) : p_(std::move(p)), r_(p_.rt_.get()) {}

// True when a stage of type X (a stage class or a callable) can take items of type T: the
// check a graph applies, at compile time, to every pair of connected stages.
template <class X, class T>
concept accepts = detail::stage_accepts<std::decay_t<X>, T>();

template <class... X>
auto serial(X&&... x) {
    return detail::serial_expr<detail::stored_t<X>...>{{detail::store(std::forward<X>(x))...}};
}
template <class... X>
auto parallel(X&&... x) {
    return detail::parallel_expr<detail::stored_t<X>...>{{detail::store(std::forward<X>(x))...}};
}
template <class... X>
auto broadcast(X&&... x) {
    return detail::broadcast_expr<detail::stored_t<X>...>{{detail::store(std::forward<X>(x))...}};
}
// Every branch gets every item; the outputs of one input are put as one tuple. Each branch
// must put exactly one item per input, in order (functions and serial chains of them do).
template <class... X>
auto zip(X&&... x) {
    return detail::zip_expr<detail::stored_t<X>...>{{detail::store(std::forward<X>(x))...}};
}
// n stages S(args...) as competing workers (mpyx's As).
template <class S, class... A>
auto as(std::size_t n, A&&... args) {
    static_assert(detail::class_stage<S>, "parafork: as<S> takes a stage class");
    return detail::copies_of_expr<S, std::decay_t<A>...>{n, false, {std::forward<A>(args)...}};
}
// n stages S(args...) that each get every item (mpyx's By).
template <class S, class... A>
auto by(std::size_t n, A&&... args) {
    static_assert(detail::class_stage<S>, "parafork: by<S> takes a stage class");
    return detail::copies_of_expr<S, std::decay_t<A>...>{n, true, {std::forward<A>(args)...}};
}
// n copies of one stage (a function or a stage object) as competing workers.
template <class X>
auto workers(std::size_t n, X&& x) {
    return detail::workers_expr<detail::stored_t<X>>{n, detail::store(std::forward<X>(x))};
}
// A stage with a name of your choosing (graph, layout, watch, errors, process titles).
template <class X>
auto named(std::string name, X&& x) {
    return detail::named_expr<detail::stored_t<X>>{std::move(name), detail::store(std::forward<X>(x))};
}

// Builds a graph: its arguments run in series.
template <class... X>
auto ez(X&&... x) {
    auto r = detail::resolve<detail::unknown_t>(serial(std::forward<X>(x)...));
    using R = decltype(r);
    return pipeline<typename R::in_type, typename R::out_type>(r.spec);
}

} // namespace parafork

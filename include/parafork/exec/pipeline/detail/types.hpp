#pragma once
// Compile-time side of pipelines (internal): stage bases, leaves, and the resolution that walks
// a graph expression left to right, giving each stage the type its upstream puts. A mismatch
// between connected stages is a static_assert here, never a surprise mid-stream.

#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeindex>
#include <utility>
#include <vector>

#include <parafork/exec/pipeline/detail/graph.hpp>

namespace parafork {

template <class Q>
class xcut_handle;

namespace detail {

// What every class stage derives from (through parafork::stage<Out>).
class stage_base {
public:
    // Ends this stage: in setup() the stage will not read input (how a source says it is done);
    // in process() after the current item. teardown() still runs.
    void stop() noexcept {
        if (ctx_) ctx_->stopped = true;
    }
    bool stopped() const noexcept { return ctx_ && ctx_->stopped; }
    // The current item's meta map: set entries before put() and they travel with what is put.
    meta_map& meta() {
        if (!ctx_) throw std::logic_error("parafork: meta() is available in the stage's process only");
        return ctx_->meta;
    }
    // Sends whatever is batched now (a source that pauses between items may want this).
    void flush() {
        if (ctx_) ctx_->flush_all();
    }
    // The side pipeline attached with xcut(name, ...); Q must be the type it takes.
    template <class Q>
    xcut_handle<Q> xcut(std::string_view name);
    // This stage's name in the graph ("AddX#1").
    std::string_view stage_name() const noexcept {
        return ctx_ ? std::string_view(ctx_->name) : std::string_view();
    }

    void attach_context(stage_context* c) noexcept { ctx_ = c; }

protected:
    bool room() const noexcept { return ctx_ && ctx_->room(); }
    stage_context* ctx_ = nullptr;
};

} // namespace detail

// Base of class stages. Out is what put() sends downstream; stage<> (Out = void) is a sink.
template <class Out = void>
class stage : public detail::stage_base {
public:
    using output_type = Out;

protected:
    template <class U>
        requires(!std::is_void_v<Out> && std::convertible_to<U &&, Out>)
    void put(U&& u) {
        if (!ctx_) throw std::logic_error("parafork: put() works in the stage's process only");
        if constexpr (std::is_same_v<std::remove_cvref_t<U>, Out>) {
            ctx_->put(static_cast<const Out&>(u));
        } else {
            const Out v(std::forward<U>(u));
            ctx_->put(v);
        }
    }
};

// A handle on a side pipeline (see pipeline::xcut): put(q) sends q to it.
template <class Q>
class xcut_handle {
public:
    xcut_handle() = default;
    void put(const Q& q) {
        if (!ctx_) throw std::logic_error("parafork: put() on an xcut handle that xcut<Q>(name) did not give");
        ctx_->put_xcut(k_, q);
    }

private:
    friend class detail::stage_base;
    xcut_handle(detail::stage_context* c, std::size_t k) : ctx_(c), k_(k) {}
    detail::stage_context* ctx_ = nullptr;
    std::size_t k_ = 0;
};

template <class Q>
xcut_handle<Q> detail::stage_base::xcut(std::string_view name) {
    if (!ctx_) throw std::logic_error("parafork: xcut() is available in the stage's process only");
    return xcut_handle<Q>(ctx_, ctx_->find_xcut(name, typeid(Q)));
}

template <class In, class Out>
class pipeline;

namespace detail {

struct unknown_t {};  // "whatever the first stage takes"
template <class T>
inline constexpr bool is_unknown = std::is_same_v<T, unknown_t>;

template <class In, class Out>
struct resolved {
    using in_type = In;
    using out_type = Out;
    std::shared_ptr<node_spec> spec;
};

template <class S>
concept class_stage = std::derived_from<S, stage_base>;

// Marks the library's sources that can begin in the parent (leaf_base::fill_in_parent).
struct parent_source {};
template <class S>
concept parent_fillable = std::derived_from<S, parent_source> && requires(S& s) {
    { s.fill_in_parent() } -> std::same_as<bool>;
};

// Argument and result of a one-argument function, member function or call operator.
template <class M>
struct sig {
    static constexpr bool known = false;
};
#define PARAFORK_SIG(Q)                                               \
    template <class C, class R, class A>                              \
    struct sig<R (C::*)(A) Q> {                                       \
        static constexpr bool known = true;                           \
        using arg = A;                                                \
        using ret = R;                                                \
    };
PARAFORK_SIG()
PARAFORK_SIG(const)
PARAFORK_SIG(noexcept)
PARAFORK_SIG(const noexcept)
PARAFORK_SIG(&)
PARAFORK_SIG(const&)
#undef PARAFORK_SIG
template <class R, class A>
struct sig<R (*)(A)> {
    static constexpr bool known = true;
    using arg = A;
    using ret = R;
};
template <class R, class A>
struct sig<R (*)(A) noexcept> {
    static constexpr bool known = true;
    using arg = A;
    using ret = R;
};

template <class F>
consteval bool callable_sig_known() {
    if constexpr (std::is_pointer_v<F>) return sig<F>::known;
    else if constexpr (requires { &F::operator(); }) return sig<decltype(&F::operator())>::known;
    else return false;
}
template <class F>
struct callable_arg {
    using type = void;
};
template <class F>
    requires(std::is_pointer_v<F>)
struct callable_arg<F> {
    using type = std::remove_cvref_t<typename sig<F>::arg>;
};
template <class F>
    requires(!std::is_pointer_v<F> && requires { &F::operator(); })
struct callable_arg<F> {
    using type = std::remove_cvref_t<typename sig<decltype(&F::operator())>::arg>;
};

template <class S>
concept has_concrete_process = requires { &S::process; } && sig<decltype(&S::process)>::known;

template <class T>
std::type_index type_of() {
    return typeid(T);
}

// --- leaves -------------------------------------------------------------------------------

template <class S, class Wire>
struct class_leaf final : leaf_base {
    S s;
    explicit class_leaf(S x) : s(std::move(x)) {}
    void initialize() override {
        if constexpr (requires(S& t) { t.initialize(); }) s.initialize();
    }
    bool fills_in_parent() const noexcept override { return parent_fillable<S>; }
    bool fill_in_parent(stage_context& c) override {
        if constexpr (parent_fillable<S>) {
            s.attach_context(&c);
            bool done = s.fill_in_parent();
            s.attach_context(nullptr);
            return done;
        } else {
            return false;
        }
    }
    void run(stage_context& c) override {
        s.attach_context(&c);
        if constexpr (requires(S& t) { t.setup(); }) s.setup();
        if constexpr (!std::is_void_v<Wire>) {
            record_view r;
            while (!c.stopped && c.next_record(0, r)) {
                c.begin_item(r);
                Wire v = wire::decode<Wire>(r.payload);
                // process(T), process(const T&), process(T&) and process(T&&) all work.
                if constexpr (requires { s.process(std::move(v)); }) s.process(std::move(v));
                else s.process(v);
                c.end_item();
            }
        }
        c.end_input();
        if constexpr (requires(S& t) { t.teardown(); }) s.teardown();
    }
};

template <class F, class Wire, class Out>
struct fn_leaf final : leaf_base {
    F f;
    explicit fn_leaf(F x) : f(std::move(x)) {}
    decltype(auto) call(Wire& in) {
        if constexpr (std::is_invocable_v<F&, Wire&&>) return std::invoke(f, std::move(in));
        else return std::invoke(f, in);
    }
    void run(stage_context& c) override {
        record_view r;
        while (!c.stopped && c.next_record(0, r)) {
            c.begin_item(r);
            Wire in = wire::decode<Wire>(r.payload);
            if constexpr (std::is_void_v<Out>) {
                call(in);
            } else {
                const Out v = call(in);
                c.put(v);
            }
            c.end_item();
        }
    }
};

// Names shown by graph(), print_layout(), watch() and in errors.
template <class T>
std::string default_name() {
    std::string n = type_name(typeid(T));
    if (auto lt = n.find('<'); lt != std::string::npos) n.resize(lt);
    if (auto c = n.rfind("::"); c != std::string::npos) n.erase(0, c + 2);
    return n;
}

template <class L, class In, class Out>
std::shared_ptr<node_spec> leaf_node(std::shared_ptr<L> leaf, std::string name) {
    leaf->name = std::move(name);
    leaf->in = typeid(In);
    leaf->out = typeid(Out);
    auto n = make_leaf_node(std::move(leaf));
    n->in = typeid(In);
    n->out = typeid(Out);
    return n;
}

// --- resolution ---------------------------------------------------------------------------

template <class X>
struct resolver;

template <class Up, class X>
auto resolve(const X& x) {
    return resolver<X>::template apply<Up>(x);
}

// Built-in nodes whose types depend on the upstream type derive from this and provide
// `template <class Up> resolved<In, Out> resolve_as() const`.
struct custom_node {};

template <class Up, class S>
auto resolve_class(const S& s, std::string name) {
    using Out = typename S::output_type;
    if constexpr (has_concrete_process<S>) {
        using In = std::remove_cvref_t<typename sig<decltype(&S::process)>::arg>;
        static_assert(is_unknown<Up> || std::is_convertible_v<Up, In>,
                      "parafork: connected stages disagree on the item type: what the upstream "
                      "stage puts does not convert to this stage's process() parameter");
        using Wire = std::conditional_t<is_unknown<Up>, In, Up>;
        return resolved<Wire, Out>{
            leaf_node<class_leaf<S, Wire>, Wire, Out>(std::make_shared<class_leaf<S, Wire>>(s), std::move(name))};
    } else if constexpr (!is_unknown<Up> && requires(S& t, Up u) { t.process(std::move(u)); }) {
        return resolved<Up, Out>{
            leaf_node<class_leaf<S, Up>, Up, Out>(std::make_shared<class_leaf<S, Up>>(s), std::move(name))};
    } else {
        static_assert(is_unknown<Up>,
                      "parafork: this stage has no process(T) taking what its upstream puts; a "
                      "stage without process() is a source and must come first");
        return resolved<void, Out>{
            leaf_node<class_leaf<S, void>, void, Out>(std::make_shared<class_leaf<S, void>>(s), std::move(name))};
    }
}

// What f returns for an item: called with the item as an rvalue, or as an lvalue when its
// parameter is a non-const reference.
template <class F, class W>
inline constexpr bool callable_with = std::is_invocable_v<F&, W&&> || std::is_invocable_v<F&, W&>;
template <class F, class W>
using call_result_t = typename std::conditional_t<std::is_invocable_v<F&, W&&>, std::invoke_result<F&, W&&>,
                                                  std::invoke_result<F&, W&>>::type;

template <class Up, class F>
auto resolve_callable(const F& f, std::string name) {
    if constexpr (callable_sig_known<F>()) {
        using A = typename callable_arg<F>::type;
        static_assert(is_unknown<Up> || std::is_convertible_v<Up, A>,
                      "parafork: connected stages disagree on the item type: what the upstream "
                      "stage puts does not convert to this function's parameter");
        using Wire = std::conditional_t<is_unknown<Up>, A, Up>;
        using R = call_result_t<F, Wire>;
        using Out = std::conditional_t<std::is_void_v<R>, void, std::remove_cvref_t<R>>;
        return resolved<Wire, Out>{
            leaf_node<fn_leaf<F, Wire, Out>, Wire, Out>(std::make_shared<fn_leaf<F, Wire, Out>>(f), std::move(name))};
    } else {
        static_assert(!is_unknown<Up>,
                      "parafork: the input type of a generic callable cannot be deduced when it "
                      "comes first; give its parameter a concrete type");
        static_assert(callable_with<F, Up>, "parafork: this callable cannot take what its upstream stage puts");
        using R = call_result_t<F, Up>;
        using Out = std::conditional_t<std::is_void_v<R>, void, std::remove_cvref_t<R>>;
        return resolved<Up, Out>{
            leaf_node<fn_leaf<F, Up, Out>, Up, Out>(std::make_shared<fn_leaf<F, Up, Out>>(f), std::move(name))};
    }
}

// Whether stage X can take items of type T (the rule resolution enforces with static_assert).
template <class X, class T>
consteval bool stage_accepts() {
    if constexpr (class_stage<X>) {
        if constexpr (has_concrete_process<X>)
            return std::is_convertible_v<T, std::remove_cvref_t<typename sig<decltype(&X::process)>::arg>>;
        else return requires(X& s, T t) { s.process(std::move(t)); };
    } else if constexpr (callable_sig_known<X>()) {
        return std::is_convertible_v<T, typename callable_arg<X>::type>;
    } else {
        return callable_with<X, T>;
    }
}

template <class X>
struct resolver {
    template <class Up>
    static auto apply(const X& x) {
        if constexpr (std::is_base_of_v<custom_node, X>) return x.template resolve_as<Up>();
        else if constexpr (class_stage<X>) return resolve_class<Up>(x, default_name<X>());
        else return resolve_callable<Up>(x, "fn");
    }
};

// A named stage: named("resize", f).
template <class X>
struct named_expr {
    std::string name;
    X x;
};
template <class X>
struct resolver<named_expr<X>> {
    template <class Up>
    static auto apply(const named_expr<X>& e) {
        auto r = resolve<Up>(e.x);
        if (r.spec->leaf) r.spec->leaf->name = e.name;
        return r;
    }
};

// Output types of sibling branches that share one output queue: all the same, or sinks.
template <class... O>
struct merge_out;
template <>
struct merge_out<> {
    using type = void;
};
template <class O, class... Rest>
struct merge_out<O, Rest...> {
    using rest = typename merge_out<Rest...>::type;
    static_assert(std::is_void_v<O> || std::is_void_v<rest> || std::is_same_v<O, rest>,
                  "parafork: parallel/broadcast branches put different types into one queue");
    using type = std::conditional_t<std::is_void_v<O>, rest, O>;
};
template <class... I>
struct merge_in;
template <class I>
struct merge_in<I> {
    using type = I;
};
template <class I, class J, class... Rest>
struct merge_in<I, J, Rest...> {
    static_assert(std::is_same_v<I, J>, "parafork: parallel/broadcast branches take different types");
    using type = typename merge_in<J, Rest...>::type;
};

template <class... X>
struct serial_expr {
    std::tuple<X...> xs;
};
template <class... X>
struct parallel_expr {
    std::tuple<X...> xs;
    bool keep_order = false;
    // Deliver this group's outputs in input order (mpyx's Seq).
    parallel_expr ordered() const {
        parallel_expr e = *this;
        e.keep_order = true;
        return e;
    }
};
template <class... X>
struct broadcast_expr {
    std::tuple<X...> xs;
};
template <class... X>
struct zip_expr {
    std::tuple<X...> xs;
};
// n stages of type S made from args: in parallel (as) or broadcast (by).
template <class S, class... A>
struct copies_of_expr {
    std::size_t n;
    bool broadcast;
    std::tuple<A...> args;
    bool keep_order = false;
    copies_of_expr ordered() const {
        copies_of_expr e = *this;
        e.keep_order = true;
        return e;
    }
};
// n copies of one stage object, in parallel.
template <class X>
struct workers_expr {
    std::size_t n;
    X x;
    bool keep_order = false;
    workers_expr ordered() const {
        workers_expr e = *this;
        e.keep_order = true;
        return e;
    }
};

template <class Up, std::size_t I, class Tuple>
auto serial_fold(const Tuple& t, std::vector<std::shared_ptr<node_spec>>& out) {
    auto r = resolve<Up>(std::get<I>(t));
    out.push_back(r.spec);
    using O = typename decltype(r)::out_type;
    if constexpr (I + 1 == std::tuple_size_v<Tuple>) {
        return std::type_identity<O>{};
    } else {
        static_assert(!std::is_void_v<O>,
                      "parafork: a sink (a stage with no output) can only be the last of a chain");
        return serial_fold<O, I + 1>(t, out);
    }
}

template <class... X>
struct resolver<serial_expr<X...>> {
    template <class Up>
    static auto apply(const serial_expr<X...>& e) {
        static_assert(sizeof...(X) > 0, "parafork: an empty chain");
        using In = typename decltype(resolve<Up>(std::get<0>(e.xs)))::in_type;
        std::vector<std::shared_ptr<node_spec>> kids;
        auto out_tag = serial_fold<Up, 0>(e.xs, kids);
        using Out = typename decltype(out_tag)::type;
        if (kids.size() == 1) return resolved<In, Out>{kids[0]};
        return resolved<In, Out>{make_group_node(node_spec::kind::serial, std::move(kids), typeid(In), typeid(Out))};
    }
};

template <class Up, class Tuple, std::size_t... I>
auto resolve_each(const Tuple& t, std::index_sequence<I...>) {
    return std::make_tuple(resolve<Up>(std::get<I>(t))...);
}

template <class Up, node_spec::kind K, class... X>
auto resolve_group(const std::tuple<X...>& xs, bool ordered) {
    static_assert(sizeof...(X) > 0, "parafork: an empty group");
    auto rs = resolve_each<Up>(xs, std::index_sequence_for<X...>{});
    using In = typename merge_in<typename decltype(resolve<Up>(std::declval<const X&>()))::in_type...>::type;
    using Out = typename merge_out<typename decltype(resolve<Up>(std::declval<const X&>()))::out_type...>::type;
    std::vector<std::shared_ptr<node_spec>> kids;
    std::apply([&](auto&... r) { (kids.push_back(r.spec), ...); }, rs);
    auto n = make_group_node(K, std::move(kids), typeid(In), typeid(Out));
    n->ordered = ordered;
    return resolved<In, Out>{n};
}

template <class... X>
struct resolver<parallel_expr<X...>> {
    template <class Up>
    static auto apply(const parallel_expr<X...>& e) {
        return resolve_group<Up, node_spec::kind::parallel>(e.xs, e.keep_order);
    }
};
template <class... X>
struct resolver<broadcast_expr<X...>> {
    template <class Up>
    static auto apply(const broadcast_expr<X...>& e) {
        return resolve_group<Up, node_spec::kind::broadcast>(e.xs, false);
    }
};

template <class S, class... A>
S make_stage(const std::tuple<A...>& args) {
    return std::apply(
        [](const A&... a) {
            if constexpr (std::is_constructible_v<S, const A&...>) return S(a...);
            else return S{a...};
        },
        args);
}

template <class S, class... A>
struct resolver<copies_of_expr<S, A...>> {
    template <class Up>
    static auto apply(const copies_of_expr<S, A...>& e) {
        using R = decltype(resolve<Up>(std::declval<const S&>()));
        if (e.n == 0) throw std::invalid_argument("parafork: as/by need at least one stage");
        std::vector<std::shared_ptr<node_spec>> kids;
        for (std::size_t i = 0; i < e.n; ++i) {
            auto r = resolve_class<Up>(make_stage<S>(e.args), default_name<S>() + "#" + std::to_string(i));
            kids.push_back(r.spec);
        }
        auto n = make_group_node(e.broadcast ? node_spec::kind::broadcast : node_spec::kind::parallel,
                                 std::move(kids), typeid(typename R::in_type), typeid(typename R::out_type));
        n->ordered = e.keep_order;
        return resolved<typename R::in_type, typename R::out_type>{n};
    }
};

template <class X>
struct resolver<workers_expr<X>> {
    template <class Up>
    static auto apply(const workers_expr<X>& e) {
        using R = decltype(resolve<Up>(e.x));
        if (e.n == 0) throw std::invalid_argument("parafork: workers() needs at least one stage");
        std::vector<std::shared_ptr<node_spec>> kids;
        for (std::size_t i = 0; i < e.n; ++i) {
            auto r = resolve<Up>(e.x);
            if (r.spec->leaf) r.spec->leaf->name += "#" + std::to_string(i);
            kids.push_back(r.spec);
        }
        auto n = make_group_node(node_spec::kind::parallel, std::move(kids),
                                 typeid(typename R::in_type), typeid(typename R::out_type));
        n->ordered = e.keep_order;
        return resolved<typename R::in_type, typename R::out_type>{n};
    }
};

// The merger behind zip(): reads one item from each branch in turn and puts the tuple.
template <class... O>
struct zip_leaf final : leaf_base {
    void run(stage_context& c) override {
        constexpr std::size_t k = sizeof...(O);
        for (;;) {
            std::tuple<O...> t;
            std::size_t got = 0;
            auto take = [&]<std::size_t I>(std::integral_constant<std::size_t, I>) {
                record_view r;
                if (!c.next_record(I, r)) return;
                if constexpr (I == 0) c.begin_item(r);
                std::get<I>(t) = wire::decode<std::tuple_element_t<I, std::tuple<O...>>>(r.payload);
                ++got;
            };
            [&]<std::size_t... I>(std::index_sequence<I...>) {
                (take(std::integral_constant<std::size_t, I>{}), ...);
            }(std::make_index_sequence<k>{});
            if (got == 0) return;
            if (got != k)
                throw protocol_error("parafork: zip branches produced different numbers of items "
                                     "(each branch must put exactly one item per input)");
            c.put(t);
            c.end_item();
        }
    }
};

template <class... X>
struct resolver<zip_expr<X...>> {
    template <class Up>
    static auto apply(const zip_expr<X...>& e) {
        auto rs = resolve_each<Up>(e.xs, std::index_sequence_for<X...>{});
        using In = typename merge_in<typename decltype(resolve<Up>(std::declval<const X&>()))::in_type...>::type;
        using Out = std::tuple<typename decltype(resolve<Up>(std::declval<const X&>()))::out_type...>;
        static_assert((!std::is_void_v<typename decltype(resolve<Up>(std::declval<const X&>()))::out_type> && ...),
                      "parafork: every zip branch must put items");
        std::vector<std::shared_ptr<node_spec>> kids;
        std::apply([&](auto&... r) { (kids.push_back(r.spec), ...); }, rs);
        auto n = make_group_node(node_spec::kind::zip, std::move(kids), typeid(In), typeid(Out));
        auto merger =
            std::make_shared<zip_leaf<typename decltype(resolve<Up>(std::declval<const X&>()))::out_type...>>();
        merger->name = "zip";
        merger->in = typeid(void);
        merger->out = typeid(Out);
        merger->inputs = sizeof...(X);
        n->leaf = std::move(merger);
        return resolved<In, Out>{n};
    }
};

// A pipeline used as a stage of another: its graph is spliced in.
template <class In, class Out>
struct pipeline_ref {
    std::shared_ptr<node_spec> spec;
};
template <class In, class Out>
struct resolver<pipeline_ref<In, Out>> {
    template <class Up>
    static auto apply(const pipeline_ref<In, Out>& p) {
        static_assert(is_unknown<Up> || std::is_same_v<Up, In>,
                      "parafork: a nested ez must take exactly the type its upstream stage puts");
        return resolved<In, Out>{p.spec};
    }
};

template <class X>
struct stored {
    using type = std::decay_t<X>;
    static type make(X&& x) { return std::forward<X>(x); }
};
template <class X>
    requires requires { typename std::remove_cvref_t<X>::pipeline_tag; }
struct stored<X> {
    using P = std::remove_cvref_t<X>;
    using type = pipeline_ref<typename P::in_type, typename P::out_type>;
    static type make(X&& x) { return type{x.spec()}; }
};
template <class X>
using stored_t = typename stored<X>::type;
template <class X>
stored_t<X> store(X&& x) {
    return stored<X>::make(std::forward<X>(x));
}

} // namespace detail
} // namespace parafork

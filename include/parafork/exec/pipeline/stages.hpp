#pragma once
// Built-in pipeline stages (mpyx's wrappers): sources iter, constant, read_lines; pass-through
// print, stamp; transforms filter, transform, batch; the sink write_lines; and command, which streams
// items through an external program's stdin/stdout, one line per item.

#include <cstddef>
#include <iostream>
#include <optional>
#include <ranges>
#include <concepts>
#include <iterator>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/sys/fd.hpp>

namespace parafork {
namespace detail {

// A stage whose item type comes from upstream: Body(ctx, item) does the work; optional
// begin() runs first in the child, finish(ctx) after the input is drained.
template <class Wire, class Body>
struct body_leaf final : leaf_base {
    Body body;
    explicit body_leaf(Body b) : body(std::move(b)) {}
    void run(stage_context& c) override {
        if constexpr (requires { body.begin(); }) body.begin();
        record_view r;
        while (!c.stopped && c.next_record(0, r)) {
            c.begin_item(r);
            body(c, wire::decode<Wire>(r.payload));
            c.end_item();
        }
        c.end_input();
        if constexpr (requires { body.finish(c); }) body.finish(c);
    }
};

template <class Up, class Arg>
using input_of = std::conditional_t<std::is_void_v<Arg>, Up, Arg>;

template <class Out, class Up, class Body>
auto body_node(std::string name, Body b) {
    static_assert(!is_unknown<Up>,
                  "parafork: this built-in takes its item type from the stage before it; it cannot come first");
    return resolved<Up, Out>{leaf_node<body_leaf<Up, Body>, Up, Out>(
        std::make_shared<body_leaf<Up, Body>>(std::move(b)), std::move(name))};
}

template <class T>
concept streamable = requires(std::ostream& os, const T& t) { os << t; };

template <class T>
void format_item(std::ostream& os, const T& x) {
    if constexpr (std::is_same_v<T, bool>) {
        os << (x ? "true" : "false");
    } else if constexpr (streamable<T>) {
        os << x;
    } else if constexpr (requires { std::tuple_size<T>::value; }) {
        os << '(';
        std::apply(
            [&](const auto&... e) {
                std::size_t i = 0;
                ((os << (i++ ? ", " : ""), format_item(os, e)), ...);
            },
            x);
        os << ')';
    } else if constexpr (requires { std::begin(x) != std::end(x); }) {
        os << '[';
        bool first = true;
        for (const auto& e : x) {
            if (!first) os << ", ";
            first = false;
            format_item(os, e);
        }
        os << ']';
    } else {
        os << '<' << type_name(typeid(T)) << '>';
    }
}

template <class R>
using range_item_t = std::remove_cvref_t<decltype(*std::begin(std::declval<R&>()))>;

// Over a contiguous container the first items are put in the parent (no user code runs to
// read them); the stage process, if one is still needed, goes on after them.
template <class R>
struct iter_source : stage<range_item_t<R>>, parent_source {
    R range;
    std::size_t done = 0;  // elements already put in the parent
    explicit iter_source(R r) : range(std::move(r)) {}
    bool fill_in_parent()
        requires std::ranges::contiguous_range<R>
    {
        auto n = static_cast<std::size_t>(std::ranges::size(range));
        while (done < n && this->room()) this->put(std::ranges::data(range)[done++]);
        return done == n;
    }
    void setup() {
        if constexpr (std::ranges::contiguous_range<R>) {
            auto n = static_cast<std::size_t>(std::ranges::size(range));
            for (; done < n; ++done) this->put(std::ranges::data(range)[done]);
        } else {
            for (auto&& x : range) this->put(x);
        }
        this->stop();
    }
};

// first, first + 1, ..., last - 1; the first of them put in the parent.
template <class I>
struct count_source : stage<I>, parent_source {
    I first, last;
    count_source(I f, I l) : first(f), last(l) {}
    bool fill_in_parent() {
        while (first < last && this->room()) this->put(first++);
        return !(first < last);
    }
    void setup() {
        for (; first < last; ++first) this->put(first);
        this->stop();
    }
};

template <class T>
struct constant_source : stage<T> {
    T value;
    std::optional<std::size_t> limit;
    void setup() {
        for (std::size_t i = 0; !limit || i < *limit; ++i) this->put(value);
        this->stop();
    }
};

// Files of read_lines / write_lines, opened O_CLOEXEC (no program a stage runs inherits them).
class line_reader {
public:
    void open(const std::string& path);  // throws parafork::error naming the path
    bool next(std::string& line);        // a line without its newline; false at the end
    int fd() const noexcept { return fd_.get(); }

private:
    sys::unique_fd fd_;
    std::string path_, buf_;
    std::size_t at_ = 0;
    bool eof_ = false;
};
class line_writer {
public:
    void open(const std::string& path);  // created or truncated; throws naming the path
    std::string& buffer() noexcept { return buf_; }
    void write_if_full();                 // writes the buffer once it holds 64 KiB
    void close();                         // writes the rest; throws if any write failed
    int fd() const noexcept { return fd_.get(); }

private:
    void write_buffer();
    sys::unique_fd fd_;
    std::string path_, buf_;
};

struct read_lines_source : stage<std::string> {
    std::string path;
    void setup();
};

template <class P>
struct filter_node : custom_node {
    P pred;
    template <class Up>
    auto resolve_as() const {
        using T = input_of<Up, typename callable_arg<P>::type>;
        struct body {
            P pred;
            void operator()(stage_context& c, T&& x) {
                if (std::invoke(pred, std::as_const(x))) c.put(x);
            }
        };
        return body_node<T, T>("filter", body{pred});
    }
};

struct print_node : custom_node {
    std::string prefix;
    template <class Up>
    auto resolve_as() const {
        struct body {
            std::string prefix;
            std::string line;
            void operator()(stage_context& c, Up&& x) {
                std::ostringstream os;
                if (!prefix.empty()) os << prefix << ' ';
                format_item(os, x);
                os << '\n';
                std::cout << os.str();
                c.put(x);
            }
            void finish(stage_context&) { std::cout.flush(); }
        };
        return body_node<Up, Up>("print", body{prefix, {}});
    }
};

struct stamp_node : custom_node {
    std::string prefix;
    template <class Up>
    auto resolve_as() const {
        struct body {
            std::string prefix;
            std::size_t n = 0;
            void operator()(stage_context& c, Up&& x) {
                std::cout << prefix << ' ' << ++n << '\n';
                c.put(x);
            }
            void finish(stage_context&) { std::cout.flush(); }
        };
        return body_node<Up, Up>("stamp", body{prefix});
    }
};

struct batch_node : custom_node {
    std::size_t size;
    template <class Up>
    auto resolve_as() const {
        struct body {
            std::size_t size;
            std::vector<Up> cur;
            void operator()(stage_context& c, Up&& x) {
                cur.push_back(std::move(x));
                if (cur.size() >= size) {
                    c.put(cur);
                    cur.clear();
                }
            }
            void finish(stage_context& c) {
                if (!cur.empty()) c.put(cur);
                cur.clear();
            }
        };
        return body_node<std::vector<Up>, Up>("batch", body{size, {}});
    }
};

struct write_lines_node : custom_node {
    std::string path;
    // First in a graph (a side pipeline for xcut), it takes strings.
    template <class Up0>
    auto resolve_as() const {
        using Up = std::conditional_t<is_unknown<Up0>, std::string, Up0>;
        struct body {
            std::string path;
            line_writer out;
            void begin() { out.open(path); }
            void operator()(stage_context&, Up&& x) {
                if constexpr (std::is_convertible_v<const Up&, std::string_view>) {
                    out.buffer() += std::string_view(x);
                } else {
                    std::ostringstream os;
                    format_item(os, x);
                    out.buffer() += os.str();
                }
                out.buffer() += '\n';
                out.write_if_full();
            }
            void finish(stage_context&) { out.close(); }
        };
        return body_node<void, Up>("write_lines", body{path, {}});
    }
};

} // namespace detail

// Puts every element of `range` (a copy of it is kept; the stage process iterates it, so a
// container or a view made before start() needs no transfer). Over a contiguous container,
// and for iter(first, last), the first items (up to one batch, 16 KiB or 1,024 items) are put
// by the parent at start(): a short source then costs no process of its own.
template <class R>
auto iter(R&& range) {
    return named("iter", detail::iter_source<std::decay_t<R>>(std::forward<R>(range)));
}
// Puts first, first + 1, ..., last - 1.
template <std::integral I>
auto iter(I first, I last) {
    return named("iter", detail::count_source<I>(first, last));
}
// Puts `value` `limit` times, or until nobody reads any more.
template <class T>
auto constant(T value, std::optional<std::size_t> limit = std::nullopt) {
    detail::constant_source<T> s;
    s.value = std::move(value);
    s.limit = limit;
    return named("constant", std::move(s));
}
// Passes on the items for which pred(item) is true.
template <class P>
auto filter(P pred) {
    detail::filter_node<P> n;
    n.pred = std::move(pred);
    return n;
}
// f(item) for every item (the same as putting f itself in the graph). Not called map: that
// name is the parallel map(f, range), which returns a vector.
template <class F>
auto transform(F f) {
    return named("transform", std::move(f));
}
// The old name of transform(f), kept for one release.
template <class F>
[[deprecated("parafork: the stage map(f) is now transform(f); map(f, range) is the parallel map")]]
auto map(F f) {
    return transform(std::move(f));
}
// Groups items into std::vector batches of `size` (the last one may be shorter).
inline detail::batch_node batch(std::size_t size = 64) {
    if (size == 0) throw std::invalid_argument("parafork: batch size 0");
    detail::batch_node n;
    n.size = size;
    return n;
}
// Prints each item on stdout ("prefix item") and passes it on.
inline detail::print_node print(std::string prefix = {}) {
    detail::print_node n;
    n.prefix = std::move(prefix);
    return n;
}
// Prints "prefix N" for the N-th item on stdout and passes it on.
inline detail::stamp_node stamp(std::string prefix = "Processing item") {
    detail::stamp_node n;
    n.prefix = std::move(prefix);
    return n;
}
// Puts each line of the file at `path` (without its newline).
inline auto read_lines(std::string path) {
    detail::read_lines_source s;
    s.path = std::move(path);
    return named("read_lines", std::move(s));
}
// Writes each item as a line to the file at `path` (a sink).
inline detail::write_lines_node write_lines(std::string path) {
    detail::write_lines_node n;
    n.path = std::move(path);
    return n;
}

// Streams items through an external program: each item is written to its stdin as a line,
// each line it writes to stdout is put downstream. Its exit status is checked at the end:
// non-zero is an error of this stage.
struct command_stage : stage<std::string> {
    std::vector<std::string> argv;
    void setup();
    void process(const std::string& line);
    void teardown();

private:
    void pump(bool block_for_output);
    pid_t pid_ = -1;
    int in_fd_ = -1, out_fd_ = -1;
    std::string pending_, partial_;
};
inline auto command(std::vector<std::string> argv) {
    command_stage s;
    s.argv = std::move(argv);
    std::string name = s.argv.empty() ? "command" : s.argv[0];
    return named(std::move(name), std::move(s));
}

} // namespace parafork

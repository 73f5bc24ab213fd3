// map, starmap, imap, imap_unordered: workers fork at the call, so the function and the input
// reach them by fork; only results cross, pickled, as bytes through the C++ engine.

#include "common.hpp"

#include <cstdint>
#include <iterator>
#include <memory>
#include <type_traits>
#include <vector>

namespace parafork_python {
// Named, not anonymous: clang would flag the iterator's unused operators in an anonymous one.
// Indices 0..n as a sized random-access range (no std::views: clang 14 cannot compile
// libstdc++ 12's).
struct index_iterator {
    using value_type = std::uint64_t;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::random_access_iterator_tag;
    using iterator_category = std::random_access_iterator_tag;
    std::uint64_t i = 0;

    std::uint64_t operator*() const { return i; }
    std::uint64_t operator[](difference_type n) const { return i + static_cast<std::uint64_t>(n); }
    index_iterator& operator++() { return ++i, *this; }
    index_iterator operator++(int) { return {i++}; }
    index_iterator& operator--() { return --i, *this; }
    index_iterator operator--(int) { return {i--}; }
    index_iterator& operator+=(difference_type n) { return i += static_cast<std::uint64_t>(n), *this; }
    index_iterator& operator-=(difference_type n) { return i -= static_cast<std::uint64_t>(n), *this; }
    friend index_iterator operator+(index_iterator a, difference_type n) { return a += n; }
    friend index_iterator operator+(difference_type n, index_iterator a) { return a += n; }
    friend index_iterator operator-(index_iterator a, difference_type n) { return a -= n; }
    friend difference_type operator-(index_iterator a, index_iterator b) {
        return static_cast<difference_type>(a.i - b.i);
    }
    friend auto operator<=>(index_iterator, index_iterator) = default;
};
struct index_range {
    std::uint64_t n;
    index_iterator begin() const { return {0}; }
    index_iterator end() const { return {n}; }
    std::size_t size() const { return static_cast<std::size_t>(n); }
};

namespace {

// Sized sequences: the worker indexes its own copy (nothing of the input is sent).
struct index_task {
    PyObject* f;
    PyObject* seq;
    bool star;
    std::string operator()(std::uint64_t i) const {
        with_gil g;
        py::object x = py::reinterpret_steal<py::object>(PySequence_GetItem(seq, static_cast<Py_ssize_t>(i)));
        if (!x) {
            py::error_already_set e;
            throw_task_failure(e);
        }
        return run_task(f, x.ptr(), star);
    }
};
// Other iterables: the parent pickles each item as it pulls it.
struct item_task {
    PyObject* f;
    bool star;
    std::string operator()(const std::string& pickled) const {
        with_gil g;
        py::object x;
        try {
            x = h->loads(py::bytes(pickled));
        } catch (py::error_already_set& e) {
            throw_task_failure(e);
        }
        return run_task(f, x.ptr(), star);
    }
};

// ---- in the parent ---------------------------------------------------------------------------
// A Python iterator as an input range of pickled items, pulled lazily by the engine.
class pickled_items {
public:
    pickled_items(PyObject* it, PyObject* dumps) : it_(it), dumps_(dumps) {}
    struct sentinel {};
    class iterator {
    public:
        using value_type = std::string;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(pickled_items* r) : r_(r) { r_->pull(); }
        const std::string& operator*() const { return r_->cur_; }
        iterator& operator++() {
            r_->pull();
            return *this;
        }
        void operator++(int) { r_->pull(); }
        friend bool operator==(const iterator& a, sentinel) { return a.r_->done(); }

    private:
        pickled_items* r_ = nullptr;
    };
    iterator begin() { return iterator(this); }
    sentinel end() { return {}; }
    bool done() const noexcept { return done_; }

private:
    void pull() {
        with_gil g;
        py::object x = py::reinterpret_steal<py::object>(PyIter_Next(it_));
        if (!x) {
            if (PyErr_Occurred()) throw py::error_already_set();
            done_ = true;
            return;
        }
        cur_ = py::bytes(py::handle(dumps_)(x, 5));
    }
    PyObject* it_;
    PyObject* dumps_;
    std::string cur_;
    bool done_ = false;
};

// map / starmap over a sized sequence: forked in index mode; results kept as bytes in input
// order, unpickled at the end.
py::list map_sequence(const py::object& f, const py::object& seq, bool star, const py::object& jobs,
                      const py::object& chunksize, const py::object& timeout, unsigned retries,
                      bool progress, const py::object& name) {
    const Py_ssize_t n = PySequence_Size(seq.ptr());
    if (n < 0) throw py::error_already_set();
    pf::options o = make_options(jobs, chunksize, timeout, retries, progress, name);
    o.ordered = false;
    std::vector<std::string> out(static_cast<std::size_t>(n));
    index_task task{f.ptr(), seq.ptr(), star};
    flush_stdio();
    std::exception_ptr failed;
    {
        without_gil ng;
        try {
            pf::forked(index_range{static_cast<std::uint64_t>(n)},
                       [&task](std::size_t, std::uint64_t i) { return task(i); },
                       [&out](std::size_t i, std::string&& y) { out[i] = std::move(y); }, o);
        } catch (...) {
            failed = std::current_exception();
        }
    }
    if (failed) raise_python(failed);
    py::list result(n);
    for (Py_ssize_t i = 0; i < n; ++i) {
        auto& b = out[static_cast<std::size_t>(i)];
        py::object y = h->loads(py::memoryview::from_memory(b.data(), static_cast<Py_ssize_t>(b.size())));
        std::string().swap(b);
        PyList_SET_ITEM(result.ptr(), i, y.release().ptr());
    }
    return result;
}

// imap / imap_unordered: a pool around one callable, made (forked) at the call and driven by
// the Python iterator, so at most a few chunks per worker are ahead of the consumer.
class lazy_results {
public:
    virtual ~lazy_results() = default;
    virtual py::object next() = 0;
};

template <class Task, class Range, bool Ordered>
class lazy_impl final : public lazy_results {
    using pool_t = pf::pool<Task>;
    using seq_t = decltype(std::declval<pool_t&>().imap(std::declval<Range>()));
    using useq_t = decltype(std::declval<pool_t&>().imap_unordered(std::declval<Range>()));
    using sequence_t = std::conditional_t<Ordered, seq_t, useq_t>;

    static sequence_t start(pool_t& p, Range&& r) {
        if constexpr (Ordered) return p.imap(std::move(r));
        else return p.imap_unordered(std::move(r));
    }

public:
    lazy_impl(py::object f, py::object keep, Task task, Range range, const pf::options& o)
        : f_(std::move(f)), keep_(std::move(keep)), pool_(make_pool(task, o)),
          seq_(start(*pool_, std::move(range))) {}
    ~lazy_impl() override {
        without_gil ng;
        pool_->terminate();
    }

    py::object next() override {
        std::exception_ptr failed;
        std::string bytes;
        std::size_t index = 0;
        bool end = false;
        {
            without_gil ng;
            try {
                if (!it_) it_.emplace(seq_.begin());
                else ++*it_;
                if (*it_ == seq_.end()) {
                    end = true;
                } else if constexpr (Ordered) {
                    bytes = std::move(**it_);
                } else {
                    auto& [i, y] = **it_;
                    index = i;
                    bytes = std::move(y);
                }
            } catch (...) {
                failed = std::current_exception();
            }
        }
        if (failed) raise_python(failed);
        if (end) throw py::stop_iteration();
        py::object y = h->loads(py::memoryview::from_memory(bytes.data(), static_cast<Py_ssize_t>(bytes.size())));
        if constexpr (Ordered) return y;
        else return py::make_tuple(index, y);
    }

private:
    static std::unique_ptr<pool_t> make_pool(Task task, const pf::options& o) {
        flush_stdio();
        without_gil ng;
        return std::make_unique<pool_t>(task, o);
    }

    py::object f_, keep_;
    std::unique_ptr<pool_t> pool_;
    sequence_t seq_;
    std::optional<decltype(std::declval<sequence_t&>().begin())> it_;
};

std::unique_ptr<lazy_results> imap(const py::object& f, const py::object& items, bool sized, bool star,
                                   bool ordered, const py::object& jobs, const py::object& chunksize,
                                   const py::object& timeout, unsigned retries, bool progress,
                                   const py::object& name) {
    pf::options o = make_options(jobs, chunksize, timeout, retries, progress, name);
    if (sized) {
        const Py_ssize_t n = PySequence_Size(items.ptr());
        if (n < 0) throw py::error_already_set();
        index_task task{f.ptr(), items.ptr(), star};
        index_range r{static_cast<std::uint64_t>(n)};
        if (ordered) return std::make_unique<lazy_impl<index_task, index_range, true>>(f, items, task, r, o);
        return std::make_unique<lazy_impl<index_task, index_range, false>>(f, items, task, r, o);
    }
    py::object it = py::reinterpret_steal<py::object>(PyObject_GetIter(items.ptr()));
    if (!it) throw py::error_already_set();
    item_task task{f.ptr(), star};
    static py::object* dumps = new py::object(py::module_::import("pickle").attr("dumps"));
    pickled_items r(it.ptr(), dumps->ptr());
    if (ordered) return std::make_unique<lazy_impl<item_task, pickled_items, true>>(f, it, task, std::move(r), o);
    return std::make_unique<lazy_impl<item_task, pickled_items, false>>(f, it, task, std::move(r), o);
}
} // namespace

void bind_map(py::module_& m) {
    m.def("map_sequence", &map_sequence, py::arg("f"), py::arg("seq"), py::arg("star"), py::arg("jobs"),
          py::arg("chunksize"), py::arg("timeout"), py::arg("retries"), py::arg("progress"), py::arg("name"));
    py::class_<lazy_results>(m, "LazyResults")
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__", &lazy_results::next);
    m.def("imap", &imap, py::arg("f"), py::arg("items"), py::arg("sized"), py::arg("star"), py::arg("ordered"),
          py::arg("jobs"), py::arg("chunksize"), py::arg("timeout"), py::arg("retries"), py::arg("progress"),
          py::arg("name"));
}
} // namespace parafork_python

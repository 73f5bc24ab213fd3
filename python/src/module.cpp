// _parafork: parafork's engines for Python. Workers fork at the call, so the function and the
// input reach them by fork; only results cross, pickled, as bytes through the C++ engine.
// The pure-Python side (python/parafork/) prepares calls and turns failures into exceptions.

#include <pybind11/pybind11.h>

#include <pthread.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <iterator>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <parafork/parafork.hpp>

namespace py = pybind11;
namespace pf = parafork;

// A named namespace: task_failure's type name, which a worker reports, is how the parent knows a
// Python exception; and clang would flag the index iterator's unused operators in an anonymous one.
namespace parafork_python {
struct task_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

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
} // namespace parafork_python

namespace {

using parafork_python::index_range;
constexpr const char* task_failure_name = "parafork_python::task_failure";

// ---- the GIL around fork -------------------------------------------------------------------
// A thread runs parafork without the GIL (t_saved holds its thread state). The library forks at
// the call and again when it replaces a worker, anywhere in the call, so fork hooks take the
// GIL back around each fork as os.fork does: PyOS_BeforeFork, then PyOS_AfterFork_Parent in
// the parent and PyOS_AfterFork_Child in the child. The child keeps the GIL: it has one thread.
thread_local PyThreadState* t_saved = nullptr;
thread_local PyThreadState* t_forking = nullptr;

void before_fork() {
    if (!t_saved) return;
    t_forking = t_saved;
    PyEval_RestoreThread(t_saved);
    PyOS_BeforeFork();
}
void after_fork_parent() {
    if (!t_forking) return;
    PyOS_AfterFork_Parent();
    PyEval_SaveThread();
    t_forking = nullptr;
}
void after_fork_child() {
    if (!t_forking) return;
    PyOS_AfterFork_Child();
    t_saved = nullptr;
    t_forking = nullptr;
}

// Runs parafork (which may wait and fork) without the GIL.
struct without_gil {
    without_gil() { t_saved = PyEval_SaveThread(); }
    ~without_gil() {
        if (t_saved) PyEval_RestoreThread(std::exchange(t_saved, nullptr));
    }
    without_gil(const without_gil&) = delete;
    without_gil& operator=(const without_gil&) = delete;
};
// Calls Python from inside parafork: takes the GIL if this thread had let it go.
struct with_gil {
    PyThreadState* s = std::exchange(t_saved, nullptr);
    with_gil() {
        if (s) PyEval_RestoreThread(s);
    }
    ~with_gil() {
        if (s) t_saved = PyEval_SaveThread();
    }
    with_gil(const with_gil&) = delete;
    with_gil& operator=(const with_gil&) = delete;
};

// The Python helpers of parafork._core, looked up once (never freed: they outlive the module).
struct helpers {
    py::object call, encode_failure, loads, task_failure, remote_error, worker_died, task_timeout,
        error;
};
helpers* h = nullptr;

// ---- in a worker -----------------------------------------------------------------------------
// One task: the pickled result, or the task's exception (encoded text) as a task_failure, which
// the engine reports as a remote_error with the task's index.
std::string run_task(PyObject* f, PyObject* arg, bool star) {
    with_gil g;
    try {
        py::bytes b = h->call(py::handle(f), py::handle(arg), star);
        char* data = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(b.ptr(), &data, &n);
        return std::string(data, static_cast<std::size_t>(n));
    } catch (py::error_already_set& e) {
        std::string text;
        try {
            text = py::str(h->encode_failure(e.value(), e.trace()));
        } catch (py::error_already_set& again) {
            text = std::string("!") + again.what();  // the failure itself could not be described
        }
        throw parafork_python::task_failure(text);
    }
}

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
            throw parafork_python::task_failure(py::str(h->encode_failure(e.value(), e.trace())));
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
            throw parafork_python::task_failure(py::str(h->encode_failure(e.value(), e.trace())));
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

void flush_stdio() {
    for (const char* s : {"stdout", "stderr"}) {
        PyObject* f = PySys_GetObject(s);  // borrowed
        if (f && f != Py_None) {
            PyObject* r = PyObject_CallMethod(f, "flush", nullptr);
            Py_XDECREF(r);
            PyErr_Clear();
        }
    }
}

pf::options make_options(const py::object& jobs, const py::object& chunksize, const py::object& timeout,
                         unsigned retries, bool progress, const py::object& name) {
    pf::options o;
    if (!jobs.is_none()) {
        long j = jobs.cast<long>();
        if (j <= 0) throw py::value_error("parafork: jobs must be positive");
        o.jobs = static_cast<unsigned>(j);
    }
    if (!chunksize.is_none()) {
        long c = chunksize.cast<long>();
        if (c <= 0) throw py::value_error("parafork: chunksize must be positive");
        o.chunksize = static_cast<std::size_t>(c);
    }
    if (!timeout.is_none()) {
        double t = timeout.cast<double>();
        if (!(t > 0)) throw py::value_error("parafork: timeout must be positive");
        o.task_timeout = std::chrono::milliseconds(std::max<long long>(1, std::llround(t * 1000)));
    }
    o.retries = retries;
    o.progress = progress;
    if (!name.is_none()) o.name = name.cast<std::string>();
    // Output a task printed would die with its worker: flush it at the worker's clean exit.
    o.worker_exit = [] {
        with_gil g;
        flush_stdio();
    };
    return o;
}

[[noreturn]] void raise_object(const py::object& exc) {
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
}

py::object task_of(const std::optional<std::size_t>& t) {
    return t ? py::object(py::int_(*t)) : py::none();
}

// Turns what parafork threw into the Python exception the caller sees. Holds the GIL.
[[noreturn]] void raise_python(std::exception_ptr ep) {
    try {
        std::rethrow_exception(ep);
    } catch (py::error_already_set&) {
        throw;
    } catch (const pf::remote_error& e) {
        if (e.type_name() == task_failure_name)
            raise_object(h->task_failure(e.message(), e.pid(), task_of(e.task())));
        raise_object(h->remote_error(std::string(e.what()), e.type_name(), e.message(), e.pid(),
                                     task_of(e.task())));
    } catch (const pf::worker_died& e) {
        raise_object(h->worker_died(std::string(e.what()), e.pid(), e.signal(), e.exit_code(),
                                    task_of(e.task())));
    } catch (const pf::timeout_error& e) {
        raise_object(h->task_timeout(std::string(e.what()), e.pid(), task_of(e.task())));
    } catch (const pf::interrupted&) {
        PyErr_SetNone(PyExc_KeyboardInterrupt);
        throw py::error_already_set();
    } catch (const pf::error& e) {
        raise_object(h->error(std::string(e.what())));
    }
}


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

PYBIND11_MODULE(_parafork, m) {
    m.doc() = "parafork's engines (see the parafork package)";
    static std::once_flag hooks;
    std::call_once(hooks, [] { pthread_atfork(before_fork, after_fork_parent, after_fork_child); });

    m.def("_init", [](py::object core) {
        if (!h) h = new helpers;
        h->call = core.attr("_call");
        h->encode_failure = core.attr("_encode_failure");
        h->loads = py::module_::import("pickle").attr("loads");
        h->task_failure = core.attr("_task_failure");
        h->remote_error = core.attr("_remote_error");
        h->worker_died = core.attr("_worker_died");
        h->task_timeout = core.attr("_task_timeout");
        h->error = core.attr("Error");
    });
    m.def("default_jobs", [] { return pf::default_jobs(); },
          "The jobs rule: PARAFORK_JOBS, else PP_JOBS, else the CPUs this process may use.");
    m.def("map_sequence", &map_sequence, py::arg("f"), py::arg("seq"), py::arg("star"), py::arg("jobs"),
          py::arg("chunksize"), py::arg("timeout"), py::arg("retries"), py::arg("progress"), py::arg("name"));
    py::class_<lazy_results>(m, "LazyResults")
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__", &lazy_results::next);
    m.def("imap", &imap, py::arg("f"), py::arg("items"), py::arg("sized"), py::arg("star"), py::arg("ordered"),
          py::arg("jobs"), py::arg("chunksize"), py::arg("timeout"), py::arg("retries"), py::arg("progress"),
          py::arg("name"));
}

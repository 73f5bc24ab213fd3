#include "common.hpp"

#include <parafork/sys/memory.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/wire/descriptors.hpp>
#include <parafork/wire/large.hpp>

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace parafork_python {

thread_local PyThreadState* t_saved = nullptr;
helpers* h = nullptr;

namespace {
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

[[noreturn]] void raise_object(const py::object& exc) {
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
}

py::object task_of(const std::optional<std::size_t>& t) {
    return t ? py::object(py::int_(*t)) : py::none();
}
} // namespace

// A library wait interrupted by a signal: the interpreter's handlers run (KeyboardInterrupt
// from its SIGINT handler, or whatever a handler raises ends the wait), as Python's own
// blocking calls do. Only a thread running Python code has handlers to run.
static void run_python_handlers() {
    if (!t_saved && !PyGILState_Check()) return;
    with_gil g;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

namespace {
struct head5 {
    std::uint32_t magic;
    std::uint32_t buffers;
    std::uint64_t stream;
};
constexpr std::uint32_t magic5 = 0x35666670;  // "pff5"
constexpr std::uint32_t magic5_spilled = 0x6d666670;  // "pffm": the buffers are in a memfd
constexpr std::size_t align5 = 64;

// A spilled message's buffers: a private mapping, unmapped when the last view is released.
struct mapped_memory {
    pf::sys::mapping map;
};
} // namespace

void bind_mapped(py::module_& m) {
    py::class_<mapped_memory>(m, "MappedMemory", py::buffer_protocol())
        .def_buffer([](mapped_memory& b) {
            return py::buffer_info(b.map.data(), 1, py::format_descriptor<unsigned char>::format(), 1,
                                   {static_cast<py::ssize_t>(b.map.size())}, {py::ssize_t{1}}, false);
        })
        .def("__len__", [](const mapped_memory& b) { return b.map.size(); });
}

bool is_pickled5(std::string_view msg) noexcept {
    std::uint32_t magic = 0;
    if (msg.size() < sizeof magic) return false;
    std::memcpy(&magic, msg.data(), sizeof magic);
    return magic == magic5 || magic == magic5_spilled;
}

bool pickled5::spill(int memfd, std::size_t threshold) {
    std::size_t total = 0;
    for (auto* v : views_) total += static_cast<std::size_t>(v->len);
    if (views_.empty() || total < threshold) return false;
    static const char zeros[align5] = {};
    std::vector<std::uint64_t> table;
    std::size_t at = 0;
    for (auto* v : views_) {
        const std::size_t start = (at + align5 - 1) / align5 * align5;
        if (start > at) pf::sys::write_all(memfd, zeros, start - at);
        // write(2): the memfd's pages are filled in one pass, never zeroed first.
        pf::sys::write_all(memfd, v->buf, static_cast<std::size_t>(v->len));
        table.push_back(start);
        table.push_back(static_cast<std::uint64_t>(v->len));
        at = start + static_cast<std::size_t>(v->len);
    }
    pf::sys::seal_memfd(memfd);
    head5 hd{magic5_spilled, static_cast<std::uint32_t>(views_.size()),
             static_cast<std::uint64_t>(PyBytes_GET_SIZE(stream_.ptr()))};
    head_.assign(reinterpret_cast<const char*>(&hd), sizeof hd);
    head_.append(reinterpret_cast<const char*>(table.data()), table.size() * sizeof(std::uint64_t));
    size_ = head_.size() + hd.stream;
    spilled_ = true;
    return true;
}

pickled5::pickled5(py::handle obj, bool out_of_band) {
    if (out_of_band)
        stream_ = h->dumps(obj, 5, py::arg("buffer_callback") = buffers_.attr("append"));
    else
        stream_ = h->dumps(obj, 5);
    const std::size_t n = buffers_.size();
    head5 hd{magic5, static_cast<std::uint32_t>(n), static_cast<std::uint64_t>(PyBytes_GET_SIZE(stream_.ptr()))};
    std::size_t at = sizeof hd + 16 * n + hd.stream;
    std::vector<std::uint64_t> table;
    for (std::size_t k = 0; k < n; ++k) {
        const Py_buffer* v = PyPickleBuffer_GetBuffer(buffers_[k].ptr());
        if (!v) throw py::error_already_set();
        if (!PyBuffer_IsContiguous(v, 'A')) {
            PyErr_SetString(PyExc_BufferError, "parafork: an out-of-band buffer is not contiguous");
            throw py::error_already_set();
        }
        views_.push_back(v);
        ends_.push_back(at);
        at = (at + align5 - 1) / align5 * align5;
        offsets_.push_back(at);
        table.push_back(at);
        table.push_back(static_cast<std::uint64_t>(v->len));
        at += static_cast<std::size_t>(v->len);
    }
    size_ = at;
    head_.append(reinterpret_cast<const char*>(&hd), sizeof hd);
    head_.append(reinterpret_cast<const char*>(table.data()), table.size() * sizeof(std::uint64_t));
}

namespace {
py::object unpickle5_spilled(std::string_view msg, const head5& hd, int spilled) {
    const std::size_t table = 16 * std::size_t{hd.buffers};
    if (hd.buffers > (msg.size() - sizeof hd) / 16 || hd.stream != msg.size() - sizeof hd - table)
        throw pf::protocol_error("parafork: malformed pickled message");
    std::vector<std::pair<std::uint64_t, std::uint64_t>> spans(hd.buffers);
    std::uint64_t end = 0;
    for (std::uint32_t k = 0; k < hd.buffers; ++k) {
        std::uint64_t at, len;
        std::memcpy(&at, msg.data() + sizeof hd + 16 * k, 8);
        std::memcpy(&len, msg.data() + sizeof hd + 16 * k + 8, 8);
        if (at < end || len > (std::uint64_t{1} << 48) || at > (std::uint64_t{1} << 48))
            throw pf::protocol_error("parafork: malformed pickled message (buffer table)");
        end = at + len;
        spans[k] = {at, end};
    }
    pf::sys::unique_fd taken;
    if (spilled < 0) {
        taken = pf::detail::take_incoming_fd();
        spilled = taken.get();
    }
    // The memfd must be sealed at exactly the size its table covers: nothing can change under
    // the mapping, and every view lies inside it.
    auto map = pf::wire::map_sealed_memfd_copy(spilled, static_cast<std::size_t>(end));
    taken.reset();
    py::object owner = py::cast(mapped_memory{std::move(map)});
    py::object view = py::reinterpret_steal<py::object>(PyMemoryView_FromObject(owner.ptr()));
    if (!view) throw py::error_already_set();
    py::list buffers;
    for (auto& [at, e] : spans)
        buffers.append(view[py::slice(static_cast<Py_ssize_t>(at), static_cast<Py_ssize_t>(e), 1)]);
    return h->loads(py::memoryview::from_memory(msg.data() + sizeof hd + table, static_cast<Py_ssize_t>(hd.stream)),
                    py::arg("buffers") = buffers);
}
} // namespace

py::object unpickle5(std::string_view msg, py::handle owner, int spilled) {
    head5 hd;
    if (msg.size() < sizeof hd) throw pf::protocol_error("parafork: short pickled message");
    std::memcpy(&hd, msg.data(), sizeof hd);
    if (hd.magic == magic5_spilled) return unpickle5_spilled(msg, hd, spilled);
    const std::size_t size = msg.size();
    if (hd.magic != magic5 || hd.buffers > (size - sizeof hd) / 16 ||
        hd.stream > size - sizeof hd - 16 * std::size_t{hd.buffers})
        throw pf::protocol_error("parafork: malformed pickled message");
    const std::size_t stream_at = sizeof hd + 16 * std::size_t{hd.buffers};
    if (hd.buffers == 0)
        return h->loads(py::memoryview::from_memory(msg.data() + stream_at,
                                                    static_cast<Py_ssize_t>(hd.stream)));
    py::object base;
    std::size_t shift = 0;  // where msg starts in base
    if (owner) {
        base = py::reinterpret_borrow<py::object>(owner);
        shift = static_cast<std::size_t>(msg.data() - PyByteArray_AS_STRING(owner.ptr()));
    } else {
        base = py::reinterpret_steal<py::object>(
            PyByteArray_FromStringAndSize(msg.data(), static_cast<Py_ssize_t>(size)));
        if (!base) throw py::error_already_set();
    }
    py::object view = py::reinterpret_steal<py::object>(PyMemoryView_FromObject(base.ptr()));
    if (!view) throw py::error_already_set();
    py::list buffers;
    std::size_t end = stream_at + hd.stream;
    for (std::uint32_t k = 0; k < hd.buffers; ++k) {
        std::uint64_t at, len;
        std::memcpy(&at, msg.data() + sizeof hd + 16 * k, 8);
        std::memcpy(&len, msg.data() + sizeof hd + 16 * k + 8, 8);
        if (at < end || at > size || len > size - at)
            throw pf::protocol_error("parafork: malformed pickled message (buffer table)");
        end = at + len;
        buffers.append(view[py::slice(static_cast<Py_ssize_t>(shift + at), static_cast<Py_ssize_t>(shift + end), 1)]);
    }
    py::object stream = view[py::slice(static_cast<Py_ssize_t>(shift + stream_at),
                                       static_cast<Py_ssize_t>(shift + stream_at + hd.stream), 1)];
    return h->loads(stream, py::arg("buffers") = buffers);
}

void install_fork_hooks() {
    static std::once_flag hooks;
    std::call_once(hooks, [] {
        pthread_atfork(before_fork, after_fork_parent, after_fork_child);
        pf::sys::set_interruption_check(run_python_handlers);
    });
}

void throw_task_failure(py::error_already_set& e) {
    std::string text;
    try {
        // An exception raised in C code (a sequence's own IndexError) may have no traceback.
        py::object tb = e.trace() ? py::reinterpret_borrow<py::object>(e.trace()) : py::none();
        text = py::str(h->encode_failure(e.value(), tb));
    } catch (py::error_already_set& again) {
        text = std::string("!") + again.what();  // the failure itself could not be described
    }
    throw task_failure(text);
}

std::string run_task(PyObject* f, PyObject* arg, bool star) {
    with_gil g;
    try {
        py::bytes b = h->call(py::handle(f), py::handle(arg), star);
        char* data = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(b.ptr(), &data, &n);
        return std::string(data, static_cast<std::size_t>(n));
    } catch (py::error_already_set& e) {
        throw_task_failure(e);
    }
}

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
                         unsigned retries, bool progress, const py::object& name,
                         const py::object& dashboard) {
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
    if (!dashboard.is_none()) {
        if (!py::isinstance<py::str>(dashboard))
            throw py::type_error("parafork: dashboard must be an address string such as '127.0.0.1:8765', or None");
        o.dashboard = dashboard.cast<std::string>();
    }
    // Output a task printed would die with its worker: flush it at the worker's clean exit.
    o.worker_exit = [] {
        with_gil g;
        flush_stdio();
    };
    return o;
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


} // namespace parafork_python

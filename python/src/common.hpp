// What the _parafork sources share: the GIL around parafork's waits and forks, the helpers of
// parafork._core, options from Python keywords, and parafork's errors turned into Python's.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <parafork/parafork.hpp>

// A named namespace: task_failure's type name, which a worker reports, is how the parent knows a
// Python exception.
namespace parafork_python {
namespace py = pybind11;
namespace pf = parafork;

struct task_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};
inline constexpr const char* task_failure_name = "parafork_python::task_failure";

// ---- the GIL around fork -------------------------------------------------------------------
// A thread runs parafork without the GIL (t_saved holds its thread state). The library forks at
// the call and again when it replaces a worker, anywhere in the call, so fork hooks (installed
// once by install_fork_hooks) take the GIL back around each fork as os.fork does:
// PyOS_BeforeFork, then PyOS_AfterFork_Parent in the parent and PyOS_AfterFork_Child in the
// child. The child keeps the GIL: it has one thread.
extern thread_local PyThreadState* t_saved;
void install_fork_hooks();

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
    py::object call, encode_failure, task_failure, remote_error, worker_died, task_timeout, error;
    py::object dumps, loads;  // pickle's
};
extern helpers* h;

// In a worker: f(arg) (f(*arg) when star), pickled; the task's exception as a task_failure,
// which the engine reports as a remote_error with the task's index.
std::string run_task(PyObject* f, PyObject* arg, bool star);
// The Python exception being handled, described for the parent, as a task_failure.
[[noreturn]] void throw_task_failure(py::error_already_set& e);

// Flushes sys.stdout and sys.stderr (before a fork, and at a worker's clean exit).
void flush_stdio();
// parafork's options from the keywords every call takes; bad values raise ValueError.
// `dashboard`: options::dashboard, an address ("HOST:PORT", "PORT") or None.
pf::options make_options(const py::object& jobs, const py::object& chunksize, const py::object& timeout,
                         unsigned retries, bool progress, const py::object& name,
                         const py::object& dashboard = py::none());
// Turns what parafork threw into the Python exception the caller sees. Holds the GIL.
[[noreturn]] void raise_python(std::exception_ptr ep);

// Runs fn without the GIL; what it throws comes back as a Python exception, made by `raise`
// (raise_python, or a caller's own that knows more exception types).
template <class Fn, class Raise = void (*)(std::exception_ptr)>
auto unlocked(Fn&& fn, Raise raise = raise_python) -> decltype(fn()) {
    std::exception_ptr failed;
    {
        without_gil ng;
        try {
            return fn();
        } catch (...) {
            failed = std::current_exception();
        }
    }
    raise(failed);  // only reached when fn threw; raise does not return
    throw std::logic_error("parafork: an exception was not raised");
}

// ---- pickle protocol 5, buffers out of band --------------------------------------------------
// A pickled value as one message: a header, a table of buffers, the pickle stream, then each
// out-of-band buffer (a numpy array's memory, never copied into the stream) at a 64-byte
// aligned offset. Built from a live object: the buffers are read from their owners' memory.
class pickled5 {
public:
    // pickle.dumps(obj, 5), its buffers out of band unless `out_of_band` is false. Throws
    // error_already_set (what dumps raised, or BufferError for a buffer that is not contiguous).
    explicit pickled5(py::handle obj, bool out_of_band = true);
    std::size_t size() const noexcept { return size_; }
    // Moves the out-of-band buffers into `memfd` (empty; sealed after) when they hold at least
    // `threshold` bytes: the message is then the header, table and stream, and the receiver
    // maps the memfd instead of copying the buffers. True if it did.
    bool spill(int memfd, std::size_t threshold);
    // Appends the message to `out` (a std::string or a std::vector<char>), piece by piece.
    template <class Out>
    void write_to(Out& out) const {
        out.insert(out.end(), head_.begin(), head_.end());
        auto put = [&out](const char* p, std::size_t n) { out.insert(out.end(), p, p + n); };
        put(PyBytes_AS_STRING(stream_.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(stream_.ptr())));
        if (spilled_) return;
        for (std::size_t k = 0; k < views_.size(); ++k) {
            out.insert(out.end(), offsets_[k] - ends_[k], '\0');  // alignment
            put(static_cast<const char*>(views_[k]->buf), static_cast<std::size_t>(views_[k]->len));
        }
    }

private:
    py::bytes stream_;
    py::list buffers_;                      // the PickleBuffers: they keep views_ valid
    std::vector<const Py_buffer*> views_;
    std::vector<std::size_t> offsets_, ends_;  // where buffer k starts; where the piece before it ends
    std::string head_;                      // header and buffer table
    std::size_t size_ = 0;
    bool spilled_ = false;
};
// A pickled5 message back to its object; a malformed message is parafork::protocol_error.
// With `owner` (a bytearray that holds `msg`) the out-of-band buffers are views of it (no copy;
// aligned as the message sits in it); without, the message is copied first. A spilled message
// maps its memfd (`spilled`, or else the descriptor that came with the bytes being decoded)
// copy-on-write, and its buffers are views of that mapping, unmapped with the last of them.
py::object unpickle5(std::string_view msg, py::handle owner = py::handle(), int spilled = -1);
// Whether `msg` starts as a pickled5 message does (a plain pickle does not).
bool is_pickled5(std::string_view msg) noexcept;

// Each part of the module adds its functions here.
void bind_map(py::module_& m);
void bind_snakefish(py::module_& m);
void bind_pool(py::module_& m);
void bind_process(py::module_& m);
void bind_mapped(py::module_& m);
void bind_dashboard(py::module_& m);  // Python pipelines on the live dashboard  // the owner of a spilled message's mapping
} // namespace parafork_python

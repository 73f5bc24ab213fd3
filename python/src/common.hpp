// What the _parafork sources share: the GIL around parafork's waits and forks, the helpers of
// parafork._core, options from Python keywords, and parafork's errors turned into Python's.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

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
    py::object call, encode_failure, loads, task_failure, remote_error, worker_died, task_timeout,
        error;
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
pf::options make_options(const py::object& jobs, const py::object& chunksize, const py::object& timeout,
                         unsigned retries, bool progress, const py::object& name);
// Turns what parafork threw into the Python exception the caller sees. Holds the GIL.
[[noreturn]] void raise_python(std::exception_ptr ep);

// Each part of the module adds its functions here.
void bind_map(py::module_& m);
void bind_snakefish(py::module_& m);
void bind_pool(py::module_& m);
} // namespace parafork_python

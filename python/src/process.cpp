// Process and Selector: parafork::process<Actor> and parafork::selector for the plain Python of
// parafork._process. The actor is one C++ type whose members hand pickled requests to a Python
// function in the backend (the forked copy of the Python object); only bytes cross here.
// Every wait runs without the GIL.

#include "common.hpp"

#include <parafork/exec/process/process.hpp>
#include <parafork/exec/process/selector.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace parafork_python {
namespace {

std::optional<std::chrono::milliseconds> millis(const py::object& timeout) {
    if (timeout.is_none()) return std::nullopt;
    double s = timeout.cast<double>();
    if (!(s >= 0)) throw py::value_error("parafork: timeout must be >= 0");
    return std::chrono::milliseconds(std::llround(std::ceil(s * 1000)));
}

// What the backend runs: `serve(kind, request)` of parafork._process, bound to the Python
// object, in the forked child (which holds the GIL: it has one thread).
enum kind : int { k_call = 0, k_ask = 1, k_pre_run = 2, k_post_run = 3, k_call_fd = 4 };

struct py_actor {
    PyObject* serve = nullptr;  // owned by the py_process that made this actor

    // Runs serve(k, request, fd) and hands its value to `use`, all under the GIL (nothing of
    // Python may outlive it: the backend may let the GIL go between requests, see pre_run).
    template <class Use>
    auto run(int k, std::string_view req, int fd, Use use) {
        with_gil g;
        try {
            py::bytes b(req.data(), req.size());
            return use(py::reinterpret_borrow<py::object>(serve)(k, b, fd));
        } catch (py::error_already_set& e) {
            flush_stdio();
            throw_task_failure(e);
        }
    }
    static void ignore(const py::object&) {}

    void call(std::string req) { run(k_call, req, -1, ignore); }
    // A call that carries a descriptor (a memfd made after the fork): the backend's own copy,
    // which the Python side owns from here (it closes it).
    void call_fd(std::string req, pf::passed_fd fd) { run(k_call_fd, req, fd.take().release(), ignore); }
    std::string ask(std::string req) {
        return run(k_ask, req, -1, [](const py::object& r) {
            char* data = nullptr;
            Py_ssize_t n = 0;
            if (PyBytes_AsStringAndSize(r.ptr(), &data, &n) != 0) {
                PyErr_Clear();
                throw pf::error("parafork: the backend's answer is not bytes");
            }
            return std::string(data, static_cast<std::size_t>(n));
        });
    }
    // pre_run answers True when the backend runs Python threads of its own (an asyncio loop):
    // then it lets the GIL go while it waits for requests, so they run meanwhile.
    void pre_run() {
        bool threads = run(k_pre_run, {}, -1, [](const py::object& r) { return PyObject_IsTrue(r.ptr()) == 1; });
        if (threads && !t_saved) t_saved = PyEval_SaveThread();
    }
    void post_run() {
        run(k_post_run, {}, -1, [](const py::object&) {
            flush_stdio();  // the backend _exits: what it printed must be out first
        });
    }
};

class py_future {
public:
    explicit py_future(pf::future<std::string> f) : f_(std::move(f)) {}

    bool done() {
        if (!f_.valid()) return true;
        return unlocked([&] { return f_.ready(); });
    }
    // The pickled answer; None when `timeout` passed first.
    py::object get(const py::object& timeout) {
        auto t = millis(timeout);
        if (!f_.valid()) throw py::value_error("parafork: the result was already taken");
        std::optional<std::string> r = unlocked([&]() -> std::optional<std::string> {
            if (t && !f_.wait_for(*t)) return std::nullopt;
            return f_.get();
        });
        if (!r) return py::none();
        return py::bytes(*r);
    }

private:
    pf::future<std::string> f_;
};

class py_process {
public:
    py_process(py::object serve, const py::object& name, const py::object& grace, const py::object& spin)
        : serve_(std::move(serve)) {
        pf::options o;
        if (!name.is_none()) o.name = name.cast<std::string>();
        if (auto g = millis(grace)) o.grace = *g;
        if (!spin.is_none()) o.spin = std::chrono::microseconds(spin.cast<long>());
        p_ = std::make_unique<pf::process<py_actor>>(py_actor{serve_.ptr()}, std::move(o));
    }
    ~py_process() {
        without_gil ng;
        p_.reset();  // a backend still running is stopped (grace, then killed) and reaped
    }
    py_process(const py_process&) = delete;
    py_process& operator=(const py_process&) = delete;

    void start() {
        flush_stdio();  // nothing buffered may be printed twice
        unlocked([&] { p_->start(); });
    }
    void call(const py::bytes& req) {
        std::string_view sv = view(req);
        // Outside the GIL only when it may have to wait: the usual call is a copy into the ring.
        try {
            p_->call<&py_actor::call>(sv);
        } catch (...) {
            raise_python(std::current_exception());
        }
    }
    void call_fd(const py::bytes& req, int fd) {
        std::string_view sv = view(req);
        try {
            p_->call<&py_actor::call_fd>(sv, pf::passed_fd(fd));
        } catch (...) {
            raise_python(std::current_exception());
        }
    }
    py_future ask(const py::bytes& req) {
        std::string_view sv = view(req);
        try {
            return py_future(p_->ask<&py_actor::ask>(sv));
        } catch (...) {
            raise_python(std::current_exception());
        }
    }
    // The next emitted message (pickled); None when nothing came (!block, or the timeout).
    py::object receive(bool block, const py::object& timeout) {
        auto t = millis(timeout);
        std::optional<std::string> m = unlocked([&]() -> std::optional<std::string> {
            if (!block) return p_->try_receive<std::string>();
            if (t) return p_->receive_for<std::string>(*t);
            return p_->receive<std::string>();
        });
        if (!m) return py::none();
        return py::bytes(*m);
    }
    bool has_message() {
        return unlocked([&] { return p_->has_message(); });
    }
    void stop() {
        unlocked([&] { p_->stop(); });
    }
    // The exit code, or minus the signal.
    int join() {
        auto s = unlocked([&] { return p_->join(); });
        return s.signal ? -s.signal : s.code;
    }
    int terminate() {
        auto s = unlocked([&] { return p_->terminate(); });
        return s.signal ? -s.signal : s.code;
    }
    void flush() {
        unlocked([&] { p_->flush(); });
    }
    py::object exit_status() const {
        auto s = p_->exit_status();
        if (!s) return py::none();
        return py::int_(s->signal ? -s->signal : s->code);
    }
    pid_t pid() const { return p_->pid(); }
    int fd() const { return p_->fd(); }
    int ready_fd() { return p_->ready_fd(); }
    bool started() const { return p_->started(); }
    bool running() const { return p_->running(); }
    std::size_t pending_asks() const { return p_->pending_asks(); }
    pf::process<py_actor>& get() { return *p_; }

private:
    static std::string_view view(const py::bytes& b) {
        char* data = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(b.ptr(), &data, &n);
        return {data, static_cast<std::size_t>(n)};
    }
    py::object serve_;
    std::unique_ptr<pf::process<py_actor>> p_;
};

class py_selector {
public:
    std::size_t add_process(py_process& p) { return sel_.add(p.get()); }
    std::size_t add_fd(int fd, short events) { return sel_.add_fd(fd, events); }
    void remove(std::size_t id) { sel_.remove(id); }
    py::list wait(const py::object& timeout) {
        auto t = millis(timeout);
        std::vector<std::size_t> ready = unlocked([&] { return sel_.wait(t); });
        py::list out;
        for (std::size_t id : ready) out.append(id);
        return out;
    }
    short revents(std::size_t id) const { return sel_.revents(id); }
    std::size_t size() const { return sel_.size(); }

private:
    pf::selector sel_;
};

} // namespace

void bind_process(py::module_& m) {
    py::class_<py_future>(m, "ProcessFuture")
        .def("done", &py_future::done)
        .def("get", &py_future::get, py::arg("timeout"));

    py::class_<py_process>(m, "Process")
        .def(py::init<py::object, py::object, py::object, py::object>(), py::arg("serve"), py::arg("name"),
             py::arg("grace"), py::arg("spin"))
        .def("start", &py_process::start)
        .def("call", &py_process::call, py::arg("request"))
        .def("call_fd", &py_process::call_fd, py::arg("request"), py::arg("fd"))
        .def("ask", &py_process::ask, py::arg("request"))
        .def("receive", &py_process::receive, py::arg("block"), py::arg("timeout"))
        .def("has_message", &py_process::has_message)
        .def("stop", &py_process::stop)
        .def("join", &py_process::join)
        .def("terminate", &py_process::terminate)
        .def("flush", &py_process::flush)
        .def("exit_status", &py_process::exit_status)
        .def("pid", &py_process::pid)
        .def("fd", &py_process::fd)
        .def("ready_fd", &py_process::ready_fd)
        .def("started", &py_process::started)
        .def("running", &py_process::running)
        .def("pending_asks", &py_process::pending_asks);

    py::class_<py_selector>(m, "Selector")
        .def(py::init<>())
        .def("add_process", &py_selector::add_process, py::arg("process"))
        .def("add_fd", &py_selector::add_fd, py::arg("fd"), py::arg("events"))
        .def("remove", &py_selector::remove, py::arg("id"))
        .def("wait", &py_selector::wait, py::arg("timeout"))
        .def("revents", &py_selector::revents, py::arg("id"))
        .def("size", &py_selector::size);

    // True inside the library's own fork (its at-fork hooks run Python's from there, before the
    // channels' handlers): Python at-fork hooks must then leave channels alone.
    m.def("library_forking", [] { return t_saved != nullptr; });
    // A descriptor only this process may hold: every child the library forks closes it at once.
    m.def("private_fd", [](int fd, bool on) {
        if (on) pf::sys::register_private_fd(fd);
        else pf::sys::unregister_private_fd(fd);
    }, py::arg("fd"), py::arg("on"));

    // Runs a program as the library does (vfork + exec, dies with this process, Ctrl-C is
    // ours), its standard descriptors those given (-1: this process's). The pid: ours to reap.
    m.def("spawn", [](const std::vector<std::string>& argv, int in, int out, int err) {
        pf::sys::spawn_options o;
        o.stdin_fd = in;
        o.stdout_fd = out;
        o.stderr_fd = err;
        try {
            return static_cast<int>(pf::sys::spawn(argv, o));
        } catch (const std::system_error& e) {
            PyErr_SetObject(PyExc_OSError, py::make_tuple(e.code().value(), std::string(e.what())).ptr());
            throw py::error_already_set();
        } catch (...) {
            raise_python(std::current_exception());
        }
    }, py::arg("argv"), py::arg("stdin"), py::arg("stdout"), py::arg("stderr"));

    // In a backend: sends a pickled message up to the frontend, at once.
    m.def("emit", [](const py::bytes& b) {
        char* data = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(b.ptr(), &data, &n);
        try {
            pf::emit(std::string(data, static_cast<std::size_t>(n)));
        } catch (...) {
            raise_python(std::current_exception());
        }
    });
}
} // namespace parafork_python

// Thread, Channel, shared memory and timestamps: parafork::thread, parafork::channel,
// parafork::shared_array and parafork::timestamp for the plain Python of parafork._thread,
// _channel and _shared (which pickle; only bytes cross here). Every wait runs without the GIL.

#include "common.hpp"

#include <parafork/exec/thread/thread.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/ipc/shared_array.hpp>
#include <parafork/ipc/timestamp.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace parafork_python {
namespace {

py::object* channel_closed_type = nullptr;

// raise_python, plus channel_closed as parafork.ChannelClosed.
[[noreturn]] void raise_any(std::exception_ptr ep) {
    try {
        std::rethrow_exception(ep);
    } catch (const pf::channel_closed& e) {
        PyErr_SetString(channel_closed_type->ptr(), e.what());
        throw py::error_already_set();
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    } catch (...) {
        raise_python(std::current_exception());
    }
}

// Runs fn without the GIL; what it throws comes back as the Python exception.
template <class Fn>
auto unlocked(Fn&& fn) -> decltype(fn()) {
    std::exception_ptr failed;
    {
        without_gil ng;
        try {
            return fn();
        } catch (...) {
            failed = std::current_exception();
        }
    }
    raise_any(failed);  // only reached when fn threw
}

// In the child: calls a Python callable that returns bytes (parafork._thread pickles).
std::string call_for_bytes(PyObject* fn) {
    with_gil g;
    try {
        py::object b = py::handle(fn)();
        std::string out = b.cast<std::string>();
        flush_stdio();  // the child _exits: what the function printed must be out first
        return out;
    } catch (py::error_already_set& e) {
        flush_stdio();
        throw_task_failure(e);
    }
}

// A forked thread: body() returns the pickled outcome (failures included: it never raises for
// f's own exceptions), extract() (optional) the pickled globals to merge, both in the child.
class py_thread {
public:
    py_thread(py::object body, py::object extract) : body_(std::move(body)), extract_(std::move(extract)) {
        PyObject* b = body_.ptr();
        if (extract_.is_none()) {
            t_ = pf::thread([b] { return call_for_bytes(b); });
        } else {
            PyObject* x = extract_.ptr();
            t_ = pf::thread([b] { return call_for_bytes(b); }, [x] { return call_for_bytes(x); },
                            [this](std::string bytes) { extracted_ = std::move(bytes), has_extracted_ = true; });
        }
    }
    ~py_thread() {
        without_gil ng;  // stops and reaps a child still running
        t_ = pf::thread();
    }
    py_thread(const py_thread&) = delete;
    py_thread& operator=(const py_thread&) = delete;

    void start() {
        flush_stdio();  // nothing buffered may be printed twice
        unlocked([&] { t_.start(); });
    }
    void join() {
        unlocked([&] { t_.join(); });
    }
    bool try_join() {
        return unlocked([&] { return t_.try_join(); });
    }
    bool is_alive() {
        return unlocked([&] { return t_.is_alive(); });
    }
    bool started() const { return t_.started(); }
    bool joined() const { return t_.joined(); }
    pid_t pid() const { return t_.pid(); }
    int exit_status() const {
        try {
            return t_.exit_status();
        } catch (...) {
            raise_any(std::current_exception());
        }
    }
    py::bytes result() {
        std::string r = unlocked([&] { return t_.result<std::string>(); });
        return py::bytes(r);
    }
    // The extracted globals (pickled), once joined; None without extract.
    py::object extracted() const {
        if (!has_extracted_) return py::none();
        return py::bytes(extracted_);
    }
    pf::thread& get() { return t_; }

private:
    py::object body_, extract_;
    pf::thread t_;
    std::string extracted_;
    bool has_extracted_ = false;
};

class py_channel {
public:
    explicit py_channel(std::size_t capacity) : ch_(make(capacity)) {}

    // False when !block and the message cannot start now.
    bool send(const py::bytes& b, bool block, const py::object& timeout) {
        char* data = nullptr;
        Py_ssize_t n = 0;
        PyBytes_AsStringAndSize(b.ptr(), &data, &n);
        std::string_view sv(data, static_cast<std::size_t>(n));
        auto& ch = get();
        if (!block) return unlocked([&] { return ch.try_send_bytes(sv); });
        if (timeout.is_none()) return unlocked([&] { return ch.send_bytes(sv), true; });
        auto d = seconds(timeout);
        return unlocked([&] { return ch.send_bytes_for(sv, d), true; });
    }
    // The next message, or None if there is none now (!block) or within the timeout.
    py::object receive(bool block, const py::object& timeout) {
        auto& ch = get();
        bool got = false;
        if (!block) {
            got = unlocked([&] { return ch.try_receive_bytes(buf_); });
        } else {
            // Waits in slices, so Ctrl-C (a Python signal handler) is seen while nothing comes.
            const bool forever = timeout.is_none();
            const auto end = std::chrono::steady_clock::now() + (forever ? std::chrono::nanoseconds(0) : seconds(timeout));
            for (;;) {
                auto slice = std::chrono::nanoseconds(std::chrono::milliseconds(100));
                if (!forever) slice = std::min(slice, std::max(std::chrono::nanoseconds(0), end - std::chrono::steady_clock::now()));
                got = unlocked([&] {
                    try {
                        ch.receive_bytes_for(buf_, slice);
                        return true;
                    } catch (const pf::timeout_error&) {
                        return false;
                    }
                });
                if (got || (!forever && std::chrono::steady_clock::now() >= end)) break;
                if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            }
        }
        if (!got) return py::none();
        py::bytes out(buf_);
        if (buf_.capacity() > (std::size_t{1} << 20)) std::string().swap(buf_);
        return out;
    }
    void close() {
        if (ch_) unlocked([&] { ch_->close(); });
    }
    // Drops this object's hold on the ring (the memory goes with the last holder).
    void dispose() {
        without_gil ng;
        ch_.reset();
    }
    std::size_t capacity() { return get().capacity(); }
    std::size_t size_bytes() { return get().size_bytes(); }
    std::uint64_t dropped() { return get().dropped_messages(); }
    pf::channel& get() {  // holds the GIL
        if (!ch_) {
            PyErr_SetString(channel_closed_type->ptr(), "parafork: channel disposed");
            throw py::error_already_set();
        }
        return *ch_;
    }

private:
    static std::unique_ptr<pf::channel> make(std::size_t capacity) {
        try {
            return std::make_unique<pf::channel>(capacity);
        } catch (...) {
            raise_any(std::current_exception());
        }
    }
    static std::chrono::nanoseconds seconds(const py::object& t) {
        double s = t.cast<double>();
        if (!(s >= 0)) throw py::value_error("parafork: timeout must be >= 0");
        return std::chrono::nanoseconds(static_cast<long long>(s * 1e9));
    }
    std::unique_ptr<pf::channel> ch_;
    std::string buf_;
};

// A generator's next value from its data channel, watching its thread: bytes; None when !block
// and nothing is there; a child that ended without sending raises (WorkerDied when it died).
// Others holding the channel (children forked later) keep it open, so the channel cannot tell
// of the death: the thread's pidfd does, looked at between short waits.
py::object receive_watching(py_channel& ch, py_thread& th, bool block) {
    enum outcome { got, none, ended, waiting };
    auto& c = ch.get();
    auto& t = th.get();
    std::string buf;
    for (;;) {
        outcome r = unlocked([&] {
            try {
                if (c.try_receive_bytes(buf)) return got;
                if (!t.is_alive()) return c.try_receive_bytes(buf) ? got : ended;  // sent just before
                if (!block) return none;
                c.receive_bytes_for(buf, std::chrono::milliseconds(50));
                return got;
            } catch (const pf::timeout_error&) {
                return waiting;
            } catch (const pf::channel_closed&) {
                return ended;  // no sender left: the child is gone
            }
        });
        if (r == got) return py::bytes(buf);
        if (r == none) return py::none();
        if (r == ended) break;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C while waiting
    }
    th.join();  // raises if it died or failed
    raise_any(std::make_exception_ptr(pf::error("parafork: generator ended without its value")));
}

// Joins a generator's thread, discarding values still coming (one larger than the channel
// would otherwise keep the child waiting for room while the parent waits for its exit).
void join_draining(py_channel& ch, py_thread& th) {
    auto& c = ch.get();
    auto& t = th.get();
    unlocked([&] {
        std::string sink;
        while (!t.try_join()) {
            try {
                c.receive_bytes_for(sink, std::chrono::milliseconds(20));
            } catch (const pf::timeout_error&) {
            } catch (const pf::channel_closed&) {
                t.join();  // no sender left: nothing more can block the child
                return;
            }
        }
    });
}

class shared_memory {
public:
    explicit shared_memory(std::size_t bytes) : bytes_(bytes) {
        try {
            a_ = pf::shared_array<unsigned char>({std::max<std::size_t>(bytes, 1)});
        } catch (...) {
            raise_any(std::current_exception());
        }
    }
    py::buffer_info buffer() {
        return py::buffer_info(a_.data(), 1, py::format_descriptor<unsigned char>::format(), 1,
                               {static_cast<py::ssize_t>(bytes_)}, {1});
    }
    std::size_t size() const { return bytes_; }
    int fd() const { return a_.fd(); }

private:
    pf::shared_array<unsigned char> a_;
    std::size_t bytes_;
};

} // namespace

void bind_snakefish(py::module_& m) {
    py::object error = py::module_::import("parafork._core").attr("Error");
    channel_closed_type = new py::object(py::reinterpret_steal<py::object>(
        PyErr_NewException("parafork.ChannelClosed", error.ptr(), nullptr)));
    m.attr("ChannelClosed") = *channel_closed_type;

    py::class_<py_thread>(m, "Thread")
        .def(py::init<py::object, py::object>(), py::arg("body"), py::arg("extract"))
        .def("start", &py_thread::start)
        .def("join", &py_thread::join)
        .def("try_join", &py_thread::try_join)
        .def("is_alive", &py_thread::is_alive)
        .def("started", &py_thread::started)
        .def("joined", &py_thread::joined)
        .def("pid", &py_thread::pid)
        .def("exit_status", &py_thread::exit_status)
        .def("result", &py_thread::result)
        .def("extracted", &py_thread::extracted);

    py::class_<py_channel>(m, "Channel")
        .def(py::init<std::size_t>(), py::arg("capacity"))
        .def("send", &py_channel::send, py::arg("data"), py::arg("block"), py::arg("timeout"))
        .def("receive", &py_channel::receive, py::arg("block"), py::arg("timeout"))
        .def("close", &py_channel::close)
        .def("dispose", &py_channel::dispose)
        .def("capacity", &py_channel::capacity)
        .def("size_bytes", &py_channel::size_bytes)
        .def("dropped", &py_channel::dropped);

    m.def("receive_watching", &receive_watching, py::arg("channel"), py::arg("thread"), py::arg("block"));
    m.def("join_draining", &join_draining, py::arg("channel"), py::arg("thread"));

    py::class_<shared_memory>(m, "SharedMemory", py::buffer_protocol())
        .def(py::init<std::size_t>(), py::arg("bytes"))
        .def_buffer(&shared_memory::buffer)
        .def("size", &shared_memory::size)
        .def("fd", &shared_memory::fd);

    m.def("timestamp", [] { return pf::timestamp(); },
          "CLOCK_MONOTONIC in nanoseconds: comparable across the processes of this machine.");
    m.def("timestamp_serialized", [] { return pf::timestamp_serialized(); },
          "timestamp(), not taken before this thread's earlier memory operations complete.");
}
} // namespace parafork_python

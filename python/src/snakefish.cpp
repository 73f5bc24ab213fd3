// Thread, Channel, shared memory and timestamps: parafork::thread, parafork::channel,
// parafork::shared_array and parafork::timestamp for the plain Python of parafork._thread,
// _channel and _shared (which pickle; only bytes cross here). Every wait runs without the GIL.

#include "common.hpp"

#include <parafork/exec/thread/thread.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/ipc/shared_array.hpp>
#include <parafork/ipc/timestamp.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/wire/large.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include <poll.h>

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

// unlocked() with parafork.ChannelClosed among the exceptions.
template <class Fn>
auto unlocked_any(Fn&& fn) -> decltype(fn()) {
    return unlocked(std::forward<Fn>(fn), raise_any);
}


// In a Thread's child, while its body runs: the memfd (made by the parent before the fork)
// that pickle_result spills a large result's buffers into; -1 elsewhere.
int child_spill_fd = -1;

// pickle.dumps(obj, 5) as a pickled5 message; in a Thread's child, buffers of 1 MiB or more go
// into the thread's memfd, which the parent maps (no copy through the report pipe).
py::bytes pickle_result(const py::object& obj) {
    pickled5 p(obj);
    if (child_spill_fd >= 0 && p.spill(child_spill_fd, pf::wire::default_large_threshold))
        child_spill_fd = -1;  // sealed: one spill per child
    std::string out;
    out.reserve(p.size());
    p.write_to(out);
    return py::bytes(out);
}

// In the child: calls a Python callable that returns bytes (parafork._thread pickles).
std::string call_for_bytes(PyObject* fn, int spill = -1) {
    with_gil g;
    child_spill_fd = spill;
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
        const int* spill = &spill_fd_;  // read in the child, where this object is a copy
        if (extract_.is_none()) {
            t_ = pf::thread([b, spill] { return call_for_bytes(b, *spill); });
        } else {
            PyObject* x = extract_.ptr();
            t_ = pf::thread([b, spill] { return call_for_bytes(b, *spill); }, [x] { return call_for_bytes(x); },
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
        // Made before the fork, so the child has it; private after it, so later children do not.
        pf::sys::unique_fd spill = pf::sys::make_memfd("parafork-result", 0);
        spill_fd_ = spill.get();
        try {
            unlocked_any([&] { t_.start(); });
        } catch (...) {
            spill_fd_ = -1;
            throw;
        }
        spill_ = pf::sys::private_fd(std::move(spill));
    }
    void join() {
        settle_after([&] { t_.join(); });
    }
    bool try_join() {
        return settle_after([&] { return t_.try_join(); });
    }
    bool is_alive() {
        return unlocked_any([&] { return t_.is_alive(); });
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
        std::string r = unlocked_any([&] { return t_.result<std::string>(); });
        return py::bytes(r);
    }
    // The result unpickled: a large one's buffers are views of the memfd the child filled.
    py::object load_result() {
        struct release {
            py_thread& t;
            ~release() { t.spill_.reset(); }  // a mapping, if any, keeps the memory
        } r_{*this};
        std::string r = unlocked_any([&] { return t_.result<std::string>(); });
        return is_pickled5(r) ? unpickle5(r, py::handle(), spill_.get()) : h->loads(py::bytes(r));
    }
    // The extracted globals (pickled), once joined; None without extract.
    py::object extracted() const {
        if (!has_extracted_) return py::none();
        return py::bytes(extracted_);
    }
    pf::thread& get() { return t_; }

private:
    // Runs a wait; once the child is gone, its memfd is closed unless the result is in it.
    template <class Fn>
    auto settle_after(Fn&& fn) -> decltype(fn()) {
        struct settle {
            py_thread& t;
            ~settle() {
                try {
                    if (t.spill_ && t.t_.joined() && pf::sys::fd_size(t.spill_.get()) == 0) t.spill_.reset();
                } catch (...) {  // cannot tell: it closes with the object
                }
            }
        } s_{*this};
        return unlocked_any(std::forward<Fn>(fn));
    }

    py::object body_, extract_;
    pf::thread t_;
    std::string extracted_;
    bool has_extracted_ = false;
    pf::sys::private_fd spill_;  // see start()
    int spill_fd_ = -1;
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
        if (!block) return unlocked_any([&] { return ch.try_send_bytes(sv); });
        if (timeout.is_none()) return unlocked_any([&] { return ch.send_bytes(sv), true; });
        auto d = seconds(timeout);
        return unlocked_any([&] { return ch.send_bytes_for(sv, d), true; });
    }
    // The next message, or None if there is none now (!block) or within the timeout.
    py::object receive(bool block, const py::object& timeout) {
        auto& ch = get();
        bool got = false;
        if (!block) {
            got = unlocked_any([&] { return ch.try_receive_bytes(buf_); });
        } else if (timeout.is_none()) {
            // A signal ends the wait only if its Python handler raises (check_interruption).
            got = unlocked_any([&] { return ch.receive_bytes(buf_), true; });
        } else {
            auto d = seconds(timeout);
            got = unlocked_any([&] {
                try {
                    ch.receive_bytes_for(buf_, d);
                    return true;
                } catch (const pf::timeout_error&) {
                    return false;
                }
            });
        }
        if (!got) return py::none();
        py::bytes out(buf_);
        if (buf_.capacity() > (std::size_t{1} << 20)) std::string().swap(buf_);
        return out;
    }
    void close() {
        if (ch_) unlocked_any([&] { ch_->close(); });
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

// Sleeps, without the GIL, until `c` has data or the process behind `pidfd` exits; a signal
// runs the interpreter's handlers (check_interruption), which may raise. The caller must be
// the channel's only receiver (channel_arm's rule): a generator's parent is.
void sleep_for_data_or_exit(pf::channel& c, int pidfd) {
    int fd = pf::detail::channel_arm(c, 0);
    if (fd < 0) return;  // data came meanwhile
    struct disarm {
        pf::channel& c;
        ~disarm() { pf::detail::channel_disarm(c, 0); }
    } armed{c};
    pollfd p[2] = {{fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    if (pf::sys::poll_fds(p, 2, -1) < 0) pf::sys::check_interruption();
}

// A generator's next value from its data channel, watching its thread: bytes; None when !block
// and nothing is there; a child that ended without sending raises (WorkerDied when it died).
// Others holding the channel (children forked later) keep it open, so the channel cannot tell
// of the death: the child's pidfd does, in the same poll as the channel.
py::object receive_watching(py_channel& ch, py_thread& th, bool block) {
    enum outcome { got, none, ended };
    auto& c = ch.get();
    auto& t = th.get();
    std::string buf;
    outcome r = unlocked_any([&] {
        try {
            pf::sys::unique_fd pidfd;
            for (;;) {
                if (c.try_receive_bytes(buf)) return got;
                if (!t.is_alive()) return c.try_receive_bytes(buf) ? got : ended;  // sent just before
                if (!block) return none;
                if (!pidfd) pidfd = pf::sys::open_pidfd(t.pid());
                sleep_for_data_or_exit(c, pidfd.get());
            }
        } catch (const pf::channel_closed&) {
            return ended;  // no sender left: the child is gone
        }
    });
    if (r == got) return py::bytes(buf);
    if (r == none) return py::none();
    th.join();  // raises if it died or failed
    raise_any(std::make_exception_ptr(pf::error("parafork: generator ended without its value")));
}

// Joins a generator's thread, discarding values still coming (one larger than the channel
// would otherwise keep the child waiting for room while the parent waits for its exit).
void join_draining(py_channel& ch, py_thread& th) {
    auto& c = ch.get();
    auto& t = th.get();
    unlocked_any([&] {
        std::string sink;
        pf::sys::unique_fd pidfd;
        while (!t.try_join()) {
            try {
                while (c.try_receive_bytes(sink)) {
                }
            } catch (const pf::channel_closed&) {
                t.join();  // no sender left: nothing more can block the child
                return;
            }
            if (!pidfd) pidfd = pf::sys::open_pidfd(t.pid());
            sleep_for_data_or_exit(c, pidfd.get());
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
        .def("load_result", &py_thread::load_result)
        .def("extracted", &py_thread::extracted);

    py::class_<py_channel>(m, "Channel")
        .def(py::init<std::size_t>(), py::arg("capacity"))
        .def("send", &py_channel::send, py::arg("data"), py::arg("block"), py::arg("timeout"))
        .def("receive", &py_channel::receive, py::arg("block"), py::arg("timeout"))
        .def("close", &py_channel::close)
        .def("dispose", &py_channel::dispose)
        .def("capacity", &py_channel::capacity)
        .def("size_bytes", &py_channel::size_bytes)
        .def("dropped", &py_channel::dropped)
        // For a sole receiver that sleeps in its own poll beside other descriptors (ez's parent).
        .def("_arm", [](py_channel& c) { return pf::detail::channel_arm(c.get(), 0); })
        .def("_disarm", [](py_channel& c) { pf::detail::channel_disarm(c.get(), 0); });

    m.def("receive_watching", &receive_watching, py::arg("channel"), py::arg("thread"), py::arg("block"));
    m.def("join_draining", &join_draining, py::arg("channel"), py::arg("thread"));

    py::class_<shared_memory>(m, "SharedMemory", py::buffer_protocol())
        .def(py::init<std::size_t>(), py::arg("bytes"))
        .def_buffer(&shared_memory::buffer)
        .def("size", &shared_memory::size)
        .def("fd", &shared_memory::fd);

    m.def("pickle_result", &pickle_result, py::arg("obj"));
    m.def("timestamp", [] { return pf::timestamp(); },
          "CLOCK_MONOTONIC in nanoseconds: comparable across the processes of this machine.");
    m.def("timestamp_serialized", [] { return pf::timestamp_serialized(); },
          "timestamp(), not taken before this thread's earlier memory operations complete.");
}
} // namespace parafork_python

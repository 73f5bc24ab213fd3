// Pool: multiprocessing.Pool on parafork's pool engine. The workers fork when the pool is made;
// a task is pickled bytes (function, arguments) run under the GIL in a worker by
// parafork._pool._run, which answers pickled bytes. Python (parafork/_pool.py) builds the tasks
// and turns the answers into AsyncResults.
//
// Who drives the engine. The engine is single-threaded and advances only while someone pumps
// it, but Python code may submit from any thread and callbacks must run even if nobody calls
// get(). So one thread at a time is the "driver" (driving_): it pumps without the GIL and
// without mu_ while the others wait on a condition variable, also without the GIL. A thread
// waiting for its own result (get, wait, map) drives itself: apply() is one thread, no hand-off.
// When tasks are in flight and nobody waits, the pool's handler thread (serve(), started by the
// first async call) drives and returns the finished tasks that have callbacks, which Python
// runs in that thread, as multiprocessing does. A driver sleeps in one poll on what the engine
// would sleep on (its workers' pipes and pidfds, see executor::watch), Ctrl-C's descriptor and
// the pool's own eventfd, which a thread that submits or stops while another drives writes: so
// the driver wakes on an answer, a death, Ctrl-C or new work, never on a timer.

#include "common.hpp"

#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/signals.hpp>

#include <cxxabi.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace parafork_python {

// In a worker: parafork._pool._run(blob) -> pickled answer. Named (not anonymous): its address
// names the code workers run (see pool.md), and pool_call is its argument type.
struct pickled_call {
    PyObject* run = nullptr;  // parafork._pool._run, alive as long as the pool
    std::string operator()(const std::string& blob) const {
        with_gil g;
        try {
            py::object r = py::reinterpret_borrow<py::object>(run)(
                py::memoryview::from_memory(blob.data(), static_cast<Py_ssize_t>(blob.size())));
            char* data = nullptr;
            Py_ssize_t n = 0;
            if (PyBytes_AsStringAndSize(r.ptr(), &data, &n) != 0) throw py::error_already_set();
            return std::string(data, static_cast<std::size_t>(n));
        } catch (py::error_already_set& e) {
            throw_task_failure(e);
        }
    }
};

namespace {
using clock = std::chrono::steady_clock;
namespace d = pf::detail;
// How long a handler waits for a fresh async task's submitter to drive it before it does.
constexpr auto hand_off = std::chrono::milliseconds(2);

std::optional<clock::time_point> deadline_of(const py::object& timeout) {
    if (timeout.is_none()) return std::nullopt;
    double t = timeout.cast<double>();
    if (t < 0) t = 0;
    return clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(t));
}

py::object exception_of(std::exception_ptr ep) {
    try {
        try {
            std::rethrow_exception(ep);
        } catch (const pf::remote_error& e) {
            // The initializer raised: the engine names worker_init before the description.
            static constexpr std::string_view prefix = "worker_init: ";
            if (e.type_name() == task_failure_name && e.message().rfind(prefix, 0) == 0)
                ep = std::make_exception_ptr(
                    pf::remote_error(e.type_name(), e.message().substr(prefix.size()), e.pid(), e.task()));
        } catch (...) {
        }
        raise_python(ep);
    } catch (py::error_already_set& e) {
        return e.value();
    } catch (const std::exception& e) {
        return h->error(std::string(e.what()));
    }
}

class py_pool;

// One task's answer, routed by the engine to its pool.
struct task_state final : d::call_state {
    py_pool* owner;
    std::uint64_t id;
    task_state(py_pool* o, std::uint64_t i) : owner(o), id(i) {}
    void values(std::uint64_t, std::uint32_t count, std::string_view bytes) override;
    void failed(std::uint64_t, const d::failure_info& f) override;
    bool lent(std::uint64_t, const d::lent_ref& r) override;
};

class py_pool {
public:
    py_pool(py::object run, py::object init, const py::object& processes, unsigned maxtasks,
            const py::object& timeout, unsigned retries, bool progress, const py::object& name,
            const py::object& dashboard)
        : run_(std::move(run)), init_(std::move(init)) {
        call_.run = run_.ptr();
        pf::options o = make_options(processes, py::none(), timeout, retries, progress, name, dashboard);
        o.max_tasks_per_worker = maxtasks;
        if (!init_.is_none()) {
            PyObject* f = init_.ptr();  // alive as long as the pool; the worker has its own copy
            o.worker_init = [f] {
                with_gil g;
                try {
                    py::reinterpret_borrow<py::object>(f)();
                } catch (py::error_already_set& e) {
                    throw_task_failure(e);
                }
                flush_stdio();
            };
        }
        header_ = d::call_header<pickled_call, std::tuple<std::string>, true>(&call_);
        flush_stdio();
        without_gil ng;
        spin_ = o.spin;
        core_ = std::make_unique<d::pool_core>(o);  // forks the workers now
        size_ = core_->eng->size();
    }
    ~py_pool() {
        // Python terminates or joins first; this only covers a pool dropped mid-way.
        if (serve_stop_) return;
        without_gil ng;
        stop_engine();
    }

    unsigned size() const noexcept { return size_; }

    // Queues one task (pickled by Python). `channel`: where its id goes when it finishes (0:
    // nowhere); `notify`: to the handler too (it has callbacks); `async`: nobody is about to
    // wait for it, so it is sent now and the handler is woken to drive.
    std::uint64_t submit(const py::bytes& blob, std::uint64_t channel, bool notify, bool async) {
        d::job j = make_job(blob);
        without_gil ng;
        std::unique_lock lk(mu_);
        if (closed_) throw py::value_error("Pool not running");
        std::uint64_t id = next_id_++;
        inflight_.emplace(id, info{channel, notify, false});
        if (broken_) {
            complete_locked(id, {}, broken_);
            return id;
        }
        pending_.push_back({id, std::move(j)});
        if (notify) ++notify_inflight_;
        else if (async) last_async_ = clock::now();
        if (async) {
            if (!driving_) drive_once(lk, std::nullopt, false);  // sends it now
            hcv_.notify_one();
        }
        wake_driver();  // a driver asleep sends it
        return id;
    }

    // apply(): submits, waits (driving) and takes the answer in one call, with no Python in
    // between: (True, pickled bytes) or (False, the exception).
    py::object call(const py::bytes& blob) {
        d::job j = make_job(blob);
        result r;
        {
            without_gil ng;
            std::unique_lock lk(mu_);
            if (closed_) throw py::value_error("Pool not running");
            std::uint64_t id = next_id_++;
            inflight_.emplace(id, info{0, false, false});
            if (broken_) complete_locked(id, {}, broken_);
            else pending_.push_back({id, std::move(j)});
            wake_driver();  // a driver asleep sends it
            try {
                progress(lk, [&] { return !inflight_.count(id); }, std::nullopt);
            } catch (...) {  // Ctrl-C: nobody will take this answer
                if (inflight_.count(id)) forgotten_.insert(id);
                else results_.erase(id);
                throw;
            }
            auto it = results_.find(id);
            if (it == results_.end()) throw pf::error("parafork: the pool lost a task");
            r = std::move(it->second);
            results_.erase(it);
        }
        if (r.error) return py::make_tuple(false, exception_of(r.error));
        return py::make_tuple(true, py::bytes(r.bytes));
    }

    // Waits (driving if nobody else does) until task `id` has finished; false on timeout.
    bool wait(std::uint64_t id, const py::object& timeout) {
        auto deadline = deadline_of(timeout);
        without_gil ng;
        std::unique_lock lk(mu_);
        return progress(lk, [&] { return !inflight_.count(id); }, deadline);
    }
    // The next finished task of `channel`, or -1 at the timeout (or when nothing is in flight).
    long long next_done(std::uint64_t channel, const py::object& timeout) {
        auto deadline = deadline_of(timeout);
        without_gil ng;
        std::unique_lock lk(mu_);
        auto& q = channels_[channel];
        if (!progress(lk, [&] { return !q.empty(); }, deadline)) return -1;
        auto id = q.front();
        q.pop_front();
        return static_cast<long long>(id);
    }
    std::uint64_t open_channel() {
        std::lock_guard lk(mu_);
        channels_[next_channel_];
        return next_channel_++;
    }
    void drop_channel(std::uint64_t channel) {
        std::lock_guard lk(mu_);
        channels_.erase(channel);
    }

    // 0: running, 1: done, 2: failed, 3: taken or unknown. Never blocks.
    int state(std::uint64_t id) {
        std::lock_guard lk(mu_);
        if (inflight_.count(id)) return 0;
        auto it = results_.find(id);
        if (it == results_.end()) return 3;
        return it->second.error ? 2 : 1;
    }
    // The answer, once: (True, pickled bytes) or (False, the exception); None if not there.
    py::object take(std::uint64_t id) {
        result r;
        {
            std::lock_guard lk(mu_);
            auto it = results_.find(id);
            if (it == results_.end()) return py::none();
            r = std::move(it->second);
            results_.erase(it);
        }
        if (r.error) return py::make_tuple(false, exception_of(r.error));
        return py::make_tuple(true, py::bytes(r.bytes));
    }
    // Nobody will take this task's answer: drop it now or when it comes.
    void forget(std::uint64_t id) {
        std::lock_guard lk(mu_);
        if (inflight_.count(id)) forgotten_.insert(id);
        else results_.erase(id);
    }

    // The handler thread: drives while tasks are in flight and nobody else does; returns the
    // ids of finished tasks that have callbacks, or None once the pool is stopped and drained.
    py::object serve() {
        std::vector<std::uint64_t> ids;
        bool interrupted = false;
        {
            without_gil ng;
            std::unique_lock lk(mu_);
            std::optional<pf::sys::sigint_guard> ctrl_c;  // while driving, between slices too
            for (;;) {
                if (!notify_.empty()) {
                    ids.assign(notify_.begin(), notify_.end());
                    notify_.clear();
                    break;
                }
                if (serve_stop_ && inflight_.empty()) break;
                if (!driving_ && !stopping_ && !inflight_.empty()) {
                    // Tasks without callbacks, just submitted: their submitter likely waits for
                    // them next and drives itself (no hand-off); drive only if nobody has.
                    auto grace = last_async_ + hand_off;
                    if (notify_inflight_ == 0 && clock::now() < grace) {
                        ctrl_c.reset();
                        hcv_.wait_until(lk, grace);
                        continue;
                    }
                    if (!ctrl_c) ctrl_c.emplace();
                    if (drive_once(lk, std::nullopt, true)) {
                        interrupted = true;
                        break;
                    }
                    continue;
                }
                ctrl_c.reset();  // idle: Ctrl-C is Python's again
                hcv_.wait(lk);
            }
        }
        // Ctrl-C reached this thread (the engine's guard caught it): the pool is stopped and
        // its tasks failed; Python passes the SIGINT on to the main thread.
        if (interrupted) {
            PyErr_SetNone(PyExc_KeyboardInterrupt);
            throw py::error_already_set();
        }
        if (ids.empty()) return py::none();
        py::object out = py::list(ids.size());
        for (std::size_t k = 0; k < ids.size(); ++k)
            PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(k), py::int_(ids[k]).release().ptr());
        return out;
    }

    void close() {
        std::lock_guard lk(mu_);
        closed_ = true;
    }
    // Every task answered, then the workers exit (worker_exit) and are reaped.
    void join() {
        without_gil ng;
        std::unique_lock lk(mu_);
        closed_ = true;
        progress(lk, [&] { return inflight_.empty(); }, std::nullopt);
        cv_.wait(lk, [&] { return !driving_; });
        if (broken_) {
            try {
                std::rethrow_exception(broken_);
            } catch (const pf::interrupted&) {  // Ctrl-C during the join
                stop_serving_locked();
                lk.unlock();
                with_gil g;
                PyErr_SetNone(PyExc_KeyboardInterrupt);
                throw py::error_already_set();
            } catch (...) {
            }
        }
        if (!broken_ && !joined_) {
            driving_ = true;
            lk.unlock();
            std::exception_ptr failed;
            try {
                core_->eng->join(*core_);
            } catch (...) {
                failed = std::current_exception();
                core_->eng->terminate();
            }
            lk.lock();
            driving_ = false;
            joined_ = true;
            if (failed && !broken_) broken_ = failed;
            stop_serving_locked();
            if (failed) {
                lk.unlock();
                with_gil g;
                raise_python(failed);
            }
        }
        stop_serving_locked();
    }
    // Stops every worker now; tasks not answered fail with parafork.Error.
    void terminate() {
        without_gil ng;
        stop_engine();
    }

private:
    d::job make_job(const py::bytes& blob) {
        d::job j;
        j.kind = d::job_kind::call;
        j.count = 1;
        j.body = header_;
        j.prefix = static_cast<std::uint32_t>(header_.size());
        j.offsets.push_back(j.prefix);
        char* data = nullptr;
        Py_ssize_t n = 0;
        if (PyBytes_AsStringAndSize(blob.ptr(), &data, &n) != 0) throw py::error_already_set();
        d::encode_arg(j.body, std::string_view(data, static_cast<std::size_t>(n)));
        return j;
    }

    struct info {
        std::uint64_t channel;
        bool notify;
        bool pushed;
    };
    struct result {
        std::string bytes;
        std::exception_ptr error;
    };
    struct pending_job {
        std::uint64_t id;
        d::job j;
    };
    friend struct task_state;

    void stop_engine() {
        std::unique_lock lk(mu_);
        closed_ = true;
        stopping_ = true;
        wake_driver();
        cv_.wait(lk, [&] { return !driving_; });  // the driver wakes and gives up
        if (!joined_ && core_) {
            driving_ = true;
            lk.unlock();
            core_->eng->terminate();  // the stop signal, grace, SIGKILL; all reaped
            lk.lock();
            driving_ = false;
        }
        if (!broken_) broken_ = std::make_exception_ptr(pf::error("parafork: the pool was terminated"));
        fail_all_locked();
        stop_serving_locked();
    }
    void stop_serving_locked() {
        if (!driving_) wake_ = {};  // stopped or joined: nobody drives again
        serve_stop_ = true;
        hcv_.notify_all();
        cv_.notify_all();
    }
    void fail_all_locked() {
        pending_.clear();
        std::vector<std::uint64_t> ids;
        for (auto& [id, _] : inflight_) ids.push_back(id);
        for (auto id : ids) complete_locked(id, {}, broken_);
    }

    // Waits until ready() holds, driving the engine whenever nobody else does. lk is held.
    // The first drive only spins (no SIGINT guard: a quick answer costs no pipe and no
    // sigaction); before it sleeps or waits for another driver it takes Ctrl-C over (arm).
    template <class Pred>
    bool progress(std::unique_lock<std::mutex>& lk, Pred ready, std::optional<clock::time_point> deadline) {
        ++waiters_;
        struct leave {
            unsigned& n;
            ~leave() { --n; }
        } leave_{waiters_};
        std::optional<pf::sys::sigint_guard> ctrl_c;  // from arm() on, the whole wait is ours
        bool spun = false;
        for (;;) {
            if (ready()) break;
            if (deadline && clock::now() >= *deadline) break;
            if (!driving_ && !stopping_ && !inflight_.empty()) {
                if (!ctrl_c && !spun) {
                    spun = true;
                    drive_once(lk, deadline, true, false);
                    continue;
                }
                if (!ctrl_c) {
                    arm(lk, ctrl_c);
                    continue;
                }
                drive_once(lk, deadline, true);
                continue;
            }
            if (!driving_ && inflight_.empty()) break;  // nothing in flight: nothing will change
            if (!ctrl_c) {
                arm(lk, ctrl_c);
                continue;
            }
            if (deadline) cv_.wait_until(lk, *deadline);
            else cv_.wait(lk);
        }
        return ready();
    }
    // Takes Ctrl-C over for a wait that may sleep. A SIGINT that came before went to Python's
    // handler: it is raised here (KeyboardInterrupt), not left until the wait ends.
    void arm(std::unique_lock<std::mutex>& lk, std::optional<pf::sys::sigint_guard>& ctrl_c) {
        lk.unlock();
        {
            with_gil g;
            if (PyErr_CheckSignals() != 0) {
                py::error_already_set e;
                lk.lock();
                throw e;
            }
        }
        try {
            ctrl_c.emplace();
        } catch (...) {
            lk.lock();
            throw;
        }
        lk.lock();
    }

    // As the driver (lk held on entry and exit, released meanwhile): sends what was submitted,
    // then (pump) takes the answers there are or, if none, sleeps until an event (sleep). A
    // failure of the engine itself (Ctrl-C, the initializer raised, a worker that cannot be
    // forked) stops it and fails every task with it. True if that failure was Ctrl-C.
    // With !may_sleep it only spins for an answer (see progress), without a SIGINT guard.
    bool drive_once(std::unique_lock<std::mutex>& lk, std::optional<clock::time_point> deadline, bool pump,
                    bool may_sleep = true) {
        driving_ = true;
        std::deque<pending_job> jobs;
        jobs.swap(pending_);
        for (auto& p : jobs) inflight_[p.id].pushed = true;
        lk.unlock();
        std::exception_ptr failed;
        bool idle = false;
        try {
            for (auto& p : jobs) {
                auto st = std::make_shared<task_state>(this, p.id);
                core_->open(st);
                core_->push(*st, std::move(p.j));
                core_->seal(*st);
            }
            if (!jobs.empty()) {
                core_->eng->kick();
                last_sent_ = clock::now();
            }
            if (pump && !may_sleep) {
                auto answered = core_->eng->counters().answered;
                idle = !core_->pump(clock::now());
                if (!idle && core_->eng->counters().answered == answered && spin()) idle = !core_->pump(clock::now());
            } else if (pump) {
                pf::sys::sigint_guard ctrl_c;
                auto answered = core_->eng->counters().answered;
                idle = !core_->pump(clock::now());
                if (!idle && core_->eng->counters().answered == answered) {
                    sleep(deadline);
                    idle = !core_->pump(clock::now());  // what woke it, while still driving
                }
            }
        } catch (abi::__forced_unwind&) {  // the thread is being ended: let it
            throw;
        } catch (...) {
            failed = std::current_exception();
            core_->eng->terminate();
        }
        lk.lock();
        driving_ = false;
        bool interrupted = false;
        if (failed) {
            try {
                std::rethrow_exception(failed);
            } catch (const pf::interrupted&) {
                interrupted = true;
            } catch (...) {
            }
            if (!broken_) broken_ = failed;
            fail_all_locked();
        } else if (idle && pending_.empty()) {
            // The engine has nothing left, so every task it was given has been answered.
            std::vector<std::uint64_t> lost;
            for (auto& [id, i] : inflight_)
                if (i.pushed) lost.push_back(id);
            for (auto id : lost)
                complete_locked(id, {}, std::make_exception_ptr(pf::error("parafork: the pool lost a task")));
        }
        if (waiters_) cv_.notify_all();
        if (!inflight_.empty() || !notify_.empty() || stopping_) hcv_.notify_one();
        if (stopping_) cv_.notify_all();
        return interrupted;
    }

    // The driver's sleep: until an answer, a death or a task's timeout (what the engine
    // watches), Ctrl-C, the caller's deadline, or a wake_driver() from another thread. Soon
    // after work was sent it spins first, as the engine's own waits do: an answer due within
    // microseconds is taken without the cost of a sleep and a wake-up.
    void sleep(std::optional<clock::time_point> deadline) {
        fds_.clear();
        auto until = core_->watch(fds_);
        if (deadline && (!until || *deadline < *until)) until = deadline;
        fds_.push_back({wake_.get(), POLLIN, 0});
        if (int sig = pf::sys::sigint_guard::fd(); sig >= 0) fds_.push_back({sig, POLLIN, 0});
        int timeout = -1;
        if (until) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(*until - clock::now()).count();
            timeout = static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
        }
        auto spin = clock::now() - last_sent_ < spin_ ? spin_ : std::chrono::microseconds(0);
        if (pf::sys::poll_spin(fds_.data(), fds_.size(), timeout, spin) < 0 && errno != EINTR)
            throw std::system_error(errno, std::generic_category(), "poll");
        pf::sys::eventfd_drain(wake_.get());
    }
    // The spin alone, soon after work was sent: true if something became ready.
    bool spin() {
        if (clock::now() - last_sent_ >= spin_) return false;
        fds_.clear();
        core_->watch(fds_);
        fds_.push_back({wake_.get(), POLLIN, 0});
        int r = pf::sys::spin_poll(fds_.data(), fds_.size(), spin_);
        if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
        if (r > 0) pf::sys::eventfd_drain(wake_.get());
        return r != 0;
    }
    // Ends a driver's sleep (lk held: driving_ is read under it).
    void wake_driver() {
        if (driving_ && wake_) pf::sys::eventfd_signal(wake_.get());
    }

    void complete(std::uint64_t id, std::string bytes, std::exception_ptr error) {
        std::lock_guard lk(mu_);
        complete_locked(id, std::move(bytes), std::move(error));
    }
    void complete_locked(std::uint64_t id, std::string bytes, std::exception_ptr error) {
        auto it = inflight_.find(id);
        if (it == inflight_.end()) return;
        info i = it->second;
        inflight_.erase(it);
        if (i.notify) --notify_inflight_;
        if (forgotten_.erase(id)) return;
        results_[id] = result{std::move(bytes), std::move(error)};
        if (i.notify) notify_.push_back(id);
        if (i.channel) {
            auto c = channels_.find(i.channel);
            if (c != channels_.end()) c->second.push_back(id);
        }
    }

    py::object run_, init_;
    pickled_call call_;
    std::string header_;
    std::unique_ptr<d::pool_core> core_;  // touched by the driver only
    unsigned size_ = 0;

    std::mutex mu_;  // never held while taking the GIL, so holding the GIL while taking it is safe
    std::condition_variable cv_;   // waiters: a task finished, or the driver let go
    std::condition_variable hcv_;  // the handler thread
    bool driving_ = false, closed_ = false, stopping_ = false, serve_stop_ = false, joined_ = false;
    unsigned waiters_ = 0;
    pf::sys::private_fd wake_{pf::sys::make_eventfd()};  // see sleep(); workers do not inherit it
    std::vector<pollfd> fds_;                             // sleep()'s poll set, reused
    std::chrono::microseconds spin_{};
    clock::time_point last_sent_{};  // by the driver, when it last handed work to the engine
    std::size_t notify_inflight_ = 0;  // tasks with callbacks, not answered
    clock::time_point last_async_{};   // the last async submit of a task without callbacks
    std::exception_ptr broken_;
    std::uint64_t next_id_ = 0, next_channel_ = 1;
    std::deque<pending_job> pending_;
    std::unordered_map<std::uint64_t, info> inflight_;  // submitted, not answered
    std::unordered_map<std::uint64_t, result> results_;
    std::unordered_set<std::uint64_t> forgotten_;
    std::deque<std::uint64_t> notify_;
    std::unordered_map<std::uint64_t, std::deque<std::uint64_t>> channels_;
};

void task_state::values(std::uint64_t, std::uint32_t count, std::string_view bytes) {
    if (count != 1) throw pf::protocol_error("parafork: a task answered more than one value");
    owner->complete(id, d::decode_one<std::string>(bytes), nullptr);
}
void task_state::failed(std::uint64_t, const d::failure_info& f) {
    owner->complete(id, {}, d::make_failure(f, id));
}
bool task_state::lent(std::uint64_t, const d::lent_ref& r) {
    auto v = d::fetch_lent<std::string>(r);
    if (!v) return false;
    owner->complete(id, std::move(*v), nullptr);
    return true;
}
} // namespace

void bind_pool(py::module_& m) {
    py::class_<py_pool>(m, "PoolCore")
        .def(py::init<py::object, py::object, py::object, unsigned, py::object, unsigned, bool, py::object,
                      py::object>(),
             py::arg("run"), py::arg("init"), py::arg("processes"), py::arg("maxtasks"), py::arg("timeout"),
             py::arg("retries"), py::arg("progress"), py::arg("name"), py::arg("dashboard") = py::none())
        .def_property_readonly("size", &py_pool::size)
        .def("submit", &py_pool::submit, py::arg("blob"), py::arg("channel"), py::arg("notify"), py::arg("async_"))
        .def("call", &py_pool::call, py::arg("blob"))
        .def("wait", &py_pool::wait, py::arg("id"), py::arg("timeout"))
        .def("next_done", &py_pool::next_done, py::arg("channel"), py::arg("timeout"))
        .def("open_channel", &py_pool::open_channel)
        .def("drop_channel", &py_pool::drop_channel)
        .def("state", &py_pool::state)
        .def("take", &py_pool::take)
        .def("forget", &py_pool::forget)
        .def("serve", &py_pool::serve)
        .def("close", &py_pool::close)
        .def("join", &py_pool::join)
        .def("terminate", &py_pool::terminate);
}
} // namespace parafork_python

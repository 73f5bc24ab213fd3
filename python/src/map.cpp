// map, starmap, imap, imap_unordered: workers fork at the call, so the function and the input
// reach them by fork. One engine job is a chunk of items; a worker runs the whole chunk and
// pickles its results as ONE list (protocol 5, buffers out of band), and the parent unpickles a
// chunk at a time. Each item is still the engine's own: a death, a timeout or an exception is
// blamed on the item that was running, and retries re-run single items.

#include "common.hpp"

#include <parafork/exec/core/detail/results.hpp>
#include <parafork/exec/core/detail/worker.hpp>
#include <parafork/exec/core/executor.hpp>
#include <parafork/exec/forked/forked.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/wire/descriptors.hpp>
#include <parafork/wire/large.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <utility>
#include <vector>

namespace parafork_python {
// A chunk's results whose out-of-band buffers went into a memfd: encoded as the byte vector
// the parent reads (length, bytes), with the memfd passed beside it.
struct spilled_results {
    std::string bytes;
    int memfd;
};
} // namespace parafork_python

template <>
struct parafork::wire::codec<parafork_python::spilled_results> {
    static constexpr bool is_custom = true;
    static void encode(writer& w, const parafork_python::spilled_results& v) {
        parafork::detail::outgoing_fds().push_back(v.memfd);
        w.write_size(v.bytes.size());
        w.write_bytes(v.bytes.data(), v.bytes.size());
    }
    static void decode(reader&, parafork_python::spilled_results&) {
        reader::fail("spilled results are read as bytes");
    }
};

namespace parafork_python {
namespace {

namespace pd = pf::detail;
using clock_type = std::chrono::steady_clock;

// A chunk's results as the engine carries them: the number of results, the nanoseconds the
// worker spent on them (the parent sizes chunks by it), padding to 64 bytes (the message's
// buffers keep their alignment where the parent keeps the bytes), the message.
constexpr std::size_t results_head = 64;

py::object core_attr(const char* name) { return py::module_::import("parafork._core").attr(name); }

// ---- in a worker -------------------------------------------------------------------------------

struct kid_ctx {
    PyObject* f;
    PyObject* seq;  // a sized sequence the worker indexes, or null (items come pickled)
    // seq is a range whose items all fit in 64 bits: item i is start + i * step, made here
    // (range's own indexing makes and compares several ints an item).
    bool plain_range;
    long long start, step;
    bool star;
    bool timed;                       // a task_timeout: answers go out every flush_every
    clock_type::duration flush_every; // results held no longer than this
};

PyObject* call_f(const kid_ctx& k, PyObject* x) {
    if (!k.star) return PyObject_CallOneArg(k.f, x);
    if (PyTuple_Check(x)) return PyObject_Call(k.f, x, nullptr);
    PyObject* t = PySequence_Tuple(x);
    if (!t) return nullptr;
    PyObject* y = PyObject_Call(k.f, t, nullptr);
    Py_DECREF(t);
    return y;
}

// Reports the Python exception being handled as item i's failure.
void fail_item(pd::kid_output& out, std::uint64_t i, py::error_already_set& e) {
    try {
        throw_task_failure(e);
    } catch (...) {
        out.fail_current(i);
    }
}

// How a chunk's results are encoded (the byte after the head's two counts).
enum class results_form : char { pickled = 0, ints = 1 };
constexpr std::size_t form_at = 2 * sizeof(std::uint64_t);

// One answer: the head, then `body(out)` appends `size` bytes; through the pipe when small,
// else lent.
template <class Body>
void send_message(pd::kid_output& out, std::uint64_t first, const char* head, std::size_t size, Body&& body) {
    const std::size_t n = results_head + size;
    if (n + sizeof(std::uint64_t) <= pf::wire::default_large_threshold) {
        static std::string s;  // one per worker, reused
        s.clear();
        const std::uint64_t len = n;  // the wire's own encoding of a byte vector: length, bytes
        s.append(reinterpret_cast<const char*>(&len), sizeof len);
        s.append(head, results_head);
        body(s);
        out.encoded(first, s);
    } else {
        std::vector<char> v;  // filled piece by piece: never zero-filled first
        v.reserve(n);
        pd::prepare_bulk_destination(v.data(), n);
        v.insert(v.end(), head, head + results_head);
        body(v);
        out.value(first, v);
    }
}

void fill_head(char* head, std::uint64_t items, std::uint64_t ns, results_form form) {
    std::memcpy(head, &items, sizeof items);
    std::memcpy(head + sizeof items, &ns, sizeof ns);
    head[form_at] = static_cast<char>(form);
}

// Results that are all plain ints within 64 bits (the common trivial map) go as an array of
// int64: no pickle in the worker, and the parent makes each int straight into its slot.
void send_ints(pd::kid_output& out, std::uint64_t first, std::uint64_t ns, const std::vector<std::int64_t>& v) {
    char head[results_head] = {};
    fill_head(head, v.size(), ns, results_form::ints);
    const auto* p = reinterpret_cast<const char*>(v.data());
    const std::size_t size = v.size() * sizeof(std::int64_t);
    send_message(out, first, head, size, [&](auto& o) { o.insert(o.end(), p, p + size); });
}

// One answer carrying `items` results, pickled in p: through the pipe when small; when its
// out-of-band buffers (numpy arrays) are large, they go into a memfd passed beside the answer,
// which the parent maps (one copy in all); another large message is lent.
void send_results(pd::kid_output& out, std::uint64_t first, std::uint64_t items, std::uint64_t ns,
                  pickled5& p) {
    char head[results_head] = {};
    fill_head(head, items, ns, results_form::pickled);
    if (p.size() > pf::wire::default_large_threshold) {
        auto memfd = pf::sys::make_memfd("parafork-result", 0);
        if (p.spill(memfd.get(), pf::wire::default_large_threshold)) {
            spilled_results r{std::string(head, results_head), memfd.get()};
            p.write_to(r.bytes);
            out.value(first, r);
            return;
        }
    }
    send_message(out, first, head, p.size(), [&](auto& o) { p.write_to(o); });
}

// The results of a run of items, held until the run ends or has been held flush_every. Plain
// ints within 64 bits are kept as int64s as they come (the objects freed at once, so memory
// stays warm), and go out every ints_per_message: small messages that stay in the caches and
// in the pipe's first pages, and that the parent reads while the worker goes on. The first
// result of another kind turns those held so far back into objects, into a list that is
// pickled.
class batch {
public:
    static constexpr std::size_t ints_per_message = 8192;  // 64 KiB

    batch(pd::kid_output& out, const kid_ctx& k, std::uint64_t first)
        : out_(out), k_(k), first_(first), since_(clock_type::now()) {
        ints_.clear();
    }

    void add(PyObject* y) {  // steals y
        if (!list_) {
            if (PyLong_CheckExact(y)) {
                int overflow = 0;
                const long long x = PyLong_AsLongLongAndOverflow(y, &overflow);
                if (!overflow) {  // an exact int cannot fail otherwise
                    Py_DECREF(y);
                    ints_.push_back(x);
                    if (ints_.size() >= ints_per_message) flush();
                    return;
                }
            }
            to_list();
        }
        int r = PyList_Append(list_.ptr(), y);
        Py_DECREF(y);
        if (r != 0) throw py::error_already_set();
    }
    // Before item i starts: answers the held results if they have waited long enough (with a
    // timeout, so that the parent's clock restarts near each item's start).
    void before(std::uint64_t n) {
        if (!held() || (!k_.timed && (n & 255) != 0)) return;
        if (clock_type::now() - since_ >= k_.flush_every) flush();
    }
    void flush() {
        const auto began = std::exchange(since_, clock_type::now());
        const std::uint64_t n = held();
        if (!n) return;
        const auto ns = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(since_ - began).count());
        const std::uint64_t first = first_;
        first_ += n;
        if (!list_) {
            send_ints(out_, first, ns, ints_);
            ints_.clear();
            for (std::uint64_t j = 1; j < n; ++j) out_.value_void(first + j);
            return;
        }
        py::object l = std::move(list_);  // list_ is empty again
        try {
            pickled5 p(l);
            send_results(out_, first, n, ns, p);
            for (std::uint64_t j = 1; j < n; ++j) out_.value_void(first + j);
            return;
        } catch (py::error_already_set&) {
            // One result at a time, to name the one that cannot be pickled.
        }
        for (std::uint64_t j = 0; j < n; ++j) {
            py::list one;
            one.append(PyList_GET_ITEM(l.ptr(), static_cast<Py_ssize_t>(j)));
            try {
                pickled5 p(one, false);
                send_results(out_, first + j, 1, ns / n, p);
            } catch (py::error_already_set&) {
                try {
                    core_attr("_check_result")(one[0]);
                    throw;  // it pickles alone: report what failed here
                } catch (py::error_already_set& e) {
                    fail_item(out_, first + j, e);
                }
            }
        }
    }
    // After item i failed (its failure sent): the next result is item i + 1's.
    void skip_to(std::uint64_t i) { first_ = i; }

private:
    std::uint64_t held() const noexcept {
        return list_ ? static_cast<std::uint64_t>(PyList_GET_SIZE(list_.ptr())) : ints_.size();
    }
    // The ints held so far as objects again, in a list the rest joins.
    void to_list() {
        py::list l(static_cast<Py_ssize_t>(ints_.size()));
        for (std::size_t j = 0; j < ints_.size(); ++j) {
            PyObject* y = PyLong_FromLongLong(ints_[j]);
            if (!y) throw py::error_already_set();
            PyList_SET_ITEM(l.ptr(), static_cast<Py_ssize_t>(j), y);
        }
        ints_.clear();
        list_ = std::move(l);
    }

    static inline std::vector<std::int64_t> ints_;  // one per worker (one thread), reused
    pd::kid_output& out_;
    const kid_ctx& k_;
    py::object list_;
    std::uint64_t first_;
    clock_type::time_point since_;
};

// Item i of the worker's copy of the sequence (a new reference), as seq[i] would give it.
PyObject* sequence_item(const kid_ctx& k, Py_ssize_t i) {
    if (k.plain_range) {
        // Every item lies between start and stop, so it fits though i * step may not: computed
        // modulo 2^64, the sum comes out right.
        using u64 = unsigned long long;
        return PyLong_FromLongLong(static_cast<long long>(
            static_cast<u64>(k.start) + static_cast<u64>(i) * static_cast<u64>(k.step)));
    }
    if (PyList_CheckExact(k.seq) && i < PyList_GET_SIZE(k.seq)) {  // f may have shrunk it
        PyObject* x = PyList_GET_ITEM(k.seq, i);
        Py_INCREF(x);
        return x;
    }
    if (PyTuple_CheckExact(k.seq)) {
        PyObject* x = PyTuple_GET_ITEM(k.seq, i);  // a tuple keeps its size
        Py_INCREF(x);
        return x;
    }
    return PySequence_GetItem(k.seq, i);
}

// Whether the range r's start, stop and step fit in 64 bits (then so does every item), and its
// start and step if so.
bool plain_range(PyObject* r, long long& start, long long& step) {
    if (!PyRange_Check(r)) return false;
    long long v[3];
    const char* names[3] = {"start", "stop", "step"};
    for (int j = 0; j < 3; ++j) {
        PyObject* a = PyObject_GetAttrString(r, names[j]);
        if (!a) throw py::error_already_set();
        int overflow = 0;
        v[j] = PyLong_AsLongLongAndOverflow(a, &overflow);
        Py_DECREF(a);
        if (v[j] == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (overflow) return false;
    }
    start = v[0];
    step = v[2];
    return true;
}

// Runs items [first, first + count) in a worker: from its own copy of the sequence, or from
// the chunk the parent pickled (its first item's index, then the pickled list).
void run_job(void* ctx, pd::job_kind kind, std::uint64_t first, std::uint32_t count,
             std::string_view body, pd::kid_output& out) {
    const auto& k = *static_cast<const kid_ctx*>(ctx);
    py::object items;
    std::uint64_t base = 0;
    if (kind == pd::job_kind::items) {
        if (body.size() < sizeof base) throw pf::protocol_error("parafork: short map chunk");
        std::memcpy(&base, body.data(), sizeof base);
        try {
            items = unpickle5(body.substr(sizeof base));
        } catch (py::error_already_set& e) {
            for (std::uint32_t n = 0; n < count; ++n) {
                out.start(first + n);
                fail_item(out, first + n, e);
            }
            return;
        }
        if (!PyList_Check(items.ptr()) || first < base ||
            first - base + count > static_cast<std::uint64_t>(PyList_GET_SIZE(items.ptr())))
            throw pf::protocol_error("parafork: a map chunk does not hold its items");
    } else if (kind != pd::job_kind::range || !k.seq) {
        throw pf::protocol_error("parafork: unexpected map job");
    }
    batch b(out, k, first);
    for (std::uint32_t n = 0; n < count; ++n) {
        const std::uint64_t i = first + n;
        b.before(n);
        out.start(i);  // from here a death of this worker is item i's
        PyObject* x;
        if (items) {
            x = PyList_GET_ITEM(items.ptr(), static_cast<Py_ssize_t>(i - base));
            Py_INCREF(x);
        } else {
            x = sequence_item(k, static_cast<Py_ssize_t>(i));
        }
        PyObject* y = x ? call_f(k, x) : nullptr;
        Py_XDECREF(x);
        if (!y) {
            py::error_already_set e;
            b.flush();
            fail_item(out, i, e);
            b.skip_to(i + 1);
            continue;
        }
        b.add(y);
    }
    b.flush();
}

// ---- in the parent -------------------------------------------------------------------------------

// Answered items: values[off, off + count) are items first.. (or error, raised once for all).
struct piece {
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    py::object values;
    std::size_t off = 0;
    py::object error;
};

py::object to_exception(std::exception_ptr ep) {
    try {
        raise_python(ep);
    } catch (py::error_already_set& e) {
        return e.value();
    }
}

[[noreturn]] void raise_exception(const py::object& exc) {
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
}

// A list of n empty slots for map's results, made after the workers forked. A large one's
// array is not zeroed here: its whole pages go back to the kernel (MADV_DONTNEED: they read
// as zero, like any fresh page of private memory, which is what PyMem gives) and each is first
// touched when a result lands in it, while the workers compute. PyList_New would zero it all
// first, serially, in memory that the fork often left shared with the workers, so that every
// page was copied as well (or, fresh, faulted in before the first result was read).
PyObject* new_result_list(Py_ssize_t n) {
#if defined(Py_GIL_DISABLED) || PY_VERSION_HEX >= 0x030F0000
    // A free-threaded list keeps its items in an allocation of its own layout; versions this was
    // not checked against are left the plain way.
    return PyList_New(n);
#else
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(PyObject*);
    if (bytes < (std::size_t{1} << 20)) return PyList_New(n);
    auto* items = static_cast<PyObject**>(PyMem_Malloc(bytes));
    if (!items) return PyErr_NoMemory();
    constexpr std::uintptr_t page = 4096;
    const auto at = reinterpret_cast<std::uintptr_t>(items);
    const std::uintptr_t begin = (at + page - 1) & ~(page - 1), end = (at + bytes) & ~(page - 1);
    if (end > begin && ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED) == 0) {
        pf::sys::advise_huge_pages(reinterpret_cast<void*>(begin), end - begin);
        std::memset(items, 0, begin - at);
        std::memset(reinterpret_cast<void*>(end), 0, at + bytes - end);
    } else {
        std::memset(items, 0, bytes);
    }
    PyObject* l = PyList_New(0);
    if (!l) {
        PyMem_Free(items);
        return nullptr;
    }
    auto* lo = reinterpret_cast<PyListObject*>(l);
    lo->ob_item = items;  // freed by the list, with PyMem_Free
    lo->allocated = n;
    Py_SET_SIZE(lo, n);
    return l;
#endif
}

// One call of map / imap: the engine, the feeding of chunks, and the answers as they come.
class map_run final : public pd::executor_sink {
public:
    map_run(py::object f, py::object items, bool sized, bool star, bool ordered, bool lazy,
            pf::options o)
        : f_(std::move(f)), items_(std::move(items)), sized_(sized), ordered_(ordered),
          lazy_(lazy), o_(std::move(o)) {
        if (sized_) {
            const Py_ssize_t n = PySequence_Size(items_.ptr());
            if (n < 0) throw py::error_already_set();
            total_ = static_cast<std::uint64_t>(n);
        } else {
            it_ = py::reinterpret_steal<py::object>(PyObject_GetIter(items_.ptr()));
            if (!it_) throw py::error_already_set();
            carry_ = py::list();
        }
        kid_.f = f_.ptr();
        kid_.seq = sized_ ? items_.ptr() : nullptr;
        kid_.plain_range = sized_ && plain_range(items_.ptr(), kid_.start, kid_.step);
        kid_.star = star;
        kid_.timed = o_.task_timeout.count() > 0;
        kid_.flush_every = kid_.timed
            ? clock_type::duration(std::clamp<std::chrono::microseconds>(
                  std::chrono::duration_cast<std::chrono::microseconds>(o_.task_timeout) / 64,
                  std::chrono::microseconds(500), std::chrono::milliseconds(20)))
            : clock_type::duration(std::chrono::milliseconds(100));
        if (sized_ && total_ == 0) {
            done_ = true;
            return;
        }
        std::exception_ptr failed;
        flush_stdio();
        {
            without_gil ng;
            try {
                if (sized_) o_.jobs = static_cast<unsigned>(std::min<std::uint64_t>(pf::resolve_jobs(o_.jobs), total_));
                eng_ = pd::make_local_executor(o_, &run_job, &kid_, total_);
            } catch (...) {
                failed = std::current_exception();
            }
        }
        if (failed) raise_python(failed);
        jobs_ = eng_->size();
        if (!lazy_ && ordered_ && sized_) {
            // The results go straight into the list returned (no second array of 8 bytes an
            // item, no copy); untracked by the GC while it has empty slots.
            PyObject* l = new_result_list(static_cast<Py_ssize_t>(total_));
            if (!l) throw py::error_already_set();
            PyObject_GC_UnTrack(l);
            result_ = py::reinterpret_steal<py::list>(l);
        } else if (!lazy_ && ordered_) {
            out_.assign(static_cast<std::size_t>(total_), nullptr);
        }
    }
    ~map_run() {
        stop();
        for (PyObject* y : out_) Py_XDECREF(y);
    }
    map_run(const map_run&) = delete;
    map_run& operator=(const map_run&) = delete;

    // map: every result, in input order (or completion order).
    py::list run() {
        while (!done_) {
            feed();
            if (error_) break;
            if (!pump()) break;
            if (error_) break;
        }
        if (error_) {
            stop();
            raise_exception(error_);
        }
        finish();
        if (result_) {
            // Every put() filled an empty slot, so got_ == total_ means every slot is full.
            if (got_ != total_ || pushed_ != total_)
                throw pf::protocol_error("parafork: map: " + std::to_string(got_) + " of " +
                                         std::to_string(total_) + " items answered");
            PyObject_GC_Track(result_.ptr());
            return std::move(result_);
        }
        const std::size_t n = out_.size();
        if (got_ != pushed_ || (ordered_ && n != pushed_))
            throw pf::protocol_error("parafork: map: " + std::to_string(got_) + " of " +
                                     std::to_string(pushed_) + " items answered");
        py::list result(static_cast<Py_ssize_t>(n));
        for (std::size_t i = 0; i < n; ++i) {
            if (!out_[i]) throw pf::protocol_error("parafork: map: an item has no result");
            PyList_SET_ITEM(result.ptr(), static_cast<Py_ssize_t>(i), out_[i]);
            out_[i] = nullptr;
        }
        out_.clear();
        return result;
    }

    // imap: the next result (input order, or completion order as (index, result)).
    py::object next() {
        for (;;) {
            if (cur_.count) {
                const std::uint64_t i = cur_.first + pos_;
                if (cur_.error) {
                    py::object e = std::move(cur_.error);
                    consumed_ += cur_.count;
                    next_ = cur_.first + cur_.count;
                    cur_ = piece{};
                    raise_exception(e);
                }
                py::object y = py::reinterpret_borrow<py::object>(
                    PyList_GET_ITEM(cur_.values.ptr(), static_cast<Py_ssize_t>(cur_.off + pos_)));
                ++consumed_;
                if (++pos_ == cur_.count) {
                    next_ = cur_.first + cur_.count;
                    cur_ = piece{};
                    pos_ = 0;
                }
                if (pairs_) return py::make_tuple(i, y);
                return y;
            }
            if (take()) continue;
            if (done_ || (input_done_ && consumed_ == pushed_)) {
                finish();
                throw py::stop_iteration();
            }
            feed();
            if (take()) continue;
            if (!pump() && !take() && !(input_done_ && consumed_ == pushed_)) {
                stop();
                throw pf::protocol_error("parafork: imap lost items");
            }
        }
    }
    bool pairs_ = false;  // imap_unordered: (index, result)

private:
    // Pushes chunks while the engine's queue is short (and, for imap, while not too far ahead
    // of the consumer).
    void feed() {
        if (!eng_ || eng_->stopped()) return;
        while (!input_done_ && !error_) {
            const auto c = eng_->counters();
            if (c.queued >= 2 * jobs_) return;
            if (lazy_ && pushed_ - consumed_ >= 4 * std::uint64_t{jobs_} * last_chunk_) return;
            std::uint64_t cap = sized_ ? pd::auto_index_chunk(total_, jobs_)
                                       : pd::auto_stream_chunk(pushed_, jobs_);
            last_chunk_ = o_.chunksize ? o_.chunksize : auto_chunk(cap);
            if (sized_) push_range(last_chunk_);
            else push_items(last_chunk_);
        }
        // All pushed: a worker with nothing left exits now, while the others finish.
        if (input_done_) eng_->close_input();
    }
    // Chunks of about 10 ms of a worker's time, by what the workers measured (not by the wall
    // clock here, which counts round trips and start-up: on a busy machine that kept chunks
    // of 1 item, whose round trips then kept the estimate low). From 1 item, at most doubling.
    std::uint64_t auto_chunk(std::uint64_t cap) {
        std::uint64_t want = std::min(cap, last_chunk_ * 2);
        if (measured_items_ == 0) {
            want = 1;  // nothing measured yet: one item, to learn what an item costs
        } else {
            const double per_item = std::max(1.0, measured_ns_ / static_cast<double>(measured_items_));
            const double fit = 1e7 / per_item;
            if (fit < static_cast<double>(want)) want = static_cast<std::uint64_t>(fit);
        }
        return std::max<std::uint64_t>(want, 1);
    }
    void push_range(std::uint64_t chunk) {
        pd::job j;
        j.kind = pd::job_kind::range;
        j.first = pushed_;
        j.count = static_cast<std::uint32_t>(std::min<std::uint64_t>({chunk, total_ - pushed_, UINT32_MAX}));
        pushed_ += j.count;
        if (pushed_ == total_) input_done_ = true;
        eng_->push(std::move(j));
    }
    // Pulls up to `chunk` items and sends them pickled as one list. An item that cannot be
    // pickled fails as itself; the items around it go on.
    void push_items(std::uint64_t chunk) {
        push_items_pulled(chunk);
        input_done_ = iter_done_ && PyList_GET_SIZE(carry_.ptr()) == 0;
    }
    void push_items_pulled(std::uint64_t chunk) {
        py::list xs;
        while (static_cast<std::uint64_t>(PyList_GET_SIZE(xs.ptr())) < chunk) {
            PyObject* x;
            if (PyList_GET_SIZE(carry_.ptr()) > 0) {
                x = PyList_GET_ITEM(carry_.ptr(), 0);
                Py_INCREF(x);
                if (PySequence_DelItem(carry_.ptr(), 0) != 0) throw py::error_already_set();
            } else {
                x = iter_done_ ? nullptr : PyIter_Next(it_.ptr());
                if (!x) {
                    if (PyErr_Occurred()) throw py::error_already_set();
                    iter_done_ = true;
                    break;
                }
            }
            int r = PyList_Append(xs.ptr(), x);
            Py_DECREF(x);
            if (r != 0) throw py::error_already_set();
        }
        const auto n = static_cast<std::uint64_t>(PyList_GET_SIZE(xs.ptr()));
        if (n == 0) return;
        std::optional<pickled5> p;
        try {
            p.emplace(xs);
        } catch (py::error_already_set&) {
            std::uint64_t bad = 0;
            py::object why;
            for (; bad < n; ++bad) {
                try {
                    pickled5 one(xs[bad]);
                } catch (py::error_already_set& e) {
                    why = e.value();
                    break;
                }
            }
            if (bad == n) throw;  // none alone: what the list raised
            // The items after it wait in carry_ (before anything not yet pulled).
            py::list rest = xs[py::slice(static_cast<Py_ssize_t>(bad + 1), static_cast<Py_ssize_t>(n), 1)];
            rest += carry_;
            carry_ = rest;
            if (bad > 0) push_items_list(xs[py::slice(0, static_cast<Py_ssize_t>(bad), 1)]);
            const std::uint64_t at = pushed_++;
            if (!lazy_ && ordered_) out_.resize(static_cast<std::size_t>(pushed_), nullptr);
            fail(at, 1, core_attr("_input_not_picklable")(at, why));
            return;
        }
        send_chunk(*p, n);
    }
    void push_items_list(py::list xs) {
        pickled5 p(xs);
        send_chunk(p, static_cast<std::uint64_t>(PyList_GET_SIZE(xs.ptr())));
    }
    void send_chunk(const pickled5& p, std::uint64_t n) {
        pd::job j;
        j.kind = pd::job_kind::items;
        j.first = pushed_;
        j.count = static_cast<std::uint32_t>(n);
        j.body.reserve(sizeof(std::uint64_t) + p.size());
        j.body.append(reinterpret_cast<const char*>(&j.first), sizeof j.first);
        p.write_to(j.body);
        // The whole chunk is every part's: a part the engine cuts off (a retry) keeps it.
        j.prefix = static_cast<std::uint32_t>(j.body.size());
        j.offsets.assign(static_cast<std::size_t>(n), j.prefix);
        pushed_ += n;
        if (!lazy_ && ordered_) out_.resize(static_cast<std::size_t>(pushed_), nullptr);
        eng_->push(std::move(j));
    }

    // Ctrl-C is the engine's while `guard` lives. One that came before it went to Python's own
    // handler, which only the interpreter looks at: raised here, or the wait below would not
    // see it until its workers finish (the Python work between two pumps runs without a guard).
    void claim_ctrl_c(const pf::sys::sigint_guard&) {
        if (PyErr_CheckSignals() == 0) return;
        stop();
        done_ = true;
        throw py::error_already_set();
    }

    // Runs the engine once without the GIL; false when it had nothing to do.
    bool pump() {
        if (!eng_ || eng_->stopped()) return false;
        pf::sys::sigint_guard ctrl_c;
        claim_ctrl_c(ctrl_c);
        std::exception_ptr failed;
        bool more = false;
        {
            without_gil ng;
            try {
                more = eng_->pump(*this);
            } catch (...) {
                failed = std::current_exception();
            }
        }
        if (failed) fail_call(failed);
        return more;
    }
    // Lets the workers finish and exit; reaps them.
    void finish() {
        if (done_ && !eng_) return;
        done_ = true;
        if (!eng_ || eng_->stopped()) return;
        pf::sys::sigint_guard ctrl_c;
        claim_ctrl_c(ctrl_c);
        std::exception_ptr failed;
        {
            without_gil ng;
            try {
                eng_->join(*this);
            } catch (...) {
                failed = std::current_exception();
            }
        }
        if (failed) fail_call(failed);
    }
    [[noreturn]] void fail_call(std::exception_ptr ep) {
        stop();
        done_ = true;
        try {
            std::rethrow_exception(ep);
        } catch (py::error_already_set&) {
            throw;
        } catch (...) {
            raise_python(std::current_exception());
        }
        throw pf::error("parafork: unreachable");
    }
    void stop() noexcept {
        if (!eng_ || eng_->stopped()) return;
        without_gil ng;
        eng_->terminate();
    }

    // imap: the next piece to hand out, if it is here.
    bool take() {
        if (ordered_) {
            auto it = held_.find(next_);
            if (it == held_.end()) return false;
            cur_ = std::move(it->second);
            held_.erase(it);
        } else {
            if (ready_.empty()) return false;
            cur_ = std::move(ready_.front());
            ready_.pop_front();
        }
        pos_ = 0;
        return true;
    }

    void deliver(std::uint64_t first, std::uint32_t count, const py::object& values, std::size_t off) {
        if (lazy_) {
            piece p{first, count, values, off, {}};
            if (ordered_) held_.emplace(first, std::move(p));
            else ready_.push_back(std::move(p));
            return;
        }
        for (std::uint32_t k = 0; k < count; ++k) {
            PyObject* y = PyList_GET_ITEM(values.ptr(), static_cast<Py_ssize_t>(off + k));
            Py_INCREF(y);
            put(first + k, y);
        }
        got_ += count;
    }
    // map: item i's result y (owned) into its place.
    void put(std::uint64_t i, PyObject* y) {
        if (result_) {
            if (i >= total_ || PyList_GET_ITEM(result_.ptr(), static_cast<Py_ssize_t>(i))) {
                Py_DECREF(y);
                throw pf::protocol_error("parafork: map: a result for no item");
            }
            PyList_SET_ITEM(result_.ptr(), static_cast<Py_ssize_t>(i), y);
        } else if (ordered_) {
            if (i >= out_.size() || out_[i]) {
                Py_DECREF(y);
                throw pf::protocol_error("parafork: map: a result for no item");
            }
            out_[i] = y;
        } else {
            out_.push_back(y);
        }
    }
    // A chunk's results sent as int64s: straight into their places for map, else as a list.
    py::object ints(std::uint64_t first, std::uint64_t items, bool direct, std::string_view body) {
        if (body.size() != items * sizeof(std::int64_t))
            throw pf::protocol_error("parafork: map: int results of the wrong size");
        py::list values(direct ? 0 : static_cast<Py_ssize_t>(items));
        for (std::uint64_t k = 0; k < items; ++k) {
            std::int64_t x;
            std::memcpy(&x, body.data() + k * sizeof x, sizeof x);
            PyObject* y = PyLong_FromLongLong(x);
            if (!y) throw py::error_already_set();
            if (direct) put(first + k, y);
            else PyList_SET_ITEM(values.ptr(), static_cast<Py_ssize_t>(k), y);
        }
        if (direct) got_ += items;
        return values;
    }
    void fail(std::uint64_t index, std::uint32_t count, py::object exc) {
        if (!lazy_) {
            if (!error_) error_ = std::move(exc);
            return;
        }
        piece p{index, count, {}, 0, std::move(exc)};
        if (ordered_) held_.emplace(index, std::move(p));
        else ready_.push_back(std::move(p));
    }

    // A chunk's results: [items][padding][message]; the first `count` are answered now, the
    // rest by the empty answers that follow.
    // Returns how many of the `room` answers starting at `first` it covers: all its items when
    // `whole`, else at most `room` (the rest are answered later).
    std::uint32_t results(std::uint64_t first, std::uint32_t room, bool whole, std::string_view bytes,
                          py::handle owner) {
        if (bytes.size() < results_head) throw pf::protocol_error("parafork: short map results");
        std::uint64_t items = 0;
        std::memcpy(&items, bytes.data(), sizeof items);
        if (items == 0 || items > UINT32_MAX || (whole && items > room))
            throw pf::protocol_error("parafork: map results do not fit their answers");
        const auto count = static_cast<std::uint32_t>(std::min<std::uint64_t>(items, room));
        std::uint64_t ns = 0;
        std::memcpy(&ns, bytes.data() + sizeof items, sizeof ns);
        measured_ns_ += static_cast<double>(ns);
        measured_items_ += items;
        const char form = bytes[form_at];
        if (form == static_cast<char>(results_form::ints)) {
            const bool direct = !lazy_ && items == count;
            py::object values = ints(first, items, direct, bytes.substr(results_head));
            if (direct) return count;
            deliver(first, count, values, 0);
            if (items > count) ahead_[first + count] = ahead{values, count, items - count};
            return count;
        }
        if (form != static_cast<char>(results_form::pickled))
            throw pf::protocol_error("parafork: map results of an unknown form");
        py::object values;
        try {
            values = unpickle5(bytes.substr(results_head), owner);
            if (!PyList_Check(values.ptr()) || static_cast<std::uint64_t>(PyList_GET_SIZE(values.ptr())) != items)
                throw pf::protocol_error("parafork: map results are not a list of their items");
        } catch (py::error_already_set& e) {
            py::object exc = core_attr("_unpickle_failure")(first, items, e.value());
            fail(first, static_cast<std::uint32_t>(items), exc);
            if (items > count) ahead_[first + count] = ahead{py::object(), 0, items - count};
            return count;
        }
        deliver(first, count, values, 0);
        if (items > count) ahead_[first + count] = ahead{values, count, items - count};
        return count;
    }

    // A run of answers: first those whose values came earlier (with an earlier item's), then
    // whole groups, each one chunk's results followed by the answers they cover. A run may end
    // inside a group; the next run then starts with the rest of its answers.
    void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override {
        with_gil g;
        std::uint64_t at = first;
        std::uint32_t rest = count;
        if (auto it = ahead_.find(at); it != ahead_.end()) {
            ahead a = std::move(it->second);
            ahead_.erase(it);
            const auto k = static_cast<std::uint32_t>(std::min<std::uint64_t>(a.left, rest));
            if (a.values) deliver(at, k, a.values, a.off);
            a.off += k;
            a.left -= k;
            at += k;
            rest -= k;
            if (a.left) ahead_[at] = std::move(a);
        }
        while (!bytes.empty()) {
            std::uint64_t len = 0;
            if (bytes.size() < sizeof len) throw pf::protocol_error("parafork: short map answer");
            std::memcpy(&len, bytes.data(), sizeof len);
            if (len > bytes.size() - sizeof len) throw pf::protocol_error("parafork: map answer size");
            std::string_view group = bytes.substr(sizeof len, static_cast<std::size_t>(len));
            bytes.remove_prefix(sizeof len + static_cast<std::size_t>(len));
            if (rest == 0) throw pf::protocol_error("parafork: map results for no answer");
            rest -= results(at, rest, !bytes.empty(), group, py::handle());
            at = first + (count - rest);
        }
        if (rest != 0) throw pf::protocol_error("parafork: map: an answer without its value");
    }
    void on_failure(std::uint64_t index, const pd::failure_info& f) override {
        with_gil g;
        fail(index, 1, to_exception(pd::make_failure(f, static_cast<std::size_t>(index))));
    }
    // A large chunk of results, copied straight from the worker's memory into the bytearray its
    // numpy arrays will live in.
    bool on_lent(std::uint64_t index, const pd::lent_ref& r) override {
        if (r.v.count != r.v.bytes) throw pf::protocol_error("parafork: map: a lent value's size");
        PyObject* raw;
        char* dst;
        {
            with_gil g;
            raw = PyByteArray_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(r.v.bytes));
            if (!raw) throw py::error_already_set();
            dst = PyByteArray_AS_STRING(raw);
        }
        pd::prepare_bulk_destination(dst, static_cast<std::size_t>(r.v.bytes));
        const bool ok = pd::copy_lent(r, dst, 1, [](void*, std::size_t) {}, nullptr);
        with_gil g;
        auto ba = py::reinterpret_steal<py::object>(raw);
        if (!ok) return false;
        results(index, 1, false, std::string_view(dst, static_cast<std::size_t>(r.v.bytes)), ba);
        return true;
    }

    struct ahead {
        py::object values;  // none: they could not be unpickled (the failure is out already)
        std::size_t off;
        std::uint64_t left;
    };

    py::object f_, items_, it_, carry_;
    bool sized_, ordered_, lazy_;
    pf::options o_;
    kid_ctx kid_{};
    std::unique_ptr<pd::executor> eng_;
    unsigned jobs_ = 1;
    double measured_ns_ = 0;
    std::uint64_t measured_items_ = 0;
    std::uint64_t total_ = 0, pushed_ = 0, got_ = 0, consumed_ = 0, next_ = 0, last_chunk_ = 1;
    bool input_done_ = false, iter_done_ = false, done_ = false;
    py::object error_;                 // map: the first failure
    std::vector<PyObject*> out_;       // map: owned results (an iterable's, or unordered)
    py::list result_{py::reinterpret_steal<py::list>(py::handle())};  // map of a sequence: the result
    std::map<std::uint64_t, ahead> ahead_;
    std::map<std::uint64_t, piece> held_;  // imap, ordered
    std::deque<piece> ready_;              // imap, unordered
    piece cur_;
    std::uint32_t pos_ = 0;
};

py::list map_call(const py::object& f, const py::object& items, bool sized, bool star, bool ordered,
                  const py::object& jobs, const py::object& chunksize, const py::object& timeout,
                  unsigned retries, bool progress, const py::object& name, const py::object& dashboard) {
    map_run r(f, items, sized, star, ordered, false,
              make_options(jobs, chunksize, timeout, retries, progress, name, dashboard));
    return r.run();
}

std::unique_ptr<map_run> imap_call(const py::object& f, const py::object& items, bool sized, bool star,
                                   bool ordered, bool pairs, const py::object& jobs,
                                   const py::object& chunksize, const py::object& timeout,
                                   unsigned retries, bool progress, const py::object& name,
                                   const py::object& dashboard) {
    auto r = std::make_unique<map_run>(f, items, sized, star, ordered, true,
                                       make_options(jobs, chunksize, timeout, retries, progress, name, dashboard));
    r->pairs_ = pairs;
    return r;
}
} // namespace

void bind_map(py::module_& m) {
    bind_mapped(m);
    m.def("map", &map_call, py::arg("f"), py::arg("items"), py::arg("sized"), py::arg("star"),
          py::arg("ordered"), py::arg("jobs"), py::arg("chunksize"), py::arg("timeout"),
          py::arg("retries"), py::arg("progress"), py::arg("name"), py::arg("dashboard") = py::none());
    py::class_<map_run>(m, "LazyResults")
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__", &map_run::next);
    m.def("imap", &imap_call, py::arg("f"), py::arg("items"), py::arg("sized"), py::arg("star"),
          py::arg("ordered"), py::arg("pairs"), py::arg("jobs"), py::arg("chunksize"),
          py::arg("timeout"), py::arg("retries"), py::arg("progress"), py::arg("name"),
          py::arg("dashboard") = py::none());
}
} // namespace parafork_python

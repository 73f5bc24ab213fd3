#pragma once
// Private to src/mpi: what every call over ranks shares, whoever makes it (forked/map in
// call.cpp, the pool in pool.cpp): naming a failure by rank and host, a rank's answers batched
// into one message and read back, and the one wait of a rank's program.
#include <algorithm>
#include <chrono>
#include <optional>
#include <poll.h>
#include <string>
#include <vector>

#include <parafork/exec/core/executor.hpp>
#include <parafork/mpi/world.hpp>
#include <parafork/sys/signals.hpp>

#include "frames.hpp"

namespace parafork::mpi::detail {

using parafork::detail::executor;
using parafork::detail::failure_info;

inline std::string where(const world& w, int rank) {
    return "rank " + std::to_string(rank) + " on " + w.host(rank);
}

template <class Error>
std::exception_ptr placed(Error e, const world& w, int rank) {
    e.set_ran_at(rank, w.host(rank));
    return std::make_exception_ptr(std::move(e));
}

// The local error types with rank() and host() set, and both also in the message:
// remote_error's message, worker_died's detail, timeout_error's text.
inline std::exception_ptr failure_at(const failure_info& f, std::uint64_t index, const world& w, int rank) {
    const auto task = static_cast<std::size_t>(index);
    const std::string at = where(w, rank);
    switch (f.what) {
        case failure_info::kind::remote:
            return placed(remote_error(f.type_name, f.message + " [" + at + "]", f.pid, task), w, rank);
        case failure_info::kind::died:
            return placed(worker_died(f.pid, f.signal, f.code, task, at), w, rank);
        case failure_info::kind::timeout:
            return placed(timeout_error("parafork: task " + std::to_string(index) + " ran past task_timeout on " + at +
                                            "; worker " + std::to_string(f.pid) + " was killed",
                                        f.pid, task),
                          w, rank);
    }
    return {};
}

// Rank `rank`'s program ended while it held task `first_held`.
inline std::exception_ptr rank_lost(const world& w, int rank, std::uint64_t first_held) {
    const auto& d = w.departed(rank);
    return placed(worker_died(w.pid(rank), d.signal, d.code, static_cast<std::size_t>(first_held),
                              "the program of " + where(w, rank) + " ended during a parafork::mpi call"),
                  w, rank);
}

// Thrown on a rank other than 0 when rank 0's program is gone.
inline error root_lost(const world& w) {
    const auto& d = w.departed(0);
    return error("parafork::mpi: the program of " + where(w, 0) + " ended during a call (" +
                 (d.signal ? "signal " + std::to_string(d.signal) : "exit code " + std::to_string(d.code)) + ")");
}

inline int timeout_ms(std::optional<executor::clock::time_point> wake) {
    if (!wake) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*wake - executor::clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

// A rank's answers, batched into one message per wait: 'V' runs of values, 'F' failures.
class forward_sink final : public parafork::detail::executor_sink {
public:
    std::string out;
    void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override {
        out += 'V';
        put(out, first);
        put(out, count);
        put_str(out, bytes);
    }
    void on_failure(std::uint64_t index, const failure_info& f) override {
        out += 'F';
        put(out, index);
        put(out, static_cast<std::uint8_t>(f.what));
        put(out, static_cast<std::int32_t>(f.pid));
        put(out, static_cast<std::int32_t>(f.signal));
        put(out, static_cast<std::int32_t>(f.code));
        put_str(out, f.type_name);
        put_str(out, f.message);
    }
};

// One answer of a forward_sink's message: values (count, bytes) or a failure (count 1, fi).
struct answer {
    char kind = 0;
    std::uint64_t first = 0, count = 1;
    std::string_view bytes;
    failure_info fi;
};
// Reads the next answer; protocol_error on anything malformed.
inline void read_answer(cursor& c, answer& a) {
    a.kind = c.get<char>();
    a.first = c.get<std::uint64_t>();
    a.count = 1;
    a.bytes = {};
    if (a.kind == 'V') {
        a.count = c.get<std::uint32_t>();
        a.bytes = c.str();
    } else if (a.kind == 'F') {
        const auto k = c.get<std::uint8_t>();
        if (k > static_cast<std::uint8_t>(failure_info::kind::timeout))
            throw protocol_error("parafork::mpi: a failure of no kind");
        a.fi.what = static_cast<failure_info::kind>(k);
        a.fi.pid = c.get<std::int32_t>();
        a.fi.signal = c.get<std::int32_t>();
        a.fi.code = c.get<std::int32_t>();
        a.fi.type_name = std::string(c.str());
        a.fi.message = std::string(c.str());
    } else {
        throw protocol_error("parafork::mpi: an answer of no kind");
    }
}

inline bool local_busy(const executor& e) {
    const auto c = e.counters();
    return c.queued + c.in_flight > 0;
}

// Waits for the first of: local workers, the MPI process's socket, its death, Ctrl-C, or
// `deadline`.
inline void wait_round(world& w, executor& local, std::vector<pollfd>& fds, bool busy,
                       std::optional<executor::clock::time_point> deadline = std::nullopt) {
    fds.clear();
    std::optional<executor::clock::time_point> wake;
    if (busy) wake = local.watch(fds);
    if (deadline && (!wake || *deadline < *wake)) wake = deadline;
    fds.push_back({w.socket_fd(), POLLIN, 0});
    if (sys::sigint_guard::fd() >= 0) fds.push_back({sys::sigint_guard::fd(), POLLIN, 0});
    fds.push_back({w.mpi_process_fd(), POLLIN, 0});
    sys::poll_fds(fds.data(), fds.size(), timeout_ms(wake));
    sys::sigint_guard::check();  // Ctrl-C: the caller's catch stops the workers
    if (fds.back().revents) w.receive_ready();  // reads what is left, then reports the death
}

} // namespace parafork::mpi::detail

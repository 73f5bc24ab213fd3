#pragma once
// parafork over MPI ranks (Open MPI): the world every rank joins at start-up.
//
//   int main(int argc, char** argv) {
//       auto& w = parafork::mpi::init();            // first thing, on every rank, before threads
//       auto v = parafork::mpi::map(w, f, items);   // every rank makes the same calls (SPMD)
//       if (w.root()) use(v);                        // results arrive at rank 0, in input order
//   }
//
// User code never runs in an MPI process: init() forks, the process that mpirun started becomes
// this rank's MPI process (the only one that calls MPI_Init; one thread, no user code), and the
// child returns from init() to run the program, talking to it over a socket. Workers fork from
// that MPI-free process as in parafork::forked. See docs/scale-out.md.

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include <parafork/error.hpp>
#include <parafork/sys/fd.hpp>

namespace parafork::mpi {

// Not under mpirun/srun, one rank only, or ranks running different binaries or calls.
class bad_launch : public error {
public:
    using error::error;
};

class world {
public:
    int rank() const noexcept { return rank_; }
    int size() const noexcept { return static_cast<int>(hosts_.size()); }
    bool root() const noexcept { return rank_ == 0; }
    const std::string& host(int rank) const { return hosts_.at(static_cast<std::size_t>(rank)); }
    // The pid of rank r's program (this process's counterpart there), for messages and tests.
    pid_t pid(int rank) const { return pids_.at(static_cast<std::size_t>(rank)); }
    // True once rank r's program has ended (its MPI process told everyone).
    bool gone(int rank) const { return gone_.at(static_cast<std::size_t>(rank)).ended; }

    // What this rank's program sent to and received from other ranks: messages and their bytes.
    struct traffic {
        std::uint64_t sent = 0, sent_bytes = 0, received = 0, received_bytes = 0;
    };
    const traffic& counted() const noexcept { return traffic_; }

    world(const world&) = delete;
    world& operator=(const world&) = delete;

    // ---- used by the calls (include/parafork/mpi/forked.hpp, src/mpi/) ----
    struct frame {
        int peer = 0;     // source rank (received) or destination (sent)
        int tag = 0;
        std::string body;
    };
    struct departure {
        bool ended = false;
        int signal = 0, code = 0;
    };
    void send(int dest, int tag, std::string_view body);
    // Reads what the MPI process has for us without blocking; true if anything came.
    bool receive_ready();
    // The next frame received and not yet taken, if any (departures are recorded, not returned).
    bool next(frame& out);
    int socket_fd() const noexcept { return sock_.get(); }
    int mpi_process_fd() const noexcept { return proxy_pidfd_.get(); }
    const departure& departed(int rank) const { return gone_.at(static_cast<std::size_t>(rank)); }
    std::uint64_t next_call() noexcept { return ++calls_; }
    std::uint64_t calls() const noexcept { return calls_; }
    // Frames taken but meant for a later call: next() returns them again first, in order.
    void put_back(std::vector<frame>& frames);

    struct init_tag {};
    world(init_tag, sys::unique_fd sock, sys::unique_fd proxy_pidfd);

private:
    void check_proxy_alive();
    int rank_ = 0;
    std::vector<std::string> hosts_;
    std::vector<pid_t> pids_;
    std::vector<departure> gone_;
    sys::unique_fd sock_, proxy_pidfd_;
    std::string in_;        // bytes read, not yet framed
    std::size_t in_off_ = 0;
    std::uint64_t calls_ = 0;
    std::vector<frame> later_;  // put back, oldest first
    std::size_t later_at_ = 0;
    traffic traffic_;
};

// Joins the MPI job: call it first in main on every rank, before any thread starts. The second
// call returns the same world. Throws bad_launch when not started by mpirun/srun or with one rank.
world& init();

namespace detail {
// A function's place in the same binary on another rank: the loaded object's GNU build-id and
// the offset from its load address. Empty build_id: the pointer is in no loaded object.
struct code_ref {
    std::string build_id;  // hex
    std::string object;    // its file, for messages
    std::uint64_t offset = 0;
};
code_ref to_code_ref(const void* fn);
// The address of `r` in this process, or nullptr when no loaded object has that build-id.
const void* from_code_ref(const code_ref& r);
} // namespace detail

} // namespace parafork::mpi

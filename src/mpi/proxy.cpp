// A rank's MPI process: the only process of a rank that calls MPI. It runs no user code and
// one thread (MPI_THREAD_SINGLE); it relays frames between its program (over a socket) and
// the other ranks' MPI processes, and tells every rank when its program ends.
//
// MPI has no descriptor to sleep on, so the relay polls: it spins (non-blocking polls) for a
// while after traffic, then sleeps 1 ms at a time, then 10 ms once idle for a second. A frame
// from the program wakes it at once; a message from another rank waits at most that long.
#include <mpi.h>

#include <chrono>
#include <climits>
#include <list>
#include <poll.h>
#include <unistd.h>

#include <parafork/sys/process.hpp>

#include "frames.hpp"
#include "proxy.hpp"

namespace parafork::mpi::detail {
namespace {

using clock = std::chrono::steady_clock;

struct relay {
    int sock = -1;
    std::string to_program, from_program;
    std::size_t to_off = 0;
    struct pending {
        std::string body;
        MPI_Request req = MPI_REQUEST_NULL;
    };
    std::list<pending> sends;

    void to_prog(int src, int tag, std::string_view body) {
        frame_header h{static_cast<std::uint32_t>(body.size()), src, tag};
        to_program.append(reinterpret_cast<const char*>(&h), sizeof h);
        to_program.append(body);
    }
    void isend(int dest, int tag, std::string body) {
        auto& p = sends.emplace_back();
        p.body = std::move(body);
        MPI_Isend(p.body.data(), static_cast<int>(p.body.size()), MPI_BYTE, dest, tag, MPI_COMM_WORLD, &p.req);
    }
    bool test_sends() {
        bool any = false;
        for (auto it = sends.begin(); it != sends.end();) {
            int done = 0;
            MPI_Test(&it->req, &done, MPI_STATUS_IGNORE);
            if (done) {
                it = sends.erase(it);
                any = true;
            } else {
                ++it;
            }
        }
        return any;
    }
    bool receive_mpi(bool program_alive) {
        bool any = false;
        for (;;) {
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
            if (!flag) return any;
            int n = 0;
            MPI_Get_count(&st, MPI_BYTE, &n);
            std::string b(static_cast<std::size_t>(n), '\0');
            MPI_Recv(b.data(), n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (program_alive) to_prog(st.MPI_SOURCE, st.MPI_TAG, b);
            any = true;
        }
    }
    // Frames the program wrote: each becomes one MPI message.
    void parse_program_frames() {
        std::size_t at = 0;
        while (from_program.size() - at >= sizeof(frame_header)) {
            frame_header h;
            std::memcpy(&h, from_program.data() + at, sizeof h);
            if (h.length > max_frame) throw protocol_error("parafork::mpi: oversized frame from the program");
            if (from_program.size() - at - sizeof h < h.length) break;
            isend(h.peer, h.tag, from_program.substr(at + sizeof h, h.length));
            at += sizeof h + h.length;
        }
        from_program.erase(0, at);
    }
};

} // namespace

[[noreturn]] void run_mpi_process(sys::unique_fd sock, pid_t program) {
    auto pidfd = sys::open_pidfd(program);
    int provided = 0;
    int argc = 0;
    char** argv = nullptr;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SINGLE, &provided);
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char name[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    MPI_Get_processor_name(name, &len);
    std::vector<char> names(static_cast<std::size_t>(size) * MPI_MAX_PROCESSOR_NAME);
    std::vector<int> pids(static_cast<std::size_t>(size));
    int mine = program;
    MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, MPI_COMM_WORLD);
    MPI_Allgather(&mine, 1, MPI_INT, pids.data(), 1, MPI_INT, MPI_COMM_WORLD);

    relay r;
    r.sock = sock.get();
    sys::set_nonblocking(r.sock);
    std::string hello;
    put(hello, static_cast<std::int32_t>(rank));
    put(hello, static_cast<std::int32_t>(size));
    for (int k = 0; k < size; ++k) {
        put(hello, static_cast<std::int32_t>(pids[static_cast<std::size_t>(k)]));
        put_str(hello, std::string_view(&names[static_cast<std::size_t>(k) * MPI_MAX_PROCESSOR_NAME]));
    }
    r.to_prog(-1, tag_hello, hello);

    bool sock_open = true;
    auto last = clock::now();
    char buf[1 << 16];
    for (;;) {
        bool busy = r.receive_mpi(sock_open);
        busy |= r.test_sends();
        pollfd fds[2] = {{sock_open ? r.sock : -1, static_cast<short>(POLLIN | (r.to_off < r.to_program.size() ? POLLOUT : 0)), 0},
                         {pidfd.get(), POLLIN, 0}};
        const auto now = clock::now();
        if (busy) last = now;
        const auto quiet = now - last;
        const int timeout = quiet < std::chrono::microseconds(300) ? 0 : quiet < std::chrono::seconds(1) ? 1 : 10;
        if (sys::poll_fds(fds, 2, timeout) <= 0) continue;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            for (;;) {
                long n = sys::read_some(r.sock, buf, sizeof buf);
                if (n < 0) break;
                if (n == 0) {
                    sock_open = false;  // the program is ending: its pidfd says when
                    break;
                }
                r.from_program.append(buf, static_cast<std::size_t>(n));
            }
            r.parse_program_frames();
            last = clock::now();
        }
        if (sock_open && (fds[0].revents & POLLOUT)) {
            long n = sys::send_some(r.sock, r.to_program.data() + r.to_off, r.to_program.size() - r.to_off);
            if (n > 0) r.to_off += static_cast<std::size_t>(n);
            if (r.to_off == r.to_program.size()) {
                r.to_program.clear();
                r.to_off = 0;
            }
        }
        if (fds[1].revents) break;
    }

    // The program ended: every other rank learns how, then MPI ends (MPI_Finalize waits for all).
    const auto st = sys::wait_pid(program);
    std::string gone;
    put(gone, static_cast<std::int32_t>(st.signal));
    put(gone, static_cast<std::int32_t>(st.lost ? 0 : st.code));
    for (int k = 0; k < size; ++k)
        if (k != rank) r.isend(k, tag_gone, gone);
    const auto until = clock::now() + std::chrono::seconds(2);
    while (!r.sends.empty() && clock::now() < until) {
        r.test_sends();
        r.receive_mpi(false);
    }
    for (auto& p : r.sends) MPI_Request_free(&p.req);
    MPI_Finalize();
    ::_exit(st.signal ? 128 + st.signal : st.code);
}

} // namespace parafork::mpi::detail

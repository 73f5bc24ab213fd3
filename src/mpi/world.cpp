// The program's side of a rank: init() forks the rank's MPI process off (the parent, which
// mpirun started and watches, becomes it) and keeps the socket to it.
#include <cerrno>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <poll.h>
#include <unistd.h>

#include <parafork/mpi/world.hpp>
#include <parafork/sys/process.hpp>

#include "frames.hpp"
#include "proxy.hpp"

namespace parafork::mpi {

using detail::frame_header;

world::world(init_tag, sys::unique_fd sock, sys::unique_fd proxy_pidfd)
    : sock_(std::move(sock)), proxy_pidfd_(std::move(proxy_pidfd)) {
    sys::set_nonblocking(sock_.get());
    // The first frame is the hello: who we are and who the others are.
    frame f;
    for (;;) {
        if (receive_ready() && next(f)) break;
        pollfd fds[2] = {{sock_.get(), POLLIN, 0}, {proxy_pidfd_.get(), POLLIN, 0}};
        sys::poll_fds(fds, 2, -1);
    }
    if (f.tag != detail::tag_hello || f.peer != -1)
        throw protocol_error("parafork::mpi: the MPI process did not start with a hello");
    detail::cursor c(f.body);
    rank_ = c.get<std::int32_t>();
    const auto n = c.get<std::int32_t>();
    if (n < 1 || rank_ < 0 || rank_ >= n) throw protocol_error("parafork::mpi: a hello with no sense in it");
    for (int k = 0; k < n; ++k) {
        pids_.push_back(c.get<std::int32_t>());
        hosts_.emplace_back(c.str());
    }
    gone_.resize(static_cast<std::size_t>(n));
}

void world::check_proxy_alive() {
    pollfd p{proxy_pidfd_.get(), POLLIN, 0};
    if (sys::poll_fds(&p, 1, 0) > 0 || !proxy_pidfd_)
        throw error("parafork::mpi: rank " + std::to_string(rank_) +
                    "'s MPI process ended (the MPI job was aborted, or it was killed)");
}

void world::send(int dest, int tag, std::string_view body) {
    if (body.size() > detail::max_frame) throw error("parafork::mpi: a message over 1 GiB");
    frame_header h{static_cast<std::uint32_t>(body.size()), dest, tag};
    ++traffic_.sent;
    traffic_.sent_bytes += body.size();
    std::string_view parts[2] = {{reinterpret_cast<const char*>(&h), sizeof h}, body};
    for (auto part : parts) {
        while (!part.empty()) {
            long n = sys::send_some(sock_.get(), part.data(), part.size());
            if (n > 0) {
                part.remove_prefix(static_cast<std::size_t>(n));
                continue;
            }
            if (errno != EAGAIN) {
                check_proxy_alive();
                throw error("parafork::mpi: the MPI process closed its socket");
            }
            // The MPI process never blocks on us, so it drains; meanwhile watch that it lives.
            pollfd fds[2] = {{sock_.get(), POLLOUT, 0}, {proxy_pidfd_.get(), POLLIN, 0}};
            sys::poll_fds(fds, 2, -1);
            if (fds[1].revents) check_proxy_alive();
        }
    }
}

bool world::receive_ready() {
    bool any = false;
    char buf[1 << 16];
    for (;;) {
        long n = sys::read_some(sock_.get(), buf, sizeof buf);
        if (n < 0) return any;
        if (n == 0) {
            check_proxy_alive();
            throw error("parafork::mpi: the MPI process closed its socket");
        }
        if (in_off_ > 0 && in_off_ == in_.size()) {
            in_.clear();
            in_off_ = 0;
        }
        in_.append(buf, static_cast<std::size_t>(n));
        any = true;
    }
}

void world::put_back(std::vector<frame>& frames) {
    if (frames.empty()) return;
    later_.erase(later_.begin(), later_.begin() + static_cast<std::ptrdiff_t>(later_at_));
    later_at_ = 0;
    // Put back before what is still kept: they were taken from the front.
    later_.insert(later_.begin(), std::make_move_iterator(frames.begin()), std::make_move_iterator(frames.end()));
    frames.clear();
}

bool world::next(frame& out) {
    if (later_at_ < later_.size()) {
        out = std::move(later_[later_at_++]);
        if (later_at_ == later_.size()) {
            later_.clear();
            later_at_ = 0;
        }
        return true;
    }
    for (;;) {
        if (in_.size() - in_off_ < sizeof(frame_header)) return false;
        frame_header h;
        std::memcpy(&h, in_.data() + in_off_, sizeof h);
        if (h.length > detail::max_frame) throw protocol_error("parafork::mpi: oversized frame");
        if (in_.size() - in_off_ - sizeof h < h.length) return false;
        std::string_view body(in_.data() + in_off_ + sizeof h, h.length);
        in_off_ += sizeof h + h.length;
        if (in_off_ > (1u << 20) && in_off_ * 2 > in_.size()) {
            // Keep the buffer from growing: drop what was taken (body is copied out below first).
            std::string rest = in_.substr(in_off_);
            out.body.assign(body);
            in_.swap(rest);
            in_off_ = 0;
        } else {
            out.body.assign(body);
        }
        out.peer = h.peer;
        out.tag = h.tag;
        ++traffic_.received;
        traffic_.received_bytes += h.length;
        if (h.tag == detail::tag_gone) {
            if (h.peer < 0 || h.peer >= size()) throw protocol_error("parafork::mpi: departure of no rank");
            detail::cursor c(out.body);
            auto& d = gone_[static_cast<std::size_t>(h.peer)];
            d.ended = true;
            d.signal = c.get<std::int32_t>();
            d.code = c.get<std::int32_t>();
            continue;
        }
        if (h.tag != detail::tag_hello && (h.peer < 0 || h.peer >= size()))
            throw protocol_error("parafork::mpi: a message from no rank");
        return true;
    }
}

namespace {
bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
        if (std::getenv(v)) return true;
    return false;
}
std::unique_ptr<world> the_world;
} // namespace

world& init() {
    if (the_world) return *the_world;
    if (!launched_by_mpi())
        throw bad_launch("parafork::mpi: not started by an MPI launcher (no OMPI_COMM_WORLD_SIZE or "
                         "PMIX_RANK in the environment); run it as `mpirun -np N program` or "
                         "under srun");
    if (sys::thread_count() > 1)
        throw error("parafork::mpi::init: call it before any thread starts (it forks)");
    auto [mine, theirs] = sys::make_socketpair();
    sys::child_options co;
    co.ignore_sigint = false;  // the child is the program: Ctrl-C is its own
    co.warn_if_threaded = false;
    const pid_t parent = ::getpid();
    const pid_t pid = sys::fork_process(co);
    if (pid != 0) {
        // The process the launcher started (and watches) becomes this rank's MPI process.
        mine.reset();
        detail::run_mpi_process(std::move(theirs), pid);
    }
    theirs.reset();
    auto pidfd = sys::open_pidfd(parent);
    if (!pidfd || ::getppid() != parent)
        throw error("parafork::mpi::init: this rank's MPI process ended at start-up");
    the_world = std::make_unique<world>(world::init_tag{}, std::move(mine), std::move(pidfd));
    if (the_world->size() < 2)
        throw bad_launch("parafork::mpi: the job has one rank; start two or more (mpirun -np 3 ...), "
                         "or use parafork::map on one machine");
    return *the_world;
}

} // namespace parafork::mpi

#pragma once
// selector: waits on many processes' messages, any other descriptors and a timeout at once, and
// tells which are ready (the manager loop of valkka's tutorial, Part II).
//
//   pf::selector sel;
//   for (auto& w : workers) sel.add(w);          // ids 0..n-1
//   std::size_t pipe_id = sel.add_fd(pipe_fd);
//   for (std::size_t id : sel.wait(100ms)) { ... workers[id].receive<ready>() ... }
//
// A process is ready when a message (or a call's error) is queued for it, or when its backend
// has ended (receive then throws; remove it). While waiting, the selector also writes the
// processes' held calls and reads their answers, so their futures make progress too.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <poll.h>
#include <vector>

#include <parafork/exec/process/detail/base.hpp>

namespace parafork {

class selector {
public:
    // Ids are given in add order, from 0, and never reused.
    std::size_t add(process_base& p);
    std::size_t add_fd(int fd, short events = POLLIN);
    void remove(std::size_t id);
    std::size_t size() const noexcept { return sources_.size(); }

    // Waits until at least one source is ready or the timeout passes (nullopt: no limit).
    // Returns the ready ids in increasing order; empty means the timeout passed. SIGINT while
    // waiting terminates the watched processes and throws interrupted.
    const std::vector<std::size_t>& wait(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
    // What poll(2) reported for an fd source in the last wait (0 for processes).
    short revents(std::size_t id) const noexcept;

private:
    struct source {
        std::size_t id;
        std::shared_ptr<detail::process_state> proc;  // null for a plain fd
        int fd;
        short events;
        short revents;
    };
    void collect_processes();

    std::vector<source> sources_;
    std::vector<std::size_t> ready_;
    std::vector<pollfd> pfds_;
    std::vector<std::size_t> owners_;  // pfds_[i] belongs to sources_[owners_[i]]
    std::size_t next_id_ = 0;
};

} // namespace parafork

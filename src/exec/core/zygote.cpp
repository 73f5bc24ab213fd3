#include <parafork/exec/core/zygote.hpp>
#include <parafork/error.hpp>
#include <parafork/sys/signals.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace parafork {
namespace {

constexpr std::size_t max_fds = 8;
constexpr std::size_t max_payload = 64 * 1024;

struct event {
    char type;  // 'S' spawned, 'F' fork failed, 'E' exited
    pid_t pid;
    int code;
    int signal;
};

// One datagram with descriptors (SOCK_SEQPACKET keeps message boundaries).
void send_msg(int sock, const void* data, std::size_t len, std::span<const int> fds) {
    if (sys::send_with_fds(sock, data, len, fds) < 0) sys::throw_errno("sendmsg");
}

std::size_t recv_msg(int sock, void* data, std::size_t len, std::vector<sys::unique_fd>& fds) {
    return sys::recv_with_fds(sock, data, len, fds);
}

} // namespace

zygote::zygote(std::string name) {
    auto [ours, theirs] = sys::make_seqpacket_pair();
    sys::child_options co;
    co.title = std::move(name);
    pid_t pid = sys::fork_process(co);
    if (pid == 0) {
        ours.reset();
        serve(theirs.release());
    }
    server_ = sys::child(pid);
    sock_ = sys::private_fd(std::move(ours));
}

zygote::~zygote() {
    sock_.reset();  // EOF: the server kills its workers and exits
    if (!server_.wait_for(std::chrono::seconds(2))) server_.kill_and_reap();
}

pid_t zygote::spawn_raw(const std::string& payload, std::span<const int> fds) {
    if (fds.size() > max_fds) throw std::invalid_argument("zygote: at most 8 descriptors per worker");
    if (payload.size() > max_payload) throw std::invalid_argument("zygote: arguments over 64 KiB");
    std::lock_guard serial(spawn_mutex_);  // one request at a time: the next reply is ours
    std::unique_lock lock(mutex_);
    if (!sock_) throw error("zygote: the server is gone");
    try {
        send_msg(sock_.get(), payload.data(), payload.size(), fds);
    } catch (const std::system_error& e) {
        if (e.code().value() != EPIPE && e.code().value() != ECONNRESET) throw;
        server_gone();
    }
    spawned_.clear();
    while (spawned_.empty()) await_event(lock, std::nullopt);
    pid_t pid = spawned_.front();
    if (pid < 0) sys::throw_errno("fork (in zygote)", -pid);
    return pid;
}

bool zygote::await_event(std::unique_lock<std::mutex>& lock, std::optional<clock::time_point> deadline) {
    if (reading_) {  // another thread reads the socket: it wakes us after each event
        if (!deadline) {
            events_.wait(lock);
            return true;
        }
        return events_.wait_until(lock, *deadline) == std::cv_status::no_timeout;
    }
    if (!sock_) throw error("zygote: the server is gone");
    reading_ = true;
    // Whatever happens below, the next waiter takes over the reading.
    struct hand_over {
        zygote& z;
        ~hand_over() {
            z.reading_ = false;
            z.events_.notify_all();
        }
    } next{*this};
    pollfd p{sock_.get(), POLLIN, 0};
    int timeout = -1;
    if (deadline) {  // rounded up: never wake before the deadline
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - clock::now()).count();
        timeout = static_cast<int>(std::clamp<decltype(left)>(left, 0, INT_MAX));
    }
    lock.unlock();  // the socket has one reader; the others may look at the tables meanwhile
    int r;
    try {
        r = sys::poll_fds(&p, 1, timeout);
    } catch (...) {
        lock.lock();
        throw;
    }
    lock.lock();
    if (!sock_) throw error("zygote: the server is gone");
    if (r > 0) read_event();
    return r != 0;
}

void zygote::read_event() {
    event e{};
    std::vector<sys::unique_fd> none;
    std::size_t n = recv_msg(sock_.get(), &e, sizeof e, none);
    if (n == 0) server_gone();
    if (n != sizeof e) throw protocol_error("zygote: malformed event");
    if (e.type == 'S') {
        running_.insert(e.pid);
        spawned_.push_back(e.pid);
    } else if (e.type == 'F') {
        spawned_.push_back(-e.code);
    } else if (e.type == 'E') {
        running_.erase(e.pid);
        exited_[e.pid] = {sys::exit_status{e.code, e.signal}, exits_seen_++};
        if (exited_.size() > max_unclaimed) {
            auto oldest = exited_.begin();
            for (auto it = exited_.begin(); it != exited_.end(); ++it)
                if (it->second.second < oldest->second.second) oldest = it;
            exited_.erase(oldest);
        }
    } else {
        throw protocol_error("zygote: unknown event");
    }
}

void zygote::server_gone() {
    auto st = server_.wait();
    sock_.reset();
    throw worker_died(server_.pid(), st.signal, st.code, std::nullopt, "the zygote died");
}

sys::exit_status zygote::wait(pid_t worker) {
    for (;;)
        if (auto st = wait_for(worker, std::chrono::hours(24))) return *st;
}

std::optional<sys::exit_status> zygote::wait_for(pid_t worker, std::chrono::milliseconds timeout) {
    auto deadline = clock::now() + timeout;
    std::unique_lock lock(mutex_);
    for (bool late = false;;) {
        auto it = exited_.find(worker);
        if (it != exited_.end()) {
            auto st = it->second.first;
            exited_.erase(it);
            return st;
        }
        if (!running_.count(worker))
            throw error("zygote: pid " + std::to_string(worker) +
                        " is no running worker (never spawned here, already waited for, or its "
                        "status was dropped as one of more than max_unclaimed)");
        if (late) return std::nullopt;
        late = !await_event(lock, deadline);  // sleeps until an event or the deadline
    }
}

void zygote::signal(pid_t worker, int sig) const { sys::send_signal(worker, sig); }

void zygote::serve(int sock_fd) {
    // Runs in the zygote process; never returns.
    sys::private_fd sock(sys::unique_fd{sock_fd});  // workers forked from here close it
    struct worker {
        pid_t pid;
        sys::unique_fd pidfd;
    };
    std::vector<worker> workers;
    std::vector<pollfd> pfds;
    std::string buf(max_payload, '\0');
    int code = 0;
    try {
        for (;;) {
            pfds.clear();
            pfds.push_back({sock.get(), POLLIN, 0});
            for (auto& w : workers) pfds.push_back({w.pidfd.get(), POLLIN, 0});
            if (sys::poll_fds(pfds.data(), pfds.size(), -1) < 0) continue;
            for (std::size_t i = 1; i < pfds.size(); ++i) {
                if (!pfds[i].revents) continue;
                worker& w = workers[i - 1];
                auto st = sys::wait_pid(w.pid);
                event e{'E', w.pid, st.code, st.signal};
                send_msg(sock.get(), &e, sizeof e, {});
                w.pid = -1;
            }
            std::erase_if(workers, [](const worker& w) { return w.pid < 0; });
            if (!pfds[0].revents) continue;
            std::vector<sys::unique_fd> fds;
            std::size_t n = recv_msg(sock.get(), buf.data(), buf.size(), fds);
            if (n == 0) break;  // the program closed us: stop
            std::uintptr_t tramp = 0, fn = 0;
            std::string_view msg(buf.data(), n);
            wire::reader r(msg);
            r(tramp, fn);
            std::string_view args = msg.substr(msg.size() - r.remaining());
            pid_t pid;
            try {
                pid = sys::fork_process();
            } catch (const std::system_error& err) {
                event e{'F', 0, err.code().value(), 0};
                send_msg(sock.get(), &e, sizeof e, {});
                continue;
            }
            if (pid == 0) {
                int rc = 0;
                try {
                    std::vector<int> raw;
                    for (auto& f : fds) raw.push_back(f.get());
                    reinterpret_cast<tramp_t>(tramp)(fn, args, raw);
                } catch (...) {
                    rc = sys::report_child_exception();
                }
                sys::exit_child(rc);
            }
            auto pfd = sys::open_pidfd(pid);
            if (!pfd) {
                // Out of descriptors (or a kernel without pidfds): this spawn fails, the server
                // and its other workers go on.
                int err = errno;
                sys::send_signal(pid, SIGKILL);
                sys::wait_pid(pid);
                event e{'F', 0, err, 0};
                send_msg(sock.get(), &e, sizeof e, {});
                continue;
            }
            workers.push_back({pid, std::move(pfd)});
            event e{'S', pid, 0, 0};
            send_msg(sock.get(), &e, sizeof e, {});
        }
    } catch (...) {
        code = sys::report_child_exception();
    }
    for (auto& w : workers) sys::send_signal(w.pid, SIGKILL);
    for (auto& w : workers) sys::wait_pid(w.pid);
    sys::exit_child(code);
}

} // namespace parafork

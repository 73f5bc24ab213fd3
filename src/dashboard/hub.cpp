// One dashboard per program: the shared region (a memfd mapped once, never unmapped, so that
// an engine's slot outlives any server) and the server process, forked through a supervisor
// (PR_SET_PDEATHSIG, watched by pidfd, reaped when stopped or at exit).
#include "hub.hpp"
#include "server.hpp"

#include <parafork/dashboard/dashboard.hpp>
#include <parafork/exec/core/supervisor.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <unistd.h>

namespace parafork::detail::dash {

namespace {

struct address {
    std::string host;
    int port = 0;
};

// "HOST:PORT", "[V6]:PORT" or "PORT" (loopback); nullopt if it is none of these.
std::optional<address> parse_address(std::string_view s) {
    address a;
    std::string_view port = s;
    if (auto colon = s.rfind(':'); colon != std::string_view::npos) {
        std::string_view host = s.substr(0, colon);
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2);
        if (host.empty()) return std::nullopt;
        a.host = std::string(host);
        port = s.substr(colon + 1);
    } else {
        a.host = "127.0.0.1";
    }
    int p = -1;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc{} || end != port.data() + port.size() || p < 0 || p > 65535) return std::nullopt;
    a.port = p;
    return a;
}

constexpr std::size_t region_bytes = (sizeof(region) + 4095) / 4096 * 4096;

// Made once and never destroyed: engines keep pointers into its region until the very end.
struct hub {
    pid_t owner = ::getpid();
    sys::mapping map;
    region* r = nullptr;
    supervisor sup{stop_policy{SIGTERM, std::chrono::milliseconds(200)}};
    std::optional<supervisor::id> server;
    std::string url;
    bool failed = false;  // the server could not start: not tried again for every engine
    int open_to_children = 0;  // pipelines forking their stages now (under hub_lock)

    hub() {
        auto fd = sys::make_memfd("parafork-dashboard", region_bytes);
        map = sys::mapping(fd.get(), region_bytes);  // the mapping keeps the memory: fd closes
        r = new (map.data()) region();
        r->owner_pid.store(owner, std::memory_order_relaxed);
        r->magic.store(region_magic, std::memory_order_release);
    }
    void stop_server() noexcept {
        if (!server) return;
        sup.stop_all();
        sup.forget(*server);
        server.reset();
        url.clear();
    }

    void start(const std::string& spec) {
        auto a = parse_address(spec);
        if (!a) {
            std::fprintf(stderr, "parafork: dashboard address '%s' is not HOST:PORT; no dashboard\n",
                         spec.c_str());
            failed = true;
            return;
        }
        auto report = sys::make_pipe();
        sys::private_fd report_r(std::move(report.read));
        const int report_w = report.write.get();
        sys::child_options co;
        co.title = "parafork:dashboard";
        const region* shared = r;
        // The server gets the region; children forked after it (the workers) have no use for it.
        sys::do_fork(map.data(), region_bytes);
        std::optional<supervisor::id> id;
        try {
            id = sup.fork([&] {
                // The program's channels are none of the server's business: holding their ends
                // would keep their peers waiting on it (a receiver never seeing its senders go).
                channel_leave_all();
                serve(*shared, a->host, a->port, report_w);
            }, co);
        } catch (...) {
            if (!open_to_children) sys::dont_fork(map.data(), region_bytes);
            throw;
        }
        if (!open_to_children) sys::dont_fork(map.data(), region_bytes);
        server = id;
        report.write.reset();
        // The server says which port it bound, or why it could not; or dies (its stderr says).
        std::string said;
        auto deadline = supervisor::clock::now() + std::chrono::seconds(10);
        for (;;) {
            pollfd p{report_r.get(), POLLIN, 0};
            auto w = sup.wait(std::span<pollfd>(&p, 1), deadline);
            if (w == supervisor::wake::timeout || w == supervisor::wake::interrupted) break;
            // An exit is reported before the pipe's readiness: what it wrote is there still
            // (its end is closed, so the read cannot block).
            char buf[256];
            long n = sys::read_some(report_r.get(), buf, sizeof buf);
            if (n <= 0) break;
            said.append(buf, static_cast<std::size_t>(n));
            if (said.find('\n') != std::string::npos) break;
        }
        if (said.rfind("OK ", 0) == 0) {
            std::string host = a->host.find(':') != std::string::npos ? "[" + a->host + "]" : a->host;
            url = "http://" + host + ":" + said.substr(3, said.find('\n') - 3) + "/";
            std::fprintf(stderr, "parafork: dashboard at %s\n", url.c_str());
            return;
        }
        std::string why = said.rfind("ERR ", 0) == 0 ? said.substr(4, said.find('\n') - 4)
                                                    : std::string("the server did not start");
        std::fprintf(stderr, "parafork: dashboard on %s not started: %s\n", spec.c_str(), why.c_str());
        stop_server();
        failed = true;
    }
};

std::mutex hub_lock;
hub* the_hub = nullptr;
thread_local int quiet = 0;  // quiet_threads() on this thread

// Destroyed at exit: stops the server of the process that started it.
struct at_exit {
    ~at_exit() {
        if (the_hub && ::getpid() == the_hub->owner) the_hub->stop_server();
    }
} stop_at_exit;

} // namespace

pool_slot* attach(const options& o, std::string_view kind, std::uint64_t jobs, std::uint64_t total) {
    std::string spec = o.dashboard;
    if (spec.empty())
        if (const char* env = std::getenv("PARAFORK_DASHBOARD")) spec = env;
    if (spec.empty() || (quiet > 0 && kind == "thread")) return nullptr;
    std::lock_guard lock(hub_lock);
    if (the_hub && the_hub->owner != ::getpid()) return nullptr;  // a child: its parent shows it
    // Nothing about the dashboard throws into the program: it runs on without one.
    try {
        if (!the_hub) the_hub = new hub();  // lives as long as the program (engines point into it)
        if (the_hub->server &&
            the_hub->sup.wait(std::span<pollfd>(), supervisor::clock::now()) == supervisor::wake::exited)
            the_hub->stop_server();  // it died (killed, say): reaped here, and started again
        if (!the_hub->server && !the_hub->failed) the_hub->start(spec);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parafork: dashboard not started: %s\n", e.what());
        if (the_hub) {
            the_hub->stop_server();
            the_hub->failed = true;
        }
        return nullptr;
    }
    if (!the_hub->server) return nullptr;
    return open_pool(*the_hub->r, o.name, kind, jobs, total);
}

void note(pool_slot& p, const error_note& e) noexcept {
    // Every attached slot lives in the one region.
    if (the_hub) note_error(*the_hub->r, &p, e);
}

pipe_slot* attach_pipe(pool_slot& p) noexcept {
    return the_hub ? open_pipe(*the_hub->r, p) : nullptr;
}

pipe_slot* attach_graph(pool_slot& p, std::span<const std::string_view> stages, std::span<const graph_queue> queues,
                        std::size_t counter_bytes) noexcept {
    if (stages.size() > max_stages || queues.size() > max_queues || counter_bytes > pipe_counters_bytes) return nullptr;
    auto* pipe = attach_pipe(p);
    if (!pipe) return nullptr;
    begin_graph(*pipe);
    for (std::size_t i = 0; i < stages.size(); ++i) set_stage(*pipe, i, stages[i]);
    for (std::size_t q = 0; q < queues.size(); ++q) {
        const auto& x = queues[q];
        set_queue(*pipe, q, x.writers, x.readers, x.parent_reads, x.counter, x.type);
    }
    end_graph(*pipe, stages.size(), queues.size());
    return pipe;
}

void open_to_children() noexcept {
    std::lock_guard lock(hub_lock);
    if (the_hub && the_hub->open_to_children++ == 0) sys::do_fork(the_hub->map.data(), region_bytes);
}

void close_to_children() noexcept {
    std::lock_guard lock(hub_lock);
    if (the_hub && --the_hub->open_to_children == 0) sys::dont_fork(the_hub->map.data(), region_bytes);
}

void keep_from_children() noexcept {
    // No lock: just forked, this process has one thread (the lock may be held in the copy).
    if (the_hub) sys::dont_fork(the_hub->map.data(), region_bytes);
}

void quiet_threads(bool on) noexcept { quiet += on ? 1 : -1; }

} // namespace parafork::detail::dash

namespace parafork::dashboard {

std::string url() {
    std::lock_guard lock(detail::dash::hub_lock);
    auto* h = detail::dash::the_hub;
    return h && h->owner == ::getpid() ? h->url : std::string();
}

void stop() noexcept {
    std::lock_guard lock(detail::dash::hub_lock);
    auto* h = detail::dash::the_hub;
    if (!h || h->owner != ::getpid()) return;
    h->stop_server();
    h->failed = false;
}

} // namespace parafork::dashboard

// The dashboard's server process. It runs in a child of the program (forked once), so the
// program itself stays single-threaded: here a few threads serve HTTP and one samples the
// counters four times a second for rates and the throughput chart. Read-only: every route is
// a GET of data; anything else is an error reply, and a bad client costs one thread a few
// seconds at most (read and write timeouts), never the program.
#include "server.hpp"

#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>

#include <httplib.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace parafork::detail::dash {

namespace {

// Whatever the program had open when the server was forked (its pipes, its sockets) is not
// the server's to hold: a pipe's write end kept here would keep its reader from seeing EOF.
void close_inherited_fds(int keep) {
    std::vector<int> fds;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
        int fd = -1;
        const auto name = e.path().filename().string();
        auto [p, err] = std::from_chars(name.data(), name.data() + name.size(), fd);
        if (err == std::errc{} && fd > 2 && fd != keep) fds.push_back(fd);
    }
    // The iterator's own descriptor is closed by now; closing it again fails harmlessly.
    for (int fd : fds) sys::close_now(fd);
}

constexpr auto sample_every = std::chrono::milliseconds(250);
constexpr std::size_t rate_window = 8;       // samples: the rate over the last 2 s
constexpr std::size_t history_points = 480;  // the chart: the last 2 minutes

class sampler {
public:
    explicit sampler(const region& r) : r_(r) {}

    void run() {
        for (;;) {
            std::this_thread::sleep_for(sample_every);
            tick();
        }
    }

    // Rates and history as of the last sample.
    void fill(extras& x, std::uint64_t now) {
        std::lock_guard lock(m_);
        for (auto& [serial, samples] : per_pool_)
            if (samples.size() >= 2) {
                auto& a = samples.front();
                auto& b = samples.back();
                double dt = static_cast<double>(b.first - a.first) / 1e9;
                x.rates.emplace_back(serial, dt > 0 ? static_cast<double>(b.second - a.second) / dt : 0.0);
            }
        for (auto& [serial, samples] : per_stage_)
            if (samples.size() >= 2) {
                auto& a = samples.front();
                auto& b = samples.back();
                double dt = static_cast<double>(b.first - a.first) / 1e9;
                std::vector<double> r(b.second.size(), 0.0);
                for (std::size_t i = 0; i < r.size() && i < a.second.size(); ++i)
                    if (dt > 0 && b.second[i] >= a.second[i])
                        r[i] = static_cast<double>(b.second[i] - a.second[i]) / dt;
                x.stage_rates.emplace_back(serial, std::move(r));
            }
        for (auto& [t, rate] : history_)
            x.history.emplace_back(-static_cast<double>(now > t ? now - t : 0) / 1e9, rate);
    }

private:
    void tick() {
        snapshot s = read(r_);
        std::lock_guard lock(m_);
        double answered = 0;  // since the last sample, over every pool
        std::map<std::uint64_t, std::deque<std::pair<std::uint64_t, std::uint64_t>>> next;
        for (const auto& p : s.pools) {
            auto& samples = next[p.serial];
            if (auto it = per_pool_.find(p.serial); it != per_pool_.end()) {
                samples = std::move(it->second);
                if (!samples.empty() && p.done >= samples.back().second)
                    answered += static_cast<double>(p.done - samples.back().second);
            } else {
                answered += static_cast<double>(p.done);  // new since the last sample
            }
            samples.emplace_back(s.at_ns, p.done);
            while (samples.size() > rate_window) samples.pop_front();
        }
        per_pool_ = std::move(next);
        std::map<std::uint64_t, std::deque<std::pair<std::uint64_t, std::vector<std::uint64_t>>>> stages;
        for (const auto& p : s.pools) {
            if (!p.has_graph) continue;
            auto& samples = stages[p.serial];
            if (auto it = per_stage_.find(p.serial); it != per_stage_.end()) samples = std::move(it->second);
            std::vector<std::uint64_t> counts(p.stages.size());
            for (std::size_t i = 0; i < counts.size(); ++i) counts[i] = stage_items(p, i);
            samples.emplace_back(s.at_ns, std::move(counts));
            while (samples.size() > rate_window) samples.pop_front();
        }
        per_stage_ = std::move(stages);
        double dt = last_ns_ ? static_cast<double>(s.at_ns - last_ns_) / 1e9 : 0;
        if (dt > 0) history_.emplace_back(s.at_ns, answered / dt);
        while (history_.size() > history_points) history_.pop_front();
        last_ns_ = s.at_ns;
    }

    const region& r_;
    std::mutex m_;
    std::map<std::uint64_t, std::deque<std::pair<std::uint64_t, std::uint64_t>>> per_pool_;
    std::map<std::uint64_t, std::deque<std::pair<std::uint64_t, std::vector<std::uint64_t>>>> per_stage_;
    std::deque<std::pair<std::uint64_t, double>> history_;
    std::uint64_t last_ns_ = 0;
};

extras gather(const snapshot& s, sampler& smp) {
    extras x;
    for (const auto& p : s.pools) {
        if (p.state != pool_state::live) continue;
        for (const auto& w : p.workers)
            if (w.state != worker_state::dead && w.pid > 0) x.procs.emplace_back(w.pid, read_proc_stats(w.pid));
    }
    smp.fill(x, s.at_ns);
    return x;
}

const char* reason(int status) {
    switch (status) {
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 413: return "Payload Too Large";
        case 414: return "URI Too Long";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
    }
    return "Error";
}

void no_cache(httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_header("X-Content-Type-Options", "nosniff");
}

} // namespace

void serve(const region& r, const std::string& host, int port, int report_fd) {
    close_inherited_fds(report_fd);
    auto report = [&](const std::string& line) { sys::write_all(report_fd, line); };
    static sampler smp(r);
    static httplib::Server svr;
    // A handful of threads: a page, a script and a scraper at once; slow clients time out.
    svr.new_task_queue = [] { return new httplib::ThreadPool(4); };
    svr.set_read_timeout(2, 0);
    svr.set_write_timeout(2, 0);
    svr.set_keep_alive_timeout(2);
    svr.set_keep_alive_max_count(100);
    svr.set_payload_max_length(4096);  // no route takes a body
    svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
        no_cache(res);
        res.set_content(page_html, page_html_size, "text/html; charset=utf-8");
    });
    svr.Get("/api/state", [&r](const httplib::Request&, httplib::Response& res) {
        snapshot s = read(r);
        no_cache(res);
        res.set_content(state_json(s, gather(s, smp)), "application/json");
    });
    svr.Get("/metrics", [&r](const httplib::Request&, httplib::Response& res) {
        snapshot s = read(r);
        no_cache(res);
        res.set_content(metrics_text(s, gather(s, smp)), "text/plain; version=0.0.4; charset=utf-8");
    });
    svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
        no_cache(res);
        res.set_content(std::to_string(res.status) + " " + reason(res.status) + "\n",
                        "text/plain; charset=utf-8");
    });
    bool bound = false;
    if (port == 0) {
        port = svr.bind_to_any_port(host);
        bound = port > 0;
    } else {
        bound = svr.bind_to_port(host, port);
    }
    if (!bound) {
        report("ERR cannot listen on " + host + ":" + std::to_string(port) +
               " (in use, or not an address of this machine)\n");
        sys::close_now(report_fd);
        sys::exit_child(1);
    }
    report("OK " + std::to_string(port) + "\n");
    sys::close_now(report_fd);
    std::thread([] { smp.run(); }).detach();
    svr.listen_after_bind();
    sys::exit_child(0);
}

} // namespace parafork::detail::dash

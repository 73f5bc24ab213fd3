// The live dashboard: its shared counters and documents (unit tests), and its server process
// over loopback with real pools: what /api/state and /metrics show, bad requests, a server that
// dies, and nothing left behind.
#include <parafork/dashboard/dashboard.hpp>
#include <parafork/dashboard/region.hpp>
#include <parafork/exec/forked/map.hpp>
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/exec/process/process.hpp>
#include <parafork/exec/thread/thread.hpp>
#include <parafork/ipc/channel.hpp>

#include "support/gated_source.hpp"
#include "support/leak_check.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
namespace dash = parafork::detail::dash;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// ---- the region ----

std::unique_ptr<dash::region> fresh_region() { return std::make_unique<dash::region>(); }

TEST(DashboardRegion, APoolItsWorkersAndCountersReadBack) {
    auto r = fresh_region();
    dash::pool_slot* p = dash::open_pool(*r, "resize", "map", 3, 100);
    ASSERT_NE(p, nullptr);
    dash::worker_started(*p, 0, 1001);
    dash::worker_started(*p, 1, 1002);
    dash::worker_started(*p, 2, 1003);
    dash::worker_busy(*p, 0, 7, dash::now_ns());
    dash::worker_answered(*p, 1, 5);
    dash::worker_idle(*p, 1, dash::now_ns());
    dash::worker_gone(*p, 2);
    dash::relaxed_set(p->done, 42);
    dash::relaxed_set(p->failed, 2);

    auto s = dash::read(*r);
    ASSERT_EQ(s.pools.size(), 1u);
    const auto& v = s.pools[0];
    EXPECT_EQ(v.name, "resize");
    EXPECT_EQ(v.kind, "map");
    EXPECT_EQ(v.jobs, 3u);
    EXPECT_EQ(v.total, 100u);
    EXPECT_EQ(v.done, 42u);
    EXPECT_EQ(v.failed, 2u);
    EXPECT_EQ(v.state, dash::pool_state::live);
    ASSERT_EQ(v.workers.size(), 3u);
    EXPECT_EQ(v.workers[0].pid, 1001);
    EXPECT_EQ(v.workers[0].state, dash::worker_state::busy);
    EXPECT_EQ(v.workers[0].task, 7u);
    EXPECT_EQ(v.workers[1].state, dash::worker_state::idle);
    EXPECT_EQ(v.workers[1].done, 5u);
    EXPECT_EQ(v.workers[2].state, dash::worker_state::dead);

    dash::close_pool(*p);
    s = dash::read(*r);
    ASSERT_EQ(s.pools.size(), 1u);
    EXPECT_EQ(s.pools[0].state, dash::pool_state::finished);
    EXPECT_GT(s.pools[0].ended_ns, 0u);
}

TEST(DashboardRegion, APipelinesGraphAndCountersReadBack) {
    auto r = fresh_region();
    dash::pool_slot* p = dash::open_pool(*r, "resize", "pipeline", 3, 0);
    ASSERT_NE(p, nullptr);
    dash::pipe_slot* g = dash::open_pipe(*r, *p);
    ASSERT_NE(g, nullptr);
    dash::begin_graph(*g);
    dash::set_stage(*g, 0, "read");
    dash::set_stage(*g, 1, "scale");
    dash::set_stage(*g, 2, "scale");
    // Queue 0 (counters at 1): read -> scale, scale; queue 1 (counters at 3): both -> parent.
    dash::set_queue(*g, 0, 0b001, 0b110, false, 1, "std::string");
    dash::set_queue(*g, 1, 0b110, 0, true, 3, "image");
    dash::end_graph(*g, 3, 2);
    auto* es = reinterpret_cast<pf::detail::edge_stats*>(g->counters);
    for (int e = 0; e < 4; ++e) new (es + e) pf::detail::edge_stats();
    es[1].sent = 10;
    es[1].received = 7;
    es[3].sent = 6;
    es[3].received = 4;
    dash::tally(g->stage[0].out, 10);
    dash::tally(g->stage[1].in, 4);
    dash::tally(g->stage[1].out, 4);
    dash::tally(g->stage[2].in, 3);
    dash::tally(g->stage[2].out, 2);

    auto s = dash::read(*r);
    ASSERT_EQ(s.pools.size(), 1u);
    const auto& v = s.pools[0];
    ASSERT_TRUE(v.has_graph);
    ASSERT_EQ(v.stages.size(), 3u);
    EXPECT_EQ(v.stages[1].name, "scale");
    EXPECT_EQ(v.stages[0].out, 10u);
    EXPECT_EQ(v.stages[2].in, 3u);
    ASSERT_EQ(v.queues.size(), 2u);
    EXPECT_EQ(v.queues[0].sent, 10u);
    EXPECT_EQ(v.queues[0].received, 7u);
    EXPECT_EQ(v.queues[1].type, "image");
    EXPECT_TRUE(v.queues[1].parent_reads);
    EXPECT_EQ(v.done, 4u);    // what the program read of its output (no stage is a sink)
    EXPECT_EQ(v.queued, 5u);  // 3 + 2 waiting in the queues
    EXPECT_EQ(dash::stage_items(v, 0), 10u);  // a source: what it put
    EXPECT_EQ(dash::stage_items(v, 1), 4u);   // the others: what they took

    dash::extras x;
    x.stage_rates.push_back({v.serial, {5.0, 2.0, 1.5}});
    json doc = json::parse(dash::state_json(s, x));
    const json& gr = doc["pools"][0]["graph"];
    ASSERT_EQ(gr["stages"].size(), 3u);
    EXPECT_EQ(gr["stages"][2]["name"], "scale");
    EXPECT_EQ(gr["stages"][2]["rate"], 1.5);
    EXPECT_EQ(gr["queues"][0]["from"], json::array({0}));
    EXPECT_EQ(gr["queues"][0]["to"], json::array({1, 2}));
    EXPECT_EQ(gr["queues"][0]["depth"], 3);
    EXPECT_EQ(gr["queues"][1]["to_parent"], true);
    EXPECT_EQ(gr["queues"][1]["depth"], 2);
    std::string m = dash::metrics_text(s, x);
    EXPECT_NE(m.find("parafork_pipeline_queue_depth{pool=\"1\",name=\"resize\",kind=\"pipeline\",queue=\"0\","
                     "from=\"read\",to=\"scale,scale\"} 3\n"), std::string::npos) << m;
    EXPECT_NE(m.find("parafork_pipeline_stage_items_per_second{pool=\"1\",name=\"resize\",kind=\"pipeline\","
                     "stage=\"0\",stage_name=\"read\"} 5\n"), std::string::npos) << m;

    // Released, it gives way to the next pipeline; a pool without a graph shows none.
    dash::release_pipe(*g);
    dash::close_pool(*p);
    for (std::uint32_t i = 0; i < dash::max_pipes; ++i) {
        dash::pool_slot* q = dash::open_pool(*r, "next", "pipeline", 1, 0);
        ASSERT_NE(q, nullptr);
        ASSERT_NE(dash::open_pipe(*r, *q), nullptr);
    }
    dash::pool_slot* q = dash::open_pool(*r, "one too many", "pipeline", 1, 0);
    EXPECT_EQ(dash::open_pipe(*r, *q), nullptr);
    s = dash::read(*r);
    EXPECT_FALSE(s.pools[0].has_graph);  // its slot went to another (none written: not shown)
}

TEST(DashboardRegion, SlotsAreBoundedAndTheOldestFinishedGivesWay) {
    auto r = fresh_region();
    std::vector<dash::pool_slot*> open;
    for (std::uint32_t k = 0; k < dash::max_pools; ++k) {
        open.push_back(dash::open_pool(*r, "p" + std::to_string(k), "pool", 1, 0));
        ASSERT_NE(open.back(), nullptr);
    }
    EXPECT_EQ(dash::open_pool(*r, "one too many", "pool", 1, 0), nullptr);  // all live
    dash::close_pool(*open[5]);
    std::this_thread::sleep_for(1ms);
    dash::close_pool(*open[2]);
    dash::pool_slot* again = dash::open_pool(*r, "reused", "pool", 1, 0);
    EXPECT_EQ(again, open[5]);  // ended first
    auto s = dash::read(*r);
    EXPECT_EQ(s.pools.size(), dash::max_pools);
    EXPECT_EQ(s.pools.back().name, "reused");  // newest serial last
    EXPECT_EQ(s.pools.back().done, 0u);
}

TEST(DashboardRegion, ErrorRingKeepsTheLastOnesNewestFirstAndCutsLongText) {
    auto r = fresh_region();
    dash::pool_slot* p = dash::open_pool(*r, std::string(500, 'n'), "pool", 1, 0);
    ASSERT_NE(p, nullptr);
    const std::string long_message(1000, 'm');
    for (int k = 0; k < 40; ++k) {
        dash::error_note e;
        e.kind = dash::error_kind::remote;
        e.type = "std::runtime_error";
        e.message = k == 39 ? std::string_view(long_message) : std::string_view("boom");
        e.pid = 100 + k;
        e.task = static_cast<std::uint64_t>(k);
        dash::note_error(*r, p, e);
    }
    auto s = dash::read(*r);
    EXPECT_EQ(s.errors_total, 40u);
    ASSERT_EQ(s.errors.size(), dash::max_errors);
    EXPECT_EQ(s.errors.front().task, 39u);
    EXPECT_EQ(s.errors.front().pid, 139);
    EXPECT_EQ(s.errors.front().message.size(), dash::message_bytes - 1);
    EXPECT_EQ(s.errors.back().task, 40u - dash::max_errors);
    EXPECT_EQ(s.pools[0].name.size(), dash::name_bytes - 1);
}

TEST(DashboardRegion, CutNamesKeepWholeUtf8Characters) {
    auto r = fresh_region();
    std::string name;
    while (name.size() < 100) name += "\xC3\xA9";  // é, two bytes
    auto* p = dash::open_pool(*r, name, "pool", 1, 0);
    ASSERT_NE(p, nullptr);
    auto got = dash::read(*r).pools[0].name;
    EXPECT_EQ(got.size() % 2, 0u);
    EXPECT_EQ(got, name.substr(0, got.size()));
}

TEST(DashboardDocuments, StateJsonCarriesPoolsWorkersErrorsAndRates) {
    auto r = fresh_region();
    auto* p = dash::open_pool(*r, "crunch \"x\"", "pool", 2, 10);
    dash::worker_started(*p, 0, 4242);
    dash::worker_busy(*p, 0, (std::uint64_t{3} << 40) + 5, dash::now_ns());  // call 3, item 5
    dash::relaxed_set(p->done, 4);
    dash::error_note e;
    e.kind = dash::error_kind::died;
    e.type = "parafork::worker_died";
    e.pid = 4243;
    e.signal = SIGKILL;
    e.task = 2;
    dash::note_error(*r, p, e);
    dash::extras x;
    x.procs.emplace_back(4242, dash::proc_stats{1.5, 1 << 20, true});
    x.rates.emplace_back(p->serial.load(), 2.0);
    x.history.emplace_back(-0.25, 2.0);

    json doc = json::parse(dash::state_json(dash::read(*r), x));
    EXPECT_EQ(doc["totals"]["done"], 4);
    EXPECT_EQ(doc["totals"]["workers"], 1);
    ASSERT_EQ(doc["pools"].size(), 1u);
    const auto& jp = doc["pools"][0];
    EXPECT_EQ(jp["name"], "crunch \"x\"");
    EXPECT_EQ(jp["state"], "running");
    EXPECT_EQ(jp["total"], 10);
    EXPECT_DOUBLE_EQ(jp["rate"].get<double>(), 2.0);
    EXPECT_DOUBLE_EQ(jp["eta_seconds"].get<double>(), 3.0);  // 6 left at 2/s
    EXPECT_EQ(jp["worker_list"][0]["pid"], 4242);
    EXPECT_EQ(jp["worker_list"][0]["state"], "busy");
    EXPECT_EQ(jp["worker_list"][0]["task"], 5);
    EXPECT_EQ(jp["worker_list"][0]["call"], 3);
    EXPECT_EQ(jp["worker_list"][0]["rss_bytes"], 1 << 20);
    ASSERT_EQ(doc["errors"].size(), 1u);
    EXPECT_EQ(doc["errors"][0]["kind"], "died");
    EXPECT_EQ(doc["errors"][0]["signal"], SIGKILL);
    EXPECT_EQ(doc["errors"][0]["pid"], 4243);
    EXPECT_EQ(doc["history"][0][1], 2.0);
}

TEST(DashboardDocuments, InvalidUtf8FromUserCodeIsReplacedNotThrown) {
    auto r = fresh_region();
    auto* p = dash::open_pool(*r, "bad \xFF\xFE name", "pool", 1, 0);
    dash::error_note e;
    e.type = "X";
    e.message = "\xC3";  // cut in the middle of a character
    dash::note_error(*r, p, e);
    std::string text;
    ASSERT_NO_THROW(text = dash::state_json(dash::read(*r), {}));
    json parsed;
    EXPECT_NO_THROW(parsed = json::parse(text));
}

TEST(DashboardDocuments, MetricsAreOneFamilyAtATimeWithEscapedLabels) {
    auto r = fresh_region();
    auto* p = dash::open_pool(*r, "a\"b\\c\nd", "pool", 1, 0);
    dash::worker_started(*p, 0, 77);
    dash::relaxed_set(p->done, 12);
    dash::extras x;
    x.procs.emplace_back(77, dash::proc_stats{0.5, 4096, true});
    std::string m = dash::metrics_text(dash::read(*r), x);
    EXPECT_NE(m.find("parafork_tasks_done_total{pool=\"1\",name=\"a\\\"b\\\\c\\nd\",kind=\"pool\"} 12\n"),
              std::string::npos) << m;
    EXPECT_NE(m.find("parafork_worker_rss_bytes{"), std::string::npos);
    // Every sample follows its own family's TYPE line, with no other family in between.
    std::string current;
    std::set<std::string> seen;
    for (std::size_t at = 0; at < m.size();) {
        std::size_t end = m.find('\n', at);
        std::string line = m.substr(at, end - at);
        at = end + 1;
        if (line.rfind("# TYPE ", 0) == 0) {
            current = line.substr(7, line.find(' ', 7) - 7);
            EXPECT_TRUE(seen.insert(current).second) << current << " twice";
        } else if (line[0] != '#') {
            EXPECT_EQ(line.substr(0, current.size()), current) << line;
        }
    }
}

TEST(DashboardDocuments, ProcStatsOfThisProcess) {
    auto st = dash::read_proc_stats(::getpid());
    ASSERT_TRUE(st.known);
    EXPECT_GT(st.rss_bytes, 0u);
    EXPECT_FALSE(dash::read_proc_stats(-5).known);
}

// ---- the server over loopback ----

struct reply {
    int status = 0;  // 0: the connection closed without a status line
    std::string head, body;
};

int port_of(const std::string& url) {
    auto colon = url.rfind(':');
    return std::atoi(url.c_str() + colon + 1);
}

int connect_to(int port) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(s, 0);
    timeval tv{5, 0};  // a test never waits long for a reply
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return s;
}

reply http_exchange(int port, const std::string& request) {
    int s = connect_to(port);
    std::size_t sent = 0;
    while (sent < request.size()) {
        long n = ::send(s, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;  // the server may close on a bad request before reading it all
        sent += static_cast<std::size_t>(n);
    }
    std::string in;
    char buf[65536];
    for (long n; (n = ::recv(s, buf, sizeof buf, 0)) > 0;) in.append(buf, static_cast<std::size_t>(n));
    ::close(s);
    reply r;
    auto split = in.find("\r\n\r\n");
    r.head = in.substr(0, split);
    if (split != std::string::npos) r.body = in.substr(split + 4);
    if (in.rfind("HTTP/1.1 ", 0) == 0) r.status = std::atoi(in.c_str() + 9);
    return r;
}

reply get(int port, const std::string& path) {
    return http_exchange(port, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

json state(int port) {
    reply r = get(port, "/api/state");
    EXPECT_EQ(r.status, 200) << r.head;
    return r.status == 200 ? json::parse(r.body) : json::object();
}

// Polls /api/state until `ok` holds (the counters are published as the engines pump).
json state_when(int port, const std::function<bool(const json&)>& ok) {
    json s;
    for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
        s = state(port);
        if (!s.empty() && ok(s)) return s;  // empty: the request failed, already reported
        std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "timed out; last state: " << s.dump(2);
    return s;
}

pf::options dashboard_on(unsigned jobs) {
    pf::options o;
    o.jobs = jobs;
    o.name = "dash-test";
    o.dashboard = "127.0.0.1:0";  // any free port: url() says which
    return o;
}

int square(int x) { return x * x; }
int die_now() {
    ::raise(SIGKILL);
    return 0;
}
int boom(int) { throw std::invalid_argument("bad input 7"); }
int add1(int x) { return x + 1; }

TEST(Dashboard, OffByDefault) {
    pf::testing::run_bounded("off", 30, [] {
        ::unsetenv("PARAFORK_DASHBOARD");
        pf::pool p(pf::options{.jobs = 1});
        EXPECT_EQ(p.submit(&square, 3).get(), 9);
        EXPECT_EQ(pf::dashboard::url(), "");
        EXPECT_EQ(pf::testing::child_pids().size(), 1u);  // the worker alone, no server
    });
}

TEST(Dashboard, PoolShowsWorkersTasksDoneAndAKilledWorkersError) {
    pf::testing::run_bounded("pool", 60, [] {
        pf::pool p(dashboard_on(2));
        const int port = port_of(pf::dashboard::url());
        ASSERT_GT(port, 0);
        std::vector<pf::future<int>> fs;
        for (int i = 0; i < 50; ++i) fs.push_back(p.submit(&square, i));
        for (auto& f : fs) f.get();
        int victim = 0;
        try {
            p.submit(&die_now).get();
            ADD_FAILURE() << "no worker_died";
        } catch (const pf::worker_died& e) {
            victim = e.pid();
        }
        EXPECT_THROW(p.submit(&boom, 7).get(), pf::remote_error);
        json s = state_when(port, [](const json& s) {
            return s["pools"].size() == 1 && s["pools"][0]["done"] == 52 && s["errors"].size() == 2;
        });
        const auto& jp = s["pools"][0];
        EXPECT_EQ(jp["name"], "dash-test");
        EXPECT_EQ(jp["kind"], "pool");
        EXPECT_EQ(jp["workers"], 2);
        EXPECT_EQ(jp["failed"], 2);
        EXPECT_EQ(jp["deaths"], 1);
        EXPECT_EQ(s["totals"]["workers"], 2);
        // Newest first: the exception, then the death with the pid and signal.
        EXPECT_EQ(s["errors"][0]["kind"], "exception");
        EXPECT_EQ(s["errors"][0]["type"], "std::invalid_argument");
        EXPECT_EQ(s["errors"][0]["message"], "bad input 7");
        EXPECT_EQ(s["errors"][1]["kind"], "died");
        EXPECT_EQ(s["errors"][1]["pid"], victim);
        EXPECT_EQ(s["errors"][1]["signal"], SIGKILL);
        EXPECT_NE(s["errors"][1]["message"].get<std::string>().find("SIGKILL"), std::string::npos);
        // The worker list holds the live workers (the replacement, not the victim), with CPU
        // and RSS from /proc.
        for (const auto& w : jp["worker_list"]) {
            EXPECT_NE(w["pid"], victim);
            EXPECT_EQ(w["state"], "idle");
            EXPECT_TRUE(w["rss_bytes"].is_number()) << w.dump();
        }
        reply m = get(port, "/metrics");
        EXPECT_EQ(m.status, 200);
        EXPECT_NE(m.body.find("parafork_tasks_done_total{pool=\"1\",name=\"dash-test\",kind=\"pool\"} 52"),
                  std::string::npos) << m.body;
        reply page = get(port, "/");
        EXPECT_EQ(page.status, 200);
        EXPECT_NE(page.body.find("uPlot"), std::string::npos);  // bundled, not fetched
        EXPECT_NE(page.head.find("text/html"), std::string::npos);
    });
}

TEST(Dashboard, BusyWorkersShowTheirTaskAndMapCallsTheirTotal) {
    pf::testing::run_bounded("busy", 60, [] {
        pf::options o = dashboard_on(2);
        o.name = "slow-map";
        std::vector<int> in(6);
        for (int i = 0; i < 6; ++i) in[static_cast<std::size_t>(i)] = i;
        // Item 0 asks the dashboard (from inside a worker) what it shows while it runs.
        static int port = 0;
        pf::pool starter(dashboard_on(1));  // starts the server; its url gives the port
        port = port_of(pf::dashboard::url());
        auto out = pf::map([](int x) {
            if (x == 0) {
                json s = state_when(port, [](const json& s) {
                    for (const auto& p : s["pools"])
                        if (p["name"] == "slow-map")
                            for (const auto& w : p["worker_list"])
                                if (w["state"] == "busy" && w["task"] == 0) return true;
                    return false;
                });
                for (const auto& p : s["pools"])
                    if (p["name"] == "slow-map") return p["total"] == 6 ? 1 : -1;
                return -2;
            }
            return 0;
        }, in, o);
        EXPECT_EQ(out[0], 1);
    });
}

TEST(Dashboard, UrlIsPrintedOnceOnStderr) {
    pf::testing::run_bounded("url", 30, [] {
        ::testing::internal::CaptureStderr();
        {
            pf::pool a(dashboard_on(1));
            pf::pool b(dashboard_on(1));
            EXPECT_EQ(a.submit(&square, 2).get() + b.submit(&square, 3).get(), 13);
        }
        std::string err = ::testing::internal::GetCapturedStderr();
        const std::string line = "parafork: dashboard at " + pf::dashboard::url() + "\n";
        EXPECT_EQ(err.find(line), err.rfind(line)) << err;
        EXPECT_NE(err.find(line), std::string::npos) << err;
    });
}

TEST(Dashboard, TheEnvironmentTurnsItOn) {
    pf::testing::run_bounded("env", 30, [] {
        ::setenv("PARAFORK_DASHBOARD", "127.0.0.1:0", 1);
        auto out = pf::map(&square, std::vector<int>{1, 2, 3}, pf::options{.jobs = 2});
        EXPECT_EQ(out, (std::vector<int>{1, 4, 9}));
        const int port = port_of(pf::dashboard::url());
        ASSERT_GT(port, 0);
        json s = state(port);
        ASSERT_EQ(s["pools"].size(), 1u);
        EXPECT_EQ(s["pools"][0]["state"], "finished");
        EXPECT_EQ(s["pools"][0]["kind"], "map");
        EXPECT_EQ(s["pools"][0]["done"], 3);
    });
}

// The server is forked while the program holds a channel: it must not keep an end of it, or a
// receiver would wait for a sender that never goes (the server lives as long as the program).
TEST(Dashboard, TheServerHoldsNoEndOfTheProgramsChannels) {
    pf::testing::run_bounded("channel ends", 30, [] {
        pf::channel ch(4096);
        EXPECT_EQ(ch.open_ends(), 1u);
        ::setenv("PARAFORK_DASHBOARD", "127.0.0.1:0", 1);
        auto out = pf::map(&square, std::vector<int>{1, 2, 3}, pf::options{.jobs = 2});
        EXPECT_EQ(out, (std::vector<int>{1, 4, 9}));
        ASSERT_GT(port_of(pf::dashboard::url()), 0);  // the server runs, forked after the channel
        EXPECT_EQ(ch.open_ends(), 1u);
        EXPECT_EQ(ch.open_receivers(), 1u);
        ch.send(7);
        ch.close();  // the last sender: the receiver sees the end once the message is taken
        EXPECT_EQ(ch.receive<int>(), 7);
        EXPECT_THROW(ch.receive_for<int>(std::chrono::seconds(10)), pf::channel_closed);
    });
}

TEST(Dashboard, ABadAddressIsReportedAndTheProgramRunsOn) {
    pf::testing::run_bounded("bad address", 30, [] {
        ::testing::internal::CaptureStderr();
        pf::options o = dashboard_on(1);
        o.dashboard = "localhost:http";
        pf::pool p(o);
        EXPECT_EQ(p.submit(&square, 5).get(), 25);
        // A port taken by someone else: the server says so and exits; no dashboard, no hang.
        std::string err = ::testing::internal::GetCapturedStderr();
        EXPECT_NE(err.find("'localhost:http' is not HOST:PORT"), std::string::npos) << err;
        EXPECT_EQ(pf::dashboard::url(), "");
    });
    pf::testing::run_bounded("port taken", 30, [] {
        int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        ASSERT_EQ(::listen(s, 1), 0);
        socklen_t len = sizeof a;
        ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
        ::testing::internal::CaptureStderr();
        pf::options o = dashboard_on(1);
        o.dashboard = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
        pf::pool p(o);
        EXPECT_EQ(p.submit(&square, 6).get(), 36);
        std::string err = ::testing::internal::GetCapturedStderr();
        EXPECT_NE(err.find("not started: cannot listen on 127.0.0.1:"), std::string::npos) << err;
        EXPECT_EQ(pf::dashboard::url(), "");
        EXPECT_EQ(pf::testing::zombie_children().size(), 0u);
        ::close(s);
    });
}

TEST(Dashboard, BadRequestsGetErrorsAndNeverStopTheProgram) {
    pf::testing::run_bounded("bad requests", 60, [] {
        pf::pool p(dashboard_on(2));
        const int port = port_of(pf::dashboard::url());
        EXPECT_EQ(get(port, "/nope").status, 404);
        EXPECT_EQ(get(port, "/api/state/../../etc/passwd").status, 404);
        // Read-only: nothing but GET.
        reply post = http_exchange(port, "POST /api/state HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                    "Connection: close\r\n\r\n{}");
        EXPECT_NE(post.status, 200);
        EXPECT_GE(post.status, 400);
        // A header bigger than the server takes: an error or a closed connection, not a crash.
        // The server answers these only when its read times out (2 s): both at once.
        auto huge = std::async(std::launch::async, [port] {
            return http_exchange(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(200'000, 'a') +
                                       "\r\nConnection: close\r\n\r\n");
        });
        auto garbage = std::async(std::launch::async, [port] {
            return http_exchange(port, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15));
        });
        EXPECT_NE(huge.get().status, 200);
        EXPECT_NE(garbage.get().status, 200);
        // Slow clients: more half-sent requests than the server has threads. The program's work
        // goes on meanwhile, and the server answers again once they time out.
        std::vector<int> slow;
        for (int k = 0; k < 6; ++k) {
            slow.push_back(connect_to(port));
            ::send(slow.back(), "GET / HTTP/1.1\r\nHo", 18, MSG_NOSIGNAL);
        }
        std::vector<pf::future<int>> fs;
        for (int i = 0; i < 100; ++i) fs.push_back(p.submit(&square, i));
        long sum = 0;
        for (auto& f : fs) sum += f.get();
        EXPECT_EQ(sum, 328350);
        for (int fd : slow) ::close(fd);
        json s = state_when(port, [](const json& s) { return s["totals"]["done"] == 100; });
        EXPECT_EQ(s["pools"][0]["workers"], 2);
        EXPECT_EQ(get(port, "/metrics").status, 200);
    });
}

TEST(Dashboard, AServerThatDiesDoesNotDisturbThePools) {
    pf::testing::run_bounded("server dies", 30, [] {
        pf::pool p(dashboard_on(2));
        ASSERT_NE(pf::dashboard::url(), "");
        int server = 0;  // the child titled so (comm holds 15 characters)
        for (int kid : pf::testing::child_pids())
            if (pf::testing::read_proc("/proc/" + std::to_string(kid) + "/comm") == "parafork:dashbo\n")
                server = kid;
        ASSERT_GT(server, 0);
        ::kill(server, SIGKILL);
        std::vector<pf::future<int>> fs;
        for (int i = 0; i < 100; ++i) fs.push_back(p.submit(&square, i));
        long sum = 0;
        for (auto& f : fs) sum += f.get();
        EXPECT_EQ(sum, 328350);
        // The next call with the dashboard on reaps the dead server and starts another. Dead means
        // its pidfd is readable, which is what that call checks: the server runs threads, and its
        // main thread shows as a zombie while the others are still exiting (slow under load), when
        // it can be neither seen by the pidfd nor reaped.
        while (!pf::sys::process_exited(server)) std::this_thread::sleep_for(5ms);
        ASSERT_TRUE(pf::testing::zombie_children().count(server));
        pf::pool q(dashboard_on(1));
        EXPECT_TRUE(pf::testing::zombie_children().empty());
        const int port = port_of(pf::dashboard::url());
        ASSERT_GT(port, 0);
        EXPECT_EQ(q.submit(&square, 9).get(), 81);
        // Both pools: the region outlived the server.
        state_when(port, [](const json& s) {
            return s["pools"].size() == 2 && s["pools"][0]["done"] == 100 && s["pools"][1]["done"] == 1;
        });
    });
}

TEST(Dashboard, StopLeavesNoProcessAndNoDescriptor) {
    pf::testing::run_bounded("no leaks", 30, [] {
        PARAFORK_LEAK_CHECK();
        {
            pf::pool p(dashboard_on(2));
            EXPECT_EQ(p.submit(&square, 4).get(), 16);
            EXPECT_EQ(state(port_of(pf::dashboard::url()))["totals"]["done"], 1);
            EXPECT_EQ(pf::testing::child_pids().size(), 3u);  // two workers and the server
        }
        pf::dashboard::stop();
        EXPECT_EQ(pf::dashboard::url(), "");
        EXPECT_TRUE(pf::testing::child_pids().empty());
        // It starts again when asked.
        pf::pool q(dashboard_on(1));
        EXPECT_NE(pf::dashboard::url(), "");
        EXPECT_EQ(q.submit(&square, 5).get(), 25);
        q.terminate();
        pf::dashboard::stop();
    });
}

// ---- the other engines ----

TEST(DashboardEngines, AThreadShowsItsPidItsEndAndItsError) {
    pf::testing::run_bounded("thread", 30, [] {
        ::setenv("PARAFORK_DASHBOARD", "127.0.0.1:0", 1);
        pf::thread ok([] { return 6 * 7; });
        ok.start();
        EXPECT_EQ(ok.result<int>(), 42);
        pf::thread bad([]() -> int { throw std::invalid_argument("thread input 3"); });
        bad.start();
        EXPECT_THROW(bad.join(), pf::remote_error);
        pf::thread dies([] { return die_now(); });
        dies.start();
        EXPECT_THROW(dies.join(), pf::worker_died);
        const int port = port_of(pf::dashboard::url());
        ASSERT_GT(port, 0);
        json s = state_when(port, [](const json& s) { return s["pools"].size() == 3 && s["errors"].size() == 2; });
        for (const auto& p : s["pools"]) {
            EXPECT_EQ(p["kind"], "thread");
            EXPECT_EQ(p["state"], "finished");
            EXPECT_EQ(p["worker_list"].size(), 1u);
        }
        EXPECT_EQ(s["pools"][0]["done"], 1);
        EXPECT_EQ(s["pools"][0]["worker_list"][0]["pid"], ok.pid());
        EXPECT_EQ(s["pools"][0]["worker_list"][0]["done"], 1);
        EXPECT_EQ(s["pools"][1]["failed"], 1);
        EXPECT_EQ(s["pools"][2]["deaths"], 1);
        EXPECT_EQ(s["pools"][2]["worker_list"][0]["state"], "dead");
        const json& died = s["errors"][0];  // newest first
        EXPECT_EQ(died["kind"], "died");
        EXPECT_EQ(died["pid"], dies.pid());
        EXPECT_EQ(died["signal"], SIGKILL);
        const json& threw = s["errors"][1];
        EXPECT_EQ(threw["kind"], "exception");
        EXPECT_EQ(threw["pid"], bad.pid());
        EXPECT_EQ(threw["message"], "thread input 3");
        EXPECT_NE(threw["type"].get<std::string>().find("invalid_argument"), std::string::npos);
    });
}

TEST(DashboardEngines, AProcPoolShowsItsKidsRepliesAndADeath) {
    pf::testing::run_bounded("proc_pool", 60, [] {
        pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                             pf::serve(in, out, pf::frames::lines, [](std::string_view s) {
                                 if (s == "die") ::raise(SIGKILL);
                                 return std::string(s) + "!";
                             });
                         }),
                         pf::frames::lines, dashboard_on(2));
        std::vector<std::string> reqs;
        for (int i = 0; i < 20; ++i) reqs.push_back(std::to_string(i));
        std::size_t got = 0;
        pp.eval(reqs, [&](std::string_view) { ++got; });
        EXPECT_EQ(got, 20u);
        const int port = port_of(pf::dashboard::url());
        ASSERT_GT(port, 0);
        int victim = 0;
        try {
            pp.eval(std::vector<std::string>{"a", "die"}, [](std::string_view) {});
            ADD_FAILURE() << "no worker_died";
        } catch (const pf::worker_died& e) {
            victim = e.pid();
        }
        json s = state_when(port, [](const json& s) { return s["pools"].size() == 2 && s["errors"].size() == 1; });
        const json& first = s["pools"][0];
        EXPECT_EQ(first["kind"], "proc_pool");
        EXPECT_EQ(first["name"], "dash-test");
        EXPECT_EQ(first["state"], "finished");
        EXPECT_EQ(first["done"], 20);
        EXPECT_EQ(first["deaths"], 0);
        ASSERT_EQ(first["worker_list"].size(), 2u);
        EXPECT_EQ(first["worker_list"][0]["done"].get<int>() + first["worker_list"][1]["done"].get<int>(), 20);
        const json& second = s["pools"][1];
        EXPECT_EQ(second["failed"], 1);
        EXPECT_EQ(second["deaths"], 1);
        const json& e = s["errors"][0];
        EXPECT_EQ(e["kind"], "died");
        EXPECT_EQ(e["pid"], victim);
        EXPECT_EQ(e["signal"], SIGKILL);
        EXPECT_EQ(e["task"], 1);
    });
}

struct dash_actor : pf::actor {
    int square(int x) { return x * x; }
    int fail(int x) { throw std::out_of_range("actor input " + std::to_string(x)); }
    int die(int) { return die_now(); }
};

TEST(DashboardEngines, AProcessShowsItsAsksItsErrorsAndItsDeath) {
    pf::testing::run_bounded("process", 60, [] {
        pf::options o;
        o.dashboard = "127.0.0.1:0";
        o.name = "actor-a";
        pf::process<dash_actor> a(dash_actor{}, o);
        a.start();
        for (int i = 0; i < 5; ++i) EXPECT_EQ(a.ask(&dash_actor::square, i).get(), i * i);
        EXPECT_THROW(a.ask(&dash_actor::fail, 4).get(), pf::remote_error);
        const int port = port_of(pf::dashboard::url());
        ASSERT_GT(port, 0);
        json s = state_when(port, [](const json& s) {
            return s["pools"].size() == 1 && s["pools"][0]["done"] == 5 && s["pools"][0]["failed"] == 1;
        });
        const json& p = s["pools"][0];
        EXPECT_EQ(p["kind"], "process");
        EXPECT_EQ(p["name"], "actor-a");
        EXPECT_EQ(p["state"], "running");
        ASSERT_EQ(p["worker_list"].size(), 1u);
        EXPECT_EQ(p["worker_list"][0]["pid"], a.pid());
        EXPECT_EQ(p["worker_list"][0]["done"], 5);
        EXPECT_EQ(p["worker_list"][0]["state"], "idle");
        EXPECT_EQ(s["errors"][0]["message"], "actor input 4");
        EXPECT_EQ(s["errors"][0]["pid"], a.pid());
        a.join();

        o.name = "actor-b";
        pf::process<dash_actor> b(dash_actor{}, o);
        b.start();
        EXPECT_THROW(b.ask(&dash_actor::die, 0).get(), pf::worker_died);
        s = state_when(port, [](const json& s) { return s["pools"].size() == 2 && s["errors"].size() == 2; });
        EXPECT_EQ(s["pools"][0]["state"], "finished");
        EXPECT_EQ(s["pools"][0]["deaths"], 0);  // joined: it ended, it did not die
        const json& q = s["pools"][1];
        EXPECT_EQ(q["state"], "finished");
        EXPECT_EQ(q["deaths"], 1);
        EXPECT_EQ(q["failed"], 1);
        EXPECT_EQ(q["worker_list"][0]["state"], "dead");
        EXPECT_EQ(s["errors"][0]["kind"], "died");
        EXPECT_EQ(s["errors"][0]["pid"], b.pid());
        EXPECT_EQ(s["errors"][0]["signal"], SIGKILL);
    });
}

#ifdef PARAFORK_CLI_PATH
TEST(DashboardEngines, TheCommandShowsItsJobsRunningDoneAndFailed) {
    pf::testing::run_bounded("command", 60, [] {
        char dir[] = "/tmp/parafork-dash-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        const std::string go = std::string(dir) + "/go";
        // Four jobs at once: two end well, one fails (exit 3), one runs until `go` exists.
        const std::string cmd = std::string("timeout 50 ") + PARAFORK_CLI_PATH +
                                " run -j 4 --dashboard 127.0.0.1:0 -- sh -c {} ::: true 'exit 3' 'echo hi' "
                                "'while [ ! -e " + go + " ]; do sleep 0.02; done' 2>&1";
        std::FILE* out = ::popen(cmd.c_str(), "r");
        ASSERT_NE(out, nullptr);
        char line[512];
        int port = 0;
        while (!port && std::fgets(line, sizeof line, out))
            if (std::string_view(line).starts_with("parafork: dashboard at ")) port = port_of(line);
        ASSERT_GT(port, 0);
        json s = state_when(port, [](const json& s) {
            return s["pools"].size() == 1 && s["pools"][0]["done"] == 2 && s["pools"][0]["failed"] == 1;
        });
        const json& p = s["pools"][0];
        EXPECT_EQ(p["kind"], "jobs");
        EXPECT_EQ(p["name"], "parafork run");
        EXPECT_EQ(p["total"], 4);
        EXPECT_EQ(p["in_flight"], 1);
        int busy = 0, pids = 0;
        for (const auto& w : p["worker_list"]) {
            pids += w["pid"].get<int>() > 0;
            if (w["state"] == "busy") {
                ++busy;
                EXPECT_EQ(w["task"], 4);  // the fourth job, still running
            }
        }
        EXPECT_EQ(busy, 1);
        EXPECT_EQ(pids, 4);
        ASSERT_EQ(s["errors"].size(), 1u);
        EXPECT_EQ(s["errors"][0]["exit_code"], 3);
        EXPECT_EQ(s["errors"][0]["task"], 2);
        EXPECT_GT(s["errors"][0]["pid"].get<int>(), 0);
        EXPECT_NE(s["errors"][0]["message"].get<std::string>().find("exit code 3"), std::string::npos);
        std::FILE* f = std::fopen(go.c_str(), "w");
        ASSERT_NE(f, nullptr);
        std::fclose(f);
        while (std::fgets(line, sizeof line, out)) {
        }
        EXPECT_EQ(WEXITSTATUS(::pclose(out)), 1);  // one job failed
        std::remove(go.c_str());
        ::rmdir(dir);
    });
}
#endif

// A sink that takes nothing until its gate opens: what comes before waits in its queue.
struct GatedSink : pf::stage<> {
    int fd;
    explicit GatedSink(int f) : fd(f) {}
    void setup() {
        char c;
        if (::read(fd, &c, 1) != 1) throw std::runtime_error("the sink's gate closed");
    }
    void process(int) {}
};

const json* pool_named(const json& s, const std::string& name) {
    for (const auto& p : s["pools"])
        if (p["name"] == name) return &p;
    return nullptr;
}

TEST(DashboardEngines, APipelineShowsItsGraphQueueDepthsAndStageCounts) {
    pf::testing::run_bounded("pipeline", 60, [] {
        ::setenv("PARAFORK_DASHBOARD", "127.0.0.1:0", 1);
        auto src = pf::sys::make_pipe();
        auto gate = pf::sys::make_pipe();
        // Private: no stage process may hold a write end, or its reader would never see EOF.
        pf::sys::private_fd src_w(std::move(src.write)), gate_w(std::move(gate.write));
        auto p = pf::ez(pf::testing::gated_source(src.read.get()), pf::workers(2, pf::named("inc", &add1)),
                        pf::named("sink", GatedSink(gate.read.get())))
                     .named("dash-pipe");
        p.start();
        src.read.reset();
        gate.read.reset();
        const int port = port_of(pf::dashboard::url());
        ASSERT_GT(port, 0);
        pf::sys::write_all(src_w.get(), "abcde", 5);
        // Five items through the source and the two workers, all waiting before the sink.
        json s = state_when(port, [](const json& s) {
            const json* p = pool_named(s, "dash-pipe");
            return p && !(*p)["graph"].is_null() && (*p)["graph"]["queues"].size() == 2 &&
                   (*p)["graph"]["queues"][1]["depth"] == 5 && (*p)["graph"]["queues"][0]["depth"] == 0;
        });
        const json& pj = *pool_named(s, "dash-pipe");
        EXPECT_EQ(pj["kind"], "pipeline");
        EXPECT_EQ(pj["state"], "running");
        EXPECT_EQ(pj["workers"], 4);
        EXPECT_EQ(pj["queued"], 5);
        EXPECT_EQ(pj["done"], 0);
        const json& st = pj["graph"]["stages"];
        ASSERT_EQ(st.size(), 4u);
        EXPECT_EQ(st[1]["name"], "inc#0");  // competing workers are numbered
        EXPECT_EQ(st[2]["name"], "inc#1");
        EXPECT_EQ(st[3]["name"], "sink");
        const auto pids = p.pids();
        ASSERT_EQ(pids.size(), 4u);
        for (std::size_t i = 0; i < 4; ++i) {
            EXPECT_EQ(st[i]["pid"], pids[i]);
            EXPECT_EQ(st[i]["state"], "running");
        }
        EXPECT_EQ(st[0]["out"], 5);
        EXPECT_EQ(st[1]["in"].get<int>() + st[2]["in"].get<int>(), 5);
        EXPECT_EQ(st[1]["out"].get<int>() + st[2]["out"].get<int>(), 5);
        EXPECT_EQ(st[3]["in"], 0);
        const json& q = pj["graph"]["queues"];
        EXPECT_EQ(q[0]["from"], json::array({0}));
        EXPECT_EQ(q[0]["to"], json::array({1, 2}));
        EXPECT_EQ(q[1]["from"], json::array({1, 2}));
        EXPECT_EQ(q[1]["to"], json::array({3}));
        EXPECT_EQ(q[1]["sent"], 5);
        EXPECT_EQ(q[1]["type"], "int");
        reply m = get(port, "/metrics");
        EXPECT_NE(m.body.find("kind=\"pipeline\",queue=\"1\",from=\"inc#0,inc#1\",to=\"sink\"} 5\n"),
                  std::string::npos) << m.body;
        EXPECT_NE(m.body.find("parafork_pipeline_stage_items_out_total{pool=\"" + std::to_string(pj["id"].get<int>()) +
                              "\",name=\"dash-pipe\",kind=\"pipeline\",stage=\"0\",stage_name=\""),
                  std::string::npos) << m.body;

        // The sink opens, the source ends: everything arrives, and the stages exit cleanly.
        pf::sys::write_all(gate_w.get(), "x", 1);
        src_w.reset();
        p.join();
        s = state_when(port, [](const json& s) {
            const json* p = pool_named(s, "dash-pipe");
            return p && (*p)["state"] == "finished";
        });
        const json& fj = *pool_named(s, "dash-pipe");
        EXPECT_EQ(fj["done"], 5);
        EXPECT_EQ(fj["graph"]["stages"][3]["in"], 5);
        EXPECT_EQ(fj["graph"]["queues"][1]["depth"], 0);
        for (const auto& w : fj["worker_list"]) EXPECT_EQ(w["state"], "exited");
        EXPECT_EQ(fj["failed"], 0);
    });
}

// Stages map the region only while a pipeline forks them: pipelines started by two threads at
// once each keep it open for the other's stages (a stage without it would crash on its counters).
TEST(DashboardEngines, PipelinesStartedByTwoThreadsAtOnceAllRun) {
    pf::testing::run_bounded("pipelines in threads", 90, [] {
        ::setenv("PARAFORK_DASHBOARD", "127.0.0.1:0", 1);
        ::testing::internal::CaptureStderr();  // forks from a threaded process are warned about
        pf::pool warm(pf::options{.jobs = 1});  // the server, started before the threads
        std::atomic<int> ok{0};
        auto runs = [&ok] {
            for (int i = 0; i < 15; ++i) {
                auto v = pf::ez(pf::iter(0, 3000), pf::workers(3, &add1), pf::named("inc", &add1)).list();
                if (v.size() == 3000) ++ok;
            }
        };
        std::thread a(runs), b(runs);
        a.join();
        b.join();
        ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(ok.load(), 30);
        const int port = port_of(pf::dashboard::url());
        json s = state(port);
        int graphs = 0;
        for (const auto& p : s["pools"])
            if (p["kind"] == "pipeline" && !p["graph"].is_null()) {
                ++graphs;
                EXPECT_EQ(p["done"], 3000);
            }
        EXPECT_GT(graphs, 0);
    });
}

TEST(DashboardEngines, APipelineStageThatDiesIsAnErrorOnThePage) {
    pf::testing::run_bounded("pipeline death", 60, [] {
        ::setenv("PARAFORK_DASHBOARD", "127.0.0.1:0", 1);
        auto p = pf::ez(pf::iter(0, 10), pf::named("killer", [](int x) {
                            if (x == 3) ::raise(SIGKILL);
                            return x;
                        }),
                        pf::named("sink", [](int) {}))
                     .named("dash-pipe-dies");
        EXPECT_THROW(p.join(), pf::worker_died);
        const int port = port_of(pf::dashboard::url());
        ASSERT_GT(port, 0);
        json s = state_when(port, [](const json& s) { return s["errors"].size() == 1; });
        const json* pj = pool_named(s, "dash-pipe-dies");
        ASSERT_NE(pj, nullptr);
        EXPECT_EQ((*pj)["state"], "finished");
        EXPECT_EQ((*pj)["failed"], 1);
        EXPECT_EQ((*pj)["deaths"], 1);
        EXPECT_EQ(s["errors"][0]["kind"], "died");
        EXPECT_EQ(s["errors"][0]["signal"], 9);
        EXPECT_EQ(s["errors"][0]["pool"], (*pj)["id"]);
    });
}

} // namespace

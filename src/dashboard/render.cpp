// The dashboard's documents: /api/state (JSON) and /metrics (Prometheus text), from a snapshot
// of the region and what the server process measured itself.
#include <parafork/dashboard/region.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <set>
#include <tuple>

namespace parafork::detail::dash {

namespace {

const char* state_name(worker_state s) {
    switch (s) {
        case worker_state::starting: return "starting";
        case worker_state::idle: return "idle";
        case worker_state::busy: return "busy";
        case worker_state::dead: return "dead";
        case worker_state::running: return "running";
        case worker_state::exited: return "exited";
        case worker_state::none: break;
    }
    return "none";
}

const char* kind_name(error_kind k) {
    switch (k) {
        case error_kind::remote: return "exception";
        case error_kind::died: return "died";
        case error_kind::timeout: return "timeout";
    }
    return "unknown";
}

double seconds_between(std::uint64_t from_ns, std::uint64_t to_ns) {
    return to_ns > from_ns ? static_cast<double>(to_ns - from_ns) / 1e9 : 0.0;
}

template <class K, class V>
const V* find(const std::vector<std::pair<K, V>>& v, const K& k) {
    for (auto& [key, val] : v)
        if (key == k) return &val;
    return nullptr;
}

// The pool router gives every call a span of 2^40 item indices; within a call, the item.
constexpr std::uint64_t call_span_bits = 40;
std::uint64_t item_of(std::uint64_t index) { return index & ((std::uint64_t{1} << call_span_bits) - 1); }
std::uint64_t call_of(std::uint64_t index) { return index >> call_span_bits; }

// Bits of a stage mask, as stage indices.
nlohmann::json stage_list(std::uint64_t mask) {
    auto v = nlohmann::json::array();
    for (std::size_t i = 0; i < 64; ++i)
        if (mask >> i & 1) v.push_back(i);
    return v;
}

// A pipeline's stages (with their process and items/s) and the queues between them.
nlohmann::json graph_json(const pool_view& p, const extras& x, bool live, double elapsed) {
    using nlohmann::json;
    const std::vector<double>* rates = find(x.stage_rates, p.serial);
    json stages = json::array();
    for (std::size_t i = 0; i < p.stages.size(); ++i) {
        const auto& st = p.stages[i];
        double r = 0;
        if (!live) r = elapsed > 0 ? static_cast<double>(stage_items(p, i)) / elapsed : 0.0;
        else if (rates && i < rates->size()) r = (*rates)[i];
        json js{{"index", i}, {"name", st.name}, {"in", st.in}, {"out", st.out}, {"rate", r}};
        js["pid"] = nullptr;
        js["state"] = nullptr;
        for (const auto& w : p.workers)
            if (w.slot == i) {
                js["pid"] = w.pid;
                js["state"] = state_name(w.state);
            }
        stages.push_back(std::move(js));
    }
    json queues = json::array();
    for (std::size_t q = 0; q < p.queues.size(); ++q) {
        const auto& qu = p.queues[q];
        queues.push_back({{"index", q}, {"from", stage_list(qu.writers)}, {"to", stage_list(qu.readers)},
                          {"to_parent", qu.parent_reads}, {"type", qu.type},
                          {"depth", qu.sent > qu.received ? qu.sent - qu.received : 0},
                          {"sent", qu.sent}, {"received", qu.received}});
    }
    return json{{"stages", std::move(stages)}, {"queues", std::move(queues)}};
}

} // namespace

std::string state_json(const snapshot& s, const extras& x) {
    using nlohmann::json;
    json pools = json::array();
    std::uint64_t done = 0, failed = 0, retried = 0, in_flight = 0, live_workers = 0;
    for (const auto& p : s.pools) {
        json workers = json::array();
        std::uint64_t live_here = 0;
        for (const auto& w : p.workers) {
            json jw{{"slot", w.slot}, {"pid", w.pid}, {"state", state_name(w.state)},
                    {"done", w.done}, {"for_seconds", seconds_between(w.since_ns, s.at_ns)}};
            const bool pool = p.kind == "pool";
            if (w.state == worker_state::busy) {
                jw["task"] = item_of(w.task);
                jw["call"] = pool ? json(call_of(w.task)) : json(nullptr);
            } else {
                jw["task"] = nullptr;
                jw["call"] = nullptr;
            }
            if (auto* st = find(x.procs, w.pid); st && st->known && w.state != worker_state::dead) {
                jw["cpu_seconds"] = st->cpu_seconds;
                jw["rss_bytes"] = st->rss_bytes;
            } else {
                jw["cpu_seconds"] = nullptr;
                jw["rss_bytes"] = nullptr;
            }
            if (w.state != worker_state::dead && w.state != worker_state::exited) ++live_here;
            workers.push_back(std::move(jw));
        }
        const bool live = p.state == pool_state::live;
        if (live) live_workers += live_here;
        const double elapsed = seconds_between(p.started_ns, live ? s.at_ns : p.ended_ns);
        const double* recent = find(x.rates, p.serial);
        const double rate = live ? (recent ? *recent : 0.0)
                                 : (elapsed > 0 ? static_cast<double>(p.done) / elapsed : 0.0);
        json jp{{"id", p.serial}, {"name", p.name}, {"kind", p.kind},
                {"state", live ? "running" : "finished"}, {"jobs", p.jobs},
                {"workers", live ? live_here : 0}, {"done", p.done}, {"failed", p.failed},
                {"retried", p.retried}, {"queued", p.queued}, {"in_flight", p.in_flight},
                {"deaths", p.deaths}, {"elapsed_seconds", elapsed}, {"rate", rate},
                {"worker_list", std::move(workers)}};
        jp["total"] = p.total ? json(p.total) : json(nullptr);
        jp["graph"] = p.has_graph ? graph_json(p, x, live, elapsed) : json(nullptr);
        if (live && p.total && rate > 0 && p.done < p.total)
            jp["eta_seconds"] = static_cast<double>(p.total - p.done) / rate;
        else
            jp["eta_seconds"] = nullptr;
        done += p.done;
        failed += p.failed;
        retried += p.retried;
        if (live) in_flight += p.in_flight;
        pools.push_back(std::move(jp));
    }
    std::set<std::uint64_t> pool_kinds;  // the pools among the calls: their items carry a call
    for (const auto& p : s.pools)
        if (p.kind == "pool") pool_kinds.insert(p.serial);
    json errors = json::array();
    for (const auto& e : s.errors) {
        json je{{"kind", kind_name(e.kind)}, {"type", e.type}, {"message", e.message},
                {"pid", e.pid}, {"task", item_of(e.task)}, {"pool", e.pool_serial},
                {"call", pool_kinds.count(e.pool_serial) ? json(call_of(e.task)) : json(nullptr)},
                {"seconds_ago", seconds_between(e.at_ns, s.at_ns)}};
        je["signal"] = e.signal ? json(e.signal) : json(nullptr);
        je["exit_code"] = e.kind == error_kind::died && !e.signal ? json(e.code) : json(nullptr);
        errors.push_back(std::move(je));
    }
    json history = json::array();
    for (auto& [t, r] : x.history) history.push_back(json::array({t, r}));
    json doc{{"version", 1},
             {"totals", {{"done", done}, {"failed", failed}, {"retried", retried},
                         {"in_flight", in_flight}, {"workers", live_workers},
                         {"errors", s.errors_total}}},
             {"pools", std::move(pools)},
             {"errors", std::move(errors)},
             {"history", std::move(history)}};
    // Names and messages come from user code: invalid UTF-8 is replaced, never a throw.
    return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// A label value in the exposition format: backslash, quote and newline escaped.
std::string label(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\', out += c;
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

void family(std::string& out, const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

void sample(std::string& out, const char* name, const std::string& labels, double v) {
    char num[64];
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
        std::snprintf(num, sizeof num, "%.0f", v);
    else
        std::snprintf(num, sizeof num, "%.6g", v);
    out += name;
    out += '{';
    out += labels;
    out += "} ";
    out += num;
    out += '\n';
}

} // namespace

std::string metrics_text(const snapshot& s, const extras& x) {
    std::string out;
    auto pool_labels = [](const pool_view& p) {
        return "pool=\"" + std::to_string(p.serial) + "\",name=\"" + label(p.name) + "\",kind=\"" +
               label(p.kind) + "\"";
    };
    struct counter {
        const char* name;
        const char* type;
        const char* help;
        std::uint64_t pool_view::*field;
    };
    const counter counters[] = {
        {"parafork_tasks_done_total", "counter", "Items answered (values and failures).", &pool_view::done},
        {"parafork_tasks_failed_total", "counter", "Items that failed.", &pool_view::failed},
        {"parafork_tasks_retried_total", "counter", "Items run again after their worker died.", &pool_view::retried},
        {"parafork_worker_deaths_total", "counter", "Workers that died or were killed.", &pool_view::deaths},
        {"parafork_jobs_queued", "gauge", "Jobs waiting for a worker.", &pool_view::queued},
        {"parafork_jobs_in_flight", "gauge", "Jobs sent to workers and not yet answered.", &pool_view::in_flight},
        {"parafork_pool_jobs", "gauge", "Worker processes the pool runs.", &pool_view::jobs},
    };
    for (const auto& c : counters) {
        family(out, c.name, c.type, c.help);
        for (const auto& p : s.pools)
            if (p.state == pool_state::live)
                sample(out, c.name, pool_labels(p), static_cast<double>(p.*c.field));
    }
    family(out, "parafork_tasks_per_second", "gauge", "Items answered per second, lately.");
    for (const auto& p : s.pools)
        if (p.state == pool_state::live) {
            const double* r = find(x.rates, p.serial);
            sample(out, "parafork_tasks_per_second", pool_labels(p), r ? *r : 0.0);
        }
    // Pipelines: each queue's depth, each stage's counts and rate.
    auto stage_names = [](const pool_view& p, std::uint64_t mask) {
        std::string n;
        for (std::size_t i = 0; i < p.stages.size(); ++i)
            if (mask >> i & 1) n += (n.empty() ? "" : ",") + p.stages[i].name;
        return n;
    };
    family(out, "parafork_pipeline_queue_depth", "gauge", "Items put into a pipeline queue and not yet taken.");
    for (const auto& p : s.pools) {
        if (p.state != pool_state::live || !p.has_graph) continue;
        for (std::size_t q = 0; q < p.queues.size(); ++q) {
            const auto& qu = p.queues[q];
            std::string to = stage_names(p, qu.readers);
            if (qu.parent_reads) to += to.empty() ? "parent" : ",parent";
            sample(out, "parafork_pipeline_queue_depth",
                   pool_labels(p) + ",queue=\"" + std::to_string(q) + "\",from=\"" +
                       label(stage_names(p, qu.writers)) + "\",to=\"" + label(to) + "\"",
                   static_cast<double>(qu.sent > qu.received ? qu.sent - qu.received : 0));
        }
    }
    enum class per_stage { in, out, rate };
    const std::tuple<per_stage, const char*, const char*, const char*> stage_families[] = {
        {per_stage::in, "parafork_pipeline_stage_items_in_total", "counter", "Items a pipeline stage took from its queues."},
        {per_stage::out, "parafork_pipeline_stage_items_out_total", "counter", "Items a pipeline stage put into its queues."},
        {per_stage::rate, "parafork_pipeline_stage_items_per_second", "gauge", "Items a stage took (a source: put) per second, lately."},
    };
    for (const auto& [what, name, type, help] : stage_families) {
        family(out, name, type, help);
        for (const auto& p : s.pools) {
            if (p.state != pool_state::live || !p.has_graph) continue;
            const std::vector<double>* rates = find(x.stage_rates, p.serial);
            for (std::size_t i = 0; i < p.stages.size(); ++i) {
                std::string l = pool_labels(p) + ",stage=\"" + std::to_string(i) + "\",stage_name=\"" +
                                label(p.stages[i].name) + "\"";
                double v = what == per_stage::in    ? static_cast<double>(p.stages[i].in)
                           : what == per_stage::out ? static_cast<double>(p.stages[i].out)
                           : rates && i < rates->size() ? (*rates)[i] : 0.0;
                sample(out, name, l, v);
            }
        }
    }
    // One family at a time: the exposition format wants each family's samples together.
    enum class per_worker { busy, done, cpu, rss };
    const std::tuple<per_worker, const char*, const char*, const char*> worker_families[] = {
        {per_worker::busy, "parafork_worker_busy", "gauge", "1 while the worker runs an item."},
        {per_worker::done, "parafork_worker_tasks_done_total", "counter", "Items this worker process answered."},
        {per_worker::cpu, "parafork_worker_cpu_seconds_total", "counter", "CPU time of the worker process."},
        {per_worker::rss, "parafork_worker_rss_bytes", "gauge", "Resident memory of the worker process."},
    };
    for (const auto& [what, name, type, help] : worker_families) {
        family(out, name, type, help);
        for (const auto& p : s.pools) {
            if (p.state != pool_state::live) continue;
            for (const auto& w : p.workers) {
                if (w.state == worker_state::dead || w.state == worker_state::exited) continue;
                std::string l = pool_labels(p) + ",slot=\"" + std::to_string(w.slot) + "\",pid=\"" +
                                std::to_string(w.pid) + "\"";
                const proc_stats* st = find(x.procs, w.pid);
                switch (what) {
                    case per_worker::busy: sample(out, name, l, w.state == worker_state::busy ? 1 : 0); break;
                    case per_worker::done: sample(out, name, l, static_cast<double>(w.done)); break;
                    case per_worker::cpu:
                        if (st && st->known) sample(out, name, l, st->cpu_seconds);
                        break;
                    case per_worker::rss:
                        if (st && st->known) sample(out, name, l, static_cast<double>(st->rss_bytes));
                        break;
                }
            }
        }
    }
    family(out, "parafork_errors_total", "counter", "Failures noted since the program started.");
    out += "parafork_errors_total " + std::to_string(s.errors_total) + "\n";
    return out;
}

} // namespace parafork::detail::dash

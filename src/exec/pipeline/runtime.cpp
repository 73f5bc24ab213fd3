// The parent side of a pipeline: queues, forking, and watching every stage so that the first
// failure stops them all.
#include "plan.hpp"
#include "../../dashboard/hub.hpp"

#include <parafork/error.hpp>
#include <parafork/exec/core/supervisor.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/wire/codec.hpp>

#include <cxxabi.h>
#include <poll.h>
#include <chrono>
#include <cstdio>
#include <ostream>
#include <set>
#include <thread>

namespace parafork::detail {
namespace {

struct kid_state {
    supervisor::id id = 0;
    pid_t pid = -1;
    sys::private_fd err;  // the stage's error report; its end of file is not its end
    std::string name;
    std::size_t index = 0;
    std::string report;
    bool done = false;
};

// The exception being handled, its type named as the graph's messages name types.
std::pair<std::string, std::string> describe_stage_exception() {
    auto info = describe_current_exception();
    if (auto* t = abi::__cxa_current_exception_type()) info.type = type_name(std::type_index(*t));
    return {std::move(info.type), std::move(info.what)};
}

} // namespace

struct runtime::impl : graph_plan {
    std::vector<std::optional<channel>> chans;  // one per queue in use
    std::vector<std::size_t> readers_left, ends_owed;
    // One shared mapping, made before the first fork, for the counters and every queue: one
    // mmap and one munmap per run, and queues that no fork hook has to hand out.
    std::shared_ptr<sys::mapping> region;
    supervisor sup;  // forks, watches and stops the stages and the watcher
    std::vector<kid_state> kids;
    std::vector<std::unique_ptr<stage_context>> begun;  // sources the parent began, per stage
    std::optional<supervisor::id> watcher;
    // The queues' counters: at the start of `region`, or in the dashboard's pipe slot while
    // the dashboard shows this graph (the server reads them there).
    edge_stats* counters = nullptr;
    dash::pool_slot* dash_pool = nullptr;
    dash::pipe_slot* dash_pipe = nullptr;
    bool dash_closed = false;

    edge_reader out_reader;
    bool out_ended = true;
    record_cursor out_cur;
    std::unique_ptr<reorder_buffer> out_reorder;
    std::string out_ordered_msg;

    std::exception_ptr failure;
    bool started = false, finished = false;
    // Ctrl-C is ours from the first wait on the graph until it is over.
    std::optional<sys::sigint_guard> sigint;

    // ---- running -----------------------------------------------------------------------

    edge_stats* stats(int e) const { return counters + e; }
    // After the queues' counters: one flag per stage process.
    outputs_closed_flag* outputs_closed(std::size_t i) const {
        return reinterpret_cast<outputs_closed_flag*>(counters + edges.size() + 1) + i;
    }

    ~impl() {
        if (dash_pool) dash_close();
        if (dash_pipe) dash::release_pipe(*dash_pipe);  // nothing writes its counters any more
    }

    // On the dashboard (PARAFORK_DASHBOARD) as a call of kind "pipeline": a worker per stage
    // process and, when it fits, the graph, whose queue counters then live in the region.
    void dash_attach(std::size_t counter_bytes) {
        options o;
        o.name = opts.name;
        dash_pool = dash::attach(o, "pipeline", procs.size(), 0);
        if (!dash_pool || procs.size() > dash::max_stages) return;
        std::vector<std::string_view> names;
        for (auto& p : procs) names.push_back(p.leaf->name);
        std::vector<std::string> types;  // the queues' type names, alive (never moved) until attached
        types.reserve(edges.size());
        std::vector<dash::graph_queue> queues;
        for (std::size_t e = 0; e < edges.size(); ++e) {
            if (!used(e)) continue;
            auto& q = queues.emplace_back();
            for (auto i : edges[e].writers) q.writers |= std::uint64_t{1} << i;
            for (auto i : edges[e].readers) q.readers |= std::uint64_t{1} << i;
            q.parent_reads = edges[e].parent_reads;
            q.counter = static_cast<std::uint32_t>(e);
            q.type = types.emplace_back(type_name(edges[e].type));
        }
        dash_pipe = dash::attach_graph(*dash_pool, names, queues, counter_bytes);
        if (!dash_pipe) return;
        counters = reinterpret_cast<edge_stats*>(dash_pipe->counters);
    }
    void dash_close() noexcept {
        if (!dash_pool || dash_closed) return;
        dash_closed = true;
        dash::close_pool(*dash_pool);
    }
    void dash_counters(std::size_t i, stage_context& ctx) {
        if (!dash_pipe || i >= dash::max_stages) return;
        ctx.items_in = &dash_pipe->stage[i].in;
        ctx.items_out = &dash_pipe->stage[i].out;
    }

    // The reader behind an ordered group: it bounds the stage numbering the group's inputs.
    std::unique_ptr<reorder_buffer> make_reorder(int e) const {
        int src = edges[static_cast<std::size_t>(e)].order_source;
        return std::make_unique<reorder_buffer>(src >= 0 ? stats(src) : nullptr);
    }

    // Stage i's ends of its queues.
    void make_ports(std::size_t i, stage_context& ctx) {
        auto& p = procs[i];
        ctx.name = p.leaf->name;
        ctx.outputs_closed = outputs_closed(i);
        dash_counters(i, ctx);
        for (int e : p.ins) {
            in_port in;
            in.r = edge_reader(*chans[static_cast<std::size_t>(e)]);
            in.stats = stats(e);
            if (edges[static_cast<std::size_t>(e)].reorder) in.reorder = make_reorder(e);
            ctx.ins.push_back(std::move(in));
        }
        for (int e : p.outs) {
            out_port o;
            o.w = edge_writer(*chans[static_cast<std::size_t>(e)], stats(e));
            o.stats = stats(e);
            auto& ed = edges[static_cast<std::size_t>(e)];
            o.mode = ed.sequenced ? seq_mode::assign : ed.reorder ? seq_mode::carry : seq_mode::none;
            ctx.has_carry = ctx.has_carry || o.mode == seq_mode::carry;
            ctx.outs.push_back(std::move(o));
        }
        for (std::size_t x = 0; x < p.xcuts.size(); ++x) {
            xcut_port xp;
            xp.name = p.xcuts[x].name;
            xp.type = p.xcuts[x].type;
            int e = p.xcut_edges[x];
            xp.port.w = edge_writer(*chans[static_cast<std::size_t>(e)], stats(e));
            xp.port.stats = stats(e);
            ctx.xcuts.push_back(std::move(xp));
        }
    }

    // A library source begins in the parent, before any fork, into its empty queues: what
    // fits in one batch costs no process. True if it put everything there (it is done: no
    // process is forked for it); otherwise its stage process goes on from where it stopped,
    // with what the parent batched but could not send.
    bool fill_in_parent(std::size_t i) {
        auto& p = procs[i];
        if (!p.ins.empty() || !p.xcut_edges.empty() || !p.leaf->fills_in_parent()) return false;
        auto ctx = std::make_unique<stage_context>();
        make_ports(i, *ctx);
        ctx->in_parent = true;
        bool last = p.leaf->fill_in_parent(*ctx);
        ctx->in_parent = false;
        if (!ctx->try_flush() || !last) {
            begun[i] = std::move(ctx);
            return false;
        }
        // Counted out of its queues as a stage that exited cleanly is; the end markers go
        // behind its data now, or from the parent's wait once there is room.
        outputs_closed(i)->store(1, std::memory_order_release);
        for (int e : p.outs) writer_done(e);
        send_owed_ends();
        return true;
    }

    [[noreturn]] void child_main(std::size_t i, sys::unique_fd err) {
        int code = 0;
        try {
            auto& p = procs[i];
            stage_context fresh;
            stage_context& ctx = begun[i] ? *begun[i] : fresh;
            if (!begun[i]) make_ports(i, ctx);
            try {
                p.leaf->run(ctx);
            } catch (const downstream_gone&) {
                // Nobody reads what we put any more: end quietly, as a shell filter does.
            }
            ctx.close_inputs();
            ctx.finish();
        } catch (...) {
            auto [type, what] = describe_stage_exception();
            try {
                auto rec = wire::encode(std::make_pair(type, what));
                sys::write_all(err.get(), rec.data(), rec.size());
            } catch (...) {
            }
            code = 1;
        }
        sys::exit_child(code);
    }

    void fork_stage(std::size_t i) {
        auto& p = procs[i];
        auto errp = sys::make_pipe();
        sys::child_options co;
        co.title = opts.name + ":" + p.leaf->name;
        // The graph's forks follow one another with no user code between them: the first
        // looks for threads (a read of /proc) for all of them.
        co.warn_if_threaded = kids.empty();
        auto id = sup.fork(
            [&] {
                if (dash_pool) dash::keep_from_children();  // a stage's own children: not theirs
                errp.read.reset();
                child_main(i, std::move(errp.write));
            },
            co);
        kid_state& k = kids.emplace_back();  // if this throws, the supervisor still stops the stage
        k.id = id;
        k.pid = sup.pid(id);
        sys::set_nonblocking(errp.read.get());
        k.err = sys::private_fd(std::move(errp.read));
        k.name = p.leaf->name;
        k.index = i;
        if (dash_pool) dash::worker_started(*dash_pool, i, k.pid);
        if (dash_pool && i < dash::max_workers)
            dash_pool->workers[i].state.store(static_cast<std::uint32_t>(dash::worker_state::running),
                                              std::memory_order_relaxed);
    }

    void start() {
        plan();
        chans.resize(edges.size());
        readers_left.assign(edges.size(), 0);
        ends_owed.assign(edges.size(), 0);
        // The counters, then each queue in use on pages of its own. The queues' ends are the
        // graph's to count (end markers, and the stages' pidfds), not the channel's.
        auto page = [](std::size_t n) { return (n + 4095) & ~std::size_t{4095}; };
        std::size_t total = page(sizeof(edge_stats) * (edges.size() + 1) + sizeof(outputs_closed_flag) * procs.size());
        std::vector<std::size_t> at(edges.size(), 0);
        for (std::size_t e = 0; e < edges.size(); ++e) {
            if (!used(e)) continue;
            at[e] = total;
            total += page(channel_region_bytes(edge_capacity));
        }
        region = std::make_shared<sys::mapping>(-1, total);
        counters = static_cast<edge_stats*>(region->data());
        dash_attach(sizeof(edge_stats) * (edges.size() + 1) + sizeof(outputs_closed_flag) * procs.size());
        for (std::size_t e = 0; e < edges.size(); ++e) {
            auto* st = new (stats(static_cast<int>(e))) edge_stats();
            if (!used(e)) continue;
            chans[e].emplace(make_region_channel(region, region->bytes() + at[e], edge_capacity));
            st->writers_left.store(static_cast<std::uint32_t>(edges[e].writers.size()));
            st->readers = static_cast<std::uint32_t>(edges[e].readers.size() + (edges[e].parent_reads ? 1 : 0));
            readers_left[e] = edges[e].readers.size();
        }
        for (std::size_t i = 0; i < procs.size(); ++i) new (outputs_closed(i)) outputs_closed_flag(0);
        std::set<leaf_base*> initialized;
        for (auto& p : procs)
            if (initialized.insert(p.leaf.get()).second) p.leaf->initialize();
        started = true;
        begun.resize(procs.size());
        kids.reserve(procs.size());
        // The stages (and the watcher) map the dashboard's region: their counters are there.
        if (dash_pool) dash::open_to_children();
        try {
            for (std::size_t i = 0; i < procs.size(); ++i)
                if (!fill_in_parent(i)) fork_stage(i);
            begun.clear();  // the stages have their copies
            if (opts.watch) watcher = sup.adopt(start_watcher(*this, stats(0)));
        } catch (...) {
            if (dash_pool) dash::close_to_children();
            stop_all();
            finished = true;
            throw;
        }
        if (dash_pool) dash::close_to_children();
        if (out_edge >= 0) {
            out_reader = edge_reader(*chans[static_cast<std::size_t>(out_edge)]);
            out_ended = false;
            if (edges[static_cast<std::size_t>(out_edge)].reorder) out_reorder = make_reorder(out_edge);
        }
    }

    void close_output() {
        out_reader.close();
        out_ended = true;
    }

    // A writer that exited cleanly without counting itself out of queue e (it called exit):
    // after the last writer, each reader is owed an end marker.
    void writer_done(int e) {
        auto u = static_cast<std::size_t>(e);
        if (stats(e)->writers_left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
        ends_owed[u] = stats(e)->readers;
    }
    static void wake_window(edge_stats* s) noexcept {
        s->window_events.fetch_add(1, std::memory_order_acq_rel);
        sys::futex_wake_all(&s->window_events);
    }
    // A reader exited cleanly: after the last one, writers may stop waiting for room.
    void reader_done(int e) {
        auto u = static_cast<std::size_t>(e);
        if (readers_left[u] == 0 || --readers_left[u] != 0) return;
        if (!edges[u].parent_reads) {
            stats(e)->abandoned.store(1, std::memory_order_release);
            if (u < chans.size() && chans[u]) channel_wake_senders(*chans[u]);
            if (edges[u].sequenced) wake_window(stats(e));
        }
        // The reader behind an ordered group ended: its numbering stage waits for it no more.
        if (int src = edges[u].order_source; src >= 0) {
            stats(src)->window_gone.store(1, std::memory_order_release);
            wake_window(stats(src));
        }
    }
    // Publishes owed end markers without ever blocking; true if some are still owed.
    bool send_owed_ends() {
        if (chans.empty()) return false;  // over: the queues are gone
        bool left = false;
        for (std::size_t e = 0; e < ends_owed.size(); ++e) {
            while (ends_owed[e] > 0 && chans[e]->try_send_bytes(edge_end_marker)) --ends_owed[e];
            left = left || ends_owed[e] > 0;
        }
        return left;
    }

    // Every stage and the watcher at once, by the shared stop policy.
    void stop_all() noexcept {
        sup.stop_all();
        for (auto& k : kids) {
            k.done = true;
            k.err.reset();
        }
        close_output();
        chans.clear();
        finished = true;
        sigint.reset();
        dash_close();
    }

    void fail(std::exception_ptr e) {
        if (!failure) {
            failure = e;
            if (dash_pool) dash::note_exception(*dash_pool, e, 0, 0);
        }
        stop_all();
    }

    // Reads what the stage's error pipe holds now; its end of file closes it.
    static void read_report(kid_state& k) {
        char buf[4096];
        for (int i = 0; i < 64 && k.err; ++i) {  // bounded: a grandchild may hold it and write on
            long n = sys::read_some(k.err.get(), buf, sizeof buf);
            if (n < 0) return;  // more later
            if (n == 0) k.err.reset();
            else k.report.append(buf, static_cast<std::size_t>(n));
        }
    }

    // The stage exited (its pidfd): what it reported before is in its pipe.
    void on_kid_exit(kid_state& k) {
        read_report(k);
        const sys::exit_status& st = *sup.status(k.id);
        k.done = true;
        k.err.reset();
        if (dash_pool && k.index < dash::max_workers)
            dash_pool->workers[k.index].state.store(
                static_cast<std::uint32_t>(st.ok() && k.report.empty() ? dash::worker_state::exited
                                                                       : dash::worker_state::dead),
                std::memory_order_relaxed);
        if (failure) return;
        std::string where = "stage " + k.name;
        if (!k.report.empty()) {
            std::string type = "unknown", what = k.report;
            try {
                std::tie(type, what) = wire::decode<std::pair<std::string, std::string>>(k.report);
            } catch (const protocol_error&) {
            }
            if (dash_pool) dash::relaxed_set(dash_pool->failed, 1);
            fail(std::make_exception_ptr(remote_error(type, where + ": " + what, k.pid, k.index)));
        } else if (!st.ok()) {
            if (dash_pool) {
                dash::relaxed_set(dash_pool->failed, 1);
                dash::relaxed_set(dash_pool->deaths, 1);
            }
            fail(std::make_exception_ptr(worker_died(k.pid, st.signal, st.code, k.index, where)));
        } else {
            auto& p = procs[k.index];
            if (outputs_closed(k.index)->exchange(1) == 0) {
                for (int e : p.outs) writer_done(e);
                for (int e : p.xcut_edges) writer_done(e);
            }
            for (int e : p.ins) reader_done(e);
            send_owed_ends();
        }
    }

    bool all_done() const {
        for (auto& k : kids)
            if (!k.done) return false;
        return true;
    }

    // Handles whatever the stages reported: sleeps up to `timeout_ms` (-1: until something
    // happens) for a stage to report or exit, for SIGINT, for room for an owed end marker, or
    // (out_fd >= 0, armed by the caller) for data on the output queue.
    void check_kids(int timeout_ms, int out_fd = -1) {
        std::vector<pollfd> fds;
        if (out_fd >= 0) fds.push_back({out_fd, POLLIN, 0});
        std::size_t first_kid = fds.size();
        std::vector<kid_state*> who;
        for (auto& k : kids)
            if (!k.done && k.err) {
                fds.push_back({k.err.get(), POLLIN, 0});
                who.push_back(&k);
            }
        // Queues that owe end markers but are full: sleep until their readers make room.
        std::vector<std::size_t> armed;
        if (send_owed_ends() && timeout_ms != 0) {
            for (std::size_t e = 0; e < ends_owed.size(); ++e) {
                if (ends_owed[e] == 0) continue;
                int fd = channel_arm(*chans[e], edge_end_marker.size());
                if (fd < 0) {
                    timeout_ms = 0;  // room came meanwhile: retry at once
                    continue;
                }
                armed.push_back(e);
                fds.push_back({fd, POLLIN, 0});
            }
        }
        std::optional<supervisor::clock::time_point> deadline;
        if (timeout_ms >= 0) deadline = supervisor::clock::now() + std::chrono::milliseconds(timeout_ms);
        supervisor::wake w;
        try {
            w = sup.wait(fds, deadline);
        } catch (...) {
            for (std::size_t e : armed) channel_disarm(*chans[e], edge_end_marker.size());
            throw;
        }
        for (std::size_t e : armed) channel_disarm(*chans[e], edge_end_marker.size());
        if (w == supervisor::wake::interrupted) {
            sys::sigint_guard::clear();
            fail(std::make_exception_ptr(interrupted()));
            return;
        }
        for (std::size_t i = 0; i < who.size(); ++i)
            if (fds[first_kid + i].revents) read_report(*who[i]);
        // A stage's end is its pidfd, however long a grandchild holds its pipes.
        for (auto& k : kids)
            if (!k.done && !sup.alive(k.id)) on_kid_exit(k);
        if (!armed.empty()) send_owed_ends();
    }

    void finish_up() {
        if (watcher) sup.stop(*watcher);
        close_output();
        chans.clear();  // later forks of this process need not carry our queues
        finished = true;
        sigint.reset();
        dash_close();
    }

    bool next_output(record_view& r) {
        if (!sigint && !finished) sigint.emplace();
        for (;;) {
            if (!failure && sys::sigint_guard::pending()) {
                sys::sigint_guard::clear();
                fail(std::make_exception_ptr(interrupted()));
            }
            if (failure) {
                sigint.reset();
                finished = true;
                std::rethrow_exception(failure);
            }
            if (out_cur.next(r)) {
                if (r.flags & rec_end) continue;
                return true;
            }
            if (out_reorder) {
                bool got = out_ended ? out_reorder->drain(out_ordered_msg) : out_reorder->pop(out_ordered_msg);
                if (got) {
                    out_cur = record_cursor(out_ordered_msg);
                    continue;
                }
            }
            if (!out_ended) {
                std::string_view msg;
                int got = out_reader.try_receive(msg);
                if (got == 0) {
                    // Nothing yet: look at the stages, then sleep until data comes or a stage
                    // reports (its end, its death, or an owed end marker that now fits).
                    check_kids(0);
                    if (failure) continue;
                    int fd = out_reader.arm();
                    if (fd < 0) continue;  // data came meanwhile
                    try {
                        check_kids(-1, fd);
                    } catch (...) {
                        out_reader.disarm();
                        throw;
                    }
                    out_reader.disarm();
                    continue;
                }
                if (got > 0) {
                    record_cursor c(msg);
                    stats(out_edge)->received.fetch_add(c.count(), std::memory_order_relaxed);
                    if (!out_reorder) {
                        out_cur = c;
                    } else {
                        record_view x;
                        while (c.next(x)) out_reorder->add(x);
                    }
                } else if (got < 0) {
                    close_output();
                }
                continue;
            }
            if (finished) return false;
            if (all_done()) {
                finish_up();
                return false;
            }
            check_kids(-1);
        }
    }
};

runtime::runtime(std::shared_ptr<node_spec> root, run_options opts) : p_(std::make_unique<impl>()) {
    p_->root = std::move(root);
    p_->opts = std::move(opts);
}

runtime::~runtime() {
    if (p_->started && !p_->finished) p_->stop_all();
}

void runtime::start() {
    if (p_->started) throw std::logic_error("parafork: pipeline already started");
    p_->start();
}

bool runtime::next_output(record_view& r) {
    if (!p_->started) throw std::logic_error("parafork: pipeline not started");
    return p_->next_output(r);
}

void runtime::join() {
    if (!p_->started) throw std::logic_error("parafork: pipeline not started");
    record_view r;
    while (p_->next_output(r)) {
    }
}

void runtime::stop() noexcept {
    if (p_->started && !p_->finished) p_->stop_all();
}


bool runtime::started() const noexcept { return p_->started; }
bool runtime::finished() const noexcept { return p_->finished; }

std::vector<pid_t> runtime::pids() const {
    std::vector<pid_t> v;
    for (auto& k : p_->kids) v.push_back(k.pid);
    return v;
}

void runtime::print_layout(std::ostream& os, bool dot) const {
    p_->plan();
    p_->print_layout(os, dot);
}

} // namespace parafork::detail

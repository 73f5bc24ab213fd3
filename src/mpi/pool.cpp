// mpi::pool's engine. Every rank keeps its own local executor (workers forked when the pool is
// made). Rank 0 keeps every call's record, the tasks submitted and not yet handed out, and per
// rank what it holds; it hands work to its own workers and to ranks that serve, a bounded number
// of chunks per rank (two per worker), as each answers. A rank serves while it is in a
// collective call (map, imap, join): it says so (ready, with the call's function by name), runs
// what it is sent, and leaves the call when rank 0 ends it, which rank 0 does only once that
// rank holds nothing. So between pool calls nothing of the pool is at another rank, and the
// world's other calls never see the pool's messages.
#include <algorithm>
#include <map>
#include <poll.h>

#include <parafork/mpi/pool.hpp>

#include "frames.hpp"
#include "journal.hpp"
#include "relay.hpp"

namespace parafork::mpi::detail {

using parafork::detail::job;
using parafork::detail::job_kind;

namespace {
constexpr std::uint64_t span = std::uint64_t{1} << 40;  // ids per call

// Rank 0 gave the call up: this rank holds nothing and its workers stay.
class given_up final : public error {
public:
    using error::error;
};

class discard_sink final : public parafork::detail::executor_sink {
public:
    void on_values(std::uint64_t, std::uint32_t, std::string_view) override {}
    void on_failure(std::uint64_t, const failure_info&) override {}
};
} // namespace

void append_code_ref(std::string& out, const void* code) {
    const auto ref = to_code_ref(code);
    put_str(out, ref.build_id);
    put(out, ref.offset);
}

struct pool_engine::state final : parafork::detail::executor_sink {
    state(world& wd, const options& o)
        : w(wd), local(parafork::detail::make_local_executor(o)), jobs(local->size()),
          peers(static_cast<std::size_t>(wd.size())) {}

    world& w;
    std::unique_ptr<executor> local;
    unsigned jobs;
    bool stopped = false;

    // ---- rank 0 ----
    struct task {
        std::uint64_t id;
        std::string local_prefix, remote_prefix, args;
    };
    std::deque<task> tasks;                                     // submitted, not handed out
    std::map<std::uint64_t, std::shared_ptr<pool_call>> calls;  // by base id
    std::uint64_t next_base = 0;
    struct chunk {
        std::uint32_t left;
        std::vector<char> done;
    };
    struct peer {
        std::uint64_t ready_seq = 0, ended_seq = 0;  // the pool call it is in / was ended
        char kind = 0;
        std::uint64_t total = 0;
        std::string prefix;
        bool checked = false, lost = false;
        std::size_t window = 0;
        std::map<std::uint64_t, chunk> held;  // first id -> its items not yet answered
    };
    std::vector<peer> peers;
    struct collective {
        bool active = false, ending = false;
        std::uint64_t seq = 0, total = 0, next = 0, chunk = 1;
        std::shared_ptr<pool_call> c;
        std::string prefix, mismatch;
        char kind = 0;
        std::shared_ptr<journal> jr;  // rank 0's journal of this call, if it has one
        std::map<std::uint64_t, std::uint64_t> kept;  // the runs it gave back: not handed out
    } cur;
    std::vector<pollfd> fds;
    world::frame f;
    std::vector<world::frame> later;
    std::string msg;

    // ---- other ranks ----
    std::map<std::string, std::string, std::less<>> resolved;  // remote prefix -> local prefix

    // Rank 0's own answers (executor_sink).
    void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override {
        deliver(first, count, bytes);
    }
    void on_failure(std::uint64_t index, const failure_info& fi) override { deliver_failure(index, fi, 0, nullptr); }

    pool_call& route(std::uint64_t id, std::uint64_t count) {
        auto it = calls.upper_bound(id);
        if (it == calls.begin()) throw protocol_error("parafork::mpi: an answer for no known call");
        --it;
        if (id + count > it->first + span) throw protocol_error("parafork::mpi: an answer past its call");
        return *it->second;
    }
    void settle(pool_call& c) {
        if (c.finished() && !(cur.active && cur.c.get() == &c)) calls.erase(c.base);
    }
    void deliver(std::uint64_t id, std::uint32_t count, std::string_view bytes) {
        auto& c = route(id, count);
        auto keep = calls.at(c.base);
        c.answered += count;
        if (!c.abandoned) c.values(id - c.base, count, bytes);
        // Kept once taken (decoded), even from a call given up: they are answers all the same.
        if (cur.jr && cur.c.get() == &c) cur.jr->record(id - c.base, count, bytes);
        settle(c);
    }
    // A failure (fi), or a rank's loss (e, shared by its items).
    void deliver_failure(std::uint64_t id, const failure_info& fi, int rank, std::exception_ptr e) {
        auto& c = route(id, 1);
        auto keep = calls.at(c.base);
        c.answered += 1;
        if (!c.abandoned) c.failed(id - c.base, e ? e : failure_at(fi, c.first_task + id - c.base, w, rank));
        settle(c);
    }

    bool serving(int r) const {
        const auto& p = peers[static_cast<std::size_t>(r)];
        return !w.gone(r) && p.ready_seq > p.ended_seq && !(cur.ending && p.ready_seq == cur.seq);
    }
    bool range_has_more() const {
        if (!cur.active || cur.ending || !cur.c || cur.c->streamed || cur.next >= cur.total) return false;
        const auto& c = *cur.c;
        const std::uint64_t ahead = cur.chunk * 4 * std::uint64_t{jobs} * peers.size();
        return !c.lazy || c.handed - c.taken < ahead;
    }
    std::pair<std::uint64_t, std::uint32_t> take_range() {
        // cur.next is never inside a run the journal kept: a chunk ends where the next one starts.
        auto lim = cur.total;
        if (auto it = cur.kept.upper_bound(cur.next); it != cur.kept.end()) lim = it->first;
        const auto n = std::min<std::uint64_t>({cur.chunk, lim - cur.next, UINT32_MAX});
        const auto first = cur.next;
        cur.next += n;
        cur.c->handed += n;
        skip_kept();
        return {first, static_cast<std::uint32_t>(n)};
    }
    void skip_kept() {
        for (auto it = cur.kept.find(cur.next); it != cur.kept.end(); it = cur.kept.find(cur.next))
            cur.next += it->second;
        if (cur.next == cur.total) cur.c->sealed = true;
    }

    // Hands out work: this rank's workers keep two jobs queued each, other ranks `window` chunks.
    void dispatch() {
        while (local->counters().queued < 2 * std::size_t{jobs}) {
            job j;
            if (!tasks.empty()) {
                auto t = std::move(tasks.front());
                tasks.pop_front();
                j.kind = job_kind::call;
                j.first = t.id;
                j.count = 1;
                j.body = std::move(t.local_prefix);
                j.prefix = static_cast<std::uint32_t>(j.body.size());
                j.offsets.push_back(j.prefix);
                j.body += t.args;
            } else if (range_has_more()) {
                auto [first, count] = take_range();
                cur.c->encode(first, count, j);
                j.first = cur.c->base + first;
            } else {
                break;
            }
            local->push(std::move(j));
        }
        for (int r = 1; r < w.size(); ++r) {
            auto& p = peers[static_cast<std::size_t>(r)];
            if (!serving(r)) continue;
            msg.clear();
            put(msg, p.ready_seq);
            while (p.held.size() < p.window) {
                if (!tasks.empty()) {
                    auto t = std::move(tasks.front());
                    tasks.pop_front();
                    msg += 'C';
                    put(msg, t.id);
                    put_str(msg, t.remote_prefix);
                    put_str(msg, t.args);
                    p.held.emplace(t.id, chunk{1, std::vector<char>(1)});
                } else if (p.checked && p.ready_seq == cur.seq && range_has_more()) {
                    auto [first, count] = take_range();
                    msg += 'R';
                    put(msg, cur.c->base + first);
                    put(msg, first);
                    put(msg, count);
                    p.held.emplace(cur.c->base + first, chunk{count, std::vector<char>(count)});
                } else {
                    break;
                }
            }
            if (msg.size() > sizeof(std::uint64_t)) w.send(r, tag_pool_work, msg);
        }
    }

    void check(int r) {
        auto& p = peers[static_cast<std::size_t>(r)];
        if (p.checked || p.ready_seq != cur.seq) return;
        p.checked = true;
        if (p.kind == cur.kind && p.total == cur.total && p.prefix == cur.prefix) return;
        cursor mine(cur.prefix), theirs(p.prefix);
        const bool other_build = !cur.prefix.empty() && !p.prefix.empty() && mine.str() != theirs.str();
        std::string why = "parafork::mpi: " + where(w, r) +
                          (other_build ? " runs another build of the program: every rank must run the same binary"
                                       : " is in a different pool call than rank 0 (another function, kind or "
                                         "number of items): every rank must make the same calls in the same order");
        if (!cur.ending) throw bad_launch(why);
        if (cur.mismatch.empty()) cur.mismatch = std::move(why);  // finish() fails the call with it
    }

    void handle_frames() {
        while (w.next(f)) {
            if (f.peer <= 0 || f.peer >= w.size()) throw protocol_error("parafork::mpi: a pool message from no rank");
            cursor c(f.body);
            const auto seq = c.get<std::uint64_t>();
            auto& p = peers[static_cast<std::size_t>(f.peer)];
            if (f.tag < tag_pool_ready) {  // the world's other calls: left over, or for a later one
                if (seq > w.calls()) later.push_back(std::move(f));
                continue;
            }
            if (f.tag == tag_pool_ready) {
                if (seq <= p.ready_seq) throw protocol_error("parafork::mpi: a rank said it was ready twice");
                p.ready_seq = seq;
                p.kind = c.get<char>();
                p.total = c.get<std::uint64_t>();
                p.window = std::max<std::size_t>(2 * std::size_t{c.get<std::uint32_t>()}, 1);
                p.prefix = std::string(c.str());
                p.checked = false;
                check(f.peer);
            } else if (f.tag == tag_pool_answers) {
                answer a;
                while (!c.done()) {
                    read_answer(c, a);
                    // It must lie in one chunk that rank holds, and not be answered yet.
                    auto it = p.held.upper_bound(a.first);
                    if (it == p.held.begin()) throw protocol_error("parafork::mpi: an answer to nothing sent");
                    --it;
                    auto& ch = it->second;
                    const auto off = a.first - it->first;
                    if (off + a.count > ch.done.size()) throw protocol_error("parafork::mpi: an answer to nothing sent");
                    for (std::uint64_t k = off; k < off + a.count; ++k) {
                        if (ch.done[k]) throw protocol_error("parafork::mpi: an item answered twice");
                        ch.done[k] = 1;
                    }
                    ch.left -= static_cast<std::uint32_t>(a.count);
                    if (ch.left == 0) p.held.erase(it);
                    if (a.kind == 'V') deliver(a.first, static_cast<std::uint32_t>(a.count), a.bytes);
                    else deliver_failure(a.first, a.fi, f.peer, nullptr);
                }
            } else {
                throw protocol_error("parafork::mpi: rank 0's pool got a message it does not take");
            }
        }
        w.put_back(later);
    }

    // A rank whose program ended: every item it held fails with worker_died naming it.
    void lost_ranks() {
        for (int r = 1; r < w.size(); ++r) {
            auto& p = peers[static_cast<std::size_t>(r)];
            if (p.lost || !w.gone(r)) continue;
            p.lost = true;
            auto held = std::move(p.held);
            p.held.clear();
            for (auto& [first, ch] : held) {
                auto& c = route(first, 1);
                auto e = rank_lost(w, r, c.first_task + first - c.base);
                for (std::size_t k = 0; k < ch.done.size(); ++k)
                    if (!ch.done[k]) deliver_failure(first + k, {}, r, e);
            }
        }
    }

    bool outstanding() const {
        if (!tasks.empty() || range_has_more() || local_busy(*local)) return true;
        for (const auto& p : peers)
            if (!p.held.empty()) return true;
        return false;
    }

    // One round: what arrived, then a wait (up to `deadline`), then what arrived.
    void round(std::optional<executor::clock::time_point> deadline) {
        const bool busy = local_busy(*local);
        if (busy) local->kick();
        wait_round(w, *local, fds, busy, deadline);
        w.receive_ready();
        handle_frames();
        lost_ranks();
        if (busy) local->pump(*this, executor::clock::now());
    }

    void end(int r, bool ok, std::string_view why) {
        auto& p = peers[static_cast<std::size_t>(r)];
        std::string e;
        put(e, cur.seq);
        put(e, static_cast<std::uint8_t>(ok));
        put_str(e, why);
        p.ended_seq = cur.seq;
        w.send(r, tag_pool_end, e);
    }

    // A rank other than 0 in pool call `seq`: runs what rank 0 sends until it ends the call.
    void serve(pool_call* c, std::string_view prefix, std::uint64_t seq, std::uint64_t total, char kind);
    const std::string& local_prefix(std::string_view remote);
};

const std::string& pool_engine::state::local_prefix(std::string_view remote) {
    auto it = resolved.find(remote);
    if (it != resolved.end()) return it->second;
    cursor c(remote);
    code_ref ref;
    ref.build_id = std::string(c.str());
    ref.offset = c.get<std::uint64_t>();
    const void* tramp = from_code_ref(ref);
    if (!tramp)
        throw bad_launch("parafork::mpi: rank 0 runs another build of the program (build-id " + ref.build_id +
                         "): every rank must run the same binary");
    std::string local;
    parafork::detail::call_prefix cp{reinterpret_cast<parafork::detail::call_trampoline>(const_cast<void*>(tramp)),
                                     nullptr};
    local.append(reinterpret_cast<const char*>(&cp), sizeof cp);
    const char kind = c.get<char>();
    if (kind == 1) {
        ref.build_id = std::string(c.str());
        ref.offset = c.get<std::uint64_t>();
        const void* fn = from_code_ref(ref);
        if (!fn) throw bad_launch("parafork::mpi: a task names a function this build does not have");
        local.append(reinterpret_cast<const char*>(&fn), sizeof fn);
    } else if (kind == 0) {
        local.append(c.take(c.get<std::uint8_t>()));
    } else {
        throw protocol_error("parafork::mpi: a task's function of no kind");
    }
    if (!c.done()) throw protocol_error("parafork::mpi: trailing bytes after a task's function");
    return resolved.emplace(std::string(remote), std::move(local)).first->second;
}

void pool_engine::state::serve(pool_call* c, std::string_view prefix, std::uint64_t seq, std::uint64_t total,
                               char kind) {
    std::string ready;
    put(ready, seq);
    ready += kind;
    put(ready, total);
    put(ready, static_cast<std::uint32_t>(jobs));
    put_str(ready, prefix);
    w.send(0, tag_pool_ready, ready);
    forward_sink fs;
    auto reset = [&] {
        fs.out.clear();
        put(fs.out, seq);
    };
    reset();
    try {
        for (;;) {
            if (fs.out.size() > sizeof seq) {
                w.send(0, tag_pool_answers, fs.out);
                reset();
            }
            if (w.gone(0)) throw root_lost(w);
            const bool busy = local_busy(*local);
            if (busy) local->kick();
            wait_round(w, *local, fds, busy);
            w.receive_ready();
            while (w.next(f)) {
                if (f.peer != 0) throw protocol_error("parafork::mpi: pool work from a rank other than 0");
                cursor m(f.body);
                const auto their = m.get<std::uint64_t>();
                if (their < seq) continue;  // left over from an earlier call
                if (their > seq || f.tag < tag_pool_ready)
                    throw protocol_error("parafork::mpi: a message for another call during a pool call");
                if (f.tag == tag_pool_work) {
                    while (!m.done()) {
                        job j;
                        const char what = m.get<char>();
                        const auto id = m.get<std::uint64_t>();
                        if (what == 'R') {
                            const auto first = m.get<std::uint64_t>();
                            const auto count = m.get<std::uint32_t>();
                            if (!c || count == 0 || first > total || count > total - first)
                                throw protocol_error("parafork::mpi: pool work outside the range");
                            c->encode(first, count, j);
                        } else if (what == 'C') {
                            const auto remote = m.str();
                            const auto args = m.str();
                            j.kind = job_kind::call;
                            j.count = 1;
                            j.body = local_prefix(remote);
                            j.prefix = static_cast<std::uint32_t>(j.body.size());
                            j.offsets.push_back(j.prefix);
                            j.body += args;
                        } else {
                            throw protocol_error("parafork::mpi: pool work of no kind");
                        }
                        j.first = id;
                        local->push(std::move(j));
                    }
                } else if (f.tag == tag_pool_end) {
                    const bool ok = m.get<std::uint8_t>() != 0;
                    const auto why = m.str();
                    if (!ok) {
                        if (local_busy(*local)) {  // rank 0 was stopped without waiting for it
                            stopped = true;
                            local->terminate();
                        }
                        throw given_up("parafork::mpi: rank 0 abandoned the pool call: " + std::string(why));
                    }
                    if (local_busy(*local)) throw protocol_error("parafork::mpi: rank 0 ended a pool call with work here");
                    return;
                } else {
                    throw protocol_error("parafork::mpi: a pool message a rank does not take");
                }
            }
            if (busy) local->pump(fs, executor::clock::now());
        }
    } catch (const given_up&) {
        throw;
    } catch (...) {
        stopped = true;
        local->terminate();
        throw;
    }
}

pool_engine::pool_engine(world& wd, const options& o) : w(wd), s_(std::make_unique<state>(wd, o)) {}
pool_engine::~pool_engine() { terminate(); }

unsigned pool_engine::size() const noexcept { return s_->jobs; }
bool pool_engine::stopped() const noexcept { return s_->stopped; }
void pool_engine::terminate() noexcept {
    if (!s_) return;
    s_->stopped = true;
    s_->local->terminate();
}

void pool_engine::submit(std::shared_ptr<pool_call> c, std::string local_prefix, std::string remote_prefix,
                         std::string args) {
    auto& s = *s_;
    if (s.stopped) throw error("parafork::mpi: the pool was stopped");
    c->base = s.next_base;
    s.next_base += span;
    c->handed = 1;
    c->sealed = true;
    const auto id = c->base;
    s.calls.emplace(c->base, std::move(c));
    s.tasks.push_back({id, std::move(local_prefix), std::move(remote_prefix), std::move(args)});
    s.dispatch();  // start it now if a worker has room
    s.local->kick();
}

void pool_engine::push(std::uint64_t id, const std::string& local_prefix, const std::string& remote_prefix,
                       std::string args) {
    s_->tasks.push_back({id, local_prefix, remote_prefix, std::move(args)});
}

unsigned pool_engine::ranks() const noexcept { return static_cast<unsigned>(w.size()); }

void pool_engine::begin(std::shared_ptr<pool_call> c, std::string_view prefix, std::uint64_t total,
                        std::size_t chunksize, char kind, const std::string& journal_path, const void* code) {
    auto& s = *s_;
    if (s.stopped) throw error("parafork::mpi: the pool was stopped");
    if (s.cur.active) throw error("parafork::mpi: a pool runs one map or imap at a time on every rank");
    const auto seq = w.next_call();
    if (!w.root()) {
        s.serve(c.get(), prefix, seq, total, kind);
        return;
    }
    auto& cur = s.cur;
    cur = {};
    cur.active = true;
    cur.seq = seq;
    cur.total = total;
    cur.kind = kind;
    cur.prefix = std::string(prefix);
    cur.chunk = chunksize ? chunksize
                          : std::clamp<std::uint64_t>(total / (std::uint64_t{s.jobs} * s.peers.size() * 8), 1, 65536);
    if (c) {
        c->base = s.next_base;
        s.next_base += span;
        c->total = total;
        c->sealed = total == 0 && !c->streamed;
        s.calls.emplace(c->base, c);
        cur.c = std::move(c);
    }
    try {
        if (!journal_path.empty() && cur.c) {
            auto& call = *cur.c;
            cur.jr = std::make_shared<journal>(journal_path, seq, to_code_ref(code), total,
                                               [&](std::uint64_t first, std::uint32_t count, std::string_view bytes) {
                                                   call.values(first, count, bytes);
                                                   call.handed += count;
                                                   call.answered += count;
                                               });
            cur.kept = cur.jr->kept();
            if (!cur.kept.empty()) s.skip_kept();
        }
        for (int r = 1; r < w.size(); ++r) s.check(r);  // those already waiting in this call
    } catch (const std::exception& e) {
        finish(false, e.what());
        throw;
    }
}

void pool_engine::finish(bool ok, std::string_view why) {
    auto& s = *s_;
    auto& cur = s.cur;
    if (!cur.active || !w.root()) return;
    cur.ending = true;
    if (s.stopped) {  // Ctrl-C or terminate: no waiting for what ranks hold; they stop too
        for (int r = 1; r < w.size(); ++r) {
            auto& p = s.peers[static_cast<std::size_t>(r)];
            if (!w.gone(r) && p.ready_seq == cur.seq && p.ended_seq != cur.seq) s.end(r, false, why);
        }
        cur = {};
        return;
    }
    if (cur.c && !cur.c->finished()) {  // given up: drop what is not handed out, drain the rest
        cur.c->abandoned = true;
        cur.c->sealed = true;
        cur.c->handed -= s.local->drop_queued(cur.c->base, cur.c->base + span);
        const auto before = s.tasks.size();  // a streamed call's items not handed out yet
        const auto base = cur.c->base;
        std::erase_if(s.tasks, [&](const state::task& t) { return t.id >= base && t.id < base + span; });
        cur.c->handed -= before - s.tasks.size();
    }
    // Every live rank must be in the call (its ready checked) and hold nothing before any is
    // ended: a rank that turns out to be in another call fails the call on every rank.
    std::string mismatch;
    try {
        for (;;) {
            s.handle_frames();
            s.lost_ranks();
            bool done = !cur.c || cur.c->finished();
            for (int r = 1; r < w.size(); ++r) {
                const auto& p = s.peers[static_cast<std::size_t>(r)];
                if (!w.gone(r) && (p.ready_seq < cur.seq || !p.held.empty())) done = false;
            }
            if (done) break;
            s.dispatch();  // tasks go on at rank 0 and at ranks in no call being ended
            s.round(std::nullopt);
        }
        mismatch = cur.mismatch;
        for (int r = 1; r < w.size(); ++r)
            if (!w.gone(r) && s.peers[static_cast<std::size_t>(r)].ended_seq != cur.seq)
                s.end(r, ok && mismatch.empty(), mismatch.empty() ? why : std::string_view(mismatch));
    } catch (...) {
        cur = {};
        s.stopped = true;
        s.local->terminate();
        throw;
    }
    if (cur.c) s.calls.erase(cur.c->base);
    cur = {};
    if (ok && !mismatch.empty()) throw bad_launch(mismatch);
}

bool pool_engine::pump(std::optional<clock::time_point> deadline) {
    auto& s = *s_;
    if (s.stopped) throw error("parafork::mpi: the pool was stopped (terminate, its destructor or Ctrl-C)");
    try {
        s.handle_frames();
        s.lost_ranks();
        s.dispatch();
        if (!s.outstanding()) return false;
        s.round(deadline);
        s.dispatch();
        return true;
    } catch (const interrupted&) {
        terminate();
        throw;
    }
}

void pool_engine::join() {
    auto& s = *s_;
    if (s.stopped) return;
    discard_sink none;
    if (w.root()) s.local->join(s);
    else s.local->join(none);
    s.stopped = true;
}

bool pool_engine::wait(const parafork::detail::answer_slot& slot, std::optional<clock::time_point> deadline) {
    if (slot.done) return true;
    if (s_->stopped)
        throw error("parafork::mpi: the pool was stopped before task " + std::to_string(slot.task) + " answered");
    sys::sigint_guard ctrl_c;
    while (!slot.done) {
        if (deadline && clock::now() >= *deadline) {
            pump(clock::now());
            break;
        }
        if (!pump(deadline)) throw error("parafork::mpi: the pool lost task " + std::to_string(slot.task));
    }
    return slot.done;
}

std::optional<pool_engine::clock::time_point> pool_engine::watch(std::vector<pollfd>& fds) {
    auto& s = *s_;
    std::optional<clock::time_point> wake;
    if (local_busy(*s.local)) wake = s.local->watch(fds);
    fds.push_back({w.socket_fd(), POLLIN, 0});
    fds.push_back({w.mpi_process_fd(), POLLIN, 0});
    return wake;
}

bool pool_engine::poll() {
    if (s_->stopped) throw error("parafork::mpi: the pool was stopped with tasks unanswered");
    return pump(clock::now());
}

} // namespace parafork::mpi::detail

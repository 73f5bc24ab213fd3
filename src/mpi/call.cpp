// One parafork::mpi call on every rank. Rank 0 keeps the call's state: which index ranges are
// out at which rank and how many items are answered. Ranks pull: each says it is ready, and
// gets up to two chunks per local worker; every chunk answered frees room for the next. Each
// rank's answers of one wait (values in runs, failures) go to rank 0 as one message.
#include <algorithm>
#include <map>
#include <optional>
#include <poll.h>

#include <parafork/exec/core/detail/results.hpp>
#include <parafork/mpi/forked.hpp>

#include "frames.hpp"
#include "journal.hpp"
#include "relay.hpp"

namespace parafork::mpi::detail {
namespace {

using clock = executor::clock;

// Rank 0's local answers, named as rank 0's, counted.
class root_local_sink final : public parafork::detail::executor_sink {
public:
    root_local_sink(call_sink& s, const world& w, std::uint64_t& answered) : s_(s), w_(w), answered_(answered) {}
    void on_values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override {
        answered_ += count;
        s_.values(first, count, bytes);
    }
    void on_failure(std::uint64_t index, const failure_info& f) override {
        ++answered_;
        s_.fail(failure_at(f, index, w_, 0));
    }
    bool on_lent(std::uint64_t index, const parafork::detail::lent_ref& r) override {
        if (!s_.lent(index, r)) return false;
        ++answered_;
        return true;
    }

private:
    call_sink& s_;
    const world& w_;
    std::uint64_t& answered_;
};

// The call's sink, keeping each run of values in the journal once the sink has taken it.
class recording_sink final : public call_sink {
public:
    recording_sink(call_sink& s, journal& j) : s_(s), j_(j) {}
    void values(std::uint64_t first, std::uint32_t count, std::string_view bytes) override {
        s_.values(first, count, bytes);
        j_.record(first, count, bytes);
    }
    void fail(std::exception_ptr e) override { s_.fail(std::move(e)); }
    bool lent(std::uint64_t index, const parafork::detail::lent_ref& r) override { return s_.lent(index, r); }
    bool failed() const noexcept override { return s_.failed(); }
    std::exception_ptr error() const noexcept override { return s_.error(); }
    bool backed_up() const noexcept override { return s_.backed_up(); }

private:
    call_sink& s_;
    journal& j_;
};

struct rank_state {
    bool ready = false, ended = false;  // said it is in the call; was sent the end
    std::size_t window = 0;             // chunks it may hold
    std::map<std::uint64_t, std::uint64_t> held;  // first index of a chunk -> items unanswered
};

void run_root(world& w, executor& local, call_sink& caller_sink, const code_ref& ref, const void* code,
              std::uint64_t seq, std::uint64_t total, const call_options& o) {
    const int n = w.size();
    const unsigned jobs = local.size();
    std::vector<rank_state> ranks(static_cast<std::size_t>(n));
    ranks[0].ready = true;
    std::uint64_t answered = 0;
    const std::uint64_t chunk =
        o.chunksize ? o.chunksize
                    : std::clamp<std::uint64_t>(total / (std::uint64_t{jobs} * static_cast<unsigned>(n) * 8), 1, 65536);
    std::vector<pollfd> fds;
    world::frame f;
    std::string msg;

    auto end_all = [&](bool ok, std::string_view why) {
        std::string e;
        put(e, seq);
        put(e, static_cast<std::uint8_t>(ok));
        put_str(e, why);
        for (int r = 1; r < n; ++r) {
            auto& s = ranks[static_cast<std::size_t>(r)];
            if (s.ended || w.gone(r)) continue;
            s.ended = true;
            w.send(r, tag_end, e);
        }
    };

    // A journal first gives back what an earlier run kept; then it keeps what this run answers.
    std::optional<journal> jr;
    std::optional<recording_sink> recorder;
    try {
        if (!o.journal.empty()) {
            jr.emplace(o.journal, seq, ref, total, [&](std::uint64_t first, std::uint32_t count, std::string_view bytes) {
                caller_sink.values(first, count, bytes);
                answered += count;
            });
            recorder.emplace(caller_sink, *jr);
        }
    } catch (const std::exception& e) {
        try {
            end_all(false, e.what());
        } catch (...) {  // the MPI process is gone: nobody to tell
        }
        throw;
    }
    call_sink& sink = recorder ? static_cast<call_sink&>(*recorder) : caller_sink;
    root_local_sink lsink(sink, w, answered);

    // What is left to hand out: [first, end) ranges in order, all of the range but what was kept.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> todo;
    {
        std::uint64_t from = 0;
        if (jr)
            for (const auto& [first, count] : jr->kept()) {
                if (first > from) todo.emplace_back(from, first);
                from = first + count;
            }
        if (from < total) todo.emplace_back(from, total);
    }
    std::size_t todo_at = 0;
    auto more = [&] { return todo_at < todo.size(); };
    auto next_unsent = [&] { return more() ? todo[todo_at].first : total; };
    auto take_chunk = [&] {
        auto& [from, end] = todo[todo_at];
        const auto c = std::min<std::uint64_t>({chunk, end - from, UINT32_MAX});
        const auto first = from;
        from += c;
        if (from == end) ++todo_at;
        return std::pair{first, static_cast<std::uint32_t>(c)};
    };
    auto handle = [&](const world::frame& fr) {
        auto& s = ranks[static_cast<std::size_t>(fr.peer)];
        cursor c(fr.body);
        const auto their_seq = c.get<std::uint64_t>();
        // Left over from an abandoned call: a rank may have said it was ready, or answered,
        // after rank 0 had given that call up.
        if (their_seq < seq) return;
        if (fr.tag == tag_ready) {
            if (their_seq != seq || s.ready)
                throw bad_launch("parafork::mpi: " + where(w, fr.peer) + " is at call " + std::to_string(their_seq) +
                                 ", rank 0 at call " + std::to_string(seq) + ": every rank must make the same calls");
            const auto their_total = c.get<std::uint64_t>();
            const auto their_jobs = c.get<std::uint32_t>();
            code_ref ref;
            ref.build_id = std::string(c.str());
            ref.offset = c.get<std::uint64_t>();
            const void* there = from_code_ref(ref);
            if (!there)
                throw bad_launch("parafork::mpi: " + where(w, fr.peer) + " runs another build of the program "
                                 "(build-id " + ref.build_id + "): every rank must run the same binary");
            if (there != code)
                throw bad_launch("parafork::mpi: " + where(w, fr.peer) + " is in a different call than rank 0: "
                                 "every rank must make the same calls in the same order");
            if (their_total != total)
                throw bad_launch("parafork::mpi: " + where(w, fr.peer) + " has " + std::to_string(their_total) +
                                 " items, rank 0 has " + std::to_string(total) + ": every rank needs the same range");
            s.ready = true;
            s.window = std::max<std::size_t>(2 * std::size_t{their_jobs}, 1);
        } else if (fr.tag == tag_answers) {
            if (their_seq != seq) throw protocol_error("parafork::mpi: answers to a call not made yet");
            answer a;
            while (!c.done()) {
                read_answer(c, a);
                const auto first = a.first;
                const auto count = a.count;
                // It must lie in one chunk that rank holds.
                auto it = s.held.upper_bound(first);
                if (it == s.held.begin()) throw protocol_error("parafork::mpi: an answer to nothing sent");
                --it;
                if (count > it->second || first < it->first)
                    throw protocol_error("parafork::mpi: an answer to nothing sent");
                if ((it->second -= count) == 0) s.held.erase(it);
                answered += count;
                if (a.kind == 'V') sink.values(first, static_cast<std::uint32_t>(count), a.bytes);
                else sink.fail(failure_at(a.fi, first, w, fr.peer));
            }
        } else {
            throw protocol_error("parafork::mpi: rank 0 got a message it does not take");
        }
    };

    try {
        for (;;) {
            if (sink.failed()) break;
            bool all_ready = true;
            for (int r = 1; r < n; ++r) {
                auto& s = ranks[static_cast<std::size_t>(r)];
                if (w.gone(r) && (!s.ready || !s.held.empty()))
                    std::rethrow_exception(rank_lost(w, r, s.held.empty() ? next_unsent() : s.held.begin()->first));
                all_ready &= s.ready;
            }
            if (answered == total && all_ready) break;
            // Hand out work: to this rank's workers, and to every rank with room.
            while (more() && local.counters().queued < 2 * jobs && !sink.backed_up()) {
                parafork::detail::job j;
                j.kind = parafork::detail::job_kind::range;
                std::tie(j.first, j.count) = take_chunk();
                local.push(std::move(j));
            }
            for (int r = 1; r < n && more(); ++r) {
                auto& s = ranks[static_cast<std::size_t>(r)];
                if (!s.ready || w.gone(r)) continue;
                msg.clear();
                put(msg, seq);
                while (more() && s.held.size() < s.window && !sink.backed_up()) {
                    auto [first, count] = take_chunk();
                    s.held.emplace(first, count);
                    put(msg, first);
                    put(msg, count);
                }
                if (msg.size() > sizeof seq) w.send(r, tag_work, msg);
            }
            const bool busy = local_busy(local);
            if (busy) local.kick();
            wait_round(w, local, fds, busy);
            w.receive_ready();
            while (!sink.failed() && w.next(f)) handle(f);
            if (busy) local.pump(lsink, clock::now());
        }
    } catch (const std::exception& e) {
        local.terminate();
        try {
            end_all(false, e.what());
        } catch (...) {  // the MPI process is gone: nobody to tell
        }
        throw;
    }
    if (sink.failed()) {
        local.terminate();
        std::string why = "a task failed";
        try {
            std::rethrow_exception(sink.error());
        } catch (const std::exception& e) {
            why = e.what();
        } catch (...) {
        }
        end_all(false, why);
        return;  // the caller's sink holds the error (rethrown by run_call)
    }
    end_all(true, {});
    local.join(lsink);
}

void run_rank(world& w, executor& local, const code_ref& ref, std::uint64_t seq, std::uint64_t total) {
    std::string ready;
    put(ready, seq);
    put(ready, total);
    put(ready, static_cast<std::uint32_t>(local.size()));
    put_str(ready, ref.build_id);
    put(ready, ref.offset);
    w.send(0, tag_ready, ready);
    forward_sink fs;
    std::vector<pollfd> fds;
    world::frame f;
    auto reset = [&] {
        fs.out.clear();
        put(fs.out, seq);
    };
    reset();
    try {
        for (;;) {
            if (fs.out.size() > sizeof seq) {
                w.send(0, tag_answers, fs.out);
                reset();
            }
            if (w.gone(0)) throw root_lost(w);
            const bool busy = local_busy(local);
            if (busy) local.kick();
            wait_round(w, local, fds, busy);
            w.receive_ready();
            while (w.next(f)) {
                if (f.peer != 0) throw protocol_error("parafork::mpi: work from a rank other than 0");
                cursor c(f.body);
                if (c.get<std::uint64_t>() != seq) continue;  // left over from an abandoned call
                if (f.tag == tag_work) {
                    while (!c.done()) {
                        parafork::detail::job j;
                        j.kind = parafork::detail::job_kind::range;
                        j.first = c.get<std::uint64_t>();
                        j.count = c.get<std::uint32_t>();
                        if (j.count == 0 || j.first > total || j.count > total - j.first)
                            throw protocol_error("parafork::mpi: work outside the range");
                        local.push(std::move(j));
                    }
                } else if (f.tag == tag_end) {
                    const bool ok = c.get<std::uint8_t>() != 0;
                    const auto why = c.str();
                    if (!ok) {
                        local.terminate();
                        throw error("parafork::mpi: rank 0 abandoned the call: " + std::string(why));
                    }
                    local.join(fs);
                    return;
                } else {
                    throw protocol_error("parafork::mpi: a message a rank does not take");
                }
            }
            if (busy) local.pump(fs, clock::now());
        }
    } catch (...) {
        local.terminate();
        throw;
    }
}

} // namespace

void run_call(world& w, executor& local, call_sink* sink, const code_ref& ref, const void* code,
              std::uint64_t total, const call_options& o) {
    const auto seq = w.next_call();
    if (w.root()) {
        run_root(w, local, *sink, ref, code, seq, total, o);
    } else {
        run_rank(w, local, ref, seq, total);
    }
}

} // namespace parafork::mpi::detail

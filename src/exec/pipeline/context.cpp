// The stage side of a pipeline: batching outputs into messages, reading inputs, restoring
// order behind ordered groups.
#include <parafork/exec/pipeline/detail/context.hpp>
#include <parafork/exec/pipeline/detail/graph.hpp>
#include <parafork/sys/memory.hpp>

#include <cxxabi.h>
#include <cstdlib>
#include <memory>

namespace parafork::detail {

namespace {
// One writer per counter (this stage's process): a relaxed add, no read-modify-write.
inline void count_items(std::atomic<std::uint64_t>& a, std::uint64_t n) noexcept {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
} // namespace

std::string type_name(std::type_index t) {
    std::string n = demangle(t.name());
    auto replace_all = [&](std::string_view from, std::string_view to) {
        for (auto at = n.find(from); at != std::string::npos; at = n.find(from, at + to.size()))
            n.replace(at, from.size(), to);
    };
    for (const char* ns : {"parafork::detail::", "parafork::"}) replace_all(ns, "");
    // What messages about item types mention most: say it the way it is written.
    replace_all("std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >", "std::string");
    replace_all("std::__cxx11::", "std::");
    return n;
}

void reorder_buffer::add(const record_view& r) {
    if (!(r.flags & rec_seq)) {
        late_.append(r.whole);
        ++late_count_;
        return;
    }
    if (r.seq < next_) throw protocol_error("parafork: ordered pipeline saw an item twice");
    auto& e = pending_[r.seq];
    if (r.flags & rec_end) {
        e.done = true;
    } else {
        e.records.append(r.whole);
        ++e.count;
        held_bytes_ += r.whole.size();
        if (window_ && !over_ && held_bytes_ > max_ordered_bytes) {
            over_ = true;
            window_->held_over.store(1, std::memory_order_release);
        }
    }
}

// Tells the numbering stage what was passed on; wakes it if it sleeps on the window.
void reorder_buffer::publish() noexcept {
    if (!window_) return;
    if (over_ && held_bytes_ <= max_ordered_bytes) {
        over_ = false;
        window_->held_over.store(0, std::memory_order_release);
    }
    window_->released.store(static_cast<std::uint32_t>(next_), std::memory_order_release);
    window_->window_events.fetch_add(1, std::memory_order_acq_rel);
    // Against the writer's flag-then-recheck: one of the two sees the other.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (window_->writer_waiting.load(std::memory_order_relaxed) && window_->writer_waiting.exchange(0))
        sys::futex_wake_all(&window_->window_events);
}

bool reorder_buffer::pop(std::string& msg) {
    begin_message(msg);
    std::uint32_t n = 0;
    std::uint64_t was = next_;
    while (!pending_.empty()) {
        auto it = pending_.begin();
        if (it->first != next_ || !it->second.done) break;
        msg.append(it->second.records);
        n += it->second.count;
        held_bytes_ -= it->second.records.size();
        pending_.erase(it);
        ++next_;
    }
    set_message_count(msg, n);
    if (next_ != was) publish();
    return n > 0;
}

bool reorder_buffer::drain(std::string& msg) {
    begin_message(msg);
    std::uint32_t n = 0;
    for (auto& [seq, e] : pending_) {
        msg.append(e.records);
        n += e.count;
    }
    pending_.clear();
    held_bytes_ = 0;
    msg.append(late_);
    n += late_count_;
    late_.clear();
    late_count_ = 0;
    set_message_count(msg, n);
    return n > 0;
}

bool stage_context::fetch(in_port& in) {
    for (;;) {
        if (in.reorder) {
            bool got = in.ended ? in.reorder->drain(in.ordered_msg) : in.reorder->pop(in.ordered_msg);
            if (got) {
                in.cur = record_cursor(in.ordered_msg);
                return true;
            }
        }
        if (in.ended) return false;
        std::string_view msg;
        int got = in.r.try_receive(msg);
        if (got == 0) {
            flush_all();  // about to sleep: nothing of ours may wait in a half-full batch
            got = in.r.receive(msg) ? 1 : -1;
        }
        if (got < 0) {
            in.ended = true;
            in.r.close();
            continue;
        }
        record_cursor c(msg);
        if (in.stats) in.stats->received.fetch_add(c.count(), std::memory_order_relaxed);
        if (items_in) count_items(*items_in, c.count());
        if (!in.reorder) {
            in.cur = c;
            return true;
        }
        record_view r;
        while (c.next(r)) in.reorder->add(r);
    }
}

bool stage_context::send(out_port& p) {
    if (p.count == 0) return true;
    set_message_count(p.buf, p.count);
    std::uint32_t n = p.count;
    p.count = 0;
    if (p.dead) return false;
    if (!p.w.send(p.buf)) {
        p.dead = true;
        return false;
    }
    if (p.stats) p.stats->sent.fetch_add(n, std::memory_order_relaxed);
    if (items_out) count_items(*items_out, n);
    return true;
}

bool stage_context::try_flush() {
    bool all = true;
    for (auto& p : outs) {
        if (p.count == 0) continue;
        set_message_count(p.buf, p.count);
        // One larger than half the ring would stream, and a streamed message blocks once begun.
        if (p.buf.size() > edge_capacity / 2 || !p.w.try_send(p.buf)) {
            all = false;
            continue;
        }
        if (p.stats) p.stats->sent.fetch_add(p.count, std::memory_order_relaxed);
        if (items_out) count_items(*items_out, p.count);
        p.count = 0;
    }
    if (all) {
        full_ = false;
        pending_since_ = -1;
    }
    return all;
}

void stage_context::flush_all() {
    full_ = false;
    pending_since_ = -1;
    bool any_alive = outs.empty();
    for (auto& p : outs) {
        send(p);
        any_alive = any_alive || !p.dead;
    }
    for (auto& x : xcuts) send(x.port);
    if (!any_alive) {
        stopped = true;
        throw downstream_gone{};
    }
}

// This stage numbers the inputs of an ordered group and is too far ahead of the reader after
// it: it sends what it has batched (the input that reader waits for may be in it) and sleeps
// until that reader passes inputs on, ends, or nobody reads this queue any more.
void stage_context::wait_window(out_port& p) {
    auto* w = p.stats;
    auto open = [&] {
        auto released = w->released.load(std::memory_order_acquire);
        return (static_cast<std::uint32_t>(p.next_seq) - released < max_ordered_inputs &&
                !w->held_over.load(std::memory_order_acquire)) ||
               w->window_gone.load(std::memory_order_acquire) || w->abandoned.load(std::memory_order_acquire);
    };
    for (;;) {
        if (open()) return;
        flush_all();
        w->writer_waiting.store(1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        // Read before the look: a change after it moves the word, and the wait returns at once.
        std::uint32_t events = w->window_events.load(std::memory_order_acquire);
        if (open()) return;
        sys::futex_wait(&w->window_events, events);
    }
}

void stage_context::emit_end_markers() {
    for (auto& p : outs) {
        if (p.mode != seq_mode::carry || p.dead) continue;
        if (p.count == 0) {
            begin_message(p.buf);
            if (pending_since_ < 0) pending_since_ = coarse_ms();
        }
        std::size_t start = begin_record(p.buf);
        append_pod(p.buf, *cur_seq);
        end_record(p.buf, start, rec_seq | rec_end);
        ++p.count;
        if (p.buf.size() >= flush_bytes) full_ = true;
    }
    if (full_) flush_all();
}

std::size_t stage_context::find_xcut(std::string_view want, std::type_index type) const {
    for (std::size_t k = 0; k < xcuts.size(); ++k) {
        if (xcuts[k].name != want) continue;
        if (xcuts[k].type != type)
            throw error("parafork: xcut '" + std::string(want) + "' takes " + type_name(xcuts[k].type) +
                        ", not " + type_name(type));
        return k;
    }
    std::string have;
    for (auto& x : xcuts) have += (have.empty() ? "" : ", ") + x.name;
    throw error("parafork: stage " + name + " has no xcut named '" + std::string(want) + "' (" +
                (have.empty() ? std::string("it has none") : "it has " + have) + ")");
}

// Our last item is out: the last writer of a queue ends it for each reader, right behind the
// data, so the readers need not wait for this process (or the parent) to notice anything.
void stage_context::end_output(out_port& p) {
    if (!p.stats || p.stats->writers_left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    for (std::uint32_t i = 0; i < p.stats->readers && !p.dead; ++i)
        if (!p.w.send(edge_end_marker)) p.dead = true;
}

void stage_context::finish() {
    try {
        flush_all();
    } catch (const downstream_gone&) {
    }
    if (outputs_closed && outputs_closed->exchange(1) == 0) {
        for (auto& p : outs) end_output(p);
        for (auto& x : xcuts) end_output(x.port);
    }
    for (auto& p : outs) p.w.close();
    for (auto& x : xcuts) x.port.w.close();
}

void stage_context::close_inputs() {
    for (auto& in : ins) in.r.close();
}

} // namespace parafork::detail

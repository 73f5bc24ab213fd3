#pragma once
// What a stage's process sees at run time (internal): its input queues, its output queues
// (several when it feeds a broadcast), its side-pipeline handles (xcut), the current item's
// meta map, and the batching that packs many items into one message.

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeindex>
#include <vector>

#include <parafork/exec/pipeline/detail/edge.hpp>
#include <parafork/exec/pipeline/detail/records.hpp>
#include <parafork/wire/codec.hpp>

namespace parafork::detail {

// Thrown through user code when nobody reads this stage's output any more: the stage ends
// quietly (like a shell filter whose reader went away).
struct downstream_gone {};

// How much the reader after an ordered group may hold behind one slow input (as `forked`
// with `ordered`): past either bound the stage that numbers the inputs sends no more.
inline constexpr std::uint32_t max_ordered_inputs = 4096;
inline constexpr std::size_t max_ordered_bytes = std::size_t{64} << 20;

// Restores input order behind an ordered parallel group: records carry the sequence number of
// the input they came from, and an `end` record closes each input. What it holds and what it
// has passed on go to `window` (the stats of the queue into the group), which bounds both.
class reorder_buffer {
public:
    explicit reorder_buffer(edge_stats* window = nullptr) noexcept : window_(window) {}
    void add(const record_view& r);
    // Builds into `msg` a message of every record now in order; false if there is none.
    bool pop(std::string& msg);
    // At the end of input: whatever is left, in sequence order.
    bool drain(std::string& msg);

private:
    struct entry {
        std::string records;
        std::uint32_t count = 0;
        bool done = false;
    };
    void publish() noexcept;

    std::map<std::uint64_t, entry> pending_;
    std::uint64_t next_ = 0;
    edge_stats* window_;
    std::size_t held_bytes_ = 0;
    bool over_ = false;
    // Records without a sequence number (put in a worker's setup or teardown, outside any
    // input) belong to no position: they are held back and delivered after every numbered one.
    std::string late_;
    std::uint32_t late_count_ = 0;
};

enum class seq_mode : std::uint8_t { none, assign, carry };

struct out_port {
    edge_writer w;
    std::string buf;
    std::uint32_t count = 0;
    seq_mode mode = seq_mode::none;
    std::uint64_t next_seq = 0;
    bool dead = false;
    edge_stats* stats = nullptr;
};

struct in_port {
    edge_reader r;
    record_cursor cur;
    bool ended = false;
    std::unique_ptr<reorder_buffer> reorder;
    std::string ordered_msg;
    edge_stats* stats = nullptr;
};

struct xcut_port {
    std::string name;
    std::type_index type = typeid(void);
    out_port port;
};

inline long coarse_ms() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

class stage_context {
public:
    static constexpr std::size_t flush_bytes = 64 * 1024;
    static constexpr long flush_age_ms = 5;

    std::string name;
    meta_map meta;
    std::optional<std::uint64_t> cur_seq;
    bool stopped = false;
    bool has_carry = false;
    std::vector<in_port> ins;
    std::vector<out_port> outs;
    std::vector<xcut_port> xcuts;
    outputs_closed_flag* outputs_closed = nullptr;  // this process's, in the shared mapping
    // The dashboard's count of items this stage took and put (one writer); null when it is off.
    std::atomic<std::uint64_t>* items_in = nullptr;
    std::atomic<std::uint64_t>* items_out = nullptr;
    // Set while a library source puts in the parent, before any fork (runtime::start): puts
    // only batch, up to what room() allows, and try_flush() sends without ever blocking.
    bool in_parent = false;
    static constexpr std::uint32_t parent_items = 1024;  // well inside an ordered window
    static constexpr std::size_t parent_bytes = 16 * 1024;

    // The next data record of input i; false at its end. Flushes pending output before it
    // sleeps, so nothing waits in a half-full batch while this stage is idle.
    bool next_record(std::size_t i, record_view& r) {
        auto& in = ins[i];
        for (;;) {
            if (in.cur.next(r)) {
                if (r.flags & rec_end) continue;
                return true;
            }
            if (!fetch(in)) return false;
        }
    }

    // An input record becomes the current item: its meta and sequence number apply to what
    // the stage puts while handling it.
    void begin_item(const record_view& r) {
        if (r.flags & rec_meta) meta = wire::decode<meta_map>(r.meta);
        else if (!meta.empty()) meta.clear();
        if (r.flags & rec_seq) cur_seq = r.seq;
        else cur_seq.reset();
    }
    void end_item() {
        if (cur_seq && has_carry) emit_end_markers();
        check_age();
    }
    // The input is over (teardown / finish next): what is put from now on belongs to no item,
    // so it carries neither the last item's sequence number nor its meta.
    void end_input() noexcept {
        cur_seq.reset();
        meta.clear();
    }

    template <class U>
    void put(const U& u) {
        bool any = false;
        for (auto& p : outs) {
            if (p.dead) continue;
            append(p, u, true);
            any = true;
        }
        if (!any && !outs.empty()) throw downstream_gone{};
        after_put();
    }

    template <class U>
    void put_xcut(std::size_t k, const U& u) {
        auto& p = xcuts[k].port;
        if (p.dead) return;
        append(p, u, false);
        after_put();
    }

    std::size_t find_xcut(std::string_view name, std::type_index type) const;
    // In the parent: true while every output's batch is below the parent's budget.
    bool room() const noexcept {
        for (auto& p : outs)
            if (p.count >= parent_items || p.buf.size() >= parent_bytes) return false;
        return true;
    }
    // Sends each batch if it fits in its queue now; false if one did not (it stays batched).
    bool try_flush();
    void flush_all();
    void finish();  // flush every output, count this stage out of its queues, close them
    void close_inputs();

private:
    template <class U>
    void append(out_port& p, const U& u, bool with_meta) {
        if (p.mode == seq_mode::assign && p.stats) {
            auto ahead = static_cast<std::uint32_t>(p.next_seq) - p.stats->released.load(std::memory_order_acquire);
            if (ahead >= max_ordered_inputs || p.stats->held_over.load(std::memory_order_acquire)) wait_window(p);
        }
        if (p.count == 0) {
            begin_message(p.buf);
            if (pending_since_ < 0) pending_since_ = coarse_ms();
        }
        std::size_t start = begin_record(p.buf);
        std::uint8_t flags = 0;
        if (p.mode == seq_mode::assign) {
            flags |= rec_seq;
            append_pod(p.buf, p.next_seq++);
        } else if (p.mode == seq_mode::carry && cur_seq) {
            flags |= rec_seq;
            append_pod(p.buf, *cur_seq);
        }
        if (with_meta && !meta.empty()) {
            flags |= rec_meta;
            std::size_t at = p.buf.size();
            append_pod(p.buf, std::uint32_t{0});
            wire::encode_to(p.buf, meta);
            auto ml = static_cast<std::uint32_t>(p.buf.size() - at - sizeof(std::uint32_t));
            std::memcpy(p.buf.data() + at, &ml, sizeof ml);
        }
        wire::encode_to(p.buf, u);
        end_record(p.buf, start, flags);
        ++p.count;
        if (p.buf.size() >= flush_bytes) full_ = true;
    }
    void after_put() {
        if (in_parent) return;
        if (full_) flush_all();
        else check_age();
    }
    void check_age() {
        if (pending_since_ >= 0 && coarse_ms() - pending_since_ >= flush_age_ms) flush_all();
    }
    bool fetch(in_port& in);
    void wait_window(out_port& p);
    void emit_end_markers();
    bool send(out_port& p);
    void end_output(out_port& p);

    long pending_since_ = -1;
    bool full_ = false;
};

} // namespace parafork::detail

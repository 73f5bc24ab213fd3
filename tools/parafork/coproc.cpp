// parafork coproc: N persistent copies of a filter that answers each record with exactly one
// record (procpool's evalLines), on the library's proc_pool. Output in input order.

#include "modes.hpp"
#include "output.hpp"
#include "progress.hpp"

#include <parafork/error.hpp>
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/signals.hpp>

#include <cerrno>
#include <cstdio>
#include <deque>
#include <poll.h>
#include <system_error>
#include <unistd.h>

namespace parafork::cli {
namespace {

// Records sent and not yet answered, kept (shortened) so an error can name the record.
class pending_records {
public:
    void add(std::string_view record) {
        std::string shown(record.substr(0, 60));
        if (record.size() > 60) shown += "...";
        recs_.push_back({std::move(shown), record.size() + 1, false});
        bytes_ += record.size() + 1;
    }
    void answered(std::size_t index) {
        if (index < base_ || index - base_ >= recs_.size()) return;
        recs_[index - base_].done = true;
        while (!recs_.empty() && recs_.front().done) {
            bytes_ -= recs_.front().bytes;
            recs_.pop_front();
            ++base_;
        }
    }
    std::string describe(std::size_t index) const {
        std::string s = "record " + std::to_string(index + 1);
        if (index >= base_ && index - base_ < recs_.size()) s += " '" + recs_[index - base_].text + "'";
        return s;
    }
    // The first `n` records not answered yet, for a message.
    std::string describe_first(std::size_t n) const {
        std::string s;
        for (std::size_t i = 0; i < recs_.size() && n; ++i) {
            if (recs_[i].done) continue;
            s += (s.empty() ? "" : ", ") + describe(base_ + i);
            --n;
        }
        return s;
    }
    std::size_t size() const { return recs_.size(); }
    std::size_t bytes() const { return bytes_; }

private:
    struct rec {
        std::string text;
        std::size_t bytes;
        bool done;
    };
    std::deque<rec> recs_;
    std::size_t base_ = 0, bytes_ = 0;
};

class coproc_run {
public:
    explicit coproc_run(const settings& s)
        : s_(s), bar_(s),
          pool_(kid_cmd(s.command), framing_for(s.record_sep), pool_options(s)) {}

    int run() {
        sys::sigint_guard sigint;
        sys::sigpipe_guard sigpipe;
        try {
            feed();
            flush_out();
            // Closes the copies' input first: filters that buffer (awk, sed) flush at EOF.
            closing_ = true;
            pool_.final_replies([&](std::size_t i, std::string_view r) { take(i, r); });
            flush_out();
        } catch (const interrupted&) {
            bar_.finish(progress());
            std::fprintf(stderr, "parafork coproc: interrupted; stopped every copy\n");
            return exit_interrupted;
        } catch (const output_closed&) {
            pool_.terminate();
            return exit_output_closed;
        } catch (const worker_died& e) {
            // A copy that exits normally at the end of its input while it still holds records
            // answered fewer records than it got (`grep x`): its answers were matched to the
            // wrong records, so none of the unwritten ones is trustworthy.
            if (closing_ && e.signal() == 0 && e.exit_code() == 0)
                return protocol_failure(e.what(), "a copy answered fewer records than it got");
            return fail(e.task(), e.what());
        } catch (const timeout_error& e) {
            return fail(e.task(), e.what());
        } catch (const protocol_error& e) {
            return protocol_failure(e.what(), "a copy sent more answers than it got records");
        }
        bar_.finish(progress());
        return 0;
    }

private:
    // The copies read and answer records ended by the same separator as ours.
    static frames::framing framing_for(char sep) {
        return sep == '\n' ? frames::lines : sep == '\0' ? frames::zero_term : frames::delimited(sep);
    }

    static options pool_options(const settings& s) {
        options o;
        o.dashboard = s.dashboard;
        o.name = "parafork coproc";
        o.jobs = s.jobs;
        o.ordered = s.ordered;
        o.task_timeout = s.timeout;
        o.grace = s.grace;
        o.name = "parafork-coproc";
        return o;
    }

    int fail(std::optional<std::size_t> task, const std::string& what) {
        pool_.terminate();
        try {
            flush_out();  // the answers before the failure are good
        } catch (...) {
        }
        bar_.finish(progress());
        if (task)
            std::fprintf(stderr, "parafork coproc: a copy of %s failed on %s: %s\n", s_.command[0].c_str(),
                         pending_.describe(*task).c_str(), what.c_str());
        else
            std::fprintf(stderr, "parafork coproc: %s\n", what.c_str());
        return 1;
    }

    // Out of protocol, answers were credited to the wrong records until the surplus (or the
    // shortfall, at EOF) showed: what is not written yet is dropped, not printed as answers.
    int protocol_failure(const std::string& what, const char* kind) {
        pool_.terminate();
        bar_.finish(progress());
        std::string held = held_records(what);
        std::fprintf(stderr,
                     "parafork coproc: %s out of protocol: %s (each record must be answered by exactly one "
                     "record); %s; %s\n",
                     s_.command[0].c_str(), kind,
                     held.empty() ? ("records still unanswered: " + unanswered()).c_str()
                                  : ("the copy held " + held).c_str(),
                     written_ ? ("answers after record " + std::to_string(written_) +
                                 " were not written (those before may be wrong too)")
                                    .c_str()
                              : "no answer was written");
        return 1;
    }

    // proc_pool names the requests a failed kid held ("... request(s): 3, 4"); 0-based.
    std::string held_records(std::string_view what) const {
        auto at = what.find("request(s): ");
        if (at == std::string_view::npos) return {};
        std::string s;
        std::size_t index = 0, digits = 0;
        for (char c : what.substr(at + 12)) {
            if (c >= '0' && c <= '9') {
                index = index * 10 + std::size_t(c - '0');
                ++digits;
                continue;
            }
            if (digits) s += (s.empty() ? "" : ", ") + pending_.describe(index);
            index = digits = 0;
            if (c != ',' && c != ' ') break;
        }
        if (digits) s += (s.empty() ? "" : ", ") + pending_.describe(index);
        return s;
    }

    std::string unanswered() const {
        std::string s = pending_.describe_first(4);
        return s.empty() ? "none" : s;
    }

    // Reads stdin in big chunks and sends each record; waits for answers when too many are out.
    void feed() {
        char buf[64 * 1024];
        std::string partial;
        for (;;) {
            wait_for_input();
            long n = ::read(0, buf, sizeof buf);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n < 0) sys::throw_errno("read stdin");
            if (n == 0) break;
            bytes_in_ += static_cast<std::size_t>(n);
            std::string_view chunk(buf, static_cast<std::size_t>(n));
            for (;;) {
                auto sep = chunk.find(s_.record_sep);
                if (sep == std::string_view::npos) break;
                if (partial.empty()) {
                    send(chunk.substr(0, sep));
                } else {
                    partial.append(chunk.substr(0, sep));
                    send(partial);
                    partial.clear();
                }
                chunk.remove_prefix(sep + 1);
            }
            partial.append(chunk);
            drain();
            bar_.update(progress());
        }
        if (!partial.empty()) send(partial);  // an unterminated last record is a record
    }

    void send(std::string_view record) {
        pending_.add(record);
        pool_.send(record);
        ++sent_;
        // Bounded memory: past the window, wait for answers before reading more.
        while (pending_.size() >= 4096 * std::size_t{s_.jobs} || pending_.bytes() >= (std::size_t{4} << 20) * s_.jobs) {
            flush_out();
            if (auto r = pool_.next_reply(true)) take(r->index, r->data);
            else break;
        }
    }

    // Takes every answer that is ready now.
    void drain() {
        while (auto r = pool_.next_reply(false)) take(r->index, r->data);
    }

    void take(std::size_t index, std::string_view answer) {
        pending_.answered(index);
        ++answered_;
        out_.append(answer);
        out_.push_back(s_.record_sep);
        if (out_.size() >= 256 * 1024) flush_out();
    }

    void flush_out() {
        if (out_.empty()) return;
        write_out(1, out_.data(), out_.size());
        out_.clear();
        written_ = answered_;
    }

    // Sleeps until stdin is readable; collects answers meanwhile so the copies never stall on
    // a full reply pipe while we wait for a slow producer. Ctrl-C ends the wait.
    void wait_for_input() {
        for (;;) {
            pollfd p[2] = {{0, POLLIN, 0}, {sys::sigint_guard::fd(), POLLIN, 0}};
            int r = ::poll(p, 2, pending_.size() ? 20 : -1);
            if (r < 0 && errno != EINTR) sys::throw_errno("poll");
            sys::sigint_guard::check();
            if (r > 0 && p[0].revents) return;
            drain();
            flush_out();
            bar_.update(progress());
        }
    }

    // A record is a job: sent is started, answered is completed.
    progress_state progress() const { return {sent_, sent_ - answered_, answered_, std::nullopt, {}}; }

    const settings& s_;
    progress_bar bar_;
    proc_pool pool_;
    pending_records pending_;
    std::string out_;
    std::size_t answered_ = 0, bytes_in_ = 0, sent_ = 0;
    std::size_t written_ = 0;  // answers written to stdout
    bool closing_ = false;     // the copies' input is closed: a copy exiting now exits normally
};

} // namespace

int run_coproc(const settings& s) {
    if (!s.joblog.empty()) {
        std::fprintf(stderr, "parafork coproc: --joblog is for pipe and run (coproc has no per-record jobs)\n");
        return exit_usage;
    }
    // Held from before the copies start: a Ctrl-C while they start must not be lost (nor,
    // with SIGINT ignored by whoever started us, ignored).
    sys::sigint_guard sigint;
    std::optional<coproc_run> run;
    try {
        run.emplace(s);
    } catch (const std::system_error& e) {
        std::fprintf(stderr, "parafork coproc: cannot start %s: %s\n", s.command[0].c_str(), e.what());
        return 127;
    }
    return run->run();
}

} // namespace parafork::cli

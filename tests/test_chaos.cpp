// Chaos soak: a killer process SIGKILLs random kids every few milliseconds while requests
// stream through; with retries every reply arrives exactly once and is correct. The same for
// a channel's senders and receivers, and for the stages of a running pipeline.
#include <parafork/error.hpp>
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/exec/coproc/proc_pool.hpp>
#include <parafork/exec/pipeline/stages.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <poll.h>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
namespace sys = parafork::sys;
using namespace std::chrono_literals;

namespace {

// From a process of its own, kills a random child of this process whose name starts with
// `prefix`, every `every_ms`, until stop(), which returns the number of kills (capped at 255).
class killer {
public:
    killer(std::string prefix, int every_ms) {
        auto stop = sys::make_pipe();
        stop_ = sys::private_fd(std::move(stop.write));  // private: the killer must not hold it
        proc_ = sys::child(sys::fork_call([target = ::getpid(), prefix, every_ms, fd = stop.read.get()] {
            std::mt19937 rng(42);
            int kills = 0;
            for (;;) {
                pollfd p{fd, POLLIN, 0};
                if (::poll(&p, 1, every_ms) != 0) break;
                std::vector<pid_t> victims;
                for (pid_t pid : pf::testing::child_pids_of(target)) {
                    auto name = pf::testing::read_proc("/proc/" + std::to_string(pid) + "/comm");
                    if (name.rfind(prefix, 0) == 0) victims.push_back(pid);
                }
                if (victims.empty()) continue;
                ::kill(victims[rng() % victims.size()], SIGKILL);
                ++kills;
            }
            sys::exit_child(std::min(kills, 255));
        }));
    }
    int stop() {
        stop_.reset();
        return proc_.wait().code;
    }

private:
    sys::private_fd stop_;
    sys::child proc_;
};

} // namespace

TEST(Chaos, ProcPoolWithRetriesLosesNothingWhileKidsAreKilled) {
    PARAFORK_LEAK_CHECK();
    // Sized to take seconds, not a minute, under a sanitizer on a busy 2-core machine: the
    // killer strikes every few milliseconds, so even this many requests see dozens of kills.
    // A sanitized respawn takes milliseconds, and a worker killed faster than it can finish a
    // batch wastes the batch, so there the work is smaller and the killer slower.
    constexpr std::size_t n = pf::testing::sanitized ? 100'000 : 300'000;
    pf::options o;
    o.jobs = 3;
    o.retries = 100;
    o.name = "chaos";
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, pf::frames::zero_term, [](std::string_view s) {
                             return std::to_string(3 * std::stoull(std::string(s)));
                         });
                     }),
                     pf::frames::zero_term, o);
    killer chaos("chaos#", pf::testing::sanitized ? 10 : 2);

    std::vector<char> seen(n, 0);
    std::size_t count = 0;
    std::vector<std::string> reqs;
    reqs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) reqs.push_back(std::to_string(i));
    pp.eval(reqs, [&](std::size_t i, std::string_view r) {
        ASSERT_LT(i, n);
        ASSERT_EQ(seen[i], 0) << "reply " << i << " arrived twice";
        seen[i] = 1;
        ++count;
        ASSERT_EQ(std::stoull(std::string(r)), 3 * i);
    });
    int kills = chaos.stop();
    EXPECT_EQ(count, n);
    EXPECT_GT(kills, 0) << "the killer never struck: the test proved nothing";
    RecordProperty("kills", kills);
    std::printf("kills: %d\n", kills);
}

TEST(Chaos, ProcPoolWithoutRetriesReportsTheLoss) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 2;
    o.name = "chaos";
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, pf::frames::lines, [](std::string_view s) {
                             ::usleep(100);
                             return std::string(s);
                         });
                     }),
                     pf::frames::lines, o);
    killer chaos("chaos#", 20);
    EXPECT_THROW(pp.eval(std::vector<std::string>(100000, "z"), [](std::string_view) {}), pf::worker_died);
    chaos.stop();
}

namespace {
std::vector<std::uint32_t> indices(std::size_t n) {
    std::vector<std::uint32_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint32_t>(i);
    return v;
}
std::uint64_t triple(std::uint32_t x) { return std::uint64_t{x} * 3; }
// The same after about 100 µs of work: a worker killed between tasks blames none (the next task
// runs on its replacement), so a kill must land mid-task for a task to be lost.
std::uint64_t slow_triple(std::uint32_t x) {
    auto until = std::chrono::steady_clock::now() + 100us;
    while (std::chrono::steady_clock::now() < until) {
    }
    return std::uint64_t{x} * 3;
}
} // namespace

TEST(Chaos, PoolWithRetriesLosesNothingWhileWorkersAreKilled) {
    PARAFORK_LEAK_CHECK();
    constexpr std::size_t n = pf::testing::sanitized ? 250'000 : 1'000'000;  // see above
    pf::options o;
    o.jobs = 3;
    o.retries = 1000;  // per task: a task can be lost many times in a row here
    o.name = "chaos";
    pf::pool p(o);
    auto in = indices(n);

    killer chaos("parafork:chaos", pf::testing::sanitized ? 10 : 2);
    std::vector<std::uint64_t> out;
    for (int round = 0; round < 3; ++round) {  // several rounds, so the killer strikes mid-run
        out = p.map(&triple, in);
        ASSERT_EQ(out.size(), n);
        for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], 3 * i) << "task " << i;
    }
    int kills = chaos.stop();
    EXPECT_GT(kills, 0) << "the killer never struck: the test proved nothing";
    std::printf("pool kills: %d\n", kills);
}

// Without retries a task is run alone (chunksize 1), so a worker killed under it is that
// task's worker_died (a killed multi-task batch would be split and re-run to find a culprit).
// Every position yields exactly once: its right value, or worker_died - never a hang, never
// a wrong or missing result - and the killer must have cost some tasks.
TEST(Chaos, PoolWithoutRetriesNeverHangsNorLies) {
    PARAFORK_LEAK_CHECK();
    pf::options o;
    o.jobs = 2;
    o.chunksize = 1;
    o.name = "chaos";
    pf::pool p(o);
    auto in = indices(2'000);  // 100 us each, 3 rounds: kills land in every round
    // Without retries every kill costs a task and a respawn; under ASan a respawn takes
    // milliseconds, so a kill every millisecond would make the run a minute or more of forks.
    killer chaos("parafork:chaos", pf::testing::sanitized ? 10 : 1);
    std::size_t died = 0, right = 0;
    for (int round = 0; round < 3; ++round) {
        std::size_t i = 0;
        auto seq = p.imap(&slow_triple, in);
        for (auto it = seq.begin(); it != seq.end(); ++it, ++i) {
            ASSERT_LT(i, in.size()) << "more answers than tasks";
            try {
                ASSERT_EQ(*it, 3 * i) << "task " << i;
                ++right;
            } catch (const pf::worker_died& e) {
                EXPECT_EQ(e.signal(), SIGKILL);
                ++died;
            }
        }
        ASSERT_EQ(i, in.size()) << "a task never answered";
    }
    EXPECT_GT(chaos.stop(), 0);
    EXPECT_GT(died, 0u) << "no task was lost: the loss path was never taken";
    EXPECT_EQ(right + died, 3 * in.size());
    std::printf("pool without retries: %zu tasks lost to kills\n", died);
}

// With retries, imap_unordered names each answer's index: an answer delivered twice, or one
// lost, shows in the per-index count.
TEST(Chaos, PoolImapWithRetriesDeliversEachIndexOnce) {
    PARAFORK_LEAK_CHECK();
    constexpr std::size_t n = 100'000;
    pf::options o;
    o.jobs = 3;
    o.retries = 1000;
    o.name = "chaos";
    pf::pool p(o);
    auto in = indices(n);
    killer chaos("parafork:chaos", 2);
    for (int round = 0; round < 3; ++round) {
        std::vector<std::uint8_t> seen(n, 0);
        std::size_t count = 0;
        for (auto&& [i, r] : p.imap_unordered(&triple, in)) {
            ASSERT_LT(i, n);
            ASSERT_EQ(seen[i]++, 0) << "answer " << i << " delivered twice";
            ASSERT_EQ(r, 3 * i);
            ++count;
        }
        ASSERT_EQ(count, n);
    }
    EXPECT_GT(chaos.stop(), 0) << "the killer never struck: the test proved nothing";
}

namespace {

// A channel message: id, a payload derived from the id (its length too), and a checksum over
// both, so a torn, mixed or corrupted message is caught by the receiver.
std::uint64_t fnv(std::string_view s) {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h;
}
// Every 97th message is 40-200 KB: some fit the 64 KiB rings below whole, most stream.
std::size_t payload_size(std::uint32_t id) {
    return id % 97 == 0 ? 40'000 + (id * 7919u) % 160'000 : 8 + (id * 7919u) % 1500;
}
std::string make_message(std::uint32_t id) {
    std::string m(sizeof id + payload_size(id), '\0');
    std::memcpy(m.data(), &id, sizeof id);
    for (std::size_t k = sizeof id; k < m.size(); ++k) m[k] = static_cast<char>(id * 31 + k * 17);
    std::uint64_t h = fnv(m);
    m.append(reinterpret_cast<const char*>(&h), sizeof h);
    return m;
}
// The id of a well-formed message, or -1.
long check_message(const std::string& m, std::uint32_t ids) {
    std::uint32_t id;
    std::uint64_t h;
    if (m.size() < sizeof id + sizeof h) return -1;
    std::memcpy(&id, m.data(), sizeof id);
    std::memcpy(&h, m.data() + m.size() - sizeof h, sizeof h);
    if (id >= ids || m.size() != sizeof id + payload_size(id) + sizeof h) return -1;
    if (fnv(std::string_view(m).substr(0, m.size() - sizeof h)) != h) return -1;
    return id;
}

// A receiver's whole life: counts each well-formed message by id, each torn one in `torn`, until
// channel_closed (a hang is a timeout_error, which fails the child).
void receive_and_count(pf::channel& ch, std::uint32_t ids, std::atomic<std::uint8_t>* counts,
                       std::atomic<std::uint64_t>* torn) {
    std::string m;
    try {
        for (;;) {
            ch.receive_bytes_for(m, std::chrono::seconds(20));
            long id = check_message(m, ids);
            if (id < 0) torn->fetch_add(1);
            else counts[id].fetch_add(1);
        }
    } catch (const pf::channel_closed&) {
    }
}

} // namespace

// Senders SIGKILLed every few milliseconds (some mid-message: most of every 97th message is
// larger than the ring) while receivers drain the channel: each message arrives whole and at most
// once, a sender's delivered messages are exactly those it finished (a prefix of its own), no
// receiver hangs, and every receiver ends with channel_closed once the senders are gone.
// Receivers are not killed here, which is what makes that prefix exact
// (Chaos.ChannelSendersAndReceiversKilled kills both sides).
TEST(Chaos, ChannelSendersKilledNeverTearNorDuplicate) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("channel chaos", 90, [] {
        PARAFORK_LEAK_CHECK();  // in the bounded child too: its own children and descriptors
        constexpr std::uint32_t slots = 60, per_slot = 400, ids = slots * per_slot;
        constexpr int live_senders = 4, receivers = 3;
        // The killer first: a process forked while the channel exists holds an end of it.
        killer chaos("chsend", 3);

        sys::mapping shared(-1, ids + sizeof(std::uint64_t));
        auto* counts = reinterpret_cast<std::atomic<std::uint8_t>*>(shared.data());
        auto* torn = reinterpret_cast<std::atomic<std::uint64_t>*>(shared.bytes() + ids);
        pf::channel ch(64 * 1024);
        ch.close();  // the parent never sends; senders forked later still get their own end
        std::vector<sys::child> recv;
        for (int r = 0; r < receivers; ++r)
            recv.emplace_back(sys::fork_call([&] { receive_and_count(ch, ids, counts, torn); }));

        sys::child_options named;
        named.title = "chsend";
        auto start_sender = [&](std::uint32_t slot) {
            return sys::child(sys::fork_call(
                [&, slot] {
                    for (std::uint32_t i = 0; i < per_slot; ++i)
                        ch.send_bytes(make_message(slot * per_slot + i));
                },
                named));
        };
        std::vector<std::pair<std::uint32_t, sys::child>> running;
        std::vector<bool> finished(slots, false);  // the slot's sender exited normally
        std::uint32_t next = 0;
        int killed = 0;
        while (next < slots || !running.empty()) {
            while (next < slots && running.size() < live_senders) {
                running.emplace_back(next, start_sender(next));
                ++next;
            }
            for (auto it = running.begin(); it != running.end();) {
                if (auto st = it->second.try_wait()) {
                    if (st->ok()) finished[it->first] = true;
                    else {
                        EXPECT_EQ(st->signal, SIGKILL) << st->describe();
                        ++killed;
                    }
                    it = running.erase(it);
                } else {
                    ++it;
                }
            }
            std::this_thread::sleep_for(1ms);
        }
        chaos.stop();
        for (auto& r : recv)
            EXPECT_TRUE(r.wait().ok()) << "a receiver did not end with channel_closed";

        EXPECT_EQ(torn->load(), 0u);
        for (std::uint32_t s = 0; s < slots; ++s) {
            std::uint32_t delivered = 0;
            while (delivered < per_slot && counts[s * per_slot + delivered].load() == 1)
                ++delivered;
            if (finished[s]) {
                EXPECT_EQ(delivered, per_slot) << "slot " << s;
            }
            for (std::uint32_t i = delivered; i < per_slot; ++i)
                ASSERT_EQ(counts[s * per_slot + i].load(), 0)
                    << "message " << s * per_slot + i << " delivered twice or out of order";
        }
        EXPECT_LE(ch.dropped_messages(), static_cast<std::uint64_t>(killed));
        EXPECT_GT(killed, 0) << "the killer never struck: the test proved nothing";
        std::printf("channel: %d senders killed, %llu messages dropped\n", killed,
                    static_cast<unsigned long long>(ch.dropped_messages()));
        std::fflush(stdout);
    });
}

// Senders and receivers of one channel SIGKILLed at random every few milliseconds, each
// replaced as it dies. A message taken by a receiver that is then killed (before or after it
// counted it) is lost to the test, so nothing here claims every message arrives: only that
// none is torn, none is delivered twice, every delivered one was sent, and nobody hangs.
// Phase 1 (the chaos): the parent holds a send and a receive end, so neither side can see the
// other gone for good. Its end: the killer stops, the parent sends one message (which gives
// its receive end up) and closes its send end; the surviving receivers must get that message
// and then channel_closed. Phase 2: two senders stream while two receivers drain, the
// receivers are SIGKILLed, and the senders, waiting for room, must get channel_closed.
TEST(Chaos, ChannelSendersAndReceiversKilled) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("channel chaos, both sides", 90, [] {
        PARAFORK_LEAK_CHECK();
        constexpr std::uint32_t slots = 40, per_slot = 400;
        constexpr std::uint32_t parent_id = slots * per_slot;
        constexpr std::uint32_t base2 = parent_id + 1, per_slot2 = 1u << 20;  // phase 2 never runs out
        constexpr std::uint32_t ids = base2 + 2 * per_slot2;
        constexpr std::size_t live_senders = 3, live_receivers = 3;
        constexpr int closed_code = 3;  // a sender's exit code when its send threw channel_closed
        killer chaos("chx-", 3);

        // Per id: deliveries, and whether a sender began sending it; then the torn count, the
        // go flag of phase 2's receivers and how many of them started.
        constexpr std::size_t flags_bytes = (2 * std::size_t{ids} + 63) & ~std::size_t{63};  // aligned
        sys::mapping shared(-1, flags_bytes + 3 * sizeof(std::uint64_t));
        auto* counts = reinterpret_cast<std::atomic<std::uint8_t>*>(shared.data());
        auto* sent = counts + ids;
        auto* torn = reinterpret_cast<std::atomic<std::uint64_t>*>(shared.bytes() + flags_bytes);
        auto* go = torn + 1;
        auto* started = torn + 2;
        pf::channel ch(64 * 1024);

        sys::child_options recv_opts, send_opts;
        recv_opts.title = "chx-recv";
        send_opts.title = "chx-send";
        auto start_receiver = [&](bool wait_for_go) {
            return sys::child(sys::fork_call(
                [&, wait_for_go] {
                    started->fetch_add(1);
                    while (wait_for_go && go->load() == 0) std::this_thread::sleep_for(1ms);
                    receive_and_count(ch, ids, counts, torn);
                },
                recv_opts));
        };
        auto start_sender = [&](std::uint32_t first, std::uint32_t n) {
            return sys::child(sys::fork_call(
                [&, first, n] {
                    try {
                        for (std::uint32_t id = first; id < first + n; ++id) {
                            sent[id].store(1);
                            ch.send_bytes(make_message(id));
                        }
                    } catch (const pf::channel_closed&) {
                        sys::exit_child(closed_code);
                    }
                },
                send_opts));
        };

        // Phase 1.
        std::vector<sys::child> senders, receivers;
        std::uint32_t next = 0;
        int senders_killed = 0, receivers_killed = 0, senders_done = 0;
        auto reap = [](std::vector<sys::child>& kids, auto&& on_exit) {
            for (auto it = kids.begin(); it != kids.end();) {
                if (auto st = it->try_wait()) {
                    on_exit(*st);
                    it = kids.erase(it);
                } else {
                    ++it;
                }
            }
        };
        while (next < slots || !senders.empty()) {
            while (receivers.size() < live_receivers) receivers.push_back(start_receiver(false));
            while (next < slots && senders.size() < live_senders) {
                senders.push_back(start_sender(next * per_slot, per_slot));
                ++next;
            }
            reap(senders, [&](const sys::exit_status& st) {
                if (st.ok()) ++senders_done;
                else if (st.signal == SIGKILL) ++senders_killed;
                else ADD_FAILURE() << "a sender ended with " << st.describe();
            });
            reap(receivers, [&](const sys::exit_status& st) {
                // The parent's send end is open: no receiver may see the channel closed yet.
                if (st.signal == SIGKILL) ++receivers_killed;
                else ADD_FAILURE() << "a receiver ended with " << st.describe() << " mid-run";
            });
            std::this_thread::sleep_for(1ms);
        }
        int kills = chaos.stop();
        reap(receivers, [&](const sys::exit_status& st) {
            if (st.signal == SIGKILL) ++receivers_killed;
            else ADD_FAILURE() << "a receiver ended with " << st.describe() << " mid-run";
        });
        while (receivers.size() < live_receivers) receivers.push_back(start_receiver(false));
        sent[parent_id].store(1);
        ch.send_bytes(make_message(parent_id));  // the parent's receive end goes with it
        ch.close();
        // The killer's last strikes may not have been reapable yet above (a SIGKILL is delivered
        // asynchronously, and on a busy machine more than one can land between two reaps): a
        // SIGKILL here is one of them, never more than the killer made (a victim of SIGKILL runs
        // no code after it, so none of these can have misbehaved first).
        int late_kills = 0;
        for (auto& r : receivers) {
            auto st = r.wait_for(15s);
            ASSERT_TRUE(st) << "a receiver hangs after every sender is gone";
            if (st->signal == SIGKILL) ++late_kills;
            else EXPECT_TRUE(st->ok()) << "a receiver did not end with channel_closed: " << st->describe();
        }
        receivers_killed += late_kills;
        if (kills < 255) {  // the killer's count is an exit code: exact below 255
            EXPECT_LE(senders_killed + receivers_killed, kills) << "SIGKILLs the killer never sent";
        }
        receivers.clear();
        EXPECT_EQ(counts[parent_id].load(), 1) << "sent after the last kill, to live receivers";

        // Phase 2. The receivers wait for the senders to exist before their first receive
        // (which gives their send ends up), or they could see the channel closed at once; the
        // senders cannot see "no receiver" in between, as the receivers hold receive ends
        // from their fork on.
        started->store(0);
        for (int r = 0; r < 2; ++r) receivers.push_back(start_receiver(true));
        for (std::uint32_t s = 0; s < 2; ++s) senders.push_back(start_sender(base2 + s * per_slot2, per_slot2));
        go->store(1);
        // Once each sender's first messages got through, the receivers die mid-stream. Both
        // must have started: one killed before its fork handler ran would count as a receiver
        // for 3 s more (the documented limit of pending ends), which is not what this tests.
        auto delivered_some = [&] {
            if (started->load() != 2) return false;
            for (std::uint32_t s = 0; s < 2; ++s)
                for (std::uint32_t i = 0; i < 3; ++i)
                    if (counts[base2 + s * per_slot2 + i].load() == 0) return false;
            return true;
        };
        auto t0 = std::chrono::steady_clock::now();
        while (!delivered_some() && std::chrono::steady_clock::now() - t0 < 15s)
            std::this_thread::sleep_for(1ms);
        ASSERT_TRUE(delivered_some()) << "phase 2 never got going";
        for (auto& r : receivers) {
            r.signal(SIGKILL);
            EXPECT_EQ(r.wait().signal, SIGKILL);
        }
        for (auto& s : senders) {
            auto st = s.wait_for(15s);
            ASSERT_TRUE(st) << "a sender whose receivers all died hangs";
            EXPECT_EQ(st->code, closed_code) << "a sender whose receivers all died: " << st->describe();
        }
        senders.clear();

        EXPECT_EQ(torn->load(), 0u) << "torn messages";
        std::uint64_t delivered = 0;
        for (std::uint32_t id = 0; id < ids; ++id) {
            auto c = counts[id].load();
            ASSERT_LE(c, 1) << "message " << id << " delivered twice";
            if (c) {
                ASSERT_EQ(sent[id].load(), 1) << "message " << id << " delivered, never sent";
            }
            delivered += c;
        }
        EXPECT_GT(senders_killed, 0) << "the killer never struck a sender";
        EXPECT_GT(receivers_killed, 0) << "the killer never struck a receiver";
        std::printf("channel, both sides: %d senders killed, %d finished, %d receivers killed, "
                    "%llu messages delivered, %llu dropped\n",
                    senders_killed, senders_done, receivers_killed,
                    static_cast<unsigned long long>(delivered),
                    static_cast<unsigned long long>(ch.dropped_messages()));
        std::fflush(stdout);
    });
}

namespace {
struct Slow : pf::stage<int> {
    void process(int x) {
        ::usleep(500);
        put(x);
    }
};
int add1(int x) { return x + 1; }
} // namespace

// A running pipeline loses a random stage process to SIGKILL, round after round: join reports
// worker_died for it promptly, and nothing of the pipeline stays behind.
TEST(Chaos, PipelineStageKilledIsWorkerDiedEveryRound) {
    pf::testing::run_bounded("pipeline chaos", 90, [] {
        std::mt19937 rng(7);
        for (int round = 0; round < 6; ++round) {
            PARAFORK_LEAK_CHECK();
            auto p = pf::ez(pf::constant(7), pf::workers(2, add1), pf::named("slow", Slow{}), add1);
            p.start();
            auto pids = p.pids();
            ASSERT_FALSE(pids.empty());
            std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 30));
            pid_t victim = pids[rng() % pids.size()];
            ASSERT_EQ(::kill(victim, SIGKILL), 0);
            auto t0 = std::chrono::steady_clock::now();
            try {
                p.join();
                ADD_FAILURE() << "round " << round << ": no exception";
            } catch (const pf::worker_died& e) {
                EXPECT_EQ(e.pid(), victim) << "round " << round << ": " << e.what();
                EXPECT_EQ(e.signal(), SIGKILL);
            }
            EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "round " << round;
            for (pid_t pid : pids)
                EXPECT_NE(::kill(pid, 0), 0) << "round " << round << ": " << pid << " survived";
        }
    });
}

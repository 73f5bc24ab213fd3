// parafork::channel: typed and raw messages, sizes from 0 B to 64 MiB through a 64 KiB ring,
// many senders and receivers, closure, and peers killed in the middle of a message.

#include <parafork/ipc/channel.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include "support/leak_check.hpp"
#include "../src/ipc/channel_layout.hpp"  // a test that writes the ring as a hostile peer would

#include <atomic>
#include <stdexcept>
#include <unistd.h>
#include <fcntl.h>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace pf = parafork;
using namespace std::chrono_literals;

namespace {

std::string pattern(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& c : s) {
        x = x * 1664525u + 1013904223u;
        c = static_cast<char>(x >> 24);
    }
    return s;
}

// Mappings of this process: all of them, and those of memfds (what parafork maps). Sanitizer
// runtimes map memory as they go, so under them only the memfd count is compared.
using parafork::testing::expect_same_maps;
using parafork::testing::map_count;

} // namespace

TEST(channel, typed_round_trip_in_one_process) {
    PARAFORK_LEAK_CHECK();
    pf::channel ch(4096);
    ch.send(42);
    ch.send(std::string("hello"));
    ch.send(std::vector<double>{1.5, 2.5});
    ch.send(std::string());
    EXPECT_EQ(ch.receive<int>(), 42);
    EXPECT_EQ(ch.receive<std::string>(), "hello");
    EXPECT_EQ(ch.receive<std::vector<double>>(), (std::vector<double>{1.5, 2.5}));
    EXPECT_EQ(ch.receive<std::string>(), "");
    EXPECT_FALSE(ch.try_receive<int>().has_value());
    EXPECT_THROW(ch.receive_for<int>(10ms), pf::timeout_error);
}

TEST(channel, try_send_and_send_for_respect_a_full_ring) {
    PARAFORK_LEAK_CHECK();
    pf::channel ch(256);
    EXPECT_EQ(ch.capacity(), 256u);
    std::string msg(100, 'x'), out;
    // This process receives too (else a send that must wait finds no receiver: channel_closed).
    EXPECT_TRUE(ch.try_send_bytes(msg));
    ASSERT_TRUE(ch.try_receive_bytes(out));
    EXPECT_TRUE(ch.try_send_bytes(msg));   // 16 + 112 bytes
    EXPECT_TRUE(ch.try_send_bytes(msg));   // ring full now
    EXPECT_FALSE(ch.try_send_bytes(msg));
    EXPECT_THROW(ch.send_bytes_for(msg, 5ms), pf::timeout_error);
    ASSERT_TRUE(ch.try_receive_bytes(out));
    EXPECT_EQ(out, msg);
    EXPECT_TRUE(ch.try_send_bytes(msg));
}

TEST(channel, close_forbids_sending_here) {
    PARAFORK_LEAK_CHECK();
    pf::channel ch(1024);
    ch.close();
    EXPECT_THROW(ch.send(1), pf::channel_closed);
    // Nobody may send any more: a receiver learns it instead of waiting.
    EXPECT_THROW(ch.receive<int>(), pf::channel_closed);
}

TEST(channel, sizes_from_zero_to_64_mib_through_a_64_kib_ring) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("sizes", 100, [] {
        static const std::vector<std::size_t> sizes = {
            0, 1, 7, 8, 15, 16, 17, 100, 4095, 65536 - 32, 65536 - 16, 65536, 65537,
            200000, std::size_t{1} << 20, (std::size_t{1} << 20) + 3, std::size_t{64} << 20};
        pf::channel ch(64 * 1024);
        pf::sys::child sender(pf::sys::fork_call([&] {
            for (std::size_t i = 0; i < sizes.size(); ++i) ch.send_bytes(pattern(sizes[i], static_cast<unsigned>(i)));
        }));
        std::string got;
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            ch.receive_bytes_for(got, 30s);
            ASSERT_EQ(got.size(), sizes[i]);
            ASSERT_TRUE(got == pattern(sizes[i], static_cast<unsigned>(i))) << "message " << i;
        }
        EXPECT_THROW(ch.receive_bytes_for(got, 30s), pf::channel_closed);
        EXPECT_TRUE(sender.wait().ok());
        EXPECT_EQ(ch.dropped_messages(), 0u);
    });
}

TEST(channel, receivers_see_closed_once_every_sender_is_gone) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("closed", 60, [] {
        pf::channel ch(1024);
        std::vector<pf::sys::child> kids;
        for (int k = 0; k < 2; ++k)
            kids.emplace_back(pf::sys::fork_call([&, k] {
                for (int i = 0; i < 500; ++i) ch.send(k * 1000 + i);
            }));
        int count = 0;
        long sum = 0;
        try {
            for (;;) {
                sum += ch.receive<int>();
                ++count;
            }
        } catch (const pf::channel_closed&) {
        }
        EXPECT_EQ(count, 1000);
        EXPECT_EQ(sum, 2 * (499L * 500 / 2) + 500L * 1000);
        for (auto& k : kids) EXPECT_TRUE(k.wait().ok());
    });
}

TEST(channel, four_senders_four_receivers_each_message_once) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("mpmc", 110, [] {
        constexpr std::uint32_t per_sender = 250'000;  // 1,000,000 messages in all
        constexpr int senders = 4, receivers = 4;
        pf::sys::mapping seen(-1, senders * per_sender);  // shared counters, one per message
        auto* counts = reinterpret_cast<std::atomic<std::uint8_t>*>(seen.data());
        pf::channel ch(64 * 1024);
        std::vector<pf::sys::child> kids;
        for (int r = 0; r < receivers; ++r)
            kids.emplace_back(pf::sys::fork_call([&] {
                try {
                    for (;;) {
                        auto id = ch.receive<std::uint32_t>();
                        counts[id].fetch_add(1, std::memory_order_relaxed);
                    }
                } catch (const pf::channel_closed&) {
                }
            }));
        for (int s = 0; s < senders; ++s)
            kids.emplace_back(pf::sys::fork_call([&, s] {
                for (std::uint32_t i = 0; i < per_sender; ++i) ch.send(static_cast<std::uint32_t>(s * per_sender + i));
            }));
        ch.close();  // the parent sends nothing: only the senders' ends remain
        for (auto& k : kids) EXPECT_TRUE(k.wait().ok());
        std::size_t wrong = 0;
        for (std::uint32_t i = 0; i < senders * per_sender; ++i)
            if (counts[i].load() != 1) ++wrong;
        EXPECT_EQ(wrong, 0u);
    });
}

TEST(channel, sender_killed_mid_message_is_dropped_not_torn) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("killed sender", 60, [] {
        pf::channel ch(64 * 1024);
        pf::sys::child sender(pf::sys::fork_call([&] { ch.send_bytes(pattern(8 << 20, 1)); }));
        // Nobody reads yet: the sender fills the ring and waits, in the middle of its message.
        while (ch.size_bytes() < 32 * 1024) std::this_thread::sleep_for(1ms);
        sender.signal(SIGKILL);
        EXPECT_EQ(sender.wait().signal, SIGKILL);
        pf::channel results(4096);
        pf::sys::child receiver(pf::sys::fork_call([&] {
            std::vector<std::string> got;
            try {
                for (;;) got.push_back(ch.receive_for<std::string>(20s));
            } catch (const pf::channel_closed&) {
            }
            results.send(got);
        }));
        ch.send(std::string("after"));  // first voids the dead sender's message
        ch.close();
        auto got = results.receive_for<std::vector<std::string>>(30s);
        EXPECT_TRUE(receiver.wait().ok());
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0], "after");
        EXPECT_EQ(ch.dropped_messages(), 1u);
    });
}

namespace {
std::atomic<bool> g_alarm{false};
struct interrupted_by_test {};
void note_alarm(int) { g_alarm = true; }
void throw_after_alarm() {
    if (g_alarm.exchange(false)) throw interrupted_by_test{};
}
} // namespace

// A binding's interruption check (Python's handlers) may end a wait by throwing. A sender
// stopped so in the middle of a streamed message voids it, as a dead sender's: the receiver
// gets the next message whole and counts the void one as dropped.
TEST(channel, a_send_interrupted_mid_message_voids_it) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("interrupted send", 60, [] {
        pf::channel ch(64 * 1024);
        pf::channel results(4096);
        int go[2];
        ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
        pf::sys::child receiver(pf::sys::fork_call([&] {
            char c;
            if (::read(go[0], &c, 1) != 1) throw std::runtime_error("no go");
            std::vector<std::string> got;
            try {
                for (;;) got.push_back(ch.receive_for<std::string>(20s));
            } catch (const pf::channel_closed&) {
            }
            results.send(got);
        }));
        ::close(go[0]);
        struct sigaction sa {};
        sa.sa_handler = note_alarm;
        ASSERT_EQ(::sigaction(SIGALRM, &sa, nullptr), 0);
        pf::sys::set_interruption_check(throw_after_alarm);
        ::alarm(1);  // while the send waits for room nobody makes
        bool interrupted = false;
        try {
            ch.send_bytes(pattern(8 << 20, 3));
        } catch (const interrupted_by_test&) {
            interrupted = true;
        }
        pf::sys::set_interruption_check(nullptr);
        EXPECT_TRUE(interrupted);
        ASSERT_EQ(::write(go[1], "g", 1), 1);
        ::close(go[1]);
        ch.send(std::string("after"));
        ch.close();
        auto got = results.receive_for<std::vector<std::string>>(30s);
        EXPECT_TRUE(receiver.wait().ok());
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0], "after");
        EXPECT_EQ(ch.dropped_messages(), 1u);
    });
}

TEST(channel, sender_killed_while_a_receiver_waits_mid_message) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("killed sender, waiting receiver", 60, [] {
        pf::channel ch(64 * 1024);
        pf::channel results(4096);
        pf::sys::child sender(pf::sys::fork_call([&] { ch.send_bytes(pattern(64 << 20, 2)); }));
        // Nobody reads yet: the sender fills the ring and waits in the middle of its message
        // (the parent's receive end keeps it waiting). Stopped there, it cannot finish.
        while (ch.size_bytes() < 32 * 1024) std::this_thread::sleep_for(1ms);
        sender.signal(SIGSTOP);
        pf::sys::child receiver(pf::sys::fork_call([&] {
            std::size_t got = 0;
            try {
                for (;;) {
                    std::string m;
                    ch.receive_bytes_for(m, 20s);
                    ++got;
                }
            } catch (const pf::channel_closed&) {
                results.send(got);
            }
        }));
        ch.close();  // the sender is the only end left
        // The receiver drained every piece there is: it now waits for the rest of the message.
        while (ch.size_bytes() != 0) std::this_thread::sleep_for(1ms);
        sender.signal(SIGKILL);
        EXPECT_EQ(sender.wait().signal, SIGKILL);
        EXPECT_EQ(results.receive_for<std::size_t>(30s), 0u);  // closed, nothing torn delivered
        EXPECT_TRUE(receiver.wait().ok());
        EXPECT_EQ(ch.dropped_messages(), 1u);
    });
}

TEST(channel, receiver_after_a_killed_receiver_gets_whole_messages) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("killed receiver, raw", 60, [] {
        const std::string big = pattern(32 << 20, 4);
        pf::channel ch(64 * 1024);
        pf::channel results(4096);
        pf::sys::child sender(pf::sys::fork_call([&] {
            ch.send_bytes(big);
            ch.send_bytes("after");
        }));
        ch.close();
        while (ch.size_bytes() < 32 * 1024) std::this_thread::sleep_for(1ms);
        sender.signal(SIGSTOP);  // mid-message: the big one cannot be over
        pf::sys::child first(pf::sys::fork_call([&] {
            std::string m;
            for (;;) ch.receive_bytes(m);
        }));
        // The first receiver drained the ring and waits inside the big message: kill it there.
        while (ch.size_bytes() != 0) std::this_thread::sleep_for(1ms);
        first.signal(SIGKILL);
        EXPECT_EQ(first.wait().signal, SIGKILL);
        sender.signal(SIGCONT);
        pf::sys::child second(pf::sys::fork_call([&] {
            std::vector<std::size_t> sizes;
            bool intact = true;
            try {
                for (;;) {
                    std::string m;
                    ch.receive_bytes_for(m, 20s);
                    sizes.push_back(m.size());
                    if (m != big && m != "after") intact = false;
                }
            } catch (const pf::channel_closed&) {
            }
            results.send(std::make_pair(intact, sizes));
        }));
        EXPECT_TRUE(sender.wait().ok());
        auto [intact, sizes] = results.receive_for<std::pair<bool, std::vector<std::size_t>>>(30s);
        EXPECT_TRUE(second.wait().ok());
        EXPECT_TRUE(intact);
        // The big message went with the first receiver; the rest of it is skipped, not torn.
        EXPECT_EQ(sizes, std::vector<std::size_t>{5});
    });
}

TEST(channel, a_sender_waiting_for_room_learns_that_its_receiver_died) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("dead receiver", 60, [] {
        pf::channel ch(64 * 1024);
        pf::channel results(4096);
        pf::sys::child receiver(pf::sys::fork_call([] { ::pause(); }));  // holds a receive end
        EXPECT_EQ(ch.open_receivers(), 2u);                              // the parent's and its
        // Fill the ring: the next send has to wait for room.
        while (ch.try_send_bytes(std::string(1000, 'a'))) {
        }
        EXPECT_EQ(ch.open_receivers(), 1u);  // sending first gave the parent's receive end up
        std::thread killer([&] {
            std::this_thread::sleep_for(50ms);
            receiver.signal(SIGKILL);
        });
        auto start = std::chrono::steady_clock::now();
        EXPECT_THROW(ch.send_bytes(std::string(1000, 'b')), pf::channel_closed);
        EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);  // a bound, not a timing goal
        killer.join();
        EXPECT_EQ(receiver.wait().signal, SIGKILL);
        EXPECT_EQ(ch.open_receivers(), 0u);
        // A message larger than the ring, stopped part way for the same reason, is voided: a
        // receiver forked later gets what was whole, drops the piece, then takes what follows.
        pf::channel big_ch(64 * 1024);
        pf::sys::child doomed(pf::sys::fork_call([] { ::pause(); }));
        std::thread killer2([&] {
            while (big_ch.size_bytes() < 32 * 1024) std::this_thread::sleep_for(1ms);
            doomed.signal(SIGKILL);
        });
        EXPECT_THROW(big_ch.send_bytes(pattern(1 << 20, 5)), pf::channel_closed);
        killer2.join();
        EXPECT_EQ(doomed.wait().signal, SIGKILL);
        pf::sys::child late(pf::sys::fork_call([&] {
            std::vector<std::string> got;
            try {
                for (;;) got.push_back(big_ch.receive_for<std::string>(20s));
            } catch (const pf::channel_closed&) {
            }
            results.send(got);
        }));
        big_ch.send(std::string("after"));  // waits for the late receiver to make room
        big_ch.close();
        EXPECT_EQ(results.receive_for<std::vector<std::string>>(30s), std::vector<std::string>{"after"});
        EXPECT_TRUE(late.wait().ok());
        EXPECT_EQ(big_ch.dropped_messages(), 1u);
    });
}

TEST(channel, send_for_bounds_the_whole_message) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("send_for", 60, [] {
        pf::channel ch(64 * 1024), go(4096), results(4096);
        pf::sys::child receiver(pf::sys::fork_call([&] {
            (void)go.receive<int>();  // alive, but reads nothing until told to
            std::vector<std::size_t> sizes;
            try {
                for (;;) {
                    std::string m;
                    ch.receive_bytes_for(m, 20s);
                    sizes.push_back(m.size());
                }
            } catch (const pf::channel_closed&) {
            }
            results.send(sizes);
        }));
        auto start = std::chrono::steady_clock::now();
        // 1 MiB through 64 KiB: it starts at once, then runs out of time part way.
        EXPECT_THROW(ch.send_bytes_for(pattern(1 << 20, 6), 200ms), pf::timeout_error);
        EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
        go.send(1);
        ch.send_bytes("after");
        ch.close();
        EXPECT_EQ(results.receive_for<std::vector<std::size_t>>(30s), std::vector<std::size_t>{5});
        EXPECT_TRUE(receiver.wait().ok());
        EXPECT_EQ(ch.dropped_messages(), 1u);
    });
}

TEST(channel, senders_and_receivers_with_messages_larger_than_the_ring) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("large mpmc", 100, [] {
        constexpr int senders = 3, receivers = 3, per_sender = 6;
        constexpr int total = senders * per_sender;
        // Message id in the first 4 bytes, then a pattern of that id: 200 KiB to about 1 MiB.
        auto make = [](std::uint32_t id) {
            std::string m = pattern(200 * 1024 + (id * 45 * 1024) % (824 * 1024), id);
            std::memcpy(m.data(), &id, sizeof id);
            return m;
        };
        pf::sys::mapping seen(-1, 4096);  // per id: times received whole and intact; [total]: bad
        auto* counts = reinterpret_cast<std::atomic<std::uint32_t>*>(seen.data());
        pf::channel ch(64 * 1024);
        EXPECT_EQ(ch.capacity(), 64u * 1024);
        std::vector<pf::sys::child> kids;
        for (int r = 0; r < receivers; ++r)
            kids.emplace_back(pf::sys::fork_call([&] {
                std::string m;
                try {
                    for (;;) {
                        ch.receive_bytes(m);
                        std::uint32_t id = total;
                        if (m.size() >= sizeof id) std::memcpy(&id, m.data(), sizeof id);
                        if (id < total && m == make(id)) counts[id].fetch_add(1);
                        else counts[total].fetch_add(1);
                    }
                } catch (const pf::channel_closed&) {
                }
            }));
        for (int s = 0; s < senders; ++s)
            kids.emplace_back(pf::sys::fork_call([&, s] {
                for (int i = 0; i < per_sender; ++i) ch.send_bytes(make(static_cast<std::uint32_t>(s * per_sender + i)));
            }));
        ch.close();
        for (auto& k : kids) EXPECT_TRUE(k.wait().ok());
        for (int id = 0; id < total; ++id) EXPECT_EQ(counts[id].load(), 1u) << "message " << id;
        EXPECT_EQ(counts[total].load(), 0u);
        EXPECT_EQ(ch.dropped_messages(), 0u);
    });
}

TEST(channel, a_blocked_receiver_sleeps) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("sleeping receiver", 30, [] {
        pf::channel ch;
        EXPECT_EQ(ch.capacity(), std::size_t{1} << 20);  // the default
        EXPECT_EQ(pf::channel::default_capacity, std::size_t{1} << 20);
        pf::sys::child receiver(pf::sys::fork_call([&] { (void)ch.receive<int>(); }));
        std::this_thread::sleep_for(1s);
        auto cpu = pf::testing::cpu_time(receiver.pid());
        EXPECT_LT(cpu, 100ms) << "a receiver waiting 1 s used " << cpu.count() << " ms of CPU";
        ch.send(1);
        EXPECT_TRUE(receiver.wait().ok());
    });
}

TEST(channel, creating_and_destroying_leaves_nothing) {
    PARAFORK_LEAK_CHECK();
    auto before = map_count();
    for (int i = 0; i < 200; ++i) {
        pf::channel ch(64 * 1024);
        pf::channel copy = ch;
        copy.send(i);
        EXPECT_EQ(ch.receive<int>(), i);
    }
    expect_same_maps(before, map_count());
}

TEST(channel, children_forked_later_get_their_own_end) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("ends", 30, [] {
        pf::channel ch(4096);
        EXPECT_EQ(ch.open_ends(), 1u);
        pf::channel go(4096);
        pf::sys::child kid(pf::sys::fork_call([&] { (void)go.receive<int>(); }));
        EXPECT_EQ(ch.open_ends(), 2u);  // counted from the fork on, not from its first send
        ch.close();
        EXPECT_EQ(ch.open_ends(), 1u);
        go.send(1);
        EXPECT_TRUE(kid.wait().ok());
        EXPECT_EQ(ch.open_ends(), 0u);
    });
}

// Queues in one mapping their owner provides (the pipeline's): each works on its own across a
// fork, and, their ends being the owner's to count, none is ever closed by a count of ends.
TEST(channel, queues_in_an_owners_region_work_across_a_fork_and_leave_the_ends_to_it) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("region", 30, [] {
        constexpr std::size_t cap = 4096;
        std::size_t one = pf::detail::channel_region_bytes(cap);
        EXPECT_EQ(one % 64, 0u);
        auto region = std::make_shared<pf::sys::mapping>(-1, 2 * one);
        auto down = pf::detail::make_region_channel(region, region->bytes(), cap);
        auto up = pf::detail::make_region_channel(region, region->bytes() + one, cap);
        EXPECT_THROW(pf::detail::make_region_channel(region, region->bytes() + 8, cap), std::invalid_argument);
        pf::sys::child kid(pf::sys::fork_call([&] {
            for (int i = 0; i < 200; ++i) up.send(down.receive<int>() * 2);  // a ring of 4 KiB wraps
            up.send(std::string(3000, 'x'));
        }));
        for (int i = 0; i < 200; ++i) {
            down.send(i);
            ASSERT_EQ(up.receive<int>(), 2 * i);
        }
        EXPECT_EQ(up.receive<std::string>(), std::string(3000, 'x'));
        EXPECT_TRUE(kid.wait().ok());
        // The only sender exited: an owner-counted queue is empty, not closed.
        EXPECT_FALSE(up.try_receive<int>().has_value());
        EXPECT_THROW((void)up.receive_for<int>(50ms), pf::timeout_error);
        EXPECT_THROW((void)up.open_ends(), std::logic_error);
        EXPECT_THROW((void)down.open_receivers(), std::logic_error);
    });
}

TEST(channel, a_child_killed_right_after_its_fork_does_not_hold_the_channel_open) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("early kill", 60, [] {
        pf::channel ch(4096);
        for (int i = 0; i < 20; ++i) {
            // Killed at once: often before its end was even taken.
            pf::sys::child kid(pf::sys::fork_call([] { ::pause(); }));
            kid.signal(SIGKILL);
            kid.wait();
        }
        ch.close();
        auto start = std::chrono::steady_clock::now();
        EXPECT_THROW(ch.receive_for<int>(30s), pf::channel_closed);
        EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);  // a bound, not a timing goal
    });
}

// The last sender closes while a receiver is between its count of the open ends and its
// sleep: the receiver must still wake and see the channel closed, not sleep until its deadline.
// The window is a few instructions wide, so the close lands at random moments around it, many
// times over; with the window widened by a pause, this fails every run.
TEST(channel, a_close_racing_a_receiver_going_to_sleep_wakes_it) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("close racing a sleeper", 100, [] {
        pf::sys::mapping shared(-1, sizeof(std::atomic<int>));
        auto* entered = new (shared.data()) std::atomic<int>(0);
        std::mt19937 rng(7);
        constexpr int rounds = pf::testing::sanitized ? 200 : 600;
        int late = 0;
        for (int i = 0; i < rounds; ++i) {
            entered->store(0);
            pf::channel ch(4096);
            pf::sys::child kid(pf::sys::fork_call([&] {
                std::string m;
                entered->store(1);
                try {
                    ch.receive_bytes_for(m, 2s);
                } catch (const pf::channel_closed&) {
                    pf::sys::exit_child(0);
                } catch (const pf::timeout_error&) {
                    pf::sys::exit_child(1);
                }
                pf::sys::exit_child(2);
            }));
            while (entered->load() == 0) std::this_thread::yield();
            // Around the receiver's spin and yield phases (about 110 us), then its sleep.
            auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(rng() % 300);
            while (std::chrono::steady_clock::now() < until) {
            }
            ch.close();
            auto st = kid.wait_for(10s);
            ASSERT_TRUE(st) << "round " << i << ": the receiver hangs";
            if (st->code == 1) ++late;
            else ASSERT_TRUE(st->ok()) << "round " << i << ": " << st->describe();
        }
        EXPECT_EQ(late, 0) << "receivers that slept through the close until their deadline";
    });
}

TEST(channel, timed_calls_and_several_polling_receivers) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("polling receivers", 60, [] {
        pf::channel ch(64 * 1024), results(4096);
        std::vector<pf::sys::child> kids;
        for (int r = 0; r < 3; ++r)
            kids.emplace_back(pf::sys::fork_call([&] {
                long sum = 0, count = 0;
                for (;;) {
                    try {
                        if (auto v = ch.try_receive<long>()) {
                            sum += *v;
                            ++count;
                        } else {
                            sum += 0;  // nothing ready: poll again
                        }
                    } catch (const pf::channel_closed&) {
                        break;
                    }
                }
                results.send(std::make_pair(sum, count));
            }));
        for (long i = 1; i <= 20000; ++i) ch.send_for(i, 20s);
        ch.close();
        long sum = 0, count = 0;
        for (int r = 0; r < 3; ++r) {
            auto [s, c] = results.receive_for<std::pair<long, long>>(30s);
            sum += s;
            count += c;
        }
        for (auto& k : kids) EXPECT_TRUE(k.wait().ok());
        EXPECT_EQ(count, 20000);
        EXPECT_EQ(sum, 20000L * 20001 / 2);
    });
}

TEST(channel, threads_of_one_process_can_share_it) {
    PARAFORK_LEAK_CHECK();
    auto before = map_count();
    {
        pf::channel ch(4096);
        auto sender = [ch](int t) mutable {
            for (int i = 0; i < 10000; ++i) ch.send(t * 10000 + i);
        };
        // The process's ends are shared by its threads; a process that receives before it ever
        // sent gives its send end up (and one that sends first its receive end), so this one
        // does both before the threads start (else one side could see no end at all).
        ch.send(0);
        EXPECT_EQ(ch.receive<int>(), 0);
        std::thread a(sender, 0), b(sender, 1);
        long sum = 0;
        for (int i = 0; i < 20000; ++i) sum += ch.receive_for<int>(std::chrono::seconds(30));
        a.join();
        b.join();
        EXPECT_EQ(sum, 20000L * 19999 / 2);
        EXPECT_FALSE(ch.try_receive<int>().has_value());
    }
    EXPECT_EQ(map_count().memfd, before.memfd);  // thread stacks and arenas stay cached
}

namespace {

// The shared header of the newest channel of this process, found through /proc/self/maps as a
// peer with the mapping would write it.
pf::detail::channel_shared* newest_channel_header() {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    std::uintptr_t addr = 0;
    while (std::getline(maps, line))
        if (line.find("parafork-channel") != std::string::npos) addr = std::stoull(line, nullptr, 16);
    return reinterpret_cast<pf::detail::channel_shared*>(addr);
}

} // namespace

TEST(channel, a_length_field_beyond_what_can_arrive_is_refused_before_any_allocation) {
    PARAFORK_LEAK_CHECK();
    pf::testing::run_bounded("hostile length", 60, [] {
        for (std::uint64_t total : {std::uint64_t{1} << 40, std::uint64_t{1} << 62, std::uint64_t{2}}) {
            pf::channel ch(4096);
            ch.send(std::int32_t{7});
            auto* sh = newest_channel_header();
            ASSERT_NE(sh, nullptr);
            ASSERT_EQ(sh->magic, pf::detail::channel_magic);
            auto* data = reinterpret_cast<char*>(sh) + pf::detail::channel_data_offset();
            pf::detail::chunk_header h;
            std::memcpy(&h, data, sizeof h);
            ASSERT_EQ(h.total, h.len);
            h.total = total;  // what a hostile or half-dead sender could have written
            std::memcpy(data, &h, sizeof h);
            std::string out;
            EXPECT_THROW(ch.receive_bytes(out), pf::protocol_error) << total;
            EXPECT_LT(out.capacity(), std::size_t{1} << 20) << total;
        }
    });
}

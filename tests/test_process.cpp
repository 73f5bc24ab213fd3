// process<Actor>: calls and asks in order, messages up, pre/post_run, faults (exceptions in
// called and asked methods, a backend SIGKILLed with asks pending), many asks in flight.
// Every test runs in a bounded child (a hang fails it) and checks for leaks.
#include <parafork/exec/process/process.hpp>
#include <parafork/exec/process/selector.hpp>
#include <parafork/sys/signals.hpp>

#include "support/leak_check.hpp"

#include <chrono>
#include <cstring>
#include <parafork/sys/memory.hpp>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pf = parafork;
using namespace std::chrono_literals;
using pf::testing::run_bounded;


namespace {

struct point {
    int x = 0, y = 0;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(x, y);
    }
};

struct counter : pf::actor {
    long total = 0;
    std::vector<int> seen;
    std::string prefix = "unset";
    bool pre_ran = false;

    void pre_run() { pre_ran = true; }
    void post_run() { emit(std::string("post_run saw ") + std::to_string(total)); }

    void add(int n) { total += n, seen.push_back(n); }
    void add_ref(const int& n) { total += n; }
    long get_total() const { return total; }
    bool was_pre_run() const noexcept { return pre_ran; }
    void set_prefix(std::string p) { prefix = std::move(p); }
    std::string greet(const std::string& name, int times) {
        std::string s;
        for (int i = 0; i < times; ++i) s += prefix + " " + name + ";";
        return s;
    }
    bool in_order() const {
        for (std::size_t i = 0; i < seen.size(); ++i)
            if (seen[i] != static_cast<int>(i)) return false;
        return true;
    }
    point swap(point p) { return {p.y, p.x}; }
    std::vector<double> twice(std::vector<double> v) {
        for (auto& x : v) x *= 2;
        return v;
    }
    void nothing() {}
    void throw_runtime(std::string what) { throw std::runtime_error(what); }
    int throw_logic(int) { throw std::logic_error("bad logic"); }
    int square(int x) { return x * x; }
    void announce(int n) {
        for (int i = 0; i < n; ++i) emit(i);
        emit(point{n, -n});
    }
    void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
    std::string comm() const {
        std::ifstream f("/proc/self/comm");
        std::string s;
        std::getline(f, s);
        return s;
    }
    pid_t my_pid() const { return ::getpid(); }
    void blob(std::size_t n) { emit(std::string(n, 'x')); }
    int emit_and_answer(int x) {
        emit(x);
        return x + 1;
    }
    int quit(int code) { ::_exit(code); }
    int crash() { std::abort(); }
    // A raw fork(): the helper keeps every descriptor of the backend, its socket included, and
    // outlives the backend (the test kills it; were the test to fail first, it exits in 10 s).
    pid_t fork_holder() {
        pid_t pid = ::fork();
        if (pid == 0) {
            for (int i = 0; i < 100; ++i) ::usleep(100000);
            ::_exit(0);
        }
        return pid;
    }
};

// Ignores SIGTERM: terminate() must escalate to SIGKILL.
struct stubborn {
    void pre_run() { ::signal(SIGTERM, SIG_IGN); }
    void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
    int square(int x) { return x * x; }
};

// This thread's CPU time so far.
std::chrono::microseconds thread_cpu() {
    rusage ru{};
    ::getrusage(RUSAGE_THREAD, &ru);
    auto us = [](const timeval& t) { return std::int64_t{t.tv_sec} * 1000000 + t.tv_usec; };
    return std::chrono::microseconds(us(ru.ru_utime) + us(ru.ru_stime));
}

// Waits (bounded) until `pid`, a child of ours, has exited but is not yet reaped.
bool wait_zombie(pid_t pid) {
    for (int i = 0; i < 5000; ++i) {
        siginfo_t si{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
            return true;
        std::this_thread::sleep_for(1ms);
    }
    return false;
}

// A process not ours: dead (reaped or a zombie waiting for init).
bool gone_or_zombie(pid_t pid) {
    std::string s = pf::testing::read_proc("/proc/" + std::to_string(pid) + "/stat");
    auto close = s.rfind(')');
    return close == std::string::npos || close + 2 >= s.size() || s[close + 2] == 'Z' || s[close + 2] == 'X';
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Memory made after start reaches the running backend as a descriptor.
struct mapper {
    pf::sys::mapping map;
    std::size_t attach(pf::passed_fd fd) {
        auto owned = fd.take();
        std::size_t n = pf::sys::fd_size(owned.get());
        map = pf::sys::mapping(owned.get(), n);
        return n;
    }
    std::string read(std::size_t n) const { return std::string(static_cast<const char*>(map.data()), n); }
    void write(std::string s) { std::memcpy(map.data(), s.data(), s.size()); }
    int count_fds(int a, pf::passed_fd x, int b, pf::passed_fd y) const {
        return a + b + (x.get() >= 0) + (y.get() >= 0) + (x.get() != y.get());
    }
    void emit_fd() { pf::emit(pf::passed_fd(0)); }
    std::size_t fd_count() const { return pf::testing::open_fds().size(); }
    int fails_after_fd(pf::passed_fd) { throw std::runtime_error("refused"); }
};

struct bad_start {
    void pre_run() { throw std::invalid_argument("no device"); }
    int ping() { return 1; }
};

TEST(process, calls_and_asks_run_in_send_order) {
    run_bounded("order", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w(counter{}, {.name = "counter"});
        EXPECT_FALSE(w.started());
        w.start();
        EXPECT_TRUE(w.running());
        EXPECT_GT(w.pid(), 0);
        EXPECT_NE(w.pid(), ::getpid());
        for (int i = 0; i < 1000; ++i) w.call(&counter::add, i);
        EXPECT_EQ(w.ask(&counter::get_total).get(), 999L * 1000 / 2);
        EXPECT_TRUE(w.ask(&counter::in_order).get());
        EXPECT_TRUE(w.ask(&counter::was_pre_run).get());
        w.call<&counter::add_ref>(5);
        EXPECT_EQ(w.ask<&counter::get_total>().get(), 999L * 1000 / 2 + 5);
        // The frontend's copy is untouched: the backend has its own.
        EXPECT_EQ(w.actor().total, 0);
        auto st = w.join();
        EXPECT_TRUE(st.ok());
        EXPECT_EQ(w.receive<std::string>(), "post_run saw " + std::to_string(999L * 1000 / 2 + 5));
        EXPECT_FALSE(w.running());
    });
}

TEST(process, arguments_and_results_of_many_types) {
    run_bounded("types", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        w.call(&counter::set_prefix, "hello");  // const char* -> std::string
        EXPECT_EQ(w.ask(&counter::greet, std::string("bob"), 2).get(), "hello bob;hello bob;");
        auto p = w.ask(&counter::swap, point{1, 2}).get();
        EXPECT_EQ(p.x, 2);
        EXPECT_EQ(p.y, 1);
        std::vector<double> big(1 << 18);
        std::iota(big.begin(), big.end(), 0.0);
        auto out = w.ask(&counter::twice, big).get();
        ASSERT_EQ(out.size(), big.size());
        EXPECT_EQ(out.back(), 2 * big.back());
        w.ask(&counter::nothing).get();  // future<void>
        EXPECT_EQ(w.ask(&counter::square, 3.0 > 2 ? 12 : 0).get(), 144);
        w.join();
    });
}

TEST(process, emitted_messages_arrive_typed_and_in_order) {
    run_bounded("emit", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        EXPECT_FALSE(w.try_receive<int>().has_value());
        w.call(&counter::announce, 3);
        for (int i = 0; i < 3; ++i) EXPECT_EQ(w.receive<int>(), i);
        // A wrong type is refused and the message stays queued.
        EXPECT_THROW(w.receive<int>(), pf::protocol_error);
        auto m = w.receive_message();
        ASSERT_TRUE(m.is<point>());
        EXPECT_EQ(m.as<point>().x, 3);
        EXPECT_FALSE(w.receive_for<int>(20ms).has_value());
        w.call(&counter::announce, 1);
        auto first = w.receive_for<int>(10s);
        ASSERT_TRUE(first.has_value());
        EXPECT_EQ(*first, 0);
        w.join();
        // Messages emitted before the end stay receivable after it.
        EXPECT_TRUE(w.receive_message().is<point>());
        EXPECT_EQ(w.receive<std::string>(), "post_run saw 0");
        EXPECT_THROW(w.receive<int>(), pf::error);  // nothing left, the backend ended
    });
}

TEST(process, an_asked_method_may_emit_before_it_answers) {
    run_bounded("emit-ask", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        for (int i = 0; i < 3; ++i) {
            EXPECT_EQ(w.ask(&counter::emit_and_answer, i).get(), i + 1);
            EXPECT_EQ(w.receive<int>(), i);
        }
        w.join();
    });
}

// select(2) on fd() misses messages already read off the socket; ready_fd() does not: it is
// readable exactly while has_message() is (or the backend sent something), and for good once
// the backend ended.
TEST(process, ready_fd_is_readable_while_messages_wait_in_the_frontend) {
    run_bounded("ready-fd", 60, +[] {
        PARAFORK_LEAK_CHECK();
        auto readable = [](int fd, int ms) {
            pollfd p{fd, POLLIN, 0};
            return ::poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
        };
        pf::process<counter> w;
        EXPECT_EQ(w.ready_fd(), -1);
        w.start();
        int fd = w.ready_fd();
        ASSERT_GE(fd, 0);
        EXPECT_EQ(w.ready_fd(), fd);
        EXPECT_FALSE(readable(fd, 0));
        // Both messages come before the answer: the future's wait reads them all into the inbox.
        w.call(&counter::announce, 1);
        EXPECT_EQ(w.ask(&counter::square, 3).get(), 9);
        EXPECT_FALSE(readable(w.fd(), 0));
        EXPECT_TRUE(readable(fd, 0));
        EXPECT_EQ(w.receive<int>(), 0);
        EXPECT_TRUE(readable(fd, 0));
        EXPECT_TRUE(w.receive_message().is<point>());
        EXPECT_FALSE(readable(fd, 0));
        // A message still in the socket wakes it too.
        w.call(&counter::announce, 0);
        EXPECT_TRUE(readable(fd, 10000));
        EXPECT_EQ(w.receive<point>().x, 0);
        EXPECT_FALSE(readable(fd, 0));
        // The end: readable for good, and receive says why instead of blocking.
        w.join();
        EXPECT_TRUE(readable(fd, 0));
        EXPECT_EQ(w.receive<std::string>(), "post_run saw 0");
        EXPECT_TRUE(readable(fd, 0));
        EXPECT_THROW(w.receive<int>(), pf::error);
    });
}

TEST(process, ready_fd_wakes_when_the_backend_is_killed) {
    run_bounded("ready-fd-kill", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        int fd = w.ready_fd();
        ::kill(w.pid(), SIGKILL);
        pollfd p{fd, POLLIN, 0};
        ASSERT_EQ(::poll(&p, 1, 10000), 1);
        EXPECT_THROW(w.receive<int>(), pf::worker_died);
    });
}

TEST(process, emit_outside_a_backend_throws) {
    EXPECT_THROW(pf::emit(1), pf::error);
}

TEST(process, exception_in_an_asked_method_fails_that_future_only) {
    run_bounded("ask exception", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        auto before = w.ask(&counter::square, 2);
        auto bad = w.ask(&counter::throw_logic, 1);
        auto after = w.ask(&counter::square, 3);
        EXPECT_EQ(before.get(), 4);
        try {
            bad.get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.type_name(), "std::logic_error");
            EXPECT_EQ(e.message(), "bad logic");
            EXPECT_EQ(e.pid(), w.pid());
            EXPECT_EQ(e.task(), std::optional<std::size_t>(1));
        }
        EXPECT_EQ(after.get(), 9);
        EXPECT_TRUE(w.join().ok());
    });
}

TEST(process, exception_in_a_called_method_is_received_and_the_backend_goes_on) {
    run_bounded("call exception", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        w.call(&counter::add, 1);
        w.call(&counter::throw_runtime, "boom");
        w.call(&counter::add, 2);
        EXPECT_EQ(w.ask(&counter::get_total).get(), 3);
        try {
            w.receive<int>();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.type_name(), "std::runtime_error");
            EXPECT_EQ(e.message(), "boom");
            EXPECT_EQ(e.task(), std::optional<std::size_t>(1));
        }
        // The error was consumed; the queue goes on.
        w.call(&counter::announce, 0);
        EXPECT_EQ(w.receive<point>().x, 0);
        EXPECT_TRUE(w.join().ok());
    });
}

TEST(process, backend_killed_with_asks_pending_fails_them_all) {
    run_bounded("sigkill", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        EXPECT_EQ(w.ask(&counter::square, 5).get(), 25);
        w.call(&counter::sleep_ms, 10000);
        std::vector<pf::future<int>> futs;
        for (int i = 0; i < 100; ++i) futs.push_back(w.ask(&counter::square, i));
        ::kill(w.pid(), SIGKILL);
        for (auto& f : futs) {
            try {
                f.get();
                ADD_FAILURE() << "no exception";
            } catch (const pf::worker_died& e) {
                EXPECT_EQ(e.signal(), SIGKILL);
                EXPECT_EQ(e.pid(), w.pid());
                EXPECT_TRUE(e.task().has_value());
            }
        }
        EXPECT_FALSE(w.running());
        EXPECT_THROW(w.call(&counter::add, 1), pf::worker_died);
        EXPECT_THROW(w.ask(&counter::square, 1), pf::worker_died);
        EXPECT_EQ(w.join().signal, SIGKILL);  // already reported: no throw
    });
}

TEST(process, a_death_nobody_saw_is_reported_by_join_and_receive) {
    run_bounded("silent death", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        w.call(&counter::sleep_ms, 10000);
        ::kill(w.pid(), SIGKILL);
        EXPECT_THROW(w.receive<int>(), pf::worker_died);
        pf::process<counter> v;
        v.start();
        ::kill(v.pid(), SIGKILL);
        EXPECT_THROW(v.join(), pf::worker_died);
    });
}

TEST(process, a_backend_that_exits_or_crashes_in_a_method_is_worker_died) {
    run_bounded("exit and crash", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        auto f = w.ask(&counter::quit, 3);
        try {
            f.get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.exit_code(), 3);
            EXPECT_EQ(e.signal(), 0);
            EXPECT_EQ(e.task(), std::optional<std::size_t>(0));
        }
        pf::process<counter> v;
        v.start();
        v.call(&counter::add, 1);
        auto g = v.ask(&counter::crash);
        try {
            g.get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGABRT);
            EXPECT_EQ(e.task(), std::optional<std::size_t>(1));
        }
        EXPECT_EQ(v.join().signal, SIGABRT);
        EXPECT_EQ(w.join().code, 3);
    });
}

TEST(process, ten_thousand_asks_in_flight) {
    run_bounded("10k asks", 90, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        // The backend sleeps while the asks go out (they fit in the ring: call<&m> sends no
        // member bytes), and the frontend reads no answer before the first get(): all 10,000
        // are in flight at once.
        w.call(&counter::sleep_ms, 200);
        std::vector<pf::future<int>> futs;
        futs.reserve(10000);
        for (int i = 0; i < 10000; ++i) futs.push_back(w.ask<&counter::square>(i % 1000));
        EXPECT_EQ(w.pending_asks(), 10000u);
        for (int i = 9999; i >= 0; --i) ASSERT_EQ(futs[static_cast<std::size_t>(i)].get(), (i % 1000) * (i % 1000));
        EXPECT_EQ(w.pending_asks(), 0u);
        w.join();
    });
}

TEST(process, batched_calls_arrive_complete_and_in_order) {
    run_bounded("batch", 90, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        {
            auto b = w.batch();
            for (int i = 0; i < 200000; ++i) w.call(&counter::add, i);
        }
        EXPECT_EQ(w.ask(&counter::get_total).get(), 199999L * 200000 / 2);
        EXPECT_TRUE(w.ask(&counter::in_order).get());
        w.join();
    });
}

TEST(process, a_backend_blocked_on_messages_never_deadlocks_the_frontend) {
    run_bounded("backpressure", 90, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        // Each call emits 64 KiB the frontend does not read while it writes more calls: both
        // socket directions fill up; the frontend must drain while it waits to write.
        for (int i = 0; i < 200; ++i) w.call(&counter::blob, std::size_t{64} << 10);
        EXPECT_EQ(w.ask(&counter::square, 7).get(), 49);
        for (int i = 0; i < 200; ++i) ASSERT_EQ(w.receive<std::string>().size(), std::size_t{64} << 10);
        w.join();
    });
}

TEST(process, pre_run_failure_is_received_and_asks_fail) {
    run_bounded("pre_run", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<bad_start> w;
        w.start();
        // The backend exits at once: an ask made after the frontend saw that throws at once,
        // one made before fails its future. Either way it is worker_died.
        std::optional<pf::future<int>> f;
        try {
            f = w.ask(&bad_start::ping);
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.exit_code(), 1);
        }
        try {
            w.receive_message();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_EQ(e.type_name(), "std::invalid_argument");
            EXPECT_FALSE(e.task().has_value());
        }
        if (f) {
            EXPECT_THROW(f->get(), pf::worker_died);
        }
        EXPECT_EQ(w.join().code, 1);
    });
}

TEST(process, terminate_ends_a_busy_backend) {
    run_bounded("terminate", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w(counter{}, {.grace = 100ms});
        w.start();
        w.call(&counter::sleep_ms, 30000);
        auto f = w.ask(&counter::square, 2);
        EXPECT_FALSE(f.wait_for(50ms));
        auto st = w.terminate();
        EXPECT_EQ(st.signal, SIGTERM);
        EXPECT_THROW(f.get(), pf::worker_died);
        EXPECT_NO_THROW(w.join());
    });
}

TEST(process, backend_has_its_title_and_ignores_sigint) {
    run_bounded("title", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w(counter{}, {.name = "pf-counter"});
        w.start();
        EXPECT_EQ(w.ask(&counter::comm).get(), "pf-counter");
        ::kill(w.pid(), SIGINT);
        EXPECT_EQ(w.ask(&counter::my_pid).get(), w.pid());
        w.join();
    });
}

TEST(process, destructor_stops_a_running_backend) {
    run_bounded("destructor", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::future<int> f;
        {
            pf::process<counter> w;
            w.start();
            w.call(&counter::sleep_ms, 30000);
            f = w.ask(&counter::square, 3);
        }
        EXPECT_THROW(f.get(), pf::worker_died);
        {
            // A backend stuck in a method, the ring full and more held: the destructor still
            // ends in about `grace` (were it to wait for room, the 100 s sleep would trip the
            // bounded child's alarm).
            std::unique_ptr<pf::process_base::batch_guard> batch;
            pf::process<counter> w(counter{}, {.grace = 50ms});
            w.start();
            w.call(&counter::sleep_ms, 100000);
            batch = std::make_unique<pf::process_base::batch_guard>(w);
            std::vector<double> big(1 << 16);
            for (int i = 0; i < 4; ++i) w.call(&counter::twice, big);  // 2 MiB: more than the ring
        }
        {
            pf::process<counter> idle_one;  // never started: nothing to clean
            pf::process<counter> w;
            w.start();
            w.call(&counter::add, 1);
        }
    });
}

TEST(process, misuse_is_an_error_not_a_hang) {
    run_bounded("misuse", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        EXPECT_THROW(w.call(&counter::add, 1), pf::error);
        EXPECT_THROW(w.join(), pf::error);
        w.start();
        EXPECT_THROW(w.start(), pf::error);
        w.stop();
        EXPECT_THROW(w.call(&counter::add, 1), pf::error);
        w.join();
        EXPECT_THROW(w.ask(&counter::square, 1), pf::error);
        pf::future<int> none;
        EXPECT_FALSE(none.valid());
        EXPECT_THROW(none.get(), pf::error);
    });
}

TEST(process, processes_can_be_moved) {
    run_bounded("move", 60, +[] {
        PARAFORK_LEAK_CHECK();
        std::vector<pf::process<counter>> ws;
        for (int i = 0; i < 3; ++i) {
            ws.emplace_back();
            ws.back().start();
        }
        for (int i = 0; i < 3; ++i) ws[static_cast<std::size_t>(i)].call(&counter::add, i + 1);
        for (int i = 0; i < 3; ++i) EXPECT_EQ(ws[static_cast<std::size_t>(i)].ask(&counter::get_total).get(), i + 1);
        for (auto& w : ws) w.join();
    });
}

TEST(process, sigint_while_waiting_terminates_the_backend_and_throws_interrupted) {
    run_bounded("sigint", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w(counter{}, {.grace = 100ms});
        w.start();
        w.call(&counter::sleep_ms, 30000);
        auto f = w.ask(&counter::square, 2);
        pid_t me = ::getpid();
        pf::sys::child ctrl_c(pf::sys::fork_call([me] {
            std::this_thread::sleep_for(100ms);
            ::kill(me, SIGINT);
        }));
        EXPECT_THROW(f.get(), pf::interrupted);
        EXPECT_FALSE(w.running());
        EXPECT_EQ(w.exit_status()->signal, SIGTERM);
        EXPECT_TRUE(ctrl_c.wait().ok());
        EXPECT_NO_THROW(w.join());
    });
}

TEST(process, descriptors_passed_to_a_running_backend_share_memory) {
    run_bounded("passed_fd", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<mapper> w;
        w.start();
        auto fd = pf::sys::make_memfd("on-demand", 4096);
        pf::sys::mapping here(fd.get(), 4096);
        std::memcpy(here.data(), "frontend", 8);
        EXPECT_EQ(w.ask(&mapper::attach, pf::passed_fd(fd.get())).get(), 4096u);
        fd.reset();  // the backend holds its own descriptor (and mapping)
        EXPECT_EQ(w.ask(&mapper::read, 8).get(), "frontend");
        w.ask(&mapper::write, "backend!").get();
        EXPECT_EQ(std::string(static_cast<const char*>(here.data()), 8), "backend!");
        // Two descriptors in one call, among ordinary arguments.
        auto a = pf::sys::make_pipe();
        auto backend_fds = w.ask(&mapper::fd_count).get();
        EXPECT_EQ(w.ask(&mapper::count_fds, 1, pf::passed_fd(a.read.get()), 2, pf::passed_fd(a.write.get())).get(), 6);
        // A method that throws leaves nothing behind; descriptors cannot go up.
        EXPECT_THROW(w.ask(&mapper::fails_after_fd, pf::passed_fd(a.read.get())).get(), pf::remote_error);
        w.call(&mapper::emit_fd);
        EXPECT_THROW(w.receive_message(), pf::remote_error);
        EXPECT_THROW(w.call(&mapper::attach, pf::passed_fd()), pf::error);
        EXPECT_EQ(w.ask(&mapper::read, 8).get(), "backend!");
        EXPECT_EQ(w.ask(&mapper::fd_count).get(), backend_fds);  // the backend closed what it got
        w.join();
    });
}

TEST(process, an_idle_backend_and_a_waiting_frontend_use_almost_no_cpu) {
    run_bounded("idle cpu", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        EXPECT_EQ(w.ask(&counter::square, 3).get(), 9);
        // The backend spins for options.spin (50 us), then sleeps: over 300 ms it may use a
        // tick or two (10-20 ms), a spinning one would use about 300 ms.
        auto before = pf::testing::cpu_time(w.pid());
        std::this_thread::sleep_for(300ms);
        EXPECT_LE(pf::testing::cpu_time(w.pid()) - before, 50ms);
        // And a frontend waiting 300 ms for an answer sleeps too.
        auto cpu0 = thread_cpu();
        auto t0 = std::chrono::steady_clock::now();
        w.ask(&counter::sleep_ms, 300).get();
        EXPECT_GE(seconds_since(t0), 0.25);
        EXPECT_LT(thread_cpu() - cpu0, 60ms);
        w.join();
        // spin = 0: both sides sleep at once, and everything still arrives.
        pf::process<counter> v(counter{}, {.spin = 0us});
        v.start();
        for (int i = 0; i < 100; ++i) ASSERT_EQ(v.ask<&counter::square>(i).get(), i * i);
        v.join();
    });
}

TEST(process, timed_waits_keep_their_time_behind_a_full_ring) {
    run_bounded("timed waits", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w(counter{}, {.grace = 50ms});
        w.start();
        auto b = w.batch();
        w.call(&counter::sleep_ms, 2000);
        std::vector<double> big(1 << 15);  // 256 KiB a call
        for (int i = 0; i < 8; ++i) w.call(&counter::twice, big);  // 2 MiB: the ring holds 256 KiB
        auto f = w.ask(&counter::square, 4);
        // Writing what is held takes the 2 s the backend sleeps; these must not wait for it.
        auto t0 = std::chrono::steady_clock::now();
        EXPECT_FALSE(f.wait_for(50ms));
        EXPECT_LT(seconds_since(t0), 1.0);
        t0 = std::chrono::steady_clock::now();
        EXPECT_FALSE(f.ready());
        EXPECT_FALSE(w.receive_for<int>(50ms).has_value());
        EXPECT_FALSE(w.try_receive<int>().has_value());
        EXPECT_LT(seconds_since(t0), 1.0);
        // stop() never waits either.
        t0 = std::chrono::steady_clock::now();
        w.stop();
        EXPECT_LT(seconds_since(t0), 1.0);
        w.terminate();
        EXPECT_THROW(f.get(), pf::worker_died);
    });
}

TEST(process, a_death_is_seen_while_a_forked_child_holds_the_socket) {
    run_bounded("holder", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        pid_t holder = w.ask(&counter::fork_holder).get();
        ASSERT_GT(holder, 0);
        w.call(&counter::sleep_ms, 30000);
        auto f = w.ask(&counter::square, 3);
        ::kill(w.pid(), SIGKILL);
        // The socket never reaches EOF while the holder lives: only the pidfd tells.
        try {
            f.get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
        }
        EXPECT_FALSE(w.running());
        EXPECT_EQ(w.join().signal, SIGKILL);

        // The selector watches the pidfd too.
        pf::process<counter> v;
        v.start();
        pid_t holder2 = v.ask(&counter::fork_holder).get();
        pf::selector sel;
        std::size_t id = sel.add(v);
        ::kill(v.pid(), SIGKILL);
        auto& ready = sel.wait();
        ASSERT_EQ(ready.size(), 1u);
        EXPECT_EQ(ready[0], id);
        EXPECT_FALSE(v.running());
        EXPECT_THROW(v.receive<int>(), pf::worker_died);
        // The holders outlived their backends (so the sockets never reached EOF); init reaps
        // them once killed, in its own time.
        for (pid_t h : {holder, holder2}) {
            EXPECT_FALSE(gone_or_zombie(h));
            ::kill(h, SIGKILL);
            for (int i = 0; i < 500 && !gone_or_zombie(h); ++i) std::this_thread::sleep_for(10ms);
            EXPECT_TRUE(gone_or_zombie(h));
        }
    });
}

TEST(process, a_call_after_an_unnoticed_death_throws_at_once) {
    run_bounded("call after death", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        w.call(&counter::sleep_ms, 30000);
        // Busy when killed: no wake-up is sent and no answer awaited, so only the call's own
        // look at the backend can notice.
        ::kill(w.pid(), SIGKILL);
        ASSERT_TRUE(wait_zombie(w.pid()));
        try {
            w.call(&counter::add, 1);
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
            EXPECT_EQ(e.pid(), w.pid());
        }
        EXPECT_FALSE(w.running());
        EXPECT_THROW(w.ask(&counter::square, 2), pf::worker_died);
        EXPECT_EQ(w.join().signal, SIGKILL);
    });
}

TEST(process, terminate_escalates_to_sigkill) {
    run_bounded("sigkill escalation", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<stubborn> w(stubborn{}, {.grace = 50ms});
        w.start();
        EXPECT_EQ(w.ask(&stubborn::square, 2).get(), 4);  // pre_run has run
        w.call(&stubborn::sleep_ms, 30000);
        auto f = w.ask(&stubborn::square, 3);
        auto t0 = std::chrono::steady_clock::now();
        auto st = w.terminate();
        EXPECT_LT(seconds_since(t0), 5.0);
        EXPECT_EQ(st.signal, SIGKILL);
        try {
            f.get();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.signal(), SIGKILL);
        }
        EXPECT_NO_THROW(w.join());
    });
}

TEST(process, stop_returns_at_once_and_join_waits_for_the_calls_before_it) {
    run_bounded("stop", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> w;
        w.start();
        auto t0 = std::chrono::steady_clock::now();
        w.call(&counter::sleep_ms, 500);
        w.call(&counter::add, 5);
        w.call(&counter::add, 6);
        w.stop();
        EXPECT_LT(seconds_since(t0), 0.4);
        EXPECT_TRUE(w.running());
        EXPECT_THROW(w.call(&counter::add, 7), pf::error);
        EXPECT_THROW(w.ask(&counter::square, 1), pf::error);
        w.stop();  // again: nothing more
        EXPECT_TRUE(w.join().ok());
        EXPECT_GE(seconds_since(t0), 0.45);
        // post_run saw both adds queued before stop(), and nothing after.
        EXPECT_EQ(w.receive<std::string>(), "post_run saw 11");
    });
}

} // namespace

TEST(process, a_moved_from_process_throws_logic_error) {
    run_bounded("moved from", 60, +[] {
        PARAFORK_LEAK_CHECK();
        pf::process<counter> a;
        a.start();
        pf::process<counter> b(std::move(a));
        EXPECT_THROW(a.pid(), std::logic_error);
        EXPECT_THROW(a.name(), std::logic_error);
        EXPECT_THROW(a.started(), std::logic_error);
        EXPECT_THROW(a.running(), std::logic_error);
        EXPECT_THROW(a.fd(), std::logic_error);
        EXPECT_THROW(a.exit_status(), std::logic_error);
        EXPECT_THROW(a.pending_asks(), std::logic_error);
        EXPECT_THROW(a.call(&counter::add, 1), std::logic_error);
        EXPECT_THROW(a.ask(&counter::get_total), std::logic_error);
        EXPECT_THROW(a.join(), std::logic_error);
        b.call(&counter::add, 2);
        EXPECT_EQ(b.ask(&counter::get_total).get(), 2);
        b.join();
    });
}

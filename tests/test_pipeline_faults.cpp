// Pipelines under failure: an exception anywhere, a stage killed from outside, stop(), a reader
// that stops early; and an idle pipeline that must not use the CPU. Every case must leave no
// process, zombie, descriptor or /dev/shm entry behind.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/process.hpp>
#include <parafork/sys/signals.hpp>

#include "support/gated_source.hpp"
#include "support/grandchild.hpp"
#include "support/leak_check.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <streambuf>
#include <string>
#include <system_error>
#include <thread>
#include <vector>
#include <fcntl.h>
#include <unistd.h>

namespace pf = parafork;
using pf::testing::run_bounded;

namespace {

int add1(int x) { return x + 1; }

struct ThrowingSource : pf::stage<int> {
    void setup() {
        for (int i = 0; i < 100; ++i) put(i);
        throw std::runtime_error("source broke");
    }
};

struct ThrowingSink : pf::stage<> {
    int seen = 0;
    void process(int) {
        if (++seen == 500) throw std::invalid_argument("sink broke");
    }
};

struct Slow : pf::stage<int> {
    void process(int x) {
        ::usleep(1000);
        put(x);
    }
};

// Runs `body` with descriptor `target` (1 or 2) going to a temporary file, which stages forked
// meanwhile inherit; returns what was written there.
template <class F>
std::string capture(int target, F&& body) {
    char path[] = "/tmp/parafork_capture_XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "mkstemp");
    std::fflush(stdout);
    std::cout.flush();
    int saved = ::dup(target);
    ::dup2(fd, target);
    ::close(fd);
    struct restore {
        int target, saved;
        const char* path;
        ~restore() {
            ::dup2(saved, target);
            ::close(saved);
            ::unlink(path);
        }
    } r{target, saved, path};
    body();
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

} // namespace

TEST(pipeline_faults, exception_in_source) {
    run_bounded("exception_in_source", 60, [] {
        PARAFORK_LEAK_CHECK();
        auto p = pf::ez(ThrowingSource{}, add1, add1);
        try {
            p.list();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(std::string(e.what()).find("ThrowingSource"), std::string::npos) << e.what();
            EXPECT_NE(e.message().find("source broke"), std::string::npos);
            EXPECT_EQ(e.type_name(), "std::runtime_error");
        }
        EXPECT_TRUE(p.finished());
    });
}

TEST(pipeline_faults, exception_in_middle_stage) {
    run_bounded("exception_in_middle_stage", 60, [] {
        PARAFORK_LEAK_CHECK();
        auto boom = [](int x) {
            if (x == 5000) throw std::logic_error("middle broke");
            return x;
        };
        auto p = pf::ez(pf::iter(0, 100'000), add1, pf::named("boom", boom), add1);
        try {
            long n = 0;
            for ([[maybe_unused]] int v : p.items()) ++n;
            ADD_FAILURE() << "no exception after " << n << " items";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(std::string(e.what()).find("stage boom"), std::string::npos) << e.what();
            EXPECT_EQ(e.type_name(), "std::logic_error");
            EXPECT_GT(e.pid(), 0);
        }
    });
}

TEST(pipeline_faults, exception_in_sink) {
    run_bounded("exception_in_sink", 60, [] {
        PARAFORK_LEAK_CHECK();
        auto p = pf::ez(pf::constant(1), pf::workers(2, add1), ThrowingSink{});  // endless source
        try {
            p.join();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(std::string(e.what()).find("stage ThrowingSink"), std::string::npos) << e.what();
            EXPECT_NE(e.message().find("sink broke"), std::string::npos) << e.what();
            EXPECT_EQ(e.type_name(), "std::invalid_argument");
        }
        // join() again reports the same failure rather than hanging.
        EXPECT_THROW(p.join(), pf::remote_error);
    });
}

TEST(pipeline_faults, exception_in_initialize_fails_start) {
    run_bounded("exception_in_initialize", 30, [] {
        PARAFORK_LEAK_CHECK();
        struct Bad : pf::stage<int> {
            void initialize() { throw std::runtime_error("no config"); }
            void process(int x) { put(x); }
        };
        auto p = pf::ez(pf::iter(0, 10), Bad{});
        EXPECT_THROW(p.start(), std::runtime_error);
        EXPECT_TRUE(p.pids().empty());
    });
}

TEST(pipeline_faults, stage_killed_from_outside) {
    run_bounded("stage_killed", 60, [] {
        PARAFORK_LEAK_CHECK();
        auto p = pf::ez(pf::constant(7), pf::named("slow", Slow{}), add1);
        p.start();
        auto pids = p.pids();
        ASSERT_EQ(pids.size(), 3u);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        ::kill(pids[1], SIGKILL);
        try {
            p.join();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.pid(), pids[1]);
            EXPECT_EQ(e.signal(), SIGKILL);
            EXPECT_NE(std::string(e.what()).find("stage slow"), std::string::npos) << e.what();
        }
        for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "process " << pid << " survived";
    });
}

// A stage that forks a grandchild (which keeps the stage's error pipe) and dies is reported
// at once, from its pidfd, not when the grandchild lets go of the pipe.
struct LeavesAGrandchild : pf::stage<int> {
    pf::testing::lingering_grandchild* g = nullptr;
    void process(int) { g->leave_and_die(30); }
};

TEST(pipeline_faults, a_stage_death_is_reported_at_once_though_a_grandchild_holds_its_pipe) {
    run_bounded("grandchild", 20, [] {
        PARAFORK_LEAK_CHECK();
        pf::testing::lingering_grandchild g;
        LeavesAGrandchild stage;
        stage.g = &g;
        auto p = pf::ez(pf::constant(7), pf::named("dies", stage), add1);
        p.start();
        auto pids = p.pids();
        try {
            p.join();
            ADD_FAILURE() << "no exception";
        } catch (const pf::worker_died& e) {
            EXPECT_EQ(e.pid(), pids.at(1));
            EXPECT_EQ(e.signal(), SIGKILL);
        }
        EXPECT_TRUE(g.alive());  // reported while the grandchild still holds the pipe
    });
}

// The end of a stream travels with the data: a reader sees it as soon as the last writer has
// put its last item, not when that writer's process has exited. Here the source's exit hangs
// (flushing std::cout, whose buffer waits for a gate) until the test has seen the end pass
// through the next stage, which puts -1 once its input is over.
struct gate_buf : std::streambuf {
    int fd = -1;
    int sync() override {
        char c;
        while (::read(fd, &c, 1) < 0 && errno == EINTR) {
        }
        return 0;
    }
};

struct SourceThatLingers : pf::stage<int> {
    int gate_fd = -1;
    void setup() {
        static gate_buf buf;
        buf.fd = gate_fd;
        std::cout.rdbuf(&buf);  // flushed at the process's exit: it waits for the gate there
        put(1);
        put(2);
        stop();
    }
};

struct SaysWhenInputEnds : pf::stage<int> {
    void process(int x) { put(x); }
    void teardown() { put(-1); }
};

TEST(pipeline_faults, the_end_of_a_stream_does_not_wait_for_its_writer_to_exit) {
    run_bounded("end_before_exit", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto gate = pf::sys::make_pipe();
        pf::sys::private_fd gate_write(std::move(gate.write));  // no stage holds it
        SourceThatLingers src;
        src.gate_fd = gate.read.get();
        auto p = pf::ez(src, SaysWhenInputEnds{});
        std::vector<int> seen;
        for (int v : p.items()) {
            seen.push_back(v);
            if (v == -1) gate_write.reset();  // the source may exit now
        }
        EXPECT_EQ(seen, (std::vector<int>{1, 2, -1}));
    });
}

// A stage that leaves by exit(0) never counted itself out of its queue: the parent does it
// when it sees the clean exit, and the readers still get their end.
int exits_at_three(int x) {
    if (x == 3) ::_exit(0);
    return x;
}

TEST(pipeline_faults, a_stage_that_exits_cleanly_by_itself_still_ends_its_queue) {
    run_bounded("clean_exit", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto v = pf::ez(pf::iter(0, 10), pf::named("exits", &exits_at_three), pf::parallel(add1, add1)).list();
        EXPECT_LE(v.size(), 3u);  // what it had put before may or may not have been sent
        for (int x : v) EXPECT_LE(x, 3);
    });
}

TEST(pipeline_faults, stop_ends_every_process) {
    run_bounded("stop", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto p = pf::ez(pf::constant(1), pf::workers(3, add1), Slow{});
        p.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        p.stop();
        EXPECT_TRUE(p.finished());
        for (pid_t pid : p.pids()) EXPECT_NE(::kill(pid, 0), 0);
    });
}

// A destructor is not a join: a graph still running is stopped by the stop policy (SIGTERM,
// one grace period, SIGKILL), promptly, and nothing is printed about it.
TEST(pipeline_faults, the_destructor_stops_a_running_graph_without_waiting_or_printing) {
    run_bounded("destructor_stops", 60, [] {
        PARAFORK_LEAK_CHECK();
        // Deaf to SIGTERM, busy for 8 s, then fails: waiting for it would take that long and
        // have an error to print.
        struct Stuck : pf::stage<int> {
            void setup() { std::signal(SIGTERM, SIG_IGN); }
            void process(int) {
                ::usleep(8'000'000);
                throw std::runtime_error("stuck stage gave up");
            }
        };
        std::vector<pid_t> pids;
        std::chrono::steady_clock::duration took{};
        std::string err = capture(2, [&] {
            auto p = pf::ez(pf::constant(1), pf::named("stuck", Stuck{}), add1);
            p.start();
            pids = p.pids();
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            auto t0 = std::chrono::steady_clock::now();
            {
                auto gone = std::move(p);
            }
            took = std::chrono::steady_clock::now() - t0;
        });
        EXPECT_LT(took, std::chrono::seconds(4)) << "the destructor waited for the graph";
        EXPECT_EQ(err, "") << "the destructor printed";
        ASSERT_EQ(pids.size(), 3u);
        for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "process " << pid << " survived";
    });
}

TEST(pipeline_faults, daemonized_pipeline_is_stopped_by_its_destructor) {
    run_bounded("daemonize", 30, [] {
        PARAFORK_LEAK_CHECK();
        std::vector<pid_t> pids;
        {
            auto p = pf::ez(pf::constant(1), add1, Slow{});
            p.daemonize().start();
            pids = p.pids();
        }
        for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0);
    });
}

TEST(pipeline_faults, a_stage_that_stops_ends_an_endless_source) {
    run_bounded("early_stop", 30, [] {
        PARAFORK_LEAK_CHECK();
        struct Take : pf::stage<int> {
            int n = 0;
            void process(int x) {
                put(x);
                if (++n == 1000) stop();
            }
        };
        auto v = pf::ez(pf::constant(3), Take{}).list();
        EXPECT_EQ(v.size(), 1000u);
    });
}

TEST(pipeline_faults, idle_pipeline_uses_no_cpu) {
    run_bounded("idle_cpu", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto gate = pf::sys::make_pipe();
        int gate_fd = gate.read.get();
        // Private: no stage process may hold the write end, or the source would never see EOF.
        pf::sys::private_fd gate_write(std::move(gate.write));
        auto p = pf::ez(pf::testing::gated_source(gate_fd), add1, pf::workers(3, add1), add1);
        auto items = p.items();
        gate.read.reset();
        pf::sys::write_all(gate_write.get(), "ab", 2);  // some traffic first, then quiet
        // Both items went all the way through before the quiet part is measured.
        auto it = items.begin();
        ASSERT_NE(it, items.end());
        int first = *it;
        ++it;
        ASSERT_NE(it, items.end());
        int second = *it;
        EXPECT_EQ(first + second, 'a' + 'b' + 6);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        std::chrono::milliseconds before{}, after{};
        for (pid_t pid : p.pids()) before += pf::testing::cpu_time(pid);
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        for (pid_t pid : p.pids()) after += pf::testing::cpu_time(pid);
        // Six processes over one second: a spinning one alone would burn ~1000 ms.
        EXPECT_LE(after - before, std::chrono::milliseconds(100)) << "idle stages used CPU";
        gate_write.reset();  // the source sees EOF and the graph finishes
        ++it;
        EXPECT_EQ(it, items.end());
    });
}

TEST(pipeline_faults, sigint_in_the_parent_stops_the_graph) {
    run_bounded("sigint", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto p = pf::ez(pf::constant(1), Slow{});
        p.start();
        pid_t self = ::getpid();
        pf::sys::child helper(pf::sys::fork_call([self] {
            ::usleep(200'000);
            ::kill(self, SIGINT);
        }));
        EXPECT_THROW(p.join(), pf::interrupted);
        helper.wait();
        for (pid_t pid : p.pids()) EXPECT_NE(::kill(pid, 0), 0);
    });
}

TEST(pipeline_faults, watch_reports_queues_on_stderr) {
    run_bounded("watch", 30, [] {
        PARAFORK_LEAK_CHECK();
        std::string text = capture(2, [] {
            auto p = pf::ez(pf::iter(0, 700), Slow{}, add1);
            p.watch().named("watched").join();
        });
        EXPECT_NE(text.find("items/s"), std::string::npos) << text;
        EXPECT_NE(text.find("Slow -> fn"), std::string::npos) << text;
        EXPECT_EQ(text.find("\x1b["), std::string::npos) << "escape sequences in a file";
    });
}

TEST(pipeline_faults, an_exception_unwinding_past_a_running_pipeline_stops_it) {
    run_bounded("unwinding", 30, [] {
        PARAFORK_LEAK_CHECK();
        std::vector<pid_t> pids;
        try {
            auto p = pf::ez(pf::constant(1), add1, Slow{});  // would never finish on its own
            p.start();
            pids = p.pids();
            throw std::runtime_error("caller gave up");
        } catch (const std::runtime_error&) {
        }
        for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0);
    });
}

TEST(pipeline_faults, unknown_xcut_name_fails_the_stage) {
    run_bounded("xcut_name", 30, [] {
        PARAFORK_LEAK_CHECK();
        struct Asks : pf::stage<int> {
            pf::xcut_handle<int> h;
            void setup() { h = xcut<int>("nope"); }
            void process(int x) { put(x); }
        };
        auto side = pf::ez([](int) {});
        auto p = pf::ez(pf::iter(0, 10), Asks{}).xcut("db", side);
        try {
            p.join();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(e.message().find("stage Asks has no xcut named 'nope' (it has db)"), std::string::npos)
                << e.what();
        }
    });
}

TEST(pipeline_faults, an_unset_xcut_handle_fails_the_stage) {
    run_bounded("xcut_unset", 30, [] {
        PARAFORK_LEAK_CHECK();
        struct Forgot : pf::stage<int> {
            pf::xcut_handle<std::string> h;  // never asked for
            void process(int x) {
                h.put("x");
                put(x);
            }
        };
        auto side = pf::ez([](const std::string&) {});
        auto p = pf::ez(pf::iter(0, 10), Forgot{}).xcut("log", side);
        try {
            p.join();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(e.message().find("xcut handle that xcut<Q>(name) did not give"), std::string::npos) << e.what();
            EXPECT_EQ(e.type_name(), "std::logic_error");
        }
    });
}

TEST(pipeline_faults, xcut_of_the_wrong_type_fails_the_stage_before_its_first_item) {
    run_bounded("xcut_type", 30, [] {
        PARAFORK_LEAK_CHECK();
        struct Asks : pf::stage<int> {
            pf::xcut_handle<int> h;
            void setup() { h = xcut<int>("log"); }  // asked for in setup(): checked before any item
            void process(int x) {
                h.put(x);
                put(x);
            }
        };
        auto side = pf::ez([](const std::string&) {});
        auto p = pf::ez(pf::iter(0, 10), Asks{}).xcut("log", side);
        std::size_t got = 0;
        try {
            for ([[maybe_unused]] int v : p.items()) ++got;
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(std::string(e.what()).find("stage Asks"), std::string::npos) << e.what();
            EXPECT_NE(e.message().find("xcut 'log' takes std::string, not int"), std::string::npos) << e.what();
        }
        EXPECT_EQ(got, 0u) << "the stage handled items before its xcut was checked";
    });
}

TEST(pipeline_faults, no_orphans_when_the_parent_is_killed) {
    run_bounded("no_orphans", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto report = pf::sys::make_pipe();
        pf::sys::child owner(pf::sys::fork_call([&] {
            report.read.reset();
            auto p = pf::ez(pf::constant(1), add1, Slow{});
            p.start();
            auto pids = p.pids();
            pf::sys::write_all(report.write.get(), pids.data(), pids.size() * sizeof(pid_t));
            report.write.reset();
            for (;;) ::pause();
        }));
        report.write.reset();
        std::vector<pid_t> pids(3);
        ASSERT_TRUE(pf::sys::read_exact(report.read.get(), pids.data(), pids.size() * sizeof(pid_t)));
        owner.signal(SIGKILL);
        owner.wait();
        // The stages die with their parent (PR_SET_PDEATHSIG) and init reaps them.
        for (pid_t pid : pids) {
            bool gone = false;
            for (int i = 0; i < 500 && !gone; ++i) {
                gone = ::kill(pid, 0) != 0;
                if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
            EXPECT_TRUE(gone) << "stage " << pid << " outlived its parent";
        }
    });
}

TEST(pipeline_faults, items_of_a_temporary_keep_the_pipeline_alive) {
    run_bounded("items_temporary", 30, [] {
        PARAFORK_LEAK_CHECK();
        long long sum = 0;
        int n = 0;
        for (int v : pf::ez(pf::iter(0, 1000), add1).items()) {
            sum += v;
            ++n;
        }
        EXPECT_EQ(n, 1000);
        EXPECT_EQ(sum, 1000LL * 1001 / 2);
        // Lazy: an endless source, a few items, then the loop leaves and the range (which owns
        // the pipeline) ends it instead of draining forever.
        auto t0 = std::chrono::steady_clock::now();
        n = 0;
        for (int v : pf::ez(pf::constant(1), add1).items()) {
            EXPECT_EQ(v, 2);
            if (++n == 5) break;
        }
        EXPECT_EQ(n, 5);
        EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    });
}

TEST(pipeline_faults, leaving_items_early_then_destroying_does_not_hang) {
    run_bounded("items_break", 30, [] {
        PARAFORK_LEAK_CHECK();
        std::vector<pid_t> pids;
        auto t0 = std::chrono::steady_clock::now();
        {
            auto p = pf::ez(pf::constant(1), add1, pf::workers(2, add1));
            int n = 0;
            for (int v : p.items()) {
                EXPECT_EQ(v, 3);
                if (++n == 5) break;
            }
            EXPECT_EQ(n, 5);
            pids = p.pids();
            EXPECT_FALSE(p.finished());
        }  // the destructor stops the graph: the source would never end on its own
        EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
        ASSERT_EQ(pids.size(), 4u);
        for (pid_t pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "process " << pid << " survived";
    });
}

TEST(pipeline_faults, zip_branch_that_drops_an_item_fails_the_merger) {
    run_bounded("zip_count", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto p = pf::ez(pf::iter(0, 100), pf::zip(add1, pf::filter([](int x) { return x != 50; })));
        try {
            p.join();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(std::string(e.what()).find("stage zip"), std::string::npos) << e.what();
            EXPECT_NE(e.message().find("zip branches produced different numbers of items"), std::string::npos)
                << e.what();
            EXPECT_EQ(e.type_name(), "protocol_error");
        }
        EXPECT_TRUE(p.finished());
    });
}

TEST(pipeline_faults, read_and_write_lines_report_files_they_cannot_open) {
    run_bounded("lines_errors", 30, [] {
        PARAFORK_LEAK_CHECK();
        auto p = pf::ez(pf::read_lines("/nonexistent/parafork_input"), pf::write_lines("/dev/null"));
        try {
            p.join();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(std::string(e.what()).find("stage read_lines"), std::string::npos) << e.what();
            EXPECT_NE(e.message().find("cannot open /nonexistent/parafork_input: No such file"), std::string::npos)
                << e.what();
        }
        auto q = pf::ez(pf::iter(0, 10), [](int x) { return std::to_string(x); },
                        pf::write_lines("/nonexistent/dir/parafork_output"));
        try {
            q.join();
            ADD_FAILURE() << "no exception";
        } catch (const pf::remote_error& e) {
            EXPECT_NE(std::string(e.what()).find("stage write_lines"), std::string::npos) << e.what();
            EXPECT_NE(e.message().find("cannot open /nonexistent/dir/parafork_output"), std::string::npos)
                << e.what();
        }
    });
}

TEST(pipeline_faults, line_files_are_close_on_exec) {
    PARAFORK_LEAK_CHECK();
    std::string path = "/tmp/parafork_lines_" + std::to_string(::getpid());
    {
        pf::detail::line_writer w;
        w.open(path);
        EXPECT_NE(::fcntl(w.fd(), F_GETFD) & FD_CLOEXEC, 0);
        w.buffer() = "one\n\nthree";  // an empty line and a last line without a newline
        w.close();
    }
    pf::detail::line_reader r;
    r.open(path);
    EXPECT_NE(::fcntl(r.fd(), F_GETFD) & FD_CLOEXEC, 0);
    std::vector<std::string> lines;
    std::string line;
    while (r.next(line)) lines.push_back(line);
    EXPECT_EQ(lines, (std::vector<std::string>{"one", "", "three"}));
    ::unlink(path.c_str());
}

TEST(pipeline_faults, a_parent_waiting_in_join_uses_little_cpu) {
    run_bounded("join_cpu", 30, [] {
        PARAFORK_LEAK_CHECK();
        struct Sleepy : pf::stage<int> {
            void setup() {
                ::usleep(1'200'000);
                put(1);
                stop();
            }
        };
        auto p = pf::ez(Sleepy{}, add1, [](int) {});
        p.start();
        auto t0 = std::chrono::steady_clock::now();
        auto before = pf::testing::cpu_time(::getpid());
        p.join();
        auto after = pf::testing::cpu_time(::getpid());
        EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
        // It wakes every 20 ms to look at the stages: cheap, nowhere near a spinning core.
        EXPECT_LE(after - before, std::chrono::milliseconds(150)) << "the parent used CPU while waiting";
    });
}

TEST(pipeline_faults, a_source_blocked_on_a_full_queue_sleeps_and_the_queue_stays_bounded) {
    run_bounded("backpressure", 30, [] {
        PARAFORK_LEAK_CHECK();
        pf::sys::mapping shared(-1, sizeof(std::atomic<long>));
        auto* made = new (shared.data()) std::atomic<long>(0);
        struct Counted : pf::stage<int> {
            std::atomic<long>* made;
            explicit Counted(std::atomic<long>* m) : made(m) {}
            void setup() {
                for (;;) {
                    put(1);
                    made->fetch_add(1, std::memory_order_relaxed);
                }
            }
        };
        struct Stalled : pf::stage<> {
            void process(int) {
                for (;;) ::pause();
            }
        };
        auto p = pf::ez(Counted(made), Stalled{});
        p.start();
        // Until the queue is full: the count stops growing (a loaded machine may take a while).
        long n1 = -1;
        for (int i = 0; i < 50 && made->load() != n1; ++i) {
            n1 = made->load();
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        auto before = pf::testing::cpu_time(p.pids()[0]);
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        auto after = pf::testing::cpu_time(p.pids()[0]);
        long n2 = made->load();
        EXPECT_GT(n1, 0);
        EXPECT_EQ(n2, n1) << "the source kept putting into a full queue";
        // A 1 MiB queue of ~9-byte records plus one 64 KiB batch in hand: well under a million.
        EXPECT_LT(n2, 1'000'000);
        EXPECT_LE(after - before, std::chrono::milliseconds(100)) << "a source waiting for room used CPU";
        p.stop();
        for (pid_t pid : p.pids()) EXPECT_NE(::kill(pid, 0), 0);
    });
}

TEST(pipeline_faults, print_and_stamp_write_to_stdout) {
    run_bounded("print_stamp", 30, [] {
        PARAFORK_LEAK_CHECK();
        std::vector<int> out;
        std::string text = capture(1, [&] {
            auto p = pf::ez(pf::iter(1, 4), pf::print("n"), pf::stamp("done"), pf::batch(2), pf::print(),
                            [](const std::vector<int>& v) { return std::make_tuple(v.size(), v.front() == 1); },
                            pf::print("t"), [](std::tuple<std::size_t, bool> t) { return int(std::get<0>(t)); });
            out = p.list();
        });
        EXPECT_EQ(out, (std::vector<int>{2, 1}));
        // Each stage is a process of its own: compare each one's lines, in order.
        auto lines_with = [&](const std::string& prefix) {
            std::string got, line;
            std::istringstream is(text);
            while (std::getline(is, line))
                if (line.rfind(prefix, 0) == 0) got += line + "\n";
            return got;
        };
        EXPECT_EQ(lines_with("n "), "n 1\nn 2\nn 3\n") << text;
        EXPECT_EQ(lines_with("done "), "done 1\ndone 2\ndone 3\n") << text;
        EXPECT_EQ(lines_with("["), "[1, 2]\n[3]\n") << text;
        EXPECT_EQ(lines_with("t "), "t (2, true)\nt (1, false)\n") << text;
    });
}

TEST(pipeline_faults, initialize_runs_in_the_parent_before_the_fork) {
    run_bounded("initialize", 30, [] {
        PARAFORK_LEAK_CHECK();
        struct Init : pf::stage<std::vector<long>> {
            long parent_pid = 0, config = 0;
            void initialize() {
                parent_pid = ::getpid();  // the process that calls start()
                config = 42;
            }
            void process(int x) { put(std::vector<long>{parent_pid, config, static_cast<long>(::getpid()), x}); }
        };
        auto v = pf::ez(pf::iter(0, 3), Init{}).list();
        ASSERT_EQ(v.size(), 3u);
        for (auto& r : v) {
            EXPECT_EQ(r[0], ::getpid()) << "initialize() ran somewhere else";
            EXPECT_EQ(r[1], 42) << "the stage process did not get initialize()'s state";
            EXPECT_NE(r[2], ::getpid()) << "process() ran in the parent";
        }
        EXPECT_EQ(v[2][3], 2);
    });
}

TEST(pipeline_faults, watch_redraws_in_place_on_a_terminal) {
    run_bounded("watch_tty", 30, [] {
        PARAFORK_LEAK_CHECK();
        int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        ASSERT_GE(master, 0);
        ASSERT_EQ(::grantpt(master), 0);
        ASSERT_EQ(::unlockpt(master), 0);
        int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
        ASSERT_GE(slave, 0);
        pf::sys::set_nonblocking(master);
        int saved = ::dup(2);
        ::dup2(slave, 2);
        std::string text;
        auto drain = [&] {
            char buf[4096];
            for (long n; (n = ::read(master, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
        };
        {
            // Long enough for a few redraws (one every 0.5 s); the terminal is read as it goes.
            auto p = pf::ez(pf::iter(0, 1400), Slow{}, add1);
            for ([[maybe_unused]] int v : p.watch().items()) drain();
        }
        ::dup2(saved, 2);
        ::close(saved);
        drain();  // the slave is still open: what was written is still there to read
        ::close(slave);
        ::close(master);
        // A terminal gets line clears, and from the second frame on the cursor moves back up
        // over the previous frame (a header and three queues, the parent reading the last).
        EXPECT_NE(text.find("\x1b[2K"), std::string::npos) << text;
        EXPECT_NE(text.find("\x1b[4A"), std::string::npos) << text;
        EXPECT_NE(text.find("Slow -> fn"), std::string::npos) << text;
    });
}

// Pipelines: graph shapes, stage kinds, order, meta, xcut, built-ins.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>
#include <parafork/sys/memory.hpp>
#include <parafork/sys/signals.hpp>

#include "support/leak_check.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <numeric>
#include <sstream>
#include <unistd.h>

namespace pf = parafork;

namespace {

struct Count : pf::stage<int> {
    int to;
    explicit Count(int n) : to(n) {}
    void setup() {
        for (int n = 1; n <= to; ++n) put(n);
        stop();
    }
};

struct AddX : pf::stage<int> {
    int amount;
    explicit AddX(int a = 1) : amount(a) {}
    void process(int n) { put(n + amount); }
};

int add1(int x) { return x + 1; }
int mul2(int x) { return x * 2; }

std::string temp_path(const char* tag) {
    return "/tmp/parafork_test_" + std::string(tag) + "_" + std::to_string(::getpid());
}

} // namespace

// Connected stages must agree on the item type; ez() static_asserts this rule.
static_assert(pf::accepts<AddX, int>);
static_assert(pf::accepts<AddX, short>);
static_assert(!pf::accepts<AddX, std::string>);
static_assert(!pf::accepts<Count, int>);  // a source takes nothing
static_assert(pf::accepts<decltype(&add1), int>);
static_assert(!pf::accepts<decltype(&add1), std::vector<int>>);
static_assert(pf::accepts<decltype([](auto x) { return x + 1; }), double>);
static_assert(!pf::accepts<decltype([](auto x) -> decltype(x + 1) { return x + 1; }), std::vector<int>>);

TEST(pipeline, count_addx_list) {
    PARAFORK_LEAK_CHECK();
    auto v = pf::ez(Count(5), AddX(10)).list();
    EXPECT_EQ(v, (std::vector<int>{11, 12, 13, 14, 15}));
}

TEST(pipeline, functions_and_parallel) {
    PARAFORK_LEAK_CHECK();
    auto v = pf::ez(pf::iter(0, 1000), add1, pf::parallel(mul2, mul2)).list();
    ASSERT_EQ(v.size(), 1000u);
    std::sort(v.begin(), v.end());
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(v[static_cast<std::size_t>(i)], (i + 1) * 2);
}

TEST(pipeline, serial_nesting_and_lambdas) {
    PARAFORK_LEAK_CHECK();
    auto inner = pf::ez(add1, [](int x) { return x * 10; });
    auto v = pf::ez(pf::iter(std::vector<int>{1, 2, 3}), inner, pf::serial([](auto x) { return x - 1; })).list();
    EXPECT_EQ(v, (std::vector<int>{19, 29, 39}));
}

TEST(pipeline, broadcast_gives_every_branch_every_item) {
    PARAFORK_LEAK_CHECK();
    auto v = pf::ez(pf::iter(1, 101), pf::broadcast(mul2, pf::serial(add1, add1))).list();
    ASSERT_EQ(v.size(), 200u);
    long long sum = std::accumulate(v.begin(), v.end(), 0LL);
    EXPECT_EQ(sum, 2 * 5050 + (5050 + 200));
}

TEST(pipeline, broadcast_of_a_sink_and_a_chain_and_reference_parameters) {
    PARAFORK_LEAK_CHECK();
    struct Mutates : pf::stage<std::string> {
        void process(std::string& s) {  // a non-const reference parameter works too
            s += "!";
            put(s);
        }
    };
    auto v = pf::ez(pf::iter(0, 50), pf::broadcast([](int) {}, pf::serial(add1, [](int x) { return std::to_string(x); })),
                    Mutates{}, [](std::string&& s) { return s + "?"; })
                 .list();
    ASSERT_EQ(v.size(), 50u);
    std::sort(v.begin(), v.end());
    EXPECT_EQ(v.front(), "1!?");
}

TEST(pipeline, as_and_by) {
    PARAFORK_LEAK_CHECK();
    auto a = pf::ez(pf::iter(0, 300), pf::as<AddX>(3, 5)).list();
    ASSERT_EQ(a.size(), 300u);
    EXPECT_EQ(std::accumulate(a.begin(), a.end(), 0LL), 299 * 300 / 2 + 5 * 300);
    auto b = pf::ez(pf::iter(0, 300), pf::by<AddX>(3, 5)).list();
    ASSERT_EQ(b.size(), 900u);
    EXPECT_EQ(std::accumulate(b.begin(), b.end(), 0LL), 3 * (299 * 300 / 2 + 5 * 300));
}

TEST(pipeline, ordered_parallel_restores_input_order) {
    PARAFORK_LEAK_CHECK();
    // Uneven work and zero or two outputs per input: order must still come back.
    auto jitter = [](int x) {
        if (x % 97 == 0) ::usleep(2000);
        return x;
    };
    struct Fan : pf::stage<int> {
        void process(int x) {
            if (x % 5 == 0) return;  // no output for this one
            if (x % 7 == 0) ::usleep(1000);
            put(x);
            if (x % 3 == 0) put(-x);
        }
    };
    auto v = pf::ez(pf::iter(0, 5000), pf::workers(3, jitter), add1, pf::as<Fan>(4).ordered())
                 .list();
    // workers(3) loses order; add1 is one process; the ordered group restores add1's order,
    // so compare against what add1 saw, as a multiset per position group: check the pattern.
    std::vector<int> expect_from;  // the inputs of Fan in the order add1 emitted them
    std::size_t i = 0;
    std::vector<int> seen;
    for (; i < v.size(); ++i) {
        int x = v[i];
        ASSERT_GT(x, 0);
        ASSERT_NE(x % 5, 0);
        seen.push_back(x);
        if (x % 3 == 0) {
            ASSERT_LT(i + 1, v.size());
            EXPECT_EQ(v[i + 1], -x) << "an input's outputs must stay together, in put order";
            ++i;
        }
    }
    std::vector<int> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
    std::size_t want = 0;
    for (int x = 1; x <= 5000; ++x) want += (x % 5 != 0);
    EXPECT_EQ(seen.size(), want);

    // With a single upstream stage in input order, the output is exactly in input order.
    auto w = pf::ez(pf::iter(0, 20000), pf::workers(3, jitter).ordered()).list();
    ASSERT_EQ(w.size(), 20000u);
    for (int k = 0; k < 20000; ++k) ASSERT_EQ(w[static_cast<std::size_t>(k)], k);

    // The same when the group's consumer is a stage process rather than the parent.
    auto u = pf::ez(pf::iter(0, 20000), pf::workers(3, jitter).ordered(), add1, mul2).list();
    ASSERT_EQ(u.size(), 20000u);
    for (int k = 0; k < 20000; ++k) ASSERT_EQ(u[static_cast<std::size_t>(k)], 2 * (k + 1));
}

// Behind one slow input, the reader after an ordered group holds at most 4,096 inputs (as
// `forked` with `ordered`): the stage that numbers them sends no more until the slow one is
// through. Then the output is complete and in order, whether the parent or a stage reads it.
TEST(pipeline, ordered_group_holds_a_bounded_amount_behind_a_slow_item) {
    pf::testing::run_bounded("ordered_bound", 60, [] {
        PARAFORK_LEAK_CHECK();
        constexpr long total = 12000;
        pf::sys::mapping shared(-1, 4096);
        auto* done = static_cast<std::atomic<long>*>(shared.data());
        auto* seen_by_first = done + 1;
        // Input 0 waits until the others stop coming (all done, or none for 1 s).
        struct SlowFirst : pf::stage<int> {
            std::atomic<long>* done = nullptr;
            std::atomic<long>* seen = nullptr;
            void process(int x) {
                if (x != 0) {
                    done->fetch_add(1);
                    put(x);
                    return;
                }
                long last = -1;
                auto still = std::chrono::steady_clock::now();
                while (done->load() < total - 1 && std::chrono::steady_clock::now() - still < std::chrono::seconds(1)) {
                    if (long now = done->load(); now != last) {
                        last = now;
                        still = std::chrono::steady_clock::now();
                    }
                    ::usleep(10000);
                }
                seen->store(done->load());
                put(x);
            }
        };
        SlowFirst slow;
        slow.done = done;
        slow.seen = seen_by_first;
        for (bool stage_reads : {false, true}) {
            done->store(0);
            seen_by_first->store(-1);
            std::vector<int> v;
            if (stage_reads) v = pf::ez(pf::iter(0, static_cast<int>(total)), pf::workers(2, slow).ordered(), add1).list();
            else v = pf::ez(pf::iter(0, static_cast<int>(total)), pf::workers(2, slow).ordered()).list();
            ASSERT_EQ(v.size(), static_cast<std::size_t>(total)) << (stage_reads ? "stage" : "parent");
            for (long k = 0; k < total; ++k)
                ASSERT_EQ(v[static_cast<std::size_t>(k)], k + (stage_reads ? 1 : 0)) << "at " << k;
            // Inputs 1..4095 at most were sent while input 0 was held up.
            EXPECT_GE(seen_by_first->load(), 0);
            EXPECT_LT(seen_by_first->load(), 4096) << (stage_reads ? "stage" : "parent") << " held too many";
        }
    });
}

// The reader after an ordered group ends early: the stage numbering the group's inputs stops
// waiting for it to pass more on, and the graph winds down instead of hanging.
TEST(pipeline, ordered_group_whose_reader_stops_early_does_not_hang) {
    pf::testing::run_bounded("ordered_reader_stops", 30, [] {
        PARAFORK_LEAK_CHECK();
        struct First : pf::stage<int> {
            void process(int x) {
                put(x);
                stop();
            }
        };
        auto v = pf::ez(pf::iter(0, 200'000), pf::workers(2, add1).ordered(), First{}).list();
        EXPECT_EQ(v, std::vector<int>{1});
    });
}

TEST(pipeline, zip_merges_broadcast_branches_per_item) {
    PARAFORK_LEAK_CHECK();
    auto v = pf::ez(pf::iter(0, 1000), pf::zip(add1, pf::serial(mul2, add1),
                                                                  [](int x) { return std::to_string(x); }))
                 .list();
    ASSERT_EQ(v.size(), 1000u);
    for (int i = 0; i < 1000; ++i) {
        auto& t = v[static_cast<std::size_t>(i)];
        EXPECT_EQ(std::get<0>(t), i + 1);
        EXPECT_EQ(std::get<1>(t), 2 * i + 1);
        EXPECT_EQ(std::get<2>(t), std::to_string(i));
    }
}

TEST(pipeline, builtins_filter_map_batch_constant) {
    PARAFORK_LEAK_CHECK();
    auto evens = pf::ez(pf::iter(0, 100), pf::filter([](int x) { return x % 2 == 0; }),
                        pf::transform([](int x) { return x / 2; }))
                     .list();
    EXPECT_EQ(evens.size(), 50u);
    EXPECT_EQ(evens.back(), 49);
    auto batches = pf::ez(pf::iter(0, 10), pf::batch(4)).list();
    ASSERT_EQ(batches.size(), 3u);
    EXPECT_EQ(batches[0], (std::vector<int>{0, 1, 2, 3}));
    EXPECT_EQ(batches[2], (std::vector<int>{8, 9}));
    auto c = pf::ez(pf::constant(std::string("x"), 7)).list();
    EXPECT_EQ(c, std::vector<std::string>(7, "x"));
}

TEST(pipeline, items_are_lazy_and_carry_meta) {
    PARAFORK_LEAK_CHECK();
    struct Named : pf::stage<int> {
        void setup() {
            for (int i = 0; i < 10; ++i) {
                meta()["name"] = "item" + std::to_string(i);
                put(i);
            }
            stop();
        }
    };
    struct Tag : pf::stage<int> {
        void process(int x) {
            meta()["seen"] = "yes";
            put(x * x);
        }
    };
    auto p = pf::ez(Named{}, Tag{}, add1);  // add1 (a function) passes meta on untouched
    auto items = p.items();
    int n = 0;
    for (auto it = items.begin(); it != items.end(); ++it, ++n) {
        EXPECT_EQ(*it, n * n + 1);
        EXPECT_EQ(items.meta().at("name"), "item" + std::to_string(n));
        EXPECT_EQ(items.meta().at("seen"), "yes");
    }
    EXPECT_EQ(n, 10);
    p.join();
}

TEST(pipeline, xcut_side_pipeline_shared_by_all_stages) {
    PARAFORK_LEAK_CHECK();
    auto path = temp_path("xcut");
    struct Logged : pf::stage<int> {
        void process(int x) {
            xcut<std::string>("log").put("saw " + std::to_string(x));
            put(x);
        }
    };
    auto writer = pf::ez(pf::write_lines(path));
    auto v = pf::ez(pf::iter(0, 50), pf::as<Logged>(2), Logged{}).xcut("log", writer).list();
    EXPECT_EQ(v.size(), 50u);
    std::ifstream in(path);
    std::string line;
    int lines = 0;
    while (std::getline(in, line)) {
        EXPECT_EQ(line.rfind("saw ", 0), 0u);
        ++lines;
    }
    EXPECT_EQ(lines, 100);  // two logging stages per item
    ::unlink(path.c_str());
}

TEST(pipeline, read_and_write_lines) {
    PARAFORK_LEAK_CHECK();
    auto in_path = temp_path("in"), out_path = temp_path("out");
    {
        std::ofstream f(in_path);
        for (int i = 0; i < 100; ++i) f << "line " << i << "\n";
    }
    pf::ez(pf::read_lines(in_path), [](const std::string& s) { return s + "!"; }, pf::write_lines(out_path)).join();
    std::ifstream f(out_path);
    std::string line;
    int n = 0;
    while (std::getline(f, line)) EXPECT_EQ(line, "line " + std::to_string(n++) + "!");
    EXPECT_EQ(n, 100);
    // Past one 64 KiB write, and back through read_lines: the same lines, in order.
    pf::ez(pf::iter(0, 20000), [](int x) { return "row " + std::to_string(x); }, pf::write_lines(out_path)).join();
    auto back = pf::ez(pf::read_lines(out_path)).list();
    ASSERT_EQ(back.size(), 20000u);
    for (int i = 0; i < 20000; ++i) ASSERT_EQ(back[static_cast<std::size_t>(i)], "row " + std::to_string(i));
    ::unlink(in_path.c_str());
    ::unlink(out_path.c_str());
}

TEST(pipeline, command_streams_items_through_a_program) {
    PARAFORK_LEAK_CHECK();
    std::vector<std::string> words;
    for (int i = 0; i < 2000; ++i) words.push_back("word" + std::to_string(i));
    auto v = pf::ez(pf::iter(words), pf::command({"tr", "a-z", "A-Z"})).list();
    ASSERT_EQ(v.size(), words.size());
    for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], "WORD" + std::to_string(i));
}

TEST(pipeline, command_that_stops_reading_or_fails) {
    PARAFORK_LEAK_CHECK();
    std::vector<std::string> lines(5000, "some text to feed the program");
    auto first = pf::ez(pf::iter(lines), pf::command({"head", "-n", "2"})).list();
    EXPECT_EQ(first, std::vector<std::string>(2, lines[0]));
    auto p = pf::ez(pf::iter(lines), pf::command({"sh", "-c", "read x; exit 3"}));
    try {
        p.join();
        ADD_FAILURE() << "no exception";
    } catch (const pf::remote_error& e) {
        EXPECT_NE(e.message().find("exit code 3"), std::string::npos) << e.what();
    }
    auto q = pf::ez(pf::iter(lines), pf::command({"/nonexistent/program"}));
    EXPECT_THROW(q.join(), pf::remote_error);
}

TEST(pipeline, large_items_travel_whole) {
    PARAFORK_LEAK_CHECK();
    auto make = [](int i) { return std::vector<int>(300'000, i); };  // 1.2 MB each
    auto v = pf::ez(pf::iter(0, 6), make, [](std::vector<int> x) {
                 for (auto& e : x) e += 1;
                 return x;
             }).list();
    ASSERT_EQ(v.size(), 6u);
    for (int i = 0; i < 6; ++i) {
        ASSERT_EQ(v[static_cast<std::size_t>(i)].size(), 300'000u);
        EXPECT_EQ(v[static_cast<std::size_t>(i)].front(), i + 1);
        EXPECT_EQ(v[static_cast<std::size_t>(i)].back(), i + 1);
    }
}

TEST(pipeline, graph_and_layout) {
    PARAFORK_LEAK_CHECK();
    auto p = pf::ez(pf::iter(0, 10), pf::named("add1", add1), pf::parallel(mul2, mul2));
    EXPECT_EQ(p.graph(), "serial(iter, add1, parallel(fn, fn))");
    std::ostringstream text, dot;
    p.print_layout(text);
    p.print_layout(dot, true);
    EXPECT_NE(text.str().find("4 processes, 3 queues"), std::string::npos) << text.str();
    EXPECT_NE(text.str().find("add1 -> fn,fn"), std::string::npos) << text.str();
    EXPECT_NE(dot.str().find("digraph"), std::string::npos);
    EXPECT_EQ(p.list().size(), 10u);
}

TEST(pipeline, graph_errors_are_found_when_built) {
    PARAFORK_LEAK_CHECK();
    // Two processes before an ordered group cannot be numbered consistently.
    auto p = pf::ez(pf::iter(0, 10), pf::workers(2, add1), pf::workers(2, mul2).ordered());
    EXPECT_THROW(p.start(), pf::error);
    EXPECT_TRUE(p.pids().empty());
}

TEST(pipeline, a_stage_whose_type_is_known_only_at_build_is_checked_by_start) {
    PARAFORK_LEAK_CHECK();
    // A type-erased stage: its input type is data (a type_index), not part of its C++ type, so
    // only the built graph can compare it with what its upstream puts.
    struct erased final : pf::detail::leaf_base {
        void run(pf::detail::stage_context&) override {}
    };
    auto leaf = std::make_shared<erased>();
    leaf->name = "erased";
    leaf->in = typeid(std::string);
    auto src = pf::ez(pf::iter(0, 3));
    auto root = pf::detail::make_group_node(pf::detail::node_spec::kind::serial,
                                            {src.spec(), pf::detail::make_leaf_node(leaf)}, typeid(void),
                                            typeid(void));
    pf::pipeline<void, void> p(root);
    try {
        p.start();
        ADD_FAILURE() << "no exception";
    } catch (const pf::error& e) {
        EXPECT_STREQ(e.what(), "parafork: stage erased takes std::string but is fed int");
    }
    EXPECT_TRUE(p.pids().empty());
}

TEST(pipeline, one_million_items_through_parallel_stages) {
    PARAFORK_LEAK_CHECK();
    constexpr int n = 1'000'000;
    auto p = pf::ez(pf::iter(0, n), add1, pf::parallel(mul2, mul2, mul2));
    long long count = 0, sum = 0;
    for (int v : p.items()) {
        ++count;
        sum += v;
    }
    EXPECT_EQ(count, n);
    EXPECT_EQ(sum, 2LL * (static_cast<long long>(n) * (n + 1) / 2));
}

TEST(pipeline, forty_five_processes) {
    PARAFORK_LEAK_CHECK();
    // 1 source + 20 + 22 workers + 1 stage + 1 sink = 45 processes.
    long long total = 0;
    struct Sum : pf::stage<> {
        long long* out;
        explicit Sum(long long* o) : out(o) {}
        long long s = 0;
        void process(int x) { s += x; }
        void teardown() {
            if (s != 2LL * (100'000LL * 100'001 / 2) + 100'000) throw std::runtime_error("bad sum " + std::to_string(s));
        }
    };
    auto p = pf::ez(pf::iter(1, 100'001), pf::as<AddX>(20, 0), pf::workers(22, mul2), add1, Sum(&total));
    p.start();
    EXPECT_EQ(p.pids().size(), 45u);
    p.join();
}

TEST(pipeline, ordered_group_puts_from_teardown_come_after_every_item) {
    PARAFORK_LEAK_CHECK();
    // batch() puts its last, short batch when its input ends: that batch belongs to no input,
    // so it must neither trip the reordering nor jump ahead of numbered items.
    auto v = pf::ez(pf::iter(0, 95), pf::workers(2, pf::batch(10)).ordered()).list();
    std::vector<int> all;
    std::size_t short_at = v.size();
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (v[i].size() < 10 && short_at == v.size()) short_at = i;
        if (short_at < v.size()) {
            EXPECT_LT(v[i].size(), 10u) << "a full batch after a late one";
        }
        for (int x : v[i]) all.push_back(x);
    }
    EXPECT_GE(v.size() - short_at, 1u);  // 95 items cannot all fall into full batches
    EXPECT_LE(v.size() - short_at, 2u);  // one leftover per worker at most
    std::sort(all.begin(), all.end());
    ASSERT_EQ(all.size(), 95u);
    for (int i = 0; i < 95; ++i) EXPECT_EQ(all[static_cast<std::size_t>(i)], i);

    // A class stage putting in setup() and teardown(): numbered items stay in input order, the
    // rest come after them, without the meta of the last item.
    struct Edges : pf::stage<int> {
        void setup() { put(-1); }
        void process(int x) {
            meta()["k"] = "v";
            put(x);
        }
        void teardown() {
            if (!meta().empty()) throw std::logic_error("teardown saw an item's meta");
            put(-2);
        }
    };
    auto w = pf::ez(pf::iter(0, 3000), pf::as<Edges>(3).ordered(), add1).list();
    ASSERT_EQ(w.size(), 3006u);
    for (int k = 0; k < 3000; ++k) ASSERT_EQ(w[static_cast<std::size_t>(k)], k + 1);
    std::vector<int> tail(w.begin() + 3000, w.end());
    std::sort(tail.begin(), tail.end());
    EXPECT_EQ(tail, (std::vector<int>{-1, -1, -1, 0, 0, 0}));
}

TEST(pipeline, zip_rejects_a_branch_that_loses_order) {
    PARAFORK_LEAK_CHECK();
    auto p = pf::ez(pf::iter(0, 100), pf::zip(add1, pf::serial(add1, pf::workers(2, mul2))));
    try {
        p.start();
        ADD_FAILURE() << "no exception";
    } catch (const pf::error& e) {
        EXPECT_NE(std::string(e.what()).find("zip branch serial(fn, parallel(fn#0, fn#1)) contains parallel"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_TRUE(p.pids().empty());
    // Ordered, the same branch pairs correctly.
    auto v = pf::ez(pf::iter(0, 2000), pf::zip(add1, pf::serial(add1, pf::workers(2, mul2).ordered()))).list();
    ASSERT_EQ(v.size(), 2000u);
    for (int i = 0; i < 2000; ++i) {
        ASSERT_EQ(std::get<0>(v[static_cast<std::size_t>(i)]), i + 1);
        ASSERT_EQ(std::get<1>(v[static_cast<std::size_t>(i)]), 2 * (i + 1));
    }
}

// A library source whose items fit in one batch is put in the parent, before any fork: the
// graph costs one process fewer. One that does not fit goes on in its own process from the
// item after the last the parent put, with nothing lost or repeated, whatever reads it.
TEST(pipeline, a_short_library_source_runs_in_the_parent_and_a_long_one_goes_on_in_its_process) {
    pf::testing::run_bounded("source_in_parent", 60, [] {
        PARAFORK_LEAK_CHECK();
        {
            auto p = pf::ez(pf::iter(0, 10), add1, pf::parallel(mul2, mul2));
            p.start();
            EXPECT_EQ(p.pids().size(), 3u) << "iter(0, 10) was given a process of its own";
            auto v = p.list();
            std::sort(v.begin(), v.end());
            std::vector<int> want;
            for (int k = 0; k < 10; ++k) want.push_back(2 * (k + 1));
            EXPECT_EQ(v, want);
        }
        {
            auto p = pf::ez(pf::iter(std::vector<std::string>{"a", "b", "c"}));
            p.start();
            EXPECT_TRUE(p.pids().empty());
            EXPECT_EQ(p.list(), (std::vector<std::string>{"a", "b", "c"}));
        }
        // Past the parent's share: the stage process takes over where it stopped.
        constexpr int n = 50'000;
        auto v = pf::ez(pf::iter(0, n), pf::workers(2, add1).ordered()).list();
        ASSERT_EQ(v.size(), static_cast<std::size_t>(n));
        for (int k = 0; k < n; ++k) ASSERT_EQ(v[static_cast<std::size_t>(k)], k + 1) << "at " << k;
        std::vector<long> longs(n);
        std::iota(longs.begin(), longs.end(), 0L);
        auto w = pf::ez(pf::iter(longs)).list();
        EXPECT_EQ(w, longs);
        // A first item larger than half a queue is not sent by the parent (it would block with
        // no reader yet): the stage process sends it, then the rest.
        std::vector<std::string> big{std::string(3 << 20, 'x'), "y", "z"};
        auto b = pf::ez(pf::iter(big), [](std::string s) { return s.size(); }).list();
        EXPECT_EQ(b, (std::vector<std::size_t>{3u << 20, 1, 1}));
    });
}

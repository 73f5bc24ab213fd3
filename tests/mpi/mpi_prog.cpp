// The SPMD program tests/mpi/test_mpi.cpp runs under mpirun: argv[1] names a scenario, argv[2]
// is a tag that makes this run's processes findable (no orphans may carry it afterwards).
// Rank 0 prints "OK <scenario> ..." when what it saw is right, "FAIL ..." otherwise.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <numeric>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

#include <parafork/exec/map.hpp>
#include <parafork/exec/pool/pool.hpp>
#include <parafork/mpi/mpi.hpp>
#include <parafork/mpi/pool.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/sys/memory.hpp>

namespace pf = parafork;
namespace {

int g_rank = -1;  // read by workers: they are copies of their rank's program

int fail(const std::string& why) {
    std::printf("FAIL %s\n", why.c_str());
    std::fflush(stdout);
    return 1;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

int equal(pf::mpi::world& w) {
    std::vector<int> xs(20000);
    std::iota(xs.begin(), xs.end(), -5000);
    auto sq = [](int x) { return static_cast<long>(x) * x - 7; };
    auto got = pf::mpi::map(w, sq, xs);
    // Not plain values: strings travel encoded.
    auto str = [](int x) { return std::to_string(x) + "!"; };
    auto got_s = pf::mpi::map(w, str, xs);
    std::vector<std::tuple<int, std::string>> pairs;
    for (int x : xs) pairs.emplace_back(x, std::to_string(x % 97));
    auto cat = [](int x, const std::string& s) { return s + ":" + std::to_string(x); };
    auto got_t = pf::mpi::starmap(w, cat, pairs);
    // forked, ordered, with the index: join sees input order.
    std::vector<std::size_t> order;
    std::vector<long> joined;
    pf::options ord;
    ord.ordered = true;
    ord.chunksize = 7;
    pf::mpi::forked(w, xs, [](std::size_t i, int x) { return static_cast<long>(i) + x; },
                    [&](std::size_t i, long v) { order.push_back(i); joined.push_back(v); }, ord);
    // Which rank ran what: slow items, so every rank gets some.
    std::vector<int> few(600);
    auto who = pf::mpi::map(w, [](int) { std::this_thread::sleep_for(std::chrono::milliseconds(2)); return g_rank; }, few);
    if (!w.root()) return 0;
    if (got != pf::map(sq, xs)) return fail("map differs from the local map");
    if (got_s != pf::map(str, xs)) return fail("map of strings differs from the local map");
    if (got_t != pf::starmap(cat, pairs)) return fail("starmap differs from the local starmap");
    if (order.size() != xs.size()) return fail("forked joined " + std::to_string(order.size()) + " items");
    for (std::size_t i = 0; i < xs.size(); ++i)
        if (order[i] != i || joined[i] != static_cast<long>(i) + xs[i]) return fail("forked out of order at " + std::to_string(i));
    std::set<int> ranks(who.begin(), who.end());
    if (ranks.size() < 2) return fail("only " + std::to_string(ranks.size()) + " rank(s) did work");
    std::printf("OK equal ranks_used=%zu\n", ranks.size());
    return 0;
}

int million(pf::mpi::world& w) {
    std::vector<std::uint32_t> xs(1000000);
    std::iota(xs.begin(), xs.end(), 0u);
    auto got = pf::mpi::map(w, [](std::uint32_t x) { return std::uint64_t{x} * 2654435761u + 1; }, xs);
    if (!w.root()) return got.empty() ? 0 : fail("a rank other than 0 got results");
    if (got.size() != xs.size()) return fail("size " + std::to_string(got.size()));
    for (std::size_t i = 0; i < xs.size(); ++i)
        if (got[i] != std::uint64_t{xs[i]} * 2654435761u + 1) return fail("item " + std::to_string(i));
    std::printf("OK million\n");
    return 0;
}

// Items are slow except on rank 2, so rank 2 is sure to get some before the end.
void slow_off_rank2() {
    if (g_rank != 2) std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

int remote_throw(pf::mpi::world& w) {
    std::vector<int> xs(3000);
    // Rank 1 comes late: rank 0 gives the call up before rank 1 says it is ready, and that
    // word must not confuse the next call.
    if (g_rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    try {
        pf::mpi::map(w, [](int x) { slow_off_rank2(); if (g_rank == 2) throw std::runtime_error("boom on two"); return x; }, xs);
    } catch (const pf::remote_error& e) {
        if (!w.root()) return fail("a rank other than 0 got the remote_error");
        if (e.type_name() != "std::runtime_error" || !has(e.message(), "boom on two") ||
            !has(e.what(), "rank 2 on " + w.host(2)) || !e.task() || e.rank() != 2 || e.host() != w.host(2))
            return fail(std::string("remote_error without rank and host: ") + e.what());
        std::printf("OK throw %s\n", e.what());
        return 0;
    } catch (const pf::error& e) {
        if (w.root()) return fail(std::string("rank 0 got ") + e.what());
        std::printf("rank %d: %s\n", w.rank(), e.what());  // the call was abandoned here too
        return 0;
    }
    return fail("no error on rank " + std::to_string(w.rank()));
}

// retries across ranks: rank 2's workers die (SIGKILL) on the first try of every 50th item they
// get; with retries = 1 the rank runs each such item again and rank 0 gets every result. A
// shared page, made before the call and so shared by every worker of this rank, marks the items
// already killed once.
int retry(pf::mpi::world& w) {
    constexpr int n = 3000;
    pf::sys::mapping marks(-1, n + sizeof(std::atomic<int>));
    auto* killed = static_cast<std::atomic<char>*>(marks.data());
    auto* kills = reinterpret_cast<std::atomic<int>*>(static_cast<char*>(marks.data()) + n);
    std::vector<int> xs(n);
    std::iota(xs.begin(), xs.end(), 0);
    pf::options o;
    o.retries = 1;
    auto got = pf::mpi::map(w, [&](int x) {
        slow_off_rank2();
        if (g_rank == 2 && x % 50 == 0 && !killed[x].exchange(1)) {
            kills->fetch_add(1);
            std::raise(SIGKILL);
        }
        return 5 * x;
    }, xs, o);
    if (g_rank == 2) std::printf("rank 2 KILLS %d\n", kills->load());
    if (!w.root()) return 0;
    for (int i = 0; i < n; ++i)
        if (got.at(static_cast<std::size_t>(i)) != 5 * i) return fail("retried call wrong at " + std::to_string(i));
    std::printf("OK retry\n");
    return 0;
}

int worker_death(pf::mpi::world& w) {
    std::vector<int> xs(3000);
    try {
        pf::mpi::map(w, [](int x) { slow_off_rank2(); if (g_rank == 2) std::raise(SIGKILL); return x; }, xs);
    } catch (const pf::worker_died& e) {
        if (!w.root()) return fail("a rank other than 0 got the worker_died");
        if (e.signal() != SIGKILL || !has(e.what(), "rank 2 on " + w.host(2)) || e.pid() <= 0 || e.rank() != 2 ||
            e.host() != w.host(2))
            return fail(std::string("worker_died without rank, host or signal: ") + e.what());
        std::printf("OK die %s\n", e.what());
        return 0;
    } catch (const pf::error& e) {
        if (w.root()) return fail(std::string("rank 0 got ") + e.what());
        return 0;
    }
    return fail("no error on rank " + std::to_string(w.rank()));
}

// Rank 2's program is SIGKILLed (by one of its workers, from outside it) in the middle of a call.
int kill_rank(pf::mpi::world& w) {
    std::vector<int> xs(3000);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        pf::mpi::map(w, [](int x) { slow_off_rank2(); if (g_rank == 2) ::kill(::getppid(), SIGKILL); return x; }, xs);
    } catch (const pf::worker_died& e) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!w.root()) return fail("a rank other than 0 got the worker_died");
        if (e.signal() != SIGKILL || e.pid() != w.pid(2) || !has(e.what(), "rank 2 on " + w.host(2)) ||
            e.rank() != 2 || e.host() != w.host(2))
            return fail(std::string("rank death not named: ") + e.what());
        std::printf("OK killrank after %.2fs: %s\n", s, e.what());
        return 0;
    } catch (const pf::error& e) {
        if (w.root()) return fail(std::string("rank 0 got ") + e.what());
        std::printf("rank %d: %s\n", w.rank(), e.what());
        return 0;
    }
    return fail("no error on rank " + std::to_string(w.rank()));
}

// Rank 0's program is SIGKILLed during a call: the other ranks' calls end with an error naming it.
int kill_root(pf::mpi::world& w) {
    std::vector<int> xs(3000);
    try {
        pf::mpi::map(w, [](int x) {
            if (g_rank == 0 && x == 0) ::kill(::getppid(), SIGKILL);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            return x;
        }, xs);
    } catch (const pf::error& e) {
        if (has(e.what(), "the program of rank 0 on " + w.host(0) + " ended during a call (signal 9)"))
            std::printf("OK rank %d: %s\n", w.rank(), e.what());
        else
            std::printf("FAIL rank %d: %s\n", w.rank(), e.what());
        return 0;
    }
    return fail("rank " + std::to_string(w.rank()) + " finished a call whose rank 0 died");
}

// Rank 2's MPI process (the process mpirun started) is SIGKILLed during a call: mpirun ends the
// job, and every rank's program and workers must go with it.
int kill_mpi_process(pf::mpi::world& w) {
    std::vector<int> xs(3000);
    if (g_rank == 2) ::kill(::getppid(), SIGKILL);  // this program's parent is its MPI process
    pf::mpi::map(w, [](int x) { std::this_thread::sleep_for(std::chrono::milliseconds(20)); return x; }, xs);
    return fail("rank " + std::to_string(w.rank()) + " outlived the job");
}

// ---- mpi::pool ----
long cube(int x) { return static_cast<long>(x) * x * x - 1; }
std::string tagged(int x, const std::string& s) { return s + "#" + std::to_string(x); }
int where_run(int) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return g_rank;
}
long slow_fib(int n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    long a = 0, b = 1;
    for (int k = 0; k < n; ++k) b = std::exchange(a, b) + b;
    return a;
}
int throws_on_rank2(int x) {
    slow_off_rank2();
    if (g_rank == 2) throw std::runtime_error("pool boom on two");
    return x;
}
int dies_on_rank2(int x) {
    slow_off_rank2();
    if (g_rank == 2) std::raise(SIGKILL);
    return x;
}
int kills_rank2(int x) {
    slow_off_rank2();
    if (g_rank == 2) ::kill(::getppid(), SIGKILL);  // the worker's parent is rank 2's program
    return x;
}
int plain_data = 0;  // not code: a function pointer to it names nothing another rank can find

// Every call of mpi::pool gives what the local pool gives; submitted tasks run on several ranks.
int pool_equal(pf::mpi::world& w) {
    std::vector<int> xs(5000);
    std::iota(xs.begin(), xs.end(), -2500);
    pf::options o;
    o.jobs = 2;
    pf::mpi::pool p(w, o);
    std::vector<pf::future<long>> fs;
    for (int k = 0; k < 40; ++k) fs.push_back(p.submit(&slow_fib, k));
    auto lam = p.submit([](int a, int b) { return a * b; }, 6, 7);
    auto got = p.map(&cube, xs);
    std::vector<std::tuple<int, std::string>> pairs;
    for (int x : xs) pairs.emplace_back(x, std::to_string(x % 13));
    auto got_t = p.starmap(&tagged, pairs);
    std::vector<long> in_order;
    for (auto&& y : p.imap(&cube, xs)) in_order.push_back(y);
    std::vector<long> unordered(xs.size());
    std::vector<char> seen(xs.size());
    std::size_t count = 0, out_of_order = 0;
    for (auto&& [i, y] : p.imap_unordered(&cube, xs)) {
        if (i != count) ++out_of_order;
        unordered.at(i) = y;
        seen.at(i) = 1;
        ++count;
    }
    std::vector<int> few(600);
    auto who = p.map(&where_run, few);
    // An early break: the rest of the call is dropped, the next call runs whole.
    for (auto&& y : p.imap(&cube, xs)) {
        (void)y;
        break;
    }
    auto again = p.map(&cube, xs);
    std::vector<long> fibs;
    if (w.root()) {
        for (auto& f : fs) fibs.push_back(f.get());
        if (lam.get() != 42) return fail("a lambda's task answered wrong");
    } else if (fs[0].valid() || lam.valid()) {
        return fail("a rank other than 0 got a future with a state");
    }
    p.close();
    p.join();
    if (!w.root()) return got.empty() && got_t.empty() && in_order.empty() && count == 0 ? 0 : fail("a rank other than 0 got results");
    pf::pool local(o);
    if (got != local.map(&cube, xs)) return fail("pool map differs from the local pool's");
    if (again != got) return fail("the map after an early break differs");
    if (got_t != local.starmap(&tagged, pairs)) return fail("pool starmap differs from the local pool's");
    if (in_order != got) return fail("imap differs from the local pool's map");
    if (count != xs.size() || unordered != got || std::count(seen.begin(), seen.end(), 1) != static_cast<long>(xs.size()))
        return fail("imap_unordered did not give every item once");
    for (int k = 0; k < 40; ++k)
        if (fibs[static_cast<std::size_t>(k)] != local.submit(&slow_fib, k).get()) return fail("submit answered wrong at " + std::to_string(k));
    std::set<int> ranks(who.begin(), who.end());
    if (ranks.size() < 2) return fail("only " + std::to_string(ranks.size()) + " rank(s) ran pool work");
    local.close();
    local.join();
    std::printf("OK pool equal ranks_used=%zu out_of_order=%zu\n", ranks.size(), out_of_order);
    return 0;
}

// A function pointer that names no code: submit throws before anything is sent.
int pool_unnamed(pf::mpi::world& w) {
    pf::options o;
    o.jobs = 1;
    pf::mpi::pool p(w, o);
    if (w.root()) {
        auto bad = reinterpret_cast<int (*)(int)>(reinterpret_cast<std::uintptr_t>(&plain_data));
        try {
            p.submit(bad, 1);
            return fail("submit of a pointer to data did not throw");
        } catch (const pf::error& e) {
            std::printf("OK unnamed %s\n", e.what());
        }
    }
    std::vector<int> xs(100);
    std::iota(xs.begin(), xs.end(), 0);
    auto v = p.map(&cube, xs);  // the pool goes on
    p.close();
    p.join();
    if (w.root() && v.at(99) != cube(99)) return fail("the map after a refused submit went wrong");
    if (w.root()) std::printf("OK next call\n");
    return 0;
}

template <class Error, class Check>
int pool_failure(pf::mpi::world& w, int (*fn)(int), const char* name, Check check) {
    std::vector<int> xs(3000);
    pf::options o;
    o.jobs = 2;
    pf::mpi::pool p(w, o);
    bool map_ok = false, imap_ok = false, submit_ok = !w.root();
    try {
        p.map(fn, xs);
    } catch (const Error& e) {
        if (!w.root()) return fail("a rank other than 0 got the task's error");
        if (!check(e)) return fail(std::string("map's error without rank and host: ") + e.what());
        std::printf("OK pool %s map: %s\n", name, e.what());
        map_ok = true;
    } catch (const pf::error& e) {
        if (w.root()) return fail(std::string("rank 0 got ") + e.what());
        map_ok = true;
    }
    // imap goes on past a failed item: some items fail (on rank 2), the others answer.
    std::size_t good = 0, bad = 0;
    {
        auto seq = p.imap(fn, xs);
        for (auto it = seq.begin(); !(it == seq.end()); ++it) {
            try {
                (void)*it;
                ++good;
            } catch (const Error& e) {
                if (!check(e)) return fail(std::string("imap's error without rank and host: ") + e.what());
                ++bad;
            }
        }
    }
    imap_ok = !w.root() || (bad > 0 && good > 0 && good + bad == xs.size());
    if (w.root()) std::printf("imap good=%zu bad=%zu\n", good, bad);
    // submitted tasks: rank 2 serves them while it is in join.
    std::vector<pf::future<int>> fs;
    for (int k = 0; k < 60; ++k) fs.push_back(p.submit(fn, k));
    p.close();
    if (w.root()) {
        for (auto& f : fs) {
            try {
                f.get();
            } catch (const Error& e) {
                if (!check(e)) return fail(std::string("a future's error without rank and host: ") + e.what());
                submit_ok = true;
            }
        }
    }
    p.join();
    if (!map_ok || !imap_ok) return fail(std::string("pool ") + name + ": map or imap did not fail as they should");
    if (w.root()) std::printf("%s\n", submit_ok ? "OK submit failed on rank 2" : "(no submitted task reached rank 2)");
    if (w.root()) std::printf("OK pool %s\n", name);
    return 0;
}

// Rank 1 maps another function than the others: rank 0's call is a bad_launch naming rank 1
// before rank 1 gets any work, the other ranks' calls fail, and the next call runs whole.
int pool_mismatch(pf::mpi::world& w) {
    std::vector<int> xs(2000);
    std::iota(xs.begin(), xs.end(), 0);
    pf::options o;
    o.jobs = 2;
    pf::mpi::pool p(w, o);
    // Rank 1 comes late: rank 0 has every result before it learns rank 1 is in another call.
    if (g_rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    try {
        p.map(g_rank == 1 ? &slow_fib : &cube, xs);
        return fail("rank " + std::to_string(w.rank()) + " finished a call made differently on rank 1");
    } catch (const pf::mpi::bad_launch& e) {
        if (!w.root() || !has(e.what(), "rank 1 on " + w.host(1) + " is in a different pool call"))
            return fail(std::string("rank ") + std::to_string(w.rank()) + " got " + e.what());
        std::printf("OK mismatch %s\n", e.what());
    } catch (const pf::error& e) {
        if (w.root() || !has(e.what(), "rank 0 abandoned the pool call"))
            return fail(std::string("rank ") + std::to_string(w.rank()) + " got " + e.what());
    }
    auto v = p.map(&cube, xs);
    p.close();
    p.join();
    for (std::size_t i = 0; w.root() && i < xs.size(); ++i)
        if (v.at(i) != cube(xs[i])) return fail("the call after a mismatch went wrong at " + std::to_string(i));
    if (w.root()) std::printf("OK next call\n");
    return 0;
}

// Rank 2's program is killed during a pool map: the call ends with worker_died naming rank 2.
int pool_killrank(pf::mpi::world& w) {
    std::vector<int> xs(3000);
    pf::options o;
    o.jobs = 2;
    pf::mpi::pool p(w, o);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        p.map(&kills_rank2, xs);
    } catch (const pf::worker_died& e) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!w.root()) return fail("a rank other than 0 got the worker_died");
        if (e.signal() != SIGKILL || e.pid() != w.pid(2) || e.rank() != 2 || e.host() != w.host(2) ||
            !has(e.what(), "rank 2 on " + w.host(2)))
            return fail(std::string("rank death not named: ") + e.what());
        std::printf("OK pool killrank after %.2fs: %s\n", s, e.what());
        // The pool goes on without rank 2.
        std::vector<int> ys(500);
        std::iota(ys.begin(), ys.end(), 0);
        auto v = p.map(&cube, ys);
        for (int y : ys)
            if (v.at(static_cast<std::size_t>(y)) != cube(y)) return fail("the map after a rank's death went wrong");
        auto f = p.submit(&cube, 3);
        if (f.get() != cube(3)) return fail("submit after a rank's death went wrong");
        p.close();
        p.join();
        std::printf("OK pool after death\n");
        return 0;
    } catch (const pf::error& e) {
        if (w.root()) return fail(std::string("rank 0 got ") + e.what());
        std::printf("rank %d: %s\n", w.rank(), e.what());
        std::vector<int> ys(500);
        std::iota(ys.begin(), ys.end(), 0);
        p.map(&cube, ys);
        p.close();
        p.join();
        return 0;
    }
    return fail("no error on rank " + std::to_string(w.rank()));
}


// ---- the journal: argv[3] is a folder of the test's own, argv[4] the phase ----
// Each computed item appends its index to <dir>/computed.<phase> (any rank, any worker), so the
// driver can tell what each run computed. Phase "1": rank 2 is killed 200 ms into its work, so
// the call fails with some values kept; "2" and "3": the same call completes.
std::string g_dir, g_phase;

void note_computed(int x) {
    const std::string line = std::to_string(x) + "\n";
    auto fd = pf::sys::open_file((g_dir + "/computed." + g_phase).c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd) pf::sys::write_all(fd.get(), line);
}

int journal_run(pf::mpi::world& w) {
    std::vector<int> xs(3000);
    std::iota(xs.begin(), xs.end(), 0);
    pf::mpi::call_options o;
    o.jobs = 2;
    o.chunksize = 10;
    o.journal = g_dir + "/journal";
    auto f = [](int x) {
        static const auto t0 = std::chrono::steady_clock::now();
        if (g_phase == "1" && g_rank == 2 && std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(200))
            ::kill(::getppid(), SIGKILL);  // the worker's parent is rank 2's program
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        note_computed(x);
        return 7 * x + 1;
    };
    try {
        auto v = pf::mpi::map(w, f, xs, o);
        if (g_phase == "1") return fail("rank " + std::to_string(w.rank()) + " finished the call whose rank 2 died");
        if (!w.root()) return v.empty() ? 0 : fail("a rank other than 0 got results");
        for (std::size_t i = 0; i < xs.size(); ++i)
            if (v.at(i) != 7 * xs[i] + 1) return fail("wrong value at " + std::to_string(i));
        std::printf("OK journal %s\n", g_phase.c_str());
        return 0;
    } catch (const pf::worker_died& e) {
        if (g_phase != "1" || !w.root()) return fail(std::string("unexpected: ") + e.what());
        if (e.rank() != 2) return fail(std::string("the death is not rank 2's: ") + e.what());
        std::printf("OK journal 1: %s\n", e.what());
        return 0;
    } catch (const pf::error& e) {
        if (w.root()) {
            std::printf("%s journal %s: %s\n", g_phase == "bad" ? "OK" : "FAIL", g_phase.c_str(), e.what());
            return g_phase == "bad" ? 0 : 1;
        }
        return 0;  // rank 0 abandoned the call
    }
}

// mpi::pool::imap / imap_unordered over input ranges that are not sized and random access:
// rank 0 alone reads them and sends the items. The results equal the local pool's, items run
// on several ranks, an endless input is read only as far as the loop goes (plus a bounded
// window), and an item's failure is its own.
long g_reads = 0;  // items of the endless input read (rank 0)
int pool_stream(pf::mpi::world& w) {
    pf::options o;
    o.jobs = 2;
    pf::mpi::pool p(w, o);
    auto some = std::views::iota(0, 3000) | std::views::filter([](int x) { return x % 3 != 1; });
    std::vector<long> got;
    for (long y : p.imap(&cube, some)) got.push_back(y);
    auto slow = std::views::iota(0, 300) | std::views::filter([](int) { return true; });
    std::vector<std::pair<std::size_t, int>> who;
    for (auto&& [i, r] : p.imap_unordered(&where_run, slow)) who.emplace_back(i, r);
    auto endless = std::views::iota(0) | std::views::filter([](int) { ++g_reads; return true; });
    std::size_t n = 0;
    {
        auto seq = p.imap(&cube, endless);
        for (long y : seq) {
            if (y != cube(static_cast<int>(n))) return fail("endless imap out of order at " + std::to_string(n));
            if (++n == 100) break;
        }
    }
    std::size_t good = 0, bad = 0;
    auto many = std::views::iota(0, 600) | std::views::filter([](int) { return true; });
    {
        auto seq = p.imap(&throws_on_rank2, many);
        for (auto it = seq.begin(); !(it == seq.end()); ++it) {
            try {
                (void)*it;
                ++good;
            } catch (const pf::remote_error& e) {
                if (e.rank() != 2 || !has(e.message(), "pool boom on two")) return fail(std::string("imap error: ") + e.what());
                ++bad;
            }
        }
    }
    std::vector<int> none;  // the other ranks' input is not read: any range of the type will do
    auto empty = none | std::views::filter([](int) { return true; });
    std::size_t zero = 0;
    for (long y : p.imap(&cube, empty)) zero += static_cast<std::size_t>(y) + 1;
    auto v = p.map(&cube, std::vector<int>(500, 3));  // the pool goes on
    p.close();
    p.join();
    if (!w.root()) return got.empty() && who.empty() && n == 0 && good + bad == 0 ? 0 : fail("a rank other than 0 got results");
    pf::pool local(o);
    std::vector<int> some_v(some.begin(), some.end());
    if (got != local.map(&cube, some_v)) return fail("imap over a filtered view differs from the local pool's map");
    std::set<std::size_t> idx;
    std::set<int> ranks;
    for (auto [i, r] : who) {
        idx.insert(i);
        ranks.insert(r);
    }
    if (idx.size() != 300 || *idx.rbegin() != 299) return fail("imap_unordered gave " + std::to_string(idx.size()) + " items");
    if (ranks.size() < 2) return fail("only " + std::to_string(ranks.size()) + " rank(s) ran streamed items");
    if (g_reads < 100 || g_reads > 100 + 4 * 2 * 3 + 8) return fail("the endless input was read to " + std::to_string(g_reads));
    if (bad == 0 || good == 0 || good + bad != 600) return fail("imap with failures: good " + std::to_string(good) + " bad " + std::to_string(bad));
    if (zero != 0 || v.size() != 500) return fail("an empty stream or the next call went wrong");
    std::printf("OK pool_stream ranks_used=%zu reads=%ld good=%zu bad=%zu\n", ranks.size(), g_reads, good, bad);
    return 0;
}

// mpi::pool::map with a journal, phases as journal_run's: "1" fails at item 2000 (a task that
// throws), "2" and "3" complete, "other" is the same call over one item fewer (refused).
long pool_journaled(int x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    note_computed(x);
    if (g_phase == "1" && x == 2000) throw std::runtime_error("item 2000 fails on the first run");
    return 5L * x - 3;
}

int pool_journal_run(pf::mpi::world& w) {
    std::vector<int> xs(g_phase == "other" ? 2999 : 3000);
    std::iota(xs.begin(), xs.end(), 0);
    pf::options po;
    po.jobs = 2;
    pf::mpi::pool p(w, po);
    pf::mpi::call_options o;
    o.chunksize = 10;
    o.journal = g_dir + "/journal";
    int rc = 0;
    try {
        auto v = p.map(&pool_journaled, xs, o);
        if (g_phase == "1" || g_phase == "other")
            rc = fail("rank " + std::to_string(w.rank()) + " finished a call that should fail");
        else if (!w.root() && !v.empty())
            rc = fail("a rank other than 0 got results");
        else if (w.root()) {
            for (std::size_t i = 0; i < xs.size() && rc == 0; ++i)
                if (v.at(i) != 5L * xs[i] - 3) rc = fail("wrong value at " + std::to_string(i));
            if (rc == 0) std::printf("OK pool_journal %s\n", g_phase.c_str());
        }
    } catch (const pf::remote_error& e) {
        if (g_phase != "1" || !w.root() || !has(e.what(), "item 2000 fails")) rc = fail(std::string("unexpected: ") + e.what());
        else std::printf("OK pool_journal 1: %s\n", e.what());
    } catch (const pf::mpi::bad_launch& e) {
        if (g_phase != "other" || !w.root()) rc = fail(std::string("unexpected: ") + e.what());
        else std::printf("OK pool_journal other: %s\n", e.what());
    } catch (const pf::error& e) {
        if (w.root() || !has(e.what(), "rank 0 abandoned the pool call"))
            rc = fail(std::string("rank ") + std::to_string(w.rank()) + ": " + e.what());
    }
    // The pool goes on: a call without a journal, after a failed or refused one.
    g_phase = "after";
    auto v = p.map(&cube, xs);
    p.close();
    p.join();
    for (std::size_t i = 0; w.root() && rc == 0 && i < xs.size(); ++i)
        if (v.at(i) != cube(xs[i])) rc = fail("the call after went wrong at " + std::to_string(i));
    if (w.root() && rc == 0) std::printf("OK pool_journal next call\n");
    return rc;
}

} // namespace

int main(int argc, char** argv) {
    const std::string scenario = argc > 1 ? argv[1] : "";
    pf::mpi::world* w = nullptr;
    try {
        w = &pf::mpi::init();
    } catch (const pf::mpi::bad_launch& e) {
        std::printf("BAD_LAUNCH %s\n", e.what());
        return 3;
    }
    g_rank = w->rank();
    try {
        if (scenario == "equal") return equal(*w);
        if (scenario == "million") return million(*w);
        if (scenario == "throw" || scenario == "die") {
            const int r = scenario == "throw" ? remote_throw(*w) : worker_death(*w);
            if (r != 0) return r;
            // The failed call is over everywhere: the next one runs whole, whatever was in flight.
            std::vector<int> xs(5000);
            std::iota(xs.begin(), xs.end(), 0);
            auto v = pf::mpi::map(*w, [](int x) { return 3 * x; }, xs);
            for (std::size_t i = 0; w->root() && i < xs.size(); ++i)
                if (v.at(i) != 3 * xs[i]) return fail("the call after a failure went wrong at " + std::to_string(i));
            if (w->root()) std::printf("OK next call\n");
            return 0;
        }
        if (scenario == "retry") return retry(*w);
        if (scenario == "killrank") return kill_rank(*w);
        if (scenario == "long") {  // ended from outside (Ctrl-C at mpirun)
            std::vector<int> xs(600);
            pf::mpi::map(*w, [](int x) { std::this_thread::sleep_for(std::chrono::milliseconds(100)); return x; }, xs);
            return fail("rank " + std::to_string(w->rank()) + " finished a call it should not have");
        }
        if (scenario == "killroot") return kill_root(*w);
        if (scenario == "journal") {
            g_dir = argc > 3 ? argv[3] : ".";
            g_phase = argc > 4 ? argv[4] : "2";
            return journal_run(*w);
        }
        if (scenario == "pool_stream") return pool_stream(*w);
        if (scenario == "pool_journal") {
            g_dir = argc > 3 ? argv[3] : ".";
            g_phase = argc > 4 ? argv[4] : "2";
            return pool_journal_run(*w);
        }
        if (scenario == "killmpi") return kill_mpi_process(*w);
        if (scenario == "pool") return pool_equal(*w);
        if (scenario == "pool_unnamed") return pool_unnamed(*w);
        if (scenario == "pool_throw")
            return pool_failure<pf::remote_error>(*w, &throws_on_rank2, "throw", [&](const pf::remote_error& e) {
                return e.type_name() == "std::runtime_error" && has(e.message(), "pool boom on two") && e.rank() == 2 &&
                       e.host() == w->host(2) && has(e.what(), "rank 2 on " + w->host(2)) && e.task().has_value();
            });
        if (scenario == "pool_die")
            return pool_failure<pf::worker_died>(*w, &dies_on_rank2, "die", [&](const pf::worker_died& e) {
                return e.signal() == SIGKILL && e.pid() > 0 && e.rank() == 2 && e.host() == w->host(2) &&
                       has(e.what(), "rank 2 on " + w->host(2));
            });
        if (scenario == "pool_killrank") return pool_killrank(*w);
        if (scenario == "pool_mismatch") return pool_mismatch(*w);
        if (scenario == "pool_long") {  // ended from outside (Ctrl-C at mpirun) during a map and a submit
            pf::mpi::pool p(*w);
            auto f = p.submit(&slow_fib, 10);
            std::vector<int> xs(3000, 10);  // 20 ms each: ~10 s on 3 ranks of 2 workers
            p.map(&slow_fib, xs);
            return fail("rank " + std::to_string(w->rank()) + " finished a pool call it should not have");
        }
    } catch (const std::exception& e) {
        return fail(std::string("rank ") + std::to_string(w->rank()) + ": " + e.what());
    }
    return fail("no scenario " + scenario);
}

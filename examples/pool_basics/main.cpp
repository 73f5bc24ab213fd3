// A pool of pre-forked workers: futures, map, lazy imap, and what happens when a task fails.
#include <parafork/exec/pool/pool.hpp>

#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace pf = parafork;

long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int checked_sqrt(int n) {
    if (n < 0) throw std::domain_error("negative input");
    int r = 0;
    while ((r + 1) * (r + 1) <= n) ++r;
    return r;
}

int main() {
    bool ok = true;
    pf::options o;
    o.name = "demo";  // workers show up as parafork:demo#k in ps / top
    pf::pool p(o);

    auto f = p.submit(&fib, 30);  // a function named by address
    long fib30 = f.get();
    std::printf("fib(30) = %ld\n", fib30);
    ok = ok && fib30 == 832040;

    std::vector<int> in(10);
    std::iota(in.begin(), in.end(), 20);
    auto fibs = p.map(&fib, in);  // input order
    std::printf("fib(29) = %ld\n", fibs.back());
    ok = ok && fibs.size() == 10 && fibs.front() == 6765 && fibs.back() == 514229;

    std::size_t seen = 0;
    for (auto&& [i, r] : p.imap_unordered([](int x) { return x * x; }, in)) {
        std::printf("[%zu]=%d ", i, r);  // as they finish
        ok = ok && r == in[i] * in[i];
        ++seen;
    }
    std::printf("\n");
    ok = ok && seen == in.size();

    auto seq = p.imap(&checked_sqrt, std::vector<int>{16, -1, 81});
    std::vector<int> roots;
    std::size_t failed_at = 99;
    for (auto it = seq.begin(); it != seq.end(); ++it) {
        try {
            std::printf("sqrt: %d\n", *it);
            roots.push_back(*it);
        } catch (const pf::remote_error& e) {  // the item's own error, the rest goes on
            std::printf("item %zu failed: %s\n", *e.task(), e.what());
            failed_at = *e.task();
        }
    }
    ok = ok && roots == std::vector<int>{4, 9} && failed_at == 1;
    p.close();
    p.join();
    if (!ok) std::fprintf(stderr, "pool_basics: wrong results\n");
    return ok ? 0 : 1;
}

// pi by the Leibniz series, serially and with fork_join on every core (cligen's piPar).
// Usage: pi_fork_join [terms] [jobs]      (defaults: 2^28 terms, parafork::default_jobs())
#include <parafork/parafork.hpp>

#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <string>

namespace pf = parafork;

namespace {

// Sum of the terms [start, stop) of pi = 4 (1 - 1/3 + 1/5 - ...), taken in pairs so the
// loop has no branch and vectorizes.
// noinline plus the barrier in main keep the compiler from moving the serial sum out of its
// timed region.
[[gnu::noinline]] double leibniz(std::size_t start, std::size_t stop) {
    double sum = 0;
    std::size_t k = start;
    if (k % 2 && k < stop) sum -= 4.0 / double(2 * k++ + 1);
    for (; k + 1 < stop; k += 2) sum += 4.0 / double(2 * k + 1) - 4.0 / double(2 * k + 3);
    if (k < stop) sum += 4.0 / double(2 * k + 1);
    return sum;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

int main(int argc, char** argv) try {
    std::size_t terms = argc > 1 ? std::stoull(argv[1]) : (std::size_t{1} << 28);
    unsigned jobs = pf::resolve_jobs(argc > 2 ? static_cast<unsigned>(std::stoul(argv[2])) : 0);

    auto t0 = std::chrono::steady_clock::now();
    double serial = leibniz(0, terms);
    asm volatile("" : "+x"(serial)::"memory");
    double t_serial = seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    auto parts = pf::fork_join(pf::nsplit(terms, jobs),
                               [](std::size_t, pf::slice s) { return leibniz(s.start, s.stop); });
    double parallel = 0;
    for (double p : parts) parallel += p;
    double t_parallel = seconds_since(t0);

    double speedup = t_serial / t_parallel;
    std::printf("terms     %zu\n", terms);
    std::printf("serial    pi = %.12f  %.3f s\n", serial, t_serial);
    std::printf("parallel  pi = %.12f  %.3f s  (%u jobs)\n", parallel, t_parallel, jobs);
    std::printf("speedup   %.2fx  efficiency %.2f\n", speedup, speedup / jobs);
    // The two sums add the same terms in a different grouping: they agree to rounding.
    return std::abs(serial - parallel) < 1e-7 ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "pi_fork_join: %s\n", e.what());
    return 1;
}

// snakefish's map and starmap: a function over a sequence, in parallel, results in order.
#include <parafork/exec/forked/map.hpp>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

namespace pf = parafork;

bool is_prime(long n) {
    if (n < 2) return false;
    for (long d = 2; d * d <= n; ++d)
        if (n % d == 0) return false;
    return true;
}

int main() {
    bool ok = true;
    std::vector<long> numbers(20);
    std::iota(numbers.begin(), numbers.end(), 1'000'000'000L);

    // map(f, args): concurrency from PARAFORK_JOBS / PP_JOBS / the CPUs, chunksize automatic.
    auto primes = pf::map(is_prime, numbers);
    for (std::size_t i = 0; i < numbers.size(); ++i) {
        if (primes[i]) std::printf("%ld is prime\n", numbers[i]);
        ok = ok && primes[i] == is_prime(numbers[i]);
    }
    ok = ok && primes[7] && primes[9];  // 1,000,000,007 and 1,000,000,009

    // map(f, args, concurrency=2, chunksize=4)
    pf::options o;
    o.jobs = 2;
    o.chunksize = 4;
    auto roots = pf::map([](long n) { return std::sqrt(static_cast<double>(n)); }, numbers, o);
    std::printf("sqrt(%ld) = %.3f\n", numbers.back(), roots.back());
    for (std::size_t i = 0; i < numbers.size(); ++i)
        ok = ok && roots[i] == std::sqrt(static_cast<double>(numbers[i]));

    // starmap(f, args): each argument is a tuple, unpacked into f's parameters.
    std::vector<std::tuple<double, double>> pairs{{2, 10}, {3, 4}, {10, 3}};
    auto powers = pf::starmap([](double b, double e) { return std::pow(b, e); }, pairs);
    for (double p : powers) std::printf("%g ", p);
    std::printf("\n");
    ok = ok && powers == std::vector<double>{1024, 81, 1000};

    std::vector<std::tuple<std::string, int>> words{{"ab", 3}, {"xyz", 2}};
    auto repeated = pf::starmap([](const std::string& s, int n) {
        std::string out;
        for (int k = 0; k < n; ++k) out += s;
        return out;
    }, words);
    for (auto& s : repeated) std::printf("%s\n", s.c_str());
    ok = ok && repeated == std::vector<std::string>{"ababab", "xyzxyz"};
    if (!ok) std::fprintf(stderr, "map_starmap: wrong results\n");
    return ok ? 0 : 1;
}

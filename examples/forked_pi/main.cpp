// pi by the Leibniz series, its terms summed in batches by forked kids (cligen's piPar).
#include <parafork/exec/forked/forked.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numbers>
#include <vector>

namespace pf = parafork;

double term(std::int64_t k) { return (0.5 - static_cast<double>(k % 2)) * 8.0 / static_cast<double>(2 * k + 1); }

double pi_proc_pool(std::int64_t n, std::int64_t batch = 5) {
    // The batches: start .. start + batch. A vector (sized, random access), so only indices
    // cross: each kid reads the starts from its copy of this vector.
    std::vector<std::int64_t> batches;
    for (std::int64_t start = 0; start < n; start += batch) batches.push_back(start);
    double result = 0;
    pf::forked(batches,
               [=](std::int64_t start) {
                   double res = 0;
                   for (std::int64_t k = start; k < std::min(start + batch, n); ++k) res += term(k);
                   return res;  // `send res`
               },
               [&](double res) { result += res; });  // `join: result += res`
    return result;
}

int main() {
    double coarse = pi_proc_pool(100);
    double fine = pi_proc_pool(50'000'000, 1'000'000);
    std::printf("%.15f\n", coarse);
    std::printf("%.15f\n", fine);
    // The series' error after n terms is about 2/n (the terms are 8 / (2k + 1) halved).
    bool ok = std::fabs(coarse - std::numbers::pi) < 0.05 && std::fabs(fine - std::numbers::pi) < 1e-6;
    if (!ok) std::fprintf(stderr, "forked_pi: pi is off\n");
    return ok ? 0 : 1;
}

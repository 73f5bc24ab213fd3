// filter(pred) passes on only the items pred accepts; map(f) transforms them.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>


namespace pf = parafork;

bool is_prime(int n) {
    if (n < 2) return false;
    for (int d = 2; d * d <= n; ++d)
        if (n % d == 0) return false;
    return true;
}

int main() {
    auto squares = pf::ez(pf::iter(1, 60), pf::filter(is_prime), pf::transform([](int p) { return p * p; }),
                          pf::print("prime squared:"))
                       .list();
    return squares.size() == 17 && squares.front() == 4 && squares.back() == 59 * 59 ? 0 : 1;  // 17 primes < 60
}

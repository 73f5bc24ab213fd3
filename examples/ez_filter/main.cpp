// filter(pred) passes on only the items pred accepts; map(f) transforms them.
#include <parafork/exec/pipeline.hpp>
#include <parafork/exec/stages.hpp>


namespace pf = parafork;

bool is_prime(int n) {
    if (n < 2) return false;
    for (int d = 2; d * d <= n; ++d)
        if (n % d == 0) return false;
    return true;
}

int main() {
    pf::ez(pf::iter(1, 60), pf::filter(is_prime), pf::map([](int p) { return p * p; }),
           pf::print("prime squared:"))
        .join();
}

// batch(n) groups items into vectors, e.g. to hand a model or a database n rows at a time.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

#include <numeric>

namespace pf = parafork;

long sum(const std::vector<int>& rows) { return std::accumulate(rows.begin(), rows.end(), 0L); }

int main() {
    auto sums = pf::ez(pf::iter(1, 23), pf::batch(5), pf::print("batch"), sum, pf::print("sum")).list();
    return sums == std::vector<long>{15, 40, 65, 90, 43} ? 0 : 1;  // 1..5, 6..10, ..., 21..22
}

// zip(...) sends each item to every branch (a broadcast) and puts one tuple per item with
// what each branch made of it.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

#include <cmath>

namespace pf = parafork;

int square(int x) { return x * x; }
double root(int x) { return std::sqrt(x); }
std::string label(int x) { return x % 2 ? "odd" : "even"; }

int main() {
    auto rows = pf::ez(pf::iter(1, 8), pf::zip(square, root, label), pf::print()).list();
    if (rows.size() != 7) return 1;
    auto [sq, rt, lb] = rows[2];  // the item 3
    return sq == 9 && rt == std::sqrt(3.0) && lb == "odd" ? 0 : 1;
}

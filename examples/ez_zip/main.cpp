// zip(...) sends each item to every branch (a broadcast) and puts one tuple per item with
// what each branch made of it.
#include <parafork/exec/pipeline.hpp>
#include <parafork/exec/stages.hpp>

#include <cmath>

namespace pf = parafork;

int square(int x) { return x * x; }
double root(int x) { return std::sqrt(x); }
std::string label(int x) { return x % 2 ? "odd" : "even"; }

int main() {
    pf::ez(pf::iter(1, 8), pf::zip(square, root, label), pf::print()).join();
}

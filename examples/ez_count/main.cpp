// mpyx's first example: Count(5) -> AddX(10) -> Print prints 11..15, each stage in its own
// process.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

namespace pf = parafork;

// A source: puts in setup() and says it is done with stop().
struct Count : pf::stage<int> {
    int to;
    explicit Count(int n) : to(n) {}
    void setup() {
        for (int n = 1; n <= to; ++n) put(n);
        stop();
    }
};

struct AddX : pf::stage<int> {
    int amount;
    explicit AddX(int a = 1) : amount(a) {}
    void process(int n) { put(n + amount); }
};

int main() {
    // join() starts the graph and waits for it (a destructor stops a graph, it does not wait).
    pf::ez(Count(5), AddX(10), pf::print()).join();
    // print passes items on, so the same graph can hand them to the parent too.
    auto got = pf::ez(Count(5), AddX(10)).list();
    return got == std::vector<int>{11, 12, 13, 14, 15} ? 0 : 1;
}

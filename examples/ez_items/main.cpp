// items() hands the output to the parent lazily, as it comes; list() waits and returns all.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

#include <cstdio>

namespace pf = parafork;

int twice(int x) {
    return 2 * x;
}

int main() {
    auto p = pf::ez(pf::iter(0, 10), pf::workers(2, twice).ordered(), pf::stamp("done"));
    int want = 0;
    for (int v : p.items()) {
        std::printf("got %d\n", v);
        if (v != want) return 1;  // ordered: 0, 2, 4, ...
        want += 2;
    }

    // items() is lazy: an endless source, the first three, then the pipeline is stopped.
    int n = 0;
    for (int v : pf::ez(pf::constant(7), twice).items()) {
        std::printf("endless: %d\n", v);
        if (v != 14) return 1;
        if (++n == 3) break;
    }

    auto all = pf::ez(pf::constant(std::string("hello"), 3)).list();
    for (auto& s : all) std::printf("list: %s\n", s.c_str());
    return want == 20 && all == std::vector<std::string>(3, "hello") ? 0 : 1;
}

// items() hands the output to the parent lazily, as it comes; list() waits and returns all.
#include <parafork/exec/pipeline.hpp>
#include <parafork/exec/stages.hpp>

#include <cstdio>

namespace pf = parafork;

int twice(int x) {
    return 2 * x;
}

int main() {
    auto p = pf::ez(pf::iter(0, 10), pf::workers(2, twice).ordered(), pf::stamp("done"));
    for (int v : p.items()) std::printf("got %d\n", v);

    auto all = pf::ez(pf::constant(std::string("hello"), 3)).list();
    for (auto& s : all) std::printf("list: %s\n", s.c_str());
}

// Graphs whose types disagree must not compile. Built by ctest with one of the macros below;
// each failing case is expected to stop at its static_assert (the test matches the message),
// and the control case, the same graph with matching types, must compile.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

#include <string>
#include <vector>

namespace pf = parafork;

namespace {

struct AddX : pf::stage<int> {
    int amount = 1;
    void process(int n) { put(n + amount); }
};

int add1(int x) { return x + 1; }
std::string to_text(int x) { return std::to_string(x); }

} // namespace

void build() {
#if defined(PARAFORK_CF_CONTROL)
    auto p = pf::ez(pf::iter(0, 3), AddX{}, pf::parallel(add1, add1));
#elif defined(PARAFORK_CF_WRONG_INPUT)
    // AddX takes int; its upstream puts std::vector<int>.
    auto p = pf::ez(pf::iter(0, 3), pf::batch(2), AddX{});
#elif defined(PARAFORK_CF_BRANCH_TYPES)
    // Two workers on one queue putting int and std::string into the next queue.
    auto p = pf::ez(pf::iter(0, 3), pf::parallel(add1, to_text));
#elif defined(PARAFORK_CF_OLD_MAP_STAGE)
    // The stage is transform(f) now; map(f) is deprecated (built with the warning an error).
    auto p = pf::ez(pf::iter(0, 3), pf::map(add1));
#else
#error "define one of the PARAFORK_CF_* cases"
#endif
    (void)p.graph();
}

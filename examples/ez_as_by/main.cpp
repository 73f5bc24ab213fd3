// as<S>(n, args...): n processes competing for items; by<S>(n, args...): n processes that
// each get every item.
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

#include <cstdio>

namespace pf = parafork;

struct SomeTask : pf::stage<std::string> {
    std::string arg1, arg2;
    SomeTask(std::string a, std::string b) : arg1(std::move(a)), arg2(std::move(b)) {}
    void process(int item) { put(arg1 + "/" + arg2 + "/" + std::to_string(item)); }
};

int main() {
    auto shared = pf::ez(pf::iter(0, 16), pf::as<SomeTask>(8, "arg1", "arg2")).list();
    std::printf("as<SomeTask>(8): %zu items for 16 inputs (each handled once)\n", shared.size());
    auto every = pf::ez(pf::iter(0, 16), pf::by<SomeTask>(3, "x", "y")).list();
    std::printf("by<SomeTask>(3): %zu items for 16 inputs (each handled by all three)\n", every.size());
    return shared.size() == 16 && every.size() == 48 ? 0 : 1;
}

// Pipelines: graph shapes, stage kinds, order, types, built-ins.
#include <parafork/exec/pipeline.hpp>
#include <parafork/exec/stages.hpp>
#include <parafork/sys/signals.hpp>

#include "support/leak_check.hpp"

#include <algorithm>
#include <numeric>
#include <ranges>

namespace pf = parafork;

namespace {

// The SIGINT self-pipe lives for the whole process once made; make it before any leak check.
const bool sigint_pipe_made = [] {
    pf::sys::sigint_guard g;
    return true;
}();

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

int add1(int x) { return x + 1; }
int mul2(int x) { return x * 2; }

} // namespace

TEST(pipeline, count_addx_list) {
    PARAFORK_LEAK_CHECK();
    auto v = pf::ez(Count(5), AddX(10)).list();
    EXPECT_EQ(v, (std::vector<int>{11, 12, 13, 14, 15}));
}

TEST(pipeline, functions_and_parallel) {
    PARAFORK_LEAK_CHECK();
    auto v = pf::ez(pf::iter(std::views::iota(0, 1000)), add1, pf::parallel(mul2, mul2)).list();
    ASSERT_EQ(v.size(), 1000u);
    std::sort(v.begin(), v.end());
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(v[static_cast<std::size_t>(i)], (i + 1) * 2);
}

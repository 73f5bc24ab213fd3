// Results with heap memory (strings) come back from the kids without any code of yours.
#include <parafork/exec/forked/forked.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace pf = parafork;

struct foo {
    std::string s;
    double x = 0;
    template <class Archive>
    void serialize(Archive& ar) {  // cereal's convention: one function for both directions
        ar(s, x);
    }
};

foo calc_foo(int x) { return foo{std::to_string(x), static_cast<double>(x)}; }

std::vector<foo> test_it() {
    std::vector<foo> result;
    std::vector<int> xs{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    pf::forked(xs, [](int x) { return calc_foo(x); },
               [&](foo&& f) { result.push_back(std::move(f)); });
    return result;  // completion order: whichever kid answered first
}

int main() {
    auto got = test_it();
    for (auto& f : got) std::printf("(s: \"%s\", x: %.1f) ", f.s.c_str(), f.x);
    std::printf("\n");
    // Every value came back once, whatever the order.
    std::sort(got.begin(), got.end(), [](const foo& a, const foo& b) { return a.x < b.x; });
    bool ok = got.size() == 10;
    for (std::size_t i = 0; ok && i < got.size(); ++i)
        ok = got[i].x == static_cast<double>(i) && got[i].s == std::to_string(i);
    if (!ok) std::fprintf(stderr, "forked_foo: wrong results\n");
    return ok ? 0 : 1;
}

// The iteration index in body and join: result[i] = f lands every value in its slot.
#include <parafork/exec/forked/forked.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace pf = parafork;

struct foo {
    std::string s;
    double x = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(s, x);
    }
};

foo calc_foo(int x) { return foo{std::to_string(x), static_cast<double>(x)}; }

std::vector<foo> test_it() {
    std::vector<foo> result(10);
    std::vector<int> xs{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    pf::forked(xs,
               [](std::size_t, int x) { return calc_foo(x); },
               [&](std::size_t i, foo&& f) { result[i] = std::move(f); });
    return result;  // input order
}

int main() {
    auto got = test_it();
    bool ok = got.size() == 10;
    for (std::size_t i = 0; i < got.size(); ++i) {
        std::printf("(s: \"%s\", x: %.1f) ", got[i].s.c_str(), got[i].x);
        ok = ok && got[i].x == static_cast<double>(i) && got[i].s == std::to_string(i);
    }
    std::printf("\n");
    if (!ok) std::fprintf(stderr, "forked_indexed: a value is not in its slot\n");
    return ok ? 0 : 1;
}

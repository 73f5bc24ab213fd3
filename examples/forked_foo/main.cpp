// Results with heap memory (strings) come back from the kids without any code of yours.
#include <parafork/exec/forked.hpp>

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
    for (auto& f : test_it()) std::printf("(s: \"%s\", x: %.1f) ", f.s.c_str(), f.x);
    std::printf("\n");
}

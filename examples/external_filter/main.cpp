// Kids that are an ordinary Unix filter: lines striped over N copies of `tr a-z A-Z`, replies
// in input order. Any filter that answers one line per line works (for filters that buffer
// their output, run them under `stdbuf -oL`).
#include <parafork/parafork.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace pf = parafork;

int main() try {
    std::vector<std::string> lines;
    for (int i = 0; i < 10; ++i) lines.push_back("line " + std::to_string(i) + " of some text");

    pf::options o;
    o.ordered = true;
    pf::proc_pool upper(pf::kid_cmd{"tr", "a-z", "A-Z"}, pf::frames::lines, o);
    upper.eval(lines, [](std::string_view r) { std::printf("%.*s\n", int(r.size()), r.data()); });
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "external_filter: %s\n", e.what());
    return 1;
}

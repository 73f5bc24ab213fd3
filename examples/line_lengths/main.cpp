// The procpool document's snippet: kids reply with each line's length; the parent prints the
// replies. Usage: line_lengths [words...]   (defaults to a few words)
#include <parafork/parafork.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace pf = parafork;

int main(int argc, char** argv) try {
    std::vector<std::string> words(argv + 1, argv + argc);
    if (words.empty()) words = {"fork", "join", "coprocess", "", "pipes and frames"};

    pf::options o;
    o.ordered = true;  // one reply per request, printed in request order
    pf::proc_pool pp(pf::kid_fn([](int in, int out) {
                         pf::serve(in, out, pf::frames::lines,
                                   [](std::string_view line) { return std::to_string(line.size()); });
                     }),
                     pf::frames::lines, o);
    pp.eval(words, [](std::string_view reply) { std::printf("%.*s\n", int(reply.size()), reply.data()); });
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "line_lengths: %s\n", e.what());
    return 1;
}

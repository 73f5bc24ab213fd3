// Fork-join with a merged global counter (snakefish's extract/merge): each thread counts in its
// own copy of the global, extract sends the copy up, merge adds it into the parent's.
#include <parafork/exec/thread/thread.hpp>

#include <cstdio>
#include <vector>

namespace pf = parafork;

static long counter = 0;

int main() {
    constexpr int threads = 4, per_thread = 250'000;
    std::vector<pf::thread> ts;
    for (int i = 0; i < threads; ++i)
        ts.emplace_back([] {
            for (int k = 0; k < per_thread; ++k) ++counter;  // the child's copy
        },
        [] { return counter; },                  // extract: in the child
        [](long theirs) { counter += theirs; }); // merge: in the parent, at join
    for (auto& t : ts) t.start();
    for (auto& t : ts) t.join();
    std::printf("counter = %ld (expected %d)\n", counter, threads * per_thread);
    return counter == threads * per_thread ? 0 : 1;
}

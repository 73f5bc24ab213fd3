// Call a method in a forked process and wait until it is done (tutorial part I.2: ping2.py).
// ask() returns a future; for a void method its get() is the synchronization point. Exits 1 if
// get() returned before the backend had finished.
#include <parafork/exec/process/process.hpp>

#include <chrono>
#include <cstdio>
#include <thread>
#include <unistd.h>

namespace pf = parafork;
using namespace std::chrono_literals;

struct pinger {
    int finished = 0;
    void ping(int n) {
        std::printf("backend: ping %d, working...\n", n);
        std::this_thread::sleep_for(100ms);  // something that takes a while
        std::printf("backend: ping %d done\n", n);
        ++finished;
    }
    int done_count() const { return finished; }
};

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order when piped (the backend inherits it)
    pf::process<pinger> p(pinger{}, {.name = "pinger"});
    p.start();
    for (int n = 0; n < 3; ++n) {
        auto t0 = std::chrono::steady_clock::now();
        auto done = p.ask(&pinger::ping, n);
        std::printf("frontend: sent ping %d, waiting\n", n);
        done.get();  // returns when the backend has finished ping(n)
        std::printf("frontend: backend finished ping %d\n", n);
        if (std::chrono::steady_clock::now() - t0 < 100ms || p.ask(&pinger::done_count).get() != n + 1) {
            std::fprintf(stderr, "frontend: get() returned before ping %d was done\n", n);
            return 1;
        }
    }
    return p.join().ok() ? 0 : 1;
}

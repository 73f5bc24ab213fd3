// Call a method in a forked process (valkka multiprocess tutorial, part I.1: ping.py).
// The frontend's call() returns at once; ping() runs in the backend, in send order. Exits 1 if
// the backend did not get every ping in order.
#include <parafork/exec/process/process.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <unistd.h>

namespace pf = parafork;
using namespace std::chrono_literals;

struct pinger {
    int in_order = 0;  // pings received in send order
    void ping(const std::string& from) {
        std::printf("backend %d: ping from %s\n", ::getpid(), from.c_str());
        if (from == "frontend #" + std::to_string(in_order)) ++in_order;
    }
    int pings() const { return in_order; }
};

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order when piped (the backend inherits it)
    pf::sys::init_process_title(argc, argv);  // the backend's title shows in ps -f, too
    pf::process<pinger> p(pinger{}, {.name = "pinger"});
    p.start();
    std::printf("frontend %d: started backend %d\n", ::getpid(), p.pid());
    for (int i = 0; i < 3; ++i) {
        p.call(&pinger::ping, "frontend #" + std::to_string(i));
        std::this_thread::sleep_for(100ms);  // the frontend does its own things meanwhile
    }
    int got = p.ask(&pinger::pings).get();
    bool ok = p.join().ok();  // stops after the queued calls, waits for the backend
    std::printf("frontend: bye\n");
    if (got != 3 || !ok) {
        std::fprintf(stderr, "frontend: the backend got %d of 3 pings in order\n", got);
        return 1;
    }
}

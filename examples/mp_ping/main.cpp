// Call a method in a forked process (valkka multiprocess tutorial, part I.1: ping.py).
// The frontend's call() returns at once; ping() runs in the backend, in send order.
#include <parafork/exec/process.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <unistd.h>

namespace pf = parafork;
using namespace std::chrono_literals;

struct pinger {
    void ping(const std::string& from) {
        std::printf("backend %d: ping from %s\n", ::getpid(), from.c_str());
    }
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
    p.join();  // stops after the queued calls, waits for the backend
    std::printf("frontend: bye\n");
}

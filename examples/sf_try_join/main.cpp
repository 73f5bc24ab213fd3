// Polling a thread with try_join while the parent does other things.
#include <parafork/exec/thread/thread.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

namespace pf = parafork;

int main() {
    pf::thread t([] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return 42;
    });
    t.start();
    int polls = 0;
    while (!t.try_join()) {
        ++polls;  // the parent keeps working meanwhile
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::printf("joined after %d polls: result %d, exit status %d\n", polls, t.result<int>(), t.exit_status());
    return t.result<int>() == 42 && t.exit_status() == 0 && polls > 0 ? 0 : 1;
}

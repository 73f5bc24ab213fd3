// Ordering events from two children by timestamp: each child stamps its events and sends them
// up; the parent merges the two streams in time order.
#include <parafork/exec/thread.hpp>
#include <parafork/ipc/channel.hpp>
#include <parafork/ipc/timestamp.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace pf = parafork;

int main() {
    using event = std::pair<pf::timestamp_t, std::string>;
    pf::channel ch;
    auto worker = [&](std::string name, int pause_ms) {
        return pf::thread([&ch, name, pause_ms] {
            for (int i = 0; i < 3; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
                ch.send(event{pf::timestamp(), name + " step " + std::to_string(i)});
            }
        });
    };
    pf::thread a = worker("a", 7), b = worker("b", 11);
    a.start();
    b.start();
    std::vector<event> events;
    for (int i = 0; i < 6; ++i) events.push_back(ch.receive<event>());
    a.join();
    b.join();
    std::sort(events.begin(), events.end());
    for (auto& [t, what] : events)
        std::printf("%+9.3f ms  %s\n", static_cast<double>(t - events.front().first) / 1e6, what.c_str());
    return 0;
}

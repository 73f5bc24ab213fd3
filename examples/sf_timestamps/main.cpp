// Ordering events from two children by timestamp: each child stamps its events (the serialized
// variant: the reading is not taken before the child's earlier work) and sends them up; the
// parent merges the two streams in time order. Exits non-zero if the stamps contradict what is
// known: each child's own events in order, all between the parent's readings before and after.
#include <parafork/exec/thread/thread.hpp>
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
                ch.send(event{pf::timestamp_serialized(), name + " step " + std::to_string(i)});
            }
        });
    };
    pf::thread a = worker("a", 7), b = worker("b", 11);
    pf::timestamp_t before = pf::timestamp_serialized();
    a.start();
    b.start();
    std::vector<event> events;
    for (int i = 0; i < 6; ++i) events.push_back(ch.receive<event>());
    a.join();
    b.join();
    pf::timestamp_t after = pf::timestamp_serialized();
    // Arrival order per child is its sending order: its stamps must increase along it.
    pf::timestamp_t last[2] = {before, before};
    for (auto& [t, what] : events) {
        auto& prev = last[what[0] == 'a' ? 0 : 1];
        if (t < prev || t > after) {
            std::printf("out of order: %s\n", what.c_str());
            return 1;
        }
        prev = t;
    }
    std::sort(events.begin(), events.end());
    for (auto& [t, what] : events)
        std::printf("%+9.3f ms  %s\n", static_cast<double>(t - events.front().first) / 1e6, what.c_str());
    return 0;
}

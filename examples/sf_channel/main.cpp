// A channel with two senders and one receiver: blocking receives, then non-blocking ones.
#include <parafork/exec/thread/thread.hpp>
#include <parafork/ipc/channel.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace pf = parafork;

int main() {
    pf::channel ch;  // made before the children: they share it
    pf::thread a([&] {
        for (int i = 0; i < 3; ++i) ch.send(std::string("a") + std::to_string(i));
    });
    pf::thread b([&] {
        for (int i = 0; i < 3; ++i) ch.send(std::string("b") + std::to_string(i));
    });
    a.start();
    b.start();

    std::vector<std::string> got;
    for (int i = 0; i < 4; ++i) {
        got.push_back(ch.receive<std::string>());
        std::printf("blocking receive: %s\n", got.back().c_str());
    }

    while (got.size() < 6) {
        if (auto m = ch.try_receive<std::string>()) {
            std::printf("non-blocking receive: %s\n", m->c_str());
            got.push_back(*m);
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));  // nothing yet
        }
    }
    a.join();
    b.join();
    // Each message exactly once, and each sender's messages in the order it sent them.
    int next[2] = {0, 0};
    for (auto& m : got) {
        int who = m[0] == 'a' ? 0 : m[0] == 'b' ? 1 : -1;
        if (who < 0 || m != std::string(1, m[0]) + std::to_string(next[who]++)) {
            std::printf("wrong message: %s\n", m.c_str());
            return 1;
        }
    }
    if (next[0] != 3 || next[1] != 3) return 1;
    // Both senders are gone and the ring is empty: the channel says so instead of hanging.
    try {
        ch.receive<std::string>();
        return 1;
    } catch (const pf::channel_closed&) {
        std::printf("channel closed\n");
    }
    return 0;
}

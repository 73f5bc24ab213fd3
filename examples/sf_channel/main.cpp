// A channel with two senders and one receiver: blocking receives, then non-blocking ones.
#include <parafork/exec/thread.hpp>
#include <parafork/ipc/channel.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

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

    for (int i = 0; i < 4; ++i) std::printf("blocking receive: %s\n", ch.receive<std::string>().c_str());

    int got = 4;
    while (got < 6) {
        if (auto m = ch.try_receive<std::string>()) {
            std::printf("non-blocking receive: %s\n", m->c_str());
            ++got;
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));  // nothing yet
        }
    }
    a.join();
    b.join();
    // Both senders are gone and the ring is empty: the channel says so instead of hanging.
    try {
        ch.receive<std::string>();
        return 1;
    } catch (const pf::channel_closed&) {
        std::printf("channel closed\n");
    }
    return 0;
}

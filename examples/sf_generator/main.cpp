// A generator in a child: blocking next() and non-blocking try_next().
#include <parafork/exec/generator.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

namespace pf = parafork;

int main() {
    pf::generator<long> squares([](pf::yield<long>& yield) {
        for (long i = 0; i < 10; ++i) yield(i * i);
    });
    squares.start();
    while (auto v = squares.next()) std::printf("next: %ld\n", *v);
    squares.join();

    pf::generator<int> slow([](pf::yield<int>& yield) {
        for (int i = 0; i < 3; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            yield(i);
        }
    });
    slow.start();
    int waits = 0;
    while (!slow.done()) {
        if (auto v = slow.try_next()) std::printf("try_next: %d\n", *v);
        else if (++waits, true) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    slow.join();
    std::printf("try_next found nothing ready %d times\n", waits);
    return 0;
}

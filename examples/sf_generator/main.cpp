// A generator in a child: blocking next() and non-blocking try_next().
#include <parafork/exec/thread/generator.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

namespace pf = parafork;

int main() {
    pf::generator<long> squares([](pf::yield<long>& yield) {
        for (long i = 0; i < 10; ++i) yield(i * i);
    });
    squares.start();
    long sum = 0, count = 0;
    while (auto v = squares.next()) {
        std::printf("next: %ld\n", *v);
        if (*v != count * count) return 1;
        sum += *v;
        ++count;
    }
    squares.join();
    if (count != 10 || sum != 285) return 1;

    pf::generator<int> slow([](pf::yield<int>& yield) {
        for (int i = 0; i < 3; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            yield(i);
        }
    });
    slow.start();
    int waits = 0, expected = 0;
    while (!slow.done()) {
        if (auto v = slow.try_next()) {
            std::printf("try_next: %d\n", *v);
            if (*v != expected++) return 1;
        } else {
            ++waits;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    slow.join();
    std::printf("try_next found nothing ready %d times\n", waits);
    return expected == 3 && waits > 0 ? 0 : 1;
}

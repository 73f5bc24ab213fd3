// Exceptions thrown in a thread and in a generator come back to the parent with their type
// name and message.
#include <parafork/exec/generator.hpp>
#include <parafork/exec/thread.hpp>

#include <cstdio>
#include <stdexcept>

namespace pf = parafork;

int main() {
    pf::thread t([]() -> int { throw std::invalid_argument("bad input in the thread"); });
    t.start();
    try {
        t.join();
        return 1;
    } catch (const pf::remote_error& e) {
        std::printf("thread: %s: %s (child %d)\n", e.type_name().c_str(), e.message().c_str(), e.pid());
    }

    pf::generator<int> g([](pf::yield<int>& yield) {
        yield(1);
        yield(2);
        throw std::runtime_error("the generator broke after two values");
    });
    g.start();
    try {
        while (auto v = g.next()) std::printf("generator: %d\n", *v);
        return 1;
    } catch (const pf::remote_error& e) {
        std::printf("generator: %s: %s\n", e.type_name().c_str(), e.message().c_str());
    }
    g.join();
    return 0;
}

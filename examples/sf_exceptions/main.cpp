// Exceptions thrown in a thread and in a generator come back to the parent with their type
// name and message.
#include <parafork/exec/thread/generator.hpp>
#include <parafork/exec/thread/thread.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace pf = parafork;

int main() {
    pf::thread t([]() -> int { throw std::invalid_argument("bad input in the thread"); });
    t.start();
    try {
        t.join();
        return 1;
    } catch (const pf::remote_error& e) {
        std::printf("thread: %s: %s (child %d)\n", e.type_name().c_str(), e.message().c_str(), e.pid());
        if (e.type_name() != "std::invalid_argument" || e.message() != "bad input in the thread") return 1;
    }

    pf::generator<int> g([](pf::yield<int>& yield) {
        yield(1);
        yield(2);
        throw std::runtime_error("the generator broke after two values");
    });
    g.start();
    int values = 0;
    try {
        while (auto v = g.next()) {
            std::printf("generator: %d\n", *v);
            if (*v != ++values) return 1;
        }
        return 1;
    } catch (const pf::remote_error& e) {
        std::printf("generator: %s: %s\n", e.type_name().c_str(), e.message().c_str());
        if (values != 2 || e.type_name() != "std::runtime_error") return 1;
    }
    g.join();  // next() reported the exception: join does not again

    // A caller that only joins still hears of it: join rethrows what next() never reached.
    pf::generator<int> unread([](pf::yield<int>& yield) {
        yield(1);
        throw std::logic_error("nobody read me");
    });
    unread.start();
    try {
        unread.join();
        return 1;
    } catch (const pf::remote_error& e) {
        std::printf("generator join: %s: %s\n", e.type_name().c_str(), e.message().c_str());
        if (e.message() != "nobody read me") return 1;
    }
    return 0;
}

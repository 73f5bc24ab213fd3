// Call a method and receive messages from the backend (tutorial part I.3: ping_pong.py).
// The backend emit()s typed messages; the frontend receive<T>()s them (and exits 1 if one is
// not the answer to its ping).
#include <parafork/exec/process/process.hpp>

#include <cstdio>
#include <string>

namespace pf = parafork;

struct pong {
    int n = 0;
    std::string text;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(n, text);
    }
};

struct ponger : pf::actor {
    void ping(int n) { emit(pong{n, "pong " + std::to_string(n)}); }
};

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order when piped (the backend inherits it)
    pf::process<ponger> p(ponger{}, {.name = "ponger"});
    p.start();
    for (int n = 0; n < 5; ++n) {
        p.call(&ponger::ping, n);
        pong r = p.receive<pong>();
        std::printf("frontend: ping %d -> %s\n", n, r.text.c_str());
        if (r.n != n || r.text != "pong " + std::to_string(n)) {
            std::fprintf(stderr, "frontend: wrong pong for ping %d\n", n);
            return 1;
        }
    }
    return p.join().ok() ? 0 : 1;
}

// Shared memory made after the fork, on demand (tutorial part I.5: shm2.py).
// The frontend makes an array while the backend runs and passes it in a call: its memory
// descriptor travels over the process socket and the backend maps the same memory. Exits 1 if
// the frontend does not see what the backend wrote.
#include <parafork/exec/process/process.hpp>

#include <cstdio>
#include <map>
#include <string>

namespace pf = parafork;

struct buffer_filler : pf::actor {
    std::map<std::string, pf::shared_array<int>> buffers;  // the backend's mirrors

    void attach(std::string name, pf::shared_array<int> a) {
        std::printf("backend: got buffer '%s' of %zu ints\n", name.c_str(), a.size());
        buffers[name] = std::move(a);
    }
    void fill(std::string name, int value) {
        auto& a = buffers.at(name);
        for (std::size_t i = 0; i < a.size(); ++i) a[i] = value + static_cast<int>(i);
        emit(name);  // tell the frontend it is ready
    }
};

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order when piped (the backend inherits it)
    pf::process<buffer_filler> p(buffer_filler{}, {.name = "filler"});
    p.start();
    for (int k = 0; k < 3; ++k) {
        std::string name = "buffer" + std::to_string(k);
        pf::shared_array<int> a({static_cast<std::size_t>(8 * (k + 1))});  // made on demand
        p.call(&buffer_filler::attach, name, a);
        p.call(&buffer_filler::fill, name, 100 * k);
        std::string ready = p.receive<std::string>();
        std::printf("frontend: %s ready, first %d, last %d\n", ready.c_str(), a[0], a[a.size() - 1]);
        bool same = ready == name;
        for (std::size_t i = 0; i < a.size(); ++i) same = same && a[i] == 100 * k + static_cast<int>(i);
        if (!same) {
            std::fprintf(stderr, "frontend: %s does not hold what the backend wrote\n", name.c_str());
            return 1;
        }
    }
    return p.join().ok() ? 0 : 1;
}

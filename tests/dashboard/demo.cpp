// A program with the dashboard on, for the browser test (web/dashboard/test/browser.mjs): a
// pool of 3 workers named "browser-demo" answers 200 tasks, one task kills its own worker and
// one throws; then it keeps its workers busy with short tasks until its standard input closes
// (or 60 s pass). A pipeline "browser-pipe" runs beside it meanwhile: a source puts an item
// every 5 ms, two workers add one, a sink takes one every 10 ms (its queue fills). It prints
// "URL <url>", "VICTIM <pid>" and "READY" on stdout.
#include <parafork/dashboard/dashboard.hpp>
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pool/pool.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <poll.h>
#include <stdexcept>
#include <thread>
#include <unistd.h>
#include <vector>

namespace pf = parafork;

namespace {
int square(int x) { return x * x; }
int die_now() {
    ::raise(SIGKILL);
    return 0;
}
int boom(int x) {
    throw std::runtime_error("task failed on purpose: input " + std::to_string(x));
}
int nap(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}
int add1(int x) { return x + 1; }
struct ticker : pf::stage<int> {
    void setup() {
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        for (int n = 0; std::chrono::steady_clock::now() < until; ++n) {
            put(n);
            flush();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        stop();
    }
};
struct slow_sink : pf::stage<> {
    void process(int) { std::this_thread::sleep_for(std::chrono::milliseconds(10)); }
};
bool stdin_closed() {
    pollfd p{0, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;  // EOF (or a line): time to go
}
} // namespace

int main() {
    // The variable turns the dashboard on for the pipeline (it takes no options); the pool's
    // options name the same address.
    ::setenv("PARAFORK_DASHBOARD", "127.0.0.1:0", 1);
    auto pipe = pf::ez(pf::named("ticker", ticker{}), pf::workers(2, pf::named("add1", &add1)),
                       pf::named("slow-sink", slow_sink{}))
                    .named("browser-pipe");
    pipe.start();
    pf::options o;
    o.jobs = 3;
    o.name = "browser-demo";
    o.dashboard = "127.0.0.1:0";
    pf::pool p(o);
    std::printf("URL %s\n", pf::dashboard::url().c_str());
    std::fflush(stdout);
    std::vector<pf::future<int>> fs;
    for (int i = 0; i < 200; ++i) fs.push_back(p.submit(&square, i));
    for (auto& f : fs) f.get();
    try {
        p.submit(&die_now).get();
    } catch (const pf::worker_died& e) {
        std::printf("VICTIM %d\n", e.pid());
    }
    try {
        p.submit(&boom, 7).get();
    } catch (const pf::remote_error&) {
    }
    std::printf("READY\n");
    std::fflush(stdout);
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!stdin_closed() && std::chrono::steady_clock::now() < until) {
        std::vector<pf::future<int>> batch;
        for (int i = 0; i < 6; ++i) batch.push_back(p.submit(&nap, 25));
        for (auto& f : batch) f.get();
    }
    return 0;
}

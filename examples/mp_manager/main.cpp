// A manager with N workers, each with its own shared array (tutorial part II: main1.py).
//
//   manager (main process)
//     IN:  ready messages from the workers (through a selector)
//     SUB: worker-k
//            UP: ready{k, job} message, result in its shared array
//            IN: do_work(job)
//
// Workers report ready (at start, and after each job); the manager reads the finished job's
// result from that worker's array and hands it the next job. Other descriptors (a device, a
// socket) would go into the same selector with add_fd. The manager checks every result against
// its own computation and each job's being done exactly once: it exits 1 otherwise.
#include <parafork/exec/process/process.hpp>
#include <parafork/exec/process/selector.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

namespace pf = parafork;
using namespace std::chrono_literals;

struct ready {
    int worker = 0;
    int job = -1;  // -1: nothing done yet
    template <class Ar>
    void serialize(Ar& ar) {
        ar(worker, job);
    }
};

// What a worker writes for `job` (the manager computes it too, to check the shared array).
double value(int job, std::size_t i) { return std::sin(0.001 * static_cast<double>(job) * static_cast<double>(i)); }

struct worker : pf::actor {
    int id = 0;
    pf::shared_array<double> result{4096};  // made by the manager, before the fork

    explicit worker(int k) : id(k) {}
    void pre_run() { emit(ready{id, -1}); }
    void do_work(int job) {
        for (std::size_t i = 0; i < result.size(); ++i)
            result[i] = value(job, i);
        emit(ready{id, job});
    }
};

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order when piped (the backend inherits it)
    const int n_workers = 4, n_jobs = 16;
    std::vector<pf::process<worker>> workers;
    pf::selector sel;
    for (int k = 0; k < n_workers; ++k) {
        workers.emplace_back(worker(k), pf::options{.name = "worker-" + std::to_string(k)});
        workers.back().start();
        sel.add(workers.back());  // selector id k is workers[k]
    }

    int next_job = 0, done = 0;
    std::vector<int> times_done(n_jobs, 0);
    bool wrong = false;
    while (done < n_jobs) {
        auto& ids = sel.wait(10s);
        if (ids.empty()) throw pf::timeout_error("manager: no worker answered in 10 s");
        for (std::size_t k : ids) {
            auto& w = workers[k];
            while (auto r = w.try_receive<ready>()) {
                if (r->job >= 0) {
                    auto& a = w.actor().result;  // the same memory the worker wrote
                    double sum = std::accumulate(a.begin(), a.end(), 0.0);
                    std::printf("manager: job %2d from worker %d, checksum %9.3f\n", r->job, r->worker, sum);
                    double want = 0;
                    for (std::size_t i = 0; i < a.size(); ++i) want += value(r->job, i);
                    if (r->worker != static_cast<int>(k) || r->job >= n_jobs || std::abs(sum - want) > 1e-9) {
                        std::fprintf(stderr, "manager: job %d: checksum %f, expected %f\n", r->job, sum, want);
                        wrong = true;
                    } else {
                        ++times_done[static_cast<std::size_t>(r->job)];
                    }
                    ++done;
                }
                if (next_job < n_jobs) w.call(&worker::do_work, next_job++);
            }
        }
    }
    for (auto& w : workers) wrong |= !w.join().ok();
    for (int t : times_done) wrong |= t != 1;
    std::printf("manager: %d jobs on %d workers, done\n", done, n_workers);
    if (wrong) {
        std::fprintf(stderr, "manager: wrong results\n");
        return 1;
    }
}

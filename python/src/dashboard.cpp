// _parafork.DashPipeline: a Python pipeline (parafork.ez, parafork.mpyx) on the live dashboard,
// as a C++ pipeline is (src/exec/pipeline/runtime.cpp): a call of kind "pipeline" with a worker
// per stage process and its graph, whose counters the stage processes bump once per batch.

#include "common.hpp"
#include "../../src/dashboard/hub.hpp"

#include <parafork/exec/pipeline/detail/edge.hpp>

#include <pybind11/stl.h>

#include <pthread.h>

#include <atomic>
#include <new>
#include <string>
#include <tuple>
#include <vector>

namespace parafork_python {
namespace {

namespace dash = pf::detail::dash;
using pf::detail::edge_stats;

// Bumped in every child forked with fork(): an object written to before a fork is not the
// child's to write (its region may not be mapped there) unless the child takes it (stage()).
std::uint64_t fork_generation = 0;
void count_fork() { ++fork_generation; }

class dash_pipeline {
public:
    // queues: (writers, readers, to_parent) per queue, the stages by index.
    dash_pipeline(const std::string& name, const py::object& dashboard, const std::vector<std::string>& stages,
                  const std::vector<std::tuple<std::vector<std::size_t>, std::vector<std::size_t>, bool>>& queues) {
        pf::options o;
        o.name = name;
        if (!dashboard.is_none()) {
            if (!py::isinstance<py::str>(dashboard))
                throw py::type_error("parafork: dashboard must be an address string such as '127.0.0.1:8765', or None");
            o.dashboard = dashboard.cast<std::string>();
        }
        try {
            pool_ = dash::attach(o, "pipeline", stages.size(), 0);
        } catch (...) {
            pool_ = nullptr;  // nothing about the dashboard throws into the program
        }
        gen_ = fork_generation;
        if (!pool_) return;
        std::vector<std::string_view> names(stages.begin(), stages.end());
        std::vector<dash::graph_queue> graph;
        for (std::size_t q = 0; q < queues.size(); ++q) {
            const auto& [ws, rs, parent] = queues[q];
            auto& x = graph.emplace_back();
            for (auto i : ws)
                if (i < dash::max_stages) x.writers |= std::uint64_t{1} << i;
            for (auto i : rs)
                if (i < dash::max_stages) x.readers |= std::uint64_t{1} << i;
            x.parent_reads = parent;
            x.counter = static_cast<std::uint32_t>(q);
            x.type = "object";
        }
        // Shown as a call with its stage processes, without its graph, when that does not fit.
        pipe_ = dash::attach_graph(*pool_, names, graph, queues.size() * sizeof(edge_stats));
        if (!pipe_) return;
        counters_ = reinterpret_cast<edge_stats*>(pipe_->counters);
        for (std::size_t q = 0; q < queues.size(); ++q) new (counters_ + q) edge_stats();
        nqueues_ = queues.size();
    }
    dash_pipeline(const dash_pipeline&) = delete;
    dash_pipeline& operator=(const dash_pipeline&) = delete;
    ~dash_pipeline() { close(); }

    bool on() const noexcept { return pool_ != nullptr; }

    // Around the forks of the stages: they map the region (their counters are there), and the
    // parafork threads they run in are not calls of their own.
    void forking(bool begin) noexcept {
        if (!pool_ || !here()) return;
        if (begin == forking_) return;
        forking_ = begin;
        if (begin) dash::open_to_children();
        dash::quiet_threads(begin);
        if (!begin) dash::close_to_children();
    }
    // In stage i's process, first thing: the counters are its own to write; its children's not.
    void stage(std::size_t i) noexcept {
        if (!pool_) return;
        dash::keep_from_children();
        gen_ = fork_generation;
        owner_ = false;
        stage_ = i;
    }
    void started(std::size_t i, int pid) noexcept {
        if (!pool_ || !here() || i >= dash::max_workers) return;
        dash::worker_started(*pool_, i, pid);
        pool_->workers[i].state.store(static_cast<std::uint32_t>(dash::worker_state::running),
                                      std::memory_order_relaxed);
    }
    // A batch of n items this stage took from queue q (parent: the program read them).
    void took(std::size_t q, std::uint64_t n) noexcept {
        if (!pipe_ || !here()) return;
        if (q < nqueues_) counters_[q].received.fetch_add(n, std::memory_order_relaxed);
        if (!owner_ && stage_ < dash::max_stages) dash::tally(pipe_->stage[stage_].in, n);
    }
    // A batch of n items this stage put into queue q.
    void put(std::size_t q, std::uint64_t n) noexcept {
        if (!pipe_ || !here()) return;
        if (q < nqueues_) counters_[q].sent.fetch_add(n, std::memory_order_relaxed);
        if (!owner_ && stage_ < dash::max_stages) dash::tally(pipe_->stage[stage_].out, n);
    }
    // Stage i ended: cleanly, or not (its failure is noted by failed()).
    void ended(std::size_t i, bool ok) noexcept {
        if (!pool_ || !here() || !owner_ || i >= dash::max_workers) return;
        pool_->workers[i].state.store(
            static_cast<std::uint32_t>(ok ? dash::worker_state::exited : dash::worker_state::dead),
            std::memory_order_relaxed);
    }
    // The failure that stops the graph: a stage's exception, or its death (signal or exit code).
    void failed(std::size_t i, int pid, bool died, int signal, int code, const std::string& type,
                const std::string& message) noexcept {
        if (!pool_ || !here() || !owner_ || noted_) return;
        noted_ = true;
        ended(i, false);
        dash::relaxed_set(pool_->failed, 1);
        if (died) dash::relaxed_set(pool_->deaths, 1);
        dash::error_note n;
        n.kind = died ? dash::error_kind::died : dash::error_kind::remote;
        n.type = type;
        n.message = message;
        n.pid = pid;
        n.signal = signal;
        n.code = code;
        dash::note(*pool_, n);
    }
    // Every stage has been reaped: finished, its graph on show until its slot is needed.
    void close() noexcept {
        if (!pool_ || !here() || !owner_ || closed_) return;
        closed_ = true;
        forking(false);
        dash::close_pool(*pool_);
        if (pipe_) dash::release_pipe(*pipe_);
    }

private:
    bool here() const noexcept { return gen_ == fork_generation; }

    dash::pool_slot* pool_ = nullptr;
    dash::pipe_slot* pipe_ = nullptr;
    edge_stats* counters_ = nullptr;
    std::size_t nqueues_ = 0;
    std::size_t stage_ = dash::max_stages;  // in a stage's process: its index
    std::uint64_t gen_ = 0;
    bool owner_ = true, forking_ = false, noted_ = false, closed_ = false;
};

} // namespace

void bind_dashboard(py::module_& m) {
    pthread_atfork(nullptr, nullptr, count_fork);
    py::class_<dash_pipeline>(m, "DashPipeline")
        .def(py::init<const std::string&, const py::object&, const std::vector<std::string>&,
                      const std::vector<std::tuple<std::vector<std::size_t>, std::vector<std::size_t>, bool>>&>(),
             py::arg("name"), py::arg("dashboard"), py::arg("stages"), py::arg("queues"))
        .def_property_readonly("on", &dash_pipeline::on)
        .def("forking", &dash_pipeline::forking, py::arg("begin"))
        .def("stage", &dash_pipeline::stage, py::arg("index"))
        .def("started", &dash_pipeline::started, py::arg("index"), py::arg("pid"))
        .def("took", &dash_pipeline::took, py::arg("queue"), py::arg("n"))
        .def("put", &dash_pipeline::put, py::arg("queue"), py::arg("n"))
        .def("ended", &dash_pipeline::ended, py::arg("index"), py::arg("ok"))
        .def("failed", &dash_pipeline::failed, py::arg("index"), py::arg("pid"), py::arg("died"),
             py::arg("signal"), py::arg("code"), py::arg("type"), py::arg("message"))
        .def("close", &dash_pipeline::close);
}

} // namespace parafork_python

#pragma once
// The pipeline graph flattened into processes and queues (internal to src/exec): which stage
// process reads and writes which queue, checked before anything is forked.

#include <parafork/exec/pipeline/detail/graph.hpp>

#include <iosfwd>
#include <memory>
#include <string>
#include <sys/types.h>
#include <typeindex>
#include <vector>

namespace parafork::detail {

struct edge_plan {
    std::type_index type = typeid(void);
    std::vector<int> tee;  // a broadcast: writers of this queue write to each of these instead
    bool sequenced = false, reorder = false, parent_reads = false;
    int order_source = -1;  // a reorder queue: the numbered queue into its group (its window)
    std::vector<std::size_t> writers, readers;
    std::string label;
};

struct xcut_binding {
    std::string name;
    std::type_index type = typeid(void);
    int edge = -1;
};

struct proc_plan {
    std::shared_ptr<leaf_base> leaf;
    std::vector<int> ins;
    int out = -1;             // the logical queue it puts into
    std::vector<int> outs;    // the physical queues that means
    std::vector<xcut_binding> xcuts;
    std::vector<int> xcut_edges;
};

struct graph_plan {
    std::shared_ptr<node_spec> root;
    run_options opts;
    std::vector<edge_plan> edges;
    std::vector<proc_plan> procs;
    int out_edge = -1;  // the queue the parent reads, if any
    bool planned = false;

    // Builds edges and procs from root (once); throws parafork::error for a graph that
    // cannot run.
    void plan();
    // A queue stages actually use (not a broadcast's logical input).
    bool used(std::size_t e) const;
    void print_layout(std::ostream& os, bool dot) const;

private:
    int new_edge(std::type_index t);
    void wire(const node_spec& n, int in, int out, std::vector<xcut_binding> xs);
    void physical(int e, std::vector<int>& out) const;
};

// Forks the process behind watch(): it redraws each queue's depth and items/s on stderr
// until it is killed.
pid_t start_watcher(const graph_plan& g, const edge_stats* stats);

} // namespace parafork::detail

#pragma once
// The pipeline graph as data (internal): a tree of serial / parallel / broadcast / zip nodes
// over leaves (one leaf = one stage = one process), and the runtime that turns the tree into
// queues and processes, watches them, and tears everything down on the first failure.

#include <iosfwd>
#include <memory>
#include <string>
#include <sys/types.h>
#include <typeindex>
#include <vector>

#include <parafork/exec/pipeline/detail/context.hpp>

namespace parafork::detail {

// One stage instance. Built in the parent; run() executes in the stage's own process.
struct leaf_base {
    virtual ~leaf_base() = default;
    virtual void initialize() {}
    virtual void run(stage_context& ctx) = 0;
    // A library source whose items need no user code (iter over integers or a contiguous
    // container) may start in the parent: fill_in_parent puts while ctx.room(), returns true
    // once it has put its last; run() in a stage process goes on from there.
    virtual bool fills_in_parent() const noexcept { return false; }
    virtual bool fill_in_parent(stage_context&) { return false; }

    std::string name;
    std::type_index in = typeid(void);   // the type read from the input queue (void: a source)
    std::type_index out = typeid(void);  // the type put downstream (void: a sink)
    std::size_t inputs = 1;              // queues read (a zip's merger reads one per branch)
};

struct node_spec;

struct xcut_spec {
    std::string name;
    std::type_index type = typeid(void);
    std::shared_ptr<node_spec> root;
};

struct node_spec {
    enum class kind : std::uint8_t { leaf, serial, parallel, broadcast, zip };
    kind k = kind::leaf;
    std::vector<std::shared_ptr<node_spec>> kids;
    std::shared_ptr<leaf_base> leaf;  // the stage of a leaf; the merger of a zip
    bool ordered = false;             // parallel: restore input order downstream
    std::vector<xcut_spec> xcuts;     // side pipelines every stage below can put into
    std::type_index in = typeid(void), out = typeid(void);
};

std::shared_ptr<node_spec> make_leaf_node(std::shared_ptr<leaf_base> leaf);
std::shared_ptr<node_spec> make_group_node(node_spec::kind k,
                                           std::vector<std::shared_ptr<node_spec>> kids,
                                           std::type_index in, std::type_index out);

// A nested description: serial(iter, parallel(mul2, mul2), print).
std::string describe(const node_spec& n);

struct run_options {
    std::string name = "ez";
    bool watch = false;
    bool has_output = false;  // the parent reads the last queue (items/list)
    std::type_index out_type = typeid(void);
};

class runtime {
public:
    runtime(std::shared_ptr<node_spec> root, run_options opts);
    ~runtime();
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;

    // Wires queues (checking the graph: every queue has writers and readers, ordered groups
    // have one writer before and one reader after), runs every initialize(), forks.
    void start();
    // The next record of the final queue; false once the graph has finished. Sleeps while
    // waiting, watching every stage: the first failure stops the graph and throws here.
    bool next_output(record_view& r);
    // Waits for every stage (discarding output nobody asked for); throws the first failure.
    void join();
    // Ends every process now.
    void stop() noexcept;

    bool started() const noexcept;
    bool finished() const noexcept;
    std::vector<pid_t> pids() const;
    void print_layout(std::ostream& os, bool dot) const;

    struct impl;

private:
    std::unique_ptr<impl> p_;
};

// Demangled name of a type, without the parafork namespaces.
std::string type_name(std::type_index t);

} // namespace parafork::detail

// Flattening a pipeline graph into processes and queues, and describing it.
#include "plan.hpp"

#include <parafork/error.hpp>

#include <ostream>

namespace parafork::detail {

std::shared_ptr<node_spec> make_leaf_node(std::shared_ptr<leaf_base> leaf) {
    auto n = std::make_shared<node_spec>();
    n->k = node_spec::kind::leaf;
    n->in = leaf->in;
    n->out = leaf->out;
    n->leaf = std::move(leaf);
    return n;
}

std::shared_ptr<node_spec> make_group_node(node_spec::kind k, std::vector<std::shared_ptr<node_spec>> kids,
                                           std::type_index in, std::type_index out) {
    auto n = std::make_shared<node_spec>();
    n->k = k;
    n->kids = std::move(kids);
    n->in = in;
    n->out = out;
    return n;
}

std::string describe(const node_spec& n) {
    std::string s;
    auto group = [&](const char* what) {
        s = what;
        s += '(';
        for (std::size_t i = 0; i < n.kids.size(); ++i) {
            if (i) s += ", ";
            s += describe(*n.kids[i]);
        }
        s += ')';
    };
    switch (n.k) {
        case node_spec::kind::leaf: s = n.leaf->name; break;
        case node_spec::kind::serial: group("serial"); break;
        case node_spec::kind::parallel: group(n.ordered ? "parallel.ordered" : "parallel"); break;
        case node_spec::kind::broadcast: group("broadcast"); break;
        case node_spec::kind::zip: group("zip"); break;
    }
    for (auto& x : n.xcuts) s += ".xcut(" + x.name + ", " + describe(*x.root) + ")";
    return s;
}


namespace {

// The first group below n whose outputs leave in arrival order rather than input order.
const node_spec* unordered_group(const node_spec& n) {
    if (n.k == node_spec::kind::parallel && !n.ordered && n.kids.size() > 1) return &n;
    for (auto& k : n.kids)
        if (auto* u = unordered_group(*k)) return u;
    return nullptr;
}

} // namespace

int graph_plan::new_edge(std::type_index t) {
    edges.push_back({});
    edges.back().type = t;
    return static_cast<int>(edges.size() - 1);
}

void graph_plan::wire(const node_spec& n, int in, int out, std::vector<xcut_binding> xs) {
    for (auto& x : n.xcuts) {
        int e = new_edge(x.type);
        wire(*x.root, e, -1, {});
        xs.push_back({x.name, x.type, e});
    }
    switch (n.k) {
        case node_spec::kind::leaf: {
            proc_plan p;
            p.leaf = n.leaf;
            if (n.leaf->in != typeid(void)) {
                if (in < 0) throw error("parafork: stage " + n.leaf->name + " takes " + type_name(n.leaf->in) + " but nothing feeds it");
                if (edges[static_cast<std::size_t>(in)].type != n.leaf->in)
                    throw error("parafork: stage " + n.leaf->name + " takes " + type_name(n.leaf->in) +
                                " but is fed " + type_name(edges[static_cast<std::size_t>(in)].type));
                p.ins.push_back(in);
            }
            p.out = n.leaf->out == typeid(void) ? -1 : out;
            p.xcuts = xs;
            procs.push_back(std::move(p));
            break;
        }
        case node_spec::kind::serial: {
            int cur = in;
            for (std::size_t i = 0; i < n.kids.size(); ++i) {
                int e = i + 1 == n.kids.size() ? out : new_edge(n.kids[i]->out);
                wire(*n.kids[i], cur, e, xs);
                cur = e;
            }
            break;
        }
        case node_spec::kind::parallel: {
            if (n.ordered) {
                for (auto& k : n.kids)
                    if (k->k != node_spec::kind::leaf)
                        throw error("parafork: an ordered parallel group must consist of single stages");
                if (in < 0) throw error("parafork: an ordered parallel group needs a stage before it");
                if (out < 0) throw error("parafork: an ordered parallel group must put items");
                edges[static_cast<std::size_t>(in)].sequenced = true;
                edges[static_cast<std::size_t>(out)].reorder = true;
                edges[static_cast<std::size_t>(out)].order_source = in;
            }
            for (auto& k : n.kids) wire(*k, in, out, xs);
            break;
        }
        case node_spec::kind::broadcast: {
            for (auto& k : n.kids) {
                int e = -1;
                if (in >= 0) {
                    e = new_edge(edges[static_cast<std::size_t>(in)].type);
                    edges[static_cast<std::size_t>(in)].tee.push_back(e);
                }
                wire(*k, e, out, xs);
            }
            break;
        }
        case node_spec::kind::zip: {
            proc_plan merger;
            merger.leaf = n.leaf;
            merger.out = out;
            merger.xcuts = xs;
            // The merger pairs the i-th item of each branch: a branch whose workers compete
            // would pair items of different inputs, silently.
            for (auto& k : n.kids)
                if (auto* u = unordered_group(*k))
                    throw error("parafork: zip branch " + describe(*k) + " contains " + describe(*u) +
                                ", which loses input order; zip pairs items by position (use .ordered())");
            for (auto& k : n.kids) {
                int b = -1;
                if (in >= 0) {
                    b = new_edge(edges[static_cast<std::size_t>(in)].type);
                    edges[static_cast<std::size_t>(in)].tee.push_back(b);
                }
                int z = new_edge(k->out);
                wire(*k, b, z, xs);
                merger.ins.push_back(z);
            }
            procs.push_back(std::move(merger));
            break;
        }
    }
}

void graph_plan::physical(int e, std::vector<int>& out) const {
    auto& ed = edges[static_cast<std::size_t>(e)];
    if (ed.tee.empty()) out.push_back(e);
    for (int t : ed.tee) physical(t, out);
}

void graph_plan::plan() {
    if (planned) return;
    planned = true;
    if (opts.has_output) {
        out_edge = new_edge(opts.out_type);
        edges[static_cast<std::size_t>(out_edge)].parent_reads = true;
    }
    wire(*root, -1, out_edge, {});
    for (std::size_t i = 0; i < procs.size(); ++i) {
        auto& p = procs[i];
        if (p.out >= 0) physical(p.out, p.outs);
        for (auto& x : p.xcuts) {
            std::vector<int> ph;
            physical(x.edge, ph);
            if (ph.size() != 1) throw error("parafork: an xcut pipeline cannot begin with a broadcast");
            p.xcut_edges.push_back(ph[0]);
            edges[static_cast<std::size_t>(ph[0])].writers.push_back(i);
        }
        for (int e : p.outs) edges[static_cast<std::size_t>(e)].writers.push_back(i);
        for (int e : p.ins) edges[static_cast<std::size_t>(e)].readers.push_back(i);
    }
    for (std::size_t e = 0; e < edges.size(); ++e) {
        auto& ed = edges[e];
        std::string w, r;
        for (auto i : ed.writers) w += (w.empty() ? "" : ",") + procs[i].leaf->name;
        for (auto i : ed.readers) r += (r.empty() ? "" : ",") + procs[i].leaf->name;
        if (ed.parent_reads) r += (r.empty() ? "" : ",") + std::string("parent");
        ed.label = (w.empty() ? "?" : w) + " -> " + (r.empty() ? "?" : r);
        if (!ed.tee.empty()) {
            if (!ed.readers.empty())
                throw error("parafork: a broadcast cannot share its input with parallel workers");
            if (ed.reorder) throw error("parafork: an ordered group cannot feed a broadcast");
            continue;
        }
        std::size_t readers = ed.readers.size() + (ed.parent_reads ? 1 : 0);
        if (ed.writers.empty() && readers > 0) throw error("parafork: nothing writes the queue " + ed.label);
        if (!ed.writers.empty() && readers == 0) throw error("parafork: nothing reads the queue " + ed.label);
        if (ed.sequenced && ed.writers.size() != 1)
            throw error("parafork: an ordered parallel group needs exactly one stage before it (" + ed.label + ")");
        if (ed.reorder && readers != 1)
            throw error("parafork: an ordered parallel group needs exactly one stage after it (" + ed.label + ")");
        if (ed.reorder && ed.sequenced)
            throw error("parafork: two ordered groups in a row need a stage between them");
    }
}

bool graph_plan::used(std::size_t e) const {
    auto& ed = edges[e];
    return ed.tee.empty() && !ed.writers.empty();
}

void graph_plan::print_layout(std::ostream& os, bool dot) const {
    auto queue_name = [](std::size_t e) { return "q" + std::to_string(e); };
    if (dot) {
        os << "digraph \"" << opts.name << "\" {\n  rankdir=LR;\n";
        for (std::size_t i = 0; i < procs.size(); ++i)
            os << "  p" << i << " [shape=box,label=\"" << procs[i].leaf->name << "\"];\n";
        if (out_edge >= 0) os << "  parent [shape=oval,label=\"parent\"];\n";
        for (std::size_t e = 0; e < edges.size(); ++e) {
            auto& ed = edges[e];
            if (!ed.tee.empty() || ed.writers.empty()) continue;
            std::vector<std::string> to;
            for (auto r : ed.readers) to.push_back("p" + std::to_string(r));
            if (ed.parent_reads) to.push_back("parent");
            for (auto w : ed.writers)
                for (auto& t : to)
                    os << "  p" << w << " -> " << t << " [label=\"" << queue_name(e) << " "
                       << type_name(ed.type) << "\"];\n";
        }
        os << "}\n";
        return;
    }
    std::size_t nq = 0;
    for (std::size_t e = 0; e < edges.size(); ++e)
        if (edges[e].tee.empty() && !edges[e].writers.empty()) ++nq;
    os << opts.name << ": " << describe(*root) << "\n";
    os << "  " << procs.size() << " processes, " << nq << " queues\n";
    for (std::size_t i = 0; i < procs.size(); ++i) {
        auto& p = procs[i];
        os << "  [" << i << "] " << p.leaf->name;
        if (!p.ins.empty()) {
            os << "  reads";
            for (int e : p.ins) os << ' ' << queue_name(static_cast<std::size_t>(e));
        }
        if (!p.outs.empty()) {
            os << "  puts";
            for (int e : p.outs) os << ' ' << queue_name(static_cast<std::size_t>(e));
        }
        for (std::size_t x = 0; x < p.xcuts.size(); ++x)
            os << "  xcut " << p.xcuts[x].name << "=" << queue_name(static_cast<std::size_t>(p.xcut_edges[x]));
        os << "\n";
    }
    for (std::size_t e = 0; e < edges.size(); ++e) {
        auto& ed = edges[e];
        if (!ed.tee.empty() || ed.writers.empty()) continue;
        os << "  " << queue_name(e) << ": " << ed.label << " (" << type_name(ed.type)
           << (ed.sequenced ? ", numbered" : "") << (ed.reorder ? ", reordered" : "") << ")\n";
    }
}

} // namespace parafork::detail

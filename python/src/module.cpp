// _parafork: parafork's engines for Python. Each part binds its functions (common.hpp); the
// pure-Python side (python/parafork/) prepares calls and turns failures into exceptions.

#include "common.hpp"

namespace ppy = parafork_python;

PYBIND11_MODULE(_parafork, m) {
    m.doc() = "parafork's engines (see the parafork package)";
    ppy::install_fork_hooks();
    m.def("_init", [](pybind11::object core) {
        if (!ppy::h) ppy::h = new ppy::helpers;
        auto* h = ppy::h;
        h->call = core.attr("_call");
        h->encode_failure = core.attr("_encode_failure");
        auto pickle = pybind11::module_::import("pickle");
        h->dumps = pickle.attr("dumps");
        h->loads = pickle.attr("loads");
        h->task_failure = core.attr("_task_failure");
        h->remote_error = core.attr("_remote_error");
        h->worker_died = core.attr("_worker_died");
        h->task_timeout = core.attr("_task_timeout");
        h->error = core.attr("Error");
    });
    m.def("default_jobs", [] { return parafork::default_jobs(); },
          "The jobs rule: PARAFORK_JOBS, else PP_JOBS, else the CPUs this process may use.");
    ppy::bind_map(m);
    ppy::bind_snakefish(m);
    ppy::bind_pool(m);
    ppy::bind_process(m);
    ppy::bind_dashboard(m);
}

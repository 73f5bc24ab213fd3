// _parafork: parafork's engines for Python. The pure-Python side is python/parafork/.

#include <pybind11/pybind11.h>

#include <parafork/parafork.hpp>

namespace py = pybind11;
namespace pf = parafork;

PYBIND11_MODULE(_parafork, m) {
    m.doc() = "parafork's engines (see the parafork package)";
    m.def("default_jobs", [] { return pf::default_jobs(); },
          "The jobs rule: PARAFORK_JOBS, else PP_JOBS, else the CPUs this process may use.");
}

#pragma once
// Deprecated include path, kept for one release. The engine itself is private to the library
// now; what it offers is the executor seam, <parafork/exec/core/executor.hpp>, and the worker's
// and parent's sides of its answers (exec/core/detail/worker.hpp, results.hpp).
#include <parafork/exec/core/detail/results.hpp>
#include <parafork/exec/core/detail/worker.hpp>
#include <parafork/exec/core/executor.hpp>

#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/coproc/proc_pool.hpp>.
#include <parafork/exec/coproc/proc_pool.hpp>

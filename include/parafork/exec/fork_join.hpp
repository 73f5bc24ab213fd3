#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/coproc/fork_join.hpp>.
#include <parafork/exec/coproc/fork_join.hpp>

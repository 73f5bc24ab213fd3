#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/pipeline/detail/types.hpp>.
#include <parafork/exec/pipeline/detail/types.hpp>

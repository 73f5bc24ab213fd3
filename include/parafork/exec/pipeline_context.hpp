#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/pipeline/detail/context.hpp>.
#include <parafork/exec/pipeline/detail/context.hpp>

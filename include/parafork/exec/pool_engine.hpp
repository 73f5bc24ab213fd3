#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/core/detail/engine.hpp>.
#include <parafork/exec/core/detail/engine.hpp>

#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/core/options.hpp>.
#include <parafork/exec/core/options.hpp>

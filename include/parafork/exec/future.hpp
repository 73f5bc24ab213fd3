#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/core/future.hpp>.
#include <parafork/exec/core/future.hpp>

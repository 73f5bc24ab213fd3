#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/process/detail/base.hpp>.
#include <parafork/exec/process/detail/base.hpp>

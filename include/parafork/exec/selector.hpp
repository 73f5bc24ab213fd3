#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/process/selector.hpp>.
#include <parafork/exec/process/selector.hpp>

#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/process/process.hpp>.
#include <parafork/exec/process/process.hpp>

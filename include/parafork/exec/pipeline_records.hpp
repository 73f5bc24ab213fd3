#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/pipeline/detail/records.hpp>.
#include <parafork/exec/pipeline/detail/records.hpp>

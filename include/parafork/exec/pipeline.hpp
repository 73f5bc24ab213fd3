#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/pipeline/pipeline.hpp>.
#include <parafork/exec/pipeline/pipeline.hpp>

#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/pipeline/stages.hpp>.
#include <parafork/exec/pipeline/stages.hpp>

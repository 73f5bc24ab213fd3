#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/core/zygote.hpp>.
#include <parafork/exec/core/zygote.hpp>

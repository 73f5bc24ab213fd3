#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/thread/generator.hpp>.
#include <parafork/exec/thread/generator.hpp>

#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/forked/map.hpp>.
#include <parafork/exec/forked/map.hpp>

#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/pool/pool.hpp>.
#include <parafork/exec/pool/pool.hpp>

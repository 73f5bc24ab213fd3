#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/forked/forked.hpp>.
#include <parafork/exec/forked/forked.hpp>

#pragma once
// Deprecated include path, kept for one release: include <parafork/exec/thread/thread.hpp>.
#include <parafork/exec/thread/thread.hpp>

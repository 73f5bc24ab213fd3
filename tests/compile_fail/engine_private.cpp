// The engine behind pool, forked and map is private to the library: the public headers reach it
// only through the executor seam (exec/core/executor.hpp). Built by ctest with one of the
// macros below; each failing case must stop at the name it reaches for (the test matches it),
// and the control case, which uses the seam, must compile.
#include <parafork/exec/core/future.hpp>
#include <parafork/exec/forked/forked.hpp>
#include <parafork/exec/forked/map.hpp>
#include <parafork/exec/pool/pool.hpp>

#include <cstddef>

#if defined(PARAFORK_CF_CONTROL)
using seam = parafork::detail::executor;
std::size_t size = sizeof(parafork::detail::job);
#elif defined(PARAFORK_CF_ENGINE)
using seam = parafork::detail::engine;
#elif defined(PARAFORK_CF_MSG_HEADER)
std::size_t size = sizeof(parafork::detail::msg_header);
#endif

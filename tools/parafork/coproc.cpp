#include "modes.hpp"

#include <cstdio>

namespace parafork::cli {

int run_coproc(const settings&) {
    std::fprintf(stderr, "parafork coproc: not available yet\n");
    return exit_internal;
}

} // namespace parafork::cli

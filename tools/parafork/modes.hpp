#pragma once
// The three subcommands; each returns the process exit status.

#include "settings.hpp"

namespace parafork::cli {

int run_pipe(const settings& s);    // parafork pipe
int run_each(const settings& s);    // parafork run
int run_coproc(const settings& s);  // parafork coproc

} // namespace parafork::cli

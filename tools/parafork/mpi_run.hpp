#pragma once
// `parafork run` over the ranks of an MPI job (mpirun -np N parafork run ...): rank 0 reads the
// input and makes the jobs, every rank runs them (-j at once each), rank 0 writes all the
// output, the joblog and the bar. See docs/scale-out.md, "The command line over ranks".

#include "settings.hpp"

namespace parafork::cli {

// True when a launcher (mpirun, srun) started this process as one of two or more ranks.
bool under_mpi_launcher();
// This process's rank by the launcher's environment (0 when it says none).
int launcher_rank();
// `parafork run` over the ranks; call it before any thread or job starts (it forks this
// rank's MPI process off). Without MPI support in this build: an error, exit status 2.
int run_each_mpi(const settings& s);

} // namespace parafork::cli

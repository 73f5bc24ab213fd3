#pragma once
#include <sys/types.h>

#include <parafork/sys/fd.hpp>

namespace parafork::mpi::detail {
// Becomes this rank's MPI process: relays between `sock` (the program, pid `program`) and the
// other ranks until the program ends, then finalizes MPI and exits with the program's status.
[[noreturn]] void run_mpi_process(sys::unique_fd sock, pid_t program);
} // namespace parafork::mpi::detail

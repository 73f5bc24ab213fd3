#pragma once
// parafork over MPI ranks: link parafork::mpi. See docs/scale-out.md.
#include <parafork/mpi/forked.hpp>
#include <parafork/mpi/pool.hpp>
#include <parafork/mpi/world.hpp>

"""pi by the Leibniz series over the ranks of an MPI job (pi.py, spread with parafork.mpi).

    mpirun -np 3 python3 mpi_pi.py      # every rank runs this script; rank 0 prints
    python3 mpi_pi.py                   # without a launcher: one rank, local workers

Every rank builds the same list of batch starts; rank 0 hands out index ranges of it, each
rank's workers sum their batches from their own copy, and only the sums travel to rank 0.
"""

import math
import sys

import parafork.mpi as pm

world = pm.init()  # first: forks this rank's program away from MPI


def pi(n, batch):
    def partial(start):  # a closure: it reaches the workers by fork, never pickled
        return sum((0.5 - k % 2) * 8.0 / (2 * k + 1) for k in range(start, min(start + batch, n)))

    sums = pm.map(partial, range(0, n, batch))
    return None if sums is None else sum(sums)  # None on the other ranks


if __name__ == "__main__":
    value = pi(4_000_000, 50_000)
    if world.root:
        print(f"{value:.15f} over {world.size} ranks")
        ok = abs(value - math.pi) < 1e-5  # the series' error after n terms is about 2/n
        if not ok:
            print("mpi_pi.py: pi is off", file=sys.stderr)
        sys.exit(0 if ok else 1)

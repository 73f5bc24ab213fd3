# mpi4py.futures.MPIPoolExecutor on the same tiny tasks as bench_mpi (x -> 2x+1), for tasks/s.
#   mpirun --oversubscribe -np 3 /usr/bin/python3 -m mpi4py.futures bench/mpi/mpi4py_peer.py [tasks]
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def tiny(x):
    return 2 * x + 1


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    with MPIPoolExecutor() as ex:
        # Its default chunksize (1) is slow: a tenth of the tasks is enough to measure it.
        for chunksize, m in ((1, n // 10), (1000, n)):
            t0 = time.perf_counter()
            out = list(ex.map(tiny, range(m), chunksize=chunksize))
            dt = time.perf_counter() - t0
            assert out[-1] == 2 * (m - 1) + 1
            print(f"mpi4py MPIPoolExecutor chunksize {chunksize:5d}: {m / dt:10.0f} tasks/s ({m} tasks)")

"""parafork.mpi against the local parafork.map and mpi4py.futures.MPIPoolExecutor.

    export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
    PYTHONPATH=build/release/python mpirun -np 3 /usr/bin/python3 bench/python/bench_mpi.py
    PYTHONPATH=build/release/python mpirun -np 3 /usr/bin/python3 -m mpi4py.futures \\
        bench/python/bench_mpi.py --futures

(add --allow-run-as-root --oversubscribe as the machine needs). The first prints, on rank 0:
tiny tasks (x -> 2x+1) per second over the ranks and locally, the time of a call of 2 items,
600 tasks of 1 ms, and each rank's MPI process CPU while idle. The second times the same tiny
tasks through MPIPoolExecutor (rank 0 submits, the other ranks serve), at chunksize 1 and 1000.
Best of 3; the load average is printed beside the figures.
"""

import os
import sys
import time

N = 1_000_000


def f(x):
    return 2 * x + 1


def sleep_1ms(x):
    time.sleep(0.001)
    return x


def best(fn, k=3):
    times = []
    for _ in range(k):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def load():
    return os.getloadavg()[0]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as fh:
        v = fh.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def parafork_mpi():
    import parafork as pf
    import parafork.mpi as pm

    world = pm.init()
    mpi_process = os.getppid()
    t_mpi = best(lambda: pm.map(f, range(N)))
    t_local = best(lambda: pf.map(f, range(N))) if world.root else None
    t_small = best(lambda: pm.map(f, range(2)), 5)
    t_small_local = best(lambda: pf.map(f, range(2)), 5) if world.root else None
    t_sleep = best(lambda: pm.map(sleep_1ms, range(600)), 2)
    if world.root:
        print(f"load {load():.1f}; {world.size} ranks", flush=True)
        print(f"tiny tasks: parafork.mpi.map {N / t_mpi / 1e6:.2f} M/s; local parafork.map "
              f"{N / t_local / 1e6:.2f} M/s", flush=True)
        print(f"a call of 2 items: {t_small * 1e3:.1f} ms (local {t_small_local * 1e3:.1f} ms)", flush=True)
        print(f"600 tasks of 1 ms: {t_sleep:.3f} s", flush=True)
    time.sleep(1.5)  # an MPI process polls every millisecond for a second after its last message
    c0 = cpu_seconds(mpi_process)
    time.sleep(4)
    c1 = cpu_seconds(mpi_process)
    print(f"rank {world.rank}: MPI process CPU while idle {(c1 - c0) / 4 * 100:.1f}%", flush=True)


def futures():
    from mpi4py.futures import MPIPoolExecutor

    with MPIPoolExecutor() as ex:
        n1 = 20_000
        t1 = best(lambda: list(ex.map(f, range(n1))))
        t2 = best(lambda: list(ex.map(f, range(N), chunksize=1000)))
    print(f"load {load():.1f}; MPIPoolExecutor tiny tasks: chunksize 1 {n1 / t1:,.0f}/s; chunksize 1000 "
          f"{N / t2 / 1e6:.2f} M/s", flush=True)


if __name__ == "__main__":
    futures() if "--futures" in sys.argv else parafork_mpi()

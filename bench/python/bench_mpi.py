"""parafork.mpi against the local parafork.map and mpi4py.futures.MPIPoolExecutor.

    export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none
    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/bench_mpi.py --both [mpirun args]

runs both halves one after the other (same load), as these two would:

    PYTHONPATH=build/release/python mpirun -np 3 /usr/bin/python3 bench/python/bench_mpi.py
    PYTHONPATH=build/release/python mpirun -np 3 /usr/bin/python3 -m mpi4py.futures \\
        bench/python/bench_mpi.py --futures

(add --allow-run-as-root --oversubscribe as the machine needs). The first prints, on rank 0:
tiny tasks (x -> 2x+1) per second over the ranks (map, imap, imap_unordered) and locally, the
time of a call of 2 items, 600 tasks of 1 ms, the same tiny tasks through parafork.mpi.Executor
(submit one by one; map at chunksize 1 and 1000), and each rank's MPI process CPU while idle.
The second times the same Executor rows through MPIPoolExecutor (rank 0 submits, the other
ranks serve). Best of 3; the load average is printed beside the figures.
"""

import os
import subprocess
import sys
import time

N = 1_000_000
N_ONE = 20_000  # tasks sent one by one


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
    t_imap = best(lambda: list(pm.imap(f, range(N))))
    t_unordered = best(lambda: list(pm.imap_unordered(f, range(N))))
    with pm.Executor() as ex:
        if ex is not None:
            t_submit, t_ex1, t_ex1000 = executor_rows(ex)
    if world.root:
        print(f"load {load():.1f}; {world.size} ranks", flush=True)
        print(f"tiny tasks: parafork.mpi.map {N / t_mpi / 1e6:.2f} M/s; local parafork.map "
              f"{N / t_local / 1e6:.2f} M/s", flush=True)
        print(f"a call of 2 items: {t_small * 1e3:.1f} ms (local {t_small_local * 1e3:.1f} ms)", flush=True)
        print(f"600 tasks of 1 ms: {t_sleep:.3f} s", flush=True)
        print(f"tiny tasks: parafork.mpi.imap {N / t_imap / 1e6:.2f} M/s; imap_unordered "
              f"{N / t_unordered / 1e6:.2f} M/s", flush=True)
        print(f"parafork.mpi.Executor tiny tasks: submit {N_ONE / t_submit:,.0f}/s; map chunksize 1 "
              f"{N_ONE / t_ex1:,.0f}/s; chunksize 1000 {N / t_ex1000 / 1e6:.2f} M/s", flush=True)
    time.sleep(1.5)  # an MPI process polls every millisecond for a second after its last message
    c0 = cpu_seconds(mpi_process)
    time.sleep(4)
    c1 = cpu_seconds(mpi_process)
    print(f"rank {world.rank}: MPI process CPU while idle {(c1 - c0) / 4 * 100:.1f}%", flush=True)


def executor_rows(ex):
    """The same rows for either executor: submit one by one, map at chunksize 1 and 1000."""
    t_submit = best(lambda: [fut.result() for fut in [ex.submit(f, x) for x in range(N_ONE)]])
    t_ex1 = best(lambda: list(ex.map(f, range(N_ONE))))
    t_ex1000 = best(lambda: list(ex.map(f, range(N), chunksize=1000)))
    return t_submit, t_ex1, t_ex1000


def futures():
    from mpi4py.futures import MPIPoolExecutor

    with MPIPoolExecutor() as ex:
        t_submit, t_ex1, t_ex1000 = executor_rows(ex)
    print(f"load {load():.1f}; MPIPoolExecutor tiny tasks: submit {N_ONE / t_submit:,.0f}/s; map chunksize 1 "
          f"{N_ONE / t_ex1:,.0f}/s; chunksize 1000 {N / t_ex1000 / 1e6:.2f} M/s", flush=True)


def both(mpirun_args):
    """Both halves under mpirun, one after the other."""
    me, py = os.path.abspath(__file__), sys.executable
    for cmd in ([py, me], [py, "-m", "mpi4py.futures", me, "--futures"]):
        subprocess.run(["mpirun", *mpirun_args, "-np", "3", *cmd], check=True, timeout=900)


if __name__ == "__main__":
    if "--both" in sys.argv:
        both(sys.argv[sys.argv.index("--both") + 1:])
    elif "--futures" in sys.argv:
        futures()
    else:
        parafork_mpi()

"""parafork.Pool against multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/bench_pool.py [--quick]

1. apply round trip: pool.apply(f, (i,)) (executor.submit(f, i).result()) for a trivial f,
   one at a time; the median of several runs of many calls, per call, the runs of every pool
   alternating.
2. idle worker memory: the PSS of each worker of an idle 2-worker pool (after one task each),
   from /proc/<pid>/smaps_rollup; each pool is made in a fresh interpreter so that none sees
   another's memory.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

import parafork as pf


def ident(x):
    return x


def pid_of(_):
    time.sleep(0.05)  # long enough that both workers take one
    return os.getpid()


def round_trips(n, runs):
    # Every pool made first, then alternating runs of each, so that a burst of load on the
    # shared machine hits every entry alike.
    ctx = multiprocessing.get_context("fork")
    with pf.Pool(2) as p, ctx.Pool(2) as mp, concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        calls = {
            "parafork.Pool.apply": lambda i: p.apply(ident, (i,)),
            "parafork.Pool.apply_async().get()": lambda i: p.apply_async(ident, (i,)).get(),
            "multiprocessing.Pool.apply": lambda i: mp.apply(ident, (i,)),
            "ProcessPoolExecutor.submit().result()": lambda i: ex.submit(ident, i).result(),
        }
        for call in calls.values():
            for i in range(min(200, n)):
                call(i)
        samples = {name: [] for name in calls}
        for _ in range(runs):
            for name, call in calls.items():
                t = time.perf_counter()
                for i in range(n):
                    call(i)
                samples[name].append((time.perf_counter() - t) / n * 1e6)
    return {name: (statistics.median(s), min(s), max(s)) for name, s in samples.items()}


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def idle_pss(kind):
    # In a fresh interpreter: the workers' PSS once idle.
    if kind == "parafork":
        p = pf.Pool(2)
    elif kind == "multiprocessing":
        p = multiprocessing.get_context("fork").Pool(2)
    else:
        p = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    if kind == "futures":
        pids = set(f.result() for f in [p.submit(pid_of, i) for i in range(8)])
    else:
        pids = set(p.map(pid_of, range(8), chunksize=1))
    time.sleep(0.3)
    values = [pss_kib(pid) for pid in pids]
    if kind == "futures":
        p.shutdown()
    else:
        p.terminate()
        p.join()
    return values


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pss", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.pss:
        print(json.dumps(idle_pss(a.pss)))
        return
    n, runs = (500, 3) if a.quick else (5000, 7)
    print(f"# load average {os.getloadavg()[0]:.1f} before")
    print(f"# apply round trip, {runs} runs of {n} calls: median [min-max] us per call")
    rt = round_trips(n, runs)
    for name, (med, lo, hi) in rt.items():
        print(f"{name:40s} {med:8.1f} [{lo:.1f}-{hi:.1f}]")
    base = rt["multiprocessing.Pool.apply"][0]
    print(f"speed-up of parafork.Pool.apply over multiprocessing.Pool.apply: "
          f"{base / rt['parafork.Pool.apply'][0]:.1f}x; load average {os.getloadavg()[0]:.1f} after")
    print("# idle worker PSS, KiB per worker (2 workers, fresh interpreter each)")
    for kind in ("parafork", "multiprocessing", "futures"):
        r = subprocess.run([sys.executable, __file__, "--pss", kind], capture_output=True, text=True,
                           check=True, env=dict(os.environ))
        values = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{kind:40s} {' '.join(str(v) for v in values)}")


if __name__ == "__main__":
    main()

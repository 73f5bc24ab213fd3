"""parafork.map against its peers: a trivial function over 10**6 ints, and one 256 MiB numpy
result. Run with the interpreter the module was built for, e.g.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/bench_map.py

Peers: multiprocessing.Pool.map, concurrent.futures.ProcessPoolExecutor.map (chunksize as
multiprocessing picks it), joblib with the loky backend (batch_size="auto"). Every figure is the
best of --repeat runs, pool start-up included (parafork forks at the call, so that is fair).
"""

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import platform
import sys
import time

import numpy as np

import parafork as pf

N = 10**6
BIG = 256 << 20


def inc(x):
    return x + 1


_big = None


def big_result(_):
    return _big


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def mp_chunk(n, jobs):
    chunk, extra = divmod(n, jobs * 4)
    return chunk + 1 if extra else chunk


def main():
    global _big
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=pf.default_jobs())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-joblib", action="store_true")
    ap.add_argument("--no-big", action="store_true", help="skip the 256 MiB result")
    a = ap.parse_args()
    jobs = a.jobs
    expect = list(range(1, N + 1))
    ctx = mp.get_context("fork")
    rows = []

    def row(name, what, seconds, out, check, nbytes=None):
        assert check(out), f"{name}: wrong result"
        rate = f"{nbytes / seconds / 1e9:.2f} GB/s" if nbytes else f"{N / seconds / 1e6:.2f} M items/s"
        rows.append((what, name, seconds, rate))

    def rounds(what, runs, check, nbytes=None):
        # Alternating rounds, so that a burst of load on the machine hits every entry alike.
        times = {name: [] for name, _ in runs}
        for _ in range(a.repeat):
            for name, fn in runs:
                t0 = time.perf_counter()
                out = fn()
                times[name].append(time.perf_counter() - t0)
                assert check(out), f"{name}: wrong result"
                del out
        for name, _ in runs:
            row(name, what, min(times[name]), None, lambda out: True, nbytes)

    exact = lambda out: out == expect

    def mp_map():
        with ctx.Pool(jobs) as p:
            return p.map(inc, range(N))

    def cf_map():
        with cf.ProcessPoolExecutor(jobs, mp_context=ctx) as ex:
            return list(ex.map(inc, range(N), chunksize=mp_chunk(N, jobs)))

    rounds("map 10^6 ints", [("parafork.map", lambda: pf.map(lambda x: x + 1, range(N), jobs=jobs)),
                             ("multiprocessing.Pool.map", mp_map),
                             ("ProcessPoolExecutor.map", cf_map)], exact)

    load_before = os.getloadavg()[0]
    # One 256 MiB result: made before the call, so the workers have it by fork and the figure is
    # the transfer (pickle, copy, unpickle), not the making.
    _big = np.arange(BIG // 8, dtype=np.int64) if not a.no_big else None
    same = lambda out: len(out) == 1 and np.array_equal(out[0], _big)
    if a.no_big:
        big_runs = []
    else:
        big_runs = [("parafork.map", lambda: pf.map(big_result, range(1), jobs=1))]

    def mp_big():
        with ctx.Pool(1) as p:
            return p.map(big_result, range(1))

    def cf_big():
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            return list(ex.map(big_result, range(1)))

    if not a.no_big:
        big_runs += [("multiprocessing.Pool.map", mp_big), ("ProcessPoolExecutor.map", cf_big)]
    if big_runs:
        rounds("256 MiB numpy result", big_runs, same, BIG)

    # Last: loky leaves threads behind, and forking a threaded process is what parafork warns of.
    if not a.no_joblib:
        import joblib

        def jl_map():
            return joblib.Parallel(n_jobs=jobs, backend="loky")(joblib.delayed(inc)(x) for x in range(N))
        t, out = best(jl_map, 1)  # tens of seconds per run: once
        row("joblib (loky)", "map 10^6 ints", t, out, exact)

    print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"jobs={jobs}, best of {a.repeat}; load average {load_before:.1f} after the maps of "
          f"10^6 ints, {os.getloadavg()[0]:.1f} at the end")
    print(f"{'workload':<22} {'implementation':<26} {'seconds':>9}  rate")
    for what, name, seconds, rate in sorted(rows, key=lambda r: r[0], reverse=True):
        print(f"{what:<22} {name:<26} {seconds:9.3f}  {rate}")
    ints = {name: s for what, name, s, _ in rows if what.startswith("map")}
    peer = min(s for name, s in ints.items() if name != "parafork.map")
    print(f"parafork.map vs the best peer on 10^6 ints: {peer / ints['parafork.map']:.1f}x")


if __name__ == "__main__":
    sys.exit(main())

"""parafork.map against its peers: a trivial function over 10**6 ints, and one 256 MiB numpy
result. Run with the interpreter the module was built for, e.g.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/bench_map.py

Peers: multiprocessing.Pool.map, concurrent.futures.ProcessPoolExecutor.map (chunksize as
multiprocessing picks it), joblib with the loky backend (batch_size="auto"). Every figure is the
best of --repeat runs, pool start-up included (parafork forks at the call, so that is fair).

The same rounds time the floor of a map of 10^6 trivial calls on this machine: the serial loop
and the caller making the 10^6 result ints (which no transfer avoids), spread over the CPUs,
plus forking and reaping the workers; the last lines put parafork and the best peer against it.
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

    def rounds(what, runs, check, nbytes=None, extra=()):
        # Alternating rounds, so that a burst of load on the machine hits every entry alike.
        # `extra`: (name, fn, check) timed in the same rounds but not rows (the floor's parts).
        times = {name: [] for name, _ in runs}
        times.update((name, []) for name, _, _ in extra)
        for _ in range(a.repeat):
            for name, fn, ok in [(n, f, check) for n, f in runs] + list(extra):
                t0 = time.perf_counter()
                out = fn()
                times[name].append(time.perf_counter() - t0)
                assert ok(out), f"{name}: wrong result"
                del out
        for name, _ in runs:
            row(name, what, min(times[name]), None, lambda out: True, nbytes)
        return {name: min(times[name]) for name, _, _ in extra}

    exact = lambda out: out == expect

    def mp_map():
        with ctx.Pool(jobs) as p:
            return p.map(inc, range(N))

    def cf_map():
        with cf.ProcessPoolExecutor(jobs, mp_context=ctx) as ex:
            return list(ex.map(inc, range(N), chunksize=mp_chunk(N, jobs)))

    # The floor of any map on this machine, its parts timed in the same rounds: the calls
    # themselves (the serial loop, shared by the workers), the caller making 10^6 int objects
    # and their list (no transfer avoids that), and forking and reaping the workers.
    floor_parts = [("serial loop", lambda: list(map(inc, range(N))), exact),
                   ("caller's list", lambda: list(range(1, N + 1)), exact),
                   ("fork and reap", lambda: pf.map(inc, range(jobs), jobs=jobs),
                    lambda out: out == list(range(1, jobs + 1)))]
    floor = rounds("map 10^6 ints", [("parafork.map", lambda: pf.map(lambda x: x + 1, range(N), jobs=jobs)),
                                     ("multiprocessing.Pool.map", mp_map),
                                     ("ProcessPoolExecutor.map", cf_map)], exact, extra=floor_parts)

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
    peers = {name: s for name, s in ints.items() if name != "parafork.map"}
    best_peer = min(peers, key=peers.get)
    peer, mine = peers[best_peer], ints["parafork.map"]
    print(f"parafork.map vs the best peer on 10^6 ints: {peer / mine:.1f}x")
    # All the CPU work spread perfectly over the CPUs the workers get, plus the fork: no map
    # can beat it. Without overlap (the caller's ints made after the calls) it would be more.
    serial, caller, fork = floor["serial loop"], floor["caller's list"], floor["fork and reap"]
    cpus = min(jobs, len(os.sched_getaffinity(0)))
    low = (serial + caller) / cpus + fork
    print(f"floor on {cpus} CPUs: (serial loop {serial:.4f} + caller's list {caller:.4f}) / {cpus}"
          f" + fork and reap {fork:.4f} = {low:.4f} s (without overlap: "
          f"{serial / cpus + caller + fork:.4f} s)")
    print(f"parafork.map {mine:.4f} s = {mine / low:.2f}x the floor; {best_peer} {peer:.4f} s = "
          f"{peer / low:.2f}x the floor; 5x the best peer would be {peer / 5:.4f} s"
          f"{' (below the floor: out of reach)' if peer / 5 < low else ''}")


if __name__ == "__main__":
    sys.exit(main())

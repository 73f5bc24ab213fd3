"""Where the time of parafork.map over 10**6 trivial calls goes, by CPU time rather than wall
time (which a busy machine makes meaningless): getrusage of the caller and of its reaped
children around each call, and their page faults, beside the same for the parts of the floor
(the serial loop, the caller making the 10**6 result ints, forking and reaping the workers).

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/map_cpu.py [--rounds 7]

Every figure is the median of the rounds (entries alternate within a round), in milliseconds.
"""

import argparse
import os
import resource
import statistics
import time

import parafork as pf

N = 10**6


def inc(x):
    return x + 1


def measure(fn):
    self, kids = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
    a, b = resource.getrusage(self), resource.getrusage(kids)
    t = time.perf_counter()
    out = fn()
    t = time.perf_counter() - t
    c, d = resource.getrusage(self), resource.getrusage(kids)
    del out
    return (t * 1e3, (c.ru_utime - a.ru_utime) * 1e3, (c.ru_stime - a.ru_stime) * 1e3,
            (d.ru_utime - b.ru_utime) * 1e3, (d.ru_stime - b.ru_stime) * 1e3,
            c.ru_minflt - a.ru_minflt, d.ru_minflt - b.ru_minflt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    held = list(range(1, N + 1))  # the caller holds as much as bench_map.py's does
    cases = [("parafork.map", lambda: pf.map(inc, range(N), jobs=a.jobs)),
             ("serial loop", lambda: list(map(inc, range(N)))),
             ("caller's list", lambda: list(range(1, N + 1))),
             ("fork and reap", lambda: pf.map(inc, range(a.jobs), jobs=a.jobs))]
    got = {name: [] for name, _ in cases}
    load = os.getloadavg()[0]
    for _ in range(a.rounds):
        for name, fn in cases:
            got[name].append(measure(fn))
    print(f"# load average {load:.1f} before, {os.getloadavg()[0]:.1f} after; jobs={a.jobs}; "
          f"medians of {a.rounds} rounds; ms and page faults per call")
    print(f"{'':14} {'wall':>6} {'caller user':>11} {'sys':>5} {'workers user':>12} {'sys':>5} "
          f"{'all CPU':>7} {'faults':>6} {'workers':>7}")
    for name, rows in got.items():
        m = [statistics.median(r[k] for r in rows) for k in range(7)]
        print(f"{name:14} {m[0]:6.1f} {m[1]:11.1f} {m[2]:5.1f} {m[3]:12.1f} {m[4]:5.1f} "
              f"{sum(m[1:5]):7.1f} {m[5]:6.0f} {m[6]:7.0f}")
    assert held[-1] == N


if __name__ == "__main__":
    main()

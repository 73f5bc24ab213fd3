"""ez pipelines: source -> add1 -> two parallel mul2 -> collect, trivial ints.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/bench_ez.py [--n 1000000]

Rows: stages as plain functions (ez's batch path), as Stage classes (one process() and one
put() call per item), as mpyx F classes through parafork.mpyx, and the same graph on
multiprocessing queues, one item per put (how mpyx moves items; mpyx itself measured 6,154
items/s). Every figure is the best of --repeat runs, process start-up included; the load
average and the caller's CPU time (it unpickles and collects) are printed with it.
"""

import argparse
import multiprocessing as mp
import os
import platform
import resource
import time

import parafork as pf
from parafork import mpyx


def add1(x):
    return x + 1


def mul2(x):
    return x * 2


class Add1(pf.Stage):
    def process(self, x):
        self.put(x + 1)


class Mul2(pf.Stage):
    def process(self, x):
        self.put(x * 2)


class FAdd1(mpyx.F):
    def do(self, x):
        self.put(x + 1)


class FMul2(mpyx.F):
    def do(self, x):
        self.put(x * 2)


def ez_functions(n):
    return pf.ez(pf.Iter(range(n)), add1, (mul2, mul2)).list()


def ez_classes(n):
    return pf.ez(pf.Iter(range(n)), Add1(), (Mul2(), Mul2())).list()


def mpyx_classes(n):
    return mpyx.EZ(mpyx.Iter(range(n)), FAdd1(), (FMul2(), FMul2())).list()


_END = None


def _mp_stage(fn, qin, qout, ends_in, ends_out):
    seen = 0
    while True:
        x = qin.get()
        if x is _END:
            seen += 1
            if seen == ends_in:
                break
            continue
        qout.put(fn(x))
    for _ in range(ends_out):
        qout.put(_END)


def mp_queues(n):
    q1, q2, q3 = mp.Queue(1024), mp.Queue(1024), mp.Queue(1024)
    procs = [mp.Process(target=_mp_stage, args=(add1, q1, q2, 1, 2))]
    procs += [mp.Process(target=_mp_stage, args=(mul2, q2, q3, 1, 1)) for _ in range(2)]
    for p in procs:
        p.start()
    src = mp.Process(target=lambda: [q1.put(i) for i in range(n)] + [q1.put(_END)])
    src.start()
    out, ends = [], 0
    while ends < 2:
        x = q3.get()
        if x is _END:
            ends += 1
        else:
            out.append(x)
    for p in procs + [src]:
        p.join()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10**6)
    ap.add_argument("--peer-n", type=int, default=10**5)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    mp.set_start_method("fork")
    expect = lambda n: sum((x + 1) * 2 for x in range(n))  # noqa: E731
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"best of {a.repeat}; load average {os.getloadavg()[0]:.2f} at the start")
    print(f"{'implementation':<34} {'items':>9} {'seconds':>8} {'items/s':>12} {'caller CPU s':>13}")
    for name, fn, n in (("pf.ez, functions", ez_functions, a.n), ("pf.ez, Stage classes", ez_classes, a.n),
                        ("parafork.mpyx, F classes", mpyx_classes, a.n),
                        ("multiprocessing.Queue, per item", mp_queues, a.peer_n)):
        best, own = None, 0.0
        for _ in range(a.repeat):
            s0 = resource.getrusage(resource.RUSAGE_SELF)
            t = time.perf_counter()
            out = fn(n)
            dt = time.perf_counter() - t
            s1 = resource.getrusage(resource.RUSAGE_SELF)
            assert len(out) == n and sum(out) == expect(n), name
            if best is None or dt < best:
                best = dt
                own = (s1.ru_utime + s1.ru_stime) - (s0.ru_utime + s0.ru_stime)
        print(f"{name:<34} {n:>9} {best:8.3f} {n / best:12,.0f} {own:13.2f}")
    print(f"# load average {os.getloadavg()[0]:.2f} at the end (goal: 600,000 items/s from Python)")


if __name__ == "__main__":
    main()

"""A 256 MiB numpy result from a forked child: in a SharedArray made before the fork, and
pickled back through parafork.Thread, in the same run.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/bench_shared.py [--reps N]

The child fills the array and reads the clock (pf.timestamp, one clock for all processes); the
figure is the time from that reading to the caller holding the result: told "ready" through a
Channel, or after Thread.join() (which adds the child's exit and reaping). That is the cost of
handing the result over, not of computing it. The pickled peer returns the same array from a
Thread (pickle, the report pipe, unpickle).
"""

import argparse
import statistics

import numpy as np

import parafork as pf

SIZE = 256 << 20


def shared_once(a):
    def child():
        a.fill(1.0)
        return pf.timestamp()

    t = pf.Thread(child)
    t.start()
    done_in_child = t.result()
    got = pf.timestamp()
    assert a[-1] == 1.0
    a[-1] = 0.0
    return (got - done_in_child) / 1e9


def shared_notified_once(a, ch):
    def child():
        a.fill(2.0)
        ch.send(pf.timestamp())  # "the result is ready": a few bytes

    t = pf.Thread(child)
    t.start()
    done_in_child = ch.receive()
    got = pf.timestamp()
    assert a[-1] == 2.0
    a[-1] = 0.0
    t.join()
    return (got - done_in_child) / 1e9


def pickled_once():
    def child():
        x = np.ones(SIZE // 8)
        return pf.timestamp(), x

    t = pf.Thread(child)
    t.start()
    done_in_child, x = t.result()
    got = pf.timestamp()
    assert x.nbytes == SIZE and x[-1] == 1.0
    return (got - done_in_child) / 1e9


def report(name, xs, extra=""):
    xs = sorted(xs)
    print(f"{name}: median {statistics.median(xs) * 1e3:.3f} ms [{xs[0] * 1e3:.3f}–{xs[-1] * 1e3:.3f}]{extra}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    reps = ap.parse_args().reps
    a = pf.SharedArray(SIZE // 8, dtype="float64")
    a.fill(0.0)  # touched once, as a caller's buffer would be
    ch = pf.Channel()
    notified = [shared_notified_once(a, ch) for _ in range(reps)]
    report("256 MiB SharedArray result, ready told through a Channel", notified)
    shared = [shared_once(a) for _ in range(reps)]
    report("256 MiB SharedArray result, at Thread.join (child exit and reap included)", shared)
    pickled = [pickled_once() for _ in range(max(3, reps // 3))]
    gbps = SIZE / statistics.median(pickled) / 1e9
    report("256 MiB pickled result (Thread)", pickled, f", {gbps:.2f} GB/s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Python multiprocessing peers for bench/run: the workloads the goals' reference figures
come from, measured here on this machine. Prints one JSON object:
{"workload": ..., "value": ..., "metric": "real_time"|"items_per_second", "unit": ...}.

  apply      Pool(1).apply round trip (µs)            reference there: 107 µs
  imap1      Pool(2).imap(chunksize=1) (tasks/s)      reference there: 48,000 tasks/s
  map        Pool(2).map of a trivial function (items/s; snakefish did 4.8 M items/s)
  pipeline3  Iter -> add1 -> (mul2, mul2) -> collect on multiprocessing.Queue (items/s;
             56,000 items/s there, mpyx 6,154)
"""
import json
import multiprocessing as mp
import sys
import time

JOBS = 2


def ident(x):
    return x


def trivial(x):
    return 2 * x + 1


def apply_round_trip(n):
    with mp.Pool(1) as p:
        for i in range(200):  # warm up: the worker is started and its imports done
            p.apply(ident, (i,))
        t0 = time.perf_counter()
        for i in range(n):
            p.apply(ident, (i,))
        dt = time.perf_counter() - t0
    return {"value": dt / n * 1e6, "metric": "real_time", "unit": "us"}


def imap_chunksize1(n):
    with mp.Pool(JOBS) as p:
        list(p.imap(ident, range(200), chunksize=1))
        t0 = time.perf_counter()
        s = sum(p.imap(ident, range(n), chunksize=1))
        dt = time.perf_counter() - t0
    assert s == n * (n - 1) // 2
    return {"value": n / dt, "metric": "items_per_second", "unit": "items/s"}


def map_trivial(n):
    with mp.Pool(JOBS) as p:
        p.map(trivial, range(1000))
        t0 = time.perf_counter()
        r = p.map(trivial, range(n))
        dt = time.perf_counter() - t0
    assert len(r) == n
    return {"value": n / dt, "metric": "items_per_second", "unit": "items/s"}


DONE = None


def stage_add1(q_in, q_out, n_out):
    while (x := q_in.get()) is not DONE:
        q_out.put(x + 1)
    for _ in range(n_out):
        q_out.put(DONE)


def stage_mul2(q_in, q_out):
    while (x := q_in.get()) is not DONE:
        q_out.put(x * 2)
    q_out.put(DONE)


def stage_iter(n, q_out):
    for i in range(n):
        q_out.put(i)
    q_out.put(DONE)


def pipeline3(n):
    a, b, c = mp.Queue(1024), mp.Queue(1024), mp.Queue(1024)
    procs = [mp.Process(target=stage_iter, args=(n, a)), mp.Process(target=stage_add1, args=(a, b, 2))]
    procs += [mp.Process(target=stage_mul2, args=(b, c)) for _ in range(2)]
    for p in procs:
        p.start()
    t0 = time.perf_counter()  # the source is a process of its own; the parent collects
    total, ends = 0, 0
    while ends < 2:
        x = c.get()
        if x is DONE:
            ends += 1
        else:
            total += x
    dt = time.perf_counter() - t0
    for p in procs:
        p.join()
    assert total == 2 * (n * (n - 1) // 2 + n)
    return {"value": n / dt, "metric": "items_per_second", "unit": "items/s"}


WORKLOADS = {
    "apply": (apply_round_trip, 2000),
    "imap1": (imap_chunksize1, 20000),
    "map": (map_trivial, 2_000_000),
    "pipeline3": (pipeline3, 20000),
}

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in WORKLOADS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(WORKLOADS)}}} [n]")
    mp.set_start_method("fork")
    fn, n = WORKLOADS[sys.argv[1]]
    if len(sys.argv) == 3:
        n = int(sys.argv[2])
    out = fn(n)
    out.update(workload=sys.argv[1], n=n)
    print(json.dumps(out))

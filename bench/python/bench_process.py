"""parafork.Process against multiprocessing.Pipe: the message-process round trip and call rate.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/python/bench_process.py [--quick]

1. round trip: w.ask("f", i).result() for a trivial method, one at a time (the median of
   several runs, per ask); the peer is a multiprocessing.Process serving a Pipe (send, recv).
2. call throughput: w.call("f", i) fire-and-forget, then one ask to wait for them all.
The machine's load average is printed with the figures: spinning waits need a free CPU.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import time

import parafork as pf


class Echo(pf.Process):
    def f(self, x):
        return x

    def count(self, x):
        self.n = getattr(self, "n", 0) + 1

    def total(self):
        return getattr(self, "n", 0)


def serve_pipe(conn):
    while True:
        x = conn.recv()
        if x is None:
            return
        conn.send(x)


def median_per_op(run, n, runs):
    run(min(200, n))  # warm up
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        run(n)
        samples.append((time.perf_counter() - t) / n)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, runs = (2000, 3) if args.quick else (20000, 5)
    out = {"loadavg_before": os.getloadavg()[0], "cpus": os.cpu_count()}

    w = Echo()
    w.start()

    def asks(k):
        for i in range(k):
            w.ask("f", i).result()
    out["process_ask_round_trip_us"] = median_per_op(asks, n, runs) * 1e6

    def calls(k):
        before = w.ask("total").result()
        for i in range(k):
            w.call("count", i)
        assert w.ask("total").result() == before + k
    out["process_calls_per_s"] = 1 / median_per_op(calls, n * 10, runs)
    w.stop()

    a, b = multiprocessing.Pipe()
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=serve_pipe, args=(b,))
    p.start()

    def pipe_rt(k):
        for i in range(k):
            a.send(i)
            a.recv()
    out["multiprocessing_pipe_round_trip_us"] = median_per_op(pipe_rt, n, runs) * 1e6
    a.send(None)
    p.join()
    a.close()
    b.close()
    out["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

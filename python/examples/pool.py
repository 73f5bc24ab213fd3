"""A multiprocessing.Pool program run on parafork.Pool: only the import changed.

Also what multiprocessing cannot do: a worker killed mid-task fails that task with
parafork.WorkerDied (multiprocessing's pool waits forever), and the pool goes on.
"""

import os
import signal
import sys

import parafork as pf
from parafork import Pool  # was: from multiprocessing import Pool


def word_count(line):
    return len(line.split())


def init(prefix):
    global PREFIX
    PREFIX = prefix


def tag(x):
    return f"{PREFIX}{x}"


def die(_):
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    lines = [f"line {i} has " + "word " * (i % 5) for i in range(100)]
    done = []
    with Pool(2, initializer=init, initargs=("#",)) as pool:
        counts = pool.map(word_count, lines)
        total = pool.apply_async(sum, (counts,), callback=done.append).get(timeout=30)
        tags = list(pool.imap(tag, range(3)))
        squares = pool.map(lambda x: x * x, range(5))  # a lambda: sent by cloudpickle
        try:
            pool.apply(die, (0,))
            died = None
        except pf.WorkerDied as e:
            died = e.signal
        after = pool.apply(word_count, ("still here",))
    print(total, tags, squares, died, after)
    ok = (total == sum(3 + i % 5 for i in range(100)) and done == [total] and
          tags == ["#0", "#1", "#2"] and squares == [0, 1, 4, 9, 16] and
          died == signal.SIGKILL and after == 2)
    if not ok:
        print("pool.py: wrong answer", file=sys.stderr)
    sys.exit(0 if ok else 1)

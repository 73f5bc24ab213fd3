"""Collatz records over the ranks of an MPI job, streamed: parafork.mpi.imap and Executor.

    mpirun -np 3 python3 mpi_stream.py   # every rank runs this script; rank 0 prints
    python3 mpi_stream.py                # without a launcher: one rank, local workers

imap reads an endless generator of blocks on rank 0 only, a few blocks ahead of the ranks,
and stops them when the first block holding a long chain comes back (in order, so it is the
smallest). The Executor then answers single questions as futures, the way
concurrent.futures and mpi4py.futures do.
"""

import itertools
import sys

import parafork.mpi as pm

world = pm.init()  # first: forks this rank's program away from MPI

BLOCK = 20_000
LONG = 350  # steps: no start below 100,000 needs more


def steps(n):
    k = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        k += 1
    return k


def longest(start):  # (steps, n) of the longest chain started in [start, start + BLOCK)
    return max((steps(n), n) for n in range(max(start, 1), start + BLOCK))


def first_long():
    blocks = pm.imap(longest, itertools.count(0, BLOCK))  # endless: rank 0 reads it lazily
    for best in blocks:  # the other ranks serve until rank 0 closes the iterator
        if best[0] > LONG:
            blocks.close()
            return best
    return None


if __name__ == "__main__":
    found = first_long()
    with pm.Executor() as ex:  # None on the other ranks, once rank 0 is done with it
        if ex is not None:
            asked = {n: ex.submit(steps, n) for n in (27, 97, 871, 6171, 837799)}
            answers = {n: fut.result() for n, fut in asked.items()}
            print(f"the first block with a chain over {LONG} steps has {found[1]:,} ({found[0]} steps), "
                  f"over {world.size} ranks")
            print("steps:", ", ".join(f"{n}: {k}" for n, k in answers.items()))
            ok = answers == {27: 111, 97: 118, 871: 178, 6171: 261, 837799: 524} and found == (353, 106239)
            if not ok:
                print("mpi_stream.py: wrong answers", file=sys.stderr)
            sys.exit(0 if ok else 1)

"""pi by the Leibniz series, its terms summed in batches by forked workers (forked_pi in Python).

The function is a closure over `n` and `batch`: it reaches the workers by fork, never pickled,
and so does the list of batch starts (a sequence: the workers index their own copy).
"""

import math
import sys

import parafork as pf


def pi(n, batch):
    def partial(start):  # a nested function reading the caller's n and batch
        return sum((0.5 - k % 2) * 8.0 / (2 * k + 1) for k in range(start, min(start + batch, n)))

    starts = list(range(0, n, batch))
    return sum(pf.map(partial, starts))


if __name__ == "__main__":
    coarse = pi(100, 5)
    fine = pi(2_000_000, 100_000)
    print(f"{coarse:.15f}")
    print(f"{fine:.15f}")
    # The series' error after n terms is about 2/n.
    ok = abs(coarse - math.pi) < 0.05 and abs(fine - math.pi) < 1e-5
    if not ok:
        print("pi.py: pi is off", file=sys.stderr)
    sys.exit(0 if ok else 1)

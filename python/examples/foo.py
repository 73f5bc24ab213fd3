"""Objects that are not plain numbers, made in workers and joined in the parent (forked's Foo).

Each result is pickled by its worker and unpickled here, so any picklable value comes back:
no shared-memory files to name, size or clean up.
"""

import sys
from dataclasses import dataclass

import parafork as pf


@dataclass
class Foo:
    s: str
    x: float


def calc_foo(x):
    return Foo(s=str(x), x=float(x))


def test_it():
    return pf.map(calc_foo, range(10))  # in input order


def test_it_indexed():
    # With the index, in completion order, each result put at its place (forked's `for i, x`).
    result = [None] * 10
    for i, f in pf.imap_unordered(calc_foo, range(10)):
        result[i] = f
    return result


if __name__ == "__main__":
    a, b = test_it(), test_it_indexed()
    print(a)
    want = [Foo(str(x), float(x)) for x in range(10)]
    ok = a == want and b == want
    if not ok:
        print("foo.py: wrong results", file=sys.stderr)
    sys.exit(0 if ok else 1)

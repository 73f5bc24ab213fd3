"""map, starmap, imap, imap_unordered: workers fork at the call."""

from collections.abc import Sequence

from . import _parafork

__all__ = ["map", "starmap", "imap", "imap_unordered"]


def _sized(items):
    # A sequence the workers can index in their copy of the caller's memory: nothing is sent.
    return isinstance(items, (Sequence, range)) and not isinstance(items, (str, bytes, bytearray))


def _retries(retries):
    retries = int(retries)
    if retries < 0:
        raise ValueError("parafork: retries must be >= 0")
    return retries


def _map(f, iterable, star, jobs, chunksize, ordered, timeout, retries, progress, name, dashboard):
    return _parafork.map(f, iterable, _sized(iterable), star, bool(ordered), jobs, chunksize, timeout,
                         _retries(retries), bool(progress), name, dashboard)


def _imap(f, iterable, star, ordered, pairs, jobs, chunksize, timeout, retries, progress, name, dashboard):
    return _parafork.imap(f, iterable, _sized(iterable), star, bool(ordered), pairs, jobs, chunksize,
                          timeout, _retries(retries), bool(progress), name, dashboard)


def map(f, iterable, *, jobs=None, chunksize=None, ordered=True, timeout=None, retries=0, progress=False,
        name=None, dashboard=None):
    """[f(x) for x in iterable], computed by forked workers; the results in input order
    (in completion order with ordered=False).

    The workers fork at the call, so f may be a lambda, a closure or a nested function and may
    read anything the caller had. Only results are pickled, a chunk at a time. A sized sequence
    is not sent at all (workers index their own copy); another iterable is pickled chunk by
    chunk, a bounded number in flight. The first failure stops the rest and is raised.
    dashboard="127.0.0.1:8765" shows the call on the live dashboard (docs/dashboard.md).
    """
    return _map(f, iterable, False, jobs, chunksize, ordered, timeout, retries, progress, name, dashboard)


def starmap(f, iterable, *, jobs=None, chunksize=None, ordered=True, timeout=None, retries=0,
            progress=False, name=None, dashboard=None):
    """[f(*args) for args in iterable], as map."""
    return _map(f, iterable, True, jobs, chunksize, ordered, timeout, retries, progress, name, dashboard)


def imap(f, iterable, *, jobs=None, chunksize=None, ordered=True, timeout=None, retries=0, progress=False,
         name=None, dashboard=None):
    """f(x) for each x, lazily and in input order (completion order with ordered=False); a task's
    error is raised at its item."""
    return _imap(f, iterable, False, ordered, False, jobs, chunksize, timeout, retries, progress, name,
                 dashboard)


def imap_unordered(f, iterable, *, jobs=None, chunksize=None, ordered=False, timeout=None, retries=0,
                   progress=False, name=None, dashboard=None):
    """(i, f(x)) for each x, lazily, in completion order (i: the item's input index); in input
    order with ordered=True."""
    return _imap(f, iterable, False, ordered, True, jobs, chunksize, timeout, retries, progress, name,
                 dashboard)

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


def _map(f, iterable, star, jobs, chunksize, timeout, retries, progress, name):
    if _sized(iterable):
        return _parafork.map_sequence(f, iterable, star, jobs, chunksize, timeout, _retries(retries),
                                      bool(progress), name)
    return list(_parafork.imap(f, iterable, False, star, True, jobs, chunksize, timeout,
                               _retries(retries), bool(progress), name))


def map(f, iterable, *, jobs=None, chunksize=None, timeout=None, retries=0, progress=False, name=None):
    """[f(x) for x in iterable], computed by forked workers; the results in input order.

    The workers fork at the call, so f may be a lambda, a closure or a nested function and may
    read anything the caller had. Only results are pickled. A sized sequence is not sent at all
    (workers index their own copy); another iterable is pickled item by item, a bounded number
    in flight. The first failure stops the rest and is raised.
    """
    return _map(f, iterable, False, jobs, chunksize, timeout, retries, progress, name)


def starmap(f, iterable, *, jobs=None, chunksize=None, timeout=None, retries=0, progress=False, name=None):
    """[f(*args) for args in iterable], as map."""
    return _map(f, iterable, True, jobs, chunksize, timeout, retries, progress, name)


def imap(f, iterable, *, jobs=None, chunksize=None, timeout=None, retries=0, progress=False, name=None):
    """f(x) for each x, lazily and in input order; a task's error is raised at its item."""
    return _parafork.imap(f, iterable, _sized(iterable), False, True, jobs, chunksize, timeout,
                          _retries(retries), bool(progress), name)


def imap_unordered(f, iterable, *, jobs=None, chunksize=None, timeout=None, retries=0, progress=False,
                   name=None):
    """(i, f(x)) for each x, lazily, in completion order (i: the item's input index)."""
    return _parafork.imap(f, iterable, _sized(iterable), False, False, jobs, chunksize, timeout,
                          _retries(retries), bool(progress), name)

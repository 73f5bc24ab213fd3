"""snakefish's API on parafork: a snakefish program runs after changing only its import.

    from parafork import snakefish

Same names, arguments and semantics (Channel, Thread, Generator, map, starmap, get_timestamp,
get_timestamp_serialized), minus snakefish's failures:
- a message larger than the channel streams through it (snakefish raised OverflowError);
- a child that dies is parafork.WorkerDied (pid, signal) from join / try_join / next, never a
  hang or a garbled result;
- dispose() is optional: memory and descriptors go with the objects, and a thread dropped
  while running is stopped and reaped;
- timestamps are CLOCK_MONOTONIC nanoseconds (comparable across processes on any machine),
  not raw TSC cycles.
extract(globals) and merge(globals, extracted) see the globals of the module that created the
Thread or Generator (snakefish: the caller's), as snakefish's examples use them.
"""

import sys

from . import _core, _parafork
from . import _channel
from . import _thread

__all__ = ["Channel", "Thread", "Generator", "map", "starmap", "get_timestamp", "get_timestamp_serialized"]

# snakefish's default was a 2 GiB (unreserved) buffer; messages stream here, so 1 MiB does.
DEFAULT_CHANNEL_SIZE = _channel.Channel.DEFAULT_SIZE


def get_timestamp():
    return _parafork.timestamp()


def get_timestamp_serialized():
    return _parafork.timestamp_serialized()


class Channel:
    """An IPC channel: send_pyobj, receive_pyobj(block), dispose()."""

    def __init__(self, size=DEFAULT_CHANNEL_SIZE):
        self._ch = _channel.Channel(size)

    def send_pyobj(self, obj):
        self._ch.send(obj)

    def receive_pyobj(self, block):
        """IndexError when block is false and nothing is there."""
        return self._ch.receive(bool(block))

    def dispose(self):
        self._ch.dispose()


def _check_started(obj, what):
    if not obj.started:
        raise RuntimeError(f"this {what} has not been started yet")


class Thread:
    """Thread(f) or Thread(f, extract, merge): start, join, try_join, is_alive,
    get_exit_status, get_result, dispose."""

    def __init__(self, f, extract=None, merge=None):
        self._t = _thread.Thread(f, extract, merge, globals=sys._getframe(1).f_globals)

    def start(self):
        if self._t.started:
            raise RuntimeError("this thread has already been started")
        self._t.start()

    def join(self):
        _check_started(self._t, "thread")
        self._t.join()

    def try_join(self):
        _check_started(self._t, "thread")
        return self._t.try_join()

    def is_alive(self):
        return self._t.is_alive()

    def get_exit_status(self):
        try:
            return self._t.exit_status
        except _core.Error:
            raise RuntimeError("exit status is not yet available") from None

    def get_result(self):
        if not self._t.started or not self._t._t.joined():
            raise RuntimeError("result is not yet available")
        return self._t.result()

    def dispose(self):
        pass  # nothing to release by hand: the child's resources go with the object


class Generator:
    """Generator(f) or Generator(f, extract, merge): start, next(block), join, try_join,
    get_exit_status, dispose."""

    def __init__(self, f, extract=None, merge=None):
        try:
            self._g = _thread.Generator(f, extract, merge, globals=sys._getframe(1).f_globals)
        except TypeError as e:
            raise RuntimeError("f is not a generator function") from e

    def start(self):
        if self._g.started:
            raise RuntimeError("this generator has already been started")
        self._g.start()

    def next(self, block):
        """The next value; IndexError if block is false and it is not ready; StopIteration at
        the end; the generator's own exception where it raised."""
        return self._g.next(bool(block))

    def join(self):
        _check_started(self._g, "generator")
        self._g.join()

    def try_join(self):
        _check_started(self._g, "generator")
        return self._g.try_join()

    def get_exit_status(self):
        try:
            return self._g.exit_status
        except _core.Error:
            raise RuntimeError("exit status is not yet available") from None

    def dispose(self):
        pass


def _split(rest, concurrency, chunksize, extract, merge):
    # snakefish's two overloads: map(f, args, concurrency, chunksize) and
    # map(f, args, extract, merge, concurrency, chunksize).
    rest = list(rest)
    if rest and callable(rest[0]):
        if len(rest) < 2 or not callable(rest[1]):
            raise TypeError("map: extract and merge go together")
        extract, merge = rest[0], rest[1]
        rest = rest[2:]
    if len(rest) > 2:
        raise TypeError("map: too many arguments")
    if rest:
        concurrency = rest[0]
    if len(rest) > 1:
        chunksize = rest[1]
    return int(concurrency), int(chunksize), extract, merge


def _chunk_runner(f, chunk, star):
    return lambda: [f(*a) if star else f(a) for a in chunk]


def _map(f, args, star, rest, concurrency, chunksize, extract, merge, caller_globals):
    concurrency, chunksize, extract, merge = _split(rest, concurrency, chunksize, extract, merge)
    if concurrency < 0 or chunksize < 0:
        raise ValueError("map: concurrency and chunksize must be >= 0")
    items = list(args)
    concurrency = concurrency or _parafork.default_jobs()
    chunksize = chunksize or max(1, -(-len(items) // concurrency))
    chunks = [items[i:i + chunksize] for i in range(0, len(items), chunksize)]
    results, t = [], None
    # As snakefish: batches of `concurrency` threads, one chunk each, joined (and merged) in order.
    for b in range(0, len(chunks), concurrency):
        threads = [_thread.Thread(_chunk_runner(f, c, star), extract, merge, globals=caller_globals)
                   for c in chunks[b:b + concurrency]]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for t in threads:
                results.extend(t.result())
        finally:
            threads = t = None  # a thread still running is stopped and reaped with its object
    return results


def map(f, args, *rest, concurrency=0, chunksize=0, extract=None, merge=None):  # noqa: A001
    """[f(a) for a in args] in forked threads; with extract/merge, each thread's extracted
    globals are merged back (once per chunk, in order)."""
    return _map(f, args, False, rest, concurrency, chunksize, extract, merge, sys._getframe(1).f_globals)


def starmap(f, args, *rest, concurrency=0, chunksize=0, extract=None, merge=None):
    """[f(*a) for a in args], as map."""
    return _map(f, args, True, rest, concurrency, chunksize, extract, merge, sys._getframe(1).f_globals)



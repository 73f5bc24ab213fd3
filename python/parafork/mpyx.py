"""parafork.mpyx: mpyx's API on parafork's ez pipelines.

`from parafork.mpyx import EZ, F, ...` in place of `from mpyx import ...`: the same names,
lifecycle and graph syntax (lists serial, tuples parallel, sets broadcast), with stages as
forked processes over shared-memory channels. An exception in any stage, or a stage killed,
stops the whole graph and reaches join() / list() / items(); idle stages sleep.
"""

import asyncio
import multiprocessing
import time

from . import _ez
from ._ez import Pipeline, Stage

__all__ = ["EZ", "Indurate", "F", "Serial", "Parallel", "Broadcast", "S", "P", "B", "As", "By",
           "Const", "Iter", "Filter", "Map", "Batch", "Zip", "Seq", "Print", "Stamp", "Read", "Write"]


class F(Stage):
    """A stage: initialize (caller, before the fork), setup (its process), do(item), teardown."""

    _method = "do"
    Event = multiprocessing.Event
    Queue = multiprocessing.JoinableQueue
    Pipe = multiprocessing.Pipe

    def do(self, item):
        self.put(item)

    def myAsync(self, coroutine):
        """Calls an async function and waits for it."""
        return self._loop_().run_until_complete(coroutine())

    def _loop_(self):
        if not hasattr(self, "event_loop"):
            self.event_loop = asyncio.new_event_loop()
        return self.event_loop

    def daemonize(self):
        return self

    def catch(self, exc):
        """mpyx printed and swallowed a stage's exception; here it stops the graph and is
        raised by join(). Override to handle it in the stage: return normally to go on with
        the next item, raise to stop."""
        raise exc

    def _batch(self, items, metas, proc):
        if type(self).catch is F.catch:
            return super()._batch(items, metas, proc)
        for i, x in enumerate(items):
            self.meta = {} if metas is None or metas[i] is None else metas[i]
            try:
                proc(x)
            except _ez._Unwanted:
                raise
            except Exception as e:  # noqa: BLE001 - the stage's own handler decides
                self.catch(e)
            if self._stopped:
                return


setattr(F, "async", lambda self, coroutine: self._loop_().run_until_complete(coroutine))


def _builtin(base):
    """mpyx's built-in as an F: the same behaviour, `do` being the native `process`."""
    cls = type(base.__name__, (F, base), {"do": base.process, "__doc__": base.__doc__,
                                          "__module__": __name__})
    return cls


Const = _builtin(_ez.Const)
Iter = _builtin(_ez.Iter)
Map = _builtin(_ez.Map)
Filter = _builtin(_ez.Filter)
Batch = _builtin(_ez.Batch)
Print = _builtin(_ez.Print)
Stamp = _builtin(_ez.Stamp)
Read = _builtin(_ez.Read)
Write = _builtin(_ez.Write)
Seq = _ez.Seq
Zip = _ez.Zip


class Serial(_ez.serial):
    pass


class Parallel(_ez.parallel):
    pass


class Broadcast(_ez.broadcast):
    pass


S, P, B = Serial, Parallel, Broadcast


def As(n, fn, *args, **kwargs):
    """n instances of F subclass fn, in parallel."""
    return tuple(fn(*args, **kwargs) for _ in range(n))


def By(n, fn, *args, **kwargs):
    """n instances of F subclass fn, each given every item (broadcast)."""
    return Broadcast(*(fn(*args, **kwargs) for _ in range(n)))


class Indurate(Pipeline):
    """What EZ returns: start, join, stop, stopped, items, list, watch, unwatch, graph,
    printLayout, daemonize, xcut."""

    def printLayout(self):
        self.print_layout()

    def info(self):
        return self.layout()


def EZ(*fns, **kwargs):
    """A graph of stages: lists serial, tuples parallel, sets broadcast (qsize is ignored:
    queues are shared-memory rings bounded in bytes)."""
    return Indurate(*fns)

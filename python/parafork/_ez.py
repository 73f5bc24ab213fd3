"""ez pipelines: graphs of Python stages, each in its own forked process, items crossing as
pickled batches over parafork's shared-memory channels.

    pf.ez(pf.Iter(range(5)), AddX(10), pf.Print()).start()

A graph is nested serial / parallel / broadcast groups (or lists / tuples / sets); a stage is
a Stage instance or a plain function (a Map). Every edge is one Channel: parallel members share
their input channel (each batch goes to one of them), broadcast members get one channel each
(every item goes to all). A stage's output is buffered into batches whose size follows the
cost its consumers measure, so a busy queue pays no syscall per item and a slow parallel group
still gets its work item by item.
"""

import atexit
import itertools
import mmap
import os
import pickle
import select
import signal
import sys
import threading
import time
import weakref
from heapq import heappop, heappush

from . import _core, _parafork
from ._channel import Channel, ChannelClosed
from ._thread import _outcome

__all__ = ["ez", "Pipeline", "Stage", "serial", "parallel", "broadcast", "Iter", "Const", "Map",
           "Filter", "Batch", "Zip", "Seq", "Print", "Stamp", "Read", "Write"]

_CHANNEL_BYTES = 1 << 20
_BATCH_BYTES = 1 << 16   # a batch's pickle stays about this small (memory stays bounded)
_MAX_BATCH = 4096
_TARGET = 1e-3           # seconds of a consumer's work per batch: how finely parallel members share
_LATENCY = 5e-3          # an item waits at most this long in a busy stage's batch
_SINK_COST = 1e-8        # the caller takes batches whole: no sharing to keep fine

_now = time.monotonic
_dumps, _loads = pickle.dumps, pickle.loads

# Channels of graphs started in this process. A stage lets go of all but its own input and
# outputs first thing (an end it held would keep a stage waiting for a sender that never sends).
# Not in an at-fork hook: the channels' own fork handlers run after Python's.
_live = weakref.WeakSet()


def _let_go(keep):
    for c in list(_live):
        if c not in keep:
            c.dispose()
    _live.clear()


# The channels this process holds for a graph: a stage's own queues, or the caller's sink. A
# process forked from here with os.fork (by the stage's code, multiprocessing, ...) lets go of
# them at once: a child living on would otherwise hold an end of each, and the stream would
# end only when it exits. (subprocess children exec, which lets go of them too; the library's
# own children let go themselves or die with their parent.)
_held = weakref.WeakSet()


def _drop_after_fork():
    if _parafork.library_forking():
        return  # inside the library's fork: its channel handlers have not run yet
    for c in list(_held):
        c.dispose()
    _held.clear()
    for c in list(_live):
        c.dispose()
    _live.clear()
    _running.clear()  # the parent's graphs: not this child's to join when it exits


os.register_at_fork(after_in_child=_drop_after_fork)


# ---- graph description ---------------------------------------------------------------------------

class serial(list):
    __hash__ = object.__hash__  # may be a member of a set (a broadcast)
    """Stages one after the other (a list does the same)."""

    def __init__(self, *nodes):
        super().__init__(nodes)


class parallel(list):
    __hash__ = object.__hash__  # may be a member of a set (a broadcast)
    """Members share their input: each item goes to one of them (a tuple does the same)."""

    def __init__(self, *nodes):
        super().__init__(nodes)


class broadcast(list):
    __hash__ = object.__hash__  # may be a member of a set (a broadcast)
    """Every item goes to every member (a set does the same)."""

    def __init__(self, *nodes):
        super().__init__(nodes)


def _normalize(node, seen):
    """The node as ("serial"|"parallel"|"broadcast", [children]) or a Stage; functions become Maps."""
    if isinstance(node, Pipeline):
        return _normalize(node._root_spec, seen)
    if isinstance(node, Stage):
        if id(node) in seen:
            raise ValueError(f"parafork.ez: stage {node.name} appears twice in the graph; make one per place")
        seen.add(id(node))
        return node
    if isinstance(node, (parallel, tuple)):
        kind = "parallel"
    elif isinstance(node, (broadcast, set, frozenset)):
        kind = "broadcast"
    elif isinstance(node, (serial, list)):
        kind = "serial"
    elif callable(node):
        return _normalize(Map(node), seen)
    else:
        raise TypeError(f"parafork.ez: {node!r} is not a stage, a function or a group")
    children = [_normalize(c, seen) for c in node]
    if not children:
        raise ValueError(f"parafork.ez: an empty {kind} group")
    return (kind, children)


class _Producer:
    """Where a wiring step attaches outputs: a stage, or an xcut attribute of a graph's stages."""

    def __init__(self):
        self.outs = []


def _wire(node, src, plan, stages, new_channel):
    """Wires node to read from src: ("tails", producers) or ("chan", channel). Returns its tails."""
    if isinstance(node, Stage):
        kind, chan = src
        if kind == "chan":
            inp = chan
        elif chan:
            inp = new_channel()
            for p in chan:
                plan[id(p)].outs.append(inp)
        else:
            inp = None
        entry = _Producer()
        entry.inp = inp
        plan[id(node)] = entry
        stages.append(node)
        return [node]
    kind, children = node
    if kind == "serial":
        for child in children:
            src = ("tails", _wire(child, src, plan, stages, new_channel))
        return src[1]
    if kind == "parallel" and src[0] == "tails" and src[1]:
        chan = new_channel()
        for p in src[1]:
            plan[id(p)].outs.append(chan)
        src = ("chan", chan)
    elif kind == "broadcast" and src[0] == "chan":
        tee = _Tee()  # members of a shared queue: one process copies to each branch
        src = ("tails", _wire(tee, src, plan, stages, new_channel))
    tails = []
    for child in children:
        tails += _wire(child, src, plan, stages, new_channel)
    return tails


def _plan(pipe, sink):
    """(stages, plan, channel count, xcut ports): who reads and writes which channel."""
    plan, stages, count = {}, [], itertools.count()
    new_channel = lambda: next(count)  # noqa: E731
    tails = _wire(pipe._root, ("tails", []), plan, stages, new_channel)
    sink_index = None
    if sink:
        sink_index = new_channel()
        for t in tails:
            plan[id(t)].outs.append(sink_index)
    xcuts = []
    main = list(stages)
    for attr, other in pipe._xcuts:
        port = _Producer()
        plan[id(port)] = port
        _wire(other._root, ("tails", [port]), plan, stages, new_channel)
        xcuts.append((attr, port, main))
    return stages, plan, next(count), sink_index, xcuts


# ---- stages ------------------------------------------------------------------------------------

class _Port:
    """A batch of items (and their metas) on its way to one or more channels."""

    __slots__ = ("chans", "slots", "items", "metas", "limit", "t0", "costs", "main", "dash")

    def __init__(self, chans, slots, costs, main=False):
        self.chans, self.slots, self.costs, self.main = chans, slots, costs, main
        self.items, self.metas = [], None
        self.limit, self.t0 = 1, _now()
        self.dash = None  # the dashboard's counters, in the stage's process while it is on

    def put(self, item, meta=None):
        items = self.items
        if meta:
            if self.metas is None:
                self.metas = [None] * len(items)
            self.metas.append(meta)
        elif self.metas is not None:
            self.metas.append(None)
        items.append(item)
        if len(items) >= self.limit or _now() - self.t0 > _LATENCY:
            self.flush()

    def flush(self):
        items = self.items
        self.t0 = _now()
        if not items:
            return
        if not self.chans:
            self.items, self.metas = [], None
            return
        data = _dumps((items, self.metas), 5)
        n, dash = len(items), self.dash
        for c, q in list(zip(self.chans, self.slots)):
            try:
                c.send(data, True, None)
            except ChannelClosed:
                # Its readers stopped and left: nobody wants what goes there any more.
                i = self.chans.index(c)
                del self.chans[i], self.slots[i]
                if self.main and not self.chans:
                    self.items, self.metas = [], None
                    raise _Unwanted()
                continue
            if dash is not None:
                dash.put(q, n)
        self.items, self.metas = [], None
        cost = max((self.costs[s] for s in self.slots), default=0.0)
        limit = max(1, _BATCH_BYTES * n // max(1, len(data)))
        if cost > 0:
            limit = min(limit, max(1, int(_TARGET / cost)))
        else:
            limit = 1  # its cost not known yet: one item at a time until the consumer says
        self.limit = min(limit, _MAX_BATCH)


class _Unwanted(BaseException):
    """In a stage: every reader of its output has stopped, so the stage stops too."""


class _Xcut:
    """A cross-cut attribute in a stage: put() sends to the graph attached by Pipeline.xcut."""

    def __init__(self, port):
        self._port = port

    def put(self, item):
        self._port.put(item)


class Stage:
    """A step of an ez pipeline, run in its own process.

    Override: initialize(*args, **kwargs) in the caller before the fork, setup(*args, **kwargs)
    in the stage's process (a stage without input produces its items here), process(item) for
    each item that arrives, teardown() once the input has ended. The arguments are those given
    to the constructor. In the stage: put(item) sends downstream, stop() ends the stage soon,
    `meta` is a dict that travels with each item (change it before put)."""

    _method = "process"
    _count = itertools.count(1)
    _dash = None  # in its process, with the dashboard on: where it counts what it takes

    def __init__(self, *args, **kwargs):
        self._args, self._kwargs = args, kwargs
        self.name = f"{type(self).__name__}-{next(Stage._count)}"
        self.meta = {}
        self._stopped = False
        self._run = None

    # -- to override --
    def initialize(self, *args, **kwargs):
        pass

    def setup(self, *args, **kwargs):
        pass

    def process(self, item):
        self.put(item)

    def teardown(self):
        pass

    # -- in the stage --
    def put(self, item):
        o = self._out
        meta = self.meta
        if meta:
            o.put(item, meta.copy())
            return
        o.items.append(item)
        if o.metas is not None:
            o.metas.append(None)
        if len(o.items) >= o.limit or _now() - o.t0 > _LATENCY:
            o.flush()

    def _put_busy(self, item):
        # put() while input items are being processed: an input batch is about 1 ms of this
        # stage's work, so the latency check waits for the end of the batch (_loop).
        o = self._out
        meta = self.meta
        if meta:
            o.put(item, meta.copy())
            return
        o.items.append(item)
        if o.metas is not None:
            o.metas.append(None)
        if len(o.items) >= o.limit:
            o.flush()

    def _put_many(self, items):
        o = self._out
        if self.meta or o.metas is not None:
            for x in items:
                self.put(x)
            return
        o.items.extend(items)
        if len(o.items) >= o.limit or _now() - o.t0 > _LATENCY:
            o.flush()

    def stop(self):
        """In the stage: end it after the current item (teardown still runs)."""
        self._stopped = True
        return self

    def stopped(self):
        return self._stopped

    def started(self):
        return self._run is not None

    def finished(self):
        return self._run is not None and self._run.finished(self)

    def sleep(self, seconds=0.001):
        """Waits, after sending what is batched (nothing waits in a batch meanwhile)."""
        self.flush()
        time.sleep(seconds)

    def flush(self):
        """Sends the items batched so far now."""
        for p in self._ports:
            p.flush()

    def __repr__(self):
        return f"<{self.name}>"

    # -- the stage's process --
    def _serve(self, inp, out, ports, costs, slot):
        self._out, self._ports = out, ports
        self.meta = {}
        self._stopped = False
        try:
            self.setup(*self._args, **self._kwargs)
            if inp is not None and not self._stopped:
                self._loop(inp, costs, slot)
        except _Unwanted:
            self._stopped = True
        self.meta = {}
        self.teardown()
        self.flush()
        for p in ports:
            for c in p.chans:
                c.close()

    def _loop(self, inp, costs, slot):
        if type(self).put is Stage.put:
            self.put = self._put_busy
        proc = getattr(self, self._method)
        clock = time.perf_counter
        out = self._out
        dash = self._dash
        while not self._stopped:
            try:
                raw = inp.receive(False, None)
                if raw is None:
                    self.flush()  # about to sleep: nothing may wait in a batch meanwhile
                    raw = inp.receive(True, None)
            except ChannelClosed:
                return
            items, metas = _loads(raw)
            if dash is not None:
                dash.took(slot, len(items))
            t = clock()
            self._batch(items, metas, proc)
            cost = (clock() - t) / len(items)
            if _now() - out.t0 > _LATENCY:
                self.flush()
            costs[slot] = cost if costs[slot] == 0 else 0.7 * costs[slot] + 0.3 * cost

    def _batch(self, items, metas, proc):
        if metas is None:
            for x in items:
                if self.meta:
                    self.meta = {}
                proc(x)
                if self._stopped:
                    return
        else:
            for x, m in zip(items, metas):
                self.meta = {} if m is None else m
                proc(x)
                if self._stopped:
                    return


class _Tee(Stage):
    """Copies a shared queue's items to each branch of a broadcast inside a parallel group."""


# ---- built-ins ---------------------------------------------------------------------------------

class Iter(Stage):
    """Sends each item of an iterable."""

    def setup(self, iterable):
        if isinstance(iterable, (list, tuple, range)):  # known now: sent in whole batches
            it = iter(iterable)
            while not self._stopped:
                chunk = list(itertools.islice(it, max(self._out.limit, 16)))
                if not chunk:
                    break
                self._put_many(chunk)
        else:
            for x in iterable:
                self.put(x)
                if self._stopped:
                    break


class Const(Stage):
    """The same item, `limit` times (endlessly without a limit, until stopped)."""

    def setup(self, item, limit=None):
        n = itertools.count() if limit is None else range(limit)
        for _ in n:
            self.put(item)
            if self._stopped:
                break


class Map(Stage):
    """fn(item, *args, **kwargs) for each item."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(fn, *args, **kwargs)
        self.name = f"Map({getattr(fn, '__name__', type(fn).__name__)})-{self.name.rsplit('-', 1)[1]}"

    def setup(self, fn, *args, **kwargs):
        self.fn, self.fargs, self.fkwargs = fn, args, kwargs

    def process(self, item):
        self.put(self.fn(item, *self.fargs, **self.fkwargs))

    def _batch(self, items, metas, proc):
        if metas is not None or getattr(proc, "__func__", None) is not _map_process:
            return super()._batch(items, metas, proc)
        fn, a, k = self.fn, self.fargs, self.fkwargs
        if self.meta:
            self.meta = {}
        self._put_many([fn(x, *a, **k) for x in items] if a or k else list(map(fn, items)))


_map_process = Map.process


class Filter(Stage):
    """The items for which fn(item, *args, **kwargs) is true."""

    def setup(self, fn, *args, **kwargs):
        self.fn, self.fargs, self.fkwargs = fn, args, kwargs

    def process(self, item):
        if self.fn(item, *self.fargs, **self.fkwargs):
            self.put(item)


class Batch(Stage):
    """Lists of `size` items (the last one shorter)."""

    def setup(self, size=64):
        self.size, self.batch = size, []

    def process(self, item):
        self.batch.append(item)
        if len(self.batch) >= self.size:
            self.put(self.batch)
            self.batch = []

    def teardown(self):
        if self.batch:
            self.put(self.batch)
            self.batch = []


class Print(Stage):
    """Prints each item (after `prefix`) and passes it on."""

    def setup(self, prefix=None):
        self.prefix = prefix

    def process(self, item):
        if self.prefix is None:
            print(item, flush=True)
        else:
            print(self.prefix, item, flush=True)
        self.put(item)


class Stamp(Stage):
    """Prints a running count of the items and passes them on."""

    def setup(self, pre="Processing item"):
        self.pre, self.count = pre, 0

    def process(self, item):
        self.count += 1
        if self.pre is None:
            print(self.count, flush=True)
        else:
            print(self.pre, self.count, flush=True)
        self.put(item)


class Read(Stage):
    """Sends the lines of a file."""

    def setup(self, filename, mode="r"):
        with open(filename, mode) as f:
            for line in f:
                self.put(line)
                if self._stopped:
                    break


class Write(Stage):
    """Writes each item to a file (new lines are the items' own) and passes it on."""

    def setup(self, filename, mode="w"):
        self.file = open(filename, mode)

    def process(self, item):
        self.file.write(item)
        self.put(item)

    def teardown(self):
        self.file.close()


class _SeqStart(Stage):
    def setup(self, key="seq"):
        self.key, self.seq = key, 0

    def process(self, item):
        self.meta[self.key] = self.seq
        self.seq += 1
        self.put(item)


class _SeqEnd(Stage):
    def setup(self, key="seq"):
        self.key, self.next, self.heap = key, 0, []

    def process(self, item):
        meta = self.meta
        heappush(self.heap, (meta.pop(self.key), id(item), meta, item))
        while self.heap and self.heap[0][0] == self.next:
            _, _, self.meta, x = heappop(self.heap)
            self.next += 1
            self.put(x)


class _SeqMerge(Stage):
    def setup(self, key="seq", n=1):
        self.key, self.n, self.next, self.rows = key, n, 0, {}

    def process(self, item):
        seq = self.meta.pop(self.key)
        row = self.rows.setdefault(seq, [])
        row.append(item)
        while len(self.rows.get(self.next, ())) >= self.n:
            self.meta = {}
            self.put(self.rows.pop(self.next))
            self.next += 1


_seq_keys = itertools.count()


def Seq(*nodes):
    """nodes in serial, their output put back in input order (even through parallel groups)."""
    key = f"_seq{next(_seq_keys)}_{os.getpid()}"
    return serial(_SeqStart(key), *nodes, _SeqEnd(key))


def Zip(*nodes):
    """Each item through every node (a broadcast); their results joined into one list per item."""
    if len(nodes) == 1 and isinstance(nodes[0], (list, tuple, set)):
        nodes = tuple(nodes[0])
    key = f"_zip{next(_seq_keys)}_{os.getpid()}"
    return serial(_SeqStart(key), broadcast(*nodes), _SeqMerge(key, len(nodes)))


# ---- running -----------------------------------------------------------------------------------

_running = set()  # started and not yet joined: joined (daemons stopped) when the program ends


@atexit.register
def _join_at_exit():
    for p in list(_running):
        try:
            if p._daemon:
                p.stop()
            else:
                p.join()
        except BaseException as e:  # noqa: BLE001 - the program is ending: say what failed
            print(f"parafork.ez: {type(e).__name__}: {e}", file=sys.stderr)


class _Run:
    """The processes of a started graph, watched through their pidfds."""

    def __init__(self, stages, channels, sink, shm, dash=None, sink_index=None):
        self.stages = stages
        self.channels = channels
        self.sink = sink
        self.shm = shm
        self.threads = {}   # stage -> (_parafork.Thread, pid, pidfd)
        self.done = set()
        self.dash = dash    # a _parafork.DashPipeline while the dashboard shows the graph
        self.sink_index = sink_index
        self.index = {s: i for i, s in enumerate(stages)}

    def took(self, n):
        """The program read n items of the sink (a branch when the dashboard is off)."""
        if self.dash is not None:
            self.dash.took(self.sink_index, n)

    def finished(self, stage):
        return stage in self.done

    def reap(self, stage):
        t, pid, fd = self.threads[stage]
        died = None
        try:
            t.join()
            ok, v = _loads(t.result())
        except _core.WorkerDied as e:
            e.args = (f"parafork.ez: stage {stage.name} (pid {pid}) died: {e}",)
            died = e
        finally:
            self._forget(stage)
        del t  # a traceback keeping this frame must not keep the stage's handle alive
        dash, i = self.dash, self.index[stage]
        if died is not None:
            if dash is not None:
                dash.failed(i, pid, True, died.signal or 0, died.exitcode or 0, "parafork::worker_died",
                            str(died))
            raise died
        if not ok:
            exc = _core._task_failure(v, pid, f"stage {stage.name}")
            if dash is not None:
                kind = getattr(exc, "type_name", None) or f"{type(exc).__module__}.{type(exc).__qualname__}"
                dash.failed(i, pid, False, 0, 0, kind, f"stage {stage.name}: {exc}")
            raise exc
        if dash is not None:
            dash.ended(i, True)

    def _forget(self, stage):
        t, pid, fd = self.threads.pop(stage)
        if fd >= 0:
            os.close(fd)
        self.done.add(stage)

    def kill(self):
        """Ends every stage still running, at once, and reaps them."""
        for stage, (t, pid, fd) in list(self.threads.items()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for stage, (t, pid, fd) in list(self.threads.items()):
            try:
                t.join()
            except _core.Error:
                pass
            self._forget(stage)
        self.release()

    def release(self):
        if self.dash is not None:
            self.dash.close()  # every stage reaped: shown finished
        self.shm = None
        for c in self.channels:
            c.dispose()
        if self.sink is not None:
            self.sink.dispose()


class Pipeline:
    """A graph of stages: start(), then join(), or items() / list() for what its last stages put."""

    def __init__(self, *nodes, name=None, dashboard=None):
        if dashboard is not None and not isinstance(dashboard, str):
            raise TypeError("parafork: dashboard must be an address string such as '127.0.0.1:8765', or None")
        self._name = "ez" if name is None else str(name)
        self._dashboard = dashboard
        if len(nodes) == 1 and isinstance(nodes[0], (list, serial)) and not isinstance(nodes[0], Pipeline):
            nodes = tuple(nodes[0])
        self._root_spec = serial(*nodes)
        self._root = _normalize(self._root_spec, set())
        self._xcuts = []
        self._run = None
        self._owner = None  # the graph that started this one (an xcut target)
        self._daemon = False
        self._joined = False
        self._watch = None
        self._sink_wanted = False

    # -- description --
    def named(self, name):
        """Its name on the dashboard (and nothing else): "ez" unless named."""
        self._name = str(name)
        return self

    def xcut(self, attr, pipeline):
        """Every stage here gets attribute `attr` whose put(item) feeds `pipeline`, started
        and joined with this one."""
        if self._run is not None:
            raise _core.Error("parafork.ez: xcut before start")
        if not isinstance(pipeline, Pipeline):
            pipeline = Pipeline(pipeline)
        self._xcuts.append((attr, pipeline))
        return self

    def graph(self):
        """The graph as nested lists (serial), tuples (parallel) and sets (broadcast) of stages."""
        def build(n):
            if isinstance(n, Stage):
                return n
            kind, children = n
            parts = [build(c) for c in children]
            if kind == "serial":
                return parts
            if kind == "parallel":
                return tuple(parts)
            if any(isinstance(p, list) for p in parts):
                return broadcast(*parts)  # a list cannot be in a set
            return set(parts)
        return build(self._root)

    def layout(self):
        """One line per stage: depth, name, its input channel and output channels."""
        stages, plan, n, sink, xcuts = _plan(self, self._sink_wanted)
        depth = {}

        def walk(node, d):
            if isinstance(node, Stage):
                depth[id(node)] = d
            else:
                for c in node[1]:
                    walk(c, d + 1)
        walk(self._root, 0)
        for _, other in self._xcuts:
            walk(other._root, 1)
        lines = []
        for s in stages:
            e = plan[id(s)]
            ins = "-" if e.inp is None else f"q{e.inp}"
            outs = ",".join("sink" if o == sink else f"q{o}" for o in e.outs) or "-"
            lines.append(f"{'>>' * (depth.get(id(s), 1))} {s.name} in={ins} out={outs}")
        return "\n".join(lines)

    def print_layout(self):
        print(self.layout(), flush=True)

    def daemonize(self):
        """Stages are stopped, not waited for, when the program ends without join()."""
        self._daemon = True
        return self

    # -- running --
    def start(self):
        """Forks every stage (and those of xcut graphs). Returns self."""
        if self._run is not None or self._owner is not None:
            return self
        stages, plan, n, sink_index, xcuts = _plan(self, self._sink_wanted)
        # Before the channels: a dashboard server forked now must hold no end of them.
        dash = self._dash_open(stages, plan, n, sink_index, xcuts)
        shm = mmap.mmap(-1, 8 * (n + 1))  # shared and anonymous: no descriptor to leak
        costs = memoryview(shm).cast("d")
        channels = [Channel(_CHANNEL_BYTES) for _ in range(n)]
        for c in channels:
            _live.add(c)
        if sink_index is not None:
            costs[sink_index] = _SINK_COST
        sink = channels[sink_index] if sink_index is not None else None
        run = _Run(stages, [c for i, c in enumerate(channels) if i != sink_index], sink, shm, dash, sink_index)
        raw = [c._ch for c in channels]
        for attr, port, members in xcuts:
            for s in members:
                setattr(s, attr, None)  # set per process below
        try:
            for s in stages:
                s.initialize(*s._args, **s._kwargs)
            if dash is not None:
                dash.forking(True)  # the stages map the dashboard's counters
            for k, s in enumerate(stages):
                e = plan[id(s)]
                inp = None if e.inp is None else raw[e.inp]
                out = _Port([raw[i] for i in e.outs], list(e.outs), costs, True)
                ports = [out]
                keep = {channels[i] for i in e.outs}
                if e.inp is not None:
                    keep.add(channels[e.inp])
                xs = []
                for attr, port, members in xcuts:
                    if any(m is s for m in members):
                        xp = _Port([raw[i] for i in port.outs], list(port.outs), costs)
                        ports.append(xp)
                        keep.update(channels[i] for i in port.outs)
                        xs.append((attr, xp))
                slot = n if e.inp is None else e.inp
                body = self._body(s, inp, out, ports, costs, slot, xs, keep, dash, k)
                t = _parafork.Thread(body, None)
                t.start()
                pid = t.pid()
                run.threads[s] = (t, pid, os.pidfd_open(pid))
                s._run = run
                if dash is not None:
                    dash.started(k, pid)
        except BaseException:
            run.kill()
            raise
        finally:
            if dash is not None:
                dash.forking(False)
        # This process sends on none of them; it keeps the sink only (and the others to watch).
        for c in channels:
            c.close()
        if self._watch is None:
            for i, c in enumerate(channels):
                if i != sink_index:
                    c.dispose()
        self._run = run
        for _, other in self._xcuts:
            other._owner = self
        _running.add(self)
        if self._watch is not None:
            self._watch.begin(self, channels, sink_index)
        return self

    def _dash_open(self, stages, plan, n, sink_index, xcuts):
        """The graph on the dashboard (dashboard= or PARAFORK_DASHBOARD), or None: off."""
        if self._dashboard is None and not os.environ.get("PARAFORK_DASHBOARD"):
            return None
        index = {id(s): i for i, s in enumerate(stages)}
        writers, readers = [[] for _ in range(n)], [[] for _ in range(n)]
        for i, s in enumerate(stages):
            e = plan[id(s)]
            if e.inp is not None:
                readers[e.inp].append(i)
            for q in e.outs:
                writers[q].append(i)
        for attr, port, members in xcuts:
            for m in members:
                for q in port.outs:
                    writers[q].append(index[id(m)])
        dash = _parafork.DashPipeline(self._name, self._dashboard, [s.name for s in stages],
                                      [(writers[q], readers[q], q == sink_index) for q in range(n)])
        return dash if dash.on else None

    @staticmethod
    def _body(stage, inp, out, ports, costs, slot, xs, keep, dash, index):
        def run():
            _let_go(keep)
            _held.update(keep)
            if dash is not None:
                dash.stage(index)  # its counters: this process writes them, its children do not
                stage._dash = dash
                for p in ports:
                    p.dash = dash
            for attr, xp in xs:
                setattr(stage, attr, _Xcut(xp))
            stage._serve(inp, out, ports, costs, slot)
        return lambda: _outcome(run)

    def pids(self):
        """The process ids of the stages still running."""
        run = self._top()._run
        return [] if run is None else [pid for _, pid, _ in run.threads.values()]

    def _top(self):
        return self._owner._top() if self._owner is not None else self

    def _wait(self):
        """Yields the sink's batches (if any) until every stage has ended; raises the first
        failure (a stage's exception, WorkerDied) after stopping the others."""
        run = self._run
        sink = run.sink
        fds = {fd: s for s, (t, pid, fd) in run.threads.items()}
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        try:
            while fds or sink is not None:
                if sink is not None:
                    try:
                        raw = sink._ch.receive(False, None)
                    except ChannelClosed:
                        sink = None
                        continue
                    if raw is not None:
                        yield raw
                        continue
                    if not fds:
                        continue  # every stage is gone: the sink reports closed next
                    armed = sink._ch._arm()
                    if armed < 0:
                        continue
                    poller.register(armed, select.POLLIN)
                    try:
                        ready = poller.poll()
                    finally:
                        poller.unregister(armed)
                        sink._ch._disarm()
                else:
                    ready = poller.poll()
                for fd, _ in ready:
                    stage = fds.pop(fd, None)
                    if stage is not None:
                        poller.unregister(fd)
                        run.reap(stage)
        except BaseException:
            run.kill()
            raise
        run.release()

    def _finish(self):
        self._joined = True
        _running.discard(self)
        if self._watch is not None:
            self._watch.end()

    def join(self):
        """Waits for every stage; raises a stage's exception (its remote traceback as
        __cause__) or WorkerDied, after stopping the rest. Starts the graph if needed."""
        if self._owner is not None:
            return self._top().join()
        if self._run is None:
            self.start()
        if self._joined:
            return self
        try:
            for raw in self._wait():
                pass  # the caller did not ask for the items
        finally:
            self._finish()
        return self

    def items(self):
        """A generator of what the last stages put (starts the graph). Leaving it early stops the graph."""
        if self._run is not None:
            raise _core.Error("parafork.ez: items() starts the graph; call it instead of start()")
        self._sink_wanted = True
        self.start()
        return self._items()

    def _items(self):
        done = False
        try:
            run = self._run
            for raw in self._wait():
                batch = _loads(raw)[0]
                run.took(len(batch))
                for x in batch:
                    yield x
            done = True
        finally:
            if not done:
                self._run.kill()
            self._finish()

    def list(self):
        """items(), as a list, once the graph has ended."""
        if self._run is not None:
            raise _core.Error("parafork.ez: list() starts the graph; call it instead of start()")
        self._sink_wanted = True
        self.start()
        out = []
        run = self._run
        try:
            for raw in self._wait():
                batch = _loads(raw)[0]
                run.took(len(batch))
                out += batch
        finally:
            self._finish()
        return out

    def stop(self):
        """Ends every stage now (killed, reaped), finished or not."""
        if self._owner is not None:
            return self._top().stop()
        if self._run is not None and not self._joined:
            self._run.kill()
            self._finish()
        return self

    def stopped(self):
        return self._run is not None and not self._run.threads

    def watch(self, seconds=5.0, file=None):
        """Prints, every `seconds` while the graph runs, the bytes waiting in each queue."""
        self._watch = _Watch(seconds, file)
        return self

    def unwatch(self):
        if self._watch is not None:
            self._watch.end()
        return self


class _Watch:
    def __init__(self, seconds, file):
        self.seconds, self.file = seconds, file
        self.event = threading.Event()
        self.thread = None

    def begin(self, pipe, channels, sink_index):
        def show():
            while not self.event.wait(self.seconds):
                sizes = [f"{'sink' if i == sink_index else f'q{i}'}={c._ch.size_bytes()}"
                         for i, c in enumerate(channels)]
                print("parafork.ez watch: " + " ".join(sizes), file=self.file or sys.stdout, flush=True)
        self.thread = threading.Thread(target=show, daemon=True)
        self.thread.start()

    def end(self):
        self.event.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()
            self.thread = None


def ez(*nodes, name=None, dashboard=None):
    """A pipeline of nodes in serial; see Pipeline. dashboard="HOST:PORT" (or the variable
    PARAFORK_DASHBOARD) shows it on the live dashboard (docs/dashboard.md), as `name`."""
    return Pipeline(*nodes, name=name, dashboard=dashboard)

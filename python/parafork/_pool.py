"""Pool: a drop-in multiprocessing.Pool on parafork's pool engine (see python/src/pool.cpp).

The workers fork when the Pool is made. A task is pickled (function, arguments) and run by
_run in a worker; functions go by reference as in multiprocessing, and by value through
cloudpickle when that cannot work (lambdas, closures, functions defined after the fork).
"""

import atexit
import collections
import itertools
import os
import pickle
import signal
import sys
import threading
import traceback
import types
import weakref
from multiprocessing import TimeoutError

from . import _core, _parafork

__all__ = ["Pool", "AsyncResult", "ApplyResult", "MapResult", "IMapIterator"]

_APPLY, _MAP, _STARMAP = 0, 1, 2


# ---- in a worker ------------------------------------------------------------------------------

_functions = {}  # pickled function -> function: each is unpickled once per worker


def _run(blob):
    fbytes, mode, args, kwds = pickle.loads(blob)
    f = _functions.get(fbytes)
    if f is None:
        if len(_functions) >= 256:
            _functions.clear()
        f = _functions[fbytes] = pickle.loads(fbytes)
    if mode == _APPLY:
        y = f(*args, **kwds) if kwds else f(*args)
    elif mode == _MAP:
        y = [f(x) for x in args]
    else:
        y = [f(*x) for x in args]
    try:
        return pickle.dumps(y, 5)
    except Exception as e:
        raise _core._ResultNotPicklable(f"{type(y).__name__} result: {type(e).__name__}: {e}") from e


# ---- in the caller ------------------------------------------------------------------------------

def _main_snapshot():
    # What the workers' __main__ holds: they forked now, and see nothing defined later.
    main = sys.modules.get("__main__")
    if main is None:
        return {}
    return {k: v for k, v in vars(main).items() if isinstance(v, (types.FunctionType, type))}


def _dump_function(f, born):
    try:
        b = pickle.dumps(f, 5)
    except Exception:
        b = None
    if b is not None:
        target = getattr(f, "__func__", f)  # a bound method: its function decides
        if getattr(target, "__module__", None) != "__main__":
            return b  # a module the worker has, or imports
        root = getattr(target, "__qualname__", "").split(".")[0]
        if root and born.get(root) is getattr(sys.modules["__main__"], root, None):
            return b  # the worker's __main__ has it: by reference, as multiprocessing
    import cloudpickle  # by value: defined after the fork, a lambda, a closure
    return cloudpickle.dumps(f, 5)


_live = weakref.WeakSet()  # pools to stop at exit, before daemon threads are frozen


@atexit.register
def _stop_live_pools():
    for pool in list(_live):
        pool.terminate()


def _report_callback_error():
    traceback.print_exc()


class ApplyResult:
    """multiprocessing.pool.AsyncResult: get(timeout), wait(timeout), ready(), successful()."""

    def __init__(self, pool, callback=None, error_callback=None):
        self._core = pool._core
        self._callback = callback
        self._error_callback = error_callback
        # With callbacks the handler thread takes the answer and sets the event; without, the
        # waiting thread takes it itself (no thread hand-off).
        self._event = threading.Event() if (callback or error_callback) else None
        self._lock = threading.Lock()
        self._have = False
        self._success = None
        self._value = None
        self._id = None

    def _failed_now(self, exc):
        # Failed before it was sent (its arguments did not pickle), as multiprocessing does.
        self._have, self._success, self._value = True, False, exc
        if self._error_callback is not None:
            try:
                self._error_callback(exc)
            except Exception:
                _report_callback_error()
        if self._event is not None:
            self._event.set()

    def _settle(self, answer):
        ok, payload = answer
        if ok:
            try:
                payload = pickle.loads(payload)
            except Exception as e:
                ok, payload = False, e
        self._success, self._value, self._have = ok, payload, True

    def _deliver(self, task):  # the handler thread
        with self._lock:
            self._settle(self._core.take(task))
        self._finish()

    def _finish(self):  # settled: the callback that applies, then the waiters
        cb = self._callback if self._success else self._error_callback
        if cb is not None:
            try:
                cb(self._value)
            except Exception:
                _report_callback_error()
        self._event.set()

    def _fetch(self):
        with self._lock:
            if not self._have:
                answer = self._core.take(self._id)
                if answer is not None:
                    self._settle(answer)
        return self._have

    def ready(self):
        if self._have:
            return True
        if self._event is not None:
            return self._event.is_set()
        return self._core.state(self._id) != 0

    def successful(self):
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        if self._event is None:
            self._fetch()
        return self._success

    def wait(self, timeout=None):
        if self._have:
            return
        if self._event is not None:
            self._event.wait(timeout)
        else:
            self._core.wait(self._id, timeout)

    def get(self, timeout=None):
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._event is None:
            self._fetch()
        if self._success:
            return self._value
        raise self._value

    def __del__(self):
        core, task = getattr(self, "_core", None), getattr(self, "_id", None)
        if core is not None and task is not None and not self._have and self._event is None:
            try:
                core.forget(task)  # nobody will read it: do not keep it
            except Exception:
                pass


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of map_async / starmap_async: a list in input order, or the first failure."""

    def __init__(self, pool, chunks, callback=None, error_callback=None):
        super().__init__(pool, callback, error_callback)
        self._chunks = chunks
        self._parts = [None] * chunks
        self._left = chunks
        self._index = {}  # task id -> chunk number
        self._channel = 0
        if chunks == 0:
            self._have, self._success, self._value = True, True, []
            if callback is not None:
                callback([])
            if self._event is not None:
                self._event.set()

    def _part(self, task, answer):
        # Under self._lock. True once settled: all parts, or the first failure.
        if self._have:
            return False
        ok, payload = answer
        if ok:
            try:
                payload = pickle.loads(payload)
            except Exception as e:
                ok, payload = False, e
        if not ok:
            self._success, self._value, self._have = False, payload, True
            return True
        self._parts[self._index[task]] = payload
        self._left -= 1
        if self._left == 0:
            self._success, self._have = True, True
            self._value = list(itertools.chain.from_iterable(self._parts))
            self._parts = None
            return True
        return False

    def _deliver(self, task):  # the handler thread, once per chunk
        with self._lock:
            answer = self._core.take(task)
            settled = answer is not None and self._part(task, answer)
        if not settled:
            return
        self._close_channel()
        self._finish()

    def _close_channel(self):
        if self._channel:
            self._core.drop_channel(self._channel)
            self._channel = 0
        if self._event is None:  # chunks still running after a failure: drop their answers
            for task in self._index:  # (with callbacks the handler takes and drops them)
                self._core.forget(task)

    def _drain(self, timeout):
        # Without callbacks: takes finished chunks (in completion order) until settled.
        with self._lock:
            while not self._have:
                task = self._core.next_done(self._channel, timeout)
                if task < 0:
                    return
                answer = self._core.take(task)
                if answer is not None and self._part(task, answer):
                    self._close_channel()

    def ready(self):
        if self._have:
            return True
        if self._event is not None:
            return self._event.is_set()
        self._drain(0)
        return self._have

    def successful(self):
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout=None):
        if self._have:
            return
        if self._event is not None:
            self._event.wait(timeout)
        else:
            self._drain(timeout)

    def get(self, timeout=None):
        self.wait(timeout)
        if not self._have and not (self._event is not None and self._event.is_set()):
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def __del__(self):
        if getattr(self, "_channel", 0) and not self._have:
            try:
                self._close_channel()
            except Exception:
                pass


class IMapIterator:
    """imap / imap_unordered: results as they are ready; next(timeout) as multiprocessing's."""

    def __init__(self, pool, submit_chunk, chunks, ordered):
        self._core = pool._core
        self._submit = submit_chunk
        self._chunks = chunks  # an iterator of chunks, submitted a bounded number ahead
        self._ordered = ordered
        self._ahead = max(2, 2 * pool._processes)
        # ids submitted and not yet read: in input order, or (unordered) a set
        self._tasks = collections.deque() if ordered else set()
        self._inflight = 0
        self._items = []
        self._pos = 0
        self._done_feeding = False
        self._channel = 0 if ordered else self._core.open_channel()
        self._fill()

    def _fill(self, everything=False):
        while not self._done_feeding and (everything or self._inflight < self._ahead):
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done_feeding = True
                break
            task = self._submit(chunk, self._channel)
            if self._ordered:
                self._tasks.append(task)
            else:
                self._tasks.add(task)
            self._inflight += 1

    def __iter__(self):
        return self

    def next(self, timeout=None):
        while self._pos >= len(self._items):
            self._fill()
            if self._inflight == 0:
                self._close()
                raise StopIteration
            if self._ordered:
                task = self._tasks[0]
                if not self._core.wait(task, timeout):
                    raise TimeoutError
                self._tasks.popleft()
            else:
                task = self._core.next_done(self._channel, timeout)
                if task < 0:
                    raise TimeoutError
                self._tasks.remove(task)
            self._inflight -= 1
            ok, payload = self._core.take(task)
            self._fill()
            if not ok:
                raise payload
            self._items, self._pos = pickle.loads(payload), 0
        y = self._items[self._pos]
        self._pos += 1
        return y

    __next__ = next

    def _close(self):
        if self._channel:
            self._core.drop_channel(self._channel)
            self._channel = 0

    def __del__(self):
        core = getattr(self, "_core", None)
        if core is None:
            return
        try:
            for task in self._tasks:
                core.forget(task)
            self._close()
        except Exception:
            pass


IMapUnorderedIterator = IMapIterator


def _chunks(iterable, size):
    it = iter(iterable)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


class _Handler:
    """The pool's handler thread: drives the engine while nobody waits, runs callbacks."""

    def __init__(self, core):
        self.core = core
        self.waiting = {}  # task id -> the result that has callbacks
        self.thread = None
        self.lock = threading.Lock()

    def start(self):
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="parafork-pool-handler",
                                               daemon=True)
                self.thread.start()

    def _loop(self):
        core, waiting = self.core, self.waiting
        while True:
            try:
                ids = core.serve()
            except KeyboardInterrupt:
                # Ctrl-C came while this thread drove: the workers are stopped; the main
                # thread gets the signal (and its KeyboardInterrupt) as if it had come there.
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                continue
            if ids is None:
                return
            for task in ids:
                with self.lock:  # a submitter registers its result under this lock
                    r = waiting.pop(task, None)
                if r is not None:
                    r._deliver(task)

    def stop(self):
        t = self.thread
        if t is not None and t is not threading.current_thread():
            t.join()


class Pool:
    """A drop-in multiprocessing.Pool whose workers are forked by parafork's engine.

    Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None, *, timeout=None,
    retries=0, progress=False, name=None, dashboard=None). Beyond multiprocessing: a worker that dies fails its
    task with parafork.WorkerDied (and is replaced); `timeout` (seconds per task) fails a task
    over it with parafork.TaskTimeout; `retries` re-runs a task whose worker died; `dashboard`
    ("HOST:PORT") shows the pool on the live dashboard.
    """

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, *, timeout=None, retries=0, progress=False, name=None, dashboard=None):
        self._core = None
        if processes is not None and (not isinstance(processes, int) or processes < 1):
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        retries = int(retries)
        if retries < 0:
            raise ValueError("parafork: retries must be >= 0")
        init = None
        if initializer is not None:
            initargs = tuple(initargs)

            def init():
                initializer(*initargs)
        self._born = _main_snapshot()
        self._functions = {}
        self._state = "RUN"
        self._core = _parafork.PoolCore(_run, init, processes, maxtasksperchild or 0, timeout, retries,
                                        bool(progress), name, dashboard)
        self._processes = self._core.size
        self._handler = _Handler(self._core)
        self._iterators = weakref.WeakSet()  # imap iterators still feeding
        _live.add(self)

    # -- tasks --------------------------------------------------------------------------------

    def _check_running(self):
        if self._state != "RUN":
            raise ValueError("Pool not running")

    def _function(self, f):
        hit = self._functions.get(id(f))
        if hit is not None and hit[0] is f:
            return hit[1]
        b = _dump_function(f, self._born)
        if len(self._functions) >= 1024:
            self._functions.clear()
        self._functions[id(f)] = (f, b)  # f is kept: its id stays its own
        return b

    def _submit(self, f, mode, args, kwds, channel=0, notify=False, async_=True):
        blob = pickle.dumps((self._function(f), mode, args, kwds), 5)
        return self._core.submit(blob, channel, notify, async_)

    def apply(self, func, args=(), kwds={}):
        """func(*args, **kwds) in a worker; its result, or its exception raised here."""
        if self._state != "RUN":
            raise ValueError("Pool not running")
        blob = pickle.dumps((self._function(func), _APPLY, tuple(args), dict(kwds) if kwds else None), 5)
        ok, payload = self._core.call(blob)  # submit, wait and take in one step
        if ok:
            return pickle.loads(payload)
        raise payload

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        r = ApplyResult(self, callback, error_callback)
        notify = r._event is not None
        try:
            blob = pickle.dumps((self._function(func), _APPLY, tuple(args), dict(kwds)), 5)
        except Exception as e:
            r._failed_now(e)
            return r
        self._handler.start()
        if notify:
            with self._handler.lock:  # registered before the handler can see its answer
                r._id = self._core.submit(blob, 0, True, True)
                self._handler.waiting[r._id] = r
        else:
            r._id = self._core.submit(blob, 0, False, True)
        return r

    def _map_async(self, func, iterable, mode, chunksize, callback, error_callback, wake):
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(iterable), self._processes * 4)
            if extra:
                chunksize += 1
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        if len(iterable) == 0:
            chunksize = 1
        chunks = list(_chunks(iterable, max(1, chunksize)))
        r = MapResult(self, len(chunks), callback, error_callback)
        if not chunks:
            return r
        try:
            fbytes = self._function(func)
            blobs = [pickle.dumps((fbytes, mode, c, None), 5) for c in chunks]
        except Exception as e:
            r._failed_now(e)
            return r
        notify = r._event is not None
        if wake:
            self._handler.start()
        if notify:
            with self._handler.lock:
                for k, b in enumerate(blobs):
                    task = self._core.submit(b, 0, True, wake)
                    r._index[task] = k
                    self._handler.waiting[task] = r
        else:
            r._channel = self._core.open_channel()
            for k, b in enumerate(blobs):
                r._index[self._core.submit(b, r._channel, False, wake)] = k
        return r

    def map(self, func, iterable, chunksize=None):
        """[func(x) for x in iterable], in input order, chunked like multiprocessing's."""
        return self._map_async(func, iterable, _MAP, chunksize, None, None, False).get()

    def starmap(self, func, iterable, chunksize=None):
        return self._map_async(func, iterable, _STARMAP, chunksize, None, None, False).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, _MAP, chunksize, callback, error_callback, True)

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, _STARMAP, chunksize, callback, error_callback, True)

    def _imap(self, func, iterable, chunksize, ordered):
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        fbytes = self._function(func)
        core = self._core

        def submit(chunk, channel):
            return core.submit(pickle.dumps((fbytes, _MAP, chunk, None), 5), channel, False, True)

        it = IMapIterator(self, submit, _chunks(iterable, chunksize), ordered)
        self._iterators.add(it)
        return it

    def imap(self, func, iterable, chunksize=1):
        """func over iterable lazily, in input order (a bounded number of chunks ahead)."""
        return self._imap(func, iterable, chunksize, True)

    def imap_unordered(self, func, iterable, chunksize=1):
        """func over iterable lazily, in completion order."""
        return self._imap(func, iterable, chunksize, False)

    # -- life ------------------------------------------------------------------------------------

    def close(self):
        """No more tasks; join() then waits for those submitted."""
        if self._state == "RUN":
            for it in list(self._iterators):  # their input counts as submitted: send it all
                it._fill(everything=True)
            self._state = "CLOSE"
            self._core.close()

    def join(self):
        """Waits for every task and for the workers to exit (after close or terminate)."""
        if self._state == "RUN":
            raise ValueError("Pool is still running")
        if self._state == "CLOSE":
            self._core.join()
            self._state = "JOINED"
        self._handler.stop()

    def terminate(self):
        """Stops the workers now; tasks not finished fail with parafork.Error."""
        if self._core is None:
            return
        self._state = "TERMINATE"
        self._core.terminate()
        self._handler.stop()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()  # as multiprocessing.Pool does

    def __del__(self):
        if getattr(self, "_core", None) is not None and self._state in ("RUN", "CLOSE"):
            self.terminate()

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self):
        return f"<parafork.Pool state={self._state} pool_size={self._processes}>"

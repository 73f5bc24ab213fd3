"""Process: an object whose methods run in its own forked process; select and Selector over
many processes' messages and other descriptors. On parafork::process and parafork::selector:
requests go through a ring in shared memory, answers and messages come back on a socket, and
the backend's death is seen by its pidfd."""

import mmap
import os
import pickle
import select as _select
import weakref

from . import _core, _parafork

__all__ = ["Process", "Future", "select", "Selector"]

_dumps, _loads = pickle.dumps, pickle.loads
_CALL, _ASK, _PRE_RUN, _POST_RUN, _CALL_FD = 0, 1, 2, 3, 4


def _serve(ref, kind, req, fd=-1):
    """In the backend: runs one request on the (forked copy of the) Process object."""
    self = ref()
    if kind == _CALL_FD:  # the method owns the descriptor
        try:
            name, args, kwargs = _loads(req)
        except BaseException:
            os.close(fd)
            raise
        getattr(self, name)(fd, *args, **kwargs)
        return None
    if kind == _ASK:
        name, args, kwargs = _loads(req)
        return _dumps(getattr(self, name)(*args, **kwargs), 5)
    if kind == _CALL:
        name, args, kwargs = _loads(req)
        getattr(self, name)(*args, **kwargs)
        return None
    if kind == _PRE_RUN:
        self.in_backend = True
        self.pre_run()
        return self._backend_threads  # True: the backend lets the GIL go while it waits
    else:
        self.post_run()
    return None


class Future:
    """The answer to Process.ask: result(timeout=None) waits for it (TimeoutError after
    `timeout` seconds) and returns it, or raises what the method raised (its type, with the
    remote traceback as __cause__), or pf.WorkerDied if the backend died first."""

    __slots__ = ("_f", "_done", "_value", "_error")

    def __init__(self, f):
        self._f = f
        self._done = False
        self._value = None
        self._error = None

    def result(self, timeout=None):
        if not self._done:
            try:
                raw = self._f.get(timeout)
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                self._error, self._done = e, True
                raise
            if raw is None:
                raise TimeoutError("parafork: no answer within the timeout")
            self._value = _loads(raw)
            self._done = True
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout=None):
        """The method's exception (None if it returned)."""
        try:
            self.result(timeout)
        except TimeoutError:
            if not self._done:
                raise
        except Exception:
            pass
        return self._error

    def done(self):
        return self._done or self._f.done()


class Process:
    """Subclass it; its methods run in the backend, a forked copy of the object.

        class Worker(pf.Process):
            def pre_run(self): ...              # in the backend, before its loop
            def square(self, x):
                self.emit(("progress", x))      # a message up to the frontend
                return x * x
        w = Worker(); w.start()
        w.call("square", 3)                     # fire and forget
        w.ask("square", 7).result()             # 49
        w.receive()                             # ("progress", 3)
        w.stop()

    Calls and asks run one at a time, in send order. A method's exception fails its ask's
    future, or (a call) is raised by the next receive(); the backend keeps serving. A backend
    that dies fails pending and later asks with pf.WorkerDied at once. The backend ignores
    Ctrl-C; a Ctrl-C while the frontend waits terminates it and raises KeyboardInterrupt.
    The frontend is used by one thread at a time (the thread that runs a manager loop).
    """

    in_backend = False
    # Set by a subclass whose backend runs Python threads of its own (parafork.valkka's asyncio
    # backend): they then run while the backend waits for requests. They must not emit().
    _backend_threads = False

    def __init__(self, name=None, *, grace=0.2, spin=None):
        self.name = name if name is not None else type(self).__name__
        self._grace, self._spin = grace, spin
        self._native = None

    # ---- backend (override) -------------------------------------------------------------
    def pre_run(self):
        pass

    def post_run(self):
        pass

    def emit(self, obj):
        """In the backend: sends obj (pickled) up to the frontend, which receive()s it."""
        _parafork.emit(_dumps(obj, 5))

    def _attach_array(self, fd, attr, shape, dtype):
        # In the backend: maps the frontend's memfd and names the array as the frontend did.
        import numpy as np
        try:
            dtype = np.dtype(dtype)
            count = 1
            for n in shape:
                count *= n
            nbytes = count * dtype.itemsize
            if os.fstat(fd).st_size < nbytes:
                raise _core.Error("parafork: the shared array's memory is smaller than its shape")
            mm = mmap.mmap(fd, max(nbytes, 1))
        finally:
            os.close(fd)
        setattr(self, attr, np.frombuffer(mm, dtype=dtype, count=count).reshape(shape))

    # ---- frontend -----------------------------------------------------------------------
    def share(self, attr, array):
        """Makes `array`, a pf.SharedArray, self.<attr> on both sides: the backend's is the same
        memory. Before start() the fork shares it; after, its memfd is passed to the backend
        (in send order with the calls). Returns the array."""
        setattr(self, attr, array)
        n = self.__dict__.get("_native")
        if n is not None:
            mem = array
            while mem is not None and not isinstance(mem, _parafork.SharedMemory):
                mem = mem.obj if isinstance(mem, memoryview) else getattr(mem, "base", None)
            import numpy as np
            if mem is None or not array.flags.c_contiguous or \
                    array.ctypes.data != np.frombuffer(mem, dtype=np.uint8).ctypes.data:
                raise TypeError("parafork: share() takes a whole pf.SharedArray, not a slice of one")
            n.call_fd(_dumps(("_attach_array", (attr, array.shape, array.dtype.str), {}), 5), mem.fd())
        return array

    def _live(self):
        n = self.__dict__.get("_native")
        if n is None:
            raise _core.Error(f"parafork: process '{self.name}' was not started")
        return n

    def start(self):
        if self.__dict__.get("_native") is not None:
            raise _core.Error(f"parafork: process '{self.name}' was already started")
        d = self.__dict__
        n = _parafork.Process(lambda kind, req, fd, ref=weakref.ref(self): _serve(ref, kind, req, fd),
                              str(getattr(self, "name", type(self).__name__)), d.get("_grace", 0.2),
                              d.get("_spin"))
        n.start()
        self._native = n

    def call(self, name, *args, **kwargs):
        """Runs self.name(*args, **kwargs) in the backend; does not wait for it."""
        self._live().call(_dumps((name, args, kwargs), 5))

    def ask(self, name, *args, **kwargs):
        """Runs self.name(*args, **kwargs) in the backend; a Future of its value."""
        return Future(self._live().ask(_dumps((name, args, kwargs), 5)))

    def receive(self, block=True, timeout=None):
        """The next message the backend emitted. Waits (at most `timeout` seconds, then
        TimeoutError); block=False raises IndexError when none is there. A call that raised
        in the backend is raised here, in order; a backend that ended with nothing left to
        receive raises pf.WorkerDied (died) or pf.Error (it stopped)."""
        raw = self._live().receive(bool(block), timeout)
        if raw is None:
            if not block:
                raise IndexError("parafork: no message")
            raise TimeoutError("parafork: no message within the timeout")
        return _loads(raw)

    def has_message(self):
        """True when receive() would not wait (a message, a call's error or the end is there)."""
        return self._live().has_message()

    def fileno(self):
        """A descriptor for select.select, poll or selectors, beside any others: readable while
        a message waits (also one already read off the socket while a future waited), when the
        backend sends anything, and for good once it has ended (receive() then says why)."""
        return self._live().ready_fd()

    def stop(self):
        """Stops the backend after the calls sent before (post_run runs), waits for it; the
        exit code. pf.WorkerDied if it died and nothing said so yet."""
        n = self._live()
        return n.join()

    def request_stop(self):
        """stop() without the wait."""
        self._live().stop()

    def join(self):
        return self._live().join()

    def terminate(self):
        """SIGTERM, `grace` seconds, SIGKILL; reaped. Pending asks fail with pf.WorkerDied."""
        n = self.__dict__.get("_native")
        return None if n is None else n.terminate()

    def flush(self):
        self._live().flush()

    def is_alive(self):
        n = self.__dict__.get("_native")
        return n is not None and n.running()

    @property
    def pid(self):
        n = self.__dict__.get("_native")
        return None if n is None or n.pid() < 0 else n.pid()

    @property
    def exitcode(self):
        """None while running; the exit code, or minus the signal that killed it."""
        n = self.__dict__.get("_native")
        return None if n is None else n.exit_status()


def _fd_of(obj):
    return obj if isinstance(obj, int) else obj.fileno()


class Selector:
    """Waits on many processes' messages and any descriptors (ints or objects with fileno())
    at once. A process is ready when receive() would not wait: a message, a call's error, or
    its end. While waiting it also writes held calls and reads answers, so futures progress."""

    def __init__(self):
        self._sel = _parafork.Selector()
        self._ids = {}   # id -> object
        self._keys = {}  # id(object) -> selector id

    def register(self, obj, events=_select.POLLIN):
        if id(obj) in self._keys:
            raise KeyError(f"parafork: {obj!r} is already registered")
        if isinstance(obj, Process):
            i = self._sel.add_process(obj._live())
        else:
            i = self._sel.add_fd(_fd_of(obj), events)
        self._ids[i] = obj
        self._keys[id(obj)] = i
        return i

    def unregister(self, obj):
        i = self._keys.pop(id(obj))
        del self._ids[i]
        self._sel.remove(i)

    def select(self, timeout=None):
        """The ready objects, in registration order; [] when `timeout` seconds passed."""
        return [self._ids[i] for i in self._sel.wait(timeout)]

    def revents(self, obj):
        """What poll(2) reported for a descriptor in the last select (0 for processes)."""
        return self._sel.revents(self._keys[id(obj)])

    def __len__(self):
        return len(self._ids)


def select(objects, timeout=None):
    """The ready ones among `objects` (Processes, descriptors, objects with fileno()); waits
    until one is, or `timeout` seconds ([] then)."""
    s = Selector()
    for o in objects:
        s.register(o)
    return s.select(timeout)

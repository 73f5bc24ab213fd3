"""valkka.multiprocess's API on parafork's message processes: a valkka program runs after
changing its import to ``from parafork.valkka import ...``.

    class MyProcess(MessageProcess):
        def c__ping(self, parameter=None):           # backend: runs on MessageObject("ping")
            self.send_out__(MessageObject("pong", result=parameter))
        def ping(self, parameter=None):              # frontend
            self.sendMessageToBack(MessageObject("ping", parameter=parameter))
    p = MyProcess(name="my-process"); pipe = p.getPipe(); p.start()
    p.ping("x"); safe_select([pipe], [], []); msg = pipe.recv(); msg(), msg["result"]
    p.stop()

What differs from valkka, on purpose: a backend method that raises keeps the backend serving
and the exception is raised by the frontend's next pipe.recv(); a backend that dies makes
recv(), SyncIndex and stop() raise parafork.WorkerDied instead of blocking forever; Ctrl-C is
the frontend's (backends ignore it) and no backend outlives it.
"""

import collections
import errno
import logging
import os
import select
import threading
import weakref

from . import _core
from ._process import Process as _Process
from ._process import Selector as _Selector

__all__ = ["MessageProcess", "MessageObject", "MainContext", "EventGroup", "SyncIndex",
           "NotEnoughEvents", "safe_select"]


def _format_logger(cls, level=logging.INFO):
    """Gives the class's logger a handler printing 'name - level - message' (development)."""
    logger = logging.getLogger(cls.__name__)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s - %(levelname)s - %(message)s"))
        logger.addHandler(handler)
    if level is not None:
        logger.setLevel(level)


class MessageObject:
    """A command and its keyword parameters: msg() is the command, msg["key"] a parameter."""

    def __init__(self, command, **kwargs):
        self.command = command
        self.kwargs = kwargs

    def __str__(self):
        return "<MessageObject: %s: %s>" % (self.command, self.kwargs)

    __repr__ = __str__

    def __call__(self):
        return self.command

    def __getitem__(self, key):
        return self.kwargs[key]


class _Return:  # what return_out__ sends: read by returnFromBack, not by the pipe
    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj


class _Pipe:
    """What getPipe() returns: the frontend end of a process's messages. select() it (plain
    select.select, safe_select or pf.select), then recv()."""

    def __init__(self, process):
        self._p = weakref.ref(process)
        self._ep = None  # made by fileno(): the process's descriptor and _ev, in one epoll
        self._ev = -1    # readable while returnFromBack holds messages for recv()

    def _process(self):
        p = self._p()
        if p is None:
            raise _core.Error("parafork.valkka: the process of this pipe is gone")
        return p

    def fileno(self):
        """Readable while recv() would not wait: a message waits (on the socket, in the
        frontend, or held by returnFromBack), or the backend has ended."""
        if self._ep is None:
            p = self._process()
            ep = select.epoll()
            try:
                ep.register(p.fileno(), select.EPOLLIN)
                ev = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            except BaseException:
                ep.close()
                raise
            ep.register(ev, select.EPOLLIN)
            self._ep, self._ev = ep, ev
            weakref.finalize(self, _close_pipe_fds, ep, ev)
            self._held_changed(p)
        return self._ep.fileno()

    def _held_changed(self, p):
        if self._ev < 0:
            return
        if p._held:
            os.eventfd_write(self._ev, 1)
        else:
            try:
                os.eventfd_read(self._ev)
            except BlockingIOError:
                pass

    def recv(self):
        return self._process()._recv()

    def poll(self, timeout=0.0):
        p = self._process()
        if p._held:
            return True
        return bool(safe_select([self], [], [], timeout=timeout)[0])

    def send(self, obj):
        self._process().sendMessageToBack(obj)

    def ready(self):  # a message (or the end) is in the frontend already
        p = self._process()
        return bool(p._held) or p.has_message()


def _close_pipe_fds(ep, ev):
    ep.close()
    os.close(ev)


_sync = threading.local()  # the processes messaged inside each open SyncIndex


class MessageProcess(_Process):
    """A process with frontend methods (run in the main process) and backend methods (c__name,
    run in the forked backend when the frontend sends MessageObject("name", ...))."""

    timeout = 1.0

    def __init__(self, name="MessageProcess"):
        super().__init__(name)
        self.pre = self.__class__.__name__ + "." + self.name
        self.logger = logging.getLogger(self.pre)
        self._pipe = _Pipe(self)
        self._held = collections.deque()  # messages read while returnFromBack looked for its answer
        self.sigint = True
        self.loop = True

    formatLogger = classmethod(_format_logger)

    def __str__(self):
        return "<" + self.pre + ">"

    def setDebug(self):
        self.logger.setLevel(logging.DEBUG)

    # ---- backend ----------------------------------------------------------------------------
    def preRun__(self):
        """Backend: after the fork, before the loop (open what must not be forked)."""

    def postRun__(self):
        """Backend: after the loop, before the backend exits."""

    def pre_run(self):
        self.preRun__()

    def post_run(self):
        self.postRun__()

    def routeMainPipe__(self, obj):
        method = getattr(self, "c__%s" % obj.command, None)
        if method is None:
            self.logger.warning("routeMainPipe : no such method c__%s", obj.command)
            return
        method(**obj.kwargs)

    def send_out__(self, obj):
        """Backend: sends obj up to the frontend, which reads it with getPipe().recv()."""
        self.emit(obj)

    def return_out__(self, obj):
        """Backend: the answer the frontend's returnFromBack() waits for."""
        self.emit(_Return(obj))

    def c__ping(self, lis=[]):  # noqa: B006 - valkka's demo method, as it is
        print("c__ping:", lis)
        self.send_out__(MessageObject("pong", lis=[1, 2, 3]))

    # ---- frontend ---------------------------------------------------------------------------
    def ignoreSIGINT(self):
        """Kept for valkka programs: backends always ignore SIGINT (Ctrl-C is the frontend's)."""
        self.sigint = False

    def getPipe(self):
        return self._pipe

    def sendMessageToBack(self, message):
        """Runs c__<command>(**kwargs) in the backend; None asks it to stop."""
        if message is None:
            self.requestStop()
            return
        stack = getattr(_sync, "stack", None)
        if stack:
            stack[-1].append(self)
        self.call("routeMainPipe__", message)

    def _recv(self):
        if self._held:
            msg = self._held.popleft()
            if not self._held:
                self._pipe._held_changed(self)
            return msg
        msg = self.receive()
        while isinstance(msg, _Return):  # an answer nobody waits for: not a pipe message
            msg = self.receive()
        return msg

    def returnFromBack(self):
        """Waits for the backend's next return_out__ value; other messages stay for recv()."""
        while True:
            msg = self.receive()
            if isinstance(msg, _Return):
                return msg.obj
            self._held.append(msg)
            if len(self._held) == 1:
                self._pipe._held_changed(self)

    def go(self):
        self.start()

    def requestStop(self):
        """Asks the backend to stop after what was sent before; does not wait."""
        if self.is_alive():
            self.request_stop()

    def waitStop(self):
        """Waits for the backend to exit (after requestStop)."""
        if self.__dict__.get("_native") is not None:
            self.join()

    def stop(self):
        self.requestStop()
        self.waitStop()

    def shareArray(self, attr, shape, dtype=float):
        """A numpy array in shared memory made here, in the frontend, as self.<attr>, and the
        same memory as self.<attr> in the backend, before or after start() (a memfd: nothing
        in /dev/shm, freed with the last process holding it)."""
        from ._shared import SharedArray
        return self.share(attr, SharedArray(shape, dtype))

    def sendPing(self, lis):
        self.sendMessageToBack(MessageObject("ping", lis=lis))


# ---- select -------------------------------------------------------------------------------------

def _fd(obj):
    return obj if isinstance(obj, int) else obj.fileno()


def safe_select(l1, l2, l3, timeout=None):
    """select.select that ignores EINTR ([[], [], []] then) and knows message pipes: a pipe is
    readable when its process has a message (read off its socket or not), a call's error,
    or has ended; a plain select.select sees only the socket."""
    pipes = [o for o in l1 if isinstance(o, _Pipe)]
    if not pipes:
        try:
            return select.select(l1, l2, l3, *(() if timeout is None else (timeout,)))
        except OSError as e:
            if e.errno != errno.EINTR:
                raise
            return [[], [], []]
    now = [p for p in pipes if p._process()._held]
    if now:
        return [now, [], []]
    sel = _Selector()
    ids = {}
    for o in l1:
        i = sel._sel.add_process(o._process()._live()) if isinstance(o, _Pipe) else sel._sel.add_fd(_fd(o), select.POLLIN)
        ids[i] = (o, 0)
    for o in l2:
        ids[sel._sel.add_fd(_fd(o), select.POLLOUT)] = (o, 1)
    for o in l3:
        ids[sel._sel.add_fd(_fd(o), select.POLLPRI)] = (o, 2)
    out = [[], [], []]
    for i in sel._sel.wait(timeout):
        o, k = ids[i]
        out[k].append(o)
    return out


# ---- synchronisation ----------------------------------------------------------------------------

class NotEnoughEvents(BaseException):
    pass


class Event:
    """An event frontend and backend share (made before the fork): an eventfd."""

    def __init__(self):
        self._fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def set(self):
        os.eventfd_write(self._fd, 1)

    def clear(self):
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass

    def is_set(self):
        return bool(select.select([self._fd], [], [], 0)[0])

    def fileno(self):
        return self._fd

    def wait(self, timeout=None, watch=()):
        """True once set; False when `timeout` passed. A process in `watch` that ends first
        raises parafork.WorkerDied (it died) or parafork.Error (it stopped)."""
        p = select.poll()
        p.register(self._fd, select.POLLIN)
        pidfds = {}
        try:
            for proc in watch:
                if proc.is_alive():
                    try:
                        fd = os.pidfd_open(proc.pid)
                    except ProcessLookupError:
                        continue
                    pidfds[fd] = proc
                    p.register(fd, select.POLLIN)
            ms = None if timeout is None else max(0, int(timeout * 1000))
            for fd, _ in p.poll(ms):
                if fd == self._fd:
                    return True
            if self.is_set():
                return True
            for fd, _ in p.poll(0):
                proc = pidfds.get(fd)
                if proc is not None:
                    proc.join()  # raises WorkerDied if it died
                    raise _core.Error(f"parafork.valkka: process '{proc.name}' ended before the event was set")
            return False
        finally:
            for fd in pidfds:
                os.close(fd)

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        self.close()

    def __getstate__(self):
        raise TypeError("parafork.valkka.Event is shared by fork: make it before start(), do not pickle it")


class EventGroup:
    """n events made before the fork; the frontend reserves one by index, the backend sets it."""

    def __init__(self, n=10, event_class=Event):
        self.events = [event_class() for _ in range(n)]
        self.index = list(range(n))

    def __str__(self):
        return "<EventGroup: " + " ".join(("f" if i in self.index else "R") + str(i)
                                          for i in range(len(self.events))) + " >"

    def __len__(self):
        return len(self.events)

    def set(self, i):
        self.events[i].set()

    def reserve(self):
        try:
            index = self.index.pop(0)
        except IndexError:
            raise NotEnoughEvents from None
        event = self.events[index]
        event.clear()
        return index, event

    def release(self, event):
        try:
            index = self.events.index(event)
        except ValueError:
            raise ValueError("event not in this Eventgroup") from None
        self.index.append(index)

    def release_ind(self, index):
        self.index.append(index)

    def fromIndex(self, i):
        return self.events[i]

    def asIndex(self, event):
        return self.events.index(event)


class SyncIndex:
    """with SyncIndex(eg) as i: send a message carrying i; the block's end waits until the
    backend set event i. It watches the processes messaged inside the block: one that dies
    meanwhile raises parafork.WorkerDied, never a hang."""

    def __init__(self, event_group, timeout=None):
        self.eg = event_group
        self.timeout = timeout

    def __enter__(self):
        self.index, self.event = self.eg.reserve()
        if not hasattr(_sync, "stack"):
            _sync.stack = []
        _sync.stack.append([])
        return self.index

    def __exit__(self, exc_type, exc, tb):
        watched = _sync.stack.pop()
        try:
            if exc_type is None and not self.event.wait(self.timeout, watched):
                raise TimeoutError("parafork.valkka: SyncIndex timed out")
        finally:
            self.eg.release_ind(self.index)
        return False


# ---- the main process ---------------------------------------------------------------------------

class _AuxPipe:
    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


class MainContext:
    """The main process: subclass with startProcesses, startThreads, close and __call__;
    __init__ forks (startProcesses) before it starts threads."""

    def __init__(self):
        self.pre = self.__class__.__name__
        self.logger = logging.getLogger(self.pre)
        r, w = os.pipe()
        self.aux_pipe_read, self.aux_pipe_write = _AuxPipe(r), _AuxPipe(w)
        self.closed = False
        self.thread = None
        self.startProcesses()
        self.startThreads()

    formatLogger = classmethod(_format_logger)

    def startProcesses(self):
        raise NotImplementedError("startProcesses")

    def startThreads(self):
        raise NotImplementedError("startThreads")

    def close(self):
        raise NotImplementedError("close")

    def __call__(self):
        raise NotImplementedError("__call__")

    def runAsThread(self):
        """Runs __call__ in a thread; stopThread() ends it through aux_pipe_read."""
        self.thread = threading.Thread(target=self.__call__)
        self.thread.start()

    def stopThread(self):
        os.write(self.aux_pipe_write.fd, b"x")
        self.thread.join()
        self._close_aux()

    def _close_aux(self):
        for p in (self.aux_pipe_read, self.aux_pipe_write):
            if p.fd >= 0:
                os.close(p.fd)
                p.fd = -1

    def __del__(self):
        self._close_aux()

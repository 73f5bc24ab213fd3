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

import asyncio
import collections
import errno
import io
import logging
import os
import pickle
import select
import struct
import threading
import weakref

from . import _core, _parafork
from ._process import Process as _Process
from ._process import Selector as _Selector

__all__ = ["MessageProcess", "AsyncBackMessageProcess", "MessageObject", "MainContext",
           "EventGroup", "SyncIndex", "NotEnoughEvents", "safe_select"]


def _format_logger(cls, level=logging.INFO):
    """Gives the class's logger a handler printing 'name - level - message' (development)."""
    logger = logging.getLogger(cls.__name__)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s - %(levelname)s - %(message)s"))
        logger.addHandler(handler)
    if level is not None:
        logger.setLevel(level)


def _set_level(ev, ready):
    """A non-blocking eventfd (or -1: none yet) made readable while `ready`, drained when not."""
    if ev < 0:
        return
    if ready:
        os.eventfd_write(ev, 1)
    else:
        try:
            os.eventfd_read(ev)
        except BlockingIOError:
            pass


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


class _Failure:  # an asyncio backend's c__ method raised: sent in order with its messages
    __slots__ = ("text", "task")

    def __init__(self, text, task):
        self.text, self.task = text, task

    def __getstate__(self):
        return (self.text, self.task)

    def __setstate__(self, state):
        self.text, self.task = state


class _ProcessPipe:
    """A pipe object that refers to its process weakly (the process owns the pipe)."""

    def __init__(self, process):
        self._p = weakref.ref(process)

    def _process(self):
        p = self._p()
        if p is None:
            raise _core.Error("parafork.valkka: the process of this pipe is gone")
        return p


class _Pipe(_ProcessPipe):
    """What getPipe() returns: the frontend end of a process's messages. select() it (plain
    select.select, safe_select or pf.select), then recv()."""

    def __init__(self, process):
        super().__init__(process)
        self._ep = None  # made by fileno(): the process's descriptor and _ev, in one epoll
        self._ev = -1    # readable while returnFromBack holds messages for recv()

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
        _set_level(self._ev, p._held)

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
    _route = "routeMainPipe__"  # the backend method a MessageObject goes to

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
        self.call(self._route, message)

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


# ---- the asyncio backend ------------------------------------------------------------------------

_FRAME = struct.Struct("<Q")  # a message on an asyncio backend's pipe: its length, its pickle
_READ = 1 << 16


class _AsyncPipe(_ProcessPipe):
    """What AsyncBackMessageProcess.getPipe() returns: the frontend's end of the pipe the
    backend's event loop writes its messages to. select() it (or getReadFd()), then recv()."""

    def __init__(self, process):
        super().__init__(process)
        self._r = self._w = -1
        self._buf = bytearray()
        self._inbox = collections.deque()  # decoded, in order: messages and return_out__ answers
        self._waiting = 0                  # messages (not answers) in _inbox
        self._eof = False
        self._ep = None
        self._ev = -1
        self._pidfd = -1
        self._ep_process = False  # the process's descriptor is in _ep
        self._fin = None

    def _open(self):
        """Makes the pipe (at getReadFd() or start(), whichever comes first). Its ends, and
        the descriptors select() uses, are private to this process: no child the library
        forks holds them (the backend's own write end is handed over at its start)."""
        if self._r >= 0 or self._fin is not None:
            return
        r, w = os.pipe()
        os.set_blocking(r, False)
        self._r, self._w = r, w
        self._fin = weakref.finalize(self, _close_async_pipe, self.__dict__)
        _parafork.private_fd(r, True)
        _parafork.private_fd(w, True)

    def _starting(self):  # the backend, about to be forked, keeps the write end
        self._open()
        _parafork.private_fd(self._w, False)

    def _started(self, pid):  # in the frontend, once the backend has it
        os.close(self._w)
        self._w = -1
        if pid is not None:
            self._pidfd = os.pidfd_open(pid)  # not reaped yet: this is our backend
            _parafork.private_fd(self._pidfd, True)
        if self._ep is not None:
            self.fileno()  # the process's descriptor joins the epoll

    def _drain_until_exit(self):
        """Reads the pipe into the frontend until the backend has exited: a backend waiting
        for room to send must not keep stop() waiting for it."""
        while True:
            waiter = select.poll()
            waiter.register(self._pidfd, select.POLLIN)
            if self._r >= 0 and not self._eof:
                waiter.register(self._r, select.POLLIN)
            ready = {fd for fd, _ in _interruptible(waiter, self._process())}
            self._fill(everything=True)
            if self._pidfd in ready:
                return

    # -- frontend --
    def fileno(self):
        """Readable while recv() would not wait: a message is in the pipe or here already, a
        backend method failed, or the backend has ended. The same descriptor before and
        after start()."""
        if self._ep is None:
            self._open()
            ep = select.epoll()
            try:
                ep.register(self._r, select.EPOLLIN)
                ev = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            except BaseException:
                ep.close()
                raise
            self._ep, self._ev, self._ep_process = ep, ev, False
            _parafork.private_fd(ep.fileno(), True)
            _parafork.private_fd(ev, True)
            ep.register(ev, select.EPOLLIN)
            self._signal()
        if not self._ep_process:
            p = self._p()
            if p is not None and p.__dict__.get("_native") is not None:
                self._ep.register(p.fileno(), select.EPOLLIN)
                self._ep_process = True
        return self._ep.fileno()

    getReadFd = fileno

    def getWriteFd(self):
        raise io.UnsupportedOperation(
            "parafork.valkka: messages go to the backend with sendMessageToBack (or pipe.send), "
            "not through a descriptor")

    def send(self, obj):
        self._process().sendMessageToBack(obj)

    def poll(self, timeout=0.0):
        if self._waiting:
            return True
        return bool(safe_select([self], [], [], timeout=timeout)[0])

    def recv(self):
        """The backend's next send_out__ message. Waits; raises what a backend method raised,
        and pf.WorkerDied (died) or pf.Error (stopped) once the backend has ended and nothing
        is left."""
        p = self._process()
        while True:
            if self._waiting:
                for i, obj in enumerate(self._inbox):
                    if not isinstance(obj, _Return):
                        del self._inbox[i]
                        self._waiting -= 1
                        self._signal()
                        if isinstance(obj, _Failure):
                            raise _core._task_failure(obj.text, p.pid, obj.task)
                        return obj
            self._wait(p)

    def _answer(self):
        p = self._process()
        while True:
            for i, obj in enumerate(self._inbox):
                if isinstance(obj, (_Return, _Failure)):
                    del self._inbox[i]
                    if isinstance(obj, _Return):
                        return obj.obj
                    self._count()
                    raise _core._task_failure(obj.text, p.pid, obj.task)  # no answer is coming
            self._wait(p)

    def _wait(self, p):
        """Waits until the pipe brings something (decoded into _inbox) or the process has
        something to say: an emitted message is queued; an error, a death or the end raises."""
        if self._fill():
            return
        waiter = select.poll()
        if not self._eof:
            waiter.register(self._r, select.POLLIN)
        pfd = p.fileno()
        waiter.register(pfd, select.POLLIN)
        ready = {fd for fd, _ in _interruptible(waiter, p)}
        if self._fill() or pfd not in ready:
            return
        try:
            # A method's error, a message emitted, or (ended) WorkerDied / the end, raised.
            msg = p.receive(block=not p.is_alive() and not p.has_message(), timeout=None)
        except IndexError:
            return  # nothing after all
        self._inbox.append(msg)
        self._count()

    def _fill(self, everything=False):
        """Reads what the pipe holds now, until a message is whole (or all of it); True if
        a message was."""
        if self._r < 0 or self._eof:
            return False
        before = len(self._inbox)
        while everything or len(self._inbox) == before:
            try:
                chunk = os.read(self._r, _READ)
            except BlockingIOError:
                break
            if not chunk:
                self._eof = True  # the backend has let go of it: its process says why
                break
            self._buf += chunk
            self._decode()
        return len(self._inbox) > before

    def _decode(self):
        buf, off = self._buf, 0
        while len(buf) - off >= _FRAME.size:
            (n,) = _FRAME.unpack_from(buf, off)
            end = off + _FRAME.size + n
            if len(buf) < end:
                break
            try:
                obj = pickle.loads(memoryview(buf)[off + _FRAME.size:end])
            except Exception as e:
                raise _core.Error(f"parafork.valkka: a corrupt message from the backend: {e}") from None
            self._inbox.append(obj)
            off = end
        del buf[:off]
        self._count()

    def _count(self):
        self._waiting = sum(1 for o in self._inbox if not isinstance(o, _Return))
        self._signal()

    def _signal(self):
        _set_level(self._ev, self._waiting)


def _interruptible(waiter, p):
    """waiter.poll(); a Ctrl-C meanwhile terminates the backend (as Process's waits do)."""
    try:
        return waiter.poll()
    except KeyboardInterrupt:
        p.terminate()
        raise


def _close_async_pipe(d):
    if d["_ep"] is not None:
        _parafork.private_fd(d["_ep"].fileno(), False)
        d["_ep"].close()
        d["_ep"] = None
    for k in ("_r", "_w", "_ev", "_pidfd"):
        if d[k] >= 0:
            _parafork.private_fd(d[k], False)
            os.close(d[k])
            d[k] = -1


class _Flow(asyncio.Protocol):
    """The backend's side of the pipe: send_out__ waits while the frontend is behind."""

    def __init__(self):
        self.room = asyncio.Event()
        self.room.set()
        self.closed = asyncio.Event()
        self.lost = None

    def pause_writing(self):
        self.room.clear()

    def resume_writing(self):
        self.room.set()

    def connection_lost(self, exc):
        self.lost = exc or BrokenPipeError("parafork.valkka: the pipe to the frontend is closed")
        self.room.set()
        self.closed.set()


class AsyncBackMessageProcess(MessageProcess):
    """A MessageProcess whose backend runs an asyncio event loop: c__ methods are coroutines
    (`async def c__name`), run one at a time in send order on that loop, which keeps running
    between messages (tasks made with create_task go on meanwhile). send_out__ is a coroutine;
    the frontend reads with getPipe().recv(), selects on the pipe or getPipe().getReadFd().

    What differs from valkka, on purpose: a c__ coroutine that raises fails that message (the
    frontend's next recv() raises it) and the loop keeps serving; a backend that dies makes
    recv() and returnFromBack() raise parafork.WorkerDied instead of blocking forever. The loop
    runs in a thread of the backend (its main thread serves the frontend's requests), so
    loop.add_signal_handler is not available there."""

    _backend_threads = True
    _route = "_route_async__"

    def __init__(self, name="AsyncMessageProcess"):
        super().__init__(name)
        self._pipe = _AsyncPipe(self)
        self._aloop = None
        self._athread = None

    def start(self):
        if self.__dict__.get("_native") is not None:
            return super().start()  # raises: started already
        self._pipe._starting()
        try:
            super().start()
        finally:
            self._pipe._started(self.pid)

    def waitStop(self):
        """Waits for the backend to exit (after requestStop); what it still sends is kept
        for recv()."""
        if self.__dict__.get("_native") is not None:
            self._pipe._drain_until_exit()
            self.join()

    def getReadFd(self):
        return self._pipe.getReadFd()

    def getWriteFd(self):
        return self._pipe.getWriteFd()

    def returnFromBack(self):
        """Waits for the backend's next return_out__ value; messages stay for recv()."""
        return self._pipe._answer()

    # ---- backend ----------------------------------------------------------------------------
    async def asyncPre__(self):
        """Backend coroutine: on the loop, before the first message (after preRun__)."""

    async def asyncPost__(self):
        """Backend coroutine: on the loop, after the last message (before postRun__)."""

    async def c__ping(self, lis=[]):  # noqa: B006 - valkka's demo method, as it is
        print("c__ping:", lis)
        await self.send_out__(MessageObject("pong", lis=[1, 2, 3]))

    async def send_out__(self, obj):
        """Backend coroutine: sends obj to the frontend's getPipe().recv(); waits only while
        the frontend is that far behind (the pipe and 64 KiB here are full)."""
        self._write(obj)
        if not self._flow.room.is_set():
            await self._flow.room.wait()
        if self._flow.lost is not None:
            raise self._flow.lost

    def return_out__(self, obj):
        """Backend: the answer the frontend's returnFromBack() waits for (from the loop, or
        from any thread of the backend)."""
        if threading.current_thread() is self._athread:
            self._write(_Return(obj))
        else:
            self._aloop.call_soon_threadsafe(self._write, _Return(obj))

    def _write(self, obj):
        if self._flow.lost is not None:
            raise self._flow.lost
        data = pickle.dumps(obj, 5)
        self._transport.writelines((_FRAME.pack(len(data)), data))

    async def routeMainPipe__(self, obj):
        method = getattr(self, "c__%s" % obj.command, None)
        if method is None:
            self.logger.warning("routeMainPipe : no such method c__%s", obj.command)
            return
        r = method(**obj.kwargs)
        if asyncio.iscoroutine(r) or isinstance(r, asyncio.Future):
            await r

    async def _routed(self, obj):
        # Whatever the method raises is this message's failure, never the loop's: it goes to
        # the frontend on the pipe, in order with the messages sent before it.
        try:
            await self.routeMainPipe__(obj)
        except BaseException as e:  # noqa: BLE001 - raised by the frontend's recv()
            try:
                self._write(_Failure(_core._encode_failure(e), "c__%s" % obj.command))
            except BaseException as again:  # noqa: BLE001 - the pipe is gone: fail the request
                return again
        return None

    def _route_async__(self, obj):  # the backend's main thread: one message, on the loop
        with self._alock:
            if self._adead:
                raise _core.Error("parafork.valkka: the backend's event loop has ended")
            f = asyncio.run_coroutine_threadsafe(self._routed(obj), self._aloop)
            self._acurrent = f
        e = f.result()
        if e is not None:
            try:
                raise e
            finally:
                e = None

    def pre_run(self):
        pipe = self._pipe
        pipe._fin.detach()  # the frontend's to close; the fork closed all but the write end
        # (its epoll object stays referenced: closing it here would close whatever reuses
        # the number now)
        w, pipe._w, pipe._r, pipe._pidfd, pipe._ev = pipe._w, -1, -1, -1, -1
        _parafork.private_fd(w, True)  # not for children the backend forks
        self.preRun__()
        self._alock = threading.Lock()
        self._adead = False
        self._acurrent = None
        self._astarted = None
        ready = threading.Event()
        self._athread = threading.Thread(target=self._async_main, args=(w, ready),
                                         name=self.name + "-asyncio", daemon=True)
        self._athread.start()
        ready.wait()
        if self._astarted is not None:
            raise self._astarted

    def _async_main(self, w, ready):
        loop = asyncio.new_event_loop()  # the backend's own: never the frontend's copy
        asyncio.set_event_loop(loop)
        self._aloop = loop
        try:
            try:
                loop.run_until_complete(self._async_begin(w))
            except BaseException as e:  # noqa: BLE001 - start() of the backend fails with it
                self._astarted = e
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            with self._alock:
                self._adead = True
                f = self._acurrent
            if f is not None and not f.done():
                f.set_exception(_core.Error("parafork.valkka: the backend's event loop has ended"))

    async def _async_begin(self, w):
        loop = asyncio.get_running_loop()
        self._transport, self._flow = await loop.connect_write_pipe(_Flow, open(w, "wb", buffering=0))
        try:
            await self.asyncPre__()
        except Exception as e:  # noqa: BLE001 - as valkka: logged, the loop starts anyway
            self.logger.critical("asyncPre__ failed with '%s': don't call anything that requires "
                                 "intercom with the main loop", e)

    async def _async_end(self):
        try:
            await self.asyncPost__()
        finally:
            # What was sent goes out before the backend exits, unless the frontend has stopped
            # reading: then it is dropped after `timeout` seconds, not waited for forever.
            self._transport.close()
            try:
                await asyncio.wait_for(self._flow.closed.wait(), self.timeout)
            except asyncio.TimeoutError:
                self.logger.warning("%d bytes of messages not read by the frontend were dropped",
                                    self._transport.get_write_buffer_size())
                self._transport.abort()

    def post_run(self):
        try:
            with self._alock:
                alive = not self._adead
            if alive:
                try:
                    asyncio.run_coroutine_threadsafe(self._async_end(), self._aloop).result()
                finally:
                    self._aloop.call_soon_threadsafe(self._aloop.stop)
                    self._athread.join()
        finally:
            self.postRun__()


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

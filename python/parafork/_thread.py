"""Thread and Generator: a function, or a generator, run in a forked child, with extract/merge
of globals back into the caller (snakefish's model)."""

import inspect
import os
import pickle
import sys

from . import _core, _parafork
from ._channel import Channel

__all__ = ["Thread", "Generator", "timestamp", "timestamp_serialized"]

_inherited = []  # Thread handles dropped in a child that inherited them (see Thread.__del__)

timestamp = _parafork.timestamp
timestamp_serialized = _parafork.timestamp_serialized


def _globals_of(f):
    g = getattr(f, "__globals__", None)
    return g if isinstance(g, dict) else sys.modules["__main__"].__dict__


def _outcome(call, spill=False):
    """In the child: (True, value) or (False, the failure as text), pickled; never raises for
    the function's own exception, so extract still runs after it (as snakefish does). With
    `spill` a large value's buffers go by memfd (read back by load_result, see snakefish.cpp)."""
    try:
        return _pickle_outcome(call, spill)
    except BaseException as e:  # noqa: BLE001 - reported to the caller, whatever it is
        return pickle.dumps((False, _core._encode_failure(e)), 5)


def _pickle_outcome(call, spill):
    y = call()
    try:
        return _parafork.pickle_result((True, y)) if spill else pickle.dumps((True, y), 5)
    except Exception as e:
        raise _core._ResultNotPicklable(f"{type(y).__name__} result: {type(e).__name__}: {e}") from e


class Thread:
    """f(*args, **kwargs) in a forked child; its value comes back pickled.

    The child is forked at start(), so f may be a lambda or a closure and sees everything the
    caller had. extract(globals) runs in the child after f (also when f raised) and returns
    what to send back (picklable); merge(globals, extracted) runs in the caller at join. The
    globals are f's module's (`globals=` chooses another dict). join() waits; a child that
    dies is pf.WorkerDied (pid, signal, exit code), raised at once, never a hang. result()
    returns f's value or raises f's exception (its remote traceback as __cause__).
    """

    def __init__(self, f, extract=None, merge=None, *, args=(), kwargs=None, globals=None):
        if (extract is None) != (merge is None):
            raise TypeError("parafork.Thread: extract and merge go together")
        if not callable(f):
            raise TypeError("parafork.Thread: f must be callable")
        self._f, self._args, self._kwargs = f, tuple(args), dict(kwargs or {})
        self._extract, self._merge = extract, merge
        self._globals = globals
        self._merged = False
        self._outcome = None
        # The callables the extension keeps must not refer to self: it cannot show the cycle
        # to the garbage collector, and a dropped Thread must stop its child at once.
        f, args, kwargs = self._f, self._args, self._kwargs
        g = self._g
        body = lambda: _outcome(lambda: f(*args, **kwargs), True)  # noqa: E731
        extract_body = None if extract is None else (lambda: pickle.dumps(extract(g()), 5))
        self._t = _parafork.Thread(body, extract_body)
        self._owner = os.getpid()

    def __del__(self):
        # A copy inherited by a forked child must not stop the caller's child when dropped
        # there (its pid is a sibling's): such copies are kept until that process ends.
        try:
            if getattr(self, "_owner", None) not in (None, os.getpid()):
                _inherited.append(self._t)
        except Exception:  # interpreter shutdown
            pass

    @property
    def _g(self):
        chosen, f = self._globals, self._f
        return (lambda: chosen) if chosen is not None else (lambda: _globals_of(f))

    def start(self):
        """Forks the child. Raises pf.Error if already started."""
        self._t.start()

    def join(self):
        """Waits for the child and merges. Raises WorkerDied if it died, not f's exception."""
        self._t.join()
        self._finish()

    def try_join(self):
        """join() if the child has finished (True), else False at once."""
        if not self._t.try_join():
            return False
        self._finish()
        return True

    def _finish(self):
        if self._merged:
            return
        self._merged = True
        x = self._t.extracted()
        if self._merge is not None and x is not None:
            self._merge(self._g(), pickle.loads(x))

    def is_alive(self):
        return self._t.is_alive()

    @property
    def pid(self):
        p = self._t.pid()
        return p if p > 0 else None

    @property
    def started(self):
        return self._t.started()

    @property
    def exit_status(self):
        """After join: the exit code, or minus the signal that killed the child."""
        return self._t.exit_status()

    def result(self):
        """f's value (joins first); raises f's exception."""
        self.join()
        if self._outcome is None:
            self._outcome = self._t.load_result()
        ok, v = self._outcome
        if ok:
            return v
        raise _core._task_failure(v, self.pid, "thread")


_NEXT, _STOP = b"n", b"s"
_VALUE, _END, _RAISED = 0, 1, 2


def _serve(f, args, kwargs, cmd, data):  # in the child: one value per request, until told to stop
    gen = f(*args, **kwargs)
    while cmd.receive_bytes() != _STOP:
        try:
            msg = (_VALUE, next(gen))
        except StopIteration:
            msg = (_END, None)
        except BaseException as e:  # noqa: BLE001 - raised again by the caller's next()
            msg = (_RAISED, _core._encode_failure(e))
        try:
            payload = pickle.dumps(msg, 5)
        except Exception as e:
            bad = _core._ResultNotPicklable(f"{type(msg[1]).__name__} value: {type(e).__name__}: {e}")
            payload = pickle.dumps((_RAISED, _core._encode_failure(bad)), 5)
        data.send_bytes(payload)


class Generator:
    """A generator function run in a forked child, one value per request.

    start() forks; next() asks the child for its next value and waits for it (block=False:
    IndexError if it is not there yet; ask again later); the end is StopIteration, an exception
    in the generator is raised by next() where it happened. join() tells the child to stop
    (an endless generator is fine), runs extract there and merge here, as Thread. Values travel
    through a Channel of `size` bytes (larger values stream through it). A child that dies is
    pf.WorkerDied from next() or join(), never a hang. Also an iterator: `for v in g`.
    """

    def __init__(self, f, extract=None, merge=None, *, args=(), kwargs=None, globals=None, size=1 << 20):
        if not inspect.isgeneratorfunction(f):
            raise TypeError("parafork.Generator: f must be a generator function")
        self._f, self._args, self._kwargs = f, tuple(args), dict(kwargs or {})
        self._cmd = Channel(4096)
        self._data = Channel(size)
        self._asked = False
        self._stopped = False
        self._thread = Thread(_serve, extract, merge, args=(f, self._args, self._kwargs, self._cmd, self._data),
                              globals=globals if globals is not None else _globals_of(f))

    def start(self):
        self._thread.start()

    def next(self, block=True):
        if not self._thread.started:
            raise _core.Error("parafork.Generator: not started")
        if self._stopped:
            if self._thread._t.joined():
                self._thread.join()  # a child that died says so again
            raise StopIteration
        if not self._asked:
            self._cmd.send_bytes(_NEXT)
            self._asked = True
        try:
            raw = _parafork.receive_watching(self._data._ch, self._thread._t, bool(block))
        except _core.Error:
            self._release()  # the child is gone
            raise
        if raw is None:
            raise IndexError("parafork.Generator: the next value is not ready yet")
        self._asked = False
        kind, v = pickle.loads(raw)
        if kind == _VALUE:
            return v
        if kind == _END:
            raise StopIteration
        raise _core._task_failure(v, self._thread.pid, "generator")

    def __iter__(self):
        return self

    def __next__(self):
        return self.next(True)

    def _release(self):
        # The child is gone: let the channels go now, not whenever the object is collected.
        self._stopped = True
        self._cmd.dispose()
        self._data.dispose()

    def _stop(self):
        if not self._stopped and self._thread.started:
            self._stopped = True
            self._cmd.send_bytes(_STOP)

    def join(self):
        """Stops the generator, waits for the child, merges."""
        if not self._thread.started:
            raise _core.Error("parafork.Generator: not started")
        self._stop()
        if not self._thread._t.joined():
            try:
                _parafork.join_draining(self._data._ch, self._thread._t)
            finally:
                self._release()
        self._thread.join()

    def try_join(self):
        if not self._thread.started:
            raise _core.Error("parafork.Generator: not started")
        self._stop()
        if self._thread._t.joined():
            self._thread.join()
            return True
        try:
            while True:
                self._data.receive_bytes(False)  # values still coming are dropped
        except (IndexError, _parafork.ChannelClosed):
            pass
        try:
            if not self._thread.try_join():
                return False
        except BaseException:
            self._release()
            raise
        self._release()
        return True

    def is_alive(self):
        return self._thread.is_alive()

    @property
    def pid(self):
        return self._thread.pid

    @property
    def started(self):
        return self._thread.started

    @property
    def exit_status(self):
        return self._thread.exit_status

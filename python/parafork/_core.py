"""Exceptions, and the helpers the extension calls on either side of a fork."""

import base64
import pickle
import traceback

__all__ = ["Error", "RemoteError", "WorkerDied", "TaskTimeout", "PicklingError", "RemoteTraceback"]


class Error(Exception):
    """Every parafork error derives from this."""


class RemoteError(Error):
    """A task's exception that cannot be re-created in the caller (it did not pickle or unpickle)."""

    def __init__(self, message, type_name=None, pid=None, task=None):
        super().__init__(message)
        self.type_name = type_name
        self.pid = pid
        self.task = task


class WorkerDied(Error):
    """A worker died (signal, exit, OOM kill) while it held a task."""

    def __init__(self, message, pid=None, signal=0, exitcode=0, task=None):
        super().__init__(message)
        self.pid = pid
        self.signal = signal
        self.exitcode = exitcode
        self.task = task


class TaskTimeout(Error, TimeoutError):
    """A task ran longer than `timeout`; its worker was killed."""

    def __init__(self, message, pid=None, task=None):
        super().__init__(message)
        self.pid = pid
        self.task = task


class PicklingError(Error, pickle.PicklingError):
    """A task's result could not be pickled in its worker."""

    def __init__(self, message, pid=None, task=None):
        super().__init__(message)
        self.pid = pid
        self.task = task


class RemoteTraceback(Exception):
    """The traceback of a task's exception, as text, chained as that exception's __cause__."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


class _ResultNotPicklable(Exception):
    pass


# ---- in a worker ------------------------------------------------------------------------------

def _call(f, x, star):
    y = f(*x) if star else f(x)
    try:
        return pickle.dumps(y, 5)
    except Exception as e:
        raise _ResultNotPicklable(f"{type(y).__name__} result: {type(e).__name__}: {e}") from e


def _encode_failure(exc, tb=None):
    """The task's exception as text (base64 of a pickle): what, where, and the object if it pickles."""
    kind = "result" if isinstance(exc, _ResultNotPicklable) else "raise"
    tb = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    blob = None
    if kind == "raise":
        try:
            blob = pickle.dumps(exc, 5)
        except Exception:
            blob = None
    fields = (kind, type(exc).__module__ + "." + type(exc).__qualname__, str(exc), tb, blob)
    return base64.b64encode(pickle.dumps(fields, 5)).decode("ascii")


# ---- in the caller -----------------------------------------------------------------------------

def _note(exc, pid, task):
    if hasattr(exc, "add_note"):
        exc.add_note(f"parafork: task {task}, in worker pid {pid}")


def _unpickled_exception(blob):
    """The exception pickled in `blob`; None when there is none or it does not unpickle."""
    if blob is None:
        return None
    try:
        exc = pickle.loads(blob)
    except Exception:
        return None
    return exc if isinstance(exc, BaseException) else None


def _task_failure(text, pid, task):
    if text.startswith("!"):  # the worker could not even describe it
        return RemoteError(f"task {task}: {text[1:]}", None, pid, task)
    kind, type_name, message, tb, blob = pickle.loads(base64.b64decode(text))
    if kind == "result":
        exc = PicklingError(f"the result of task {task} cannot be pickled: {message}", pid, task)
    else:
        exc = _unpickled_exception(blob)
        if exc is None:
            exc = RemoteError(f"task {task} raised {type_name}: {message}", type_name, pid, task)
        else:
            _note(exc, pid, task)
    exc.__cause__ = RemoteTraceback(tb)
    return exc


def _remote_error(what, type_name, message, pid, task):
    return RemoteError(what, type_name, pid, task)


def _worker_died(what, pid, signal, exitcode, task):
    return WorkerDied(what, pid, signal, exitcode, task)


def _task_timeout(what, pid, task):
    return TaskTimeout(what, pid, task)


def _check_result(y):
    """In a worker: raises _ResultNotPicklable when y cannot be pickled (names the type and why)."""
    try:
        pickle.dumps(y, 5)
    except Exception as e:
        raise _ResultNotPicklable(f"{type(y).__name__} result: {type(e).__name__}: {e}") from e


def _input_not_picklable(task, exc):
    e = PicklingError(f"item {task} of the input (task {task}) cannot be pickled: "
                      f"{type(exc).__name__}: {exc}", None, task)
    e.__cause__ = exc
    return e


def _unpickle_failure(first, count, exc):
    last = first + count - 1
    which = f"task {first}" if count == 1 else f"tasks {first} to {last}"
    e = RemoteError(f"the results of {which} cannot be unpickled: {type(exc).__name__}: {exc}",
                    type(exc).__module__ + "." + type(exc).__qualname__, None, first)
    e.__cause__ = exc
    return e

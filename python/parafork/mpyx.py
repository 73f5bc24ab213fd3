"""parafork.mpyx: mpyx's API on parafork's ez pipelines.

`from parafork.mpyx import EZ, F, ...` in place of `from mpyx import ...`: the same names,
lifecycle and graph syntax (lists serial, tuples parallel, sets broadcast), with stages as
forked processes over shared-memory channels. An exception in any stage, or a stage killed,
stops the whole graph and reaches join() / list() / items(); idle stages sleep.
"""

import asyncio
import multiprocessing
import os
import select
import shlex
import signal
import sys
import time
import types

from . import _core, _ez, _parafork
from ._ez import Pipeline, Stage

__all__ = ["EZ", "Indurate", "F", "Serial", "Parallel", "Broadcast", "S", "P", "B", "As", "By",
           "Const", "Iter", "Filter", "Map", "Batch", "Zip", "Seq", "Print", "Stamp", "Read", "Write",
           "FFmpeg", "FFmpegError"]


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
    queues are shared-memory rings bounded in bytes). name= and dashboard= are ez's: the
    graph on the live dashboard (docs/dashboard.md), named "mpyx" unless named."""
    return Indurate(*fns, name=kwargs.get("name", "mpyx"), dashboard=kwargs.get("dashboard"))


# ---- mpyx.Vid ---------------------------------------------------------------------------------

class FFmpegError(_core.Error):
    """ffmpeg failed: its exit status (or the signal that killed it) and the end of its stderr."""


def _opts(opts):
    if isinstance(opts, str):
        opts = [opts]
    out = []
    for o in opts:
        out += shlex.split(o)  # "-f rawvideo" is two arguments, as in mpyx
    return out


def _has(arg, opts):
    return any(arg in o for o in opts)


def _frame_size(shape, what):
    if len(shape) != 3:
        raise ValueError(f"FFmpeg: {what} tuple shape must be (H,W,C)")
    h, w, c = shape
    return h * w * c


class FFmpeg(F):
    """mpyx.Vid.FFmpeg: runs ffmpeg and streams frames through its pipes.

    FFmpeg(input_url="-", input_opts=[], output_url="-", output_opts=[], global_opts=[],
           verbose=False, datagram=None)

    A shape (H, W, C) as input_url: the items are frames (uint8 arrays of that shape, or bytes)
    written to ffmpeg's stdin as rawvideo (gray for C=1, rgb24 for C=3, unless the options say
    otherwise). A shape as output_url: ffmpeg's stdout is read as such frames, each put as a
    uint8 array. A string is a file (or URL) ffmpeg reads or writes itself; with a file input
    and a frame output the stage is a source. Input is written while output is read, so
    ffmpeg may buffer as many frames as it likes. ffmpeg that fails or dies fails the graph
    with FFmpegError; ffmpeg dies with its stage and is reaped by it."""

    def initialize(self, input_url="-", input_opts=[], output_url="-", output_opts=[],  # noqa: B006
                   global_opts=[], verbose=False, datagram=None):  # noqa: B006 - mpyx's signature
        input_opts, output_opts, global_opts = _opts(input_opts), _opts(output_opts), _opts(global_opts)
        self.input_shape = self.output_shape = None
        self.input_frame_size = self.output_frame_size = 0
        if isinstance(input_url, tuple):
            self.input_frame_size = _frame_size(input_url, "Input")
            self.input_shape, input_url = input_url, "-"
            h, w, c = self.input_shape
            if not _has("-f", input_opts):
                input_opts += ["-f", "rawvideo"]
            if not _has("video_size", input_opts):
                input_opts += ["-video_size", f"{w}x{h}"]
            if not _has("pix_fmt", input_opts) and c in (1, 3):
                input_opts += ["-pix_fmt", "gray" if c == 1 else "rgb24"]
        if isinstance(output_url, tuple):
            self.output_frame_size = _frame_size(output_url, "Output")
            self.output_shape, output_url = output_url, "-"
            h, w, c = self.output_shape
            if not _has("-f", output_opts):
                output_opts += ["-f", "rawvideo"]
            if not _has("video_size", output_opts) and "-s" not in output_opts:
                output_opts += ["-s", f"{w}x{h}"]  # W x H: mpyx wrote H x W here
            if not _has("pix_fmt", output_opts) and c in (1, 3):
                output_opts += ["-pix_fmt", "gray" if c == 1 else "rgb24"]
        self.is_input_stream = input_url == "-"
        self.is_output_stream = output_url == "-"
        if self.is_output_stream and self.output_shape is None:
            raise ValueError("FFmpeg: frames read from ffmpeg need their shape: give output_url as (H, W, C)")
        self.argv = ["ffmpeg"] + global_opts + input_opts + ["-i", input_url] + output_opts + [output_url]
        self.command = " ".join(shlex.quote(a) for a in self.argv)
        self.verbose = verbose
        self.datagram = datagram

    # -- in the stage --
    def setup(self, *args, **kwargs):
        if self.verbose:
            print(self.command, flush=True)
        self._frames = bytearray()  # ffmpeg's output not yet a whole frame
        self._err = bytearray()     # the end of its stderr, for the error message
        pipes, ours = {}, {}
        try:
            for name, want in (("stdin", self.is_input_stream), ("stdout", self.is_output_stream),
                               ("stderr", True)):
                if want:
                    r, w = os.pipe()
                    pipes[name] = (r, w)
                    ours[name] = w if name == "stdin" else r
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                # As the library starts programs: ffmpeg dies with this stage, ignores Ctrl-C.
                self.pid = _parafork.spawn(self.argv,
                                           pipes["stdin"][0] if "stdin" in pipes else null,
                                           pipes["stdout"][1] if "stdout" in pipes else null,
                                           pipes["stderr"][1])
            finally:
                os.close(null)
        except BaseException:
            for fd in ours.values():
                os.close(fd)
            raise
        finally:
            for name, (r, w) in pipes.items():  # ffmpeg's ends
                os.close(r if name == "stdin" else w)
        self._status = None  # its wait status once reaped
        self._stdin = ours.get("stdin", -1)
        self._stdout = ours.get("stdout", -1)
        self._stderr = ours["stderr"]
        for fd in ours.values():
            os.set_blocking(fd, False)
        self._pidfd = os.pidfd_open(self.pid)  # its end is seen here, never at its pipes' end
        if not self.is_input_stream and self.is_output_stream:
            self._io(b"", until_exit=True)  # a source: the frames of a file, then the end
            self.stop()

    def do(self, frame):
        if self._status is not None:
            return
        self._io(self._bytes(frame) if self.is_input_stream else b"", until_exit=False)

    def teardown(self):
        if self._status is None:
            if self._stopped and self.is_output_stream and not self._ports[0].chans:
                self._kill()  # nobody reads what it would make
            else:
                self._close_stdin()
                self._io(b"", until_exit=True)
        self._release()

    def _bytes(self, frame):
        if isinstance(frame, (bytes, bytearray, memoryview)):
            data = memoryview(frame).cast("B")
        else:
            import numpy as np
            data = memoryview(np.ascontiguousarray(frame)).cast("B")
        if self.input_frame_size and len(data) != self.input_frame_size:
            raise ValueError(f"FFmpeg: a frame of {len(data)} bytes; input shape {self.input_shape} "
                             f"takes {self.input_frame_size}")
        return data

    def _io(self, data, until_exit):
        """Writes `data` to ffmpeg while reading what it writes (frames are put as they come);
        with until_exit, then waits for ffmpeg to exit and checks how it did."""
        view = memoryview(data)
        during_input = not until_exit
        while True:
            poller = select.poll()
            writing = len(view) > 0 and self._stdin >= 0
            if writing:
                poller.register(self._stdin, select.POLLOUT)
            for fd in (self._stdout, self._stderr):
                if fd >= 0:
                    poller.register(fd, select.POLLIN)
            poller.register(self._pidfd, select.POLLIN)
            ready = dict(poller.poll(None if writing or until_exit else 0))
            if not ready:
                return  # all written, nothing more to read now
            if writing and self._stdin in ready:
                try:
                    view = view[os.write(self._stdin, view[:1 << 16]):]
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    self._close_stdin()  # it stopped reading: its exit, waited for, says why
                    until_exit = True
            self._read(ready)
            if self._pidfd in ready:
                self._exited(during_input)
                return

    def _read(self, ready):
        got = 0
        if self._stdout in ready:
            got += self._take(self._stdout, self._frames)
            fs = self.output_frame_size
            while len(self._frames) >= fs:
                self._put_frame(bytes(self._frames[:fs]))
                del self._frames[:fs]
        if self._stderr in ready:
            got += self._take(self._stderr, self._err)
        return got

    def _take(self, fd, into):
        """Reads fd until it would block (stdout: or a frame is whole); the bytes read."""
        got = 0
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return got
            if not chunk:
                os.close(fd)
                if fd == self._stdout:
                    self._stdout = -1
                else:
                    self._stderr = -1
                return got
            got += len(chunk)
            into += chunk
            if fd == self._stdout:
                if len(into) >= self.output_frame_size:
                    return got
            else:
                if self.verbose:
                    print("FFmpeg:", chunk.decode(errors="replace"), end="", flush=True)
                del into[:-8192]

    def _put_frame(self, raw):
        import numpy as np
        frame = np.frombuffer(raw, dtype="uint8").reshape(self.output_shape).copy()
        if self.datagram is not None:
            buf = self.datagram()
            buf.save("raw", frame)
            frame = buf
        self.put(frame)

    def _exited(self, during_input):
        _, self._status = os.waitpid(self.pid, 0)
        # What it wrote before it exited is in the pipes (read without waiting: a process it
        # started may still hold them).
        while self._read({fd: select.POLLIN for fd in (self._stdout, self._stderr) if fd >= 0}):
            pass
        self._close_stdin()
        err = self._err.decode(errors="replace").strip()
        tail = f": {err[-2000:]}" if err else " (nothing on its stderr)"
        if os.WIFSIGNALED(self._status):
            sig = os.WTERMSIG(self._status)
            raise FFmpegError(f"ffmpeg (pid {self.pid}) was killed by signal {sig} "
                              f"({signal.Signals(sig).name}){tail}")
        code = os.waitstatus_to_exitcode(self._status)
        if code != 0:
            raise FFmpegError(f"ffmpeg (pid {self.pid}) exited with code {code}{tail}")
        if self._frames:
            raise FFmpegError(f"ffmpeg's output ended inside a frame: {len(self._frames)} bytes "
                              f"after the whole frames of shape {self.output_shape}")
        if during_input:
            self.stop()  # it ended well before its input did (e.g. -frames:v): so does the stage

    def _kill(self):
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, self._status = os.waitpid(self.pid, 0)

    def _close_stdin(self):
        if self._stdin >= 0:
            os.close(self._stdin)
            self._stdin = -1

    def _release(self):
        for fd in (self._stdin, self._stdout, self._stderr, self._pidfd):
            if fd >= 0:
                os.close(fd)
        self._stdin = self._stdout = self._stderr = self._pidfd = -1


def _end_ffmpeg_on_failure(name):
    inner = getattr(FFmpeg, name)

    def method(self, *args, **kwargs):
        try:
            return inner(self, *args, **kwargs)
        except BaseException:
            if getattr(self, "_status", 0) is None:
                self._kill()  # it would die with the stage: end and reap it now
            raise
    method.__name__ = method.__qualname__ = name
    method.__doc__ = inner.__doc__
    setattr(FFmpeg, name, method)


for _name in ("setup", "do", "teardown"):
    _end_ffmpeg_on_failure(_name)


# `from parafork.mpyx.Vid import FFmpeg`, as `from mpyx.Vid import FFmpeg`.
Vid = types.ModuleType(__name__ + ".Vid", "mpyx's video extension: FFmpeg.")
Vid.FFmpeg, Vid.FFmpegError = FFmpeg, FFmpegError
sys.modules[Vid.__name__] = Vid

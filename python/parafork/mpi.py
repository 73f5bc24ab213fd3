"""parafork.mpi: map, starmap, imap and an Executor over the ranks of an MPI job (mpi4py on
Open MPI).

    import parafork.mpi as pm
    world = pm.init()                 # first thing, before any thread: forks this rank's program
    ys = pm.map(f, xs)                # rank 0: [f(x) for x in xs] in input order; others: None
    zs = pm.starmap(g, pairs)
    ys = pm.map(f, xs, journal="run.journal")   # rank 0 keeps results there; a rerun does the rest
    for y in pm.imap(f, xs): ...      # rank 0: lazily, in order (imap_unordered: as done)
    with pm.Executor() as ex:         # rank 0: a concurrent.futures.Executor; others: None
        if ex is not None:
            fut = ex.submit(f, x)

Every rank runs the same script and makes the same calls in the same order (SPMD). Each rank
runs the chunks it is given in its own parafork workers; results arrive at rank 0.

Layout of a rank (as parafork::mpi in C++, docs/scale-out.md):

    mpirun / orted
     └─ MPI process   the process the launcher started: after init() it only relays frames
         │            between its program (a socketpair) and the other ranks; the one that
         │            initialises MPI; runs no user code
         └─ program   returns from init() and runs the script; never initialises MPI
             └─ workers   a parafork.Pool forked at each call, after f and the items exist

The program's workers are forked by a process that never initialised MPI, so Open MPI's
warnings about fork do not apply, a task that crashes kills a worker (not a rank), and a
program killed outright is reported to every rank by its still-live MPI process.

What travels: at a call each rank sends rank 0 a hello (call number, item count, the function's
name); rank 0 hands out (first, count) index ranges, at most two per worker of a rank at a
time, as each rank answers (ranks pull: a slow host gets less); ranks send back the pickled
results of every chunk finished since their last message. The items are never sent: every
rank has its own copy of the sequence.

Not started by a launcher (no OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK in the environment),
init() runs locally: one rank, no MPI, and map / starmap are parafork.map / parafork.starmap.
"""

import collections
import concurrent.futures
import ctypes
import hashlib
import itertools
import math
import os
import pickle
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import warnings
import weakref
import zlib
from collections.abc import Sequence

from . import _map
from ._core import Error, RemoteError, RemoteTraceback, WorkerDied, _unpickled_exception
from ._pool import Pool, _dump_function, _main_snapshot

__all__ = ["init", "map", "starmap", "imap", "imap_unordered", "Executor", "World", "BadLaunch",
           "BrokenExecutor", "ProtocolError"]


class BadLaunch(Error):
    """The job cannot run parafork.mpi calls: MPI would not start, or the ranks are out of step
    (another function, another number of items, another call)."""


class BrokenExecutor(Error, concurrent.futures.BrokenExecutor):
    """An Executor that can take no more work: a rank's program ended, or the executor failed."""


class ProtocolError(Error):
    """A frame between ranks that does not decode: truncated or corrupt."""


class World:
    """This rank's place in the job: rank, size, host; root is rank 0. local: started without
    a launcher (one rank, no MPI)."""

    def __init__(self, rank, size, host, local):
        self.rank, self.size, self.host, self.local = rank, size, host, local
        self._link = None
        self._open = None  # rank 0: the imap iterator or Executor whose call is still open
        self._journaled = 0  # rank 0: calls made with a journal (names them in the file)

    @property
    def root(self):
        return self.rank == 0

    def __reduce__(self):  # a function sent by value that uses `world` gets its own rank's
        return (_this_world, ())

    def __repr__(self):
        return f"<parafork.mpi.World rank={self.rank} size={self.size} host={self.host!r}" + \
            (" local>" if self.local else ">")


_world = None
_task = None  # (f, items, star) of the call being made: the workers fork with it in memory

# Frames on the program's socket: payload length, peer rank (the sender to the program, the
# destination from it), kind. The kinds are also the MPI tags between MPI processes.
_HDR = struct.Struct("<IiB")
_DATA, _ENDED, _READY, _FAILED = 0, 1, 2, 3
_MAX_FRAME = (1 << 31) - 1  # MPI counts are C ints
_BATCH = 16 << 20  # a rank's results are sent as one message up to this size


def _this_world():
    return _world


def _launched():
    return any(v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"))


def init():
    """Starts this rank's part of the job and returns its World; call it first, before any
    thread starts (it forks). Without a launcher: a local World of one rank, no MPI."""
    global _world
    if _world is not None:
        return _world
    if not _launched():
        _world = World(0, 1, socket.gethostname(), True)
        return _world
    if threading.active_count() > 1:
        raise BadLaunch("parafork.mpi.init() forks: call it before any thread starts")
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized():
        raise BadLaunch("MPI was initialised before parafork.mpi.init(): call init() first, and set "
                        "mpi4py.rc.initialize = False if mpi4py is imported before it")
    try:
        import mpi4py  # noqa: F401  (checked here, before the fork, for a clear error)
    except ImportError as e:
        raise BadLaunch("parafork.mpi needs mpi4py (Debian: python3-mpi4py)") from e
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)  # close-on-exec
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid:  # the MPI process: relays until every program has ended, then exits
        theirs.close()
        code = 70
        try:
            code = _relay(mine, pid)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    mine.close()
    _die_with_parent(parent)
    link = _Link(theirs)
    src, kind, payload = link.first()
    if kind == _FAILED:
        raise BadLaunch(f"parafork.mpi: MPI did not start: {payload.decode(errors='replace')}")
    if kind != _READY:
        raise ProtocolError("parafork.mpi: the MPI process did not say it was ready")
    rank, size, host = link.decode(payload)
    _world = World(rank, size, host, False)
    _world._link = link
    link.rank, link.size = rank, size
    return _world


def _die_with_parent(parent):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # it died before prctl
        os._exit(1)


# ---- the MPI process ------------------------------------------------------------------------------

def _reap(child):
    """(exit status, signal) of the ended program."""
    status = os.waitpid(child, 0)[1]
    if os.WIFSIGNALED(status):
        return 0, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), 0


def _relay(sock, child):
    """Initialises MPI and relays frames between the program and the other ranks' MPI
    processes until the program and every other rank's program have ended. Returns the
    program's exit status (128 + signal for a signal)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is mpirun's: it ends the job
    pidfd = os.pidfd_open(child)
    try:
        import mpi4py
        mpi4py.rc.initialize = False
        mpi4py.rc.finalize = False
        from mpi4py import MPI
        MPI.Init()
        comm = MPI.COMM_WORLD
        rank, size, host = comm.Get_rank(), comm.Get_size(), MPI.Get_processor_name()
    except Exception as e:
        text = f"{type(e).__name__}: {e}".encode()
        sock.sendall(_HDR.pack(len(text), -1, _FAILED) + text)
        exitcode, sig = _reap(child)
        return 128 + sig if sig else exitcode
    hello = pickle.dumps((rank, size, host))
    sock.sendall(_HDR.pack(len(hello), -1, _READY) + hello)
    sock.setblocking(False)

    status = MPI.Status()
    inbuf = bytearray()
    out = collections.deque()  # frames for the program, not yet written
    sends = []  # (request, buffer): Isends not yet complete
    ended = set()  # other ranks whose programs ended
    code = None  # the program's exit status, once it ended
    closed = False  # the program's end of the socket is closed (it is ending)
    last = time.monotonic()  # of the last activity

    def isend(buf, dest, tag):
        sends.append((comm.Isend([buf, MPI.BYTE], dest, tag), buf))

    def from_program():
        nonlocal inbuf, closed
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:  # the program ended with frames unread: its pidfd tells the rest
                data = b""
            if not data:
                closed = True
                return
            inbuf += data
            at = 0
            while len(inbuf) - at >= _HDR.size:
                n, dest, kind = _HDR.unpack_from(inbuf, at)
                if len(inbuf) - at - _HDR.size < n:
                    break
                if kind != _DATA or not (0 <= dest < size) or dest == rank:
                    raise ProtocolError(f"parafork.mpi: the program of rank {rank} sent a bad frame")
                isend(bytes(inbuf[at + _HDR.size:at + _HDR.size + n]), dest, _DATA)
                at += _HDR.size + n
            del inbuf[:at]

    while True:
        busy = False
        while comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
            src, tag, n = status.Get_source(), status.Get_tag(), status.Get_count(MPI.BYTE)
            buf = bytearray(n)
            comm.Recv([buf, MPI.BYTE], src, tag)
            if tag == _ENDED:
                ended.add(src)
            if code is None:
                out.append(memoryview(_HDR.pack(n, src, tag) + buf))
            busy = True
        if sends:
            sends = [s for s in sends if not s[0].Test()]
        if code is not None and len(ended) == size - 1 and not sends:
            break
        reads = [] if code is not None else [pidfd] if closed else [sock, pidfd]
        writes = [sock] if code is None and out and not closed else []
        # No descriptor tells of MPI messages: look again within a millisecond, or 10 ms
        # once quiet for a second (the program's frames wake it at once either way).
        now = time.monotonic()
        if busy:
            last = now
        r, w, _ = select.select(reads, writes, [], 0 if busy else 0.001 if now - last < 1 else 0.01)
        if r or w:
            last = now
        if w:
            try:
                while out:
                    k = sock.send(out[0])
                    if k < len(out[0]):
                        out[0] = out[0][k:]
                        break
                    out.popleft()
            except BlockingIOError:
                pass
            except OSError:
                out.clear()
                closed = True
        if sock in r:
            from_program()
        if pidfd in r:
            if not closed:
                from_program()  # what it wrote before it ended still goes
            exitcode, sig = _reap(child)
            code = 128 + sig if sig else exitcode
            note = pickle.dumps((child, exitcode, sig, host))
            for dest in range(size):
                if dest != rank:
                    isend(note, dest, _ENDED)
            out.clear()
            sock.close()
            os.close(pidfd)
    MPI.Finalize()
    return code


# ---- the program -------------------------------------------------------------------------------

class _Link:
    """The program's end of its MPI process's socket: frames to and from other ranks."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.frames = collections.deque()  # (src, kind, payload) read and not yet handled
        self.later = []  # frames of a later call, met during this one
        self.dead = {}  # rank -> (pid, exitcode, signal, host) of programs that ended
        self.calls = 0
        self.rank = self.size = None
        self.wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)  # local answers are waiting

    def first(self):
        while not self.frames:
            data = self.sock.recv(1 << 16)
            if not data:
                raise BadLaunch("parafork.mpi: the MPI process of this rank ended before MPI started")
            self._parse(data, check=False)
        return self.frames.popleft()

    def _parse(self, data, check=True):
        self.buf += data
        at = 0
        while len(self.buf) - at >= _HDR.size:
            n, src, kind = _HDR.unpack_from(self.buf, at)
            if n > _MAX_FRAME or (check and (kind not in (_DATA, _ENDED) or not (0 <= src < self.size))):
                raise ProtocolError(f"parafork.mpi: a bad frame (kind {kind}, from rank {src}, {n} bytes)")
            if len(self.buf) - at - _HDR.size < n:
                break
            payload = bytes(self.buf[at + _HDR.size:at + _HDR.size + n])
            at += _HDR.size + n
            if kind == _ENDED:
                info = self.decode(payload)
                if not (isinstance(info, tuple) and len(info) == 4):
                    raise ProtocolError(f"parafork.mpi: a bad end notice from rank {src}")
                self.dead[src] = info
            self.frames.append((src, kind, payload))
        del self.buf[:at]

    def fill(self):
        """Reads what has arrived, without waiting."""
        while True:
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if not data:
                raise Error("parafork.mpi: this rank's MPI process closed its socket")
            self._parse(data)

    def wait(self):
        """Waits for a frame or a local answer."""
        if not self.frames:
            select.select([self.sock, self.wake], [], [])
        self.fill()
        try:
            os.eventfd_read(self.wake)
        except BlockingIOError:
            pass

    def send(self, dest, msg):
        payload = pickle.dumps(msg, 5)
        if len(payload) > _MAX_FRAME:
            raise Error(f"parafork.mpi: a message of {len(payload)} bytes is over MPI's limit")
        self.sock.sendall(_HDR.pack(len(payload), dest, _DATA) + payload)

    @staticmethod
    def decode(payload):
        try:
            return pickle.loads(payload)
        except Exception as e:
            raise ProtocolError(f"parafork.mpi: a frame that does not decode: {type(e).__name__}: {e}") from e

    def end_call(self):
        self.frames.extendleft(reversed(self.later))
        self.later = []


def _run_range(first, count):
    """In a worker: f over items [first, first + count) of its own copy; the pickled results."""
    f, items, star = _task
    i = first
    try:
        if star:
            ys = [f(*items[i]) for i in range(first, first + count)]
        else:
            ys = [f(items[i]) for i in range(first, first + count)]
    except BaseException as e:
        e.add_note(f"parafork.mpi: at item {i}")
        raise
    return pickle.dumps(ys, 5)


class _Local:
    """This rank's workers for one call: a parafork.Pool forked now, so f and the items are in
    their memory; tasks name index ranges only."""

    def __init__(self, f, items, star, jobs, retries, wake):
        global _task
        self.threads = _threads()
        _task = (f, items, star)  # kept until close(): a worker that replaces a dead one forks later
        try:
            self.pool = Pool(jobs, retries=retries)
        except BaseException:
            _task = None
            raise
        self.jobs = self.pool._processes
        self.wake = wake
        self.answers = collections.deque()  # (ok, first, count, bytes or exception)
        self.inflight = 0

    def run(self, fn, args, key, count):
        self.inflight += 1
        self.pool.apply_async(fn, args, callback=lambda blob: self._answer(True, key, count, blob),
                              error_callback=lambda e: self._answer(False, key, count, e))

    def submit(self, first, count):
        self.inflight += 1
        self.pool.apply_async(_run_range, (first, count),
                              callback=lambda blob: self._answer(True, first, count, blob),
                              error_callback=lambda e: self._answer(False, first, count, e))

    def _answer(self, ok, first, count, value):  # the pool's handler thread
        self.answers.append((ok, first, count, value))
        os.eventfd_write(self.wake, 1)

    def take(self):
        while self.answers:
            self.inflight -= 1
            yield self.answers.popleft()

    def close(self):
        global _task
        self.pool.terminate()
        _task = None
        # The pool's handler thread is joined, but the kernel may not have seen it go: a call
        # forking right after would be forking a threaded process. Wait for it (briefly).
        for _ in range(400):
            if _threads() <= self.threads:
                break
            time.sleep(0.0005)


def _threads():
    with open("/proc/self/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[17])  # field 20: num_threads


def _describe(f, star):
    name = getattr(f, "__module__", None) or "?"
    name += "." + getattr(f, "__qualname__", type(f).__qualname__)
    code = getattr(f, "__code__", None)
    if code is not None:
        name += f" ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
    return ("starmap " if star else "map ") + name


def _sized(items):
    return isinstance(items, (Sequence, range)) and not isinstance(items, (str, bytes, bytearray))


def _locate(exc, rank, host):
    """Names the rank and host in a failure: in the text of parafork's own errors, in a note
    (and the attributes rank and host) of the task's own exception."""
    where = f"rank {rank} on {host}"
    try:
        exc.rank, exc.host = rank, host
    except Exception:
        pass
    if isinstance(exc, Error) and exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} [{where}]",) + exc.args[1:]
    elif hasattr(exc, "add_note"):
        exc.add_note(f"parafork.mpi: raised on {where}")
    return exc


def _encode_failure(exc):
    cause = exc.__cause__
    tb = str(cause) if isinstance(cause, RemoteTraceback) else "".join(traceback.format_exception(exc))
    try:
        blob = pickle.dumps(exc, 5)
    except Exception:
        blob = None
    return (type(exc).__module__ + "." + type(exc).__qualname__, str(exc), tb, blob)


def _decode_failure(info, rank, host):
    try:
        type_name, message, tb, blob = info
    except Exception:
        raise ProtocolError("parafork.mpi: a failure that does not decode") from None
    exc = _unpickled_exception(blob)
    if exc is None:
        exc = RemoteError(f"{type_name}: {message}", type_name)
    exc.__cause__ = RemoteTraceback(tb)
    return _locate(exc, rank, host)


def _ended(rank, info, held=()):
    pid, exitcode, sig, host = info
    how = f"killed by signal {sig}" if sig else f"exit status {exitcode}"
    text = f"the program of rank {rank} on {host} (pid {pid}) ended ({how}) during a parafork.mpi call"
    first = min(held) if held else None
    if first is not None:
        text += f"; it held items from {first}"
    e = WorkerDied(text, pid, sig, exitcode, first)
    e.rank, e.host = rank, host
    return e


_SHAPES = {"hello": 6, "work": 3, "done": 3, "fail": 4, "end": 2, "abort": 3}  # kind: fields


def _frames(link, seq, root=False):
    """The frames of call `seq`: (src, kind, message); older calls' are dropped. Later calls'
    are kept for then on a member; rank 0 gets them (a rank ahead of it is out of step)."""
    while link.frames:
        src, kind, payload = link.frames.popleft()
        if kind == _ENDED:
            yield src, kind, link.dead[src]
            continue
        msg = link.decode(payload)
        if not (isinstance(msg, tuple) and len(msg) >= 2 and _SHAPES.get(msg[0]) == len(msg)
                and isinstance(msg[1], int)):
            raise ProtocolError(f"parafork.mpi: a bad message from rank {src}")
        if msg[1] < seq:
            continue
        if msg[1] > seq and not root:
            link.later.append((src, kind, payload))
            continue
        yield src, kind, msg


def _answered(world, src, value, count):
    """The `count` results of a run answered by rank `src` (its own rank's pickled, another's
    encoded for the link), checked: anything else is a ProtocolError."""
    ys = world._link.decode(value) if src else pickle.loads(value)
    if not isinstance(ys, list) or len(ys) != count:
        got = f"{len(ys)} results" if isinstance(ys, list) else f"a {type(ys).__name__}"
        raise ProtocolError(f"parafork.mpi: rank {src} answered {got} for {count} items")
    return ys


def _root(world, f, items, star, chunksize, jobs, retries):
    link, seq, n = world._link, _next_call(world), len(items)
    desc = _describe(f, star)
    members = range(1, world.size)
    hosts = {}
    window = {}  # member -> chunks it may hold (2 per worker); present once it said hello
    held = {r: {} for r in members}  # member -> {first: count}
    results = [None] * n
    left = n
    local = None
    try:
        for r in members:
            if r in link.dead:
                raise _ended(r, link.dead[r])
        local = _Local(f, items, star, jobs, retries, link.wake)
        if chunksize is None:
            chunksize = max(1, min(65536, math.ceil(n / (local.jobs * world.size * 8))))
        elif chunksize < 1:
            raise ValueError("parafork.mpi: chunksize must be >= 1")
        nxt = 0
        while True:
            for ok, first, count, value in local.take():
                if not ok:
                    raise _locate(value, 0, world.host)
                ys = pickle.loads(value)
                results[first:first + count] = ys
                left -= count
            for src, kind, msg in _frames(link, seq, root=True):
                if kind == _ENDED:
                    raise _ended(src, msg, held[src])
                what = msg[0]
                if what == "hello":
                    _, theirs, m, their, wjobs, host = msg
                    hosts[src] = host
                    if theirs != seq or m != n or their != desc:
                        link.send(src, ("abort", theirs, "ranks out of step"))
                        raise BadLaunch(f"parafork.mpi: rank {src} on {host} made call {theirs}, {their} over "
                                        f"{m} items, where rank 0 made call {seq}, {desc} over {n} (ranks out "
                                        f"of step)")
                    window[src] = 2 * max(1, int(wjobs))
                elif msg[1] != seq:
                    raise ProtocolError(f"parafork.mpi: rank {src} sent {what!r} for call {msg[1]} during {seq}")
                elif what == "done":
                    for first, count, blob in msg[2]:
                        if held[src].pop(first, None) != count:
                            raise ProtocolError(f"parafork.mpi: rank {src} answered items it did not hold")
                        ys = link.decode(blob)
                        if not isinstance(ys, list) or len(ys) != count:
                            raise ProtocolError(f"parafork.mpi: rank {src} answered {len(ys)} of {count} items")
                        results[first:first + count] = ys
                        left -= count
                elif what == "fail":
                    raise _decode_failure(msg[2], src, msg[3])
                else:
                    raise ProtocolError(f"parafork.mpi: an unknown message {what!r} from rank {src}")
            if left == 0 and len(window) == len(members):
                break
            while nxt < n and local.inflight < 2 * local.jobs:
                count = min(chunksize, n - nxt)
                local.submit(nxt, count)
                nxt += count
            for r, room in window.items():
                ranges = []
                while nxt < n and len(held[r]) < room:
                    count = min(chunksize, n - nxt)
                    held[r][nxt] = count
                    ranges.append((nxt, count, None))  # index ranges: no items travel
                    nxt += count
                if ranges:
                    link.send(r, ("work", seq, ranges))
            link.wait()
    except BaseException as e:
        text = f"{type(e).__name__}: {e}"
        for r in members:
            if r not in link.dead:
                try:
                    link.send(r, ("abort", seq, text))
                except OSError:
                    pass
        raise
    finally:
        if local is not None:
            local.close()
        link.end_call()
    for r in members:
        link.send(r, ("end", seq))
    return results


# ---- the journal ----------------------------------------------------------------------------------
#
# Rank 0's file of a call's answered results (map and starmap with journal=...). After a line
# naming the format, a sequence of records, each
#     kind (1 byte) | body length (u32) | CRC-32 of those 5 bytes (u32) | body | BLAKE2b-64 of body
# 'C' opens a call: its place among the program's journaled calls (u64), its item count (u64),
# its description (the function's module, name, file and line; map or starmap). 'V' keeps a run
# of results: call (u64), first item (u64), count (u32), the results pickled as the worker
# answered them. A record cut short at the end (the program died while writing it) is dropped,
# with a warning, and the file truncated there; any record that is whole but does not check out
# is a ProtocolError: nothing is computed then.

_JMAGIC = b"parafork python journal 1\n"
_JHEAD = struct.Struct("<cII")
_JCALL = struct.Struct("<QQ")
_JRUN = struct.Struct("<QQI")
_JSUM = 8


def _jsum(body):
    return hashlib.blake2b(body, digest_size=_JSUM).digest()


class _Journal:
    """One journaled call's file at rank 0: kept, the runs an earlier run recorded ({first:
    results}); record() appends a run, one write each."""

    def __init__(self, path, key, desc, n):
        self.path, self.key = os.fspath(path), key
        self.kept = {}
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            self._load(desc, n)
        except BaseException:
            self.close()
            raise

    def _bad(self, at, why):
        return ProtocolError(f"parafork.mpi: journal {self.path} at byte {at}: {why}; remove the file to "
                             "start again")

    def _load(self, desc, n):
        chunks = []
        while True:
            b = os.read(self.fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        data = b"".join(chunks)
        if len(data) < len(_JMAGIC) and _JMAGIC.startswith(data):  # empty, or died writing its first line
            os.ftruncate(self.fd, 0)
            self._write(_JMAGIC)
            data = _JMAGIC
        elif not data.startswith(_JMAGIC):
            raise self._bad(0, "not a parafork Python journal")
        view = memoryview(data)
        at, found, taken = len(_JMAGIC), False, []  # taken: kept (first, count), for overlaps
        while at < len(data):
            if len(data) - at < _JHEAD.size:
                break  # cut short
            kind, length, check = _JHEAD.unpack_from(data, at)
            if zlib.crc32(view[at:at + 5]) != check or kind not in (b"C", b"V"):
                raise self._bad(at, "a record's head does not check out")
            start = at + _JHEAD.size
            if len(data) - start < length + _JSUM:
                break  # cut short
            body = view[start:start + length]
            if _jsum(body) != data[start + length:start + length + _JSUM]:
                raise self._bad(at, "a record does not check out")
            if kind == b"C":
                if length < _JCALL.size:
                    raise self._bad(at, "a call record too short")
                key, m = _JCALL.unpack_from(body)
                if key == self.key:
                    their = bytes(body[_JCALL.size:]).decode(errors="replace")
                    if found:
                        raise self._bad(at, f"call {key} opens twice")
                    if their != desc or m != n:
                        raise BadLaunch(f"parafork.mpi: journal {self.path} holds call {key} of another function "
                                        f"or input ({their} over {m} items; this call is {desc} over {n}); "
                                        "remove it to start again")
                    found = True
            else:
                if length < _JRUN.size:
                    raise self._bad(at, "a run record too short")
                key, first, count = _JRUN.unpack_from(body)
                if key == self.key:
                    if not found:
                        raise self._bad(at, "results before their call")
                    if count == 0 or first + count > n:
                        raise self._bad(at, "results outside the call's items")
                    try:
                        ys = pickle.loads(body[_JRUN.size:])
                    except Exception as e:
                        raise self._bad(at, f"results that do not unpickle ({type(e).__name__}: {e})") from e
                    if not isinstance(ys, list) or len(ys) != count:
                        raise self._bad(at, "a run of results of another length than it says")
                    self.kept[first] = ys
                    taken.append((first, count, at))
            at = start + length + _JSUM
        taken.sort()
        for (a, c, _), (b, _, where) in zip(taken, taken[1:]):
            if b < a + c:
                raise self._bad(where, "results kept twice")
        if at < len(data):
            warnings.warn(f"parafork.mpi: journal {self.path}: dropped a record cut short at byte {at} (the "
                          "program ended while writing it); its items run again", RuntimeWarning, stacklevel=6)
            os.ftruncate(self.fd, at)
        if not found:
            self._append(b"C", _JCALL.pack(self.key, n) + desc.encode())

    def _write(self, b):
        view = memoryview(b)
        while view:
            k = os.write(self.fd, view)
            view = view[k:]

    def _append(self, kind, body):
        if len(body) > 0xFFFFFFFF:
            raise Error(f"parafork.mpi: journal {self.path}: a run of {len(body)} bytes is too large to keep")
        head = kind + struct.pack("<I", len(body))
        try:
            self._write(b"".join((head, struct.pack("<I", zlib.crc32(head)), body, _jsum(body))))
        except OSError as e:
            raise Error(f"parafork.mpi: journal {self.path}: cannot write: {e}") from e

    def record(self, first, count, blob):
        self._append(b"V", _JRUN.pack(self.key, first, count) + blob)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _journaled(world, f, items, star, chunksize, jobs, retries, path):
    """Rank 0's map or starmap with a journal (local world too): the results an earlier run
    kept come from the file; only the items missing are handed out, each run answered is
    recorded before it counts."""
    n, desc = len(items), _describe(f, star)
    if chunksize is not None and chunksize < 1:
        raise ValueError("parafork.mpi: chunksize must be >= 1")
    world._journaled += 1
    spread = _Spread(world, f, items, star, jobs, retries, desc, n, "map")
    jr, error = None, None
    try:
        jr = _Journal(path, world._journaled, desc, n)
        results = [None] * n
        gaps, at = [], 0  # the items not kept: [first, end) in order
        for first in sorted(jr.kept):
            ys = jr.kept[first]
            results[first:first + len(ys)] = ys
            if first > at:
                gaps.append([at, first])
            at = first + len(ys)
        if at < n:
            gaps.append([at, n])
        jr.kept = None
        left = sum(b - a for a, b in gaps)
        if chunksize is None:
            chunksize = max(1, min(65536, math.ceil(left / (spread.local.jobs * world.size * 8))))
        gaps.reverse()

        def take():
            if not gaps:
                return None
            span = gaps[-1]
            first = span[0]
            count = min(chunksize, span[1] - first)
            span[0] += count
            if span[0] == span[1]:
                gaps.pop()
            return first, count, None

        while True:
            for src, key, count, ok, value in spread.answers():
                if not ok:
                    raise value
                ys = _answered(world, src, value, count)
                jr.record(key, count, value)
                results[key:key + count] = ys
                left -= count
            spread.give(take)
            if left == 0 and spread.all_said_hello():
                break
            spread.wait()
    except BaseException as e:
        error = e
        raise
    finally:
        if jr is not None:
            jr.close()
        spread.close(error)
    return results


def _root_ended(info):
    pid, exitcode, sig, host = info
    how = f"signal {sig}" if sig else f"exit status {exitcode}"
    return Error(f"parafork.mpi: the program of rank 0 on {host} ended during a call ({how})")


def _next_call(world):
    world._link.calls += 1
    return world._link.calls


def _call(f, items, star, chunksize, jobs, retries, journal):
    world = _world
    if world is None:
        raise Error("parafork.mpi: call parafork.mpi.init() first (at the top of the program)")
    _settle(world)
    if not _sized(items):
        items = list(items)
    if journal is not None and world.root:
        return _journaled(world, f, items, star, chunksize, jobs, retries, journal)
    if world.local:
        run = _map.starmap if star else _map.map
        return run(f, items, jobs=jobs, chunksize=chunksize, retries=retries)
    if world.root:
        return _root(world, f, items, star, chunksize, jobs, retries)
    _serve(world, f, items, star, jobs, retries, _describe(f, star), len(items), "map")
    return None


def map(f, items, chunksize=None, *, jobs=None, retries=0, journal=None):
    """[f(x) for x in items] over every rank's workers: the list at rank 0 (input order), None
    at the other ranks. Every rank must make the same call: the same function over the same
    number of items (the items themselves are never sent: each rank reads its own copy; an
    iterable that is not a sequence is made a list on each rank). jobs: workers per rank;
    retries: re-runs of a task whose worker died, on its rank. The first failure on any rank
    ends the call on every rank: rank 0 raises it naming the rank and host, the others raise
    parafork.Error.

    journal: a file on rank 0 (the other ranks ignore it) where the results are kept as they
    arrive; a rerun of the same program with the same file takes from it what an earlier run
    kept and computes only the rest. A file that holds this call (the program's n-th call
    with a journal) for another function or item count is refused (BadLaunch), a corrupt one
    too (ProtocolError); docs/scale-out.md, "The journal in Python"."""
    return _call(f, items, False, chunksize, jobs, retries, journal)


def starmap(f, items, chunksize=None, *, jobs=None, retries=0, journal=None):
    """[f(*args) for args in items], as map."""
    return _call(f, items, True, chunksize, jobs, retries, journal)


# ---- streams: imap, imap_unordered and Executor ---------------------------------------------------
#
# As map, but rank 0 keeps the call open while its consumer takes results: chunks go out as
# ranks have room (at most 2 per worker of a rank), answers come back as they are done. A chunk
# is (key, count, blob): blob None names items [key, key + count) of every rank's own sequence;
# otherwise it carries the items (an iterable that is not a sequence is read on rank 0 only)
# or, for an Executor, the pickled calls.

def _run_chunk(first, count, blob):
    """In a worker (imap): f over items [first, first + count) of its own copy, or over the
    items pickled in blob; the pickled results."""
    f, items, star = _task
    xs = pickle.loads(blob) if blob is not None else None
    i = first
    try:
        ys = []
        for i in range(first, first + count):
            x = items[i] if xs is None else xs[i - first]
            ys.append(f(*x) if star else f(x))
    except BaseException as e:
        e.add_note(f"parafork.mpi: at item {i}")
        raise
    return pickle.dumps(ys, 5)


_functions = {}  # pickled function -> function, in a worker: each is unpickled once


def _run_calls(blob):
    """In a worker (Executor): the calls in blob, a list of pickled (function, [(args, kwargs)],
    single); each entry's outcome, (True, result or [results]) or (False, failure)."""
    out = []
    for entry in pickle.loads(blob):
        try:
            fb, calls, single = pickle.loads(entry)
            f = _functions.get(fb)
            if f is None:
                if len(_functions) >= 256:
                    _functions.clear()
                f = _functions[fb] = pickle.loads(fb)
            ys = [f(*a, **k) if k else f(*a) for a, k in calls]
            out.append((True, ys[0] if single else ys))
        except Exception as e:
            out.append((False, _encode_failure(e)))
    try:
        return pickle.dumps(out, 5)
    except Exception:  # a result that does not pickle fails its own future only
        fixed = []
        for o in out:
            try:
                pickle.dumps(o, 5)
                fixed.append(o)
            except Exception as e:
                fixed.append((False, _encode_failure(e)))
        return pickle.dumps(fixed, 5)


def _task_of(mode):
    if mode == "exec":
        return lambda key, count, blob: (_run_calls, (blob,))
    if mode == "map":
        return lambda key, count, blob: (_run_range, (key, count))
    return lambda key, count, blob: (_run_chunk, (key, count, blob))


class _Spread:
    """Rank 0's side of a stream: its own workers and the members' windows; link None in a
    local world (no members)."""

    def __init__(self, world, f, items, star, jobs, retries, desc, n, mode):
        self.world, self.link, self.desc, self.n = world, world._link, desc, n
        self.members = range(1, world.size)
        self.own_wake = None
        self.told = False
        if self.link is not None:
            for r in self.members:
                if r in self.link.dead:
                    raise _ended(r, self.link.dead[r])
            self.seq = _next_call(world)
            wake = self.link.wake
        else:
            self.seq = 0
            wake = self.own_wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.wake = wake
        self.task = _task_of(mode)
        self.window = {}  # member -> chunks it may hold; present once it said hello
        self.hosts = {0: world.host}
        self.held = {r: {} for r in self.members}  # member -> {key: count}
        try:
            self.local = _Local(f, items, star, jobs, retries, wake)
        except BaseException:
            self.close(None)
            raise

    def slots(self):
        return 2 * self.local.jobs + sum(self.window.values())

    def answers(self):
        """(rank, key, count, ok, value) of the chunks answered: value is the result bytes,
        or the exception (located) of a chunk of rank 0's own workers."""
        for ok, key, count, value in self.local.take():
            yield 0, key, count, ok, (value if ok else _locate(value, 0, self.world.host))
        if self.link is None:
            return
        for src, kind, msg in _frames(self.link, self.seq, root=True):
            if kind == _ENDED:
                raise _ended(src, msg, self.held[src] if self.n >= 0 else ())
            what = msg[0]
            if what == "hello":
                _, theirs, m, their, wjobs, host = msg
                self.hosts[src] = host
                if theirs != self.seq or m != self.n or their != self.desc:
                    self.link.send(src, ("abort", theirs, "ranks out of step"))
                    raise BadLaunch(f"parafork.mpi: rank {src} on {host} made call {theirs}, {their} over "
                                    f"{m} items, where rank 0 made call {self.seq}, {self.desc} over {self.n} "
                                    f"(ranks out of step)")
                self.window[src] = 2 * max(1, int(wjobs))
            elif msg[1] != self.seq:
                raise ProtocolError(f"parafork.mpi: rank {src} sent {what!r} for call {msg[1]} during {self.seq}")
            elif what == "done":
                for key, count, blob in msg[2]:
                    if self.held[src].pop(key, None) != count:
                        raise ProtocolError(f"parafork.mpi: rank {src} answered a chunk it did not hold")
                    yield src, key, count, True, blob
            elif what == "fail":
                raise _decode_failure(msg[2], src, msg[3])
            else:
                raise ProtocolError(f"parafork.mpi: an unknown message {what!r} from rank {src}")

    def give(self, take):
        """Chunks from take() ((key, count, blob), or None for none now) to rank 0's workers
        and to each member with room."""
        while self.local.inflight < 2 * self.local.jobs:
            c = take()
            if c is None:
                return
            fn, args = self.task(*c)
            self.local.run(fn, args, c[0], c[1])
        for r, room in self.window.items():
            batch = []
            while len(self.held[r]) < room:
                c = take()
                if c is None:
                    break
                self.held[r][c[0]] = c[1]
                batch.append(c)
            if batch:
                self.link.send(r, ("work", self.seq, batch))
            if len(batch) == 0 and len(self.held[r]) < room:
                return

    def all_said_hello(self):
        return len(self.window) == len(self.members)

    def wait(self):
        if self.link is not None:
            self.link.wait()
            return
        select.select([self.wake], [], [])
        try:
            os.eventfd_read(self.wake)
        except BlockingIOError:
            pass

    def finish(self, error):
        """Tells the members the call is over (once): ended, or abandoned for `error`."""
        if self.link is None or self.told:
            return
        self.told = True
        for r in self.members:
            if r in self.link.dead:
                continue
            try:
                if error is None:
                    self.link.send(r, ("end", self.seq))
                else:
                    self.link.send(r, ("abort", self.seq, f"{type(error).__name__}: {error}"))
            except OSError:
                pass

    def close(self, error):
        try:
            self.finish(error)
        finally:
            if getattr(self, "local", None) is not None:
                self.local.close()
                self.local = None
            if self.link is not None:
                self.link.end_call()
            if self.own_wake is not None:
                os.close(self.own_wake)
                self.own_wake = None


def _serve(world, f, items, star, jobs, retries, desc, n, mode):
    """A member's side of a call (map, a stream, an Executor): runs the chunks rank 0 hands out
    until it ends the call."""
    link, seq = world._link, _next_call(world)
    local = None
    task = _task_of(mode)
    told = False
    try:
        if 0 in link.dead:
            told = True
            raise _root_ended(link.dead[0])
        local = _Local(f, items, star, jobs, retries, link.wake)
        link.send(0, ("hello", seq, n, desc, local.jobs, world.host))
        failed = False
        while True:
            for src, kind, msg in _frames(link, seq):
                if kind == _ENDED:
                    if src == 0:
                        told = True
                        raise _root_ended(msg)
                    continue
                what = msg[0]
                if what == "work":
                    for key, count, blob in msg[2]:
                        # An index range of the items every rank has (map, imap of a sized
                        # input), or items and calls carried in blob (imap of an iterator, exec).
                        ranged = blob is None and mode != "exec"
                        if (ranged and not (0 <= key and 1 <= count and key + count <= n)) or \
                                (not ranged and mode == "map") or (blob is None and mode == "exec"):
                            raise ProtocolError(f"parafork.mpi: rank 0 sent items {key}+{count} of {n}")
                        if not failed:
                            fn, args = task(key, count, blob)
                            local.run(fn, args, key, count)
                elif what == "end":
                    return None
                elif what == "abort":
                    told = True
                    raise Error(f"parafork.mpi: rank 0 abandoned the call: {msg[2]}")
                else:
                    raise ProtocolError(f"parafork.mpi: an unknown message {what!r} from rank {src}")
            done, size = [], 0
            for ok, key, count, value in local.take():
                if failed:
                    continue
                if not ok:
                    if mode == "exec":  # a worker died with these calls: they fail, the rest go on
                        value = pickle.dumps([(False, _encode_failure(value))] * count, 5)
                    else:
                        failed = True
                        link.send(0, ("fail", seq, _encode_failure(value), world.host))
                        continue
                done.append((key, count, value))
                size += len(value)
                if size >= _BATCH:
                    link.send(0, ("done", seq, done))
                    done, size = [], 0
            if done and not failed:
                link.send(0, ("done", seq, done))
            link.wait()
    except BaseException as e:
        if not told:
            try:
                link.send(0, ("fail", seq, _encode_failure(e), world.host))
            except OSError:
                pass
        raise
    finally:
        if local is not None:
            local.close()
        link.end_call()


def _settle(world):
    """Before a call: an Executor shut down without waiting is waited for now; an open stream
    on rank 0 is an error (the other ranks are still in it)."""
    opened = world._open
    if isinstance(opened, weakref.ref):
        opened = opened()
    if opened is None:
        return
    if isinstance(opened, Executor) and opened._shutdown:
        opened._join()
        return
    raise Error(f"parafork.mpi: a call is still open on every rank ({opened!r}): exhaust or close() an "
                "imap iterator, shut an Executor down, before the next call")


def _imap_root(world, f, items, chunksize, jobs, retries, ordered, desc):
    sized = _sized(items)
    n = len(items) if sized else -1
    if chunksize is not None and chunksize < 1:
        raise ValueError("parafork.mpi: chunksize must be >= 1")
    spread = _Spread(world, f, items if sized else None, False, jobs, retries, desc, n, "imap")
    if chunksize is None:
        chunksize = max(1, min(65536, math.ceil(n / (spread.local.jobs * world.size * 8)))) if sized else 1
    source = None if sized else iter(items)
    state = {"next": 0, "out": 0, "ended": False}  # next item to hand out; chunks out, not yet yielded

    def take():
        if state["out"] >= 2 * spread.slots():  # bounded: a slow first chunk does not let the rest pile up
            return None
        first = state["next"]
        if sized:
            if first >= n:
                return None
            count, blob = min(chunksize, n - first), None
        else:
            if state["ended"]:
                return None
            xs = list(itertools.islice(source, chunksize))
            if not xs:
                state["ended"] = True
                return None
            count, blob = len(xs), pickle.dumps(xs, 5)
        state["next"] += count
        state["out"] += 1
        return first, count, blob

    def results():
        pending = {}  # ordered: first -> results arrived ahead of their turn
        at = 0  # ordered: the first item not yet yielded
        error = None
        try:
            yield None  # started: from here a close() ends the call on every rank
            while True:
                ready = []
                for src, key, count, ok, value in spread.answers():
                    if not ok:
                        raise value
                    ys = _answered(world, src, value, count)
                    if ordered:
                        pending[key] = ys
                    else:
                        state["out"] -= 1
                        ready.append(ys)
                while at in pending:
                    ys = pending.pop(at)
                    at += len(ys)
                    state["out"] -= 1
                    ready.append(ys)
                spread.give(take)
                for ys in ready:
                    yield from ys
                drained = state["next"] >= n if sized else state["ended"]
                if drained and state["out"] == 0 and spread.all_said_hello():
                    break
                if not ready:
                    spread.wait()
        except GeneratorExit:
            raise
        except BaseException as e:
            error = e
            raise
        finally:
            world._open = None
            spread.close(error)

    gen = results()
    next(gen)
    world._open = weakref.ref(gen)  # an iterator dropped (a `for` left by break) closes itself
    return gen


def _imap(f, items, chunksize, jobs, retries, ordered):
    world = _world
    if world is None:
        raise Error("parafork.mpi: call parafork.mpi.init() first (at the top of the program)")
    _settle(world)
    desc = ("imap " if ordered else "imap_unordered ") + _describe(f, False)[4:]
    if world.root:
        return _imap_root(world, f, items, chunksize, jobs, retries, ordered, desc)
    sized = _sized(items)
    _serve(world, f, items if sized else None, False, jobs, retries, desc, len(items) if sized else -1, "imap")
    return iter(())


def imap(f, items, chunksize=None, *, jobs=None, retries=0):
    """f over items on every rank's workers, lazily: at rank 0 an iterator of the results in
    input order, taken as the consumer asks (at most two chunks in flight per worker of each
    rank, and results held ahead of their turn bounded likewise); at the other ranks the call
    runs until rank 0's iterator is exhausted or closed, then returns an empty iterator.
    A sequence's items are never sent (each rank reads its own copy); any other iterable
    (an endless generator too) is read on rank 0 only, a chunk at a time, and its items
    sent. chunksize: as map for a sequence, 1 otherwise. Faults as map. Until the iterator
    at rank 0 is exhausted or closed no other parafork.mpi call can start."""
    return _imap(f, items, chunksize, jobs, retries, True)


def imap_unordered(f, items, chunksize=None, *, jobs=None, retries=0):
    """As imap, the results in the order they are done."""
    return _imap(f, items, chunksize, jobs, retries, False)


class Executor(concurrent.futures.Executor):
    """A concurrent.futures.Executor over every rank's workers, used as mpi4py.futures'
    MPICommExecutor is, on every rank:

        with pm.Executor() as ex:      # rank 0: the executor; other ranks: serve, then None
            if ex is not None:
                fut = ex.submit(f, 3)
                ys = list(ex.map(g, xs, chunksize=100))

    max_workers: workers per rank (parafork.Pool's processes); retries: re-runs of a call
    whose worker died. Every rank's workers fork when the with statement starts: functions go
    by reference when their worker has them (defined before it), by value otherwise. A call's
    exception, or its worker's death, fails its own future (naming rank and host); a rank's
    program that ends breaks the executor: every pending future fails naming it, and submit
    raises BrokenExecutor."""

    def __init__(self, max_workers=None, *, retries=0):
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be greater than 0")
        self._jobs, self._retries = max_workers, retries
        self._thread = None
        self._shutdown = False
        self._broken = None
        self._entered = False

    def __repr__(self):
        return f"<parafork.mpi.Executor {'shut down' if self._shutdown else 'running'}>"

    def __enter__(self):
        world = _world
        if world is None:
            raise Error("parafork.mpi: call parafork.mpi.init() first (at the top of the program)")
        if self._entered:
            raise RuntimeError("parafork.mpi.Executor: a with statement enters it once")
        self._entered = True
        _settle(world)
        if not world.root:
            _serve(world, None, None, False, self._jobs, self._retries, "executor", -2, "exec")
            self._shutdown = True
            return None
        self._world = world
        self._lock = threading.Lock()
        self._queue = collections.deque()  # (future, pickled entry) not yet handed out
        self._born = _main_snapshot()
        self._dumped = {}
        self._spread = _Spread(world, None, None, False, self._jobs, self._retries, "executor", -2, "exec")
        self._thread = threading.Thread(target=self._drive, name="parafork.mpi.Executor", daemon=True)
        self._thread.start()
        world._open = self
        return self

    def __exit__(self, *exc):
        self.shutdown(wait=True)
        return False

    def _check(self):
        if not hasattr(self, "_spread"):
            raise RuntimeError("parafork.mpi.Executor: use it in a with statement, on every rank")
        if self._broken is not None:
            raise BrokenExecutor(f"parafork.mpi.Executor is broken: {self._broken}")
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _function(self, fn):
        hit = self._dumped.get(id(fn))
        if hit is not None and hit[0] is fn:
            return hit[1]
        b = _dump_function(fn, self._born)
        if len(self._dumped) >= 1024:
            self._dumped.clear()
        self._dumped[id(fn)] = (fn, b)
        return b

    def _put(self, fn, calls, single):
        fut = concurrent.futures.Future()
        try:
            entry = pickle.dumps((self._function(fn), calls, single), 5)
        except Exception as e:
            fut.set_exception(e)
            return fut
        with self._lock:
            self._check()
            self._queue.append((fut, entry))
        os.eventfd_write(self._spread.wake, 1)
        return fut

    def submit(self, fn, /, *args, **kwargs):
        """fn(*args, **kwargs) on some rank's worker; a concurrent.futures.Future of its result."""
        self._check()
        return self._put(fn, [(args, kwargs)], True)

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """As concurrent.futures.Executor.map: calls of chunksize items go out together."""
        return self._map(fn, zip(*iterables), timeout, chunksize)

    def starmap(self, fn, iterable, timeout=None, chunksize=1):
        """As map, fn(*args) for args in iterable (as mpi4py.futures' MPIPoolExecutor)."""
        return self._map(fn, iterable, timeout, chunksize)

    def _map(self, fn, argsets, timeout, chunksize):
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        self._check()
        end = None if timeout is None else time.monotonic() + timeout
        fs = []
        argsets = iter(argsets)
        while True:
            chunk = [(tuple(a), None) for a in itertools.islice(argsets, chunksize)]
            if not chunk:
                break
            fs.append(self._put(fn, chunk, False))

        def results():
            try:
                fs.reverse()
                while fs:
                    f = fs[-1]
                    ys = f.result() if end is None else f.result(end - time.monotonic())
                    fs.pop()
                    yield from ys
            finally:
                for f in fs:
                    f.cancel()
        return results()

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No more submits; the call ends on every rank once the work submitted is done (at
        once with cancel_futures). wait: return only then."""
        if self._thread is None:
            return
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for fut, _ in self._queue:
                    fut.cancel()
                self._queue.clear()
        os.eventfd_write(self._spread.wake, 1)
        if wait:
            self._join()

    def _join(self):
        if self._thread is None:
            return
        self._thread.join()
        self._spread.close(self._broken)  # the members were told by the driver: closes the rest
        self._thread = None
        if self._world._open is self:
            self._world._open = None

    def _drive(self):
        spread = self._spread
        chunks = {}  # key -> futures of the chunk's entries
        keys = itertools.count()

        def take():
            while True:
                with self._lock:
                    if not self._queue:
                        return None
                    # several small submits make one chunk when many are waiting
                    k = max(1, min(256, len(self._queue) // max(1, spread.slots())))
                    entries = []
                    while self._queue and len(entries) < k:
                        fut, entry = self._queue.popleft()
                        if fut.set_running_or_notify_cancel():
                            entries.append((fut, entry))
                if entries:
                    key = next(keys)
                    chunks[key] = [fut for fut, _ in entries]
                    return key, len(entries), pickle.dumps([e for _, e in entries], 5)

        try:
            while True:
                for src, key, count, ok, value in spread.answers():
                    futs = chunks.pop(key)
                    if not ok:
                        for fut in futs:
                            fut.set_exception(value)
                        continue
                    outs = _answered(self._world, src, value, len(futs))
                    for fut, (good, v) in zip(futs, outs):
                        if good:
                            fut.set_result(v)
                        else:
                            fut.set_exception(_decode_failure(v, src, spread.hosts.get(src, "?")))
                spread.give(take)
                with self._lock:
                    over = self._shutdown and not self._queue
                if over and not chunks and spread.all_said_hello():
                    break
                spread.wait()
        except BaseException as e:
            with self._lock:
                self._broken = e
                left = [fut for fut, _ in self._queue]
                self._queue.clear()
            for fut in left + [f for fs in chunks.values() for f in fs]:
                try:
                    fut.set_exception(e)
                except concurrent.futures.InvalidStateError:  # cancelled meanwhile
                    pass
            spread.finish(e)
            return
        spread.finish(None)

"""parafork.mpi under `mpirun -np 3` on this host: each test writes a small SPMD script, runs it
bounded by a timeout, reads what each rank reported, and checks that no process of the run is
left (every process the run made carries a tag in its environment)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import struct
import sys
import textwrap
import time
import uuid
import zlib

import pytest

MPIRUN = shutil.which("mpirun")
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False

pytestmark = pytest.mark.skipif(MPIRUN is None or not HAVE_MPI4PY,
                                reason="needs mpirun (openmpi-bin) and mpi4py (python3-mpi4py)")

TAG = "PARAFORK_MPI_TEST_TAG"

PRELUDE = '''
import json, os, signal, socket, sys, threading, time
import parafork as pf
import parafork.mpi as pm
FLAGS = sys.argv[1]

def report(**kw):  # a file per rank: mpirun may interleave the ranks' output
    with open(os.path.join(FLAGS, f"reports.{world.rank}"), "a") as f:
        f.write(json.dumps(dict(rank=world.rank, **kw)) + "\\n")

def flag(name):
    open(os.path.join(FLAGS, name), "w").close()

def await_flag(name, limit=30):
    # Bounded: a flag that never comes fails the check that needs it, not the run.
    end = time.monotonic() + limit
    while not os.path.exists(os.path.join(FLAGS, name)) and time.monotonic() < end:
        time.sleep(0.01)

def failure(e):
    notes = getattr(e, "__notes__", [])
    cause = e.__cause__
    return dict(type=type(e).__name__, text=str(e), notes=notes, pid=getattr(e, "pid", None),
                signal=getattr(e, "signal", None), erank=getattr(e, "rank", None),
                host=getattr(e, "host", None), cause=str(cause) if cause is not None else None)
'''


def describe(pid):
    """A process's pid, parent, state and command line, for a message."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        return f"{pid} (parent {status.get('PPid')}, {status.get('State')}, {status.get('SigCgt', '?')} caught): {cmd}"
    except OSError:
        return f"{pid} (gone)"


def tagged(tag):
    """Pids of live processes whose environment carries TAG=tag (zombies included: not reaped).
    The value is this run's own: another run's processes (a concurrent test session) are not
    this run's to wait for or kill."""
    mine = f"{TAG}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if mine in env.split(b"\0"):
            found.append(int(entry))
    return found


def run(tmp_path, body, np=3, timeout=45, init=True, script=None, during=None):  # under pytest's 60 s
    """Runs PRELUDE + body (or `script`) under mpirun, and during(mpirun, flags) if given;
    returns (returncode, {rank: [reports]}, output). Fails if the run outlives `timeout` or
    leaves a process of its own behind."""
    tag = uuid.uuid4().hex
    flags = tmp_path / "flags"
    flags.mkdir()
    if script is None:
        script = tmp_path / "prog.py"
        script.write_text(PRELUDE + ("world = pm.init()\n" if init else "") + textwrap.dedent(body))
    env = dict(os.environ, OMPI_MCA_btl="self,vader,tcp", OMPI_MCA_btl_vader_single_copy_mechanism="none",
               # a rank killed on purpose cannot remove its segment: keep them out of /dev/shm
               OMPI_MCA_btl_vader_backing_directory=str(tmp_path), PYTHONDONTWRITEBYTECODE="1",
               **{TAG: tag})
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np), sys.executable, str(script),
           str(flags)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        if during is not None:
            during(proc, flags)
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpirun outlived {timeout} s:\n{out}")
    finally:
        if proc.poll() is None:  # pytest's own timeout, or an error here: end the whole run
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # Workers die with their program, programs with their MPI process (PDEATHSIG), at
        # once but not synchronously: give them a moment.
        end = time.monotonic() + 10
        while tagged(tag) and time.monotonic() < end:
            time.sleep(0.05)
        left = tagged(tag)
        seen = [describe(pid) for pid in left]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        assert left == [], f"processes of the run left behind: {seen}"
    reports = {}
    for rank in range(np):
        path = flags / f"reports.{rank}"
        if path.exists():
            reports[rank] = [json.loads(line) for line in path.read_text().splitlines()]
    return proc.returncode, reports, out


def one(reports, rank, what):
    got = [r for r in reports.get(rank, []) if r.get("what") == what]
    assert len(got) == 1, f"rank {rank} reported {what!r} {len(got)} times: {reports}"
    return got[0]


def test_results_at_rank_0_equal_the_local_calls(tmp_path):
    rc, reports, out = run(tmp_path, '''
        import threading
        scale = 3
        ys = pm.map(lambda x: x * scale + 1, range(1_000_000))     # a closure: fork, not pickle
        report(what="million", ok=(ys == [x * scale + 1 for x in range(1_000_000)]) if world.root else ys)
        pairs = [(b, e) for b in range(7) for e in range(5)]
        zs = pm.starmap(pow, pairs, chunksize=4)
        report(what="starmap", ok=(zs == pf.starmap(pow, pairs)) if world.root else zs)
        locks = [threading.Lock() for _ in range(40)]              # cannot be pickled: never sent
        ls = pm.map(lambda l: l.locked(), locks, chunksize=3)
        report(what="locks", ok=(ls == [False] * 40) if world.root else ls)
        report(what="empty", got=pm.map(abs, []))
        report(what="iterable", got=pm.map(str, (i for i in range(50))))

        def whose(x):  # each rank's first item waits until every rank has run one
            flag(f"ran{world.rank}")
            for r in range(world.size):
                await_flag(f"ran{r}")
            return world.rank
        report(what="ranks", got=pm.map(whose, range(60), chunksize=1))
    ''')
    assert rc == 0, out
    assert "forking a process that runs" not in out
    for what in ("million", "starmap", "locks"):
        assert one(reports, 0, what)["ok"] is True
        assert one(reports, 1, what)["ok"] is None and one(reports, 2, what)["ok"] is None
    assert one(reports, 0, "empty")["got"] == []
    assert one(reports, 0, "iterable")["got"] == [str(i) for i in range(50)]
    assert one(reports, 2, "iterable")["got"] is None
    assert set(one(reports, 0, "ranks")["got"]) == {0, 1, 2}  # every rank ran items


BARRIER = '''
def on_rank_2(action, name):
    """f for a call whose items on ranks 0 and 1 wait until rank 2 ran one: rank 2 gets work."""
    def f(x):
        if world.rank == 2:
            flag(name)
            action(x)
        await_flag(name)
        time.sleep(0.02)
        return x
    return f
'''


def test_exception_on_rank_2_is_raised_at_rank_0_naming_rank_and_host(tmp_path):
    rc, reports, out = run(tmp_path, BARRIER + textwrap.dedent('''
        def bad(x):
            raise ValueError(f"bad item {x}")
        try:
            pm.map(on_rank_2(bad, "raised"), range(60), chunksize=1)
            report(what="first", type=None)
        except Exception as e:
            report(what="first", **failure(e))
        # the failed call is over on every rank: the next one starts cleanly
        ys = pm.map(lambda x: x + 1, range(1000))
        report(what="next", ok=(ys == list(range(1, 1001))) if world.root else ys)
    '''))
    assert rc == 0, out
    host = os.uname().nodename
    first = one(reports, 0, "first")
    assert first["type"] == "ValueError" and first["text"].startswith("bad item"), first
    assert first["erank"] == 2 and first["host"] == host
    assert f"parafork.mpi: raised on rank 2 on {host}" in first["notes"]
    assert "raise ValueError" in first["cause"]  # the remote traceback
    for r in (1, 2):
        other = one(reports, r, "first")
        assert other["type"] == "Error" and "rank 0 abandoned the call: ValueError" in other["text"], other
    assert one(reports, 0, "next")["ok"] is True


def test_worker_killed_on_rank_2_names_rank_host_pid_and_signal(tmp_path):
    rc, reports, out = run(tmp_path, BARRIER + textwrap.dedent('''
        def die(x):
            report(what="victim", pid=os.getpid())
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            pm.map(on_rank_2(die, "died"), range(60), chunksize=1)
            report(what="first", type=None)
        except Exception as e:
            report(what="first", **failure(e))

        def once(x):  # with retries the killed task runs again, on rank 2
            try:
                os.close(os.open(os.path.join(FLAGS, "killed-once"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)
        ys = pm.map(on_rank_2(once, "retried"), range(60), chunksize=1, retries=1)
        report(what="retried", ok=(ys == list(range(60))) if world.root else ys)
    '''))
    assert rc == 0, out
    host = os.uname().nodename
    first = one(reports, 0, "first")
    victims = [r["pid"] for r in reports[2] if r["what"] == "victim"]
    assert first["type"] == "WorkerDied" and first["signal"] == signal.SIGKILL, first
    assert first["pid"] in victims
    assert f"[rank 2 on {host}]" in first["text"] and str(first["pid"]) in first["text"]
    assert first["erank"] == 2 and first["host"] == host
    assert "rank 0 abandoned the call: WorkerDied" in one(reports, 1, "first")["text"]
    assert one(reports, 0, "retried")["ok"] is True
    assert os.path.exists(tmp_path / "flags" / "killed-once")


def test_rank_killed_with_sigkill_ends_the_call_with_an_error(tmp_path):
    rc, reports, out = run(tmp_path, BARRIER + textwrap.dedent('''
        report(what="program", pid=os.getpid())
        def kill_program(x):  # a worker's parent is its rank's program
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)
        try:
            pm.map(on_rank_2(kill_program, "killed"), range(60), chunksize=1)
            report(what="first", type=None)
        except Exception as e:
            since = time.time() - os.stat(os.path.join(FLAGS, "killed")).st_mtime
            report(what="first", since=since, **failure(e))
        try:  # a rank whose program died stays gone: the next call fails at once
            pm.map(abs, range(10))
            report(what="second", type=None)
        except Exception as e:
            report(what="second", **failure(e))
    '''))
    assert rc == 128 + signal.SIGKILL, out  # rank 2's MPI process exits as its program ended
    host = os.uname().nodename
    first = one(reports, 0, "first")
    victim = one(reports, 2, "program")["pid"]
    assert first["type"] == "WorkerDied" and first["signal"] == signal.SIGKILL, first
    assert first["pid"] == victim and first["erank"] == 2 and first["host"] == host
    assert f"the program of rank 2 on {host} (pid {victim}) ended (killed by signal 9)" in first["text"]
    print(f"rank 0 saw rank 2's program killed after {first['since']:.3f} s")
    assert first["since"] < 15, first  # seen at once, not at some timeout (loose: a loaded host)
    assert "rank 0 abandoned the call: WorkerDied" in one(reports, 1, "first")["text"]
    assert one(reports, 0, "second")["type"] == "WorkerDied"
    assert one(reports, 1, "second")["type"] == "Error"
    assert [r["what"] for r in reports[2]] == ["program"]


def test_root_killed_ends_the_other_ranks_calls(tmp_path):
    rc, reports, out = run(tmp_path, textwrap.dedent('''
        def f(x):
            if world.rank == 0:
                os.kill(os.getppid(), signal.SIGKILL)  # rank 0's program
                time.sleep(60)
            time.sleep(0.01)
            return x
        try:
            pm.map(f, range(60), chunksize=1)
            report(what="first", type=None)
        except Exception as e:
            report(what="first", **failure(e))
    '''))
    assert rc == 128 + signal.SIGKILL, out
    host = os.uname().nodename
    for r in (1, 2):
        first = one(reports, r, "first")
        assert first["type"] == "Error", first
        assert f"the program of rank 0 on {host} ended during a call (signal 9)" in first["text"]
    assert 0 not in reports


def test_killed_mpi_process_ends_the_job_without_orphans(tmp_path):
    # The launcher's own process of rank 2 killed: mpirun ends the job; every program and
    # worker dies with its parent (run() fails if any is left).
    rc, reports, out = run(tmp_path, BARRIER + textwrap.dedent('''
        mpi_process = os.getppid()
        report(what="mpi_process", pid=mpi_process)
        def kill_mpi(x):
            os.kill(mpi_process, signal.SIGKILL)
            time.sleep(60)
        pm.map(on_rank_2(kill_mpi, "killed"), range(60), chunksize=1)
        report(what="finished")
    '''))
    assert rc != 0, out
    assert "finished" not in [r["what"] for rs in reports.values() for r in rs]


def test_mpirun_killed_outright_leaves_no_process(tmp_path):
    # mpirun gets SIGKILL and cannot end the job: the MPI processes die with it, the programs
    # with them, the workers with those (run() fails if any is left, or if mpirun's output
    # stays open because one lives on).
    def kill_mpirun(proc, flags):
        end = time.monotonic() + 30
        while not ((flags / "running").exists() and (flags / "outside").exists()) and time.monotonic() < end:
            time.sleep(0.02)
        proc.kill()

    rc, reports, out = run(tmp_path, textwrap.dedent('''
        def f(x):
            flag("running")
            time.sleep(1)
            return x
        if world.rank == 2:  # a program busy outside any call: only PDEATHSIG ends it
            flag("outside")
            time.sleep(60)
        pm.map(f, range(300), chunksize=1)
        report(what="finished")
    '''), during=kill_mpirun)
    assert rc == -signal.SIGKILL
    assert reports == {}


def test_ranks_out_of_step_and_init_after_a_thread_are_bad_launches(tmp_path):
    rc, reports, out = run(tmp_path, '''
        t = threading.Thread(target=time.sleep, args=(0.5,))
        t.start()
        try:
            pm.init()
            print("init after a thread did not fail", flush=True)
        except pm.BadLaunch as e:
            bad_init = str(e)
        t.join()
        world = pm.init()
        report(what="init", text=bad_init, size=world.size)
        try:
            pm.map(abs, range(11 if world.rank != 1 else 10))
            report(what="first", type=None)
        except Exception as e:
            report(what="first", **failure(e))
        ys = pm.map(abs, range(10))
        report(what="next", got=ys)
        try:  # a rank that leaves a call on its own (here: its workers cannot start) tells rank 0
            pm.map(abs, range(10), jobs=0 if world.rank == 1 else None)
            report(what="own", type=None)
        except Exception as e:
            report(what="own", **failure(e))
        report(what="last", got=pm.map(abs, range(10)))
    ''', init=False)
    assert rc == 0, out
    for r in range(3):
        assert "before any thread starts" in one(reports, r, "init")["text"]
        assert one(reports, r, "init")["size"] == 3
    first = one(reports, 0, "first")
    assert first["type"] == "BadLaunch" and "rank 1" in first["text"] and "out of step" in first["text"], first
    assert "rank 0 abandoned the call" in one(reports, 1, "first")["text"]
    assert one(reports, 2, "first")["type"] == "Error"
    assert one(reports, 0, "next")["got"] == list(range(10))
    own = one(reports, 0, "own")
    assert own["type"] == "ValueError" and own["erank"] == 1, own  # as parafork.Pool(0) raises it
    assert one(reports, 1, "own")["type"] == "ValueError"
    assert "rank 0 abandoned the call: ValueError" in one(reports, 2, "own")["text"]
    assert one(reports, 0, "last")["got"] == list(range(10))


def test_a_calls_workers_leave_no_thread_for_the_next_calls_fork():
    # Each call's pool answers through a handler thread; the next call forks its workers at
    # once, which must not find that thread still alive (a fork of a threaded process).
    import select
    import parafork.mpi as pm

    wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        before = pm._threads()
        for _ in range(50):
            local = pm._Local(abs, range(-4, 0), False, 1, 0, wake)
            local.submit(0, 4)
            end = time.monotonic() + 30
            while not local.answers and time.monotonic() < end:
                select.select([wake], [], [], 1)
            assert [a[:3] for a in local.take()] == [(True, 0, 4)]
            local.close()
            assert pm._threads() <= before
    finally:
        os.close(wake)


def test_frames_from_other_ranks_are_checked_before_use():
    import pickle
    import socket
    import struct
    import parafork.mpi as pm

    hdr = struct.Struct("<IiB")  # payload length, peer rank, kind (0 data, 1 a rank ended)

    def link_fed(raw):
        a, b = socket.socketpair()
        link = pm._Link(b)
        link.size = 3
        a.sendall(raw)
        return a, link

    def frame(payload, src=1, kind=0):
        return hdr.pack(len(payload), src, kind) + payload

    good = pickle.dumps(("end", 1))
    bad = [hdr.pack(4, 1, 9) + b"abcd",                      # an unknown kind
           frame(good, src=7),                               # a rank that is not in the job
           hdr.pack(0xFFFFFFFF, 1, 0),                       # a length past any message
           frame(b"not a pickle", kind=1),                   # an end notice that does not decode
           frame(pickle.dumps("four"), kind=1)]              # ... or is not (pid, exit, signal, host)
    for raw in bad:
        a, link = link_fed(raw)
        try:
            with pytest.raises(pm.ProtocolError):
                link.fill()
        finally:
            a.close(), link.sock.close(), os.close(link.wake)
    for payload in (b"\x80\x05garbage", pickle.dumps(("end",)), pickle.dumps(("work", 1, [])[:2]),
                    pickle.dumps(["end", 1]), pickle.dumps(("nonsense", 1))):
        a, link = link_fed(frame(payload))
        try:
            link.fill()
            with pytest.raises(pm.ProtocolError):
                list(pm._frames(link, 1))
        finally:
            a.close(), link.sock.close(), os.close(link.wake)
    a, link = link_fed(frame(good) + frame(good)[:-3])  # a whole frame, then a truncated one
    try:
        link.fill()
        assert list(pm._frames(link, 1)) == [(1, 0, ("end", 1))]
        assert not link.frames  # the truncated one waits for its end
    finally:
        a.close(), link.sock.close(), os.close(link.wake)


def test_mpi_initialised_before_init_is_a_bad_launch(tmp_path):
    rc, reports, out = run(tmp_path, textwrap.dedent('''
        from mpi4py import MPI   # initialises MPI in the launcher's process: too late to fork
        class world:
            rank = MPI.COMM_WORLD.Get_rank()
        try:
            pm.init()
            report(what="init", type=None)
        except Exception as e:
            report(what="init", **failure(e))
    '''), init=False)
    assert rc == 0, out
    for r in range(3):
        got = one(reports, r, "init")
        assert got["type"] == "BadLaunch" and "MPI was initialised before" in got["text"], got


def test_without_mpi4py_init_is_a_bad_launch(tmp_path):
    (tmp_path / "mpi4py.py").write_text("raise ImportError('no mpi4py here')\n")
    script = tmp_path / "prog.py"
    script.write_text("import parafork.mpi as pm\n"
                      "try:\n    pm.init()\nexcept pm.BadLaunch as e:\n    print(e)\n")
    env = dict(os.environ, OMPI_COMM_WORLD_SIZE="3",  # as if launched
               PYTHONPATH=os.pathsep.join([str(tmp_path)] + [p for p in sys.path if p]))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "parafork.mpi needs mpi4py (Debian: python3-mpi4py)" in r.stdout


def test_without_a_launcher_it_runs_locally_on_one_rank(tmp_path):
    script = tmp_path / "local.py"
    script.write_text(textwrap.dedent('''
        import parafork as pf, parafork.mpi as pm
        try:
            pm.map(abs, [1])
        except pf.Error as e:
            print("before init:", e)
        w = pm.init()
        print(w.rank, w.size, w.local, w.root)
        print(pm.map(lambda x: x * 2, range(5)) == [0, 2, 4, 6, 8], pm.starmap(pow, [(2, 3)]))
    '''))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "call parafork.mpi.init() first" in lines[0]
    assert lines[1:] == ["0 1 True True", "True [8]"]


def test_example_runs_over_3_ranks(tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "mpi_pi.py")
    rc, reports, out = run(tmp_path, None, script=example)
    assert rc == 0, out
    assert "3.14159" in out and "over 3 ranks" in out


# ---- imap, imap_unordered, Executor ---------------------------------------------------------------

LEAKS = '''
def own_state():
    """This program's descriptors and its children that are zombies: checked after the calls."""
    zombies = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    v = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(v[1]) == os.getpid() and v[0] == "Z":
                zombies.append(int(entry))
    return sorted(os.listdir("/proc/self/fd")), zombies
'''


def test_streams_and_executor_equal_the_local_calls(tmp_path):
    rc, reports, out = run(tmp_path, LEAKS + textwrap.dedent('''
        fds_before, _ = own_state()
        N = 120_000
        scale = 3
        want = [x * scale + 1 for x in range(N)]
        got = list(pm.imap(lambda x: x * scale + 1, range(N)))      # a closure: fork, not pickle
        report(what="imap", ok=(got == want) if world.root else got)
        got = list(pm.imap_unordered(lambda x: x * scale + 1, range(N), chunksize=500))
        report(what="unordered", ok=sorted(got) == want if world.root else got,
               inorder=got == want if world.root else None)
        got = list(pm.imap(lambda x: x * scale + 1, (x for x in range(N)), chunksize=200))  # sent: not a sequence
        report(what="generator", ok=(got == want) if world.root else got)

        def whose(x):  # each rank's first item waits until every rank has run one
            flag(f"ran{world.rank}")
            for r in range(world.size):
                await_flag(f"ran{r}")
            return world.rank
        report(what="ranks", got=list(pm.imap_unordered(whose, range(60), chunksize=1)))

        def neg(x):
            return -x
        with pm.Executor() as ex:
            report(what="executor", is_none=ex is None)
            if ex is not None:
                fs = [ex.submit(pow, x, 2) for x in range(5000)]
                ok = [f.result(timeout=30) for f in fs] == [x * x for x in range(5000)]
                ys = list(ex.map(neg, range(N), chunksize=1000))
                zs = list(ex.starmap(pow, [(b, 3) for b in range(300)], chunksize=7))
                kw = ex.submit(int, "ff", base=16).result()
                ws = list(ex.map(whose, range(60)))
                report(what="futures", ok=ok, map=ys == [-x for x in range(N)],
                       starmap=zs == [b ** 3 for b in range(300)], kw=kw, ranks=sorted(set(ws)))
        report(what="after", got=pm.map(abs, range(-3, 0)))
        fds_after, zombies = own_state()
        report(what="state", same_fds=fds_before == fds_after, zombies=zombies)
    '''))
    assert rc == 0, out
    assert "forking a process that runs" not in out
    for what in ("imap", "unordered", "generator"):
        assert one(reports, 0, what)["ok"] is True, what
        assert one(reports, 1, what)["ok"] == [] and one(reports, 2, what)["ok"] == []
    assert one(reports, 0, "unordered")["inorder"] in (True, False)
    assert set(one(reports, 0, "ranks")["got"]) == {0, 1, 2}  # every rank ran items
    assert one(reports, 0, "executor")["is_none"] is False
    assert one(reports, 1, "executor")["is_none"] is True and one(reports, 2, "executor")["is_none"] is True
    futures = one(reports, 0, "futures")
    assert futures == dict(futures, ok=True, map=True, starmap=True, kw=255, ranks=[0, 1, 2]), futures
    assert one(reports, 0, "after")["got"] == [3, 2, 1]
    for r in range(3):
        state = one(reports, r, "state")
        assert state["same_fds"] is True and state["zombies"] == [], (r, state)


def test_imap_is_lazy_over_an_endless_generator(tmp_path):
    rc, reports, out = run(tmp_path, textwrap.dedent('''
        import itertools
        pulled = 0
        def endless():
            global pulled
            for i in itertools.count():
                pulled += 1
                yield i
        ahead = consumed = 0
        def watched():
            global ahead
            for i in itertools.count():
                ahead = max(ahead, i - consumed)
                yield i
        def slow_first(x):
            if x == 0:
                time.sleep(1.5)
            return x
        it = pm.imap(lambda x: 2 * x, endless())
        if world.root:
            first = list(itertools.islice(it, 500))
            seen = pulled
            time.sleep(1)  # the consumer is busy: nothing more is read meanwhile
            report(what="lazy", ok=first == [2 * x for x in range(500)], seen=seen, later=pulled)
            more = [next(it) for _ in range(100)]
            it.close()
            report(what="more", ok=more == [2 * x for x in range(500, 600)])
            # ordered: a slow first item does not let the later results pile up behind it
            oit = pm.imap(slow_first, watched(), jobs=2)
            for y in itertools.islice(oit, 300):
                consumed += 1
            oit.close()
            report(what="ahead", ahead=ahead, consumed=consumed)
            uit = pm.imap_unordered(abs, endless(), chunksize=4)
            report(what="unordered", got=len(set(itertools.islice(uit, 1000))))
            uit.close()
        else:
            report(what="member", got=list(it), pulled=pulled)
            report(what="ahead", got=list(pm.imap(slow_first, watched(), jobs=2)))
            report(what="member2", got=list(pm.imap_unordered(abs, endless(), chunksize=4)), pulled=pulled)
        report(what="after", got=pm.map(abs, range(-3, 0)))
    '''))
    assert rc == 0, out
    lazy = one(reports, 0, "lazy")
    assert lazy["ok"] is True
    # bounded read-ahead: two chunks per worker of each rank, twice over (jobs <= nproc here)
    assert lazy["seen"] < 500 + 4 * 3 * 2 * (os.cpu_count() or 1) + 10, lazy
    assert lazy["later"] == lazy["seen"], lazy
    assert one(reports, 0, "more")["ok"] is True
    ahead = one(reports, 0, "ahead")
    # while item 0 holds the line: 2 x (3 ranks x 2 workers x 2 chunks) out, and as many
    # answered, being yielded
    assert ahead["consumed"] == 300 and ahead["ahead"] <= 2 * 2 * 3 * 2 * 2 + 2, ahead
    assert one(reports, 0, "unordered")["got"] == 1000
    for r in (1, 2):
        assert one(reports, r, "member") == dict(rank=r, what="member", got=[], pulled=0)
        assert one(reports, r, "member2")["got"] == []
        assert one(reports, r, "after")["got"] is None
    assert one(reports, 0, "after")["got"] == [3, 2, 1]


def test_imap_unordered_yields_results_as_they_arrive(tmp_path):
    rc, reports, out = run(tmp_path, textwrap.dedent('''
        def f(x):
            if x == 0:
                await_flag("others")  # held until the consumer has seen 40 later results
            return x
        got = []
        for y in pm.imap_unordered(f, range(200), chunksize=1):
            got.append(y)
            if len(got) == 40:
                flag("others")
        report(what="got", first40=got[:40] if world.root else None, all=sorted(got) == list(range(200))
               if world.root else got)
    '''))
    assert rc == 0, out
    got = one(reports, 0, "got")
    assert got["all"] is True and 0 not in got["first40"], got


def test_imap_exception_and_worker_death_on_rank_2(tmp_path):
    rc, reports, out = run(tmp_path, BARRIER + textwrap.dedent('''
        def bad(x):
            raise ValueError(f"bad item {x}")
        try:
            for _ in pm.imap(on_rank_2(bad, "raised"), range(60), chunksize=1):
                pass
            report(what="raised", type=None)
        except Exception as e:
            report(what="raised", **failure(e))

        def die(x):
            report(what="victim", pid=os.getpid())
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            list(pm.imap_unordered(on_rank_2(die, "died"), range(60), chunksize=1))
            report(what="died", type=None)
        except Exception as e:
            report(what="died", **failure(e))
        report(what="next", got=list(pm.imap(abs, range(-5, 0))))
    '''))
    assert rc == 0, out
    host = os.uname().nodename
    raised = one(reports, 0, "raised")
    assert raised["type"] == "ValueError" and raised["text"].startswith("bad item"), raised
    assert raised["erank"] == 2 and raised["host"] == host
    assert f"parafork.mpi: raised on rank 2 on {host}" in raised["notes"]
    assert "raise ValueError" in raised["cause"]
    died = one(reports, 0, "died")
    victims = [r["pid"] for r in reports[2] if r["what"] == "victim"]
    assert died["type"] == "WorkerDied" and died["signal"] == signal.SIGKILL and died["pid"] in victims, died
    assert f"[rank 2 on {host}]" in died["text"] and died["erank"] == 2
    for r in (1, 2):
        assert "rank 0 abandoned the call: ValueError" in one(reports, r, "raised")["text"]
        assert "rank 0 abandoned the call: WorkerDied" in one(reports, r, "died")["text"]
    assert one(reports, 0, "next")["got"] == [5, 4, 3, 2, 1]


def test_executor_futures_fail_alone_naming_rank_and_host(tmp_path):
    rc, reports, out = run(tmp_path, BARRIER + textwrap.dedent('''
        def bad(x):
            if x % 2:
                raise KeyError(f"odd {x}")
        def die(x):
            if x % 2:
                report(what="victim", pid=os.getpid())
                os.kill(os.getpid(), signal.SIGKILL)
        with pm.Executor() as ex:
            if ex is not None:
                fs = [ex.submit(on_rank_2(bad, "raised"), x) for x in range(60)]
                outcomes = [(f.exception(timeout=30), f) for f in fs]
                errors = [failure(e) for e, _ in outcomes if e is not None]
                report(what="raised", errors=errors, ok=[f.result() for e, f in outcomes if e is None])
                fs = [ex.submit(on_rank_2(die, "died"), x) for x in range(60)]
                outcomes = [(f.exception(timeout=30), f) for f in fs]
                errors = [failure(e) for e, _ in outcomes if e is not None]
                report(what="died", errors=errors, ok=[f.result() for e, f in outcomes if e is None])
                report(what="goes on", got=ex.submit(abs, -7).result(timeout=30))
                ex.shutdown()
                try:
                    ex.submit(abs, 1)
                except RuntimeError as e:
                    report(what="submit after shutdown", text=str(e))
        report(what="after", got=pm.map(abs, range(-3, 0)))
    '''))
    assert rc == 0, out
    host = os.uname().nodename
    raised = one(reports, 0, "raised")
    assert raised["errors"], raised  # rank 2 ran odd items: each failed its own future only
    for e in raised["errors"]:
        assert e["type"] == "KeyError" and e["erank"] == 2 and e["host"] == host, e
        assert f"parafork.mpi: raised on rank 2 on {host}" in e["notes"] and "raise KeyError" in e["cause"]
    assert len(raised["errors"]) + len(raised["ok"]) == 60
    died = one(reports, 0, "died")
    victims = [r["pid"] for r in reports[2] if r["what"] == "victim"]
    assert died["errors"], died
    for e in died["errors"]:
        assert e["type"] == "WorkerDied" and e["signal"] == signal.SIGKILL and e["pid"] in victims, e
        assert e["erank"] == 2 and e["host"] == host and f"[rank 2 on {host}]" in e["text"]
    assert len(died["errors"]) + len(died["ok"]) == 60
    assert one(reports, 0, "goes on")["got"] == 7
    assert "after shutdown" in one(reports, 0, "submit after shutdown")["text"]
    for r in range(3):
        assert one(reports, r, "after")["got"] == ([3, 2, 1] if r == 0 else None)


def test_rank_killed_during_imap_and_executor_is_an_error_at_rank_0(tmp_path):
    rc, reports, out = run(tmp_path, BARRIER + textwrap.dedent('''
        report(what="program", pid=os.getpid())
        def kill_program(x):  # a worker's parent is its rank's program
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)
        def slow(x):
            time.sleep(0.05)
            return x
        if world.rank == 2:
            with pm.Executor() as ex:  # serves until its program is killed
                pass
        try:
            with pm.Executor() as ex:
                if ex is not None:
                    fs = [ex.submit(on_rank_2(kill_program, "killed"), x) for x in range(60)]
                    errors = [f.exception(timeout=30) for f in fs]
                    since = time.time() - os.stat(os.path.join(FLAGS, "killed")).st_mtime
                    e = next(e for e in errors if e is not None)
                    report(what="future", since=since, **failure(e))
                    try:
                        ex.submit(abs, 1)
                        report(what="broken", type=None)
                    except Exception as b:
                        report(what="broken", **failure(b))
            report(what="exec left", type=None)
        except Exception as e:
            report(what="exec left", **failure(e))
        try:
            list(pm.imap(slow, range(100)))
            report(what="imap", type=None)
        except Exception as e:
            report(what="imap", **failure(e))
    '''))
    assert rc == 128 + signal.SIGKILL, out
    assert "forking a process that runs" not in out, out
    host = os.uname().nodename
    victim = one(reports, 2, "program")["pid"]
    future = one(reports, 0, "future")
    assert future["type"] == "WorkerDied" and future["signal"] == signal.SIGKILL and future["pid"] == victim
    assert future["erank"] == 2 and f"the program of rank 2 on {host} (pid {victim}) ended" in future["text"]
    print(f"rank 0 saw rank 2's program killed after {future['since']:.3f} s")
    assert future["since"] < 15, future  # at once, not at some timeout (loose: a loaded host)
    broken = one(reports, 0, "broken")
    assert broken["type"] == "BrokenExecutor" and "rank 2" in broken["text"], broken
    assert one(reports, 0, "exec left")["type"] is None
    assert "rank 0 abandoned the call: WorkerDied" in one(reports, 1, "exec left")["text"]
    assert one(reports, 0, "imap")["type"] == "WorkerDied"  # rank 2 stays gone
    assert one(reports, 1, "imap")["type"] == "Error"
    assert [r["what"] for r in reports[2]] == ["program"]


def test_executor_shutdown_and_open_calls(tmp_path):
    rc, reports, out = run(tmp_path, textwrap.dedent('''
        def slow(x):
            time.sleep(0.01)
            return x
        ex = pm.Executor(max_workers=1)
        with ex as got:
            if got is not None:
                fs = [ex.submit(slow, x) for x in range(300)]
                try:  # the executor's call is open on every rank: no other call starts
                    pm.map(abs, [1])
                    order = "no error"
                except pf.Error as e:
                    order = str(e)
                ex.shutdown(wait=False, cancel_futures=True)   # queued futures cancelled
                cancelled = sum(f.cancelled() for f in fs)
                done = [f.result() for f in fs if not f.cancelled()]
                report(what="shutdown", cancelled=cancelled, done=done == sorted(done),
                       total=cancelled + len(done), order=order)
        with pm.Executor() as ex:
            if ex is not None:
                import concurrent.futures as cf
                try:
                    list(ex.map(time.sleep, [2], timeout=0.2))
                    timed = "no error"
                except TimeoutError:
                    timed = "TimeoutError"
                fs = [ex.submit(abs, -i) for i in range(20)]
                done = sorted(f.result() for f in cf.as_completed(fs, timeout=30))
                report(what="timeout", timed=timed, done=done == list(range(20)))
                ex.shutdown(wait=False)
        report(what="next", got=pm.map(abs, range(-2, 0)))       # waits for the executor's end
        it = pm.imap(abs, range(-50, 0))
        if world.root:
            head = next(it)
            try:
                pm.map(abs, [1])
                report(what="open", type=None)
            except Exception as e:
                report(what="open", **failure(e))
            rest = list(it)
            report(what="closed", got=[head] + rest == list(range(50, 0, -1)))
        for y in pm.imap(abs, range(-50, 0)):  # left by break: the dropped iterator ends the call
            break
        report(what="last", got=pm.map(abs, range(-2, 0)))
    '''))
    assert rc == 0, out
    assert "forking a process that runs" not in out, out
    shutdown = one(reports, 0, "shutdown")
    assert shutdown["total"] == 300 and shutdown["cancelled"] > 0 and shutdown["done"] is True, shutdown
    assert "still open" in shutdown["order"], shutdown
    assert one(reports, 0, "timeout") == dict(rank=0, what="timeout", timed="TimeoutError", done=True)
    opened = one(reports, 0, "open")
    assert opened["type"] == "Error" and "still open" in opened["text"], opened
    assert one(reports, 0, "closed")["got"] is True
    for r in range(3):
        assert one(reports, r, "next")["got"] == ([2, 1] if r == 0 else None)
        assert one(reports, r, "last")["got"] == ([2, 1] if r == 0 else None)


def test_streams_and_executor_without_a_launcher_run_locally(tmp_path):
    script = tmp_path / "local.py"
    script.write_text(textwrap.dedent('''
        import itertools
        import parafork as pf, parafork.mpi as pm
        pm.init()
        print(list(pm.imap(lambda x: x * 2, range(5))), sorted(pm.imap_unordered(abs, range(-3, 0))))
        it = pm.imap(str, itertools.count())
        print(list(itertools.islice(it, 3)))
        it.close()
        with pm.Executor(2) as ex:
            f = ex.submit(divmod, 7, 2)
            g = ex.submit(int, "x")
            print(f.result(), type(g.exception()).__name__, list(ex.map(abs, [-1, -2], chunksize=2)))
    '''))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[0, 2, 4, 6, 8] [1, 2, 3]", "['0', '1', '2']", "(3, 1) ValueError [1, 2]"]


def test_stream_example_runs_over_3_ranks(tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "mpi_stream.py")
    rc, reports, out = run(tmp_path, None, script=example)
    assert rc == 0, out
    assert "106,239 (353 steps), over 3 ranks" in out and "837799: 524" in out


# ---- the journal (map and starmap with journal=...) -----------------------------------------------

JMAGIC = b"parafork python journal 1\n"


def journal_runs(path):
    """The runs kept in a journal, read by the format's description alone: (call, first, count,
    offset of the record)."""
    data = path.read_bytes()
    assert data.startswith(JMAGIC)
    at, runs = len(JMAGIC), []
    while at < len(data):
        kind, length, crc = struct.unpack_from("<cII", data, at)
        assert zlib.crc32(data[at:at + 5]) == crc and kind in (b"C", b"V")
        body = data[at + 9:at + 9 + length]
        assert hashlib.blake2b(body, digest_size=8).digest() == data[at + 9 + length:at + 17 + length]
        if kind == b"V":
            runs.append(struct.unpack_from("<QQI", body) + (at,))
        at += 9 + length + 8
    assert at == len(data)
    return runs


def calls_in(path):
    return [int(line) for line in path.read_text().split()] if path.exists() else []


JOURNALED = '''
J, CALLS, FAIL = {journal!r}, {calls!r}, {fail!r}

def count(path, x):  # one short O_APPEND write per call: lines do not interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"%d\\n" % x)
    os.close(fd)

def f(x):
    count(CALLS + ".f", x)
    if x == 2000 and os.path.exists(FAIL):
        raise ValueError("item 2000 fails on the first run")
    return x * x + 1

def g(a, b):
    count(CALLS + ".g", a * 100 + b)
    return a * 1000 + b

N = int(os.environ.get("JOURNAL_TEST_N", "3000"))
try:
    ys = pm.map(f, range(N), chunksize=10, journal=J)
    report(what="map", ok=(ys == [x * x + 1 for x in range(N)]) if world.root else ys)
except Exception as e:
    report(what="map", **failure(e))
pairs = [(a, b) for a in range(30) for b in range(20)]
zs = pm.starmap(g, pairs, chunksize=7, journal=J)
report(what="starmap", ok=(zs == [a * 1000 + b for a, b in pairs]) if world.root else zs)
'''


@pytest.mark.timeout(150)  # several runs, each bounded by its own timeout
def test_the_journal_resumes_a_failed_map_with_what_is_missing(tmp_path):
    journal, calls, fail = tmp_path / "run.journal", tmp_path / "calls", tmp_path / "fail"
    body = JOURNALED.format(journal=str(journal), calls=str(calls), fail=str(fail))
    fail.touch()
    runs = []
    for k in range(3):
        d = tmp_path / f"run{k}"
        d.mkdir()
        rc, reports, out = run(d, body)
        assert rc == 0, out
        runs.append((reports, calls_in(tmp_path / "calls.f"), calls_in(tmp_path / "calls.g")))
        for p in (tmp_path / "calls.f", tmp_path / "calls.g"):
            p.unlink(missing_ok=True)
        if k == 0:
            kept = journal_runs(journal)
            fail.unlink()

    # First run: item 2000 fails the map; what was answered before is kept; the starmap is whole.
    reports, fs, gs = runs[0]
    first = one(reports, 0, "map")
    assert first["type"] == "ValueError" and "item 2000 fails" in first["text"], first
    for r in (1, 2):
        assert "rank 0 abandoned the call" in one(reports, r, "map")["text"]
        assert one(reports, r, "starmap")["ok"] is None
    assert one(reports, 0, "starmap")["ok"] is True and sorted(gs) == sorted(a * 100 + b for a in range(30)
                                                                               for b in range(20))
    kept_f = {i for call, a, c, _ in kept if call == 1 for i in range(a, a + c)}
    assert 0 < len(kept_f) < 3000 and 2000 not in kept_f
    assert kept_f <= set(fs)  # kept only what was computed
    assert {i for call, a, c, _ in kept if call == 2 for i in range(a, a + c)} == set(range(600))

    # Second run: exactly the items not kept, once each; the full results in order.
    reports, fs, gs = runs[1]
    assert one(reports, 0, "map")["ok"] is True and one(reports, 0, "starmap")["ok"] is True
    assert sorted(fs) == sorted(set(range(3000)) - kept_f), "the rerun computed kept items or missed some"
    assert gs == []

    # Third run: all kept, nothing computed.
    reports, fs, gs = runs[2]
    assert one(reports, 0, "map")["ok"] is True and one(reports, 0, "starmap")["ok"] is True
    assert fs == [] and gs == []
    assert one(reports, 1, "map")["ok"] is None


@pytest.mark.timeout(100)  # several runs, each bounded by its own timeout
def test_a_journal_of_another_call_is_refused_on_every_rank(tmp_path, monkeypatch):
    journal, calls = tmp_path / "run.journal", tmp_path / "calls"
    body = JOURNALED.format(journal=str(journal), calls=str(calls), fail=str(tmp_path / "nofail"))
    d = tmp_path / "a"
    d.mkdir()
    rc, reports, out = run(d, body)
    assert rc == 0, out
    size = journal.stat().st_size
    (tmp_path / "calls.f").unlink()
    (tmp_path / "calls.g").unlink()
    monkeypatch.setenv("JOURNAL_TEST_N", "2999")  # the same program over one item fewer
    d = tmp_path / "b"
    d.mkdir()
    rc, reports, out = run(d, body)
    assert rc == 0, out
    refused = one(reports, 0, "map")
    assert refused["type"] == "BadLaunch" and "holds call 1 of another function or input" in refused["text"]
    assert "over 3000 items; this call is map __main__.f" in refused["text"] and "over 2999" in refused["text"]
    for r in (1, 2):
        assert "rank 0 abandoned the call: BadLaunch" in one(reports, r, "map")["text"]
    assert calls_in(tmp_path / "calls.f") == [] and calls_in(tmp_path / "calls.g") == []
    assert journal.stat().st_size == size  # nothing written
    assert one(reports, 0, "starmap")["ok"] is True


LOCAL_JOURNAL = '''
import os, sys, warnings
import parafork.mpi as pm
pm.init()
J, N, CALLS, STAR = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "star"

def f(x):
    fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"%d\\n" % x)
    os.close(fd)
    return -x

def h(x):
    return f(x)

with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    try:
        if STAR:
            ys = pm.starmap(f, [(x,) for x in range(N)], chunksize=50, journal=J)
        else:
            ys = pm.map(h if sys.argv[4] == "h" else f, range(N), chunksize=50, journal=J)
        print("ok", ys == [-x for x in range(N)])
    except Exception as e:
        print(type(e).__name__, e)
for w in seen:
    print("warning", w.message)
'''


@pytest.mark.timeout(120)  # several runs, each bounded by its own timeout
def test_the_journal_without_a_launcher_and_its_damage(tmp_path):
    """Without mpirun (one rank, the same file format): a torn end is dropped with a warning
    and only its items run again; a corrupt record, in its head or its body, a file that is
    not a journal, another function, another item count: refused, nothing computed."""
    script = tmp_path / "local.py"
    script.write_text(LOCAL_JOURNAL)
    journal, calls = tmp_path / "run.journal", tmp_path / "calls"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}

    def go(n=500, how="f"):
        calls.unlink(missing_ok=True)
        r = subprocess.run([sys.executable, str(script), str(journal), str(n), str(calls), how],
                           capture_output=True, text=True, timeout=50, env=env)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines(), calls_in(calls)

    out, done = go()
    assert out == ["ok True"] and sorted(done) == list(range(500))
    good = journal.read_bytes()
    runs = journal_runs(journal)
    assert sorted((a, c) for _, a, c, _ in runs) == [(a, 50) for a in range(0, 500, 50)]
    assert go() == (["ok True"], [])  # all kept

    # Cut 5 bytes short: the last record is dropped (and the file truncated there), with a
    # warning; its 50 items, and only they, run again.
    journal.write_bytes(good[:-5])
    out, done = go()
    last = max(runs, key=lambda r: r[3])
    assert out[0] == "ok True" and "dropped a record cut short at byte" in out[1], out
    assert sorted(done) == list(range(last[1], last[1] + 50))
    assert journal.read_bytes() == good  # the same record, written again
    assert go() == (["ok True"], [])

    middle = sorted(runs, key=lambda r: r[3])[4][3]
    for at, why in ((middle + 20, "a record does not check out"),        # a byte of a body
                    (middle + 2, "a record's head does not check out"),  # its length: not read as a torn end
                    (3, "not a parafork Python journal")):
        damaged = bytearray(good)
        damaged[at] ^= 0x40
        journal.write_bytes(bytes(damaged))
        out, done = go()
        assert len(out) == 1 and out[0].startswith("ProtocolError") and why in out[0], (why, out)
        assert done == [] and journal.read_bytes() == bytes(damaged)

    journal.write_bytes(good)
    for n, how, their in ((499, "f", "map __main__.f"), (500, "h", "map __main__.h"),
                          (500, "star", "starmap __main__.f")):
        out, done = go(n, how)
        assert len(out) == 1 and out[0].startswith("BadLaunch") and "holds call 1 of another function" in out[0]
        assert f"this call is {their}" in out[0], out
        assert done == [] and journal.read_bytes() == good

"""parafork.Pool against multiprocessing.Pool, and what it does beyond it."""

import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import interrupted_run

import parafork as pf


def square(x):
    return x * x


def add(a, b):
    return a + b


def kw(a, b=0, *, c=0):
    return (a, b, c)


def slow_square(x):
    time.sleep(0.01 * (x % 3))
    return x * x


def boom(x):
    if x == 3:
        raise KeyError(f"no {x}")
    return x


def pid_of(_):
    return os.getpid()


_init_value = None


def set_init(v):
    global _init_value
    _init_value = v


def read_init(_):
    return _init_value, os.getpid()


def kill_self_once(marker):
    # The first run kills its own worker; a retry (a fresh worker) finds the marker and answers.
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def sleep_then(x):
    time.sleep(x)
    return x


def segfault(_):
    return ctypes.string_at(0)


def run_both(fn):
    """fn(pool) with multiprocessing's and with ours: the same answer from each."""
    mp = multiprocessing.get_context("fork").Pool(2)
    try:
        expected = fn(mp)
    finally:
        mp.terminate()
        mp.join()
    with pf.Pool(2) as p:
        got = fn(p)
    assert got == expected
    return got


@pytest.mark.parametrize("call", [
    lambda p: p.apply(square, (7,)),
    lambda p: p.apply(kw, (1,), {"b": 2, "c": 3}),
    lambda p: p.apply_async(add, (2, 3)).get(timeout=20),
    lambda p: p.map(square, range(100)),
    lambda p: p.map(square, range(100), chunksize=7),
    lambda p: p.map(square, []),
    lambda p: p.map(str, iter(range(50))),
    lambda p: p.map_async(slow_square, range(30)).get(timeout=20),
    lambda p: p.starmap(add, [(i, i) for i in range(40)]),
    lambda p: p.starmap_async(add, [(1, 2), (3, 4)], chunksize=1).get(timeout=20),
    lambda p: list(p.imap(slow_square, range(30))),
    lambda p: list(p.imap(square, range(30), chunksize=4)),
    lambda p: sorted(p.imap_unordered(slow_square, range(30))),
    lambda p: sorted(p.imap_unordered(square, iter(range(30)), chunksize=5)),
], ids=["apply", "apply-kwds", "apply_async", "map", "map-chunksize", "map-empty", "map-iterator",
        "map_async", "starmap", "starmap_async", "imap", "imap-chunks", "imap_unordered",
        "imap_unordered-chunks"])
@pytest.mark.timeout(60)
def test_each_method_answers_as_multiprocessing_does(call):
    run_both(call)


@pytest.mark.timeout(60)
def test_async_result_api_matches():
    def probe(p):
        r = p.apply_async(sleep_then, (0.3,))
        early = (r.ready(),)
        with pytest.raises(ValueError):
            r.successful()  # not ready yet
        r.wait()
        bad = p.apply_async(boom, (3,))
        bad.wait(20)
        return early + (r.ready(), r.successful(), r.get(), bad.ready(), bad.successful())

    assert run_both(probe) == (False, True, True, 0.3, True, False)


@pytest.mark.timeout(60)
def test_task_exception_keeps_its_type_and_chains_the_remote_traceback():
    with pf.Pool(2) as p:
        with pytest.raises(KeyError) as e:
            p.apply(boom, (3,))
        assert isinstance(e.value.__cause__, pf.RemoteTraceback)
        assert "boom" in str(e.value.__cause__) and "KeyError" in str(e.value.__cause__)
        with pytest.raises(KeyError):
            p.map(boom, range(10), chunksize=1)
        with pytest.raises(KeyError):
            p.apply_async(boom, (3,)).get(timeout=20)
        it = p.imap(boom, range(5))
        assert [next(it), next(it), next(it)] == [0, 1, 2]
        with pytest.raises(KeyError):
            next(it)
        assert next(it) == 4  # iteration goes on after a failed item, as multiprocessing's
        assert p.apply(square, (5,)) == 25  # the pool is still fine


@pytest.mark.timeout(60)
def test_get_with_timeout_raises_multiprocessing_timeout_error():
    with pf.Pool(1) as p:
        r = p.apply_async(sleep_then, (5,))
        t = time.monotonic()
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=0.2)
        assert time.monotonic() - t < 4
        m = p.map_async(sleep_then, [5])
        with pytest.raises(multiprocessing.TimeoutError):
            m.get(timeout=0.1)
        it = p.imap(sleep_then, [5])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.1)


@pytest.mark.timeout(60)
def test_closed_or_terminated_pool_raises_value_error():
    p = pf.Pool(1)
    p.close()
    for call in (lambda: p.apply(square, (1,)), lambda: p.apply_async(square, (1,)),
                 lambda: p.map(square, [1]), lambda: p.imap(square, [1])):
        with pytest.raises(ValueError):
            call()
    p.join()
    q = pf.Pool(1)
    with pytest.raises(ValueError):
        q.join()  # still running, as multiprocessing
    q.terminate()
    with pytest.raises(ValueError):
        q.apply(square, (1,))
    q.join()


@pytest.mark.timeout(60)
def test_lambdas_and_closures_go_by_cloudpickle():
    base = 10
    with pf.Pool(2) as p:
        assert p.apply(lambda x: x + base, (1,)) == 11
        assert p.map(lambda x: x * base, range(5)) == [0, 10, 20, 30, 40]

        def later(x):  # defined after the pool forked
            return x - base

        assert list(p.imap(later, range(3))) == [-10, -9, -8]
        assert p.apply_async(lambda: base * 2).get(timeout=20) == 20


@pytest.mark.timeout(60)
def test_main_function_defined_after_the_fork_goes_by_value():
    # A script's top-level function defined after the pool forked is not in the workers'
    # __main__: multiprocessing fails there; by value it works.
    script = textwrap.dedent("""
        import parafork as pf
        def before(x):
            return x + 1
        with pf.Pool(2) as p:
            def after(x):
                return x * 2
            globals()["after"] = after
            print(p.apply(before, (1,)), p.apply(after, (21,)), p.map(after, [1, 2]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "42", "[2,", "4]"]


@pytest.mark.timeout(60)
def test_initializer_runs_in_every_worker():
    with pf.Pool(2, initializer=set_init, initargs=("ready",)) as p:
        got = p.map(read_init, range(20), chunksize=1)
    assert {v for v, _ in got} == {"ready"}
    assert os.getpid() not in {pid for _, pid in got}


@pytest.mark.timeout(60)
def test_maxtasksperchild_recycles_workers():
    with pf.Pool(2, maxtasksperchild=2) as p:
        pids = [p.apply(pid_of, (i,)) for i in range(12)]
    assert len(set(pids)) >= 6  # each worker ran at most 2 tasks
    from collections import Counter
    assert max(Counter(pids).values()) <= 2


@pytest.mark.timeout(60)
def test_worker_sigkilled_mid_task_fails_it_with_worker_died_and_is_replaced():
    with pf.Pool(2) as p:
        with pytest.raises(pf.WorkerDied) as e:
            p.apply(_kill_own_worker, ())
        assert e.value.signal == signal.SIGKILL and e.value.pid > 0
        assert e.value.task is not None
        assert e.value.pid not in p.map(pid_of, range(40), chunksize=1)  # replaced
        assert p.apply(square, (6,)) == 36


def _kill_own_worker():
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.timeout(60)
def test_worker_sigkilled_with_retries_runs_the_task_again(tmp_path):
    marker = str(tmp_path / "once")
    with pf.Pool(2, retries=1) as p:
        assert p.apply(kill_self_once, (marker,)) == "survived"
    with pf.Pool(2) as p:
        os.unlink(marker)
        with pytest.raises(pf.WorkerDied):
            p.apply(kill_self_once, (marker,))


@pytest.mark.timeout(60)
def test_worker_killed_from_outside_mid_task():
    with pf.Pool(2) as p:
        r = p.apply_async(sleep_then, (30,))
        pid = None
        for _ in range(200):  # find the worker running it: a child sleeping in Python
            kids = [int(x) for x in os.listdir("/proc") if x.isdigit() and _ppid(int(x)) == os.getpid()]
            if kids:
                pid = kids[0]
                break
            time.sleep(0.01)
        time.sleep(0.3)
        for k in kids:
            os.kill(k, signal.SIGKILL)
        with pytest.raises(pf.WorkerDied) as e:
            r.get(timeout=20)
        assert e.value.signal == signal.SIGKILL
        assert p.apply(square, (3,)) == 9
        del pid


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return int(s[s.rindex(")") + 2:].split()[1])


@pytest.mark.timeout(60)
def test_segfaulting_task_is_worker_died_with_sigsegv():
    with pf.Pool(2) as p:
        with pytest.raises(pf.WorkerDied) as e:
            p.apply(segfault, (0,))
        assert e.value.signal == signal.SIGSEGV
        err = []
        r = p.apply_async(segfault, (0,), error_callback=err.append)
        r.wait(20)
        assert r.ready() and not r.successful() and isinstance(err[0], pf.WorkerDied)
        assert p.apply(square, (4,)) == 16


@pytest.mark.timeout(60)
def test_task_over_timeout_fails_with_task_timeout():
    with pf.Pool(2, timeout=0.3) as p:
        t = time.monotonic()
        with pytest.raises(pf.TaskTimeout) as e:
            p.apply(sleep_then, (30,))
        assert time.monotonic() - t < 20
        assert isinstance(e.value, TimeoutError) and e.value.pid > 0
        assert p.apply(sleep_then, (0.01,)) == 0.01


@pytest.mark.timeout(60)
def test_callbacks_run_without_get():
    got, errors = [], []
    done = threading.Event()
    with pf.Pool(2) as p:
        for i in range(10):
            p.apply_async(square, (i,), callback=got.append, error_callback=errors.append)
        p.apply_async(boom, (3,), callback=got.append, error_callback=errors.append)
        p.map_async(square, range(5), callback=lambda ys: (got.append(ys), done.set()))
        p.starmap_async(add, [(1, "x")], error_callback=errors.append)
        deadline = time.monotonic() + 20
        while (len(got) < 11 or len(errors) < 2) and time.monotonic() < deadline:
            time.sleep(0.01)  # nobody calls get(): the handler delivers
        assert done.is_set()
    assert sorted(x for x in got if isinstance(x, int)) == [i * i for i in range(10)]
    assert [0, 1, 4, 9, 16] in got
    assert sorted(type(e).__name__ for e in errors) == ["KeyError", "TypeError"]


@pytest.mark.timeout(60)
def test_close_join_waits_for_every_task():
    got = []
    p = pf.Pool(2)
    rs = [p.apply_async(sleep_then, (0.05,), callback=got.append) for _ in range(6)]
    p.close()
    p.join()
    assert got == [0.05] * 6 and all(r.ready() for r in rs)


@pytest.mark.timeout(60)
def test_terminate_with_tasks_running_returns_promptly_and_reaps_all():
    p = pf.Pool(2)
    errors = []
    rs = [p.apply_async(sleep_then, (30,), error_callback=errors.append) for _ in range(4)]
    plain = p.apply_async(sleep_then, (30,))
    time.sleep(0.3)
    t = time.monotonic()
    p.terminate()
    p.join()
    assert time.monotonic() - t < 10
    with pytest.raises(pf.Error):
        plain.get(timeout=5)
    assert all(r.ready() and not r.successful() for r in rs) and len(errors) == 4
    # the fixture checks that no worker is left


@pytest.mark.timeout(60)
def test_context_manager_exit_terminates():
    with pf.Pool(2) as p:
        r = p.apply_async(sleep_then, (30,))
    with pytest.raises(pf.Error):
        r.get(timeout=5)


@pytest.mark.timeout(60)
def test_unpicklable_argument_fails_the_task_not_the_pool():
    with pf.Pool(1) as p:
        r = p.apply_async(square, (threading.Lock(),))
        with pytest.raises(TypeError):
            r.get(timeout=5)
        with pytest.raises(pf.PicklingError):
            p.apply(threading.Lock, ())  # the result does not pickle
        assert p.apply(square, (2,)) == 4


def _raise_in_init():
    raise OSError("no config")


@pytest.mark.timeout(60)
def test_initializer_that_raises_fails_every_task_with_its_exception():
    with pf.Pool(2, initializer=_raise_in_init) as p:
        with pytest.raises(OSError, match="no config"):
            p.apply(square, (1,))
        with pytest.raises(OSError):
            p.apply_async(square, (1,)).get(timeout=20)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["map", "apply", "idle-main"])
def test_ctrl_c_stops_the_workers_and_raises_keyboard_interrupt(where):
    # "map", "apply": the main thread drives; "idle-main": the handler thread drives while main
    # sleeps.
    script = textwrap.dedent(f"""
        import os, sys, time
        import parafork as pf
        def nap(x):
            time.sleep(30)
        p = pf.Pool(2)
        print("ready", flush=True)
        try:
            if "{where}" == "map":
                p.map(nap, range(4), chunksize=1)
            elif "{where}" == "apply":
                p.apply(nap, (0,))
            else:
                r = p.apply_async(nap, (0,))
                time.sleep(30)
        except KeyboardInterrupt:
            def ppid(x):
                try:
                    return open(f"/proc/{{x}}/stat").read().rsplit(")", 1)[1].split()[1]
                except OSError:
                    return None
            kids = [x for x in os.listdir("/proc") if x.isdigit() and ppid(x) == str(os.getpid())]
            print("interrupted", len(kids), flush=True)
        p.terminate()
        p.join()
    """)
    assert interrupted_run(script, 1) == ["interrupted", "0"]


@pytest.mark.timeout(60)
def test_many_threads_share_one_pool():
    errors = []
    with pf.Pool(2) as p:
        def client(k):
            try:
                for i in range(100):
                    assert p.apply(add, (k, i)) == k + i
                    if i % 10 == 0:
                        assert p.map(square, range(k, k + 5)) == [x * x for x in range(k, k + 5)]
                        assert p.apply_async(add, (i, k)).get(timeout=20) == i + k
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


@pytest.mark.timeout(60)
def test_program_that_exits_without_closing_its_pool_exits_cleanly():
    script = textwrap.dedent("""
        import time
        import parafork as pf
        def nap(x):
            time.sleep(x)
            return x
        p = pf.Pool(2)
        p.apply_async(nap, (30,), callback=print)
        print(p.apply_async(nap, (0.01,)).get())
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0.01"]


def own_comm(_):
    with open(f"/proc/{os.getpid()}/comm") as f:
        return f.read().strip()


@pytest.mark.timeout(60)
def test_name_titles_the_workers():
    with pf.Pool(2, name="pq") as p:
        assert p.apply(own_comm, (0,)).startswith("parafork:pq")


@pytest.mark.timeout(60)
def test_imap_iterates_after_close_as_multiprocessing():
    def probe(p):
        it = p.imap(square, range(50))
        un = p.imap_unordered(square, range(50), chunksize=3)
        p.close()
        got = (list(it), sorted(un))
        p.join()
        return got

    run_both(probe)

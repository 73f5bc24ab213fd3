import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import parafork as pf


def test_lambda_closure_and_nested_function_reach_the_workers_by_fork():
    table = {i: i * 10 for i in range(50)}  # read in the workers: never sent

    def nested(x):
        return table[x] + 1

    assert pf.map(lambda x: x * x, range(50)) == [x * x for x in range(50)]
    assert pf.map(nested, range(50)) == [i * 10 + 1 for i in range(50)]
    assert pf.starmap(lambda a, b: a - b, [(5, 3), (1, 1)]) == [2, 0]
    assert list(pf.imap(nested, list(range(50)))) == [i * 10 + 1 for i in range(50)]


def test_items_of_a_sequence_are_not_sent():
    locks = [threading.Lock() for _ in range(20)]  # cannot be pickled
    with pytest.raises(TypeError):
        pickle.dumps(locks[0])
    assert pf.map(lambda l: l.locked(), locks, jobs=2) == [False] * 20


def test_results_in_input_order_even_when_early_items_finish_last():
    def slow_first(x):
        if x < 2:
            time.sleep(0.2)
        return x

    assert pf.map(slow_first, range(20), jobs=2, chunksize=1) == list(range(20))
    assert list(pf.imap(slow_first, range(20), jobs=2, chunksize=1)) == list(range(20))
    got = list(pf.imap_unordered(slow_first, range(20), jobs=2, chunksize=1))
    assert sorted(got) == [(i, i) for i in range(20)]


def test_100000_items_exact():
    n = 100_000
    assert pf.map(lambda x: x * 3 + 1, range(n)) == [x * 3 + 1 for x in range(n)]


def test_other_iterables_stream_lazily_with_a_bound_in_flight():
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield i

    it = pf.imap(lambda x: x + 1, items(), jobs=2, chunksize=1)
    assert next(it) == 1
    assert pulled < 1000  # not the whole input
    assert next(it) == 2
    del it  # dropping the iterator stops its workers (the fixture checks)
    assert pf.map(str, iter(range(1000))) == [str(i) for i in range(1000)]
    assert pf.starmap(pow, ((b, 2) for b in range(10))) == [b * b for b in range(10)]


def test_jobs_rule(monkeypatch):
    monkeypatch.setenv("PARAFORK_JOBS", "3")
    monkeypatch.setenv("PP_JOBS", "5")
    assert pf.default_jobs() == 3
    monkeypatch.delenv("PARAFORK_JOBS")
    assert pf.default_jobs() == 5
    pids = set(pf.map(lambda x: os.getpid(), range(200), jobs=2, chunksize=1))
    assert len(pids) <= 2 and os.getpid() not in pids
    monkeypatch.setenv("PARAFORK_JOBS", "nonsense")
    with pytest.raises(pf.Error):
        pf.map(abs, [1])


class Custom(Exception):
    pass


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):  # pickles but does not unpickle: re-created as RemoteError
        super().__init__(a)
        self.b = b


def raises_at_3(x):
    if x == 3:
        raise Custom(f"bad item {x}")
    return x


def test_a_tasks_exception_comes_back_with_its_type_and_the_remote_traceback_as_cause():
    with pytest.raises(Custom, match="bad item 3") as info:
        pf.map(raises_at_3, range(10), chunksize=1)
    cause = info.value.__cause__
    assert isinstance(cause, pf.RemoteTraceback)
    assert "raises_at_3" in str(cause) and "bad item 3" in str(cause)
    assert any("task 3" in n for n in info.value.__notes__)
    with pytest.raises(ZeroDivisionError):
        pf.map(lambda x: 1 / x, [1, 0, 2])

    def odd(x):
        raise NeedsTwoArgs("odd", 2)

    with pytest.raises(pf.RemoteError, match="NeedsTwoArgs") as info:
        pf.map(odd, [1])
    assert info.value.task == 0 and info.value.pid > 0
    assert isinstance(info.value.__cause__, pf.RemoteTraceback)


def test_imap_raises_at_the_failing_item_and_goes_on():
    it = pf.imap(raises_at_3, range(6), chunksize=1)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(Custom):
        next(it)
    assert list(it) == [4, 5]


def test_a_worker_killed_mid_task_is_worker_died_at_once():
    def dies_at_5(x):
        if x == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with pytest.raises(pf.WorkerDied) as info:
        pf.map(dies_at_5, range(20), chunksize=1)
    e = info.value
    assert e.signal == signal.SIGKILL and e.task == 5 and e.pid > 0 and e.exitcode == 0
    with pytest.raises(pf.WorkerDied):
        list(pf.imap(dies_at_5, range(20), chunksize=1))


def test_retries_rerun_a_task_whose_worker_died(tmp_path):
    marker = tmp_path / "died-once"

    def dies_once(x):
        if x == 7 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x * 2

    assert pf.map(dies_once, range(20), retries=1, chunksize=1) == [x * 2 for x in range(20)]
    assert marker.exists()


def test_a_task_over_timeout_is_task_timeout():
    def hangs_at_2(x):
        if x == 2:
            time.sleep(60)
        return x

    t0 = time.monotonic()
    with pytest.raises(pf.TaskTimeout) as info:
        pf.map(hangs_at_2, range(4), timeout=0.5, chunksize=1)
    assert info.value.task == 2 and info.value.pid > 0
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - t0 < 30  # not the whole sleep


def test_an_unpicklable_result_is_an_error_naming_the_task():
    def lock_at_4(x):
        return threading.Lock() if x == 4 else x

    with pytest.raises(pf.PicklingError, match="task 4") as info:
        pf.map(lock_at_4, range(8), chunksize=1)
    assert info.value.task == 4
    with pytest.raises(pf.PicklingError, match="task 4"):
        list(pf.imap(lock_at_4, range(8)))


def test_fork_runs_pythons_fork_hooks_in_each_worker():
    # os.register_at_fork hooks run exactly as around os.fork: the workers are Python children.
    in_child = []
    os.register_at_fork(after_in_child=lambda: in_child.append(os.getpid()))
    assert pf.map(lambda x: in_child[-1] == os.getpid(), range(4), jobs=2) == [True] * 4


def test_ctrl_c_stops_the_workers_and_raises_keyboard_interrupt(tmp_path):
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import os, time, parafork as pf
        def is_child(p):
            try:
                return open(f"/proc/{{p}}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid())
            except OSError:
                return False
        def slow(x):
            open({str(ready)!r}, "w").close()
            time.sleep(60)
        try:
            pf.map(slow, range(4), jobs=2, chunksize=1)
        except KeyboardInterrupt:
            left = [p for p in os.listdir("/proc") if p.isdigit() and is_child(p)]
            print("KeyboardInterrupt; children left:", len(left), flush=True)
    """)
    env = dict(os.environ)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "KeyboardInterrupt; children left: 0" in out
    assert p.returncode == 0


def test_name_titles_the_workers():
    comms = pf.map(lambda x: open("/proc/self/comm").read().strip(), range(4), jobs=1, name="sq")
    assert set(comms) == {"parafork:sq#1"} or all(c.startswith("parafork:sq") for c in comms)

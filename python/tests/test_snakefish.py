"""parafork.snakefish: snakefish's names and semantics, without its failures."""

import os
import signal
import time

import pytest

from parafork import snakefish
import parafork as pf

pytestmark = pytest.mark.timeout(30)

a = 1
seen = {}


@pytest.fixture(autouse=True)
def fresh_globals():
    global a
    a = 1
    seen.clear()


def set_a():
    global a
    a = [1, 2, 3]
    return "ok"


def extract(g):
    return {"a": g["a"]}


def merge(g, x):
    g.update(x)


def test_thread_lifecycle_and_merge():
    t = snakefish.Thread(set_a, extract, merge)
    assert t.is_alive() is False
    t.start()
    t.join()
    assert t.is_alive() is False
    assert t.get_exit_status() == 0 and t.get_result() == "ok"
    assert a == [1, 2, 3]
    t.dispose()


def test_thread_misuse_is_runtime_error():
    t = snakefish.Thread(set_a)
    for call in (t.join, t.try_join, t.get_exit_status, t.get_result):
        with pytest.raises(RuntimeError):
            call()
    t.start()
    with pytest.raises(RuntimeError):
        t.start()
    t.join()
    assert t.get_result() == "ok"
    assert a == 1  # no extract/merge: the parent's globals are untouched


def test_thread_exception_from_get_result_only():
    def boom():
        raise ZeroDivisionError("x")

    t = snakefish.Thread(boom)
    t.start()
    t.join()
    assert t.get_exit_status() == 0
    with pytest.raises(ZeroDivisionError):
        t.get_result()
    with pytest.raises(ZeroDivisionError):  # every time
        t.get_result()


def test_thread_killed_is_worker_died_with_snakefish_exit_status():
    t = snakefish.Thread(lambda: time.sleep(60))
    t.start()
    os.kill(t._t.pid, signal.SIGKILL)
    with pytest.raises(pf.WorkerDied):
        while not t.try_join():
            time.sleep(0.01)
    assert t.get_exit_status() == -signal.SIGKILL


def test_channel_api():
    ch = snakefish.Channel(1024)
    with pytest.raises(IndexError):
        ch.receive_pyobj(False)
    t = snakefish.Thread(lambda: ch.send_pyobj(("big", bytes(1 << 20))))  # 1024 x the buffer
    t.start()
    kind, data = ch.receive_pyobj(True)
    assert kind == "big" and len(data) == 1 << 20
    t.join()
    ch.dispose()
    assert snakefish.Channel().send_pyobj is not None  # the default size works too


def test_generator_api():
    def counting():
        n = 0
        while True:
            n += 1
            seen["n"] = n
            yield n

    def take(g):
        return {"seen": dict(g["seen"])}

    def put(g, x):
        g["seen"].update(x["seen"])

    g = snakefish.Generator(counting, take, put)
    g.start()
    with pytest.raises(RuntimeError):
        g.start()
    assert [g.next(True) for _ in range(3)] == [1, 2, 3]
    while True:
        try:
            v = g.next(False)
            break
        except IndexError:
            time.sleep(0.01)
    assert v == 4
    while not g.try_join():
        time.sleep(0.01)
    assert g.get_exit_status() == 0 and seen == {"n": 4}
    g.dispose()


def test_generator_misuse():
    with pytest.raises(RuntimeError):
        snakefish.Generator(lambda: 1)

    def one():
        yield 1

    g = snakefish.Generator(one)
    with pytest.raises(RuntimeError):
        g.join()
    with pytest.raises(RuntimeError):
        g.get_exit_status()
    g.start()
    assert g.next(True) == 1
    with pytest.raises(StopIteration):
        g.next(True)
    g.join()
    assert g.get_exit_status() == 0


def test_generator_killed_is_worker_died():
    def forever():
        while True:
            yield 0

    g = snakefish.Generator(forever)
    g.start()
    g.next(True)
    os.kill(g._g.pid, signal.SIGKILL)
    with pytest.raises(pf.WorkerDied):
        for _ in range(10000):
            g.next(True)
    with pytest.raises(pf.WorkerDied):
        g.join()
    assert g.get_exit_status() == -signal.SIGKILL


def note(i):
    seen[i] = os.getpid()
    return i * 10


def note_take(g):
    return dict(g["seen"])


def note_put(g, x):
    g["seen"].update(x)


def test_map_overloads():
    xs = list(range(23))
    want = [x * 10 for x in xs]
    assert snakefish.map(note, xs) == want
    assert seen == {}  # no merge: the parent saw nothing
    assert snakefish.map(note, xs, 3, 2) == want  # positional concurrency, chunksize
    assert snakefish.map(note, iter(xs), concurrency=2, chunksize=5) == want
    assert snakefish.map(note, xs, note_take, note_put, concurrency=4, chunksize=3) == want
    assert sorted(seen) == xs and os.getpid() not in seen.values()
    assert len(set(seen.values())) == 8  # one child per chunk of 3, as snakefish
    seen.clear()
    assert snakefish.map(note, xs, note_take, note_put, 2) == want
    assert len(set(seen.values())) == 2  # default chunksize: the items split evenly


def test_starmap_and_errors():
    assert snakefish.starmap(pow, [(2, 3), (3, 2), (10, 0)]) == [8, 9, 1]
    assert snakefish.starmap(lambda x, y: x - y, [(5, 1)] * 7, concurrency=3, chunksize=1) == [4] * 7
    with pytest.raises(ValueError):
        snakefish.map(int, ["1", "x", "3"], concurrency=2)
    assert snakefish.map(abs, []) == []


def test_timestamps():
    t0 = snakefish.get_timestamp()
    t1 = snakefish.get_timestamp_serialized()
    assert isinstance(t0, int) and t0 <= t1

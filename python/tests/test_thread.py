"""parafork.Thread and parafork.Generator: a function or a generator in a forked child."""

import os
import signal
import time

import pytest

import parafork as pf

pytestmark = pytest.mark.timeout(30)

counter = 0
table = {}


def bump():
    global counter
    counter += 5
    table["child"] = os.getpid()
    return "done"


def failing():
    global counter
    counter = 99
    raise KeyError("missing")


def take(g):
    return {"counter": g["counter"], "table": dict(g["table"])}


def put(g, x):
    g["counter"] += x["counter"]
    g["table"].update(x["table"])


@pytest.fixture(autouse=True)
def fresh_globals():
    global counter
    counter = 0
    table.clear()


def test_result_of_a_closure():
    base = 40
    t = pf.Thread(lambda: base + 2)
    assert not t.is_alive() and not t.started
    t.start()
    t.join()
    assert t.result() == 42 and t.exit_status == 0
    assert not t.is_alive()


def test_args_and_kwargs():
    t = pf.Thread(divmod, args=(17,), kwargs={})
    with pytest.raises(TypeError):  # divmod needs two: the child's TypeError comes back
        t.start()
        t.result()
    t = pf.Thread(pow, args=(2, 10))
    t.start()
    assert t.result() == 1024


def test_extract_merge_brings_globals_back():
    t = pf.Thread(bump, take, put)
    t.start()
    t.join()
    assert counter == 5  # 0 + the child's 5, by merge
    assert table["child"] == t.pid != os.getpid()
    assert t.result() == "done"


def test_without_merge_the_parent_is_untouched():
    t = pf.Thread(bump)
    t.start()
    assert t.result() == "done"
    assert counter == 0 and table == {}


def test_exception_comes_back_with_its_type_and_globals_still_merge():
    t = pf.Thread(failing, take, put)
    t.start()
    t.join()  # join itself does not raise f's exception
    assert counter == 99 and t.exit_status == 0
    with pytest.raises(KeyError) as info:
        t.result()
    assert isinstance(info.value.__cause__, pf.RemoteTraceback)
    assert "failing" in str(info.value.__cause__)


def test_unpicklable_result_is_a_pickling_error():
    t = pf.Thread(lambda: (lambda: 1))
    t.start()
    with pytest.raises(pf.PicklingError):
        t.result()


def test_killed_child_is_worker_died_not_a_hang():
    t = pf.Thread(time.sleep, args=(60,))
    t.start()
    assert t.is_alive()
    os.kill(t.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(pf.WorkerDied) as info:
        t.join()
    assert time.monotonic() - start < 20
    assert info.value.signal == signal.SIGKILL and info.value.pid == t.pid
    assert t.exit_status == -signal.SIGKILL
    with pytest.raises(pf.WorkerDied):  # again: the same error, at once
        t.result()


def test_exit_in_the_child_is_worker_died():
    t = pf.Thread(os._exit, args=(3,))
    t.start()
    with pytest.raises(pf.WorkerDied) as info:
        t.join()
    assert info.value.exitcode == 3 and t.exit_status == 3


def test_try_join_polls():
    t = pf.Thread(time.sleep, args=(0.3,))
    t.start()
    polls = 0
    while not t.try_join():
        polls += 1
        time.sleep(0.02)
    assert polls > 0 and t.exit_status == 0 and t.result() is None


def test_start_twice_and_exit_status_before_join_are_errors():
    t = pf.Thread(lambda: 1)
    with pytest.raises(pf.Error):
        t.exit_status
    t.start()
    with pytest.raises(pf.Error):
        t.start()
    t.join()


def test_a_dropped_running_thread_is_stopped_and_reaped():
    t = pf.Thread(time.sleep, args=(60,))
    t.start()
    pid = t.pid
    del t
    assert not os.path.exists(f"/proc/{pid}")  # stopped and reaped, not left running


def test_large_result():
    t = pf.Thread(lambda: bytes(64 << 20))
    t.start()
    assert len(t.result()) == 64 << 20


def squares(n):
    global counter
    for i in range(n):
        counter += 1
        yield i * i


def endless():
    i = 0
    while True:
        yield i
        i += 1


def test_generator_values_end_and_merge():
    g = pf.Generator(squares, take, put, args=(5,))
    g.start()
    assert list(g) == [0, 1, 4, 9, 16]
    with pytest.raises(StopIteration):
        g.next()
    g.join()
    assert counter == 5 and g.exit_status == 0


def test_generator_is_lazy_and_join_stops_an_endless_one():
    g = pf.Generator(endless)
    g.start()
    assert [g.next() for _ in range(3)] == [0, 1, 2]
    g.join()
    assert g.exit_status == 0


def test_generator_runs_on_request_only():
    g = pf.Generator(squares, take, put, args=(100,))
    g.start()
    assert g.next() == 0 and g.next() == 1
    g.join()
    assert counter == 2  # two values asked, two steps taken


def test_generator_nonblocking_next():
    def slow():
        time.sleep(0.3)
        yield "late"

    g = pf.Generator(slow)
    g.start()
    with pytest.raises(IndexError):
        g.next(False)
    while True:
        try:
            v = g.next(False)
            break
        except IndexError:
            time.sleep(0.02)
    assert v == "late"
    while not g.try_join():
        time.sleep(0.02)


def test_generator_exception_at_its_place():
    def gen():
        yield 1
        raise ValueError("bad")

    g = pf.Generator(gen)
    g.start()
    assert g.next() == 1
    with pytest.raises(ValueError, match="bad"):
        g.next()
    with pytest.raises(StopIteration):
        g.next()
    g.join()


def test_generator_value_larger_than_its_channel():
    def gen():
        yield bytes(5 << 20)
        yield bytes(3 << 20)

    g = pf.Generator(gen, size=4096)
    g.start()
    assert len(g.next()) == 5 << 20
    g.join()  # the second value, asked for by nobody, is never made


def test_generator_killed_child_is_worker_died():
    g = pf.Generator(endless)
    g.start()
    assert g.next() == 0
    os.kill(g.pid, signal.SIGKILL)
    with pytest.raises(pf.WorkerDied) as info:
        for _ in range(1000):
            g.next()
    assert info.value.signal == signal.SIGKILL


def test_generator_needs_a_generator_function():
    with pytest.raises(TypeError):
        pf.Generator(lambda: 1)


def test_timestamps_are_one_clock_across_processes():
    before = pf.timestamp()
    t = pf.Thread(pf.timestamp_serialized)
    t.start()
    inside = t.result()
    after = pf.timestamp()
    assert isinstance(inside, int) and before < inside < after


def test_a_copy_dropped_in_another_child_leaves_the_sibling_alone():
    box = [pf.Thread(time.sleep, args=(0.5,))]  # the only reference to the sibling's handle
    box[0].start()

    def drop():
        box.clear()  # the child's copy of the handle goes: the sibling must not be stopped
        return True

    t = pf.Thread(drop)
    t.start()
    assert t.result() is True
    box[0].join()  # ran its full course: exit code 0, not a SIGTERM from its sibling
    assert box[0].exit_status == 0

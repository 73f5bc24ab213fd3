"""map in chunks: a worker pickles a whole chunk's results as one list, yet every item keeps its
own result, its own error, its own death and its own timeout."""

import ctypes
import os
import signal
import tempfile
import threading
import time

import pytest

import parafork as pf
from conftest import children_of


class Custom(Exception):
    pass


class Int(int):
    pass


def test_1000000_items_exact():
    n = 1_000_000
    assert pf.map(lambda x: x * 3 + 1, range(n)) == [x * 3 + 1 for x in range(n)]


def test_int_results_keep_their_values_and_types_at_every_edge():
    # Plain ints within 64 bits travel as an array: a chunk with anything else (a bool, an int
    # subclass, a bigger int, None) is pickled, and every value comes back as it was.
    edges = [0, -1, 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**200, 257, -5]
    assert [(type(y), y) for y in pf.map(lambda x: x, edges, chunksize=1)] == \
        [(int, y) for y in edges]
    for odd in (True, Int(7), None, 2**64, 1.5):
        xs = [1, 2, odd, 4]
        got = pf.map(lambda x: x, xs, jobs=1, chunksize=4)
        assert got == xs and [type(y) for y in got] == [type(x) for x in xs]
    n = 100_000
    want = [x * x - 2**62 for x in range(n)]
    assert pf.map(lambda x: x * x - 2**62, range(n)) == want
    assert list(pf.imap(lambda x: x * x - 2**62, range(n))) == want
    assert sorted(pf.imap_unordered(lambda x: -x, range(5000))) == sorted((i, -i) for i in range(5000))
    assert sorted(pf.map(lambda x: -x, range(5000), ordered=False)) == sorted(-i for i in range(5000))


def test_a_worker_makes_the_items_of_ranges_lists_and_tuples_as_indexing_would():
    # A range within 64 bits is computed in the worker (start + i * step, modulo 2**64 on the
    # way); a larger one, a list and a tuple are indexed: every item and type as seq[i].
    for r in (range(-5, 2**63 - 1, 2**61), range(2**63 - 1, -(2**63), -(2**62)),
              range(-(2**63), 2**63 - 1, 3 * 2**58), range(10, -10, -3), range(0, 2**64, 2**60),
              range(2**70, 2**70 + 5), range(7, 8)):
        assert pf.map(lambda x: (type(x), x), r, chunksize=2) == [(int, x) for x in r], r
    xs = [1, "a", None, 2**70, 3.5]
    assert pf.map(lambda x: x, xs) == xs and pf.map(lambda x: x, tuple(xs)) == xs


def test_a_list_that_f_shrinks_in_its_worker_raises_index_error_there():
    xs = list(range(10))

    def shrink(x):
        xs.clear()
        return x

    with pytest.raises(IndexError):
        pf.map(shrink, xs, jobs=1, chunksize=10)
    assert xs == list(range(10))  # the caller's own list is untouched


def test_ints_then_another_kind_late_in_a_chunk_come_back_exact():
    # Ints go out 8192 at a time; the first other result turns those still held into objects.
    n = 20_000
    want = [None if x in (9000, 19999) else x for x in range(n)]
    assert pf.map(lambda x: None if x in (9000, 19999) else x, range(n), jobs=1, chunksize=n) == want
    assert pf.map(lambda x: True if x == 8191 else x, range(n), jobs=1, chunksize=n) == \
        [True if x == 8191 else x for x in range(n)]


def test_a_large_result_list_half_filled_when_an_item_fails_is_freed_cleanly():
    # A map of a sequence of over 131,072 items makes its result array untouched (its pages
    # read as zero until a result lands): a failure leaves empty slots, which must be empty.
    def late(x):
        if x == 150_000:
            raise Custom("late")
        return str(x) if x % 7 == 0 else x

    for _ in range(2):
        with pytest.raises(Custom, match="late"):
            pf.map(late, range(200_000))
    assert pf.map(lambda x: str(x) if x % 7 == 0 else x, range(200_000)) == \
        [str(x) if x % 7 == 0 else x for x in range(200_000)]


def test_generator_input_goes_in_chunks_and_comes_back_exact():
    n = 200_000
    assert pf.map(lambda x: -x, (i for i in range(n))) == [-i for i in range(n)]
    assert pf.starmap(lambda a, b: a * b, ((i, 2) for i in range(1000)), chunksize=64) == \
        [2 * i for i in range(1000)]


def test_results_held_past_the_flush_interval_come_back_in_several_pickles():
    # One long chunk in one worker: its results go out in several pickles in one run of answers.
    def slow(x):
        time.sleep(0.0004)
        return x

    assert pf.map(slow, range(1500), jobs=1, chunksize=1500) == list(range(1500))


def test_an_exception_inside_a_chunk_names_its_own_item():
    def raises_at_437(x):
        if x == 437:
            raise Custom(f"bad {x}")
        return x

    with pytest.raises(Custom, match="bad 437") as info:
        pf.map(raises_at_437, range(1000), chunksize=100)
    assert any("task 437" in n for n in info.value.__notes__)
    assert isinstance(info.value.__cause__, pf.RemoteTraceback)
    it = pf.imap(raises_at_437, range(1000), chunksize=100)
    assert [next(it) for _ in range(437)] == list(range(437))
    with pytest.raises(Custom):
        next(it)
    assert list(it) == list(range(438, 1000))


def test_an_unpicklable_result_inside_a_chunk_names_its_task():
    def lock_at_437(x):
        return threading.Lock() if x == 437 else x

    with pytest.raises(pf.PicklingError, match="task 437") as info:
        pf.map(lock_at_437, range(1000), chunksize=100)
    assert info.value.task == 437
    got = []
    with pytest.raises(pf.PicklingError, match="task 437"):
        for y in pf.imap(lock_at_437, range(1000), chunksize=100):
            got.append(y)
    assert got == list(range(437))


def test_an_unpicklable_argument_of_an_iterable_is_an_error_naming_its_task():
    def items():
        for i in range(300):
            yield threading.Lock() if i == 123 else i

    with pytest.raises(pf.PicklingError, match="task 123") as info:
        pf.map(lambda x: x, items(), chunksize=50)
    assert info.value.task == 123
    assert isinstance(info.value.__cause__, TypeError)
    # imap raises at that item and goes on with the rest
    it = pf.imap(lambda x: x, items(), chunksize=50)
    assert [next(it) for _ in range(123)] == list(range(123))
    with pytest.raises(pf.PicklingError):
        next(it)
    assert list(it) == list(range(124, 300))


def test_a_segfaulting_task_is_worker_died_with_the_signal_and_its_item():
    def crashes_at_61(x):
        if x == 61:
            ctypes.string_at(0)
        return x

    with pytest.raises(pf.WorkerDied) as info:
        pf.map(crashes_at_61, range(500), chunksize=50)
    assert info.value.signal == signal.SIGSEGV and info.value.task == 61 and info.value.pid > 0


def test_a_worker_killed_inside_a_chunk_blames_its_item_without_retries():
    def dies_at_77(x):
        if x == 77:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with pytest.raises(pf.WorkerDied) as info:
        pf.map(dies_at_77, range(500), chunksize=100)
    assert info.value.signal == signal.SIGKILL and info.value.task == 77


def test_retries_rerun_the_item_and_the_unsent_results_of_its_chunk(tmp_path):
    marker = tmp_path / "died"

    def dies_once_at_77(x):
        if x == 77 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x * 2

    assert pf.map(dies_once_at_77, range(500), chunksize=100, retries=1) == [x * 2 for x in range(500)]
    assert marker.exists()
    marker.unlink()
    assert list(pf.imap(dies_once_at_77, iter(range(500)), chunksize=100, retries=1)) == \
        [x * 2 for x in range(500)]


def test_timeout_is_per_task_not_per_chunk():
    # A chunk of 20 items of 50 ms runs a second; no item is near the 0.5 s timeout.
    def steady(x):
        time.sleep(0.05)
        return x

    assert pf.map(steady, range(40), chunksize=20, timeout=0.5) == list(range(40))

    def hangs_at_150(x):
        if x == 150:
            time.sleep(60)
        return x

    t0 = time.monotonic()
    with pytest.raises(pf.TaskTimeout) as info:
        pf.map(hangs_at_150, range(300), chunksize=100, timeout=0.5)
    assert info.value.task == 150 and info.value.pid > 0
    assert time.monotonic() - t0 < 30


def live_siblings():
    """Live processes (not zombies) that share this process's parent, this one aside."""
    return [pid for pid, state in children_of(os.getppid()) if pid != os.getpid() and state != "Z"]


def test_a_worker_with_nothing_left_exits_while_another_still_works():
    # Two items, one each; every item is pushed at once. The worker of item 1 has nothing left
    # once it answers: it exits then, not when item 0's worker is done too.
    def wait_for_sibling_to_go(x):
        if x == 1:
            return True
        deadline = time.monotonic() + 10
        while live_siblings() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not live_siblings()

    assert pf.map(wait_for_sibling_to_go, range(2), jobs=2, chunksize=1) == [True, True]
    # A worker lost after the others left is still replaced, and its item runs again.
    def die_once(x):
        if x == 0 and not os.path.exists(flag):
            open(flag, "w").close()
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with tempfile.TemporaryDirectory() as d:
        flag = os.path.join(d, "died")
        assert pf.map(die_once, range(2), jobs=2, chunksize=1, retries=1) == [0, 1]


def test_ordered_false_gives_completion_order():
    def slow_first(x):
        if x == 0:
            time.sleep(0.5)
        return x

    # Item 0 comes after the others (all but the one queued behind it in its worker).
    got = pf.map(slow_first, range(20), jobs=2, chunksize=1, ordered=False)
    assert sorted(got) == list(range(20)) and got.index(0) >= 10
    got = list(pf.imap(slow_first, range(20), jobs=2, chunksize=1, ordered=False))
    assert sorted(got) == list(range(20)) and got.index(0) >= 10
    assert list(pf.imap(slow_first, range(20), jobs=2, chunksize=1)) == list(range(20))
    pairs = list(pf.imap_unordered(slow_first, range(20), jobs=2, chunksize=1, ordered=True))
    assert pairs == [(i, i) for i in range(20)]


def test_automatic_chunks_keep_a_lazy_input_bounded():
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield i

    it = pf.imap(lambda x: x + 1, items(), jobs=2)
    assert [next(it) for _ in range(10)] == list(range(1, 11))
    assert pulled < 5000
    del it

"""parafork.SharedArray: a numpy array in shared memory, seen by every child forked after it."""

import os
import pickle

import numpy as np
import pytest

import parafork as pf

pytestmark = pytest.mark.timeout(60)


def test_is_a_zeroed_numpy_array():
    a = pf.SharedArray((3, 4), dtype="int32")
    assert isinstance(a, np.ndarray) and isinstance(a, pf.SharedArray)
    assert a.shape == (3, 4) and a.dtype == np.int32 and not a.any()
    a[1, 2] = 7
    assert a.sum() == 7
    assert pf.SharedArray(5).shape == (5,) and pf.SharedArray(5).dtype == np.float64
    assert pf.SharedArray((0, 3)).size == 0


def test_worker_writes_parent_reads():
    a = pf.SharedArray((1080, 1920, 3), dtype="uint8")

    def paint():
        a[:, :, 1] = 200
        a[0, 0, 0] = 1

    t = pf.Thread(paint)
    t.start()
    t.join()
    assert a[..., 1].min() == 200 and a[0, 0, 0] == 1 and a[1, 1, 0] == 0


def test_parent_writes_after_the_fork_worker_reads():
    a = pf.SharedArray(1000, dtype="float64")
    go, done = pf.Channel(), pf.Channel()

    def reader():
        go.receive()
        return float(a.sum())

    t = pf.Thread(reader)
    t.start()
    a[:] = 0.5  # after the child was forked
    go.send(True)
    assert t.result() == 500.0


def test_many_workers_fill_disjoint_parts():
    a = pf.SharedArray((8, 1000), dtype="int64")
    threads = [pf.Thread(lambda k=k: a[k].__setitem__(slice(None), np.arange(1000) * k)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(a, np.arange(8)[:, None] * np.arange(1000)[None, :])


def test_map_workers_see_it_too():
    a = pf.SharedArray(100, dtype="int64")

    def fill(i):
        a[i] = i * i
        return os.getpid()

    pids = pf.map(fill, range(100), jobs=2)
    assert os.getpid() not in pids
    assert np.array_equal(a, np.arange(100) ** 2)


def test_256_mib_result_without_a_copy():
    a = pf.SharedArray((256 << 20) // 8, dtype="float64")
    t = pf.Thread(lambda: a.fill(1.5))
    t.start()
    t.join()
    assert t.result() is None  # nothing came back through the pipe but None
    assert a[0] == 1.5 and a[-1] == 1.5 and a[len(a) // 2] == 1.5


def test_freed_with_its_last_reference_and_nothing_in_dev_shm():
    before = set(os.listdir("/proc/self/fd"))
    a = pf.SharedArray(1 << 20, dtype="uint8")
    view = a[10:20]
    assert set(os.listdir("/proc/self/fd")) - before  # a memfd is held ...
    assert not any(n.startswith("parafork") for n in os.listdir("/dev/shm"))  # ... never named
    del a
    view[:] = 3  # a view keeps the memory alive
    assert view.sum() == 30
    del view
    assert set(os.listdir("/proc/self/fd")) - before == set()


def test_pickles_as_a_plain_copy():
    a = pf.SharedArray((2, 3), dtype="int16")
    a[:] = 4
    b = pickle.loads(pickle.dumps(a))
    assert type(b) is np.ndarray and np.array_equal(a, b)
    b[0, 0] = 9
    assert a[0, 0] == 4


def test_copy_of_and_bad_arguments():
    src = np.arange(12).reshape(3, 4)
    a = pf.SharedArray.copy_of(src)
    assert isinstance(a, pf.SharedArray) and np.array_equal(a, src)
    with pytest.raises(ValueError):
        pf.SharedArray((-1, 2))
    with pytest.raises(TypeError):
        pf.SharedArray(3, dtype=object)

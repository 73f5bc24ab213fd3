"""A Thread's large result: its numpy buffers go into a memfd the child fills and the caller
maps, not through the report pipe; nothing of it stays once the array is freed."""

import gc
import os

import pytest

np = pytest.importorskip("numpy")

import parafork as pf


def result_mappings():
    with open("/proc/self/maps") as f:
        return sum("memfd:parafork-result" in line for line in f)


def test_64_mib_result_exact_and_mapped():
    n = (64 << 20) // 8
    fds = set(os.listdir("/proc/self/fd"))
    t = pf.Thread(lambda: ("tag", np.arange(n, dtype=np.int64)))
    t.start()
    tag, a = t.result()
    assert tag == "tag" and a.dtype == np.int64 and a.shape == (n,)
    assert np.array_equal(a, np.arange(n, dtype=np.int64))
    assert result_mappings() == 1  # the array is the child's memfd, mapped here
    assert set(os.listdir("/proc/self/fd")) == fds  # the memfd itself is closed
    a[0] = 7  # writable: private to the caller
    assert a[0] == 7
    assert t.result()[1] is a  # the same value again, not a second mapping
    del a, tag, t
    gc.collect()
    assert result_mappings() == 0


def test_small_results_and_failures_take_no_memfd():
    fds = set(os.listdir("/proc/self/fd"))
    t = pf.Thread(lambda: np.arange(10))
    t.start()
    assert np.array_equal(t.result(), np.arange(10))
    assert result_mappings() == 0 and set(os.listdir("/proc/self/fd")) == fds

    def boom():
        raise KeyError("x")

    t = pf.Thread(boom)
    t.start()
    t.join()
    with pytest.raises(KeyError):
        t.result()
    assert set(os.listdir("/proc/self/fd")) == fds


def test_large_result_never_taken_leaves_nothing():
    fds = set(os.listdir("/proc/self/fd"))
    t = pf.Thread(lambda: np.ones(1 << 20))
    t.start()
    t.join()
    del t
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) == fds and result_mappings() == 0


def test_snakefish_thread_large_result():
    from parafork import snakefish

    t = snakefish.Thread(lambda: np.full(4 << 20, 3.0))
    t.start()
    t.join()
    a = t.get_result()
    assert a.shape == (4 << 20,) and (a == 3.0).all()

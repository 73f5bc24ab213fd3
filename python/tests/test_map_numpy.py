"""numpy results through map: pickle protocol 5, the arrays' memory out of band; large arrays
written once by the worker into a memfd the caller maps (no copy on the caller's side)."""

import gc

import pytest

np = pytest.importorskip("numpy")

import parafork as pf


def result_mappings():
    with open("/proc/self/maps") as f:
        return sum("memfd:parafork-result" in line for line in f)


def test_256_mib_numpy_results_exact_and_out_of_band():
    big = np.arange(32 << 20, dtype=np.int64)  # 256 MiB, in the workers by fork
    before = result_mappings()
    got = pf.map(lambda k: big + k, range(2), jobs=2)
    # Each array lives on the memfd its worker wrote, mapped here: not copied into the caller.
    assert result_mappings() - before == 2
    for k, a in enumerate(got):
        assert a.dtype == np.int64 and a.shape == big.shape
        assert a[0] == k and a[-1] == big[-1] + k
        assert np.array_equal(a - k, big)
        base = a
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(base, memoryview) and type(base.obj).__name__ == "MappedMemory"
        assert a.flags.writeable and a.flags.aligned
        a[0] = -1  # the caller's own copy of that page (the mapping is private)
        assert a[0] == -1
    del got, a, base
    gc.collect()
    assert result_mappings() == before  # unmapped with the last array on it


def test_a_mapped_result_outlives_the_list_and_frees_with_its_array():
    got = pf.map(lambda k: np.full(1 << 19, k, dtype=np.int64), range(3), jobs=2, chunksize=1)
    keep = got[1][10:20]  # a view keeps its array's mapping
    before = result_mappings()
    assert before >= 1
    del got
    gc.collect()
    assert result_mappings() == 1  # the one `keep` is a view of
    assert (keep == 1).all()
    del keep
    gc.collect()
    assert result_mappings() == 0


def test_many_small_arrays_in_one_chunk():
    got = pf.map(lambda i: np.full(100, i, dtype=np.float32), range(5000), chunksize=1000)
    assert all(a.dtype == np.float32 and (a == i).all() for i, a in enumerate(got))


def test_large_chunks_answered_in_parts():
    # Ten 1.6 MB results per chunk: the chunk's pickle answers its first item, the rest follow.
    got = pf.map(lambda i: np.full(200_000, i), range(40), chunksize=10)
    assert [int(a[0]) for a in got] == list(range(40))
    assert all((a == i).all() for i, a in enumerate(got))
    got = list(pf.imap_unordered(lambda i: np.full(200_000, i), range(40), chunksize=10))
    assert sorted(i for i, _ in got) == list(range(40)) and all((a == i).all() for i, a in got)


def test_fortran_ordered_and_non_contiguous_results():
    f = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    got = pf.map(lambda i: (f * i, f[:, ::2] * i), range(3))
    for i, (a, b) in enumerate(got):
        assert np.array_equal(a, f * i) and a.flags.f_contiguous
        assert np.array_equal(b, f[:, ::2] * i)

"""SharedArray: a numpy array in anonymous shared memory (a memfd)."""

import math

import numpy as np

from . import _parafork

__all__ = ["SharedArray"]


class SharedArray(np.ndarray):
    """A numpy array whose memory is shared with every child forked after it was made.

        a = pf.SharedArray((1080, 1920, 3), dtype="uint8")   # zero-filled
        t = pf.Thread(lambda: a.fill(7)); t.start(); t.join()  # the parent sees the 7s

    Writes by any of those processes are seen by all of them, with no copy and nothing sent.
    The memory is a memfd, never a name in /dev/shm: it is freed when the last process holding
    it drops it (or exits, or dies). Views and slices share it too. Pickling a SharedArray
    (sending it through a Channel, returning it from a Thread) copies its contents into a plain
    ndarray: to hand a result back without a copy, make the array before the fork and let the
    child write into it.
    """

    def __new__(cls, shape, dtype=float, order="C"):
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ValueError("parafork.SharedArray: negative dimension")
        dtype = np.dtype(dtype)
        if dtype.hasobject:
            raise TypeError("parafork.SharedArray: object arrays cannot be shared")
        count = math.prod(shape)
        mem = _parafork.SharedMemory(count * dtype.itemsize)
        flat = np.frombuffer(mem, dtype=dtype, count=count)  # keeps mem alive as its base
        return flat.reshape(shape, order=order).view(cls)

    @classmethod
    def copy_of(cls, array):
        """A SharedArray holding a copy of `array`."""
        array = np.asarray(array)
        a = cls(array.shape, array.dtype)
        a[...] = array
        return a

    def __reduce__(self):
        return np.ndarray.__reduce__(np.array(self))

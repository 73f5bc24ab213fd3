"""Channel: pickled objects through a shared-memory ring that many processes share."""

import pickle

from . import _parafork

__all__ = ["Channel", "ChannelClosed"]

ChannelClosed = _parafork.ChannelClosed
ChannelClosed.__module__ = "parafork"


class Channel:
    """A ring buffer in anonymous shared memory (a memfd) for pickled objects.

    Make it before forking (Thread, Generator, map): every child forked while it exists shares
    it, and any of them (and the caller) may send and receive. Each message is delivered whole to
    exactly one receiver. A message larger than the ring is streamed through it in pieces, so
    `size` bounds memory, not message size. The memory goes with the last process holding it:
    nothing is left behind whether or not dispose() is called.
    """

    DEFAULT_SIZE = 1 << 20
    MAX_SIZE = 1 << 30

    def __init__(self, size=DEFAULT_SIZE):
        size = int(size)
        if size <= 0:
            raise ValueError("parafork: channel size must be positive")
        self._ch = _parafork.Channel(min(size, self.MAX_SIZE))

    def send(self, obj, block=True, timeout=None):
        """Pickles obj (protocol 5) and sends it; waits while the ring is full.

        block=False: returns False at once if the message cannot start now. timeout: seconds
        for the whole message (TimeoutError after)."""
        return self.send_bytes(pickle.dumps(obj, 5), block, timeout)

    def receive(self, block=True, timeout=None):
        """The next object. Waits for one (at most `timeout` seconds, then TimeoutError); with
        block=False raises IndexError when none is there. A waiting call raises ChannelClosed
        once the ring is empty and no process can send (every sender closed, exited or died;
        a process that received before it ever sent is not a sender)."""
        return pickle.loads(self.receive_bytes(block, timeout))

    def send_bytes(self, data, block=True, timeout=None):
        return self._ch.send(bytes(data), bool(block), timeout)  # a timeout: TaskTimeout, a TimeoutError

    def receive_bytes(self, block=True, timeout=None):
        try:
            b = self._ch.receive(bool(block), timeout)
        except ChannelClosed:
            if block:
                raise
            b = None  # nothing there: that no process can send any more is for waiting calls
        if b is None:
            if not block:
                raise IndexError("parafork: channel is empty")
            raise TimeoutError(f"parafork: no message within {timeout} s")
        return b

    def close(self):
        """This process sends no more; receivers see ChannelClosed once every sender is gone."""
        self._ch.close()

    def dispose(self):
        """Lets go of the ring in this process (optional: dropping the object does the same)."""
        self._ch.dispose()

    @property
    def size(self):
        return self._ch.capacity()

    def __getstate__(self):
        raise TypeError("a Channel reaches other processes by fork, not by pickling")


"""parafork: process-based parallelism on Linux, on parafork's C++ engines.

    import parafork as pf
    ys = pf.map(lambda x: x * x, range(10**6))   # workers fork at the call
"""

from . import _core, _parafork
from ._core import Error, PicklingError, RemoteError, RemoteTraceback, TaskTimeout, WorkerDied
from ._map import imap, imap_unordered, map, starmap
from ._channel import Channel, ChannelClosed
from ._thread import Generator, Thread, timestamp, timestamp_serialized
from ._pool import Pool
from ._process import Future, Process, Selector, select
from ._ez import (Batch, Const, Filter, Iter, Map, Pipeline, Print, Read, Seq, Stage, Stamp, Write, Zip,
                  broadcast, ez, parallel, serial)

_parafork._init(_core)
default_jobs = _parafork.default_jobs

__version__ = "0.1.0"
__all__ = ["map", "starmap", "imap", "imap_unordered", "default_jobs", "Pool", "Error", "RemoteError",
           "WorkerDied", "TaskTimeout", "PicklingError", "RemoteTraceback"]
__all__ += ["Process", "Future", "Selector", "select"]
__all__ += ["Thread", "Generator", "Channel", "ChannelClosed", "SharedArray", "timestamp",
            "timestamp_serialized"]
__all__ += ["ez", "Pipeline", "Stage", "serial", "parallel", "broadcast", "Iter", "Const", "Map", "Filter",
            "Batch", "Zip", "Seq", "Print", "Stamp", "Read", "Write"]


def __getattr__(name):  # SharedArray needs numpy: imported on first use only
    if name == "SharedArray":
        from ._shared import SharedArray
        return SharedArray
    raise AttributeError(f"module 'parafork' has no attribute {name!r}")

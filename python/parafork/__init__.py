"""parafork: process-based parallelism on Linux, on parafork's C++ engines."""

from . import _parafork

default_jobs = _parafork.default_jobs

__version__ = "0.1.0"
__all__ = ["default_jobs"]

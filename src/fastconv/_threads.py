"""``fastconv.threads(n)``: run a block of code with n kernel threads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import _core
from ._checks import _thread_count

__all__ = ["threads"]


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Use ``n`` threads for the fastconv kernels called *by this thread* inside the ``with``
    block, then restore what it had (also when the block raises)::

        with fastconv.threads(1):
            y = fastconv.conv2d(x, w)

    Like grad mode, the setting belongs to the calling thread: other threads keep the process
    default (``fastconv.set_num_threads``) or their own ``threads`` blocks. Only fastconv's own
    OpenMP pool is affected; NumPy's BLAS has threads of its own (see threadpoolctl or
    OPENBLAS_NUM_THREADS for those).
    """
    n = _thread_count(n)
    previous = _core.set_local_num_threads(n)
    try:
        yield n
    finally:
        _core.set_local_num_threads(previous)

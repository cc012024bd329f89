"""``fastconv.threads(n)``: run a block of code with n kernel threads."""
from __future__ import annotations

import contextlib

from .functional import get_num_threads, set_num_threads

__all__ = ["threads"]


@contextlib.contextmanager
def threads(n):
    """Use ``n`` threads for fastconv's kernels inside the ``with`` block, then restore the
    previous count (also when the block raises)::

        with fastconv.threads(1):
            y = fastconv.conv2d(x, w)

    Only fastconv's own OpenMP pool is affected; NumPy's BLAS has threads of its own
    (see threadpoolctl or OPENBLAS_NUM_THREADS for those).
    """
    previous = get_num_threads()
    set_num_threads(n)  # validates n before the block runs
    try:
        yield n
    finally:
        set_num_threads(previous)

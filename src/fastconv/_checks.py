"""Argument checks shared by the op wrappers (functional.py, pooling.py)."""

from __future__ import annotations

import numbers
import operator

import numpy as np

from ._core import MAX_THREADS  # FC_MAX_THREADS: the most kernel threads set_num_threads takes

# Larger buffers than this are refused up front instead of attempted (256 TiB).
_MAX_BYTES = 1 << 48

# The C integer types that Python ints become in _core, and their ranges.
_C_RANGES = {"int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1)}


class IntRangeError(OverflowError, ValueError):
    """An integer argument beyond the C type it becomes: an OverflowError (as NumPy raises for
    such ints) that is also the ValueError every bad argument raises."""


def _c_int(value, name, ctype="int64"):
    """value (an integral number) as an int that fits the C type it is passed to _core as;
    IntRangeError naming the argument otherwise (pybind11 would only say "incompatible function
    arguments")."""
    low, high = _C_RANGES[ctype]
    value = operator.index(value)
    if not low <= value <= high:
        raise IntRangeError(f"{name}={value} does not fit in {ctype} (must be in [{low}, {high}])")
    return value


def _tuple(value, name, ndim, minimum):
    """An int or a tuple/list of `ndim` ints, each >= minimum -> tuple of ints."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}")
    if isinstance(value, numbers.Integral):
        items = (int(value),) * ndim
    elif isinstance(value, (tuple, list)) and len(value) == ndim:
        try:
            items = tuple(operator.index(v) for v in value)
        except TypeError:
            raise TypeError(
                f"{name} must be an int or a tuple of {ndim} ints, got {value!r}"
            ) from None
    else:
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return tuple(_c_int(v, name) for v in items)


def _array(a, name):
    """a as an ndarray of float32/float64 (lists and scalars convert); never copies an ndarray."""
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    if arr.dtype not in (np.float32, np.float64):
        if isinstance(a, np.ndarray) or arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: dtype {arr.dtype} is not supported; use float32 or float64")
        arr = arr.astype(np.float64)  # a Python list of ints: exact in float64
    return arr


def _contiguous(arr, name):
    if arr.nbytes > _MAX_BYTES:
        raise ValueError(f"{name} of shape {arr.shape} is too large ({arr.nbytes} bytes)")
    return np.ascontiguousarray(arr)


def _thread_count(n):
    """A kernel thread count: an int from 1 to FC_MAX_THREADS (1024)."""
    if (
        isinstance(n, (bool, np.bool_))
        or not isinstance(n, numbers.Integral)
        or not 1 <= n <= MAX_THREADS
    ):
        raise ValueError(f"n must be an int from 1 to {MAX_THREADS} (FC_MAX_THREADS), got {n!r}")
    return int(n)

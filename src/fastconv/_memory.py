"""The array cache behind fastconv.nn: freed large arrays are kept and handed out again.

A training step allocates the same large arrays (activations, gradients, column buffers) every
step. NumPy gets each from malloc, and glibc serves blocks over its mmap threshold with fresh
pages, so every step page-faults and zero-fills them again (about 45% of VGG-A's
forward+backward time at batch 4). Like PyTorch's allocator, fastconv keeps freed blocks of
1 MiB and more, by size, up to a byte limit, and reuses them.

The cache applies to arrays created inside fastconv.nn module calls and autograd backward
passes (a NumPy memory handler, NEP 49, set for their duration in the current thread's
context); arrays you create yourself are NumPy's as usual. The limit is 2 GiB of *unused*
cached blocks by default; ``FASTCONV_MEMORY_CACHE`` (bytes, 0 = off) sets it at import.

The kernels keep their own workspaces (column matrices, transformed filters) the same way, in
the C library, up to ``FASTCONV_WORKSPACE_CACHE_MB`` (256 by default, read at load).
``empty_cache()`` gives back both.
"""

from __future__ import annotations

import numbers
import os

from . import _core
from ._checks import _c_int

__all__ = ["set_memory_cache", "empty_cache", "memory_cache_stats"]

_DEFAULT = 2 << 30
_enabled = True


def set_memory_cache(limit_bytes: int) -> None:
    """Cap the bytes of freed arrays kept for reuse (0 turns the cache off and releases it)."""
    global _enabled
    if (
        isinstance(limit_bytes, bool)
        or not isinstance(limit_bytes, numbers.Integral)
        or limit_bytes < 0
    ):
        raise ValueError(f"limit_bytes must be a non-negative int, got {limit_bytes!r}")
    _core.memory_cache_limit(_c_int(limit_bytes, "limit_bytes", "uint64"))
    _enabled = limit_bytes > 0


def empty_cache() -> None:
    """Free every cached block now, arrays' and the kernels' workspaces (arrays still in use are
    not affected)."""
    _core.memory_cache_release()
    _core.workspace_cache_release()


def memory_cache_stats() -> dict[str, int]:
    """{'held_bytes', 'limit_bytes', 'hits', 'misses'}: blocks kept now, the cap, and how many
    large allocations were served from the cache or not; plus 'workspace_held_bytes' and
    'workspace_limit_bytes', the kernels' own cache of workspaces (the C library's: its limit
    is set by ``FASTCONV_WORKSPACE_CACHE_MB`` at load, 256 MiB by default, 0 = off)."""
    stats = dict(_core.memory_cache_stats())
    stats["workspace_held_bytes"], stats["workspace_limit_bytes"] = _core.workspace_cache_info()
    return stats


def enter():
    """Turn the caching handler on for this context; pass the result to leave()."""
    return _core.memory_handler_set(True) if _enabled else True


def leave(was_on):
    if not was_on:
        _core.memory_handler_set(False)


def _from_env():
    raw = os.environ.get("FASTCONV_MEMORY_CACHE")
    if raw is None:
        return _DEFAULT
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"FASTCONV_MEMORY_CACHE must be a non-negative number of bytes, got {raw!r}"
        ) from None
    return value


set_memory_cache(_from_env())

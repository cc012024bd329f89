"""Network ops fastconv has no kernel for, in NumPy: padding with PyTorch's modes (what
``Conv2d(padding_mode=...)`` runs on) and adaptive max pooling.

Re-exported by ``fastconv.nn.functional`` with ``torch.nn.functional``'s signatures.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from ..autograd import Function, Tensor

__all__ = ["pad", "adaptive_max_pool2d"]

# PyTorch's padding modes and NumPy's names for them
_NP_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class Pad(Function):
    """np.pad with one (before, after) pair per dimension. The modes other than constant read
    each padded position from one input position (the same index map on every line), so the
    backward adds each gradient back onto the position it was read from, dimension by dimension."""

    @staticmethod
    def forward(ctx, a, pairs, mode="constant", value=0.0):
        ctx.pairs, ctx.mode, ctx.shape = pairs, mode, a.shape
        if mode == "constant":
            return np.pad(a, pairs, mode="constant", constant_values=np.asarray(value, a.dtype))
        return np.pad(a, pairs, mode=_NP_MODES[mode])

    @staticmethod
    def backward(ctx, g):
        if ctx.mode == "constant":
            return g[tuple(slice(lo, lo + n) for (lo, _), n in zip(ctx.pairs, ctx.shape))]
        for d, ((lo, hi), n) in enumerate(zip(ctx.pairs, ctx.shape)):
            if lo == 0 and hi == 0:
                continue
            source = np.pad(np.arange(n), (lo, hi), mode=_NP_MODES[ctx.mode])  # padded -> input
            folded = np.zeros(g.shape[:d] + (n,) + g.shape[d + 1 :], g.dtype)
            np.add.at(folded, (slice(None),) * d + (source,), g)
            g = folded
        return g


def _pad_pairs(shape, pad, mode):
    """PyTorch's flat ``pad`` (last dimension first) as one (before, after) pair per dimension."""
    if isinstance(pad, (str, bytes)) or not hasattr(pad, "__len__"):
        raise TypeError(f"pad: pad must be a sequence of ints, got {pad!r}")
    pad = list(pad)
    if any(isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Integral) for p in pad):
        raise TypeError(f"pad: pad must be a sequence of ints, got {pad!r}")
    if len(pad) % 2 or len(pad) // 2 > len(shape):
        raise ValueError(
            f"pad: pad must have an even length of at most 2 * input dims "
            f"({2 * len(shape)}), two entries per dimension from the last, got {pad}"
        )
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding (cropping) is not supported, got {pad}")
    pairs = [(0, 0)] * len(shape)
    for i in range(len(pad) // 2):
        pairs[len(shape) - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    for d, ((lo, hi), n) in enumerate(zip(pairs, shape)):
        if mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(
                f"pad: reflect padding ({lo}, {hi}) must be smaller than the input "
                f"dimension {d} it pads, of size {n} (input shape {tuple(shape)})"
            )
        if mode == "circular" and max(lo, hi) > n:
            raise ValueError(
                f"pad: circular padding ({lo}, {hi}) must be at most the input "
                f"dimension {d} it pads, of size {n} (input shape {tuple(shape)})"
            )
        if mode == "replicate" and (lo or hi) and n == 0:
            raise ValueError(
                f"pad: replicate padding of the empty dimension {d} (input shape {tuple(shape)})"
            )
    return tuple(pairs)


def pad(
    input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> Tensor:
    """Pad the last ``len(pad) // 2`` dimensions, as ``torch.nn.functional.pad``: ``pad`` is
    (left, right) for the last dimension, then (top, bottom) for the one before, ...; ``mode``
    is "constant" (``value``, default 0), "reflect" (mirror, edge not repeated), "replicate"
    (edge repeated) or "circular" (wrap around). Negative (cropping) pads are not supported."""
    if mode not in _NP_MODES:
        raise ValueError(
            f"pad: mode must be one of {', '.join(map(repr, _NP_MODES))}, got {mode!r}"
        )
    if value is not None and mode != "constant":
        raise ValueError(f"pad: mode {mode!r} takes no value (only 'constant' does), got {value!r}")
    pairs = _pad_pairs(np.shape(input), pad, mode)
    return Pad.apply(input, pairs=pairs, mode=mode, value=0.0 if value is None else value)


def _output_size(output_size, hw, op):
    """output_size (an int, or a pair whose None entries keep that input dimension) -> (ho, wo)."""
    items = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if len(items) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    size = []
    for v, keep in zip(items, hw):
        if v is None:
            v = keep
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(
                f"{op}: output_size must be an int or a pair of ints/None, got {output_size!r}"
            )
        if v < 1:
            raise ValueError(f"{op}: output_size must be positive, got {output_size!r}")
        size.append(int(v))
    return tuple(size)


class AdaptiveMaxPool2d(Function):
    """Output (i, j) is the max of rows [floor(i*H/ho), ceil((i+1)*H/ho)) and the like columns;
    the switches are flat h*W + w per plane (PyTorch's); the gradient goes to the switch."""

    @staticmethod
    def forward(ctx, x, output_size, return_indices=False):
        unbatched = x.ndim == 3
        x4 = x[None] if unbatched else x
        n, c, h, w = x4.shape
        ho, wo = output_size
        y = np.empty((n, c, ho, wo), x.dtype)
        idx = np.empty((n, c, ho, wo), np.int64)
        for i in range(ho):
            h0, h1 = (i * h) // ho, -((-(i + 1) * h) // ho)
            for j in range(wo):
                w0, w1 = (j * w) // wo, -((-(j + 1) * w) // wo)
                window = x4[:, :, h0:h1, w0:w1].reshape(n, c, -1)
                k = np.argmax(window, axis=2)  # the first maximum (a NaN wins)
                y[:, :, i, j] = np.take_along_axis(window, k[..., None], axis=2)[..., 0]
                idx[:, :, i, j] = (h0 + k // (w1 - w0)) * w + w0 + k % (w1 - w0)
        ctx.save_for_backward(idx)
        ctx.shape = x.shape
        if unbatched:
            y, idx = y[0], idx[0]
        return (y, idx.copy()) if return_indices else y

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved
        n, c, ho, wo = idx.shape
        plane = ctx.shape[-1] * ctx.shape[-2]
        where = idx.reshape(n * c, -1) + (np.arange(n * c) * plane)[:, None]  # flat over all planes
        gx = np.bincount(where.ravel(), weights=g.reshape(-1), minlength=n * c * plane)
        return gx.astype(g.dtype, copy=False).reshape(ctx.shape)


def adaptive_max_pool2d(
    input: Tensor, output_size: int | tuple[int | None, int | None], return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Adaptive max pooling over (N, C, H, W) or (C, H, W), as
    ``torch.nn.functional.adaptive_max_pool2d``; ``return_indices=True`` also returns the
    switches (int64, flat h*W + w per plane)."""
    shape = np.shape(input)
    if len(shape) not in (3, 4) or 0 in shape[-3:]:
        raise ValueError(
            f"adaptive_max_pool2d: input must be (N, C, H, W) or (C, H, W) with "
            f"non-zero C, H, W, got shape {tuple(shape)}"
        )
    size = _output_size(output_size, shape[-2:], "adaptive_max_pool2d")
    return AdaptiveMaxPool2d.apply(input, output_size=size, return_indices=bool(return_indices))

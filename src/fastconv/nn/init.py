"""Weight initialisers with PyTorch's names and formulas (``torch.nn.init``).

Each fills a Tensor's data (or an ndarray) in place, from the generator that
``fastconv.autograd.manual_seed`` seeds, and returns its argument.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Tensor, default_generator

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "zeros_",
    "ones_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
]


def _array(t):
    return t.data if isinstance(t, Tensor) else t


def _fill(t, values):
    a = _array(t)
    a[...] = values
    return t


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for ``nonlinearity`` (PyTorch's table; ``param``: leaky_relu's
    slope)."""
    if nonlinearity in (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    ):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _fans(a):
    if a.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of 2+ dimensions, got shape {a.shape}")
    receptive = int(np.prod(a.shape[2:])) if a.ndim > 2 else 1
    return a.shape[1] * receptive, a.shape[0] * receptive


def _draw_dtype(a):
    # draw float32 targets in float32 (VGG's 100M+ weights), everything else in float64
    return np.float32 if a.dtype == np.float32 else np.float64


def uniform_(t, a=0.0, b=1.0):
    """Fill with U(a, b)."""
    arr = _array(t)
    u = default_generator().random(arr.shape, dtype=_draw_dtype(arr))
    return _fill(t, u * (b - a) + a)


def normal_(t, mean=0.0, std=1.0):
    """Fill with N(mean, std^2)."""
    arr = _array(t)
    z = default_generator().standard_normal(arr.shape, dtype=_draw_dtype(arr))
    return _fill(t, z * std + mean)


def trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Normal(mean, std) restricted to [a, b] (absolute bounds, as PyTorch), by rejection."""
    shape = _array(t).shape
    out = np.empty(int(np.prod(shape)))
    filled, rng = 0, default_generator()
    while filled < out.size:
        draw = rng.normal(mean, std, 2 * (out.size - filled) + 16)
        draw = draw[(draw >= a) & (draw <= b)][: out.size - filled]
        out[filled : filled + draw.size] = draw
        filled += draw.size
    return _fill(t, out.reshape(shape))


def constant_(t, value):
    """Fill with ``value``."""
    return _fill(t, value)


def zeros_(t):
    """Fill with zeros."""
    return _fill(t, 0)


def ones_(t):
    """Fill with ones."""
    return _fill(t, 1)


def xavier_uniform_(t, gain=1.0):
    """Glorot uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(t))
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t, gain=1.0):
    """Glorot normal: N(0, gain^2 * 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(t))
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(t, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(_array(t))
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_uniform_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He uniform: U(-b, b), b = sqrt(3) * gain / sqrt(fan) (fan_in or fan_out by ``mode``)."""
    bound = math.sqrt(3.0) * _kaiming_std(t, a, mode, nonlinearity)
    return uniform_(t, -bound, bound)


def kaiming_normal_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He normal: N(0, gain^2 / fan) (fan_in or fan_out by ``mode``)."""
    return normal_(t, 0.0, _kaiming_std(t, a, mode, nonlinearity))

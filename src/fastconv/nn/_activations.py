"""The activations after ReLU (hardtanh/ReLU6, hardsigmoid, hardswish, SiLU, GELU): forward and
backward in NumPy, each as PyTorch computes it (the gradient's value at the kinks included).

They are re-exported by ``fastconv.nn.functional`` with ``torch.nn.functional``'s signatures.
``inplace=True`` is accepted and the result computed out of place: the backward needs the input.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Function, Tensor

__all__ = ["relu6", "hardtanh", "hardsigmoid", "hardswish", "silu", "gelu"]


class Hardtanh(Function):
    """min(max(x, min_val), max_val); the gradient passes strictly between the two."""

    @staticmethod
    def forward(ctx, a, min_val=-1.0, max_val=1.0):
        lo, hi = np.asarray(min_val, a.dtype), np.asarray(max_val, a.dtype)
        ctx.save_for_backward((a > lo) & (a < hi))
        return np.minimum(np.maximum(a, lo), hi)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


# PyTorch's hardsigmoid backward multiplies by the float constant 1.0f / 6.0f, in float64 too
_ONE_SIXTH_F32 = float(np.float32(1.0) / np.float32(6.0))


class Hardsigmoid(Function):
    """relu6(x + 3) / 6; gradient 1/6 for -3 < x < 3 (PyTorch's float32 1/6, whatever the
    dtype: its float64 gradient is 3e-8 off the exact one, and so is fastconv's)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward((a > -3) & (a < 3))
        return np.minimum(np.maximum(a + 3, 0), 6) / 6

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0] * np.asarray(_ONE_SIXTH_F32, g.dtype)


class Hardswish(Function):
    """x * relu6(x + 3) / 6; gradient 0 up to -3, x/3 + 1/2 strictly between -3 and 3, 1 from 3
    (the kinks as PyTorch's)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * np.minimum(np.maximum(a + 3, 0), 6) / 6

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return np.where(a <= -3, 0, np.where(a < 3, g * (a / 3 + 0.5), g)).astype(
            g.dtype, copy=False
        )


def _sigmoid(a):
    """1 / (1 + exp(-a)) without overflow (exp of -|a| only)."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


class SiLU(Function):
    """x * sigmoid(x) (the swish); gradient s * (1 + x * (1 - s)) with s = sigmoid(x)."""

    @staticmethod
    def forward(ctx, a):
        s = _sigmoid(a)
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, g):
        a, s = ctx.saved
        return g * s * (1 + a * (1 - s))


_erf_ufunc = None


def _erf(a):
    """The error function, element-wise, correctly rounded as the C library's (SciPy's ufunc
    when SciPy is installed, else math.erf per element)."""
    global _erf_ufunc
    if _erf_ufunc is None:
        try:
            from scipy.special import erf as _erf_ufunc
        except ImportError:
            scalar = np.frompyfunc(math.erf, 1, 1)
            _erf_ufunc = lambda v: scalar(v).astype(np.float64)  # noqa: E731
    return np.asarray(_erf_ufunc(np.asarray(a, np.float64)), np.float64)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # sqrt(2) * (2 / sqrt(pi)) * 0.5, PyTorch's kBeta
_KAPPA = 0.044715


class Gelu(Function):
    """x * Phi(x), Phi the standard normal CDF: 0.5 * (1 + erf(x / sqrt 2)) exactly
    (``approximate="none"``) or 0.5 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (``"tanh"``)."""

    @staticmethod
    def forward(ctx, a, approximate="none"):
        ctx.save_for_backward(a)
        ctx.approximate = approximate
        if approximate == "tanh":
            inner = _SQRT_2_OVER_PI * (a + _KAPPA * a * a * a)
            return 0.5 * a * (1 + np.tanh(inner))
        cdf = 0.5 * (1 + _erf(a * math.sqrt(0.5)))
        return (a * cdf).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        if ctx.approximate == "tanh":
            x2 = a * a
            t = np.tanh(_SQRT_2_OVER_PI * (a + _KAPPA * x2 * a))
            left = 0.5 * (1 + t)
            right = 0.5 * a * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _KAPPA * x2)
            return g * (left + right)
        cdf = 0.5 * (1 + _erf(a * math.sqrt(0.5)))
        pdf = np.exp(-0.5 * a.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)
        return (g * (cdf + a * pdf)).astype(g.dtype, copy=False)


def hardtanh(
    input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    """Clamp to [min_val, max_val] (``torch.nn.functional.hardtanh``; inplace ignored)."""
    if min_val > max_val:
        raise ValueError(
            f"hardtanh: min_val ({min_val}) must not be greater than max_val ({max_val})"
        )
    return Hardtanh.apply(input, min_val=min_val, max_val=max_val)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6) (``torch.nn.functional.relu6``; inplace ignored)."""
    return Hardtanh.apply(input, min_val=0.0, max_val=6.0)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6 (``torch.nn.functional.hardsigmoid``; inplace ignored)."""
    return Hardsigmoid.apply(input)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6, MobileNetV3's (``torch.nn.functional.hardswish``; inplace ignored)."""
    return Hardswish.apply(input)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x) (``torch.nn.functional.silu``; inplace ignored)."""
    return SiLU.apply(input)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x), exact (``approximate="none"``) or by tanh (``"tanh"``), as
    ``torch.nn.functional.gelu``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(input, approximate=approximate)

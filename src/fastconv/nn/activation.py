"""Activation layers, with ``torch.nn``'s names, arguments and reprs.

``inplace=True`` is accepted (stored, and shown in the repr as PyTorch shows it) but the result
is computed out of place: the backward needs the input, so fastconv never overwrites it.
"""

from __future__ import annotations

from . import functional as F
from .module import Module

__all__ = [
    "ReLU",
    "ReLU6",
    "Hardtanh",
    "LeakyReLU",
    "ELU",
    "Tanh",
    "Sigmoid",
    "Hardsigmoid",
    "Hardswish",
    "SiLU",
    "GELU",
    "Softmax",
    "LogSoftmax",
]


class _Inplace(Module):
    """An activation taking only ``inplace`` (accepted; computed out of place)."""

    fn = None
    shows_inplace = True  # in the repr, as PyTorch's module of that name

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        return type(self).fn(x)

    def extra_repr(self):
        return "inplace=True" if self.inplace and self.shows_inplace else ""


class ReLU(_Inplace):
    """max(x, 0), on fastconv's kernel."""

    fn = staticmethod(F.relu)


class Hardsigmoid(_Inplace):
    """relu6(x + 3) / 6."""

    fn, shows_inplace = staticmethod(F.hardsigmoid), False


class Hardswish(_Inplace):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""

    fn, shows_inplace = staticmethod(F.hardswish), False


class SiLU(_Inplace):
    """x * sigmoid(x) (the swish)."""

    fn = staticmethod(F.silu)


class Hardtanh(Module):
    """x clamped to [min_val, max_val]; the gradient passes strictly between them."""

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        if min_val > max_val:
            raise ValueError(
                f"Hardtanh: min_val ({min_val}) must not be greater than max_val ({max_val})"
            )
        self.min_val, self.max_val, self.inplace = min_val, max_val, bool(inplace)

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}" + (
            ", inplace=True" if self.inplace else ""
        )


class ReLU6(Hardtanh):
    """min(max(x, 0), 6)."""

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Tanh(Module):
    """Hyperbolic tangent."""

    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def forward(self, x):
        return F.sigmoid(x)


class GELU(Module):
    """x * Phi(x) (Phi the normal CDF): exact with ``approximate="none"``, by tanh with
    ``"tanh"``."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class LeakyReLU(Module):
    """x where x > 0, negative_slope * x elsewhere."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, bool(inplace)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = alpha, bool(inplace)

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Softmax(Module):
    """Softmax along ``dim``."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Log-softmax along ``dim``."""

    def forward(self, x):
        return F.log_softmax(x, self.dim)

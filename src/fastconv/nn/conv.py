"""Convolution layers (weights (K, C/groups, kh, kw) as PyTorch, run on fastconv's kernels).

``padding`` is an int, a tuple, "valid" or "same" (stride 1); ``padding_mode`` "zeros" pads
inside the kernels, "reflect", "replicate" and "circular" pad first (``F.pad``, whose backward
folds the gradient back) and convolve with padding 0, as PyTorch does.
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["Conv1d", "Conv2d"]


_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class _ConvNd(Module):
    """What Conv1d and Conv2d share: arguments, parameters, PyTorch's initialisation, repr."""
    _dims = 0

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 bias, dtype, padding_mode="zeros"):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must "
                             f"be divisible by groups ({groups})")
        n = self._dims
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _tuple(kernel_size, n), _tuple(stride, n)
        self.dilation = _tuple(dilation, n)
        if isinstance(padding, str):  # kept as the string, as PyTorch keeps it
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
            if padding == "same" and any(v != 1 for v in self.stride):
                raise ValueError(f"padding='same' is not supported for strided convolutions "
                                 f"(stride={stride!r})")
            self.padding = padding
        else:
            self.padding = _tuple(padding, n)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {', '.join(map(repr, _PADDING_MODES))}, "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.weight = Parameter(np.empty((out_channels, in_channels // groups) + self.kernel_size, dtype))
        self.bias = Parameter(np.empty(out_channels, dtype)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: kaiming_uniform(a=sqrt(5)) weights, uniform(+-1/sqrt(fan_in)) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.data[0].size
            bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
            init.uniform_(self.bias, -bound, bound)

    def _padded(self, x):
        """(x, padding for the kernels): x padded by F.pad for the padding modes other than
        zeros (then the kernels pad nothing), as PyTorch's ``_reversed_padding_repeated_twice``."""
        if self.padding_mode == "zeros":
            return x, self.padding
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            pairs = [(t // 2, t - t // 2) for t in totals]
        elif self.padding == "valid":
            pairs = [(0, 0)] * self._dims
        else:
            pairs = [(p, p) for p in self.padding]
        flat = [v for pair in reversed(pairs) for v in pair]  # last dimension first
        return F.pad(x, flat, mode=self.padding_mode), 0

    def extra_repr(self):
        n = self._dims
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) or (C, H, W), as ``torch.nn.Conv2d``."""
    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, dtype, padding_mode)

    def forward(self, x):
        x, padding = self._padded(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation,
                        self.groups)


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L) or (C, L), as ``torch.nn.Conv1d``."""
    _dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, dtype, padding_mode)

    def forward(self, x):
        x, padding = self._padded(x)
        padding = padding if isinstance(padding, str) else _tuple(padding, 1)[0]
        return F.conv1d(x, self.weight, self.bias, self.stride[0], padding, self.dilation[0],
                        self.groups)

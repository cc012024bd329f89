"""Convolution layers (weights (K, C/groups, kh, kw) as PyTorch, run on fastconv's kernels), and
the transposed convolution (weight (C_in, C_out/groups, kh, kw), on the same kernels run backwards).

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

__all__ = ["Conv1d", "Conv2d", "ConvTranspose2d"]


_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class _ConvNd(Module):
    """What Conv1d and Conv2d share: arguments, parameters, PyTorch's initialisation, repr."""

    _dims = 0

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        groups,
        bias,
        dtype,
        padding_mode="zeros",
    ):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"be divisible by groups ({groups})"
            )
        n = self._dims
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _tuple(kernel_size, n), _tuple(stride, n)
        self.dilation = _tuple(dilation, n)
        if isinstance(padding, str):  # kept as the string, as PyTorch keeps it
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}"
                )
            if padding == "same" and any(v != 1 for v in self.stride):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions (stride={stride!r})"
                )
            self.padding = padding
        else:
            self.padding = _tuple(padding, n)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {', '.join(map(repr, _PADDING_MODES))}, "
                f"got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        self.weight = Parameter(
            np.empty(self._weight_shape(in_channels, out_channels, groups), dtype)
        )
        self.bias = Parameter(np.empty(out_channels, dtype)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _weight_shape(self, in_channels, out_channels, groups):
        return (out_channels, in_channels // groups) + self.kernel_size

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
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
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

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        dtype=np.float32,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            dtype,
            padding_mode,
        )

    def forward(self, x):
        x, padding = self._padded(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

    def _forward_relu(self, x):
        """relu(self.forward(x)) as one node, the ReLU in the kernels' output stage
        (Sequential runs a Conv2d followed by a ReLU this way)."""
        x, padding = self._padded(x)
        return F.Conv2dRelu.apply(
            x,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=padding,
            dilation=self.dilation,
            groups=self.groups,
            algo="auto",
        )


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L) or (C, L), as ``torch.nn.Conv1d``."""

    _dims = 1

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        dtype=np.float32,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            dtype,
            padding_mode,
        )

    def forward(self, x):
        x, padding = self._padded(x)
        padding = padding if isinstance(padding, str) else _tuple(padding, 1)[0]
        return F.conv1d(
            x, self.weight, self.bias, self.stride[0], padding, self.dilation[0], self.groups
        )


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution over (N, C_in, H, W) or (C_in, H, W), as
    ``torch.nn.ConvTranspose2d``: weight (in_channels, out_channels/groups, kh, kw), PyTorch's
    initialisation and state_dict names. Output size (H-1)*stride - 2*padding +
    dilation*(k-1) + output_padding + 1; ``forward(x, output_size)`` picks output_padding to
    reach ``output_size`` (its last two entries), as PyTorch. Runs on conv2d's kernels (its
    forward is their data gradient: ``fastconv.nn.functional.conv_transpose2d``)."""

    _dims = 2

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups=1,
        bias=True,
        dilation=1,
        padding_mode="zeros",
        dtype=np.float32,
    ):
        if padding_mode != "zeros":
            raise ValueError(
                f'Only "zeros" padding_mode is supported for ConvTranspose2d, got {padding_mode!r}'
            )
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be an int or a tuple, got {padding!r}")
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, dtype
        )
        self.output_padding = _tuple(output_padding, 2)
        for o, s, d in zip(self.output_padding, self.stride, self.dilation):
            if not (o < s or o < d):
                raise ValueError(
                    f"output_padding must be smaller than either stride or dilation, "
                    f"got output_padding={output_padding!r}, stride={stride!r}, "
                    f"dilation={dilation!r}"
                )

    def _weight_shape(self, in_channels, out_channels, groups):
        return (in_channels, out_channels // groups) + self.kernel_size

    def _output_padding(self, x, output_size):
        """PyTorch's ``_output_padding``: the output_padding that gives ``output_size``."""
        if output_size is None:
            return self.output_padding
        size = [int(v) for v in output_size]
        if len(size) in (3, 4):
            size = size[-2:]
        if len(size) != 2:
            raise ValueError(
                f"output_size must have 2 (or 3/4, the last 2 counting) elements, got "
                f"{tuple(output_size)}"
            )
        pads = []
        for dim, (want, h, s, p, d, k) in enumerate(
            zip(size, x.shape[-2:], self.stride, self.padding, self.dilation, self.kernel_size)
        ):
            lo = (h - 1) * s - 2 * p + d * (k - 1) + 1
            hi = lo + s - 1
            if not lo <= want <= hi:
                raise ValueError(
                    f"requested an output size of {tuple(size)}, but valid sizes range "
                    f"from {lo} to {hi} in spatial dimension {dim} (for an input of "
                    f"{tuple(x.shape[-2:])})"
                )
            pads.append(want - lo)
        return tuple(pads)

    def forward(self, x, output_size=None):
        return F.conv_transpose2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self._output_padding(x, output_size),
            self.groups,
            self.dilation,
        )

    def extra_repr(self):
        s = super().extra_repr()
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        return s

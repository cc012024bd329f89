"""Transposed convolution ("deconvolution") on the convolution kernels, as
``torch.nn.functional.conv_transpose2d``.

A transposed convolution is the adjoint of a convolution with the same weight, so it needs no
kernel of its own: its forward is conv2d's data gradient (``fastconv.conv2d_backward``), its input
gradient is conv2d's forward and its weight gradient is conv2d's weight gradient with the roles of
input and output gradient swapped. Each call goes through the public op API, so the algorithm
choice ("auto" or ``algo=``) is that of the kernel actually run.

output_padding: the data-gradient kernel is asked for an input of the padded size directly (a
convolution of any height from the natural size to natural + stride - 1 has the same number of
outputs; rows that no window reaches get zero, then the bias). Where output_padding >= stride
(allowed when it is < dilation) that larger convolution has more outputs than the transposed
convolution has inputs: the input is extended with zero rows/columns, which add nothing.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import functional as _K
from .._checks import _array, _c_int, _tuple
from ..autograd import Function

__all__ = [
    "conv_transpose2d",
    "conv_transpose2d_array",
    "conv_transpose2d_backward_array",
    "ConvTranspose2dFn",
]


class _Geometry:
    """A validated transposed convolution: batched shapes, parameters, and the convolution whose
    data gradient computes it: its input size is the output's (``out_shape``), its output size
    the input's plus ``x_extra`` zero rows/columns (where output_padding >= stride)."""

    def __init__(self, x, weight, stride, padding, output_padding, groups, dilation):
        op = "conv_transpose2d"
        if x.ndim not in (3, 4):
            raise ValueError(
                f"{op}: input must be 4-D (N, C_in, H, W) or 3-D (unbatched), got shape {x.shape}"
            )
        if weight.ndim != 4:
            raise ValueError(
                f"{op}: weight must be 4-D (C_in, C_out/groups, kh, kw), got shape {weight.shape}"
            )
        if x.dtype != weight.dtype:
            raise TypeError(
                f"{op}: input is {x.dtype} but weight is {weight.dtype}; they must match"
            )
        if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral):
            raise TypeError(f"groups must be an int, got {groups!r}")
        groups = _c_int(groups, "groups")
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.unbatched = x.ndim == 3
        xs = (1,) + x.shape if self.unbatched else x.shape
        n, c, h, w = xs
        if 0 in (c, h, w) or 0 in weight.shape:
            raise ValueError(
                f"{op}: input {x.shape} and weight {weight.shape} must not have a "
                f"zero-size channel, spatial or kernel dimension"
            )
        if weight.shape[0] != c:
            raise ValueError(
                f"{op}: weight {weight.shape} has {weight.shape[0]} input channels "
                f"(weight.shape[0]), input {x.shape} has {c}"
            )
        if c % groups:
            raise ValueError(
                f"groups={groups} must divide the input channels of input {x.shape} ({c})"
            )
        self.stride = _tuple(stride, "stride", 2, 1)
        self.padding = _tuple(padding, "padding", 2, 0)
        self.output_padding = _tuple(output_padding, "output_padding", 2, 0)
        self.dilation = _tuple(dilation, "dilation", 2, 1)
        for op_, s, d in zip(self.output_padding, self.stride, self.dilation):
            if not (op_ < s or op_ < d):
                raise ValueError(
                    f"output_padding must be smaller than either stride or dilation, "
                    f"got output_padding={output_padding!r}, stride={stride!r}, "
                    f"dilation={dilation!r}"
                )
        kout = weight.shape[1] * groups
        out, extra = [], []
        for dim, (size, k, s, p, d, o) in enumerate(
            zip(
                (h, w),
                weight.shape[2:],
                self.stride,
                self.padding,
                self.dilation,
                self.output_padding,
            )
        ):
            natural = (size - 1) * s - 2 * p + d * (k - 1) + 1
            total = natural + o
            if total < 1:
                raise ValueError(
                    f"{op}: the output of input {x.shape} would have size {total} in "
                    f"spatial dimension {dim} (padding={padding!r} too large for "
                    f"weight {weight.shape}, stride={stride!r}, dilation={dilation!r})"
                )
            # a convolution of `total` has (size-1) + o//s + 1 outputs: o//s more than x has
            extra.append(o // s)
            out.append(total)
        self.out_shape = (n, kout) + tuple(out)
        self.x_extra = tuple(extra)
        self.groups = groups
        self.x_shape = xs

    def conv_params(self):
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )

    def extend(self, x):
        """x (batched) with the zero rows/columns the convolution's output has beyond it."""
        if not any(self.x_extra):
            return x
        return np.pad(x, [(0, 0), (0, 0), (0, self.x_extra[0]), (0, self.x_extra[1])])


def _batched(a, unbatched):
    return a[None] if unbatched else a


def conv_transpose2d_array(
    x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, algo="auto"
) -> np.ndarray:
    """Transposed 2-D convolution on ndarrays, as ``torch.nn.functional.conv_transpose2d``.

    x: (N, C_in, H, W) or unbatched (C_in, H, W); weight: (C_in, C_out/groups, kh, kw); bias:
    (C_out,) or None. Output (N, C_out, Ho, Wo) with Ho = (H-1)*stride - 2*padding +
    dilation*(kh-1) + output_padding + 1 (likewise Wo). output_padding must be smaller than
    either stride or dilation. ``algo`` picks the data-gradient kernel as in conv2d_backward."""
    x, weight = _array(x, "input"), _array(weight, "weight")
    g = _Geometry(x, weight, stride, padding, output_padding, groups, dilation)
    kout = g.out_shape[1]
    b = None
    if bias is not None:
        b = _array(bias, "bias")
        if b.dtype != x.dtype:
            raise TypeError(f"bias is {b.dtype} but input is {x.dtype}; they must match")
        if b.shape != (kout,):
            raise ValueError(
                f"bias must have shape ({kout},) (one per output channel: "
                f"weight.shape[1] * groups), got {b.shape}"
            )
    dummy = np.broadcast_to(np.zeros((), x.dtype), g.out_shape)  # only its shape is read
    y, _, _ = _K.conv2d_backward(
        g.extend(_batched(x, g.unbatched)),
        dummy,
        weight,
        needs=(True, False, False),
        algo=algo,
        **g.conv_params(),
    )
    if b is not None:
        y += b.reshape(-1, 1, 1)
    return y[0] if g.unbatched else y


def conv_transpose2d_backward_array(
    grad_out,
    x,
    weight,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
    needs=(True, True, True),
    algo="auto",
):
    """Gradients of conv_transpose2d: (grad_input, grad_weight, grad_bias), None where ``needs``
    is False. grad_input is conv2d of grad_out by the same weight; grad_weight is conv2d's weight
    gradient with input as the output gradient and grad_out as the input; grad_bias sums
    grad_out over batch and space."""
    x, weight = _array(x, "input"), _array(weight, "weight")
    g = _Geometry(x, weight, stride, padding, output_padding, groups, dilation)
    dy = _array(grad_out, "grad_out")
    want = g.out_shape[1:] if g.unbatched else g.out_shape
    if dy.shape != want:
        raise ValueError(f"grad_out must have the output's shape {want}, got {dy.shape}")
    if dy.dtype != x.dtype:
        raise TypeError(f"grad_out is {dy.dtype} but input is {x.dtype}; they must match")
    dy = _batched(dy, g.unbatched)
    gx = gw = gb = None
    if needs[0]:
        gx = _K.conv2d(dy, weight, None, algo=algo, **g.conv_params())
        if any(g.x_extra):  # the outputs over the zero rows/columns x was extended by
            gx = np.ascontiguousarray(gx[:, :, : g.x_shape[2], : g.x_shape[3]])
        gx = gx[0] if g.unbatched else gx
    if needs[1]:
        if g.x_shape[0] == 0:
            gw = np.zeros(weight.shape, x.dtype)
        else:
            gw = _K.conv2d_backward(
                g.extend(_batched(x, g.unbatched)),
                dy,
                weight,
                needs=(False, True, False),
                algo=algo,
                **g.conv_params(),
            )[1]
    if needs[2]:
        gb = dy.sum(axis=(0, 2, 3))
    return gx, gw, gb


class ConvTranspose2dFn(Function):
    """conv_transpose2d's primitive: forward on conv2d's data-gradient kernel, backward on
    conv2d's forward (input) and weight-gradient (weight) kernels."""

    @staticmethod
    def forward(ctx, x, weight, bias, **params):
        x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
        ctx.save_for_backward(x, weight)
        ctx.params, ctx.has_bias = params, bias is not None
        return conv_transpose2d_array(x, weight, bias, **params)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        nx, nw, nb = ctx.needs_input_grad
        return conv_transpose2d_backward_array(
            np.ascontiguousarray(g), x, weight, needs=(nx, nw, nb and ctx.has_bias), **ctx.params
        )


def conv_transpose2d(
    input,
    weight,
    bias=None,
    stride=1,
    padding=0,
    output_padding=0,
    groups=1,
    dilation=1,
    algo="auto",
):
    """Transposed 2-D convolution of Tensors (or ndarrays), as
    ``torch.nn.functional.conv_transpose2d``: input (N, C_in, H, W) or (C_in, H, W), weight
    (C_in, C_out/groups, kh, kw), bias (C_out,) or None; differentiable in all three.

    Output size per dimension: (H-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1;
    output_padding must be smaller than either stride or dilation. ``algo`` ('auto' or one of
    ``fastconv.ALGORITHMS``) picks the convolution kernel used, as in ``fastconv.conv2d``."""
    return ConvTranspose2dFn.apply(
        input,
        weight,
        bias,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
        algo=algo,
    )

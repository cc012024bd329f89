"""PyTorch drop-in: fastconv's kernels behind ``torch.autograd.Function``s and ``torch.nn``
modules. Importing this module imports torch; ``import fastconv`` never does.

    import fastconv.torch as fct
    y = fct.conv2d(x, w, b, stride=2, padding=1, dilation=2, groups=4)   # as F.conv2d
    layer = fct.Conv2d(16, 32, 3, padding=1)                             # an nn.Conv2d
    model = fct.convert(torchvision_model)                               # swap in place

Tensors cross to fastconv without copies: a contiguous CPU float32/float64 tensor is viewed
as an ndarray (``.detach().numpy()``), the result ndarray is wrapped back
(``torch.from_numpy``); non-contiguous tensors are made contiguous first. Gradients follow
PyTorch's definitions (checked against them in float64). Double backward is not supported.

Calls fastconv cannot run — tensors not on the CPU, dtypes other than float32/float64 (or mixed)
— fall back to ``torch.nn.functional``, so a converted model still works after ``.cuda()`` or
``.half()``. The modules subclass ``torch.nn.Conv2d`` etc. and add no state: their
``state_dict`` and ``repr`` are PyTorch's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF
from torch.autograd.function import once_differentiable

from . import functional as _F

__all__ = [
    "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "conv1d", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "convert", "compile",
]

_FLOATS = (torch.float32, torch.float64)


def _runs_here(*tensors):
    """True when fastconv can run on these tensors (None entries are ignored)."""
    ts = [t for t in tensors if t is not None]
    return (all(isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dtype in _FLOATS
                and t.layout == torch.strided for t in ts)
            and len({t.dtype for t in ts}) == 1)


def _np(t):
    """A CPU float tensor as an ndarray sharing its memory (a contiguous copy if it is not)."""
    if t is None:
        return None
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    return t.resolve_neg().numpy()


def _tensor(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


# ---------------------------------------------------------------------------------------------
# autograd Functions

class Conv2dFunction(torch.autograd.Function):
    """conv2d/conv1d on fastconv: forward and both backwards through the kernels."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, nspatial):
        conv = _F.conv2d if nspatial == 2 else _F.conv1d
        y = conv(_np(x), _np(weight), _np(bias), stride=stride, padding=padding,
                 dilation=dilation, groups=groups)
        ctx.save_for_backward(x, weight)
        ctx.params = (stride, padding, dilation, groups, nspatial, bias is not None)
        return _tensor(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, nspatial, has_bias = ctx.params
        needs = (bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]),
                 bool(has_bias and ctx.needs_input_grad[2]))
        if not any(needs):
            return (None,) * 8
        back = _F.conv2d_backward if nspatial == 2 else _F.conv1d_backward
        gx, gw, gb = back(_np(grad_out.to(x.dtype)), _np(x), _np(weight), stride=stride,
                          padding=padding, dilation=dilation, groups=groups, needs=needs)
        return _tensor(gx), _tensor(gw), _tensor(gb), None, None, None, None, None


class MaxPool2dFunction(torch.autograd.Function):
    """max_pool2d on fastconv; the backward scatters through the forward's switches."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        y, idx = _F.max_pool2d(_np(x), kernel_size, stride=stride, padding=padding,
                               dilation=dilation, ceil_mode=ceil_mode, return_indices=True)
        ctx.input_shape = tuple(x.shape)
        indices = _tensor(idx)
        ctx.mark_non_differentiable(indices)
        # Saved as a tensor, not as the ndarray behind it: the caller gets the same memory, and
        # torch's version counter makes backward raise if it was changed in place (as PyTorch).
        ctx.save_for_backward(indices)
        return _tensor(y), indices

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _grad_indices):
        (indices,) = ctx.saved_tensors
        gx = _F.max_pool2d_backward(_np(grad_out), _np(indices), ctx.input_shape)
        return _tensor(gx), None, None, None, None, None


class AvgPool2dFunction(torch.autograd.Function):
    """avg_pool2d on fastconv."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override):
        params = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        y = _F.avg_pool2d(_np(x), kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                          count_include_pad=count_include_pad, divisor_override=divisor_override)
        ctx.params = params
        ctx.input_shape = tuple(x.shape)
        return _tensor(y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        gx = _F.avg_pool2d_backward(_np(grad_out), ctx.input_shape, *ctx.params)
        return (_tensor(gx),) + (None,) * 6


class AdaptiveAvgPool2dFunction(torch.autograd.Function):
    """adaptive_avg_pool2d on fastconv."""

    @staticmethod
    def forward(ctx, x, output_size):
        ctx.input_shape = tuple(x.shape)
        return _tensor(_F.adaptive_avg_pool2d(_np(x), output_size))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        return _tensor(_F.adaptive_avg_pool2d_backward(_np(grad_out), ctx.input_shape)), None


# ---------------------------------------------------------------------------------------------
# functional wrappers (torch.nn.functional's signatures)

def _stride(stride, kernel_size):
    """PyTorch's pooling default: stride None (or an empty list) means the kernel size."""
    empty = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    return kernel_size if empty else stride


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """As torch.nn.functional.conv2d, on fastconv's kernels (padding may be 'same'/'valid')."""
    if not _runs_here(input, weight, bias):
        return TF.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return Conv2dFunction.apply(input, weight, bias, stride, padding, dilation, groups, 2)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """As torch.nn.functional.conv1d, on fastconv's kernels."""
    if not _runs_here(input, weight, bias):
        return TF.conv1d(input, weight, bias, stride, padding, dilation, groups)
    return Conv2dFunction.apply(input, weight, bias, stride, padding, dilation, groups, 1)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """As torch.nn.functional.max_pool2d; indices are flat positions within each H*W plane."""
    if not _runs_here(input):
        return TF.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode,
                             return_indices=return_indices)
    out, indices = MaxPool2dFunction.apply(input, kernel_size, _stride(stride, kernel_size),
                                           padding, dilation, ceil_mode)
    return (out, indices) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """As torch.nn.functional.avg_pool2d."""
    if not _runs_here(input):
        return TF.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override)
    return AvgPool2dFunction.apply(input, kernel_size, _stride(stride, kernel_size), padding,
                                   ceil_mode, count_include_pad, divisor_override)


def adaptive_avg_pool2d(input, output_size):
    """As torch.nn.functional.adaptive_avg_pool2d (None in output_size keeps that input size)."""
    if not _runs_here(input):
        return TF.adaptive_avg_pool2d(input, output_size)
    return AdaptiveAvgPool2dFunction.apply(input, output_size)


# ---------------------------------------------------------------------------------------------
# modules: PyTorch's classes with fastconv forwards (same parameters, buffers and state_dict)

class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d on fastconv (padding_mode other than 'zeros' runs PyTorch's code)."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(torch.nn.Conv1d):
    """torch.nn.Conv1d on fastconv (padding_mode other than 'zeros' runs PyTorch's code)."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            return super()._conv_forward(input, weight, bias)
        return conv1d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on fastconv."""

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                          ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d on fastconv."""

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(torch.nn.AdaptiveAvgPool2d):
    """torch.nn.AdaptiveAvgPool2d on fastconv."""

    def forward(self, input):
        return adaptive_avg_pool2d(input, self.output_size)


_SWAPS = {
    torch.nn.Conv2d: Conv2d,
    torch.nn.Conv1d: Conv1d,
    torch.nn.MaxPool2d: MaxPool2d,
    torch.nn.AvgPool2d: AvgPool2d,
    torch.nn.AdaptiveAvgPool2d: AdaptiveAvgPool2d,
}


def _swappable(m):
    if type(m) not in _SWAPS:  # exact types only: a subclass may override forward
        return False
    if isinstance(m, torch.nn.modules.conv._ConvNd) and m.padding_mode != "zeros":
        return False
    return True


def convert(model):
    """Swap the supported modules of ``model`` (and ``model`` itself) to fastconv's, in place;
    returns ``model``.

    Swapped: modules whose type is exactly torch.nn.Conv2d, Conv1d (both only with
    ``padding_mode='zeros'``), MaxPool2d, AvgPool2d or AdaptiveAvgPool2d. Skipped and left to
    PyTorch: convolutions with padding_mode 'reflect', 'replicate' or 'circular', subclasses of
    those modules (they may override forward), and every other module type.

    The swap changes only each module's class: parameters, buffers, hooks and the state_dict
    stay the very same objects, so an optimizer built on the model keeps working.
    """
    for m in model.modules():
        if _swappable(m):
            m.__class__ = _SWAPS[type(m)]
    return model


def compile(module, example_input, tune=None):
    """An inference plan of a ``torch.nn.Module`` in eval mode, traced with torch.fx:
    ``plan = fastconv.torch.compile(model, x); y = plan(x)`` (see ``fastconv.inference``).
    Layers fastconv has: Conv2d, BatchNorm2d (folded), ReLU/Sigmoid/Tanh/LeakyReLU/ELU,
    Max/Avg/AdaptiveAvgPool2d, Linear, Flatten, Dropout/Identity, LocalResponseNorm, and the
    functions add, mul, cat, flatten, view/reshape, relu, sigmoid."""
    from .inference import compile_torch
    return compile_torch(module, example_input, tune)

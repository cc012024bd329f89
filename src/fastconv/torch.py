"""PyTorch drop-in: fastconv's kernels as PyTorch custom operators (``torch.ops.fastconv.*``,
with autograd) behind ``torch.nn`` modules. Importing this module imports torch;
``import fastconv`` never does.

    import fastconv.torch as fct
    y = fct.conv2d(x, w, b, stride=2, padding=1, dilation=2, groups=4)   # as F.conv2d
    layer = fct.Conv2d(16, 32, 3, padding=1)                             # an nn.Conv2d
    model = fct.convert(torchvision_model)                               # swap in place
    model = fct.unconvert(model)                                         # and back

Tensors cross to fastconv without copies: a contiguous CPU float32/float64 tensor is viewed
as an ndarray (``.detach().numpy()``), the result ndarray is wrapped back
(``torch.from_numpy``); non-contiguous tensors are made contiguous first. Gradients follow
PyTorch's definitions (checked against them in float64). Double backward is not supported.

The kernels are registered with ``torch.library.custom_op`` (``fastconv::conv2d``,
``fastconv::max_pool2d``, ... and their ``_backward`` ops), each with a fake implementation
for shapes, so ``torch.compile(fullgraph=True)``, ``torch.export`` and FX tracing see one opaque
node per call and work on converted models (the exported program calls fastconv, so running it
needs fastconv). TorchScript (``torch.jit.script``) and ONNX export do not know these ops:
``unconvert`` first.

Calls fastconv cannot run — tensors not on the CPU, dtypes other than float32/float64 (or mixed)
— fall back to ``torch.nn.functional``, so a converted model still works after ``.cuda()`` or
``.half()``. The modules subclass ``torch.nn.Conv2d`` etc. and add no state: their
``state_dict`` and ``repr`` are PyTorch's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF

from . import functional as _F

__all__ = [
    "Conv1d",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "conv1d",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "convert",
    "unconvert",
    "compile",
]

_FLOATS = (torch.float32, torch.float64)


def _runs_here(*tensors):
    """True when fastconv can run on these tensors (None entries are ignored)."""
    ts = [t for t in tensors if t is not None]
    return (
        all(
            isinstance(t, torch.Tensor)
            and t.device.type == "cpu"
            and t.dtype in _FLOATS
            and t.layout == torch.strided
            for t in ts
        )
        and len({t.dtype for t in ts}) == 1
    )


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
# fastconv's kernels as PyTorch custom operators (torch.library): opaque to torch.compile,
# torch.export and FX (which record one ``fastconv::...`` node each), with fake implementations
# for shapes (torch's own functions run on the fake tensors) and autograd formulas whose
# backwards are custom operators too.

_INT64 = (-(1 << 63), (1 << 63) - 1)


def _int(v, name):
    """v as an int that an operator's int argument holds: OverflowError naming the argument
    otherwise (the ops' schemas are int64; the kernels check the values themselves)."""
    v = int(v)
    if not _INT64[0] <= v <= _INT64[1]:
        raise OverflowError(f"{name}={v} does not fit in int64")
    return v


def _pair(v, name="argument"):
    return [_int(v, name)] * 2 if isinstance(v, int) else [_int(e, name) for e in v]


@torch.library.custom_op("fastconv::conv2d", mutates_args=())
def _conv2d_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    padding_str: str,
) -> torch.Tensor:
    pad = padding_str or tuple(padding)
    return _tensor(
        _F.conv2d(
            _np(x),
            _np(weight),
            _np(bias),
            stride=tuple(stride),
            padding=pad,
            dilation=tuple(dilation),
            groups=groups,
        )
    )


@_conv2d_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, padding_str):
    return TF.conv2d(x, weight, bias, stride, padding_str or padding, dilation, groups)


@torch.library.custom_op("fastconv::conv2d_backward", mutates_args=())
def _conv2d_backward_op(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    padding_str: str,
    needs: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gx, gw, gb = _F.conv2d_backward(
        _np(grad_out.to(x.dtype)),
        _np(x),
        _np(weight),
        stride=tuple(stride),
        padding=padding_str or tuple(padding),
        dilation=tuple(dilation),
        groups=groups,
        needs=tuple(needs),
    )
    # (a gradient not asked for is an empty tensor of its own: an op's outputs may not alias)
    return tuple(x.new_empty(0) if g is None else _tensor(g) for g in (gx, gw, gb))


@_conv2d_backward_op.register_fake
def _(grad_out, x, weight, stride, padding, dilation, groups, padding_str, needs):
    shapes = (x.shape, weight.shape, weight.shape[:1])
    return tuple(x.new_empty(s if need else (0,)) for s, need in zip(shapes, needs))


def _conv2d_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, padding_str = inputs
    ctx.save_for_backward(x, weight)
    ctx.params = (stride, padding, dilation, groups, padding_str, bias is not None)


def _conv2d_grad(ctx, grad_out):
    x, weight = ctx.saved_tensors
    stride, padding, dilation, groups, padding_str, has_bias = ctx.params
    needs = [
        bool(ctx.needs_input_grad[0]),
        bool(ctx.needs_input_grad[1]),
        bool(has_bias and ctx.needs_input_grad[2]),
    ]
    if not any(needs):
        return (None,) * 8
    gx, gw, gb = _conv2d_backward_op(
        grad_out.contiguous(), x, weight, stride, padding, dilation, groups, padding_str, needs
    )
    return (
        gx if needs[0] else None,
        gw if needs[1] else None,
        gb if needs[2] else None,
        None,
        None,
        None,
        None,
        None,
    )


_conv2d_op.register_autograd(_conv2d_grad, setup_context=_conv2d_setup)


@torch.library.custom_op("fastconv::max_pool2d", mutates_args=())
def _max_pool2d_op(
    x: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    y, idx = _F.max_pool2d(
        _np(x),
        tuple(kernel_size),
        stride=tuple(stride),
        padding=tuple(padding),
        dilation=tuple(dilation),
        ceil_mode=ceil_mode,
        return_indices=True,
    )
    return _tensor(y), _tensor(idx)


@_max_pool2d_op.register_fake
def _(x, kernel_size, stride, padding, dilation, ceil_mode):
    return TF.max_pool2d(
        x, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True
    )


@torch.library.custom_op("fastconv::max_pool2d_backward", mutates_args=())
def _max_pool2d_backward_op(
    grad_out: torch.Tensor, indices: torch.Tensor, input_shape: list[int]
) -> torch.Tensor:
    return _tensor(_F.max_pool2d_backward(_np(grad_out), _np(indices), tuple(input_shape)))


@_max_pool2d_backward_op.register_fake
def _(grad_out, indices, input_shape):
    return grad_out.new_empty(input_shape)


def _max_pool2d_setup(ctx, inputs, output):
    # The indices are saved as a tensor: torch's version counter makes backward raise if the
    # caller changed them in place (as PyTorch's own max_pool2d).
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.input_shape = list(inputs[0].shape)


def _max_pool2d_grad(ctx, grad_out, _grad_indices):
    (indices,) = ctx.saved_tensors
    return (
        _max_pool2d_backward_op(grad_out.contiguous(), indices, ctx.input_shape),
        None,
        None,
        None,
        None,
        None,
    )


_max_pool2d_op.register_autograd(_max_pool2d_grad, setup_context=_max_pool2d_setup)


@torch.library.custom_op("fastconv::avg_pool2d", mutates_args=())
def _avg_pool2d_op(
    x: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> torch.Tensor:
    return _tensor(
        _F.avg_pool2d(
            _np(x),
            tuple(kernel_size),
            stride=tuple(stride),
            padding=tuple(padding),
            ceil_mode=ceil_mode,
            count_include_pad=count_include_pad,
            divisor_override=divisor_override,
        )
    )


@_avg_pool2d_op.register_fake
def _(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return TF.avg_pool2d(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


@torch.library.custom_op("fastconv::avg_pool2d_backward", mutates_args=())
def _avg_pool2d_backward_op(
    grad_out: torch.Tensor,
    input_shape: list[int],
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> torch.Tensor:
    return _tensor(
        _F.avg_pool2d_backward(
            _np(grad_out),
            tuple(input_shape),
            tuple(kernel_size),
            tuple(stride),
            tuple(padding),
            ceil_mode,
            count_include_pad,
            divisor_override,
        )
    )


@_avg_pool2d_backward_op.register_fake
def _(
    grad_out,
    input_shape,
    kernel_size,
    stride,
    padding,
    ceil_mode,
    count_include_pad,
    divisor_override,
):
    return grad_out.new_empty(input_shape)


def _avg_pool2d_setup(ctx, inputs, output):
    ctx.input_shape, ctx.params = list(inputs[0].shape), inputs[1:]


def _avg_pool2d_grad(ctx, grad_out):
    return (
        _avg_pool2d_backward_op(grad_out.contiguous(), ctx.input_shape, *ctx.params),
        None,
        None,
        None,
        None,
        None,
        None,
    )


_avg_pool2d_op.register_autograd(_avg_pool2d_grad, setup_context=_avg_pool2d_setup)


@torch.library.custom_op("fastconv::adaptive_avg_pool2d", mutates_args=())
def _adaptive_avg_pool2d_op(x: torch.Tensor, output_size: list[int]) -> torch.Tensor:
    return _tensor(_F.adaptive_avg_pool2d(_np(x), tuple(output_size)))


@_adaptive_avg_pool2d_op.register_fake
def _(x, output_size):
    return TF.adaptive_avg_pool2d(x, output_size)


@torch.library.custom_op("fastconv::adaptive_avg_pool2d_backward", mutates_args=())
def _adaptive_avg_pool2d_backward_op(
    grad_out: torch.Tensor, input_shape: list[int]
) -> torch.Tensor:
    return _tensor(_F.adaptive_avg_pool2d_backward(_np(grad_out), tuple(input_shape)))


@_adaptive_avg_pool2d_backward_op.register_fake
def _(grad_out, input_shape):
    return grad_out.new_empty(input_shape)


def _adaptive_setup(ctx, inputs, output):
    ctx.input_shape = list(inputs[0].shape)


def _adaptive_grad(ctx, grad_out):
    return _adaptive_avg_pool2d_backward_op(grad_out.contiguous(), ctx.input_shape), None


_adaptive_avg_pool2d_op.register_autograd(_adaptive_grad, setup_context=_adaptive_setup)


# ---------------------------------------------------------------------------------------------
# functional wrappers (torch.nn.functional's signatures)


def _stride(stride, kernel_size):
    """PyTorch's pooling default: stride None (or an empty list) means the kernel size."""
    empty = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    return kernel_size if empty else stride


def _conv_args(padding, nspatial):
    """(padding as a list of ints, or [0, 0] with the string in padding_str) for the op."""
    if isinstance(padding, str):
        return [0, 0], padding
    return (
        [0, _int(padding if isinstance(padding, int) else padding[0], "padding")]
        if nspatial == 1
        else _pair(padding, "padding")
    ), ""


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """As torch.nn.functional.conv2d, on fastconv's kernels (padding may be 'same'/'valid')."""
    if not _runs_here(input, weight, bias):
        return TF.conv2d(input, weight, bias, stride, padding, dilation, groups)
    pad, pad_str = _conv_args(padding, 2)
    return _conv2d_op(
        input,
        weight,
        bias,
        _pair(stride, "stride"),
        pad,
        _pair(dilation, "dilation"),
        _int(groups, "groups"),
        pad_str,
    )


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """As torch.nn.functional.conv1d, on fastconv's kernels (as a conv2d of height 1)."""
    if not _runs_here(input, weight, bias):
        return TF.conv1d(input, weight, bias, stride, padding, dilation, groups)
    one = lambda v, name: _int(v if isinstance(v, int) else v[0], name)  # noqa: E731
    pad, pad_str = _conv_args(padding, 1)
    unbatched = input.dim() == 2
    x = (input.unsqueeze(0) if unbatched else input).unsqueeze(2)
    y = _conv2d_op(
        x,
        weight.unsqueeze(2),
        bias,
        [1, one(stride, "stride")],
        pad,
        [1, one(dilation, "dilation")],
        _int(groups, "groups"),
        pad_str,
    ).squeeze(2)
    return y.squeeze(0) if unbatched else y


def max_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    """As torch.nn.functional.max_pool2d; indices are flat positions within each H*W plane."""
    if not _runs_here(input):
        return TF.max_pool2d(
            input,
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode=ceil_mode,
            return_indices=return_indices,
        )
    out, indices = _max_pool2d_op(
        input,
        _pair(kernel_size, "kernel_size"),
        _pair(_stride(stride, kernel_size), "stride"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
        bool(ceil_mode),
    )
    return (out, indices) if return_indices else out


def avg_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """As torch.nn.functional.avg_pool2d."""
    if not _runs_here(input):
        return TF.avg_pool2d(
            input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        )
    return _avg_pool2d_op(
        input,
        _pair(kernel_size, "kernel_size"),
        _pair(_stride(stride, kernel_size), "stride"),
        _pair(padding, "padding"),
        bool(ceil_mode),
        bool(count_include_pad),
        None if divisor_override is None else _int(divisor_override, "divisor_override"),
    )


def adaptive_avg_pool2d(input, output_size):
    """As torch.nn.functional.adaptive_avg_pool2d (None in output_size keeps that input size)."""
    if not _runs_here(input):
        return TF.adaptive_avg_pool2d(input, output_size)
    size = [output_size, output_size] if isinstance(output_size, int) else list(output_size)
    size = [
        input.shape[-2 + i] if v is None else _int(v, "output_size") for i, v in enumerate(size)
    ]
    return _adaptive_avg_pool2d_op(input, size)


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
        return max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d on fastconv."""

    def forward(self, input):
        return avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


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


def unconvert(model):
    """Undo :func:`convert` in place: every fastconv module of ``model`` (and ``model`` itself)
    becomes the ``torch.nn`` class it was, with the same parameters, buffers and hooks; returns
    ``model``. For export paths that do not know fastconv's operators (``torch.jit.script``,
    ``torch.onnx.export``) or to run where fastconv is not installed."""
    back = {v: k for k, v in _SWAPS.items()}
    for m in model.modules():
        if type(m) in back:
            m.__class__ = back[type(m)]
    return model


def compile(module, example_input, tune=None):
    """An inference plan of a ``torch.nn.Module`` in eval mode, traced with torch.fx:
    ``plan = fastconv.torch.compile(model, x); y = plan(x)`` (see ``fastconv.inference``).
    Layers fastconv has: Conv2d, BatchNorm2d (folded), ReLU/Sigmoid/Tanh/LeakyReLU/ELU,
    Max/Avg/AdaptiveAvgPool2d, Linear, Flatten, Dropout/Identity, LocalResponseNorm, and the
    functions add, mul, cat, flatten, view/reshape, relu, sigmoid."""
    from .inference import compile_torch

    return compile_torch(module, example_input, tune)

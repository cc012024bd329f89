"""Gradient clipping with ``torch.nn.utils``' names and semantics, on NumPy gradients in place;
and :func:`fc_to_conv`, which turns a classifier's fully-connected head into convolutions."""

from __future__ import annotations

import copy
import math
import types
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ..autograd import Tensor

if TYPE_CHECKING:
    from .module import Module

__all__ = [
    "clip_grad_norm_",
    "clip_grad_value_",
    "get_total_norm",
    "clip_grads_with_norm_",
    "fc_to_conv",
]

_Parameters = Union[Tensor, Iterable[Tensor]]


def _as_list(parameters):
    """A single Tensor/Parameter as a list of one, an iterable as a list (as PyTorch)."""
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def _array(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _vector_norm(a: np.ndarray, p: float):
    """torch.linalg.vector_norm(a, p) in ``a``'s dtype: the p-norm of all elements; inf and -inf
    the largest and smallest magnitude, 0 the count of nonzeros."""
    a = np.abs(a.ravel())
    if p == math.inf:
        return a.max() if a.size else a.dtype.type(0)
    if p == -math.inf:
        return a.min() if a.size else a.dtype.type(math.inf)
    if p == 0:
        return a.dtype.type(np.count_nonzero(a))
    if p == 1:
        return a.sum()
    if p == 2:
        return np.sqrt(np.dot(a, a))
    return np.sum(a**p) ** (1 / p)


def get_total_norm(
    tensors: Any,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> np.generic:
    """The ``norm_type``-norm of ``tensors`` (arrays or Tensors, or one) taken together, as if
    concatenated into one vector: the norm of their norms, each in its own dtype, the total in
    their common dtype. ``norm_type`` may be ``inf`` (or ``"inf"``). No tensors: float32 0, as
    PyTorch. Returns a NumPy scalar (``float(n)`` and ``n.item()`` work as on torch's 0-d
    tensor). ``error_if_nonfinite``: a nan or inf total raises RuntimeError. ``foreach`` is
    accepted for PyTorch's signature and ignored."""
    arrays = [
        _array(t) for t in ([tensors] if isinstance(tensors, (Tensor, np.ndarray)) else tensors)
    ]
    norm_type = float(norm_type)
    if not arrays:
        return np.float32(0.0)
    norms = [_vector_norm(a, norm_type) for a in arrays]
    total = _vector_norm(np.array(norms, dtype=np.result_type(*norms)), norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is {total}, so "
            f"they cannot be clipped; pass error_if_nonfinite=False to scale them "
            f"by it anyway"
        )
    return total


def clip_grads_with_norm_(
    parameters: _Parameters, max_norm: float, total_norm: Any, foreach: bool | None = None
) -> None:
    """Scale every gradient (``p.grad``, in place) by min(max_norm / (total_norm + 1e-6), 1),
    ``total_norm`` computed beforehand (:func:`get_total_norm`). Parameters without a gradient
    are skipped; ``foreach`` is ignored."""
    params = [p for p in _as_list(parameters) if p.grad is not None]
    if not params:
        return
    total = np.asarray(_array(total_norm))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        coef = np.minimum(float(max_norm) / (total + total.dtype.type(1e-6)), 1.0)
        for p in params:
            grad = p.grad
            c = np.asarray(coef, dtype=_array(grad).dtype)  # (as PyTorch: in the grad's dtype)
            if isinstance(grad, np.ndarray) and grad.flags.writeable:
                grad *= c
            else:
                p.grad = _array(grad) * c


def clip_grad_norm_(
    parameters: _Parameters,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> np.generic:
    """Clip the gradients of ``parameters`` (one Tensor/Parameter or an iterable) so that their
    total ``norm_type``-norm (all gradients as one vector; ``inf`` for the max) is at most about
    ``max_norm``: each ``p.grad`` is multiplied in place by min(max_norm / (total + 1e-6), 1).
    Returns the total norm before clipping, a NumPy scalar (see :func:`get_total_norm`), as
    ``torch.nn.utils.clip_grad_norm_`` returns its tensor. ``error_if_nonfinite``: a nan or inf
    total raises RuntimeError instead; ``foreach`` is ignored."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    else:
        generator = isinstance(parameters, types.GeneratorType)
        parameters = list(parameters)
        if generator and not parameters:
            warnings.warn(
                "clip_grad_norm_: `parameters` is an empty generator, nothing is clipped",
                stacklevel=2,
            )
    grads = [p.grad for p in parameters if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(parameters, max_norm, total, foreach)
    return total


def clip_grad_value_(
    parameters: _Parameters, clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every gradient of ``parameters`` (one Tensor/Parameter or an iterable) into
    [-clip_value, clip_value], in place, as ``torch.nn.utils.clip_grad_value_`` (nan stays nan).
    ``foreach`` is ignored."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        grad = p.grad
        if grad is None:
            continue
        if isinstance(grad, np.ndarray) and grad.flags.writeable:
            np.clip(grad, -clip_value, clip_value, out=grad)
        else:
            p.grad = np.clip(_array(grad), -clip_value, clip_value)


# ----------------------------------------------------------------------------------------------
# FC -> CONV

_ELEMENTWISE = (
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "Tanh",
    "Sigmoid",
    "Hardtanh",
    "Hardsigmoid",
    "Hardswish",
    "SiLU",
    "GELU",
)


def _input_shape(model, input_size):
    """input_size as (C, H, W): an int or (H, W) take C from the model's first convolution."""
    if isinstance(input_size, (int, np.integer)) and not isinstance(input_size, bool):
        input_size = (int(input_size),) * 2
    size = tuple(int(v) for v in input_size)
    if len(size) == 4:
        size = size[1:]
    if len(size) == 2:
        first = next((m for m in model.modules() if hasattr(m, "in_channels")), None)
        if first is None:
            raise ValueError(
                f"fc_to_conv: input_size {input_size!r} has no channels and the model "
                f"has no convolution to take them from; give (C, H, W)"
            )
        size = (int(first.in_channels),) + size
    if len(size) != 3 or min(size) < 1:
        raise ValueError(
            f"fc_to_conv: input_size must be an int, (H, W), (C, H, W) or (N, C, H, W) "
            f"of positive sizes, got {input_size!r}"
        )
    return size


def _conv_like(linear, c, kh, kw):
    """A Conv2d computing ``linear`` on a (c, kh, kw) window (kh = kw = 1, c = in_features for
    the layers after the first): the weight reshaped, the bias copied. Built without drawing
    from fastconv's random generator (its state is put back after the throwaway initialisation)."""
    from ..autograd import default_generator
    from .conv import Conv2d

    w = linear.weight.data
    gen = default_generator()
    state = gen.bit_generator.state
    try:
        conv = Conv2d(c, w.shape[0], (kh, kw), bias=linear.bias is not None, dtype=w.dtype)
    finally:
        gen.bit_generator.state = state
    conv.weight.data[...] = w.reshape(w.shape[0], c, kh, kw)
    conv.weight.requires_grad = linear.weight.requires_grad
    if linear.bias is not None:
        conv.bias.data[...] = linear.bias.data
        conv.bias.requires_grad = linear.bias.requires_grad
    return conv


def fc_to_conv(model: Module, input_size: int | tuple[int, int] | tuple[int, int, int]) -> Module:
    """A copy of ``model`` whose fully-connected head is convolutional, so that it slides over
    larger images (the course notes' FC -> CONV conversion). The original is unchanged.

    ``input_size`` is the size the model was built for: an int, (H, W) or (C, H, W). One traced
    forward at that size finds the layers; they must form a chain (Sequential-style, as LeNet-5,
    AlexNet, VGG and OverFeat: a ``features`` part, ``flatten``, a classifier). The first Linear
    becomes a convolution whose kernel is the feature map it sees at ``input_size`` (its weight
    reshaped, C x h x w in flatten's order); every later Linear becomes a 1x1 convolution.
    Flatten is dropped. An adaptive pooling that is an identity at ``input_size`` (torchvision's
    AlexNet ``AdaptiveAvgPool2d((6, 6))`` at 224, VGG's ``(7, 7)`` at 224) is dropped so the net
    slides; one that changes the size there would not slide and raises ValueError. Dropout, ReLU and
    the other element-wise activations are kept; Softmax/LogSoftmax act on the channels (dim=1).

    Returns an ``nn.Sequential`` of copies of the layers, named after the originals' paths with
    "." replaced by "_" ("features_0", "classifier_1", ...), in the model's train/eval mode. On an
    image larger than ``input_size`` it gives a score map (N, classes, Ho, Wo); position (i, j)
    is the original network on the crop at (i*S, j*S) of ``input_size``, S the product of the
    feature extractor's strides (32 for AlexNet and VGG), exactly when the feature extractor pads
    nothing; with zero padding (AlexNet, VGG) each crop would be padded with zeros where the
    big image has real neighbours, so the map is the better-informed of the two.
    """
    from . import _trace
    from .container import Sequential

    shape = _input_shape(model, input_size)
    param = next(iter(model.parameters()), None)
    dtype = param.data.dtype if param is not None else np.float32
    x = np.zeros((1,) + shape, dtype)
    calls, out = _trace.trace(model, x)
    _trace.check_chain(calls, x, output=out, what="fc_to_conv")
    kinds = [type(c.module).__name__ for c in calls]
    if "Linear" not in kinds:
        raise ValueError("fc_to_conv: the model has no Linear layer to convert")
    first = kinds.index("Linear")
    maps = [x.shape] + [
        c.output.shape for c in calls[:first] if c.output is not None and c.output.ndim == 4
    ]
    c, h, w = maps[-1][1:]
    lin = calls[first].module
    if calls[first].inputs[0].ndim != 2 or c * h * w != lin.in_features:
        raise ValueError(
            f"fc_to_conv: {calls[first].name} (Linear, {lin.in_features} inputs) does "
            f"not read the flattened {c}x{h}x{w} feature map at input_size {shape}"
        )
    layers = []
    for i, call in enumerate(calls):
        m, kind = call.module, kinds[i]
        name = call.name.replace(".", "_") or f"layer{i}"
        inp = call.inputs[0]
        if kind in ("Flatten", "Identity"):
            continue
        if i < first and kind in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d"):
            if call.output.shape == inp.shape:
                continue  # an identity at input_size: dropped, so the net slides
            raise ValueError(
                f"fc_to_conv: {call.name} ({kind}, output_size={m.output_size!r}) pools "
                f"the {inp.shape[2]}x{inp.shape[3]} map to "
                f"{call.output.shape[2]}x{call.output.shape[3]} at input_size {shape}: "
                f"a fixed-size pooling does not slide. Convert at the input size "
                f"where it keeps the map's size (the model's native one, e.g. 224 "
                f"for torchvision's AlexNet and VGG)"
            )
        if kind == "Linear":
            if inp.ndim != 2:
                raise ValueError(
                    f"fc_to_conv: {call.name} (Linear) acts on a {inp.ndim}-D input; "
                    f"only Linear layers on (N, features) are converted"
                )
            conv = _conv_like(m, c, h, w) if i == first else _conv_like(m, m.in_features, 1, 1)
            layers.append((name, conv))
        elif i < first and inp.ndim == 4:
            layers.append((name, copy.deepcopy(m)))
        elif kind in _ELEMENTWISE or kind == "Dropout":
            layers.append((name, copy.deepcopy(m)))
        elif kind == "Dropout2d" or kind == "AlphaDropout":
            from .layers import Dropout

            layers.append((name, Dropout(m.p)))
        elif kind in ("Softmax", "LogSoftmax") and m.dim in (1, -1):
            new = copy.deepcopy(m)
            new.dim = 1
            layers.append((name, new))
        else:
            raise ValueError(
                f"fc_to_conv: {call.name} ({kind}) in the fully-connected head "
                f"cannot be made convolutional (supported there: Linear, Dropout, "
                f"element-wise activations, Softmax/LogSoftmax, Flatten, Identity)"
            )
    result = Sequential(OrderedDict(layers))
    result.train(model.training)
    return result

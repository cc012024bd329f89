"""Network ops on Tensors (the counterpart of ``torch.nn.functional``).

Convolution, pooling and the linear layers' GEMM run on fastconv's kernels (``fastconv.functional``,
ndarrays in and out), and so do batch norm (fused with a residual add and ReLU where asked),
ReLU and softmax cross-entropy (``fastconv._core``); the rest is NumPy (the later activations in
``_activations.py``, the losses in ``_losses.py``, padding modes and adaptive max pooling in
``_numpy_ops.py``). Each primitive is a forward/backward pair.

``inplace=True`` is accepted wherever PyTorch has it and the result is computed out of place:
the backward needs the input, so fastconv never overwrites it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _core
from .. import functional as _K
from .._typing import ArrayLike, IntPair, Padding, Shape
from ..autograd import (
    Elu,
    Function,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Sigmoid,
    Softmax,
    Tanh,
    Tensor,
    _relu_grad,
    concat,
    default_generator,
    is_grad_enabled,
)
from ._activations import gelu, hardsigmoid, hardswish, hardtanh, relu6, silu
from ._conv_transpose import conv_transpose2d  # noqa: F401  (transposed convolution, re-exported)
from ._losses import (  # noqa: F401
    BinaryCrossEntropy,
    LogSigmoid,
    NllLoss,
    SoftmaxCrossEntropy,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    mse_loss,
    nll_loss,
)
from ._numpy_ops import adaptive_max_pool2d, pad

__all__ = [
    "conv2d",
    "conv1d",
    "max_pool2d",
    "max_unpool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "pad",
    "linear",
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "tanh",
    "sigmoid",
    "hardtanh",
    "hardsigmoid",
    "hardswish",
    "silu",
    "gelu",
    "batch_norm",
    "local_response_norm",
    "dropout",
    "dropout2d",
    "flatten",
    "concat",
    "softmax",
    "log_softmax",
    "nll_loss",
    "cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
]


def _c(a):
    return np.ascontiguousarray(a)


# ----------------------------------------------------------------------------------------------
# convolution


class _Conv(Function):
    """A convolution on fastconv's kernels: forward, and the backward asked for by
    ``needs_input_grad`` (x, weight, bias) in one call. Its data gradient adds into x's pending
    gradient when the backward pass offers one (``sums_into``: a residual block's input already
    holds the shortcut's gradient), instead of into a new array the pass then adds."""

    kernel, nspatial = None, 2
    relu = False  # (Conv2dRelu: the kernels apply ReLU to the output)
    sums_into = True  # (autograd's backward pass: ctx.grad_into)

    @classmethod
    def forward(cls, ctx, x, weight, bias, **params):
        x, weight = _c(x), _c(weight)
        ctx.save_for_backward(x, weight)
        ctx.params, ctx.has_bias = params, bias is not None
        ctx.prepared = None
        if cls.nspatial == 2 and ctx.needs_input_grad[0] and is_grad_enabled():
            # a step that will want grad_x: the filters transformed once for both directions
            # where the data gradient can reuse them (Winograd, FFT: fastconv.functional._forward)
            y, ctx.prepared = _K._conv2d_keeping(x, weight, bias, relu=cls.relu, **params)
        else:
            y = cls.kernel(x, weight, bias, **params)
        if cls.relu:
            ctx.y = y  # (ReLU's mask)
        return y

    @classmethod
    def backward(cls, ctx, g):
        x, weight = ctx.saved
        nx, nw, nb = ctx.needs_input_grad
        prepared, ctx.prepared = ctx.prepared, None  # (its filters freed once used)
        return _K._backward(
            _c(g),
            x,
            weight,
            needs=(nx, nw, nb and ctx.has_bias),
            nspatial=cls.nspatial,
            into=ctx.grad_into.get(0) if ctx.grad_into else None,
            prepared=prepared if nx else None,
            **{"algo": "auto", **ctx.params},  # (conv1d takes no algo: auto)
        )


class Conv2d(_Conv):
    """conv2d's primitive (``fastconv.conv2d`` and ``conv2d_backward``)."""

    kernel = staticmethod(_K.conv2d)


class Conv2dRelu(Conv2d):
    """relu(conv2d(...)) as one node (nn.Sequential's Conv2d, ReLU pairs): the ReLU applied in
    the convolution's output stage, so no pass over the convolution's output and no second
    node; the backward masks the gradient as ReLU's does, then runs the convolution's."""

    kernel, relu = staticmethod(_K._conv2d_relu), True

    @classmethod
    def backward(cls, ctx, g):
        return super().backward(ctx, _relu_grad(g, ctx.y))


class Conv1d(_Conv):
    """conv1d's primitive (``fastconv.conv1d`` and ``conv1d_backward``)."""

    kernel, nspatial = staticmethod(_K.conv1d), 1


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    algo: str = "auto",
) -> Tensor:
    """2-D convolution of (N, C, H, W) by (K, C/groups, kh, kw), fastconv's kernels both ways."""
    return Conv2d.apply(
        x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups, algo=algo
    )


def conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] | str = 0,
    dilation: int | tuple[int] = 1,
    groups: int = 1,
) -> Tensor:
    """1-D convolution of (N, C, L) by (K, C/groups, k)."""
    return Conv1d.apply(
        x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


# ----------------------------------------------------------------------------------------------
# pooling


class MaxPool2d(Function):
    """max_pool2d's primitive; its switches route the gradient back."""

    @staticmethod
    def forward(ctx, x, return_indices=False, **params):
        if not return_indices and not (ctx.needs_input_grad[0] and is_grad_enabled()):
            # no backward will run (eval under no_grad, or a constant input): no switches, which
            # took 1.3-2.7x the time of the pooling itself (int64 per output)
            return _K.max_pool2d(_c(x), **params)
        y, indices = _K.max_pool2d(_c(x), return_indices=True, **params)
        ctx.save_for_backward(indices)
        ctx.input_shape = x.shape
        if not return_indices:
            return y
        # the caller's switches are a copy: changing them in place must not move the gradient
        return y, indices.copy()

    @staticmethod
    def backward(ctx, g):
        return _K.max_pool2d_backward(_c(g), ctx.saved[0], ctx.input_shape)


def max_pool2d(
    x: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Max pooling; the switches (int64 flat h*W+w per plane) drive the backward."""
    return MaxPool2d.apply(
        x,
        return_indices=bool(return_indices),
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
    )


class MaxUnpool2d(Function):
    """max_unpool2d's primitive: scatter to the switches, gather back."""

    @staticmethod
    def forward(ctx, x, indices, **params):
        indices = _c(indices)
        ctx.save_for_backward(indices)
        ctx.input_shape = x.shape
        return _K.max_unpool2d(_c(x), indices, **params)

    @staticmethod
    def backward(ctx, g):
        # unpool scatters x into the switches' positions; its adjoint gathers from them
        (indices,) = ctx.saved
        n, c = g.shape[:2]
        gx = np.take_along_axis(g.reshape(n, c, -1), indices.reshape(n, c, -1), axis=2)
        return gx.reshape(ctx.input_shape), None


def max_unpool2d(
    x: Tensor,
    indices: Tensor | ArrayLike,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    output_size: Shape | None = None,
) -> Tensor:
    """Put each value of x back at its max-pool switch (``indices``), zeros elsewhere."""
    return MaxUnpool2d.apply(
        x, indices, kernel_size=kernel_size, stride=stride, padding=padding, output_size=output_size
    )


class AvgPool2d(Function):
    """avg_pool2d's primitive (fastconv's kernels both ways)."""

    @staticmethod
    def forward(ctx, x, **params):
        ctx.params, ctx.input_shape = params, x.shape
        return _K.avg_pool2d(_c(x), **params)

    @staticmethod
    def backward(ctx, g):
        return _K.avg_pool2d_backward(_c(g), ctx.input_shape, **ctx.params)


class AvgPool2dDivisor(AvgPool2d):
    """avg_pool2d with ``divisor_override``: its own class, so that an inference plan's capture
    (which knows AvgPool2d) reports it unsupported rather than dropping the divisor."""


def avg_pool2d(
    x: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Average pooling as ``torch.nn.functional.avg_pool2d``; ``divisor_override`` divides every
    window's sum by that number instead of the window's size."""
    params = dict(
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )
    if divisor_override is None:
        return AvgPool2d.apply(x, **params)
    return AvgPool2dDivisor.apply(x, divisor_override=divisor_override, **params)


class AdaptiveAvgPool2d(Function):
    """adaptive_avg_pool2d's primitive (fastconv's kernels both ways)."""

    @staticmethod
    def forward(ctx, x, output_size):
        ctx.input_shape = x.shape
        return _K.adaptive_avg_pool2d(_c(x), output_size)

    @staticmethod
    def backward(ctx, g):
        return _K.adaptive_avg_pool2d_backward(_c(g), ctx.input_shape)


def adaptive_avg_pool2d(x: Tensor, output_size: int | tuple[int | None, int | None]) -> Tensor:
    """Adaptive average pooling to ``output_size`` (an int or a pair; 1 is global pooling)."""
    return AdaptiveAvgPool2d.apply(x, output_size=output_size)


# ----------------------------------------------------------------------------------------------
# linear and activations


def _columns(a, m, c):
    """[M, c] rows as the kernels' input: one image of M pixels, [1, c, 1, M]; an empty batch
    (M = 0) as zero images [0, c, 1, 1], as conv2d takes an empty batch but no empty image."""
    if m == 0:
        return a.reshape(0, c, 1, 1)
    return _c(a.reshape(m, c).T).reshape(1, c, 1, m)


def _l2_bytes():
    global _L2
    if _L2 is None:
        _L2 = _K.hardware()["l2_bytes"]
    return _L2


_L2 = None


class Linear(Function):
    """x @ weight.T + bias on fastconv's GEMM: the batch, transposed to [in, M], is one image of M
    pixels and the weight a 1x1 kernel. So linear layers run on the kernels' single OpenMP pool
    (README, Threads) rather than NumPy's own BLAS threads, which fight it for the cores.
    A weight larger than the L2 under up to 64 rows of float32 (32 of float64) runs its forward
    on M images of one pixel instead: the "linear" algorithm's product over the batch reads the
    weight from memory once by dot products (rows_times_nt), where the GEMM with M columns
    packed it, and no transposes (2048x1000 to 9216x4096, 2 threads, Zen 4: 0.54-0.61x the time
    at 8 rows, 0.72-0.97x at 16, 0.88-1.04x at 64)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        lead, k = x.shape[:-1], x.shape[-1]
        m, n = int(np.prod(lead)), weight.shape[0]
        w = _c(weight).reshape(n, k, 1, 1)
        ctx.lead, ctx.m, ctx.has_bias = lead, m, bias is not None
        ctx.rows = 0 < m and m * x.dtype.itemsize <= 256 and w.nbytes > _l2_bytes()
        if ctx.rows:  # (the backward builds the columns from x)
            ctx.save_for_backward(x, w)
            y = _K.conv2d(_c(x).reshape(m, k, 1, 1), w, bias)  # [M, in] x [in, out] -> [M, out]
            return y.reshape(lead + (n,))
        xt = _columns(x, m, k)
        y = _K.conv2d(xt, w, bias)  # [out, in] x [in, M] -> [out, M]
        ctx.save_for_backward(xt, w)
        return _c(y.reshape(n, m).T).reshape(lead + (n,))

    @staticmethod
    def backward(ctx, g):
        xt, w = ctx.saved
        (n, k), m = w.shape[:2], ctx.m
        if ctx.rows:
            xt = _columns(xt, m, k)
        nx, nw, nb = ctx.needs_input_grad
        gx, gw, gb = _K.conv2d_backward(
            _columns(g, m, n), xt, w, needs=(nx, nw, nb and ctx.has_bias)
        )
        if gx is not None:
            gx = _c(gx.reshape(k, m).T).reshape(ctx.lead + (k,))
        return gx, None if gw is None else gw.reshape(n, k), gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, weight of shape (out_features, in_features) as PyTorch."""
    return Linear.apply(x, weight, bias)


def relu(x: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0) on fastconv's kernel (``inplace`` accepted, computed out of place)."""
    return Relu.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x where x > 0, negative_slope * x elsewhere (``inplace`` accepted, out of place)."""
    return LeakyRelu.apply(x, negative_slope=negative_slope)


def elu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x where x > 0, alpha * (exp(x) - 1) elsewhere (``inplace`` accepted, out of place)."""
    return Elu.apply(x, alpha=alpha)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), without overflow."""
    return Sigmoid.apply(x)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``."""
    return Softmax.apply(x, dim=dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along ``dim``, computed stably."""
    return LogSoftmax.apply(x, dim=dim)


def flatten(x: Tensor, start_dim: int = 1, end_dim: int = -1) -> Tensor:
    """Merge dimensions start_dim..end_dim (the layer's default keeps the batch: start_dim=1)."""
    return x.flatten(start_dim, end_dim)


# ----------------------------------------------------------------------------------------------
# normalisation and dropout


class BatchNorm(Function):
    """Batch norm over axis 1 of (N, C), (N, C, L) or (N, C, H, W), on fastconv's threaded
    kernels (one pass for the statistics and one for the output, per channel, forward and
    backward). Optionally fused: ``residual`` (laid out as x) added after the affine step, then
    ``activation="relu"`` -- a ResNet block's tail in one pass, its gradient in one more."""

    @staticmethod
    def forward(
        ctx,
        x,
        weight,
        bias,
        residual=None,
        running_mean=None,
        running_var=None,
        use_batch_stats=True,
        momentum=0.1,
        eps=1e-5,
        activation=None,
    ):
        if activation not in (None, "relu"):
            raise ValueError(f"batch_norm: activation must be None or 'relu', got {activation!r}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"batch_norm: x must be float32 or float64, got {x.dtype}")
        if x.ndim < 2:
            raise ValueError(
                f"batch_norm: x must have a channel axis (N, C, ...), got shape {x.shape}"
            )
        n, c = x.shape[:2]
        hw = math.prod(x.shape[2:])
        dt = x.dtype

        def per_channel(a, name):
            if a is None:
                return None
            a = np.ascontiguousarray(a, dtype=dt)
            if a.shape != (c,):
                raise ValueError(f"batch_norm: {name} must have shape ({c},), got {a.shape}")
            return a

        x = _c(x)
        w, b = per_channel(weight, "weight"), per_channel(bias, "bias")
        if residual is not None:
            if residual.shape != x.shape:
                raise ValueError(
                    f"batch_norm: residual must have x's shape {x.shape}, got {residual.shape}"
                )
            residual = np.ascontiguousarray(residual, dtype=dt)
        y = np.empty_like(x)
        act = 1 if activation == "relu" else 0
        # A fused ReLU's backward reads a bit per output that the forward writes as it goes
        # (fc_batch_norm_forward_masked), not the output: 1/32 of its float32 bytes
        want_mask = act and is_grad_enabled() and any(ctx.needs_input_grad)
        mask = np.empty(n * c * ((hw + 7) // 8), np.uint8) if want_mask else None
        if use_batch_stats:
            count = n * hw
            if count == 1:  # as PyTorch: an empty batch passes (an empty result), one value not
                raise ValueError(
                    f"batch_norm: expected more than 1 value per channel when "
                    f"training, got input of shape {x.shape}"
                )
            mean, var, invstd = np.empty((3, c), dt)
            # The running statistics are updated by the kernel call itself (PyTorch's formula, in
            # double) where it can write them in place; an empty batch leaves them.
            native = _running_in_place(running_mean, running_var, dt, c)
            running = (running_mean, running_var, momentum) if native else ()
            _core.batch_norm_forward(
                x, n, c, hw, w, b, residual, act, True, eps, mean, var, invstd, y, mask, *running
            )
            if count and not native:
                _update_running(running_mean, running_var, mean, var, momentum, count)
        else:
            mean = per_channel(running_mean, "running_mean")
            invstd = (1.0 / np.sqrt(running_var + eps)).astype(dt)
            _core.batch_norm_forward(
                x, n, c, hw, w, b, residual, act, False, eps, mean, None, invstd, y, mask
            )
        ctx.save_for_backward(x, mask, mean, invstd, w)
        ctx.batch, ctx.sizes = use_batch_stats, (n, c, hw)
        ctx.dtypes = tuple(None if a is None else a.dtype for a in (weight, bias))
        return y

    @staticmethod
    def backward(ctx, g):
        x, mask, mean, invstd, w = ctx.saved
        n, c, hw = ctx.sizes
        nx, nw, nb, nr = (ctx.needs_input_grad + (False,) * 4)[:4]
        g = np.ascontiguousarray(g, dtype=x.dtype)
        gx = np.empty_like(x) if nx else None
        gr = np.empty_like(x) if nr and mask is not None else None
        gw, gb = (np.empty(c, x.dtype) if need else None for need in (nw, nb))
        _core.batch_norm_backward(
            g, x, n, c, hw, None, mean, invstd, w, ctx.batch, gx, gr, gw, gb, mask
        )
        if nr and mask is None:
            gr = g  # (the residual was only added: its gradient is the output's)
        wt, bt = ctx.dtypes
        return (
            gx,
            None if gw is None else gw.astype(wt, copy=False),
            None if gb is None else gb.astype(bt, copy=False),
            gr,
        )


def _update_running(running_mean, running_var, mean, var, momentum, count):
    """fc_batch_norm_update_running's formula in NumPy, for running statistics the kernel cannot
    write in place (another dtype, a strided view)."""
    if running_mean is not None:
        running_mean[...] = momentum * mean.astype(np.float64) + (1 - momentum) * (
            running_mean.astype(np.float64)
        )
    if running_var is not None:
        unbiased = var.astype(np.float64) * (count / (count - 1))
        running_var[...] = momentum * unbiased + (1 - momentum) * running_var.astype(np.float64)


def _running_in_place(running_mean, running_var, dt, c):
    """Whether the kernel can update the running statistics itself: both arrays of x's dtype,
    C-contiguous, writable, of c elements."""
    return all(
        isinstance(a, np.ndarray)
        and a.dtype == dt
        and a.shape == (c,)
        and a.flags.c_contiguous
        and a.flags.writeable
        for a in (running_mean, running_var)
    )


def batch_norm(
    x: Tensor,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    residual: Tensor | None = None,
    activation: str | None = None,
) -> Tensor:
    """PyTorch's batch_norm: batch statistics when training (updating the running ones in place,
    the variance unbiased), the running statistics otherwise (batch ones if there are none).
    fastconv's extension: ``residual`` added and ``activation="relu"`` applied in the same pass,
    ``relu(batch_norm(x) + residual)`` at the cost of a batch norm."""
    use_batch = training or running_mean is None
    return BatchNorm.apply(
        x,
        weight,
        bias,
        residual,
        running_mean=running_mean,
        running_var=running_var,
        use_batch_stats=use_batch,
        momentum=momentum,
        eps=eps,
        activation=activation,
    )


def _window_sum(a, before, after):
    """out[:, c] = sum of a[:, c - before : c + after + 1] over the channel axis (zeros outside)."""
    out = a.copy()
    channels = a.shape[1]
    for d in range(1, before + 1):
        out[:, d:] += a[:, : channels - d]
    for d in range(1, after + 1):
        out[:, : channels - d] += a[:, d:]
    return out


class LocalResponseNorm(Function):
    """y = x / (k + alpha/size * sum_{window} x^2) ** beta, the window as PyTorch's."""

    @staticmethod
    def forward(ctx, x, size, alpha=1e-4, beta=0.75, k=1.0):
        lo, hi = size // 2, (size - 1) // 2
        scale = k + (alpha / size) * _window_sum(x * x, lo, hi)
        y = x * scale**-beta
        ctx.save_for_backward(x, scale, y)
        ctx.params = size, alpha, beta
        return y

    @staticmethod
    def backward(ctx, g):
        x, scale, y = ctx.saved
        size, alpha, beta = ctx.params
        # d y_j / d x_c = [c == j] scale_j^-beta - 2 beta alpha/size x_c y_j / scale_j
        # for c in window(j)
        t = g * y / scale
        lo, hi = size // 2, (size - 1) // 2
        return g * scale**-beta - (2 * beta * alpha / size) * x * _window_sum(t, hi, lo)


def local_response_norm(
    x: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Tensor:
    """AlexNet's normalisation over ``size`` neighbouring channels, as PyTorch's."""
    return LocalResponseNorm.apply(x, size=size, alpha=alpha, beta=beta, k=k)


class Dropout(Function):
    """Inverted dropout with fastconv's generator: keep with probability 1 - p, scale by
    1/(1-p). ``noise_shape`` (broadcast against x) zeroes whole channels (dropout2d)."""

    @staticmethod
    def forward(ctx, x, p, noise_shape=None):
        mask = default_generator().random(x.shape if noise_shape is None else noise_shape) >= p
        scale = np.asarray(0.0 if p == 1 else 1.0 / (1.0 - p), x.dtype)
        ctx.save_for_backward(mask, scale)
        return x * mask * scale

    @staticmethod
    def backward(ctx, g):
        mask, scale = ctx.saved
        return g * mask * scale


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)
    (``inplace`` accepted, computed out of place)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    return Dropout.apply(x, p=p)


def dropout2d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    """Channel dropout, as ``torch.nn.functional.dropout2d``: each (sample, channel) plane of an
    (N, C, H, W) input is zeroed with probability p, the others scaled by 1/(1-p) (fastconv's
    generator, as dropout). A 3-D input is taken as (N, C, L), with PyTorch's warning.
    ``inplace`` is accepted, computed out of place."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout2d: dropout probability must be in [0, 1], got {p}")
    ndim = np.ndim(input)
    if ndim < 2:
        raise ValueError(
            f"dropout2d: input must have a channel dimension, (N, C, H, W), got "
            f"shape {np.shape(input)}"
        )
    if ndim == 3:
        warnings.warn(
            "dropout2d: a 3-D input is taken as (N, C, L), channel-wise 1-D dropout "
            "(as PyTorch does today)",
            stacklevel=2,
        )
    elif ndim != 4:
        warnings.warn(
            f"dropout2d: a {ndim}-D input is deprecated in PyTorch (3-D or 4-D "
            f"expected); dropping whole (N, C) slices",
            stacklevel=2,
        )
    if not training or p == 0:
        return input
    return Dropout.apply(input, p=p, noise_shape=np.shape(input)[:2] + (1,) * (ndim - 2))

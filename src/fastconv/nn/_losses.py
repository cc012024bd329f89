"""The losses of ``fastconv.nn.functional``, with PyTorch's signatures and reductions.

Softmax cross-entropy runs on fastconv's fused kernel (csrc/loss.cpp) in every case: class
weights, ignored targets and label smoothing are all folded into the target distribution q it
takes, and a weighted mean divides by the weights of the targets that count, as PyTorch's does.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import _core
from .._typing import ArrayLike
from ..autograd import Function, Tensor

__all__ = [
    "nll_loss",
    "cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


class _TargetIndexError(IndexError, ValueError):
    """A class index out of range: PyTorch's IndexError, and fastconv's earlier ValueError."""


# ----------------------------------------------------------------------------------------------
# argument checks


def _reduction(op, size_average, reduce, reduction):
    """``reduction``, or the one PyTorch's deprecated size_average/reduce pair stands for (with
    PyTorch's warning); raises ValueError naming a bad value."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
        warnings.warn(
            f"size_average and reduce args will be deprecated, please use "
            f"reduction='{reduction}' instead.",
            UserWarning,
            stacklevel=3,
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"{op}: {reduction!r} is not a valid value for reduction (one of 'mean', 'sum', 'none')"
        )
    return reduction


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _weighted_mean(loss, total):
    """loss.sum() / total (the weights of the targets that count); nan when total is 0, with a
    zero gradient, as PyTorch's."""
    total = float(total)
    return loss.sum() / total if total else loss.sum() * 0.0 + float("nan")


def _array(value):
    return np.asarray(value.data if isinstance(value, Tensor) else value)


def _logits(op, input, min_ndim=1):
    """input as a float32/float64 Tensor of at least ``min_ndim`` dimensions."""
    if not isinstance(input, Tensor):
        input = Tensor(input)
    if input.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: input must be float32 or float64, got {input.dtype}")
    if input.ndim < min_ndim:
        raise ValueError(
            f"{op}: input must be (N, C, d1, ...) or unbatched (C,), got shape {input.shape}"
        )
    return input


def _class_weight(op, weight, n_classes, dtype):
    """``weight`` as a (C,) array of ``dtype``, or None."""
    if weight is None:
        return None
    w = _array(weight)
    if w.shape != (n_classes,):
        raise ValueError(
            f"{op}: weight must hold one value per class, shape ({n_classes},), got shape {w.shape}"
        )
    return w.astype(dtype)


def _class_targets(op, target, shape, ignore_index):
    """Class indices (N, d1, ...) for an input of ``shape`` (N, C, d1, ...), checked: returns
    them with ignored entries replaced by 0, and the mask of those not ignored."""
    t = _array(target)
    if t.dtype == np.bool_ or not np.issubdtype(t.dtype, np.integer):
        raise TypeError(
            f"{op}: target must hold integer class indices (a float target of the "
            f"input's shape {tuple(shape)} holds class probabilities), got {t.dtype} "
            f"of shape {t.shape}"
        )
    want = (shape[0],) + tuple(shape[2:])
    if t.shape != want:
        raise ValueError(
            f"{op}: target of shape {t.shape} does not fit input of shape "
            f"{tuple(shape)}: class indices of shape {want} expected"
        )
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= shape[1]))
    if bad.any():
        raise _TargetIndexError(
            f"{op}: target {t[bad][0]} is out of bounds: class indices must "
            f"be in [0, {shape[1]}) or equal ignore_index={ignore_index}"
        )
    return np.where(keep, t, 0), keep


def _unbatched(fn, input, target, reduction, **kwargs):
    """fn on an unbatched (C,) input, as a batch of one; 'none' gives back a 0-d result."""
    t = _array(target)
    out = fn(input.reshape(1, -1), t[None], reduction=reduction, **kwargs)
    return out.reshape(()) if reduction == "none" else out


def _along_classes(a, ndim):
    """A (C,) array shaped (1, C, 1, ...) against an input of ``ndim`` dimensions."""
    return a.reshape((1, -1) + (1,) * (ndim - 2))


# ----------------------------------------------------------------------------------------------
# negative log-likelihood and softmax cross-entropy


class NllLoss(Function):
    """Per position -scale * x[target] over axis 1 of x (N, C, ...): nll_loss's primitive. The
    target's class weight is in ``scale``, 0 where the target is ignored."""

    @staticmethod
    def forward(ctx, x, target, scale):
        target = np.expand_dims(target, 1)
        ctx.save_for_backward(target, scale)
        ctx.shape = x.shape
        picked = np.take_along_axis(x, target, 1)[:, 0]
        with np.errstate(invalid="ignore"):  # 0 * -inf where ignored: the 0 is kept
            return np.where(scale != 0, -scale * picked, 0).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        target, scale = ctx.saved
        dx = np.zeros(ctx.shape, g.dtype)
        np.put_along_axis(dx, target, np.expand_dims(-scale * g, 1), 1)
        return dx, None, None


def nll_loss(
    input: Tensor,
    target: Tensor | ArrayLike,
    weight: Tensor | ArrayLike | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class indices ``target`` (N, d1, ...) under log-probabilities
    ``input`` (N, C, d1, ...) or (C,), as ``torch.nn.functional.nll_loss``: each position's
    -weight[t] * input[t], 0 where t == ``ignore_index``; "mean" divides the sum by the weights
    of the targets not ignored. ``size_average``/``reduce`` are PyTorch's deprecated pair."""
    reduction = _reduction("nll_loss", size_average, reduce, reduction)
    input = _logits("nll_loss", input)
    if input.ndim == 1:
        return _unbatched(
            nll_loss, input, target, reduction, weight=weight, ignore_index=ignore_index
        )
    idx, keep = _class_targets("nll_loss", target, input.shape, ignore_index)
    w = _class_weight("nll_loss", weight, input.shape[1], input.dtype)
    scale = (keep if w is None else w[idx] * keep).astype(input.dtype)
    loss = NllLoss.apply(input, idx, scale)
    if reduction != "mean" or (w is None and keep.all()):
        return _reduce(loss, reduction)
    return _weighted_mean(loss, scale.sum())


class SoftmaxCrossEntropy(Function):
    """Per position -sum_k q_k log_softmax(x)_k over axis 1 of x (N, C, ...), forward and
    backward each one pass on fastconv's kernel (csrc/loss.cpp). q need not sum to 1 (weighted
    or ignored targets): the gradient is sum(q) softmax(x) - q."""

    @staticmethod
    def forward(ctx, x, q):
        x = np.ascontiguousarray(x)
        outer, c = x.shape[0], x.shape[1]
        inner = int(np.prod(x.shape[2:], dtype=np.int64))
        loss = np.empty((outer,) + x.shape[2:], x.dtype)
        lse = np.empty_like(loss)
        _core.softmax_cross_entropy_forward(x, q, outer, c, inner, loss, lse)
        ctx.save_for_backward(x, q, lse)
        ctx.inner = inner
        return loss

    @staticmethod
    def backward(ctx, g):
        x, q, lse = ctx.saved
        dx = np.empty_like(x)
        _core.softmax_cross_entropy_backward(
            x, q, x.shape[0], x.shape[1], ctx.inner, lse, np.ascontiguousarray(g, x.dtype), dx
        )
        return dx, None


def cross_entropy(
    input: Tensor,
    target: Tensor | ArrayLike,
    weight: Tensor | ArrayLike | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of logits ``input`` (N, C, d1, ...) or (C,), as
    ``torch.nn.functional.cross_entropy``: ``target`` holds class indices (N, d1, ...) or class
    probabilities (float, the input's shape). ``weight`` (C,) weighs each class, targets equal to
    ``ignore_index`` count for nothing, ``label_smoothing`` mixes the target with the uniform
    distribution; "mean" over class indices divides by the weights of the targets not ignored
    (PyTorch's rule, label smoothing included). Returns the loss (a 0-d Tensor unless "none")."""
    reduction = _reduction("cross_entropy", size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    input = _logits("cross_entropy", input)
    if input.ndim == 1:
        return _unbatched(
            cross_entropy,
            input,
            target,
            reduction,
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
        )
    shape, dtype, c = input.shape, input.dtype, input.shape[1]
    w = _class_weight("cross_entropy", weight, c, dtype)
    t = _array(target)
    if np.issubdtype(t.dtype, np.floating) and t.shape == shape:  # class probabilities
        if ignore_index >= 0:
            raise ValueError(
                f"cross_entropy: ignore_index ({ignore_index}) is not supported for "
                f"a class-probability target"
            )
        q = t.astype(dtype)
        if label_smoothing:
            q = q * (1 - label_smoothing) + label_smoothing / c
        if w is not None:
            q = q * _along_classes(w, len(shape))
        return _reduce(SoftmaxCrossEntropy.apply(input, np.ascontiguousarray(q)), reduction)
    idx, keep = _class_targets("cross_entropy", t, shape, ignore_index)
    q = (np.expand_dims(idx, 1) == _along_classes(np.arange(c), len(shape))).astype(dtype)
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / c
    plain = w is None and keep.all()
    if not plain:  # weigh each class, zero the ignored positions
        q = q * np.expand_dims(keep, 1)
        if w is not None:
            q = q * _along_classes(w, len(shape))
    loss = SoftmaxCrossEntropy.apply(input, np.ascontiguousarray(q))
    if reduction != "mean" or plain:
        return _reduce(loss, reduction)
    return _weighted_mean(loss, keep.sum() if w is None else (w[idx] * keep).sum())


# ----------------------------------------------------------------------------------------------
# binary cross-entropy and squared error


class LogSigmoid(Function):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), without overflow (PyTorch's formulas,
    forward and backward)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        z = np.exp(-np.abs(x))
        return g * np.where(x < 0, 1 - z / (1 + z), z / (1 + z))


class BinaryCrossEntropy(Function):
    """-(t log p + (1 - t) log(1 - p)) per element, each log clamped at -100 (PyTorch's); the
    gradient in p is (p - t) / max(p (1 - p), eps), eps PyTorch's float 1e-12, in t -logit(p)."""

    eps = float(np.float32(1e-12))

    @staticmethod
    def forward(ctx, p, t):
        with np.errstate(divide="ignore"):
            log_p, log_q = np.maximum(np.log(p), -100), np.maximum(np.log1p(-p), -100)
        ctx.save_for_backward(p, t)
        return (t - 1) * log_q - t * log_p

    @staticmethod
    def backward(ctx, g):
        p, t = ctx.saved
        dp = g * (p - t) / np.maximum((1 - p) * p, BinaryCrossEntropy.eps)
        if not ctx.needs_input_grad[1]:
            return dp, None
        with np.errstate(divide="ignore"):
            return dp, -np.log(p / (1 - p)) * g  # -logit(p), unclamped (PyTorch's)


def _binary_args(op, input, target, extra):
    """input as a float Tensor, target of its shape and dtype, and each named extra weight
    checked to broadcast to it."""
    input = _logits(op, input, min_ndim=0)
    t = target if isinstance(target, Tensor) else Tensor(np.asarray(target, input.dtype))
    if t.shape != input.shape:
        raise ValueError(
            f"{op}: target size {t.shape} must be the same as input size {input.shape}"
        )
    out = []
    for name, value in extra:
        if value is not None:
            value = _array(value).astype(input.dtype)
            try:
                fits = np.broadcast_shapes(value.shape, input.shape) == input.shape
            except ValueError:
                fits = False
            if not fits:
                raise ValueError(
                    f"{op}: {name} of shape {value.shape} does not broadcast to the "
                    f"input's shape {input.shape}"
                )
        out.append(value)
    return input, t, out


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor | ArrayLike,
    weight: Tensor | ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | ArrayLike | None = None,
) -> Tensor:
    """Binary cross-entropy of logits ``input`` against probabilities ``target`` (same shape),
    as ``torch.nn.functional.binary_cross_entropy_with_logits``, stable for any logit:
    (1 - t) x - (1 + (pos_weight - 1) t) log_sigmoid(x), times ``weight`` (both broadcast to the
    input; pos_weight weighs the positive term, per class along the last dimension)."""
    reduction = _reduction("binary_cross_entropy_with_logits", size_average, reduce, reduction)
    input, t, (w, pw) = _binary_args(
        "binary_cross_entropy_with_logits",
        input,
        target,
        (("weight", weight), ("pos_weight", pos_weight)),
    )
    log_sigmoid = LogSigmoid.apply(input)
    if pw is not None:
        log_sigmoid = log_sigmoid * ((pw - 1) * t + 1)
    loss = (1 - t) * input - log_sigmoid
    return _reduce(loss if w is None else loss * w, reduction)


def binary_cross_entropy(
    input: Tensor,
    target: Tensor | ArrayLike,
    weight: Tensor | ArrayLike | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy of probabilities ``input`` against ``target`` (same shape, both in
    [0, 1]), as ``torch.nn.functional.binary_cross_entropy``: -w (t log p + (1 - t) log(1 - p)),
    each log clamped at -100."""
    op = "binary_cross_entropy"
    reduction = _reduction(op, size_average, reduce, reduction)
    input, t, (w,) = _binary_args(op, input, target, (("weight", weight),))
    for name, a in (("input", input.data), ("target", t.data)):
        if a.size and not (a.min() >= 0 and a.max() <= 1):  # nan fails too
            raise ValueError(f"{op}: all elements of {name} should be between 0 and 1")
    loss = BinaryCrossEntropy.apply(input, t)
    return _reduce(loss if w is None else loss * w, reduction)


def mse_loss(
    input: Tensor,
    target: Tensor | ArrayLike,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | ArrayLike | None = None,
) -> Tensor:
    """Squared error (input - target)^2, as ``torch.nn.functional.mse_loss``: averaged, summed
    or per element; with ``weight`` (the input's shape) each term is weighted and "mean" divides
    by the sum of the weights."""
    reduction = _reduction("mse_loss", size_average, reduce, reduction)
    diff = input - target
    loss = diff * diff
    if weight is None:
        return _reduce(loss, reduction)
    w = _array(weight)
    if w.shape != tuple(np.shape(input)):
        raise ValueError(
            f"mse_loss: weight of shape {w.shape} must have the input's shape "
            f"{tuple(np.shape(input))}"
        )
    loss = loss * w.astype(loss.dtype)
    return loss.sum() / float(w.sum()) if reduction == "mean" else _reduce(loss, reduction)

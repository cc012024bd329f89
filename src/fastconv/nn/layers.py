"""Linear, dropout, flatten, identity and the loss modules (activations: activation.py)."""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import init
from ._losses import _reduction
from .module import Module, Parameter

__all__ = [
    "Linear",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "Identity",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCEWithLogitsLoss",
    "BCELoss",
    "MSELoss",
]


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features) as PyTorch's, on fastconv's
    GEMM."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype))
        if bias:
            self.bias = Parameter(np.empty(out_features, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: kaiming_uniform(a=sqrt(5)) weights, uniform(+-1/sqrt(fan_in)) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Dropout(Module):
    """Zero each element with probability p while training, scale the rest by 1/(1-p); the
    identity in eval mode. ``inplace`` is accepted (and shown) but computed out of place: the
    backward needs the input."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p, self.inplace = p, bool(inplace)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    """Zero whole channels of (N, C, H, W) with probability p while training, scale the rest by
    1/(1-p) (fastconv's generator, as Dropout); the identity in eval mode."""

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)


class Flatten(Module):
    """Merge dimensions start_dim..end_dim (by default all but the batch)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Returns its input; takes and ignores any arguments, as PyTorch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class _Loss(Module):
    """Base of the loss modules (PyTorch's ``_Loss``): holds ``reduction``, resolved from the
    deprecated ``size_average``/``reduce`` pair when either is given."""

    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = _reduction(type(self).__name__, size_average, reduce, reduction)


class _WeightedLoss(_Loss):
    """A loss with a per-class ``weight``, kept as a buffer (in the state_dict, as PyTorch's)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy of logits against class indices or probabilities, as
    ``torch.nn.CrossEntropyLoss``: see :func:`fastconv.nn.functional.cross_entropy`."""

    def __init__(
        self,
        weight=None,
        size_average=None,
        ignore_index=-100,
        reduce=None,
        reduction="mean",
        label_smoothing=0.0,
    ):
        super().__init__(weight, size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}"
            )
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self):
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class indices under log-probabilities, as
    ``torch.nn.NLLLoss``: see :func:`fastconv.nn.functional.nll_loss`."""

    def __init__(
        self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"
    ):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits, stable for any logit, as ``torch.nn.BCEWithLogitsLoss``:
    ``weight`` and ``pos_weight`` are buffers; see
    :func:`fastconv.nn.functional.binary_cross_entropy_with_logits`."""

    def __init__(
        self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None
    ):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities in [0, 1], as ``torch.nn.BCELoss``: see
    :func:`fastconv.nn.functional.binary_cross_entropy`."""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean (or summed, or per-element) squared error, as ``torch.nn.MSELoss``."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)

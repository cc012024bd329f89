"""Batch norm and local response norm, with PyTorch's parameter and buffer names."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..autograd import Tensor
from . import functional as F
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LocalResponseNorm"]


class _BatchNorm(Module):
    _ndims = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def forward(
        self, x: Tensor, residual: Tensor | None = None, activation: str | None = None
    ) -> Tensor:
        """``self(x)`` as PyTorch's. fastconv's extension: ``self(x, residual, "relu")`` is
        ``relu(self(x) + residual)`` in one pass (forward and backward), a ResNet block's tail."""
        if x.ndim not in self._ndims:
            raise ValueError(
                f"{type(self).__name__} expects a {' or '.join(map(str, self._ndims))}-d "
                f"input, got shape {x.shape}"
            )
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1  # in place: the state_dict array stays the same object
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        use_running = not self.training and self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=not use_running,
            momentum=momentum or 0.0,
            eps=self.eps,
            residual=residual,
            activation=activation,
        )

    def _forward_relu(self, x: Tensor) -> Tensor:
        """relu(self.forward(x)) as one node, one pass each way (Sequential runs a batch norm
        followed by a ReLU this way)."""
        return self.forward(x, activation="relu")

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Over (N, C) or (N, C, L)."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Over (N, C, H, W)."""

    _ndims = (4,)


class LocalResponseNorm(Module):
    """AlexNet's normalisation across neighbouring channels."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

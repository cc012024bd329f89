"""SyncBatchNorm: batch statistics over the global batch (every rank's images)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..autograd import Function, Tensor
from ..nn import functional as F
from ..nn.module import Module
from ..nn.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm
from . import _comm

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]


def _allreduce(comm, array):
    comm.Allreduce(_comm._mpi().IN_PLACE, array, op=_comm._mpi().SUM)
    return array


class _SyncBatchNormFn(Function):
    """Training-mode batch norm whose mean, variance and the backward's two sums are allreduced.
    Statistics in float64: the mean first, then the centred sum of squares (two allreduces, no
    cancellation)."""

    @staticmethod
    def forward(ctx, x, weight, bias, *, running_mean, running_var, momentum, eps, comm):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        count = np.array([x.size // x.shape[1]], np.float64)
        stats = np.concatenate([x.sum(axis=axes, dtype=np.float64), count])
        _allreduce(comm, stats)
        n = stats[-1]
        if n <= 1:
            raise ValueError(
                f"SyncBatchNorm: expected more than 1 value per channel over all "
                f"ranks when training, got input of shape {x.shape} on this rank"
            )
        mean = stats[:-1] / n
        centred = x - mean.reshape(shape).astype(x.dtype)
        c64 = centred.astype(np.float64, copy=False)
        sq = (c64 * c64).sum(axis=axes)
        var = _allreduce(comm, sq) / n
        invstd = 1.0 / np.sqrt(var + eps)
        xhat = centred * invstd.reshape(shape).astype(x.dtype)
        y = xhat if weight is None else xhat * weight.reshape(shape)
        if bias is not None:
            y = y + bias.reshape(shape)
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * var * (n / (n - 1))
        ctx.save_for_backward(xhat, invstd.astype(x.dtype), weight)
        ctx.n, ctx.comm, ctx.axes, ctx.shape = n, comm, axes, shape
        return y.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, weight = ctx.saved
        axes, shape = ctx.axes, ctx.shape
        sums = np.concatenate(
            [g.sum(axis=axes, dtype=np.float64), (g * xhat).sum(axis=axes, dtype=np.float64)]
        )
        local_dbias, local_dweight = sums[: len(sums) // 2].copy(), sums[len(sums) // 2 :].copy()
        _allreduce(ctx.comm, sums)
        c = len(sums) // 2
        mean_dy = (sums[:c] / ctx.n).astype(g.dtype).reshape(shape)
        mean_dyx = (sums[c:] / ctx.n).astype(g.dtype).reshape(shape)
        scale = invstd.reshape(shape) if weight is None else (weight * invstd).reshape(shape)
        dx = scale * (g - mean_dy - xhat * mean_dyx)
        dw = None if weight is None else local_dweight.astype(g.dtype)
        db = None if weight is None else local_dbias.astype(g.dtype)
        return dx, dw, db


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C, ...) whose training statistics cover the batch of every rank, so a
    global batch split over ranks normalises as the whole batch would in one process (running
    statistics too). In eval mode, or with one rank, it is a plain batch norm. Accepts the fused
    forms of fastconv's BatchNorm: ``bn(x, residual, "relu")``."""

    _ndims = (2, 3, 4, 5)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: npt.DTypeLike = np.float32,
        comm: MPI.Comm | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        object.__setattr__(self, "comm", comm)

    def forward(
        self, x: Tensor, residual: Tensor | None = None, activation: str | None = None
    ) -> Tensor:
        comm = (
            self.comm
            if self.comm is not None
            else (_comm.get_comm() if _comm.is_initialized() else None)
        )
        use_batch = self.training or not self.track_running_stats
        if comm is None or comm.Get_size() == 1 or not use_batch:
            return super().forward(x, residual, activation)
        if x.ndim not in self._ndims:
            raise ValueError(f"SyncBatchNorm expects a 2-d to 5-d input, got shape {x.shape}")
        if activation not in (None, "relu"):
            raise ValueError(f"activation must be None or 'relu', got {activation!r}")
        momentum = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked += 1
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        xt = x if isinstance(x, Tensor) else Tensor(x)
        y = _SyncBatchNormFn.apply(
            xt,
            self.weight,
            self.bias,
            running_mean=self.running_mean,
            running_var=self.running_var,
            momentum=momentum or 0.0,
            eps=self.eps,
            comm=comm,
        )
        if residual is not None:
            y = y + residual
        return F.relu(y) if activation == "relu" else y


def convert_sync_batchnorm(module: Module, comm: MPI.Comm | None = None) -> Module:
    """``module`` with every BatchNorm1d/2d replaced by a :class:`SyncBatchNorm` sharing its
    parameters and buffers (PyTorch's ``SyncBatchNorm.convert_sync_batchnorm``); a BatchNorm
    passed in itself is returned converted. Call it before wrapping in DistributedDataParallel."""
    if isinstance(module, (BatchNorm1d, BatchNorm2d)):
        out = SyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            comm=comm,
        )
        for name in ("weight", "bias"):
            out._parameters[name] = module._parameters[name]
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            out._buffers[name] = module._buffers[name]
        out.training = module.training
        return out
    if not isinstance(module, Module):
        raise TypeError(f"module must be a fastconv.nn.Module, got {type(module).__name__}")
    for name, child in list(module._modules.items()):
        if child is not None:
            module._modules[name] = convert_sync_batchnorm(child, comm)
    return module

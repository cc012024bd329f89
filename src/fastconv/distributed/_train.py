"""What :func:`fastconv.train.fit` needs to run data-parallel (``fit(..., data_parallel=ddp)``):
this rank's share of each global minibatch, losses summed over the ranks, and files written by
rank 0 alone."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..nn import functional as F
from . import _comm

__all__ = ["Shard"]


class Shard:
    """Every rank draws the same shuffled order (the same seed) and takes rows
    ``[r*m//P, (r+1)*m//P)`` of each global minibatch of m images. Its loss is the sum of its
    rows' cross-entropies times P/m, so the gradient DDP averages over the P ranks is the one of
    the mean over the whole minibatch: a run on P ranks follows the run on one process up to
    rounding (BatchNorm layers see per-rank batches unless converted to SyncBatchNorm)."""

    def __init__(self, ddp):
        self.ddp, self.comm = ddp, ddp.comm
        self.rank, self.world = self.comm.Get_rank(), self.comm.Get_size()

    def loss(self, xb, yb):
        """(loss to run backward on, this rank's sum of cross-entropies, its image count)."""
        m = len(xb)
        lo, hi = self.rank * m // self.world, (self.rank + 1) * m // self.world
        if hi == lo:  # a last minibatch smaller than the ranks: join the allreduce with zeros
            out = self.ddp(Tensor(xb[:1]))
            return F.cross_entropy(out, yb[:1], reduction="sum") * 0.0, 0.0, 0
        ce = F.cross_entropy(self.ddp(Tensor(xb[lo:hi])), yb[lo:hi], reduction="sum")
        return ce * (self.world / m), ce.item(), hi - lo

    def global_sums(self, total, count):
        """(loss sum, count) over every rank."""
        both = np.array([total, count], np.float64)
        self.comm.Allreduce(_comm._mpi().IN_PLACE, both, op=_comm._mpi().SUM)
        return float(both[0]), int(both[1])

    def resumed_running(self, running):
        """A checkpoint's running (loss sum, count) is global: rank 0 carries it on, the others
        start from zero, so the next global_sums counts it once."""
        return running if self.rank == 0 else (0.0, 0)

    def on_rank0(self, fn):
        """``fn()`` on rank 0 only, its error raised on every rank (``_comm.on_rank0``)."""
        _comm.on_rank0(fn, comm=self.comm)

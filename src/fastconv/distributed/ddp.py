"""DistributedDataParallel: gradients averaged over the ranks in buckets, each bucket's
allreduce started (non-blocking) as soon as its last gradient is final during backward."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import autograd
from ..nn.module import Module
from . import _comm

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters of one dtype whose gradients travel in one flat buffer."""

    def __init__(self, index, params):
        self.index, self.params = index, params
        self.offsets, total = [], 0
        for p in params:
            self.offsets.append(total)
            total += p.data.size
        self.flat = np.zeros(total, params[0].dtype)
        self.pending, self.request = len(params), None
        self.slot = {id(p): i for i, p in enumerate(params)}
        self.ready = [False] * len(params)

    def reset(self):
        self.pending, self.request = len(self.params), None
        self.ready = [False] * len(self.params)

    def view(self, i):
        p = self.params[i]
        return self.flat[self.offsets[i] : self.offsets[i] + p.data.size].reshape(p.shape)


class DistributedDataParallel(Module):
    """PyTorch's DDP on MPI: wrap the model once on every rank, after :func:`init`.

    On construction rank 0's parameters and buffers are broadcast, so every rank starts equal.
    During ``loss.backward()`` each parameter's gradient is copied into its bucket as soon as it is
    final; a full bucket starts a non-blocking ``Iallreduce`` (communication overlaps the rest of
    backward), and when backward ends every bucket is waited for and divided by the world size,
    leaving ``.grad`` the average over ranks (PyTorch's semantics: each rank's loss is a mean over
    its own batch). Buckets hold parameters in reverse registration order, the order backward
    reaches them, ``bucket_cap_mb`` each (25 MB, PyTorch's default). A parameter that got no
    gradient on this rank counts as zeros. ``broadcast_buffers`` sends rank 0's buffers (BatchNorm
    running statistics) before every training forward, as PyTorch does.

    ``events`` (when ``record_events=True``) lists ("bucket_started", i, t) and
    ("bucket_done", i, t) tuples of one backward, for checking the overlap.
    """

    def __init__(
        self,
        module: Module,
        bucket_cap_mb: float = 25.0,
        broadcast_buffers: bool = True,
        comm: MPI.Comm | None = None,
        record_events: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"module must be a fastconv.nn.Module, got {type(module).__name__}")
        if not (isinstance(bucket_cap_mb, (int, float)) and bucket_cap_mb > 0):
            raise ValueError(f"bucket_cap_mb must be a positive number, got {bucket_cap_mb!r}")
        self.module = module
        object.__setattr__(self, "comm", comm if comm is not None else _comm.get_comm())
        object.__setattr__(self, "_MPI", _comm._mpi())
        self.broadcast_buffers, self.bucket_cap_mb = broadcast_buffers, float(bucket_cap_mb)
        self.world = self.comm.Get_size()
        self._sync, self._in_backward = True, False
        self.record_events, self.events = record_events, []
        for p in module.parameters():
            self._bcast(p.data, "parameter")
        self._sync_buffers()
        params = [p for p in module.parameters() if p.requires_grad]
        self.buckets = self._make_buckets(list(reversed(params)), int(self.bucket_cap_mb * 2**20))
        self._where = {}
        for b in self.buckets:
            for p in b.params:
                self._where[id(p)] = b
        self._handles = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]

    # --- set-up ---------------------------------------------------------------------------------
    def _bcast(self, array, what):
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(
                f"DistributedDataParallel: a {what} array is not C-contiguous and "
                f"writeable, so it cannot be broadcast in place"
            )
        if array.ndim == 0:  # (a 0-d array is not a buffer mpi4py takes)
            array[...] = self.comm.bcast(array.item(), root=0)
        else:
            self.comm.Bcast(array, root=0)

    def _sync_buffers(self):
        if self.world > 1:
            for b in self.module.buffers():
                self._bcast(b, "buffer")

    @staticmethod
    def _make_buckets(params, cap_bytes):
        buckets, current, size = [], [], 0
        for p in params:
            if current and (p.dtype != current[0].dtype or size + p.data.nbytes > cap_bytes):
                buckets.append(_Bucket(len(buckets), current))
                current, size = [], 0
            current.append(p)
            size += p.data.nbytes
        if current:
            buckets.append(_Bucket(len(buckets), current))
        return buckets

    # --- forward --------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and self.broadcast_buffers:
            self._sync_buffers()
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside ``with model.no_sync():`` only accumulate ``.grad`` locally;
        the first backward after it averages the accumulated gradients (gradient accumulation)."""
        old, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = old

    # --- backward -------------------------------------------------------------------------------
    def _event(self, kind, index):
        if self.record_events:
            self.events.append((kind, index, time.perf_counter()))

    def _grad_ready(self, param):
        if not self._sync or self.world == 1:
            return
        if not self._in_backward:
            self._in_backward = True
            self._next = 0  # buckets start in index order on every rank (MPI matches
            self.events = []  # collectives by their order on the communicator)
            autograd.queue_callback(self._finish)
        bucket = self._where[id(param)]
        i = bucket.slot[id(param)]
        if bucket.ready[i]:
            raise RuntimeError(
                "DistributedDataParallel: a parameter's gradient became ready twice "
                "in one backward (the model was called twice before backward?)"
            )
        np.copyto(bucket.view(i), param.grad, casting="same_kind")
        bucket.ready[i] = True
        bucket.pending -= 1
        while self._next < len(self.buckets) and self.buckets[self._next].pending == 0:
            self._start(self.buckets[self._next])  # this one and any ready ones after it
            self._next += 1
        self._progress()

    def _start(self, bucket):
        bucket.request = self.comm.Iallreduce(self._MPI.IN_PLACE, bucket.flat, op=self._MPI.SUM)
        self._event("bucket_started", bucket.index)

    def _progress(self):
        # MPI moves a non-blocking collective on while some MPI call runs: poke it between layers
        active = [b.request for b in self.buckets if b.request is not None]
        if active:
            self._MPI.Request.Testall(active)

    def _finish(self):
        self._in_backward = False
        for bucket in self.buckets:  # parameters that got no gradient here: zeros (all ranks
            if bucket.request is None:  # must join every bucket's allreduce, in index order)
                for i, done in enumerate(bucket.ready):
                    if not done:
                        bucket.view(i)[...] = 0
                self._start(bucket)
        for bucket in self.buckets:
            bucket.request.Wait()
            self._event("bucket_done", bucket.index)
            bucket.flat /= self.world
            for i, p in enumerate(bucket.params):
                avg = bucket.view(i)
                g = p.grad
                if (
                    isinstance(g, np.ndarray)
                    and g.shape == p.shape
                    and g.dtype == p.dtype
                    and g.flags.writeable
                    and g.flags.c_contiguous
                ):
                    np.copyto(g, avg)
                else:
                    p.grad = avg.copy()
            bucket.reset()

    def extra_repr(self) -> str:
        return (
            f"world_size={self.world}, buckets={len(self.buckets)}, "
            f"bucket_cap_mb={self.bucket_cap_mb}"
        )

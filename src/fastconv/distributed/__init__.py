"""Data-parallel training over MPI (mpi4py), in the shape of PyTorch's DDP.

::

    import fastconv.distributed as dist
    dist.init()                                      # MPI.COMM_WORLD, or dist.init(comm)
    model = dist.convert_sync_batchnorm(model)       # optional: global-batch BatchNorm
    model = dist.DistributedDataParallel(model)      # rank 0's weights on every rank
    sampler = dist.DistributedSampler(len(x), shuffle=True, seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        ...                                          # loss.backward() averages the gradients

Run it with ``mpiexec -n 4 python train.py`` (or ``mpiexec -n 4 fastconv train --distributed``).
mpi4py is imported by :func:`init`, never by ``import fastconv``.
"""

from ._comm import (
    abort,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object,
    get_comm,
    init,
    is_initialized,
    is_main_process,
    print0,
    rank,
    world_size,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .ddp import DistributedDataParallel
from .sampler import DistributedSampler
from .sync_bn import SyncBatchNorm, convert_sync_batchnorm

__all__ = [
    "init",
    "is_initialized",
    "get_comm",
    "rank",
    "world_size",
    "barrier",
    "broadcast",
    "broadcast_object",
    "all_reduce",
    "is_main_process",
    "print0",
    "abort",
    "DistributedDataParallel",
    "DistributedSampler",
    "SyncBatchNorm",
    "convert_sync_batchnorm",
    "save_checkpoint",
    "load_checkpoint",
]

"""Checkpoints of a data-parallel run: written once, by rank 0, atomically; read by any number
of ranks (the file holds the plain model's state, without DDP's "module." prefix)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import train
from . import _comm
from .ddp import DistributedDataParallel

if TYPE_CHECKING:
    import numpy as np

    from .._typing import PathLike
    from ..nn.module import Module
    from ..optim import LRScheduler, Optimizer

__all__ = ["save_checkpoint", "load_checkpoint"]


def _inner(model):
    return model.module if isinstance(model, DistributedDataParallel) else model


def save_checkpoint(
    path: PathLike,
    model: Module,
    optimizer: Optimizer,
    scheduler: LRScheduler | None,
    epoch: int,
    step: int,
    rng: np.random.Generator,
) -> None:
    """:func:`fastconv.train.save_checkpoint` on rank 0 only (every rank holds the same state),
    then a barrier, so no rank reads the file before it is complete. ``model`` may be the
    DistributedDataParallel wrapper. Errors on rank 0 reach every rank (as a RuntimeError)."""
    _comm.on_rank0(
        lambda: train.save_checkpoint(path, _inner(model), optimizer, scheduler, epoch, step, rng),
        f"rank 0 could not write the checkpoint {path}",
    )


def load_checkpoint(
    path: PathLike, model: Module, optimizer: Optimizer, scheduler: LRScheduler | None
) -> tuple[int, int, np.random.Generator]:
    """:func:`fastconv.train.load_checkpoint` on every rank (any number of ranks may read a
    checkpoint, whatever number wrote it). Returns ``(epoch, step, rng)``."""
    return train.load_checkpoint(path, _inner(model), optimizer, scheduler)

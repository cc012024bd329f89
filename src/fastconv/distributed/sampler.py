"""DistributedSampler: each rank's share of a dataset's indices, reshuffled every epoch."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sized

import numpy as np
import numpy.typing as npt

from . import _comm

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """PyTorch's DistributedSampler over ``range(len(dataset))``.

    ``dataset`` is a length or anything with ``len()``. Every epoch the indices are permuted with
    a generator seeded by ``seed + epoch`` (the same on every rank; call :meth:`set_epoch` at the
    start of each epoch), padded by repeating the first ones until the count divides by the
    number of ranks (or cut to a multiple with ``drop_last``), and rank ``r`` takes positions
    ``r, r + world, r + 2 world, ...``: the ranks together cover every index once per epoch (plus
    the padding). ``num_replicas`` and ``rank`` default to the communicator's.
    """

    def __init__(
        self,
        dataset: int | Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        n = dataset if isinstance(dataset, numbers.Integral) else len(dataset)
        if n < 0:
            raise ValueError(f"dataset length must be >= 0, got {n}")
        num_replicas = _comm.world_size() if num_replicas is None else num_replicas
        rank = _comm.rank() if rank is None else rank
        if not isinstance(num_replicas, numbers.Integral) or num_replicas < 1:
            raise ValueError(f"num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, numbers.Integral) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank!r}")
        if not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.n, self.num_replicas, self.rank = int(n), int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last, self.epoch = bool(shuffle), int(seed), drop_last, 0
        if drop_last and self.n % self.num_replicas:
            self.num_samples = self.n // self.num_replicas
        else:
            self.num_samples = math.ceil(self.n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` (every rank must pass the same number)."""
        if not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def indices(self) -> npt.NDArray[np.int64]:
        """This rank's indices for the current epoch, as an int64 array."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.total_size > self.n:  # pad by repeating from the start (PyTorch's choice)
            reps = math.ceil((self.total_size - self.n) / max(self.n, 1))
            order = np.concatenate([order] + [order] * reps)[: self.total_size]
        else:
            order = order[: self.total_size]
        return order[self.rank : self.total_size : self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

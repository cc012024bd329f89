"""OverFeat "fast" (Sermanet et al., 2013) as convnet-benchmarks times it (231x231 input)."""

from __future__ import annotations

import numpy as np

from .. import nn

__all__ = ["overfeat_fast"]


def overfeat_fast(num_classes=1000, dtype=np.float32):
    """OverFeat "fast" as a Sequential: five convs (11x11/4, 5x5, three 3x3), three 2x2 max-pools,
    three FC layers (3072, 4096, num_classes), for 231x231 input."""
    conv = lambda *a, **k: nn.Conv2d(*a, dtype=dtype, **k)  # noqa: E731
    return nn.Sequential(
        conv(3, 96, 11, stride=4),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        conv(96, 256, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        conv(256, 512, 3, padding=1),
        nn.ReLU(),
        conv(512, 1024, 3, padding=1),
        nn.ReLU(),
        conv(1024, 1024, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(1024 * 6 * 6, 3072, dtype=dtype),
        nn.ReLU(),
        nn.Linear(3072, 4096, dtype=dtype),
        nn.ReLU(),
        nn.Linear(4096, num_classes, dtype=dtype),
    )

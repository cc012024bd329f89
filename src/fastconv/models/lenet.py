"""LeNet-5 (LeCun et al., 1998) on 32x32 grey images, as the seed's layer table gives it."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F

__all__ = ["LeNet5", "lenet5", "C3_TABLE"]

# C3's partial connection table: output map -> the S2 maps it reads (1,516 parameters).
C3_TABLE = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (4, 5, 0),
    (5, 0, 1),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (3, 4, 5, 0),
    (4, 5, 0, 1),
    (5, 0, 1, 2),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


class MaskedConv2d(nn.Conv2d):
    """A Conv2d whose weight is multiplied by a fixed 0/1 mask (K, C, 1, 1): the faithful form of a
    partial connection table. Masked weights are zero and receive zero gradient."""

    def __init__(self, in_channels, out_channels, kernel_size, table, dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, dtype=dtype)
        mask = np.zeros((out_channels, in_channels, 1, 1), dtype)
        for k, inputs in enumerate(table):
            mask[k, list(inputs)] = 1
        self.register_buffer("mask", mask, persistent=False)
        self.weight.data *= mask

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return super().extra_repr() + ", partial connections"


class LeNet5(nn.Module):
    """C1 conv 6@5x5, tanh; S2 avg-pool 2/2, tanh; C3 conv 16@5x5, tanh; S4 avg-pool 2/2, tanh;
    C5 conv 120@5x5, tanh; F6 linear 84, tanh; output linear ``num_classes`` (logits: the softmax
    is in the loss). ``c3_table=True`` connects C3 by LeCun's table (a masked weight)."""

    def __init__(self, num_classes=10, in_channels=1, c3_table=False, dtype=np.float32):
        super().__init__()
        c3 = (
            MaskedConv2d(6, 16, 5, C3_TABLE, dtype=dtype)
            if c3_table
            else nn.Conv2d(6, 16, 5, dtype=dtype)
        )
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, dtype=dtype),
            nn.Tanh(),  # C1 -> 28x28
            nn.AvgPool2d(2, 2),
            nn.Tanh(),  # S2 -> 14x14
            c3,
            nn.Tanh(),  # C3 -> 10x10
            nn.AvgPool2d(2, 2),
            nn.Tanh(),  # S4 -> 5x5
            nn.Conv2d(16, 120, 5, dtype=dtype),
            nn.Tanh(),  # C5 -> 1x1
        )
        self.classifier = nn.Sequential(
            nn.Linear(120, 84, dtype=dtype),
            nn.Tanh(),  # F6
            nn.Linear(84, num_classes, dtype=dtype),  # output
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def lenet5(num_classes=10, **kwargs):
    """LeNet-5 (see :class:`LeNet5` for the keyword arguments)."""
    return LeNet5(num_classes=num_classes, **kwargs)

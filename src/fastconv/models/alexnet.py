"""AlexNet: torchvision's single-tower layout (state_dict keys equal torchvision's), the 2012
paper's two-tower form (LRN, grouped convs) and convnet-benchmarks' "one weird trick" variant."""

from __future__ import annotations

import numpy as np

from .. import nn

__all__ = ["AlexNet", "alexnet", "alexnet_owt"]


class AlexNet(nn.Module):
    """``original=False``: torchvision's 64-192-384-256-256 layout, no LRN (ported weights fit).
    ``original=True``: the paper's 96-256-384-384-256 with LRN after conv1/conv2 and conv2/4/5 in
    two groups (the two-GPU split), for 227x227 input."""

    def __init__(self, num_classes=1000, dropout=0.5, original=False, dtype=np.float32):
        super().__init__()
        conv = lambda *a, **k: nn.Conv2d(*a, dtype=dtype, **k)  # noqa: E731
        if original:
            lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)  # noqa: E731
            self.features = nn.Sequential(
                conv(3, 96, 11, stride=4),
                nn.ReLU(),
                lrn(),
                nn.MaxPool2d(3, 2),
                conv(96, 256, 5, padding=2, groups=2),
                nn.ReLU(),
                lrn(),
                nn.MaxPool2d(3, 2),
                conv(256, 384, 3, padding=1),
                nn.ReLU(),
                conv(384, 384, 3, padding=1, groups=2),
                nn.ReLU(),
                conv(384, 256, 3, padding=1, groups=2),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
            )
        else:
            self.features = nn.Sequential(
                conv(3, 64, 11, stride=4, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
                conv(64, 192, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
                conv(192, 384, 3, padding=1),
                nn.ReLU(),
                conv(384, 256, 3, padding=1),
                nn.ReLU(),
                conv(256, 256, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(3, 2),
            )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096, dtype=dtype),
            nn.ReLU(),
            nn.Linear(4096, num_classes, dtype=dtype),
        )

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def alexnet(num_classes=1000, **kwargs):
    """AlexNet, torchvision's layout by default (see :class:`AlexNet` for the keyword arguments)."""
    return AlexNet(num_classes=num_classes, **kwargs)


def alexnet_owt(num_classes=1000, dtype=np.float32):
    """convnet-benchmarks' AlexNet ("one weird trick"): 224x224 input, no dropout, no
    pool-to-6x6."""
    conv = lambda *a, **k: nn.Conv2d(*a, dtype=dtype, **k)  # noqa: E731
    return nn.Sequential(
        conv(3, 64, 11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        conv(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        conv(192, 384, 3, padding=1),
        nn.ReLU(),
        conv(384, 256, 3, padding=1),
        nn.ReLU(),
        conv(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(9216, 4096, dtype=dtype),
        nn.ReLU(),
        nn.Linear(4096, 4096, dtype=dtype),
        nn.ReLU(),
        nn.Linear(4096, num_classes, dtype=dtype),
    )

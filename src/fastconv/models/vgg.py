"""VGG (Simonyan & Zisserman, 2014) in torchvision's layout, and convnet-benchmarks' VGG-A."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import init

__all__ = [
    "VGG",
    "CFGS",
    "make_layers",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vgg_a",
]

# channels of the 3x3 convs, "M" a 2x2/2 max-pool (torchvision's configurations A, B, D, E)
CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


def make_layers(cfg, batch_norm=False, dtype=np.float32):
    """VGG's feature extractor from a configuration list (channels of 3x3 convs, "M" a 2x2/2
    max-pool), with batch norm after each conv if asked (torchvision's indices)."""
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(c, v, 3, padding=1, dtype=dtype))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v, dtype=dtype))
        layers.append(nn.ReLU())
        c = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's VGG: ``features``, a 7x7 adaptive average pool, and a classifier of three FC
    layers with ReLU and dropout; torchvision's initialisation when ``init_weights``."""

    def __init__(
        self, features, num_classes=1000, dropout=0.5, init_weights=True, dtype=np.float32
    ):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes, dtype=dtype),
        )
        if init_weights:  # torchvision's
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    init.ones_(m.weight)
                    init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    init.normal_(m.weight, 0, 0.01)
                    init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _vgg(cfg, batch_norm, num_classes, dtype=np.float32, **kwargs):
    return VGG(make_layers(CFGS[cfg], batch_norm, dtype), num_classes, dtype=dtype, **kwargs)


def vgg11(num_classes=1000, **kw):
    """VGG-11 (configuration A)."""
    return _vgg("A", False, num_classes, **kw)


def vgg11_bn(num_classes=1000, **kw):
    """VGG-11 with batch norm."""
    return _vgg("A", True, num_classes, **kw)


def vgg13(num_classes=1000, **kw):
    """VGG-13 (configuration B)."""
    return _vgg("B", False, num_classes, **kw)


def vgg13_bn(num_classes=1000, **kw):
    """VGG-13 with batch norm."""
    return _vgg("B", True, num_classes, **kw)


def vgg16(num_classes=1000, **kw):
    """VGG-16 (configuration D)."""
    return _vgg("D", False, num_classes, **kw)


def vgg16_bn(num_classes=1000, **kw):
    """VGG-16 with batch norm."""
    return _vgg("D", True, num_classes, **kw)


def vgg19(num_classes=1000, **kw):
    """VGG-19 (configuration E)."""
    return _vgg("E", False, num_classes, **kw)


def vgg19_bn(num_classes=1000, **kw):
    """VGG-19 with batch norm."""
    return _vgg("E", True, num_classes, **kw)


def vgg_a(num_classes=1000, dtype=np.float32):
    """convnet-benchmarks' VGG model A: configuration A, 224x224 input, no dropout or 7x7 pool."""
    return nn.Sequential(
        *make_layers(CFGS["A"], dtype=dtype),
        nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096, dtype=dtype),
        nn.ReLU(),
        nn.Linear(4096, 4096, dtype=dtype),
        nn.ReLU(),
        nn.Linear(4096, num_classes, dtype=dtype),
    )

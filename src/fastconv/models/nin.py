"""Network in Network (Lin, Chen & Yan, 2013): "mlpconv" blocks (a convolution and two 1x1
convolutions, each with ReLU: a small MLP slid over the image), and global average pooling of
the last block's maps, one per class, in place of fully-connected layers."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import init

__all__ = ["NiN", "mlpconv", "nin_cifar", "nin_imagenet"]


def mlpconv(cin, c1, c2, c3, kernel_size, stride=1, padding=0, dtype=np.float32):
    """conv ``kernel_size`` -> ReLU -> 1x1 -> ReLU -> 1x1 -> ReLU (children 0, 2, 4 hold the
    weights; Caffe's convN, cccp, cccp)."""
    return nn.Sequential(
        nn.Conv2d(cin, c1, kernel_size, stride=stride, padding=padding, dtype=dtype),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 1, dtype=dtype),
        nn.ReLU(),
        nn.Conv2d(c2, c3, 1, dtype=dtype),
        nn.ReLU(),
    )


class NiN(nn.Module):
    """``features`` (mlpconv blocks with max-pools and dropout between them), then the global
    average of each of the last block's maps: the class scores. He initialisation (normal, fan
    in) and zero biases: nine or twelve ReLU layers without batch norm train from it, not from
    PyTorch's default."""

    def __init__(self, features):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                init.zeros_(m.bias)

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


def _pool():
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)  # Caffe rounds up: 32 -> 16 -> 8


def nin_cifar(num_classes=10, dropout=0.5, dtype=np.float32):
    """The paper's CIFAR-10 network, 32x32 input, the layer sizes of the authors' released model
    (Caffe model zoo, gist mavenlin/e56253735ef32c3c296d): mlpconv 192-160-96 5x5 (pad 2),
    mlpconv 192-192-192 5x5 (pad 2), mlpconv 192-192-``num_classes`` 3x3 (pad 1). A 3x3/2
    max-pool and dropout 0.5 after each of the first two blocks, as the paper describes (the
    Caffe model averages in the second pool). 966,986 parameters for 10 classes."""
    m = lambda *a, **k: mlpconv(*a, dtype=dtype, **k)  # noqa: E731
    return NiN(
        nn.Sequential(
            m(3, 192, 160, 96, 5, padding=2),
            _pool(),
            nn.Dropout(dropout),
            m(96, 192, 192, 192, 5, padding=2),
            _pool(),
            nn.Dropout(dropout),
            m(192, 192, 192, num_classes, 3, padding=1),
        )
    )


def nin_imagenet(num_classes=1000, dropout=0.5, dtype=np.float32):
    """The authors' ImageNet NiN as released in the Caffe model zoo ("NIN-Imagenet", layers
    conv1, cccp1-2, ..., conv4-1024, cccp7-1024, cccp8-1024), 224x224 input: mlpconv 96-96-96
    11x11/4, 3x3/2 max-pool, mlpconv 256-256-256 5x5 (pad 2), max-pool, mlpconv 384-384-384
    3x3 (pad 1), max-pool, dropout 0.5, mlpconv 1024-1024-``num_classes`` 3x3 (pad 1), global
    average pool (6x6 at 224). 7,595,176 parameters for 1000 classes."""
    m = lambda *a, **k: mlpconv(*a, dtype=dtype, **k)  # noqa: E731
    return NiN(
        nn.Sequential(
            m(3, 96, 96, 96, 11, stride=4),
            _pool(),
            m(96, 256, 256, 256, 5, padding=2),
            _pool(),
            m(256, 384, 384, 384, 3, padding=1),
            _pool(),
            nn.Dropout(dropout),
            m(384, 1024, 1024, num_classes, 3, padding=1),
        )
    )

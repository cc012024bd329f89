"""ZFNet (Zeiler & Fergus, 2013, "Visualizing and Understanding Convolutional Networks"):
AlexNet re-tuned after looking at it through a deconvnet. 224x224 input."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import init

__all__ = ["ZFNet", "zfnet"]


class ZFNet(nn.Module):
    """The paper's figure 3: 96 filters 7x7/2 (pad 1: 224 -> 110), 3x3/2 max-pool (-> 55),
    normalisation; 256 filters 5x5/2 (-> 26), 3x3/2 max-pool (-> 13), normalisation; 384, 384,
    256 filters 3x3 (pad 1); 3x3/2 max-pool (-> 6x6x256); FC 4096, 4096, ``num_classes`` with
    dropout 0.5 before the first two; ReLU after every conv and hidden FC. Max-pools round up
    (Caffe's, which gives the paper's 55 and 13).

    "Local contrast normalisation" after layers 1 and 2: ARCHITECTURES.md places it there but
    gives no parameters, and the paper says only that responses are normalised across feature
    maps. It is ``nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)``, AlexNet's (the network
    ZFNet re-tunes; fastconv's ``alexnet(original=True)``), after each of the two max-pools, in
    the figure's order (conv, ReLU, pool, normalise). ``features``/``avgpool``/``classifier``
    are named as torchvision's AlexNet; the 6x6 adaptive pool does nothing at 224x224 and lets
    other sizes (47x47 the smallest) reach the classifier.

    Initialisation: He (normal, fan in) for the convolutions, N(0, 0.01) for the FC layers (the
    paper's for every layer), zero biases; the paper's N(0, 0.01) everywhere, or PyTorch's
    default, leave the signal vanishing through eight layers without batch norm."""

    def __init__(self, num_classes=1000, dropout=0.5, dtype=np.float32):
        super().__init__()
        conv = lambda *a, **k: nn.Conv2d(*a, dtype=dtype, **k)  # noqa: E731
        pool = lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True)  # noqa: E731
        lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)  # noqa: E731
        self.features = nn.Sequential(
            conv(3, 96, 7, stride=2, padding=1),
            nn.ReLU(),
            pool(),
            lrn(),
            conv(96, 256, 5, stride=2),
            nn.ReLU(),
            pool(),
            lrn(),
            conv(256, 384, 3, padding=1),
            nn.ReLU(),
            conv(384, 384, 3, padding=1),
            nn.ReLU(),
            conv(384, 256, 3, padding=1),
            nn.ReLU(),
            pool(),
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

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init.normal_(m.weight, 0.0, 0.01)
                init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def zfnet(num_classes=1000, dropout=0.5, dtype=np.float32):
    """ZFNet (see :class:`ZFNet`): 62,357,608 parameters for 1000 classes."""
    return ZFNet(num_classes, dropout, dtype)

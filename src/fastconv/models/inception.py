"""Inception v3 (Szegedy et al., 2015, "Rethinking the Inception Architecture") in torchvision's
layout: module names and state_dict keys equal torchvision's ``inception_v3``, so its weights
load as they are. 299x299 input (75x75 the smallest; the auxiliary head needs 299x299)."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from .. import nn
from ..autograd import concat
from ..nn import functional as F
from ..nn import init
from .googlenet import BasicConv2d, transform_input

__all__ = ["Inception3", "InceptionOutputs", "inception_v3"]

# what the forward returns in training mode with the auxiliary head (torchvision's namedtuple)
InceptionOutputs = namedtuple("InceptionOutputs", ["logits", "aux_logits"])


def _pool_branch(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1)  # counts the padding, as torchvision


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b-d): 1x1; 1x1 -> 5x5; 1x1 -> 3x3 -> 3x3; 3x3 average pool -> 1x1."""

    def __init__(self, cin, pool_features, dtype=np.float32):
        super().__init__()
        conv = lambda *a, **k: BasicConv2d(*a, dtype=dtype, **k)  # noqa: E731
        self.branch1x1 = conv(cin, 64, kernel_size=1)
        self.branch5x5_1 = conv(cin, 48, kernel_size=1)
        self.branch5x5_2 = conv(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = conv(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv(96, 96, kernel_size=3, padding=1)
        self.branch_pool = conv(cin, pool_features, kernel_size=1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return concat([self.branch1x1(x), b5, b3, self.branch_pool(_pool_branch(x))], axis=1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 3x3/2; 1x1 -> 3x3 -> 3x3/2; 3x3/2 max-pool."""

    def __init__(self, cin, dtype=np.float32):
        super().__init__()
        conv = lambda *a, **k: BasicConv2d(*a, dtype=dtype, **k)  # noqa: E731
        self.branch3x3 = conv(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = conv(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return concat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], axis=1)


class InceptionC(nn.Module):
    """17x17 block (Mixed_6b-e) with 7x7 convolutions factorised into 1x7 and 7x1 (``c7``
    channels inside): 1x1; 1x1 -> 1x7 -> 7x1; 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7; pool -> 1x1."""

    def __init__(self, cin, c7, dtype=np.float32):
        super().__init__()
        conv = lambda *a, **k: BasicConv2d(*a, dtype=dtype, **k)  # noqa: E731
        row = dict(kernel_size=(1, 7), padding=(0, 3))
        col = dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = conv(cin, 192, kernel_size=1)
        self.branch7x7_1 = conv(cin, c7, kernel_size=1)
        self.branch7x7_2 = conv(c7, c7, **row)
        self.branch7x7_3 = conv(c7, 192, **col)
        self.branch7x7dbl_1 = conv(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = conv(c7, c7, **col)
        self.branch7x7dbl_3 = conv(c7, c7, **row)
        self.branch7x7dbl_4 = conv(c7, c7, **col)
        self.branch7x7dbl_5 = conv(c7, 192, **row)
        self.branch_pool = conv(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        d = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(d))))
        return concat([self.branch1x1(x), b7, d, self.branch_pool(_pool_branch(x))], axis=1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 1x1 -> 3x3/2; 1x1 -> 1x7 -> 7x1 -> 3x3/2; max-pool."""

    def __init__(self, cin, dtype=np.float32):
        super().__init__()
        conv = lambda *a, **k: BasicConv2d(*a, dtype=dtype, **k)  # noqa: E731
        self.branch3x3_1 = conv(cin, 192, kernel_size=1)
        self.branch3x3_2 = conv(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = conv(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = conv(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
        return concat(
            [self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], axis=1
        )


class InceptionE(nn.Module):
    """8x8 block (Mixed_7b-c), the expanded filter bank: 1x1; 1x1 -> (1x3 | 3x1);
    1x1 -> 3x3 -> (1x3 | 3x1); pool -> 1x1."""

    def __init__(self, cin, dtype=np.float32):
        super().__init__()
        conv = lambda *a, **k: BasicConv2d(*a, dtype=dtype, **k)  # noqa: E731
        row = dict(kernel_size=(1, 3), padding=(0, 1))
        col = dict(kernel_size=(3, 1), padding=(1, 0))
        self.branch1x1 = conv(cin, 320, kernel_size=1)
        self.branch3x3_1 = conv(cin, 384, kernel_size=1)
        self.branch3x3_2a = conv(384, 384, **row)
        self.branch3x3_2b = conv(384, 384, **col)
        self.branch3x3dbl_1 = conv(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = conv(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = conv(384, 384, **row)
        self.branch3x3dbl_3b = conv(384, 384, **col)
        self.branch_pool = conv(cin, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return concat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(_pool_branch(x)),
            ],
            axis=1,
        )


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid: 5x5/3 average pool -> 1x1 conv 128 -> 5x5 conv
    768 (both batch-normed) -> global average pool -> FC."""

    def __init__(self, cin, num_classes, dtype=np.float32):
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, kernel_size=1, dtype=dtype)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5, dtype=dtype)
        self.fc = nn.Linear(768, num_classes, dtype=dtype)

    def forward(self, x):
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, stride=3)))
        return self.fc(F.adaptive_avg_pool2d(x, (1, 1)).flatten(1))


class Inception3(nn.Module):
    """torchvision's Inception3. In training mode with ``aux_logits`` the forward returns
    ``InceptionOutputs(logits, aux_logits)`` (torchvision's reference training weighs the aux loss
    0.4); otherwise the logits. ``transform_input`` maps ImageNet-normalised input to the
    (x - 0.5) / 0.5 the ported weights expect. torchvision's initialisation (truncated normal,
    std 0.1; 0.01 for the aux head's 5x5 conv, 0.001 for its FC)."""

    def __init__(
        self,
        num_classes=1000,
        aux_logits=True,
        transform_input=False,
        dropout=0.5,
        dtype=np.float32,
    ):
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        conv = lambda *a, **k: BasicConv2d(*a, dtype=dtype, **k)  # noqa: E731
        self.Conv2d_1a_3x3 = conv(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionA(192, 32, dtype)
        self.Mixed_5c = InceptionA(256, 64, dtype)
        self.Mixed_5d = InceptionA(288, 64, dtype)
        self.Mixed_6a = InceptionB(288, dtype)
        self.Mixed_6b = InceptionC(768, 128, dtype)
        self.Mixed_6c = InceptionC(768, 160, dtype)
        self.Mixed_6d = InceptionC(768, 160, dtype)
        self.Mixed_6e = InceptionC(768, 192, dtype)
        self.AuxLogits = InceptionAux(768, num_classes, dtype) if aux_logits else None
        self.Mixed_7a = InceptionD(768, dtype)
        self.Mixed_7b = InceptionE(1280, dtype)
        self.Mixed_7c = InceptionE(2048, dtype)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes, dtype=dtype)
        stddev = {}
        if aux_logits:
            stddev = {id(self.AuxLogits.conv1.conv): 0.01, id(self.AuxLogits.fc): 0.001}
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init.trunc_normal_(m.weight, mean=0.0, std=stddev.get(id(m), 0.1), a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)

    def forward(self, x):
        if self.transform_input:
            x = transform_input(x)
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))  # 35x35x192 at 299
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)  # 17x17x768
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        aux_on = self.AuxLogits is not None and self.training
        aux = self.AuxLogits(x) if aux_on else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # 8x8x2048
        x = self.fc(self.dropout(self.avgpool(x)).flatten(1))
        return InceptionOutputs(x, aux) if self.training and self.aux_logits else x


def inception_v3(
    num_classes=1000, aux_logits=True, transform_input=False, dropout=0.5, dtype=np.float32
):
    """torchvision's Inception v3: 27,161,264 parameters for 1000 classes with the auxiliary head,
    23,834,568 without. See :class:`Inception3` for the keyword arguments."""
    return Inception3(num_classes, aux_logits, transform_input, dropout, dtype)

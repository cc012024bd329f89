"""GoogLeNet / Inception v1 (Szegedy et al., 2014): torchvision's layout (batch-normed
BasicConv2d, keys equal torchvision's; optional auxiliary heads) and convnet-benchmarks'
googlenet_v1 (the paper's plain ReLU convs, 5x5 branch)."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import concat
from ..nn import functional as F
from ..nn import init

__all__ = ["GoogLeNet", "Inception", "InceptionAux", "BasicConv2d", "googlenet", "googlenet_v1"]


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU."""

    def __init__(self, cin, cout, dtype=np.float32, **conv_kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, dtype=dtype, **conv_kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, dtype=dtype)

    def forward(self, x):
        return self.bn(self.conv(x), activation="relu")  # relu(bn(...)) in one pass


def _plain_conv(cin, cout, dtype=np.float32, **conv_kwargs):
    """conv (with bias) -> ReLU, as the paper and convnet-benchmarks have it."""
    return nn.Sequential(nn.Conv2d(cin, cout, dtype=dtype, **conv_kwargs), nn.ReLU())


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5 (torchvision: 3x3,
    kept for its weights); 3x3/1 max-pool -> 1x1."""

    def __init__(
        self,
        cin,
        ch1x1,
        ch3x3red,
        ch3x3,
        ch5x5red,
        ch5x5,
        pool_proj,
        conv_block=BasicConv2d,
        five=3,
        ceil_mode=True,
        dtype=np.float32,
    ):
        super().__init__()
        block = lambda *a, **k: conv_block(*a, dtype=dtype, **k)  # noqa: E731
        self.branch1 = block(cin, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            block(cin, ch3x3red, kernel_size=1), block(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        self.branch3 = nn.Sequential(
            block(cin, ch5x5red, kernel_size=1),
            block(ch5x5red, ch5x5, kernel_size=five, padding=five // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=ceil_mode),
            block(cin, pool_proj, kernel_size=1),
        )

    def forward(self, x):
        return concat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], axis=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pool, 1x1 conv 128, FC 1024, ReLU, dropout, FC."""

    def __init__(self, cin, num_classes, dropout=0.7, dtype=np.float32):
        super().__init__()
        self.conv = BasicConv2d(cin, 128, kernel_size=1, dtype=dtype)
        self.fc1 = nn.Linear(2048, 1024, dtype=dtype)
        self.fc2 = nn.Linear(1024, num_classes, dtype=dtype)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4))).flatten(1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


def transform_input(x):
    """ImageNet-normalised input (mean/std) -> the (x - 0.5) / 0.5 that torchvision's GoogLeNet
    and Inception v3 weights (ported from TensorFlow) expect: torchvision's ``transform_input``."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    scale = (std / 0.5).astype(x.dtype).reshape(1, 3, 1, 1)
    shift = ((mean - 0.5) / 0.5).astype(x.dtype).reshape(1, 3, 1, 1)
    return x * scale + shift


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet. In training mode with ``aux_logits`` the forward returns
    ``(logits, aux2, aux1)`` (weight the aux losses by 0.3); otherwise the logits."""

    def __init__(
        self,
        num_classes=1000,
        aux_logits=False,
        transform_input=False,
        dropout=0.2,
        dropout_aux=0.7,
        dtype=np.float32,
    ):
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3, dtype=dtype)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1, dtype=dtype)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1, dtype=dtype)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        inc = lambda *a: Inception(*a, dtype=dtype)  # noqa: E731
        self.inception3a = inc(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inc(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inc(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inc(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inc(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inc(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inc(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = inc(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inc(832, 384, 192, 384, 48, 128, 128)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout_aux, dtype)
            self.aux2 = InceptionAux(528, num_classes, dropout_aux, dtype)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes, dtype=dtype)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)

    def _transform_input(self, x):
        return transform_input(x)

    def forward(self, x):
        if self.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux_on = self.aux_logits and self.training
        aux1 = self.aux1(x) if aux_on else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if aux_on else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        return (x, aux2, aux1) if aux_on else x


def googlenet(num_classes=1000, **kwargs):
    """torchvision's GoogLeNet (see :class:`GoogLeNet` for the keyword arguments)."""
    return GoogLeNet(num_classes=num_classes, **kwargs)


# [in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj], from convnet_benchmarks.json
_V1_BLOCKS = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


def googlenet_v1(num_classes=1000, dtype=np.float32):
    """convnet-benchmarks' GoogLeNet v1: plain conv+ReLU (no batch norm), a true 5x5 branch,
    3x3/2 pad-1 max-pools, 7x7 average pool, FC, ReLU (as the suite times it). 224x224 input."""

    def conv(*a, **k):
        return _plain_conv(*a, dtype=dtype, **k)

    def inc(name):
        return Inception(
            *_V1_BLOCKS[name], conv_block=_plain_conv, five=5, ceil_mode=False, dtype=dtype
        )

    def pool():
        return nn.MaxPool2d(3, 2, padding=1)

    return nn.Sequential(
        conv(3, 64, kernel_size=7, stride=2, padding=3),
        pool(),
        conv(64, 64, kernel_size=1),
        conv(64, 192, kernel_size=3, padding=1),
        pool(),
        inc("3a"),
        inc("3b"),
        pool(),
        inc("4a"),
        inc("4b"),
        inc("4c"),
        inc("4d"),
        inc("4e"),
        pool(),
        inc("5a"),
        inc("5b"),
        nn.AvgPool2d(7, 1),
        nn.Flatten(),
        nn.Linear(1024, num_classes, dtype=dtype),
        nn.ReLU(),
    )

"""ResNet (He et al., 2015) in torchvision's layout (v1.5: the stride on the bottleneck's 3x3),
and SE-ResNet (Hu et al., 2017): a squeeze-and-excitation block on each residual branch."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F
from ..nn import init

__all__ = [
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "SEBlock",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "se_resnet50",
]


def conv3x3(cin, cout, stride=1, dtype=np.float32):
    """3x3 conv, padding 1, no bias (torchvision's)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, dtype=dtype)


def conv1x1(cin, cout, stride=1, dtype=np.float32):
    """1x1 conv, no bias (torchvision's)."""
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False, dtype=dtype)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: global average pool -> FC C->C/r -> ReLU -> FC C/r->C -> sigmoid ->
    scale each channel of the input."""

    def __init__(self, channels, reduction=16, dtype=np.float32):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction, dtype=dtype)
        self.fc2 = nn.Linear(channels // reduction, channels, dtype=dtype)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1).flatten(1)
        s = F.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s.reshape(s.shape + (1, 1))


class BasicBlock(nn.Module):
    """ResNet-18/34's block: two 3x3 convs with batch norm, plus the identity (or downsample)."""

    expansion = 1

    def __init__(
        self, inplanes, planes, stride=1, downsample=None, se_reduction=None, dtype=np.float32
    ):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dtype)
        self.bn1 = nn.BatchNorm2d(planes, dtype=dtype)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(planes, dtype=dtype)
        if se_reduction:
            self.se = SEBlock(planes, se_reduction, dtype)
        self.downsample = downsample
        self.se_reduction = se_reduction

    def forward(self, x):
        out = self.bn1(self.conv1(x), activation="relu")  # relu(bn1(...)) in one pass
        identity = x if self.downsample is None else self.downsample(x)
        if self.se_reduction:
            return self.relu(self.se(self.bn2(self.conv2(out))) + identity)
        return self.bn2(self.conv2(out), identity, "relu")  # relu(bn2(...) + identity)


class Bottleneck(nn.Module):
    """ResNet-50/101/152's block: 1x1 reduce, 3x3 (carrying the stride, v1.5), 1x1 expand by 4,
    each with batch norm, plus the identity (or downsample)."""

    expansion = 4

    def __init__(
        self, inplanes, planes, stride=1, downsample=None, se_reduction=None, dtype=np.float32
    ):
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(width, dtype=dtype)
        self.conv2 = conv3x3(width, width, stride, dtype)
        self.bn2 = nn.BatchNorm2d(width, dtype=dtype)
        self.conv3 = conv1x1(width, planes * self.expansion, dtype=dtype)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, dtype=dtype)
        self.relu = nn.ReLU()
        if se_reduction:
            self.se = SEBlock(planes * self.expansion, se_reduction, dtype)
        self.downsample = downsample
        self.se_reduction = se_reduction

    def forward(self, x):
        out = self.bn1(self.conv1(x), activation="relu")  # relu(bn1(...)) in one pass
        out = self.bn2(self.conv2(out), activation="relu")
        identity = x if self.downsample is None else self.downsample(x)
        if self.se_reduction:
            return self.relu(self.se(self.bn3(self.conv3(out))) + identity)
        return self.bn3(self.conv3(out), identity, "relu")  # relu(bn3(...) + identity)


class ResNet(nn.Module):
    """torchvision's ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages of ``block`` (``layers``
    blocks each), global average pool, FC; torchvision's initialisation. ``se_reduction`` adds a
    squeeze-and-excitation block to each residual branch."""

    def __init__(
        self,
        block,
        layers,
        num_classes=1000,
        zero_init_residual=False,
        se_reduction=None,
        dtype=np.float32,
    ):
        super().__init__()
        self.inplanes, self._dtype, self._se = 64, dtype, se_reduction
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(64, dtype=dtype)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes, dtype=dtype)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last_bn = (
                    getattr(m, "bn3", None)
                    if isinstance(m, Bottleneck)
                    else (getattr(m, "bn2", None) if isinstance(m, BasicBlock) else None)
                )
                if last_bn is not None:
                    init.zeros_(last_bn.weight)

    def _make_layer(self, block, planes, blocks, stride=1):
        dtype, downsample = self._dtype, None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride, dtype),
                nn.BatchNorm2d(planes * block.expansion, dtype=dtype),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self._se, dtype)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, se_reduction=self._se, dtype=dtype)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.bn1(self.conv1(x), activation="relu"))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(num_classes=1000, **kw):
    """ResNet-18 (basic blocks 2-2-2-2)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kw)


def resnet34(num_classes=1000, **kw):
    """ResNet-34 (basic blocks 3-4-6-3)."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kw)


def resnet50(num_classes=1000, **kw):
    """ResNet-50 (bottlenecks 3-4-6-3)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, **kw)


def resnet101(num_classes=1000, **kw):
    """ResNet-101 (bottlenecks 3-4-23-3)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, **kw)


def resnet152(num_classes=1000, **kw):
    """ResNet-152 (bottlenecks 3-8-36-3)."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, **kw)


def se_resnet50(num_classes=1000, reduction=16, **kw):
    """ResNet-50 with a squeeze-and-excitation block (ratio ``reduction``) in every bottleneck,
    applied to the residual branch before the addition. Keys as resnet50's plus
    ``...se.fc1/fc2``."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, se_reduction=reduction, **kw)

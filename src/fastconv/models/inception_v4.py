"""Inception-v4 and Inception-ResNet-v2 (Szegedy et al., 2016) in the layout of the widely used
PyTorch port of the TensorFlow-slim models: Cadene's ``pretrainedmodels`` (``inceptionv4``,
``inceptionresnetv2``), which timm's ``inception_v4`` / ``inception_resnet_v2`` keep. Module
names and state_dict keys equal Cadene's (timm's too, except that timm calls
Inception-ResNet-v2's classifier ``classif``). The head is a global average pool (Cadene's 8x8
pool is that at 299x299), so any input from 75x75 up runs. Batch norm eps 0.001 throughout."""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import concat
from ..nn import functional as F
from .googlenet import BasicConv2d

__all__ = ["InceptionV4", "InceptionResNetV2", "inception_v4", "inception_resnet_v2"]


def _conv(cin, cout, kernel_size, stride=1, padding=0, dtype=np.float32):
    """Cadene's BasicConv2d(in, out, kernel_size, stride, padding): conv (no bias), BN, ReLU."""
    return BasicConv2d(
        cin, cout, kernel_size=kernel_size, stride=stride, padding=padding, dtype=dtype
    )


def _seq(rows, dtype):
    """nn.Sequential of _conv rows (cin, cout, kernel[, stride[, padding]]) and modules."""
    return nn.Sequential(*[r if isinstance(r, nn.Module) else _conv(*r, dtype=dtype) for r in rows])


def _avg_pool():
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Branches(nn.Module):
    """Parallel branches (children, in the order given) concatenated on channels: the
    Mixed / Inception / Reduction blocks of both networks."""

    def __init__(self, **branches):
        super().__init__()
        for name, m in branches.items():
            self.add_module(name, m)

    def forward(self, x):
        return concat([m(x) for m in self.children()], axis=1)


# --- Inception-v4 ---------------------------------------------------------------------------


def _inception_a(dtype):
    """35x35 block: 1x1 96; 1x1 -> 3x3 96; 1x1 -> 3x3 -> 3x3 96; avg pool -> 1x1 96."""
    return Branches(
        branch0=_conv(384, 96, 1, dtype=dtype),
        branch1=_seq([(384, 64, 1), (64, 96, 3, 1, 1)], dtype),
        branch2=_seq([(384, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1)], dtype),
        branch3=_seq([_avg_pool(), (384, 96, 1)], dtype),
    )


def _inception_b(dtype):
    """17x17 block, 7x7 factorised: 1x1 384; 1x1 -> 1x7 -> 7x1; 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7;
    avg pool -> 1x1 128."""
    r, c = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    return Branches(
        branch0=_conv(1024, 384, 1, dtype=dtype),
        branch1=_seq([(1024, 192, 1), (192, 224, *r), (224, 256, *c)], dtype),
        branch2=_seq(
            [(1024, 192, 1), (192, 192, *c), (192, 224, *r), (224, 224, *c), (224, 256, *r)], dtype
        ),
        branch3=_seq([_avg_pool(), (1024, 128, 1)], dtype),
    )


class InceptionC(nn.Module):
    """8x8 block: 1x1 256; 1x1 384 -> (1x3 | 3x1) 256; 1x1 384 -> 3x1 448 -> 1x3 512 ->
    (1x3 | 3x1) 256; avg pool -> 1x1 256 (Cadene's Inception_C)."""

    def __init__(self, dtype=np.float32):
        super().__init__()
        r, c = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
        self.branch0 = _conv(1536, 256, 1, dtype=dtype)
        self.branch1_0 = _conv(1536, 384, 1, dtype=dtype)
        self.branch1_1a = _conv(384, 256, *r, dtype=dtype)
        self.branch1_1b = _conv(384, 256, *c, dtype=dtype)
        self.branch2_0 = _conv(1536, 384, 1, dtype=dtype)
        self.branch2_1 = _conv(384, 448, *c, dtype=dtype)
        self.branch2_2 = _conv(448, 512, *r, dtype=dtype)
        self.branch2_3a = _conv(512, 256, *r, dtype=dtype)
        self.branch2_3b = _conv(512, 256, *c, dtype=dtype)
        self.branch3 = _seq([_avg_pool(), (1536, 256, 1)], dtype)

    def forward(self, x):
        b1 = self.branch1_0(x)
        b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return concat(
            [
                self.branch0(x),
                self.branch1_1a(b1),
                self.branch1_1b(b1),
                self.branch2_3a(b2),
                self.branch2_3b(b2),
                self.branch3(x),
            ],
            axis=1,
        )


class InceptionV4(nn.Module):
    """``features``: the stem (three convs, mixed_3a/4a/5a: 299 -> 35x35x384), Inception-A x4,
    Reduction-A (-> 17x17x1024), Inception-B x7, Reduction-B (-> 8x8x1536), Inception-C x3;
    then a global average pool and ``last_linear``. No dropout (Cadene's and timm's default).
    PyTorch's default initialisation, as both."""

    def __init__(self, num_classes=1000, dtype=np.float32):
        super().__init__()
        conv = lambda *a: _conv(*a, dtype=dtype)  # noqa: E731
        mp = lambda: nn.MaxPool2d(3, stride=2)  # noqa: E731
        r7, c7 = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
        self.features = nn.Sequential(
            conv(3, 32, 3, 2),
            conv(32, 32, 3),
            conv(32, 64, 3, 1, 1),
            Branches(maxpool=mp(), conv=conv(64, 96, 3, 2)),  # mixed_3a
            Branches(
                branch0=_seq([(160, 64, 1), (64, 96, 3)], dtype),  # mixed_4a
                branch1=_seq([(160, 64, 1), (64, 64, *r7), (64, 64, *c7), (64, 96, 3)], dtype),
            ),
            Branches(conv=conv(192, 192, 3, 2), maxpool=mp()),  # mixed_5a
            *[_inception_a(dtype) for _ in range(4)],
            Branches(
                branch0=conv(384, 384, 3, 2),  # Reduction-A
                branch1=_seq([(384, 192, 1), (192, 224, 3, 1, 1), (224, 256, 3, 2)], dtype),
                branch2=mp(),
            ),
            *[_inception_b(dtype) for _ in range(7)],
            Branches(
                branch0=_seq([(1024, 192, 1), (192, 192, 3, 2)], dtype),  # Reduction-B
                branch1=_seq(
                    [(1024, 256, 1), (256, 256, *r7), (256, 320, *c7), (320, 320, 3, 2)], dtype
                ),
                branch2=mp(),
            ),
            *[InceptionC(dtype) for _ in range(3)],
        )
        self.last_linear = nn.Linear(1536, num_classes, dtype=dtype)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.last_linear(x.flatten(1))


def inception_v4(num_classes=1000, dtype=np.float32):
    """Inception-v4 in Cadene's / timm's layout: 42,679,816 parameters for 1000 classes (timm's
    ``inception_v4``); 42,681,353 for the 1001 (background + ImageNet) of the TensorFlow weights
    Cadene's model is built with by default."""
    return InceptionV4(num_classes, dtype)


# --- Inception-ResNet-v2 ----------------------------------------------------------------------


class ScaledResidual(nn.Module):
    """Inception-ResNet block (Block35 / Block17 / Block8): the branches (``branch0``...)
    concatenated, a 1x1 conv with bias (``conv2d``) back to the input's width, scaled by
    ``scale`` and added to the input, then ReLU (``relu=False``: none, the last Block8)."""

    def __init__(self, scale, channels, width, branches, relu=True, dtype=np.float32):
        super().__init__()
        self.scale, self.relu, self._n = scale, relu, len(branches)
        for i, b in enumerate(branches):
            self.add_module(f"branch{i}", b)
        self.conv2d = nn.Conv2d(width, channels, 1, dtype=dtype)

    def forward(self, x):
        out = concat([getattr(self, f"branch{i}")(x) for i in range(self._n)], axis=1)
        out = self.conv2d(out) * self.scale + x
        return F.relu(out) if self.relu else out

    def extra_repr(self):
        return f"scale={self.scale}, relu={self.relu}"


def _block35(dtype, scale=0.17):
    """35x35, 320 channels: 1x1 32; 1x1 32 -> 3x3 32; 1x1 32 -> 3x3 48 -> 3x3 64."""
    return ScaledResidual(
        scale,
        320,
        128,
        [
            _conv(320, 32, 1, dtype=dtype),
            _seq([(320, 32, 1), (32, 32, 3, 1, 1)], dtype),
            _seq([(320, 32, 1), (32, 48, 3, 1, 1), (48, 64, 3, 1, 1)], dtype),
        ],
        dtype=dtype,
    )


def _block17(dtype, scale=0.10):
    """17x17, 1088 channels: 1x1 192; 1x1 128 -> 1x7 160 -> 7x1 192."""
    return ScaledResidual(
        scale,
        1088,
        384,
        [
            _conv(1088, 192, 1, dtype=dtype),
            _seq(
                [(1088, 128, 1), (128, 160, (1, 7), 1, (0, 3)), (160, 192, (7, 1), 1, (3, 0))],
                dtype,
            ),
        ],
        dtype=dtype,
    )


def _block8(dtype, scale=0.20, relu=True):
    """8x8, 2080 channels: 1x1 192; 1x1 192 -> 1x3 224 -> 3x1 256."""
    return ScaledResidual(
        scale,
        2080,
        448,
        [
            _conv(2080, 192, 1, dtype=dtype),
            _seq(
                [(2080, 192, 1), (192, 224, (1, 3), 1, (0, 1)), (224, 256, (3, 1), 1, (1, 0))],
                dtype,
            ),
        ],
        relu=relu,
        dtype=dtype,
    )


class InceptionResNetV2(nn.Module):
    """Stem (conv2d_1a ... maxpool_5a: 299 -> 35x35x192), mixed_5b (-> 320), 10 Block35 (scale
    0.17), mixed_6a (-> 17x17x1088), 20 Block17 (scale 0.10), mixed_7a (-> 8x8x2080), 9 Block8
    (scale 0.20), a last Block8 with scale 1.0 and no ReLU (``block8``; as Cadene, timm and
    TF-slim have it), conv2d_7b (1x1 -> 1536), global average pool, ``last_linear``."""

    def __init__(self, num_classes=1000, dtype=np.float32):
        super().__init__()
        conv = lambda *a: _conv(*a, dtype=dtype)  # noqa: E731
        self.conv2d_1a = conv(3, 32, 3, 2)
        self.conv2d_2a = conv(32, 32, 3)
        self.conv2d_2b = conv(32, 64, 3, 1, 1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = conv(64, 80, 1)
        self.conv2d_4a = conv(80, 192, 3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Branches(
            branch0=conv(192, 96, 1),
            branch1=_seq([(192, 48, 1), (48, 64, 5, 1, 2)], dtype),
            branch2=_seq([(192, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1)], dtype),
            branch3=_seq([_avg_pool(), (192, 64, 1)], dtype),
        )
        self.repeat = nn.Sequential(*[_block35(dtype) for _ in range(10)])
        self.mixed_6a = Branches(
            branch0=conv(320, 384, 3, 2),
            branch1=_seq([(320, 256, 1), (256, 256, 3, 1, 1), (256, 384, 3, 2)], dtype),
            branch2=nn.MaxPool2d(3, stride=2),
        )
        self.repeat_1 = nn.Sequential(*[_block17(dtype) for _ in range(20)])
        self.mixed_7a = Branches(
            branch0=_seq([(1088, 256, 1), (256, 384, 3, 2)], dtype),
            branch1=_seq([(1088, 256, 1), (256, 288, 3, 2)], dtype),
            branch2=_seq([(1088, 256, 1), (256, 288, 3, 1, 1), (288, 320, 3, 2)], dtype),
            branch3=nn.MaxPool2d(3, stride=2),
        )
        self.repeat_2 = nn.Sequential(*[_block8(dtype) for _ in range(9)])
        self.block8 = _block8(dtype, scale=1.0, relu=False)
        self.conv2d_7b = conv(2080, 1536, 1)
        self.last_linear = nn.Linear(1536, num_classes, dtype=dtype)

    def forward(self, x):
        x = self.maxpool_3a(self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x))))
        x = self.maxpool_5a(self.conv2d_4a(self.conv2d_3b(x)))
        x = self.repeat(self.mixed_5b(x))
        x = self.repeat_1(self.mixed_6a(x))
        x = self.block8(self.repeat_2(self.mixed_7a(x)))
        x = F.adaptive_avg_pool2d(self.conv2d_7b(x), (1, 1))
        return self.last_linear(x.flatten(1))


def inception_resnet_v2(num_classes=1000, dtype=np.float32):
    """Inception-ResNet-v2 in Cadene's / timm's layout: 55,843,464 parameters for 1000 classes
    (timm's ``inception_resnet_v2``); 55,845,001 for the 1001 of the TensorFlow weights Cadene's
    model is built with by default."""
    return InceptionResNetV2(num_classes, dtype)

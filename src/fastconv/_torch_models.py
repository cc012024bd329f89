"""PyTorch twins of fastconv's models, built from torch.nn with torchvision's module names (the
layouts of torchvision.models.resnet/alexnet/vgg/googlenet/inception; torchvision itself is not
needed) and, for Inception-v4 and Inception-ResNet-v2, Cadene's pretrainedmodels' names.
Used by the tests, bench/bench_networks.py and `fastconv bench nets` (the training steps);
imported only by them: torch is never imported by `import fastconv`."""

from collections import OrderedDict

import torch

tnn = torch.nn


def torch_resnet(block, layers, num_classes=1000, se_reduction=None):
    class SEBlock(tnn.Module):
        def __init__(self, channels):
            super().__init__()
            self.fc1 = tnn.Linear(channels, channels // se_reduction)
            self.fc2 = tnn.Linear(channels // se_reduction, channels)

        def forward(self, x):
            s = torch.flatten(tnn.functional.adaptive_avg_pool2d(x, 1), 1)
            s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
            return x * s[:, :, None, None]

    class BasicBlock(tnn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            if se_reduction:
                self.se = SEBlock(planes)
            self.downsample = downsample

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            if se_reduction:
                out = self.se(out)
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Bottleneck(tnn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = tnn.BatchNorm2d(planes * 4)
            self.relu = tnn.ReLU()
            if se_reduction:
                self.se = SEBlock(planes * 4)
            self.downsample = downsample

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            if se_reduction:
                out = self.se(out)
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    block = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]

    class ResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = 64
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU()
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make_layer(64, layers[0])
            self.layer2 = self._make_layer(128, layers[1], 2)
            self.layer3 = self._make_layer(256, layers[2], 2)
            self.layer4 = self._make_layer(512, layers[3], 2)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512 * block.expansion, num_classes)

        def _make_layer(self, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = tnn.Sequential(
                    tnn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                    tnn.BatchNorm2d(planes * block.expansion),
                )
            out = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            out += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return tnn.Sequential(*out)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def torch_alexnet(num_classes=1000):
    class AlexNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(
                tnn.Conv2d(3, 64, 11, 4, 2),
                tnn.ReLU(),
                tnn.MaxPool2d(3, 2),
                tnn.Conv2d(64, 192, 5, padding=2),
                tnn.ReLU(),
                tnn.MaxPool2d(3, 2),
                tnn.Conv2d(192, 384, 3, padding=1),
                tnn.ReLU(),
                tnn.Conv2d(384, 256, 3, padding=1),
                tnn.ReLU(),
                tnn.Conv2d(256, 256, 3, padding=1),
                tnn.ReLU(),
                tnn.MaxPool2d(3, 2),
            )
            self.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
            self.classifier = tnn.Sequential(
                tnn.Dropout(0.5),
                tnn.Linear(9216, 4096),
                tnn.ReLU(),
                tnn.Dropout(0.5),
                tnn.Linear(4096, 4096),
                tnn.ReLU(),
                tnn.Linear(4096, num_classes),
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


def torch_vgg(cfg, batch_norm, num_classes=1000):
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += (
                [tnn.Conv2d(c, v, 3, padding=1)]
                + ([tnn.BatchNorm2d(v)] if batch_norm else [])
                + [tnn.ReLU()]
            )
            c = v
    return tnn.Sequential(
        OrderedDict(
            features=tnn.Sequential(*layers),
            avgpool=tnn.AdaptiveAvgPool2d((7, 7)),
            classifier=tnn.Sequential(
                tnn.Linear(25088, 4096),
                tnn.ReLU(),
                tnn.Dropout(),
                tnn.Linear(4096, 4096),
                tnn.ReLU(),
                tnn.Dropout(),
                tnn.Linear(4096, num_classes),
            ),
        )
    )


def torch_googlenet(num_classes=1000, aux_logits=True):
    def basic(cin, cout, **kw):
        return tnn.Sequential(
            OrderedDict(
                conv=tnn.Conv2d(cin, cout, bias=False, **kw), bn=tnn.BatchNorm2d(cout, eps=0.001)
            )
        )

    def inception(cin, c1, c3r, c3, c5r, c5, pp):
        return tnn.ModuleDict(
            OrderedDict(
                branch1=basic(cin, c1, kernel_size=1),
                branch2=tnn.Sequential(
                    basic(cin, c3r, kernel_size=1), basic(c3r, c3, kernel_size=3, padding=1)
                ),
                branch3=tnn.Sequential(
                    basic(cin, c5r, kernel_size=1), basic(c5r, c5, kernel_size=3, padding=1)
                ),
                branch4=tnn.Sequential(
                    tnn.MaxPool2d(3, 1, 1, ceil_mode=True), basic(cin, pp, kernel_size=1)
                ),
            )
        )

    def aux(cin):
        return tnn.ModuleDict(
            OrderedDict(
                conv=basic(cin, 128, kernel_size=1),
                fc1=tnn.Linear(2048, 1024),
                fc2=tnn.Linear(1024, num_classes),
            )
        )

    m = OrderedDict(
        conv1=basic(3, 64, kernel_size=7, stride=2, padding=3),
        conv2=basic(64, 64, kernel_size=1),
        conv3=basic(64, 192, kernel_size=3, padding=1),
        inception3a=inception(192, 64, 96, 128, 16, 32, 32),
        inception3b=inception(256, 128, 128, 192, 32, 96, 64),
        inception4a=inception(480, 192, 96, 208, 16, 48, 64),
        inception4b=inception(512, 160, 112, 224, 24, 64, 64),
        inception4c=inception(512, 128, 128, 256, 24, 64, 64),
        inception4d=inception(512, 112, 144, 288, 32, 64, 64),
        inception4e=inception(528, 256, 160, 320, 32, 128, 128),
        inception5a=inception(832, 256, 160, 320, 32, 128, 128),
        inception5b=inception(832, 384, 192, 384, 48, 128, 128),
    )
    if aux_logits:
        m.update(aux1=aux(512), aux2=aux(528))
    m.update(fc=tnn.Linear(1024, num_classes))
    return tnn.ModuleDict(m)


def torch_lenet5(num_classes=10):
    """fastconv.models.lenet5 (full C3) in torch.nn, same state_dict keys."""

    class LeNet5(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(
                tnn.Conv2d(1, 6, 5),
                tnn.Tanh(),
                tnn.AvgPool2d(2, 2),
                tnn.Tanh(),
                tnn.Conv2d(6, 16, 5),
                tnn.Tanh(),
                tnn.AvgPool2d(2, 2),
                tnn.Tanh(),
                tnn.Conv2d(16, 120, 5),
                tnn.Tanh(),
            )
            self.classifier = tnn.Sequential(
                tnn.Linear(120, 84), tnn.Tanh(), tnn.Linear(84, num_classes)
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    return LeNet5()


# --- Inception v3 (torchvision), Inception-v4 / Inception-ResNet-v2 (Cadene's pretrainedmodels,
# timm), ZFNet, NiN: runnable twins of fastconv.models' inception*, zfnet and nin* ------------


class _BasicConv2d(tnn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU (torchvision's and Cadene's BasicConv2d)."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False)
        self.bn = tnn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def _cat(*xs):
    return torch.cat(xs, 1)


def torch_inception_v3(num_classes=1000, aux_logits=True, transform_input=False, dropout=0.5):
    """torchvision.models.Inception3's layout and forward (init_weights aside)."""
    from collections import namedtuple

    conv = _BasicConv2d
    avg3 = lambda x: tnn.functional.avg_pool2d(x, 3, 1, 1)  # noqa: E731
    outputs = namedtuple("InceptionOutputs", ["logits", "aux_logits"])

    class InceptionA(tnn.Module):
        def __init__(self, cin, pool_features):
            super().__init__()
            self.branch1x1 = conv(cin, 64, 1)
            self.branch5x5_1 = conv(cin, 48, 1)
            self.branch5x5_2 = conv(48, 64, 5, padding=2)
            self.branch3x3dbl_1 = conv(cin, 64, 1)
            self.branch3x3dbl_2 = conv(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = conv(96, 96, 3, padding=1)
            self.branch_pool = conv(cin, pool_features, 1)

        def forward(self, x):
            return _cat(
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(avg3(x)),
            )

    class InceptionB(tnn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = conv(cin, 384, 3, stride=2)
            self.branch3x3dbl_1 = conv(cin, 64, 1)
            self.branch3x3dbl_2 = conv(64, 96, 3, padding=1)
            self.branch3x3dbl_3 = conv(96, 96, 3, stride=2)

        def forward(self, x):
            return _cat(
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                tnn.functional.max_pool2d(x, 3, 2),
            )

    class InceptionC(tnn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = conv(cin, 192, 1)
            self.branch7x7_1 = conv(cin, c7, 1)
            self.branch7x7_2 = conv(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7_3 = conv(c7, 192, (7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = conv(cin, c7, 1)
            self.branch7x7dbl_2 = conv(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = conv(c7, c7, (1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = conv(c7, c7, (7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = conv(c7, 192, (1, 7), padding=(0, 3))
            self.branch_pool = conv(cin, 192, 1)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for i in range(1, 6):
                d = getattr(self, f"branch7x7dbl_{i}")(d)
            return _cat(self.branch1x1(x), b7, d, self.branch_pool(avg3(x)))

    class InceptionD(tnn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = conv(cin, 192, 1)
            self.branch3x3_2 = conv(192, 320, 3, stride=2)
            self.branch7x7x3_1 = conv(cin, 192, 1)
            self.branch7x7x3_2 = conv(192, 192, (1, 7), padding=(0, 3))
            self.branch7x7x3_3 = conv(192, 192, (7, 1), padding=(3, 0))
            self.branch7x7x3_4 = conv(192, 192, 3, stride=2)

        def forward(self, x):
            b7 = x
            for i in range(1, 5):
                b7 = getattr(self, f"branch7x7x3_{i}")(b7)
            return _cat(
                self.branch3x3_2(self.branch3x3_1(x)), b7, tnn.functional.max_pool2d(x, 3, 2)
            )

    class InceptionE(tnn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch1x1 = conv(cin, 320, 1)
            self.branch3x3_1 = conv(cin, 384, 1)
            self.branch3x3_2a = conv(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3_2b = conv(384, 384, (3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = conv(cin, 448, 1)
            self.branch3x3dbl_2 = conv(448, 384, 3, padding=1)
            self.branch3x3dbl_3a = conv(384, 384, (1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = conv(384, 384, (3, 1), padding=(1, 0))
            self.branch_pool = conv(cin, 192, 1)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            return _cat(
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(avg3(x)),
            )

    class InceptionAux(tnn.Module):
        def __init__(self, cin):
            super().__init__()
            self.conv0 = conv(cin, 128, 1)
            self.conv1 = conv(128, 768, 5)
            self.fc = tnn.Linear(768, num_classes)

        def forward(self, x):
            x = self.conv1(self.conv0(tnn.functional.avg_pool2d(x, 5, 3)))
            return self.fc(torch.flatten(tnn.functional.adaptive_avg_pool2d(x, 1), 1))

    class Inception3(tnn.Module):
        def __init__(self):
            super().__init__()
            self.aux_logits, self.transform_input = aux_logits, transform_input
            self.Conv2d_1a_3x3 = conv(3, 32, 3, stride=2)
            self.Conv2d_2a_3x3 = conv(32, 32, 3)
            self.Conv2d_2b_3x3 = conv(32, 64, 3, padding=1)
            self.maxpool1 = tnn.MaxPool2d(3, 2)
            self.Conv2d_3b_1x1 = conv(64, 80, 1)
            self.Conv2d_4a_3x3 = conv(80, 192, 3)
            self.maxpool2 = tnn.MaxPool2d(3, 2)
            self.Mixed_5b = InceptionA(192, 32)
            self.Mixed_5c = InceptionA(256, 64)
            self.Mixed_5d = InceptionA(288, 64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = InceptionC(768, 128)
            self.Mixed_6c = InceptionC(768, 160)
            self.Mixed_6d = InceptionC(768, 160)
            self.Mixed_6e = InceptionC(768, 192)
            self.AuxLogits = InceptionAux(768) if aux_logits else None
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = InceptionE(1280)
            self.Mixed_7c = InceptionE(2048)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.dropout = tnn.Dropout(dropout)
            self.fc = tnn.Linear(2048, num_classes)

        def forward(self, x):
            if self.transform_input:
                x = _cat(
                    x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                    x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                    x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5,
                )
            x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
            x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
            for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e"):
                x = getattr(self, "Mixed_" + name)(x)
            aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
            x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
            x = self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))
            return outputs(x, aux) if self.training and self.aux_logits else x

    return Inception3()


def _torch_concat_block(**branches):
    """A module whose forward concatenates its branches' outputs on channels."""

    class Concat(tnn.Module):
        def __init__(self):
            super().__init__()
            for k, v in branches.items():
                setattr(self, k, v)

        def forward(self, x):
            return torch.cat([m(x) for m in self.children()], 1)

    return Concat()


def _seq(*layers):
    """Sequential of (cin, cout, kernel, stride, padding) BasicConv2d rows and modules."""
    return tnn.Sequential(*[m if isinstance(m, tnn.Module) else _BasicConv2d(*m) for m in layers])


def torch_inception_v4(num_classes=1000):
    """Cadene's pretrainedmodels InceptionV4 (= timm's inception_v4), with a global average pool
    instead of the 8x8 one (the same at 299x299)."""
    avg = lambda: tnn.AvgPool2d(3, 1, 1, count_include_pad=False)  # noqa: E731
    mp = lambda: tnn.MaxPool2d(3, 2)  # noqa: E731

    def inception_a():
        return _torch_concat_block(
            branch0=_BasicConv2d(384, 96, 1),
            branch1=_seq((384, 64, 1), (64, 96, 3, 1, 1)),
            branch2=_seq((384, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1)),
            branch3=_seq(avg(), (384, 96, 1)),
        )

    def inception_b():
        return _torch_concat_block(
            branch0=_BasicConv2d(1024, 384, 1),
            branch1=_seq(
                (1024, 192, 1), (192, 224, (1, 7), 1, (0, 3)), (224, 256, (7, 1), 1, (3, 0))
            ),
            branch2=_seq(
                (1024, 192, 1),
                (192, 192, (7, 1), 1, (3, 0)),
                (192, 224, (1, 7), 1, (0, 3)),
                (224, 224, (7, 1), 1, (3, 0)),
                (224, 256, (1, 7), 1, (0, 3)),
            ),
            branch3=_seq(avg(), (1024, 128, 1)),
        )

    class InceptionC(tnn.Module):
        def __init__(self):
            super().__init__()
            self.branch0 = _BasicConv2d(1536, 256, 1)
            self.branch1_0 = _BasicConv2d(1536, 384, 1)
            self.branch1_1a = _BasicConv2d(384, 256, (1, 3), 1, (0, 1))
            self.branch1_1b = _BasicConv2d(384, 256, (3, 1), 1, (1, 0))
            self.branch2_0 = _BasicConv2d(1536, 384, 1)
            self.branch2_1 = _BasicConv2d(384, 448, (3, 1), 1, (1, 0))
            self.branch2_2 = _BasicConv2d(448, 512, (1, 3), 1, (0, 1))
            self.branch2_3a = _BasicConv2d(512, 256, (1, 3), 1, (0, 1))
            self.branch2_3b = _BasicConv2d(512, 256, (3, 1), 1, (1, 0))
            self.branch3 = _seq(avg(), (1536, 256, 1))

        def forward(self, x):
            b1 = self.branch1_0(x)
            b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
            return _cat(
                self.branch0(x),
                self.branch1_1a(b1),
                self.branch1_1b(b1),
                self.branch2_3a(b2),
                self.branch2_3b(b2),
                self.branch3(x),
            )

    class InceptionV4(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(
                _BasicConv2d(3, 32, 3, 2),
                _BasicConv2d(32, 32, 3),
                _BasicConv2d(32, 64, 3, 1, 1),
                _torch_concat_block(maxpool=mp(), conv=_BasicConv2d(64, 96, 3, 2)),  # mixed_3a
                _torch_concat_block(  # mixed_4a
                    branch0=_seq((160, 64, 1), (64, 96, 3)),
                    branch1=_seq(
                        (160, 64, 1),
                        (64, 64, (1, 7), 1, (0, 3)),
                        (64, 64, (7, 1), 1, (3, 0)),
                        (64, 96, 3),
                    ),
                ),
                _torch_concat_block(conv=_BasicConv2d(192, 192, 3, 2), maxpool=mp()),  # mixed_5a
                *[inception_a() for _ in range(4)],
                _torch_concat_block(  # reduction A
                    branch0=_BasicConv2d(384, 384, 3, 2),
                    branch1=_seq((384, 192, 1), (192, 224, 3, 1, 1), (224, 256, 3, 2)),
                    branch2=mp(),
                ),
                *[inception_b() for _ in range(7)],
                _torch_concat_block(  # reduction B
                    branch0=_seq((1024, 192, 1), (192, 192, 3, 2)),
                    branch1=_seq(
                        (1024, 256, 1),
                        (256, 256, (1, 7), 1, (0, 3)),
                        (256, 320, (7, 1), 1, (3, 0)),
                        (320, 320, 3, 2),
                    ),
                    branch2=mp(),
                ),
                *[InceptionC() for _ in range(3)],
            )
            self.last_linear = tnn.Linear(1536, num_classes)

        def forward(self, x):
            x = tnn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.last_linear(torch.flatten(x, 1))

    return InceptionV4()


def torch_inception_resnet_v2(num_classes=1000):
    """Cadene's pretrainedmodels InceptionResNetV2 (timm's, but timm calls last_linear
    ``classif``), with a global average pool instead of the 8x8 one (the same at 299x299)."""

    class Residual(tnn.Module):  # Block35 / Block17 / Block8
        def __init__(self, scale, cin, width, branches, relu=True):
            super().__init__()
            self.scale, self.relu = scale, relu
            for i, b in enumerate(branches):
                setattr(self, f"branch{i}", b)
            self.conv2d = tnn.Conv2d(width, cin, 1)

        def forward(self, x):
            out = torch.cat([m(x) for n, m in self.named_children() if n.startswith("branch")], 1)
            out = self.conv2d(out) * self.scale + x
            return torch.relu(out) if self.relu else out

    def block35(scale=0.17):
        return Residual(
            scale,
            320,
            128,
            [
                _BasicConv2d(320, 32, 1),
                _seq((320, 32, 1), (32, 32, 3, 1, 1)),
                _seq((320, 32, 1), (32, 48, 3, 1, 1), (48, 64, 3, 1, 1)),
            ],
        )

    def block17(scale=0.10):
        return Residual(
            scale,
            1088,
            384,
            [
                _BasicConv2d(1088, 192, 1),
                _seq((1088, 128, 1), (128, 160, (1, 7), 1, (0, 3)), (160, 192, (7, 1), 1, (3, 0))),
            ],
        )

    def block8(scale=0.20, relu=True):
        return Residual(
            scale,
            2080,
            448,
            [
                _BasicConv2d(2080, 192, 1),
                _seq((2080, 192, 1), (192, 224, (1, 3), 1, (0, 1)), (224, 256, (3, 1), 1, (1, 0))),
            ],
            relu,
        )

    class InceptionResNetV2(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv2d_1a = _BasicConv2d(3, 32, 3, 2)
            self.conv2d_2a = _BasicConv2d(32, 32, 3)
            self.conv2d_2b = _BasicConv2d(32, 64, 3, 1, 1)
            self.maxpool_3a = tnn.MaxPool2d(3, 2)
            self.conv2d_3b = _BasicConv2d(64, 80, 1)
            self.conv2d_4a = _BasicConv2d(80, 192, 3)
            self.maxpool_5a = tnn.MaxPool2d(3, 2)
            self.mixed_5b = _torch_concat_block(
                branch0=_BasicConv2d(192, 96, 1),
                branch1=_seq((192, 48, 1), (48, 64, 5, 1, 2)),
                branch2=_seq((192, 64, 1), (64, 96, 3, 1, 1), (96, 96, 3, 1, 1)),
                branch3=_seq(tnn.AvgPool2d(3, 1, 1, count_include_pad=False), (192, 64, 1)),
            )
            self.repeat = tnn.Sequential(*[block35() for _ in range(10)])
            self.mixed_6a = _torch_concat_block(
                branch0=_BasicConv2d(320, 384, 3, 2),
                branch1=_seq((320, 256, 1), (256, 256, 3, 1, 1), (256, 384, 3, 2)),
                branch2=tnn.MaxPool2d(3, 2),
            )
            self.repeat_1 = tnn.Sequential(*[block17() for _ in range(20)])
            self.mixed_7a = _torch_concat_block(
                branch0=_seq((1088, 256, 1), (256, 384, 3, 2)),
                branch1=_seq((1088, 256, 1), (256, 288, 3, 2)),
                branch2=_seq((1088, 256, 1), (256, 288, 3, 1, 1), (288, 320, 3, 2)),
                branch3=tnn.MaxPool2d(3, 2),
            )
            self.repeat_2 = tnn.Sequential(*[block8() for _ in range(9)])
            self.block8 = block8(scale=1.0, relu=False)
            self.conv2d_7b = _BasicConv2d(2080, 1536, 1)
            self.last_linear = tnn.Linear(1536, num_classes)

        def forward(self, x):
            for m in list(self.children())[:-1]:
                x = m(x)
            x = tnn.functional.adaptive_avg_pool2d(x, 1)
            return self.last_linear(torch.flatten(x, 1))

    return InceptionResNetV2()


def torch_zfnet(num_classes=1000):
    """fastconv.models.zfnet in torch.nn (AlexNet's module names)."""

    class ZFNet(tnn.Module):
        def __init__(self):
            super().__init__()
            lrn = lambda: tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)  # noqa: E731
            pool = lambda: tnn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
            self.features = tnn.Sequential(
                tnn.Conv2d(3, 96, 7, 2, 1),
                tnn.ReLU(),
                pool(),
                lrn(),
                tnn.Conv2d(96, 256, 5, 2),
                tnn.ReLU(),
                pool(),
                lrn(),
                tnn.Conv2d(256, 384, 3, padding=1),
                tnn.ReLU(),
                tnn.Conv2d(384, 384, 3, padding=1),
                tnn.ReLU(),
                tnn.Conv2d(384, 256, 3, padding=1),
                tnn.ReLU(),
                pool(),
            )
            self.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
            self.classifier = tnn.Sequential(
                tnn.Dropout(0.5),
                tnn.Linear(9216, 4096),
                tnn.ReLU(),
                tnn.Dropout(0.5),
                tnn.Linear(4096, 4096),
                tnn.ReLU(),
                tnn.Linear(4096, num_classes),
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return ZFNet()


def torch_nin(imagenet=False, num_classes=None):
    """fastconv.models.nin_cifar / nin_imagenet in torch.nn."""

    def mlpconv(cin, c1, c2, c3, k, stride=1, padding=0):
        return tnn.Sequential(
            tnn.Conv2d(cin, c1, k, stride, padding),
            tnn.ReLU(),
            tnn.Conv2d(c1, c2, 1),
            tnn.ReLU(),
            tnn.Conv2d(c2, c3, 1),
            tnn.ReLU(),
        )

    pool = lambda: tnn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    if imagenet:
        n = num_classes or 1000
        features = tnn.Sequential(
            mlpconv(3, 96, 96, 96, 11, 4),
            pool(),
            mlpconv(96, 256, 256, 256, 5, padding=2),
            pool(),
            mlpconv(256, 384, 384, 384, 3, padding=1),
            pool(),
            tnn.Dropout(0.5),
            mlpconv(384, 1024, 1024, n, 3, padding=1),
        )
    else:
        n = num_classes or 10
        features = tnn.Sequential(
            mlpconv(3, 192, 160, 96, 5, padding=2),
            pool(),
            tnn.Dropout(0.5),
            mlpconv(96, 192, 192, 192, 5, padding=2),
            pool(),
            tnn.Dropout(0.5),
            mlpconv(192, 192, 192, n, 3, padding=1),
        )
    return tnn.Sequential(
        OrderedDict(features=features, pool=tnn.AdaptiveAvgPool2d(1), flatten=tnn.Flatten())
    )


# fastconv.models name -> its runnable twin above, taking num_classes (keyword); the older
# models' twins are picked in bench_user.torch_twin
TWINS = {
    "inception_v3": torch_inception_v3,
    "inception_v4": torch_inception_v4,
    "inception_resnet_v2": torch_inception_resnet_v2,
    "zfnet": torch_zfnet,
    "nin_cifar": lambda num_classes=10: torch_nin(False, num_classes),
    "nin_imagenet": lambda num_classes=1000: torch_nin(True, num_classes),
}

"""PyTorch twins of fastconv's models, built from torch.nn with torchvision's module names (the
layouts of torchvision.models.resnet/alexnet/vgg/googlenet; torchvision itself is not needed).
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
                    tnn.BatchNorm2d(planes * block.expansion))
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
                tnn.Conv2d(3, 64, 11, 4, 2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
                tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
                tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(),
                tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(),
                tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2))
            self.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
            self.classifier = tnn.Sequential(
                tnn.Dropout(0.5), tnn.Linear(9216, 4096), tnn.ReLU(),
                tnn.Dropout(0.5), tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Linear(4096, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


def torch_vgg(cfg, batch_norm, num_classes=1000):
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(c, v, 3, padding=1)] + ([tnn.BatchNorm2d(v)] if batch_norm else []) + [tnn.ReLU()]
            c = v
    return tnn.Sequential(OrderedDict(
        features=tnn.Sequential(*layers), avgpool=tnn.AdaptiveAvgPool2d((7, 7)),
        classifier=tnn.Sequential(tnn.Linear(25088, 4096), tnn.ReLU(), tnn.Dropout(),
                                  tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(),
                                  tnn.Linear(4096, num_classes))))


def torch_googlenet(num_classes=1000, aux_logits=True):
    def basic(cin, cout, **kw):
        return tnn.Sequential(OrderedDict(conv=tnn.Conv2d(cin, cout, bias=False, **kw),
                                          bn=tnn.BatchNorm2d(cout, eps=0.001)))

    def inception(cin, c1, c3r, c3, c5r, c5, pp):
        return tnn.ModuleDict(OrderedDict(
            branch1=basic(cin, c1, kernel_size=1),
            branch2=tnn.Sequential(basic(cin, c3r, kernel_size=1), basic(c3r, c3, kernel_size=3, padding=1)),
            branch3=tnn.Sequential(basic(cin, c5r, kernel_size=1), basic(c5r, c5, kernel_size=3, padding=1)),
            branch4=tnn.Sequential(tnn.MaxPool2d(3, 1, 1, ceil_mode=True), basic(cin, pp, kernel_size=1))))

    def aux(cin):
        return tnn.ModuleDict(OrderedDict(conv=basic(cin, 128, kernel_size=1), fc1=tnn.Linear(2048, 1024),
                                          fc2=tnn.Linear(1024, num_classes)))

    m = OrderedDict(
        conv1=basic(3, 64, kernel_size=7, stride=2, padding=3), conv2=basic(64, 64, kernel_size=1),
        conv3=basic(64, 192, kernel_size=3, padding=1),
        inception3a=inception(192, 64, 96, 128, 16, 32, 32), inception3b=inception(256, 128, 128, 192, 32, 96, 64),
        inception4a=inception(480, 192, 96, 208, 16, 48, 64), inception4b=inception(512, 160, 112, 224, 24, 64, 64),
        inception4c=inception(512, 128, 128, 256, 24, 64, 64), inception4d=inception(512, 112, 144, 288, 32, 64, 64),
        inception4e=inception(528, 256, 160, 320, 32, 128, 128),
        inception5a=inception(832, 256, 160, 320, 32, 128, 128), inception5b=inception(832, 384, 192, 384, 48, 128, 128))
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
                tnn.Conv2d(1, 6, 5), tnn.Tanh(), tnn.AvgPool2d(2, 2), tnn.Tanh(),
                tnn.Conv2d(6, 16, 5), tnn.Tanh(), tnn.AvgPool2d(2, 2), tnn.Tanh(),
                tnn.Conv2d(16, 120, 5), tnn.Tanh())
            self.classifier = tnn.Sequential(tnn.Linear(120, 84), tnn.Tanh(), tnn.Linear(84, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    return LeNet5()

"""The architectures of fastconv's seed material, on fastconv.nn. All take ``num_classes``;
where torchvision has the model, state_dict keys and shapes equal torchvision's (Inception-v4
and Inception-ResNet-v2: Cadene's pretrainedmodels')."""

from .alexnet import AlexNet, alexnet, alexnet_owt
from .googlenet import GoogLeNet, googlenet, googlenet_v1
from .inception import Inception3, inception_v3
from .inception_v4 import InceptionResNetV2, InceptionV4, inception_resnet_v2, inception_v4
from .lenet import LeNet5, lenet5
from .nin import NiN, nin_cifar, nin_imagenet
from .overfeat import overfeat_fast
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152, se_resnet50
from .vgg import VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn, vgg_a
from .zfnet import ZFNet, zfnet

MODELS = {
    f.__name__: f
    for f in (
        lenet5,
        alexnet,
        alexnet_owt,
        overfeat_fast,
        vgg11,
        vgg11_bn,
        vgg13,
        vgg13_bn,
        vgg16,
        vgg16_bn,
        vgg19,
        vgg19_bn,
        vgg_a,
        googlenet,
        googlenet_v1,
        resnet18,
        resnet34,
        resnet50,
        resnet101,
        resnet152,
        se_resnet50,
        inception_v3,
        inception_v4,
        inception_resnet_v2,
        zfnet,
        nin_cifar,
        nin_imagenet,
    )
}


def get_model(name, **kwargs):
    """Build a model by name (see ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = [
    "MODELS",
    "get_model",
    "AlexNet",
    "GoogLeNet",
    "Inception3",
    "InceptionResNetV2",
    "InceptionV4",
    "LeNet5",
    "NiN",
    "ResNet",
    "VGG",
    "ZFNet",
] + list(MODELS)

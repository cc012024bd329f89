"""What input each model in fastconv.models accepts: channels and the range of square image
sizes its forward runs on (found by trying every size; tests/test_port_cli.py checks the edges),
and how ``fastconv train`` and ``fastconv bench model`` pick a size from that."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ModelInput", "MODEL_INPUTS", "model_input"]


class ModelInput(NamedTuple):
    channels: int  # input channels the first convolution takes (LeNet-5: any, 1 by default)
    min_size: int  # smallest height/width the forward runs on
    max_size: int | None  # largest, for a classifier sized for one input (Flatten + Linear)
    native: int  # the size the architecture was published for

    def fits(self, size: int) -> bool:
        return size >= self.min_size and (self.max_size is None or size <= self.max_size)

    def size_for(self, size: int) -> int:
        """The size to resize an image side of ``size`` to: itself when the model takes it, the
        smallest size the model takes when it is smaller, else (a fixed-size model) the native
        one."""
        if self.fits(size):
            return size
        return self.min_size if size < self.min_size else self.native

    def describe(self) -> str:
        sizes = (
            f"{self.min_size}x{self.min_size} or larger"
            if self.max_size is None
            else f"{self.min_size}x{self.min_size} to {self.max_size}x{self.max_size}"
        )
        return f"{self.channels} channel{'s' * (self.channels > 1)}, {sizes}"


# Adaptive average pooling before the classifier (torchvision's AlexNet, VGG, GoogLeNet, ResNet)
# leaves only the lower bound: each stride-2 stage must keep at least one pixel.
_RESNET = ModelInput(3, 1, None, 224)  # 7x7/2 conv, 3x3/2 pool and three stride-2 stages, padded
_VGG = ModelInput(3, 32, None, 224)  # five 2x2/2 max-pools: 32 -> 1
_INCEPTION = ModelInput(3, 75, None, 299)
MODEL_INPUTS = {
    "lenet5": ModelInput(1, 32, 35, 32),  # C5's 5x5 kernel must meet a 5x5 map: one output
    "alexnet": ModelInput(3, 63, None, 224),  # 11x11/4 conv and three 3x3/2 pools: 63 -> 1
    "alexnet_owt": ModelInput(3, 223, 254, 224),  # Flatten + Linear(256*6*6)
    "overfeat_fast": ModelInput(3, 231, 262, 231),  # Flatten + Linear(1024*6*6)
    "vgg11": _VGG,
    "vgg11_bn": _VGG,
    "vgg13": _VGG,
    "vgg13_bn": _VGG,
    "vgg16": _VGG,
    "vgg16_bn": _VGG,
    "vgg19": _VGG,
    "vgg19_bn": _VGG,
    "vgg_a": ModelInput(3, 224, 255, 224),  # Flatten + Linear(512*7*7)
    "googlenet": ModelInput(3, 15, None, 224),
    "googlenet_v1": ModelInput(3, 193, 224, 224),  # 7x7 average pool + Linear(1024)
    "resnet18": _RESNET,
    "resnet34": _RESNET,
    "resnet50": _RESNET,
    "resnet101": _RESNET,
    "resnet152": _RESNET,
    "se_resnet50": _RESNET,
    # unpadded 3x3/2 and 3x3 convs and pools in the stem and the grid reductions: 75 -> 1x1 at
    # the end (Inception v3's auxiliary head, in training mode, needs 299: 17x17 at Mixed_6e)
    "inception_v3": _INCEPTION,
    "inception_v4": _INCEPTION,
    "inception_resnet_v2": _INCEPTION,
    "zfnet": ModelInput(3, 47, None, 224),  # 7x7/2, 5x5/2 and three 3x3/2 ceil-mode pools
    "nin_cifar": ModelInput(3, 4, None, 32),  # two 3x3/2 ceil-mode pools, global average pool
    "nin_imagenet": ModelInput(3, 39, None, 224),  # 11x11/4 conv, three 3x3/2 ceil-mode pools
}


def model_input(name: str) -> ModelInput:
    """The entry for a model of fastconv.models.MODELS (KeyError for another name)."""
    return MODEL_INPUTS[name]

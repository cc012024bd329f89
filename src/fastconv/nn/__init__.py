"""Neural-network layers on fastconv's autograd, named as ``torch.nn`` so weights port both ways."""

from . import functional, init, utils
from .activation import (
    ELU,
    GELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv1d, Conv2d, ConvTranspose2d
from .layers import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    Dropout,
    Dropout2d,
    Flatten,
    Identity,
    Linear,
    MSELoss,
    NLLLoss,
)
from .module import Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d, LocalResponseNorm
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d
from .summary import summary  # the function: fastconv.nn.summary(model, input_shape)

__all__ = [
    "functional",
    "init",
    "utils",
    "Module",
    "Parameter",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "MaxUnpool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "LocalResponseNorm",
    "Linear",
    "Dropout",
    "Dropout2d",
    "ReLU",
    "ReLU6",
    "Hardtanh",
    "LeakyReLU",
    "ELU",
    "Tanh",
    "Sigmoid",
    "Hardsigmoid",
    "Hardswish",
    "SiLU",
    "GELU",
    "Softmax",
    "LogSoftmax",
    "Flatten",
    "Identity",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCEWithLogitsLoss",
    "BCELoss",
    "MSELoss",
    "summary",
]

"""Neural-network layers on fastconv's autograd, named as ``torch.nn`` so weights port both ways."""
from . import functional, init
from .conv import Conv1d, Conv2d
from .layers import (ELU, CrossEntropyLoss, Dropout, Flatten, Identity, LeakyReLU, Linear,
                     LogSoftmax, MSELoss, ReLU, Sigmoid, Softmax, Tanh)
from .module import Module, ModuleList, Parameter, Sequential
from .normalization import BatchNorm1d, BatchNorm2d, LocalResponseNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d

__all__ = ["functional", "init", "Module", "Parameter", "Sequential", "ModuleList", "Conv1d",
           "Conv2d", "MaxPool2d", "MaxUnpool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d",
           "BatchNorm2d", "LocalResponseNorm", "Linear", "Dropout", "ReLU", "LeakyReLU", "ELU",
           "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "Flatten", "Identity", "CrossEntropyLoss",
           "MSELoss"]

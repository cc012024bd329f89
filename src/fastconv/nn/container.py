"""The containers: Sequential, ModuleList and ModuleDict, as ``torch.nn``'s."""

from __future__ import annotations

from collections import OrderedDict

from .. import autograd
from .activation import ReLU
from .conv import Conv2d
from .module import Module, _hooked
from .normalization import BatchNorm1d, BatchNorm2d

__all__ = ["Sequential", "ModuleList", "ModuleDict"]


class _Indexed(Module):
    """What Sequential and ModuleList share: children in order, appended, counted, iterated and
    indexed (a slice gives a container of the same kind)."""

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return self._of(items[idx])
        return items[idx][1]


class Sequential(_Indexed):
    """Modules applied in order; children are named "0", "1", ... as in PyTorch
    (or by the keys of an OrderedDict)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    @staticmethod
    def _of(items):
        return Sequential(OrderedDict(items))

    def forward(self, x):
        mods = list(self._modules.values())
        i, n = 0, len(mods)
        while i < n:
            m = mods[i]
            if i + 1 < n and _fuses(m, mods[i + 1]):
                x = m._forward_relu(x)  # (one node; the same values, gradients and statistics)
                i += 2
            else:
                x = m(x)
                i += 1
        return x


# Modules whose ReLU Sequential fuses into them (their _forward_relu): a convolution's in its
# output stage, a batch norm's in its one pass each way
_RELU_INTO = (Conv2d, BatchNorm1d, BatchNorm2d)


def _fuses(m, nxt):
    """Whether Sequential runs m then nxt as one node (m._forward_relu): m exactly one of
    _RELU_INTO and nxt exactly ReLU (a subclass may have its own forward), neither with hooks
    (they would see m's own output), and no forward being captured (fastconv.inference traces
    the ops one by one and fuses them itself)."""
    return (
        type(m) in _RELU_INTO
        and type(nxt) is ReLU
        and not _hooked(m)
        and not _hooked(nxt)
        and autograd._tracer.record is None
    )


class ModuleList(_Indexed):
    """A list of modules, registered as children "0", "1", ... (no forward of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules or ():
            self.append(m)

    @staticmethod
    def _of(items):
        return ModuleList([m for _, m in items])

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self


class ModuleDict(Module):
    """Modules by name, in insertion order, registered as children under their keys (as
    ``torch.nn.ModuleDict``: indexing, ``in``, ``len``, iteration over the keys, ``keys``,
    ``values``, ``items``, ``update``, ``pop``, ``clear``; no forward of its own)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        if key not in self._modules:
            raise KeyError(key)
        return self._modules[key]

    def __setitem__(self, key, module):
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict keys must be strings, got {type(key).__name__}")
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key):
        module = self[key]
        del self[key]
        return module

    def clear(self):
        self._modules.clear()

    def update(self, modules):
        """Add (or replace) modules from a mapping or an iterable of (key, module) pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for entry in items:
            if len(entry) != 2:
                raise ValueError(f"ModuleDict.update: expected (key, module) pairs, got {entry!r}")
            self[entry[0]] = entry[1]

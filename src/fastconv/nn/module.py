"""Module and Parameter, with PyTorch's naming of parameters and buffers, its hooks and its
``to``/``get_submodule``/``requires_grad_`` (the containers are in container.py)."""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .. import _memory
from ..autograd import Tensor
from . import hooks as _hooks

__all__ = ["Parameter", "Module"]

_HOOK_DICTS = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_backward_hooks",
)

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires grad by default)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _as_array(value):
    """An ndarray from anything np.asarray takes. A torch tensor is detached and moved to the CPU
    first; its reduced-precision floats (float16, bfloat16, float8) widen exactly to float32 and
    complex32 to complex64, as NumPy has no bfloat16, float8 or complex32."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:
            value = value.float()
        elif value.is_complex() and value.element_size() < 8:
            value = value.cfloat()
    return np.asarray(value)


def _checked_value(key, value):
    """state_dict[key] as a numeric ndarray, or an error message naming the key and dtype."""
    try:
        arr = _as_array(value)
    except (TypeError, ValueError, RuntimeError) as e:
        return None, f"{key}: cannot be read as an array ({type(value).__name__}: {e})"
    if arr.dtype.kind not in "biufc":
        return None, f"{key}: dtype {getattr(value, 'dtype', arr.dtype)} is not numeric"
    return arr, None


def _hooked(module) -> bool:
    """Whether a forward (pre-)hook or a full backward hook is registered on module (its call
    then goes through hooks.call; nn.Sequential fuses no pair with one)."""
    d = module.__dict__
    return bool(d.get("_forward_pre_hooks") or d.get("_forward_hooks") or d.get("_backward_hooks"))


class Module:
    """Base class: assign Parameters, sub-Modules and (registered) buffers as attributes."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        for name in _HOOK_DICTS:
            object.__setattr__(self, name, OrderedDict())

    # --- attribute bookkeeping ------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, (Parameter, Module)):
            for d in (self.__dict__, params, buffers, modules):
                d.pop(name, None)
            (params if isinstance(value, Parameter) else modules)[name] = value
        elif name in buffers:
            buffers[name] = None if value is None else np.asarray(value)
        elif name in params or name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to '{name}': it holds a "
                    f"{'Parameter' if name in params else 'Module'} (or None)"
                )
            (params if name in params else modules)[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for d in ("_parameters", "_buffers", "_modules"):
            members = self.__dict__.get(d)
            if members is not None and name in members:
                return members[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"parameter '{name}' must be a Parameter or None, got {type(param).__name__}"
            )
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name: str, array: np.ndarray | None, persistent: bool = True) -> None:
        """A non-trainable array saved in the state_dict (running statistics, for example)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = None if array is None else np.asarray(array)
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(
                f"add_module: '{name}' must be a Module or None, got {type(module).__name__}"
            )
        self._modules[name] = module

    register_module = add_module

    # --- forward and hooks ----------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        was_on = _memory.enter()  # arrays made in here come from the array cache (_memory.py)
        try:
            if _hooked(self):
                return _hooks.call(self, args, kwargs)
            return self.forward(*args, **kwargs)
        finally:
            _memory.leave(was_on)

    def _hook_dicts(self):
        for name in _HOOK_DICTS:  # (a module unpickled from before hooks existed has none)
            if name not in self.__dict__:
                object.__setattr__(self, name, OrderedDict())

    def register_forward_pre_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False
    ) -> _hooks.RemovableHandle:
        """``hook(module, args)`` runs before each forward; a non-None result replaces ``args``
        (a single value becomes ``(value,)``). ``with_kwargs=True``: ``hook(module, args,
        kwargs)``, returning None or ``(args, kwargs)``. Returns a handle: ``handle.remove()``."""
        self._hook_dicts()
        return _hooks.add_hook(
            self._forward_pre_hooks,
            hook,
            prepend,
            self._forward_pre_hooks_with_kwargs if with_kwargs else None,
        )

    def register_forward_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False
    ) -> _hooks.RemovableHandle:
        """``hook(module, args, output)`` runs after each forward; a non-None result replaces the
        output. ``with_kwargs=True``: ``hook(module, args, kwargs, output)``. Returns a handle."""
        self._hook_dicts()
        return _hooks.add_hook(
            self._forward_hooks,
            hook,
            prepend,
            self._forward_hooks_with_kwargs if with_kwargs else None,
        )

    def register_full_backward_hook(
        self, hook: Callable[..., Any], prepend: bool = False
    ) -> _hooks.RemovableHandle:
        """``hook(module, grad_input, grad_output)`` runs once per call of the module, when the
        gradients with respect to its inputs are known: one entry per positional argument and
        one per output (ndarrays; None for arguments that are not Tensors requiring grad, or got
        no gradient). A returned tuple replaces grad_input. Hooks run only on calls made with grad
        mode on. Returns a handle. (See ``fastconv.nn.hooks``.)"""
        self._hook_dicts()
        return _hooks.add_hook(self._backward_hooks, hook, prepend)

    # --- traversal ------------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{n}" if name else n, m)
                for n, m in module._modules.items()
                if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def get_submodule(self, target: str) -> Module:
        """The sub-module at the dotted path ``target`` ("" is self), as PyTorch's."""
        if target == "":
            return self
        module = self
        for item in target.split("."):
            if item not in module.__dict__.get("_modules", {}) or module._modules[item] is None:
                raise AttributeError(
                    f"get_submodule({target!r}): {type(module).__name__} has no sub-module '{item}'"
                )
            module = module._modules[item]
        return module

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at the dotted path ``target`` ("layer1.0.conv1.weight")."""
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        if module._parameters.get(name) is None:
            raise AttributeError(
                f"get_parameter({target!r}): {type(module).__name__} has no parameter '{name}'"
            )
        return module._parameters[name]

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def _named_members(self, kind, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, value in getattr(module, kind).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, np.ndarray]]:
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        return (b for _, b in self.named_buffers(recurse=recurse))

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # --- state ----------------------------------------------------------------------------------
    def _state_entries(self):
        """(key, owning module, attribute, kind) for every state_dict entry, in PyTorch's order."""
        for prefix, module in self.named_modules():
            dot = prefix + "." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    yield dot + name, module, name, "param"
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    yield dot + name, module, name, "buffer"

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Ordered name -> ndarray (the live arrays, as PyTorch's state_dict shares storage)."""
        out = OrderedDict()
        for key, module, name, kind in self._state_entries():
            out[key] = module._parameters[name].data if kind == "param" else module._buffers[name]
        return out

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy arrays in place, converted to each entry's dtype (as PyTorch's copy_); shapes
        must match. Nothing is copied unless every entry can be.

        Values may be ndarrays, torch tensors of any numeric dtype (bfloat16 included) or anything
        ``np.asarray`` accepts, so a PyTorch state_dict loads as it is. Returns (missing_keys,
        unexpected_keys); ``strict`` raises on either.
        """
        entries = {key: (module, name, kind) for key, module, name, kind in self._state_entries()}
        missing = [k for k in entries if k not in state_dict]
        unexpected = [k for k in state_dict if k not in entries]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        values, bad_dtype, bad_shape = {}, [], []
        for key, (module, name, kind) in entries.items():  # check everything, then copy
            if key not in state_dict:
                continue
            value, error = _checked_value(key, state_dict[key])
            target = module._parameters[name].data if kind == "param" else module._buffers[name]
            if error:
                bad_dtype.append(error)
            elif value.shape != target.shape:
                bad_shape.append(
                    f"{key}: checkpoint shape {value.shape}, model shape {target.shape}"
                )
            else:
                values[key] = target, value
        if bad_dtype:
            raise TypeError(
                "load_state_dict: " + "; ".join(bad_dtype) + ". Values must be bool, "
                "integer, floating (float16 and bfloat16 included) or complex; they "
                "are converted to each entry's dtype, as PyTorch's load_state_dict does"
            )
        if bad_shape:
            raise ValueError("load_state_dict: size mismatch for " + "; ".join(bad_shape))
        for target, value in values.values():
            target[...] = value
        return IncompatibleKeys(missing, unexpected)

    # --- modes, grads, dtype --------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` on every parameter (freeze with False); returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """PyTorch's ``to``: ``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(tensor)``
        or the keywords ``device``/``dtype`` (``non_blocking`` is ignored). Floating-point
        parameters (and their gradients) and buffers are cast to ``dtype`` in place; others stay.
        The device must be the CPU ("cpu", "cpu:0" or a torch.device("cpu")). Returns self."""
        dtype = _to_args(args, kwargs)
        if dtype is None:
            return self
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None and np.issubdtype(p.dtype, np.floating) and p.dtype != dtype:
                    p.data = p.data.astype(dtype)
                    if p.grad is not None:
                        p.grad = p.grad.astype(dtype)
            for name, b in m._buffers.items():
                if b is not None and np.issubdtype(b.dtype, np.floating):
                    m._buffers[name] = b.astype(dtype, copy=False)
        return self

    def cpu(self) -> Module:
        """Self: fastconv runs on the CPU."""
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # --- repr -----------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = [extra] if extra else []
        return f"{type(self).__name__}(\n  " + "\n  ".join(head + lines) + "\n)"


def _device(v):
    """True for the CPU (as a string or a torch.device), None when v is no device; other
    devices raise."""
    kind = getattr(v, "type", None) if type(v).__name__ == "device" else v
    if not isinstance(kind, str):
        return None
    name = kind.split(":")[0]
    if name == "cpu":
        return True
    if name in ("cuda", "mps", "xpu", "meta", "hip", "xla", "vulkan", "ipu", "hpu", "mtia"):
        raise ValueError(f"to: fastconv runs on the CPU only, got device {str(v)!r}")
    return None


def _dtype(v):
    """v as a floating NumPy dtype (a NumPy dtype or name, a torch dtype, or a tensor's dtype)."""
    if hasattr(v, "dtype") and not isinstance(v, (np.dtype, type)):
        v = v.dtype  # a tensor or an array: its dtype
    name = str(v)
    if name.startswith("torch."):
        v = name[len("torch.") :]
    try:
        dtype = np.dtype(v)
    except TypeError:
        raise TypeError(f"to: dtype must be a NumPy or torch floating dtype, got {v!r}") from None
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"to: only floating-point dtypes are accepted (as PyTorch's nn.Module.to), got {dtype}"
        )
    return dtype


def _to_args(args, kwargs):
    """The dtype Module.to(*args, **kwargs) casts to, or None (device only)."""
    unknown = set(kwargs) - {"device", "dtype", "non_blocking", "copy", "memory_format"}
    if unknown:
        raise TypeError(f"to: unexpected keyword arguments {sorted(unknown)}")
    if len(args) > 2:
        raise TypeError(f"to: at most a device and a dtype, got {len(args)} arguments")
    dtype = kwargs.get("dtype")
    if kwargs.get("device") is not None and not _device(kwargs["device"]):
        raise ValueError(f"to: device must be the CPU, got {kwargs['device']!r}")
    for a in args:
        if isinstance(a, (bool, np.bool_)) or a is None:
            raise TypeError(f"to: expected a device or a dtype, got {a!r}")
        if _device(a):
            continue
        if dtype is not None:
            raise TypeError("to: dtype given twice")
        dtype = a
    return None if dtype is None else _dtype(dtype)

"""Module hooks with PyTorch's semantics: forward pre-hooks, forward hooks and full backward
hooks, each removable through the handle its ``register_*`` method returns.

A full backward hook runs once per call of the module, when the gradients with respect to the
module's inputs are known: ``hook(module, grad_input, grad_output)``, one entry per positional
argument of the call (None where it is not a Tensor that requires grad, or got no gradient) and
one per output Tensor. Gradients are ndarrays, as ``.grad`` is in fastconv. A tuple the hook
returns replaces grad_input.

It works as PyTorch's ``BackwardHook``: the inputs (and the outputs) pass through an identity
node that joins them, so its backward runs once, after every one of their gradients arrived.
Here that node is a :class:`_Join`, which every passed-through tensor (a :class:`_Fork`) reads;
the forks hand their gradients over to it and it hands them on to the tensors it joined.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict

import numpy as np

from ..autograd import Function, Tensor, is_grad_enabled

__all__ = ["RemovableHandle"]

_ids = itertools.count()


class RemovableHandle:
    """What ``register_*_hook`` returns: ``handle.remove()`` unregisters the hook (also on
    leaving a ``with handle:`` block)."""

    def __init__(self, hooks: OrderedDict, extra: OrderedDict | None = None):
        self.id = next(_ids)
        self._hooks = weakref.ref(hooks)
        self._extra = None if extra is None else weakref.ref(extra)

    def remove(self):
        for ref in (self._hooks, self._extra):
            d = ref() if ref is not None else None
            if d is not None:
                d.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def add_hook(hooks: OrderedDict, hook, prepend=False, flag_set: OrderedDict | None = None):
    """Register hook in hooks (first if prepend); flag_set records a per-hook option."""
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    handle = RemovableHandle(hooks, flag_set)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    if flag_set is not None:
        flag_set[handle.id] = True
    return handle


# ----------------------------------------------------------------------------------------------
# the join node of a full backward hook


class _Box:
    """The gradients a _Join collects, and what it does with them once all are in."""

    def __init__(self, n, release):
        self.grads = [None] * n
        self.release = release


class _Join(Function):
    """One node for several tensors: its forward gives a token (a 0-d zero), its backward runs
    once, after each _Fork of the token passed its gradient into the box."""

    @staticmethod
    def forward(ctx, *arrays, box):
        ctx.box = box
        return np.zeros(())

    @staticmethod
    def backward(ctx, g):
        return tuple(ctx.box.release(ctx.box.grads))


class _Fork(Function):
    """The tensor ``source`` again (the same array), read from the token: its gradient goes into
    the box, and a zero to the token."""

    @staticmethod
    def forward(ctx, token, source, box, index):
        ctx.box, ctx.index = box, index
        return source

    @staticmethod
    def backward(ctx, g):
        ctx.box.grads[ctx.index] = g
        return np.zeros(())


def _join(tensors, release):
    """New tensors equal to ``tensors`` (all requiring grad), whose gradients reach ``tensors``
    only through ``release(grads)``, called once with all of them (None where none came)."""
    box = _Box(len(tensors), release)
    token = _Join.apply(*tensors, box=box)
    return [_Fork.apply(token, source=t.data, box=box, index=i) for i, t in enumerate(tensors)]


def _as_grad(g, like, what):
    if g is None:
        return None
    g = np.asarray(g.data if isinstance(g, Tensor) else g)
    if g.shape != like.shape:
        raise ValueError(
            f"full backward hook: {what} has shape {g.shape}, the tensor has shape {like.shape}"
        )
    return g.astype(like.dtype, copy=False)


class BackwardHook:
    """A module call's full backward hooks: wrap its inputs before forward and its outputs after
    (as ``torch.utils.hooks.BackwardHook``)."""

    def __init__(self, module, hooks):
        self.module, self.hooks = module, list(hooks)
        self.n_inputs, self.input_index, self.grad_output = 0, None, None

    def _call(self, grad_input):
        for hook in self.hooks:
            out = hook(self.module, grad_input, self.grad_output)
            if out is None:
                continue
            out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
            if len(out) != len(grad_input):
                raise ValueError(
                    f"full backward hook {getattr(hook, '__name__', hook)} returned "
                    f"{len(out)} gradients for {len(grad_input)} inputs"
                )
            grad_input = out
        return grad_input

    def setup_input(self, args):
        self.n_inputs = len(args)
        index = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not (is_grad_enabled() and index):
            return args
        self.input_index = index
        inputs = [args[i] for i in index]

        def release(grads):
            grad_input = [None] * self.n_inputs
            for i, g in zip(index, grads):
                grad_input[i] = g
            grad_input = self._call(tuple(grad_input))
            return [_as_grad(grad_input[i], t, f"grad_input[{i}]") for i, t in zip(index, inputs)]

        wrapped = list(args)
        for i, t in zip(index, _join(inputs, release)):
            wrapped[i] = t
        return tuple(wrapped)

    def setup_output(self, result):
        single = isinstance(result, Tensor)
        outs = [result] if single else list(result) if isinstance(result, (tuple, list)) else None
        if outs is None or not is_grad_enabled():
            return result
        index = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and o.requires_grad]
        if not index:
            return result

        def release(grads):
            grad_output = [None] * len(outs)
            for i, g in zip(index, grads):
                grad_output[i] = g
            self.grad_output = tuple(grad_output)
            if self.input_index is None:  # no input needs a gradient: the hooks run now
                got = self._call((None,) * self.n_inputs)
                if any(g is not None for g in got):
                    raise ValueError(
                        "a full backward hook of a module none of whose inputs "
                        "requires grad must return None (or only Nones)"
                    )
            return list(grads)

        for i, t in zip(index, _join([outs[i] for i in index], release)):
            outs[i] = t
        return outs[0] if single else type(result)(outs)


def call(module, args, kwargs):
    """module(*args, **kwargs) with its hooks, in PyTorch's order: forward pre-hooks (each may
    replace the arguments), backward hooks' input side, forward, forward hooks (each may replace
    the result), backward hooks' output side."""
    for hid, hook in list(module._forward_pre_hooks.items()):
        if hid in module._forward_pre_hooks_with_kwargs:
            out = hook(module, args, kwargs)
            if out is not None:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise TypeError(
                        "a forward pre-hook registered with_kwargs=True must return "
                        f"None or a tuple (args, kwargs), got {type(out).__name__}"
                    )
                args, kwargs = out
        else:
            out = hook(module, args)
            if out is not None:
                args = out if isinstance(out, tuple) else (out,)
    bw = BackwardHook(module, module._backward_hooks.values()) if module._backward_hooks else None
    if bw is not None:
        args = bw.setup_input(tuple(args))
    result = module.forward(*args, **kwargs)
    for hid, hook in list(module._forward_hooks.items()):
        if hid in module._forward_hooks_with_kwargs:
            out = hook(module, args, kwargs, result)
        else:
            out = hook(module, args, result)
        if out is not None:
            result = out
    if bw is not None:
        result = bw.setup_output(result)
    return result

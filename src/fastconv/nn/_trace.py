"""One traced forward of a model: every leaf module's call, in call order, with its input and output
arrays (forward hooks). Shared by ``nn.summary``, ``nn.utils.fc_to_conv`` and
``fastconv.visualize.deconvnet``; the last two also check that the calls form a chain."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..autograd import Tensor, no_grad

__all__ = ["Call", "trace", "check_chain"]


class Call(NamedTuple):
    """One call of a leaf module: its dotted name, the module, its positional arguments'
    arrays (None for a non-Tensor argument) and its output's array (the first of a tuple)."""

    name: str
    module: Any
    inputs: tuple
    output: np.ndarray


def _array(v):
    if isinstance(v, Tensor):
        return v.data
    return v if isinstance(v, np.ndarray) else None


def leaves(model):
    """(name, module) of every module without children (the model itself if it has none)."""
    found = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    return found


def trace(model, x):
    """Run ``model(x)`` once in eval mode without a graph and return (list of Call, the output
    array). Every module's train/eval mode is restored afterwards and the hooks removed."""
    calls = []
    names = leaves(model)
    handles = []

    def hook_for(name):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            calls.append(Call(name, module, tuple(_array(a) for a in args), _array(out)))

        return hook

    modes = [(m, m.training) for m in model.modules()]
    try:
        for name, m in names:
            handles.append(m.register_forward_hook(hook_for(name)))
        model.eval()
        with no_grad():
            out = model(x if isinstance(x, Tensor) else Tensor(x))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:  # each module's own mode back (a mix stays a mix)
            object.__setattr__(m, "training", mode)
    return calls, _array(out[0] if isinstance(out, tuple) else out)


def _same(a, b):
    """a is b, or a view of the same elements (a reshape: flatten)."""
    return a is b or (
        a is not None and b is not None and a.size == b.size and np.may_share_memory(a, b)
    )


def check_chain(calls, x, upto=None, output=None, what="this"):
    """Raise ValueError unless calls[:upto + 1] are a chain: each call's one argument is the
    previous call's output (or the model input for the first), perhaps reshaped; with ``output``,
    the last call's output must be the model's output too."""
    last = len(calls) - 1 if upto is None else upto
    prev, prev_name = x, "the model's input"
    for call in calls[: last + 1]:
        if len(call.inputs) != 1 or not _same(call.inputs[0], prev):
            raise ValueError(
                f"{what} needs a model whose leaf modules run one after another, each "
                f"on the previous one's output (a Sequential-style chain): "
                f"{call.name or 'the model'} ({type(call.module).__name__}) does not "
                f"take the output of {prev_name} as its only input (residual "
                f"additions, concatenations or functional ops between modules break "
                f"the chain)"
            )
        prev, prev_name = call.output, f"{call.name} ({type(call.module).__name__})"
    if output is not None and not _same(output, prev):
        raise ValueError(
            f"{what} needs the model's output to be the output of its last leaf "
            f"module, {prev_name}; the model's forward computes more after it"
        )

"""Optimizers and learning-rate schedules with PyTorch's names, defaults, rules and state_dicts.

Parameters are updated in place (``p.data``), so a model's state_dict arrays stay the same
objects. SGD, Adam and AdamW run one threaded pass over all of a group's parameters of a dtype
(fastconv's kernel, csrc/optim.cpp), with PyTorch's formulas and rounding: float64 SGD is bitwise
``torch.optim.SGD``; Adam/AdamW bitwise PyTorch's formula with correctly rounded square roots
(torch's CPU ``sqrt`` is an ulp off in about 1% of elements, so those updates can differ by an
ulp). RMSprop and Adagrad are PyTorch's formulas in NumPy, in place (float64 within 1e-12 of
torch). Each optimizer holds ``param_groups`` (dicts with "params" and the hyper-parameters; a
schedule changes ``group["lr"]``) and a per-parameter ``state``; ``step(closure)`` and
``add_param_group`` behave as PyTorch's.

Schedules (StepLR, MultiStepLR, ExponentialLR, LinearLR, CosineAnnealingLR, LambdaLR, OneCycleLR,
SequentialLR, ReduceLROnPlateau) compute PyTorch's learning rates, in its recursive form where it
uses one, so ``get_last_lr()`` matches torch's step for step.

``state_dict()``/``load_state_dict()`` of optimizers and schedules have PyTorch's format, so a
run can stop and resume exactly (``fastconv.train.save_checkpoint`` writes them to one file).
"""

from __future__ import annotations

import copy
import itertools
import math
import types
import warnings
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import _core
from .autograd import Tensor, enable_grad

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "LRScheduler",
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "LinearLR",
    "CosineAnnealingLR",
    "LambdaLR",
    "OneCycleLR",
    "SequentialLR",
    "ReduceLROnPlateau",
]


class Optimizer:
    """Base class of the optimizers: ``param_groups`` (dicts with "params" and the
    hyper-parameters, missing ones taken from ``defaults``) and a per-parameter ``state``.

    ``params`` is an iterable of parameters (objects with ``.data`` and ``.grad``, such as
    ``fastconv.nn.Parameter``), of ``(name, parameter)`` pairs (``model.named_parameters()``; the
    names go to the group's "param_names"), or of dicts, one per parameter group."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError(
                f"params given to the optimizer must be an iterable of parameters or "
                f"dicts, got a single {type(params).__name__}"
            )
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}  # id(param) -> dict
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (PyTorch's rules): ``param_group["params"]`` is one parameter or
        an ordered iterable of them (or of ``(name, parameter)`` pairs); hyper-parameters it lacks
        come from ``defaults``. A parameter already in another group raises ValueError; a set of
        parameters (no order) raises TypeError. The caller's dict is not modified."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(
                f"param_group must have a 'params' entry, got keys {sorted(map(str, param_group))}"
            )
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters must be an ordered collection (a list), not a "
                "set: a set's order changes between runs"
            )
        else:
            params = list(params)
        named = [isinstance(p, tuple) for p in params]
        if any(named) and not all(named):
            raise ValueError(
                "the parameters of a group must all be (name, parameter) pairs or "
                "all plain parameters"
            )
        names = [p[0] for p in params] if params and all(named) else None
        tensors = [p[1] for p in params] if names is not None else params
        for p in tensors:
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(
                    f"an optimizer updates parameters (objects with .data and .grad "
                    f"such as fastconv.nn.Parameter), got a {type(p).__name__}"
                )
        group = {**self.defaults, **param_group, "params": tensors}
        if names is not None:
            group["param_names"] = names
        ids = {id(p) for p in tensors}
        if len(ids) != len(tensors):
            warnings.warn(
                "a parameter group lists a parameter more than once; it is updated "
                "once per listing (PyTorch will make this an error)",
                stacklevel=3,
            )
        for i, other in enumerate(self.param_groups):
            if ("param_names" in other) != ("param_names" in group):
                raise ValueError(
                    "all parameter groups must be given with names or all without "
                    "(named_parameters() or parameters())"
                )
            if any(id(p) in ids for p in other["params"]):
                raise ValueError(
                    f"some parameters appear in more than one parameter group "
                    f"(already in param_groups[{i}])"
                )
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (``set_to_none``, the default, as PyTorch) or zero it
        in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def _params_with_grad(self, group):
        for p in group["params"]:
            if p.grad is not None:
                yield p, p.grad, self.state.setdefault(id(p), {})

    def _by_dtype(self, group):
        """The group's parameters that have a gradient, per dtype: (datas, grads, states) lists
        for one native update each (csrc/optim.cpp: one threaded pass over all of them)."""
        out = {}
        for p, g, state in self._params_with_grad(group):
            data = p.data
            if (
                data.dtype not in (np.float32, np.float64)
                or not data.flags.c_contiguous
                or not data.flags.writeable
            ):
                raise ValueError(
                    f"{type(self).__name__}: a parameter must be a writable "
                    f"C-contiguous float32 or float64 array, got {data.dtype} of "
                    f"shape {data.shape}"
                )
            if np.shape(g) != data.shape:
                raise ValueError(
                    f"{type(self).__name__}: gradient of shape {np.shape(g)} for a "
                    f"parameter of shape {data.shape}"
                )
            for k, v in state.items():  # (loaded state is cast to the parameter's dtype)
                if (
                    isinstance(v, np.ndarray)
                    and v.shape == data.shape
                    and not (v.dtype == data.dtype and v.flags.c_contiguous and v.flags.writeable)
                ):
                    state[k] = np.array(v, dtype=data.dtype, order="C")
            datas, grads, states = out.setdefault(data.dtype, ([], [], []))
            datas.append(data)
            grads.append(np.ascontiguousarray(g, dtype=data.dtype))
            states.append(state)
        return out.values()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the parameters that have a gradient, once. ``closure``, if given, is called
        first (with graph recording on) to re-evaluate the model and return the loss; ``step``
        returns that loss (None without a closure), as PyTorch's."""
        raise NotImplementedError

    def _state_keys(self, group):
        """The entries a parameter's state must hold once it has any (checked on load)."""
        return ()

    # --- state_dict -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """PyTorch's layout: ``{"state": {index: {name: value}}, "param_groups": [{hyper-parameters,
        "params": [indices]}]}``, the parameters numbered 0, 1, ... in order across the groups.
        Everything is a copy: later steps do not change a saved dict."""
        groups, state, index = [], {}, itertools.count()
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                i = next(index)
                packed["params"].append(i)
                if self.state.get(id(p)):
                    state[i] = {k: _copied(v) for k, v in self.state[id(p)].items()}
            groups.append(packed)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (this optimizer's, or PyTorch's with its tensors). As in
        PyTorch, the hyper-parameters (lr included) come from the saved groups and the saved
        parameters map to this optimizer's by position. Arrays are copied, cast to each parameter's
        dtype; ``state_dict`` is not modified. Nothing changes unless everything fits: a different
        number of groups or of parameters in a group, a missing hyper-parameter or state entry, or
        an array of another shape raises ValueError naming it."""
        self.param_groups, self.state = self._checked_state_dict(state_dict)

    def _checked_state_dict(self, state_dict):
        """(param_groups, state) for :meth:`load_state_dict`, new objects; raises ValueError."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            got = (
                sorted(map(str, state_dict))
                if isinstance(state_dict, dict)
                else type(state_dict).__name__
            )
            raise ValueError(
                f"load_state_dict: state_dict must be a dict with 'state' and "
                f"'param_groups', got {got}"
            )
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)) or not all(
            isinstance(g, dict) and isinstance(g.get("params"), (list, tuple)) for g in saved_groups
        ):
            raise ValueError(
                "load_state_dict: param_groups must be a list of dicts, each with a 'params' list"
            )
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"load_state_dict: the state_dict has {len(saved_groups)} parameter "
                f"groups, the optimizer {len(self.param_groups)}"
            )
        groups = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"load_state_dict: param_groups[{i}] has {len(saved['params'])} "
                    f"parameters in the state_dict, {len(group['params'])} in the "
                    f"optimizer"
                )
            missing = [k for k in self.defaults if k not in saved]
            if missing:
                raise ValueError(
                    f"load_state_dict: param_groups[{i}] lacks the hyper-parameters "
                    f"{missing} of {type(self).__name__}"
                )
            new = {}
            for k, v in saved.items():
                if k != "params":
                    v = copy.deepcopy(v)
                    if isinstance(group.get(k), tuple) and isinstance(v, list):  # from JSON
                        v = tuple(v)
                    new[k] = v
            new["params"] = list(group["params"])
            if "param_names" in group and "param_names" not in new:  # (as PyTorch)
                new["param_names"] = list(group["param_names"])
            groups.append(new)

        saved_ids = [i for g in saved_groups for i in g["params"]]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in saved_ids) or len(
            set(saved_ids)
        ) != len(saved_ids):
            raise ValueError(
                f"load_state_dict: the 'params' of param_groups must be distinct int "
                f"indices, got {saved_ids}"
            )
        if not isinstance(state_dict["state"], dict):
            raise ValueError(
                f"load_state_dict: 'state' must be a dict, got {type(state_dict['state']).__name__}"
            )
        owner = dict(zip(saved_ids, ((p, g) for g in groups for p in g["params"])))
        state = {}
        for index, entries in state_dict["state"].items():
            if index not in owner:
                raise ValueError(
                    f"load_state_dict: state has an entry for parameter {index!r}, "
                    f"which no parameter group lists"
                )
            if not isinstance(entries, dict):
                raise ValueError(
                    f"load_state_dict: state[{index!r}] must be a dict, got "
                    f"{type(entries).__name__}"
                )
            p, group = owner[index]
            missing = [k for k in self._state_keys(group) if k not in entries]
            if entries and missing:
                raise ValueError(
                    f"load_state_dict: state[{index!r}] lacks {missing} "
                    f"({type(self).__name__} keeps {list(self._state_keys(group))})"
                )
            state[id(p)] = {
                k: _loaded(f"state[{index!r}][{k!r}]", k, v, p.data) for k, v in entries.items()
            }
        return groups, state

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


def _copied(value):
    return value.copy() if isinstance(value, np.ndarray) else copy.deepcopy(value)


def _loaded(what, key, value, like):
    """A saved state value, as the optimizer keeps it: "step" a count (PyTorch saves a float
    tensor), arrays copied in ``like``'s dtype and checked against its shape, the rest copied."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu()
        value = (value.double() if value.is_floating_point() else value).numpy()
    if key == "step":
        step = value
        if isinstance(value, (np.ndarray, np.generic)) and value.size == 1:
            step = value.item()
        if (
            isinstance(step, bool)
            or not isinstance(step, (int, float))
            or not (step >= 0 and float(step).is_integer())
        ):
            raise ValueError(f"load_state_dict: {what} must be a count of steps, got {value!r}")
        return int(step)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise ValueError(f"load_state_dict: {what} has dtype {value.dtype}, not a number")
        if value.shape != like.shape:
            raise ValueError(
                f"load_state_dict: {what} has shape {value.shape}, its parameter shape {like.shape}"
            )
        return np.array(value, dtype=like.dtype, copy=True)
    return copy.deepcopy(value)


def _closure_loss(closure):
    """The loss ``closure()`` returns, evaluated with graph recording on (None without one)."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule: d = g + wd*p; buf = m*buf + (1-dampening)*d
    (buf = d at the first step); d = d + m*buf (nesterov) or buf; p -= lr*d."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"invalid SGD hyper-parameter: lr={lr}, momentum={momentum}, "
                f"weight_decay={weight_decay}"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires a momentum and zero dampening")
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
            ),
        )

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SGD update of every parameter with a gradient; returns ``closure()``'s loss."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            momentum = group["momentum"]
            for params, grads, states in self._by_dtype(group):
                bufs, init = [], []
                for data, state in zip(params, states):
                    buf = state.get("momentum_buffer") if momentum else None
                    init.append(momentum != 0 and buf is None)
                    if init[-1]:
                        buf = state["momentum_buffer"] = np.empty_like(data)
                    bufs.append([buf] if momentum else [])
                _core.sgd_step(
                    params,
                    grads,
                    bufs,
                    init,
                    group["lr"],
                    momentum,
                    group["dampening"],
                    group["weight_decay"],
                    group["nesterov"],
                    group["maximize"],
                )
        return loss


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's rule with bias correction; ``weight_decay`` is the L2 term
    added to the gradient (see AdamW for the decoupled form); ``amsgrad`` keeps the max of v."""

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(
                f"invalid {type(self).__name__} hyper-parameter: lr={lr}, "
                f"betas={betas}, eps={eps}, weight_decay={weight_decay}"
            )
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=tuple(betas),
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
            ),
        )

    def _state_keys(self, group):
        return ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam update of every parameter with a gradient; returns ``closure()``'s loss."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, (b1, b2), amsgrad = group["lr"], group["betas"], group["amsgrad"]
            for params, grads, states in self._by_dtype(group):
                arrays, step_size, bias2_sqrt = [], [], []
                for data, state in zip(params, states):
                    if not state:
                        state["step"] = 0
                        state["exp_avg"] = np.zeros_like(data)
                        state["exp_avg_sq"] = np.zeros_like(data)
                        if amsgrad:
                            state["max_exp_avg_sq"] = np.zeros_like(data)
                    state["step"] += 1
                    t = state["step"]
                    step_size.append(lr / (1 - b1**t))  # (as PyTorch computes them)
                    bias2_sqrt.append((1 - b2**t) ** 0.5)
                    arrays.append(
                        [state["exp_avg"], state["exp_avg_sq"]]
                        + ([state["max_exp_avg_sq"]] if amsgrad else [])
                    )
                _core.adam_step(
                    params,
                    grads,
                    arrays,
                    step_size,
                    bias2_sqrt,
                    lr,
                    b1,
                    b2,
                    group["eps"],
                    group["weight_decay"],
                    amsgrad,
                    group["maximize"],
                    self._decoupled,
                )
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr*wd before the step."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


def _lerp_(start, end, weight):
    """start += weight * (end - start) in place, in PyTorch's two-sided form (exact ends)."""
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)


class RMSprop(Optimizer):
    """RMSprop (Hinton), PyTorch's rule in NumPy, in place: g = -g (maximize); g += wd*p;
    v = alpha*v + (1-alpha)*g*g; with ``centered``, m = lerp(m, g, 1-alpha) and
    avg = sqrt(v - m*m), else avg = sqrt(v); avg += eps; then buf = momentum*buf + g/avg and
    p -= lr*buf if ``momentum`` > 0, else p -= lr*g/avg. State: "step", "square_avg",
    "momentum_buffer" (momentum > 0), "grad_avg" (centered), as PyTorch names them."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
    ) -> None:
        if lr < 0 or eps < 0 or momentum < 0 or weight_decay < 0 or alpha < 0:
            raise ValueError(
                f"invalid RMSprop hyper-parameter: lr={lr}, alpha={alpha}, eps={eps}, "
                f"weight_decay={weight_decay}, momentum={momentum}"
            )
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                alpha=alpha,
                eps=eps,
                centered=centered,
                weight_decay=weight_decay,
                maximize=maximize,
            ),
        )

    def _state_keys(self, group):
        return (
            ("step", "square_avg")
            + (("momentum_buffer",) if group["momentum"] > 0 else ())
            + (("grad_avg",) if group["centered"] else ())
        )

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One RMSprop update of every parameter with a gradient; returns ``closure()``'s loss."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            wd, momentum, centered = group["weight_decay"], group["momentum"], group["centered"]
            for params, grads, states in self._by_dtype(group):
                for p, g, state in zip(params, grads, states):
                    if not state:
                        state["step"] = 0
                        state["square_avg"] = np.zeros_like(p)
                        if momentum > 0:
                            state["momentum_buffer"] = np.zeros_like(p)
                        if centered:
                            state["grad_avg"] = np.zeros_like(p)
                    state["step"] += 1
                    if group["maximize"]:
                        g = -g
                    if wd != 0:
                        g = g + wd * p
                    square_avg = state["square_avg"]
                    square_avg *= alpha
                    square_avg += (1 - alpha) * g * g
                    if centered:
                        grad_avg = state.setdefault("grad_avg", np.zeros_like(p))
                        _lerp_(grad_avg, g, 1 - alpha)
                        avg = np.sqrt(square_avg - grad_avg * grad_avg)
                    else:
                        avg = np.sqrt(square_avg)
                    avg += eps
                    if momentum > 0:
                        buf = state.setdefault("momentum_buffer", np.zeros_like(p))
                        buf *= momentum
                        buf += g / avg
                        p -= lr * buf
                    else:
                        p -= lr * (g / avg)
        return loss


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), PyTorch's rule in NumPy, in place: g = -g (maximize); g += wd*p;
    clr = lr / (1 + (step-1)*lr_decay); sum += g*g; p -= clr * g / (sqrt(sum) + eps). As in
    PyTorch, every parameter's state ("step" 0 and "sum" filled with
    ``initial_accumulator_value``) exists from construction, and the accumulator starts at the
    constructor's ``initial_accumulator_value`` whatever a group says."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
    ) -> None:
        if lr < 0 or lr_decay < 0 or weight_decay < 0 or initial_accumulator_value < 0 or eps < 0:
            raise ValueError(
                f"invalid Adagrad hyper-parameter: lr={lr}, lr_decay={lr_decay}, "
                f"weight_decay={weight_decay}, initial_accumulator_value="
                f"{initial_accumulator_value}, eps={eps}"
            )
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                eps=eps,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                maximize=maximize,
            ),
        )
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(self.state.setdefault(id(p), {}), p.data)

    def _init_state(self, state, data):
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(data, self.defaults["initial_accumulator_value"])

    def _state_keys(self, group):
        return ("step", "sum")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adagrad update of every parameter with a gradient; returns ``closure()``'s loss."""
        loss = _closure_loss(closure)
        for group in self.param_groups:
            lr, lr_decay, eps = group["lr"], group["lr_decay"], group["eps"]
            wd = group["weight_decay"]
            for params, grads, states in self._by_dtype(group):
                for p, g, state in zip(params, grads, states):
                    self._init_state(state, p)
                    state["step"] += 1
                    if group["maximize"]:
                        g = -g
                    if wd != 0:
                        g = g + wd * p
                    clr = lr / (1 + (state["step"] - 1) * lr_decay)
                    state_sum = state["sum"]
                    state_sum += g * g
                    std = np.sqrt(state_sum)
                    std += eps
                    p -= clr * (g / std)
        return loss


# ----------------------------------------------------------------------------------------------
# learning-rate schedules: call ``scheduler.step()`` once per epoch (OneCycleLR: per batch), after
# ``optimizer.step()``

_EPOCH_DEPRECATED = (
    "scheduler.step(epoch) is deprecated (as in PyTorch): call step() without an "
    "epoch. With one, the schedule jumps to that epoch's closed-form rate where "
    "it has one."
)


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"a schedule needs a fastconv.optim.Optimizer, got {type(optimizer).__name__}"
        )


def _per_group(name, optimizer, value):
    """``value`` once per parameter group: a list or tuple must have one entry per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} must have one value per parameter group "
                f"({len(optimizer.param_groups)}), got {len(value)}"
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


class LRScheduler:
    """Base class of the schedules, PyTorch's protocol: the constructor records each group's
    "initial_lr" (``base_lrs``) and takes the first step (epoch 0); each :meth:`step` advances
    ``last_epoch`` and writes :meth:`get_lr` into the groups' "lr". ``last_epoch`` other than -1
    resumes a schedule whose optimizer already holds "initial_lr"."""

    _is_initial = False  # True during the constructor's step (PyTorch's flag of the same name)

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param_groups[{i}] has no 'initial_lr', needed to resume a "
                        f"schedule at last_epoch={last_epoch} (load the optimizer's "
                        f"state_dict first)"
                    )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        """The constructor's step (also SequentialLR's when a schedule starts)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rates for ``last_epoch``, one per parameter group (called by
        :meth:`step`; read the current ones with :meth:`get_last_lr`)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates the last :meth:`step` set, one per parameter group (a copy)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer (PyTorch's rule), copied."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (ours or PyTorch's; copied; the optimizer's learning rates
        are the optimizer's own state_dict's business, as in PyTorch). A dict that does not fit
        raises ValueError and changes nothing."""
        self._apply_state(self._checked_state_dict(state_dict))

    def _checked_state_dict(self, state_dict):
        """A checked copy of ``state_dict`` for :meth:`_apply_state`; raises ValueError."""
        if not isinstance(state_dict, dict):
            raise ValueError(
                f"load_state_dict: state_dict must be a dict, got {type(state_dict).__name__}"
            )
        if "optimizer" in state_dict:
            raise ValueError("load_state_dict: a schedule's state_dict holds no 'optimizer'")
        groups = len(self.optimizer.param_groups)
        for key in ("base_lrs", "_last_lr"):
            value = state_dict.get(key, [None] * groups)
            if not isinstance(value, (list, tuple)) or len(value) != groups:
                raise ValueError(
                    f"load_state_dict: {key} must be a list of one learning rate per "
                    f"parameter group ({groups}), got {value!r}"
                )
        if not isinstance(state_dict.get("last_epoch", 0), int):
            raise ValueError(
                f"load_state_dict: last_epoch must be an int, got {state_dict['last_epoch']!r}"
            )
        return copy.deepcopy(state_dict)

    def _apply_state(self, state):
        self.__dict__.update(state)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (one batch for OneCycleLR) and set the groups' learning rates.
        ``epoch`` (deprecated, as in PyTorch) jumps to that epoch, by the closed form where the
        schedule has one."""
        self._step_count += 1
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATED, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch=None):
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed_form = getattr(self, "_get_closed_form_lr", None)
            values = closed_form() if closed_form is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size), in PyTorch's recursive form (multiply the
    current lr by gamma every ``step_size`` epochs)."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The current rates, times gamma at each multiple of ``step_size``."""
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _get_closed_form_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr = base_lr * gamma ** (number of milestones <= epoch), in PyTorch's recursive form
    (multiply the current lr by gamma at each milestone; a milestone listed n times, gamma**n)."""

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The current rates, times gamma ** count at a milestone."""
        if self.last_epoch not in self.milestones:
            return self._current_lrs()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._current_lrs()]

    def _get_closed_form_lr(self):
        milestones = sorted(self.milestones.elements())
        return [
            base * self.gamma ** bisect_right(milestones, self.last_epoch) for base in self.base_lrs
        ]

    def _checked_state_dict(self, state_dict):
        state = super()._checked_state_dict(state_dict)
        if "milestones" in state:  # a Counter; JSON turns its keys into strings
            milestones = state["milestones"]
            try:
                counts = milestones if isinstance(milestones, dict) else Counter(milestones)
                state["milestones"] = Counter({int(k): int(v) for k, v in counts.items()})
            except (TypeError, ValueError):
                raise ValueError(
                    f"load_state_dict: milestones must map epochs to counts, got {milestones!r}"
                ) from None
        return state


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** epoch, in PyTorch's recursive form (the current lr times gamma at
    every step)."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The current rates times gamma (unchanged at the constructor's step)."""
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _get_closed_form_lr(self):
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class LinearLR(LRScheduler):
    """lr = base_lr * factor, the factor going linearly from ``start_factor`` (epoch 0) to
    ``end_factor`` (epoch ``total_iters`` and after), in PyTorch's recursive form."""

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """The current rates times the ratio of this epoch's factor to the last one's."""
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        delta = self.end_factor - self.start_factor
        return [
            lr
            * (1.0 + delta / (self.total_iters * self.start_factor + (self.last_epoch - 1) * delta))
            for lr in self._current_lrs()
        ]

    def _get_closed_form_lr(self):
        return [
            base
            * (
                self.start_factor
                + (self.end_factor - self.start_factor)
                * min(self.total_iters, self.last_epoch)
                / self.total_iters
            )
            for base in self.base_lrs
        ]


class CosineAnnealingLR(LRScheduler):
    """lr follows eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, computed in
    PyTorch's recursive form (so it also follows a learning rate changed from outside)."""

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """This epoch's rates from the last ones (PyTorch's recursion)."""
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        lrs = self._current_lrs()
        if self._is_initial:
            return lrs
        if self._step_count == 1 and t > 0:
            return [
                lo + (base - lo) * (1 + math.cos(t * math.pi / T)) / 2 for base in self.base_lrs
            ]
        if (t - 1 - T) % (2 * T) == 0:
            return [
                lr + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                for base, lr in zip(self.base_lrs, lrs)
            ]
        return [
            (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - lo) + lo
            for lr in lrs
        ]

    def _get_closed_form_lr(self):
        return [
            self.eta_min
            + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
            for base in self.base_lrs
        ]


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(epoch); ``lr_lambda`` is one function or a list of one per
    parameter group. As in PyTorch, the state_dict keeps the ``__dict__`` of callable objects
    and None for plain functions and lambdas (which cannot be saved)."""

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        self.optimizer = optimizer
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(optimizer.param_groups):
                raise ValueError(
                    f"LambdaLR: expected {len(optimizer.param_groups)} lr_lambdas "
                    f"(one per parameter group), got {len(lr_lambda)}"
                )
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(optimizer.param_groups)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """base_lr * lr_lambda(last_epoch) for each group."""
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer; "lr_lambdas" holds a copy of each callable
        object's ``__dict__``, None for a function or lambda."""
        state = {
            k: copy.deepcopy(v)
            for k, v in self.__dict__.items()
            if k not in ("optimizer", "lr_lambdas")
        }
        state["lr_lambdas"] = [
            None if isinstance(fn, types.FunctionType) else copy.deepcopy(fn.__dict__)
            for fn in self.lr_lambdas
        ]
        return state

    def _checked_state_dict(self, state_dict):
        state = super()._checked_state_dict(state_dict)
        saved = state.get("lr_lambdas")
        if (
            not isinstance(saved, (list, tuple))
            or len(saved) != len(self.lr_lambdas)
            or not all(s is None or isinstance(s, dict) for s in saved)
        ):
            raise ValueError(
                f"load_state_dict: lr_lambdas must be a list of "
                f"{len(self.lr_lambdas)} entries (None or a dict), got {saved!r}"
            )
        return state

    def _apply_state(self, state):
        saved = state.pop("lr_lambdas")
        super()._apply_state(state)
        for fn, attrs in zip(self.lr_lambdas, saved):
            if attrs is not None:
                fn.__dict__.update(attrs)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin), stepped once per batch: the lr rises from
    max_lr/div_factor to ``max_lr`` over the first ``pct_start`` of ``total_steps`` (or
    ``epochs * steps_per_epoch``), then falls to initial_lr/final_div_factor (``three_phase``:
    back to initial_lr symmetrically, then down to the minimum), annealed by cosine ("cos") or
    linearly ("linear"). With ``cycle_momentum`` the momentum (SGD, RMSprop) or Adam's beta1 moves
    the other way between ``max_momentum`` and ``base_momentum``. Like PyTorch it writes
    "initial_lr", "max_lr", "min_lr" (and "max_momentum", "base_momentum") into the groups."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(
                    f"OneCycleLR: total_steps must be a positive int, got {total_steps!r}"
                )
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if not isinstance(value, int) or value <= 0:
                    raise ValueError(f"OneCycleLR: {name} must be a positive int, got {value!r}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be a float in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        up = float(pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if three_phase:
            self._schedule_phases = [
                _phase(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(
                    float(2 * pct_start * self.total_steps) - 2,
                    "max_lr",
                    "initial_lr",
                    "base_momentum",
                    "max_momentum",
                ),
                _phase(last, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._schedule_phases = [
                _phase(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(last, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        self._anneal_func_type = anneal_strategy
        max_lrs = _per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(
                    f"OneCycleLR: cycle_momentum needs an optimizer with a momentum "
                    f"or betas, {type(optimizer).__name__} has neither (pass "
                    f"cycle_momentum=False)"
                )
            self.use_beta1 = "betas" in optimizer.defaults
            tops = _per_group("max_momentum", optimizer, max_momentum)
            bases = _per_group("base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for top, base, group in zip(tops, bases, optimizer.param_groups):
                    self._set_momentum(group, top)
                    group["max_momentum"] = top
                    group["base_momentum"] = base
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start, end, pct):
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        """This batch's rates (and, with cycle_momentum, writes the momentum or beta1 into the
        groups); past ``total_steps`` raises ValueError, as PyTorch."""
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {step} times, past total_steps={self.total_steps}"
            )
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end = phase["end_step"]
                if step <= end or i == len(self._schedule_phases) - 1:
                    pct = (step - start) / (end - start)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        self._set_momentum(
                            group,
                            self._anneal(
                                group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                            ),
                        )
                    break
                start = end
        return lrs


def _phase(end_step, start_lr, end_lr, start_momentum, end_momentum):
    return {
        "end_step": end_step,
        "start_lr": start_lr,
        "end_lr": end_lr,
        "start_momentum": start_momentum,
        "end_momentum": end_momentum,
    }


class SequentialLR(LRScheduler):
    """Runs ``schedulers`` one after another, switching at the epochs in ``milestones`` (one
    fewer than schedules); at a switch the next schedule starts from its epoch 0 (closed form),
    as PyTorch's. Its state_dict holds each schedule's under "_schedulers"."""

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: list[LRScheduler],
        milestones: list[int],
        last_epoch: int = -1,
    ) -> None:
        if len(schedulers) < 1:
            raise ValueError("SequentialLR: expected at least one schedule, got none")
        for i, scheduler in enumerate(schedulers):
            if not hasattr(scheduler, "optimizer"):
                raise TypeError(
                    f"SequentialLR: schedulers[{i}] ({type(scheduler).__name__}) is "
                    f"not a schedule (it has no optimizer)"
                )
            if isinstance(scheduler, ReduceLROnPlateau):
                raise ValueError(
                    f"SequentialLR: schedulers[{i}] is a ReduceLROnPlateau, whose "
                    f"step needs a metric; it cannot be sequenced"
                )
            if scheduler.optimizer is not optimizer:
                raise ValueError(
                    f"SequentialLR: schedulers[{i}] ({type(scheduler).__name__}) "
                    f"belongs to another optimizer"
                )
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR: expected {len(schedulers) - 1} milestones for "
                f"{len(schedulers)} schedules, got {len(milestones)}"
            )
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:  # undo the schedules' constructor steps
            group["lr"] = group["initial_lr"]
        self._undo(self)
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def _undo(self, scheduler):
        if hasattr(scheduler, "_schedulers"):
            for s in scheduler._schedulers:
                self._undo(s)
        elif hasattr(scheduler, "last_epoch"):
            scheduler.last_epoch -= 1

    def step(self) -> None:
        """Advance one epoch: step the current schedule, or start the next one at a milestone."""
        self.last_epoch += 1
        i = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[i]
        if i > 0 and self._milestones[i - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer; "_schedulers" holds each schedule's state_dict."""
        state = {
            k: copy.deepcopy(v)
            for k, v in self.__dict__.items()
            if k not in ("optimizer", "_schedulers")
        }
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def _checked_state_dict(self, state_dict):
        if isinstance(state_dict, dict):
            saved = state_dict.get("_schedulers")
            if not isinstance(saved, (list, tuple)) or len(saved) != len(self._schedulers):
                raise ValueError(
                    f"load_state_dict: _schedulers must be a list of "
                    f"{len(self._schedulers)} state_dicts, got {saved!r}"
                )
            state = super()._checked_state_dict(
                {k: v for k, v in state_dict.items() if k != "_schedulers"}
            )
            state["_schedulers"] = [
                s._checked_state_dict(d) for s, d in zip(self._schedulers, saved)
            ]
            return state
        return super()._checked_state_dict(state_dict)

    def _apply_state(self, state):
        saved = state.pop("_schedulers")
        super()._apply_state(state)
        for scheduler, sub in zip(self._schedulers, saved):
            scheduler._apply_state(sub)


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` (not below ``min_lr``; changes under ``eps`` are skipped)
    when the metric given to ``step(metric)`` has not improved for more than ``patience`` epochs;
    then wait ``cooldown`` epochs. Improving means below best*(1-threshold) ("min", "rel"),
    best-threshold ("min", "abs"), above best*(1+threshold) or best+threshold ("max")."""

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1.0, got {factor}")
        self.factor = factor
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            self.default_min_lr = None
            self.min_lrs = _per_group("min_lr", optimizer, min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience, self.cooldown, self.eps = patience, cooldown, eps
        self.last_epoch = 0
        self._last_lr = self._current_lrs()
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _reset(self):
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _init_is_better(self, mode, threshold, threshold_mode):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode

    @property
    def in_cooldown(self) -> bool:
        """Whether the schedule is waiting out its cooldown after a reduction."""
        return self.cooldown_counter > 0

    def _is_better(self, a, best):
        """Whether metric ``a`` improves on ``best`` by the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics: float, epoch: int | None = None) -> None:
        """Record this epoch's metric (a number, NumPy scalar or one-element tensor) and reduce
        the learning rates if it has not improved for more than ``patience`` epochs."""
        current = _as_float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(_EPOCH_DEPRECATED, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in the cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current_lrs()

    def _reduce_lr(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"ReduceLROnPlateau: the optimizer has {len(groups)} parameter "
                    f"groups, min_lrs {len(self.min_lrs)} (a group was added "
                    f"since); set min_lrs to one per group"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, low in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, low)
            if old - new > self.eps:
                group["lr"] = new

    def _checked_state_dict(self, state_dict):
        state = super()._checked_state_dict(state_dict)
        if state.get("mode", "min") not in ("min", "max") or state.get(
            "threshold_mode", "rel"
        ) not in ("rel", "abs"):
            raise ValueError(
                f"load_state_dict: mode must be 'min' or 'max' and threshold_mode "
                f"'rel' or 'abs', got {state.get('mode')!r} and "
                f"{state.get('threshold_mode')!r}"
            )
        return state

    def _apply_state(self, state):
        super()._apply_state(state)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)


def _as_float(value):
    """float(value) for a number, a NumPy scalar or array, or a one-element tensor."""
    try:
        return float(value)
    except TypeError:
        return float(np.asarray(value).item())

"""Optimizers and learning-rate schedules with PyTorch's names, defaults and update rules.

Parameters are updated in place (``p.data``), so a model's state_dict arrays stay the same
objects. Each step is one threaded pass over all of a group's parameters of a dtype (fastconv's
kernel, csrc/optim.cpp), with PyTorch's formulas and rounding: float64 SGD is bitwise
``torch.optim.SGD``; Adam/AdamW bitwise PyTorch's formula with correctly rounded square roots
(torch's CPU ``sqrt`` is an ulp off in about 1% of elements, so those updates can differ by an ulp). Each optimizer holds ``param_groups`` (dicts with "params" and the hyper-parameters; a
schedule changes ``group["lr"]``) and a per-parameter ``state``.

``state_dict()``/``load_state_dict()`` of optimizers and schedules have PyTorch's format, so a
run can stop and resume exactly (``fastconv.train.save_checkpoint`` writes them to one file).
"""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np

from . import _core

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "StepLR", "CosineAnnealingLR"]


class Optimizer:
    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        for group in groups:
            group = {**defaults, **group, "params": list(group["params"])}
            self.param_groups.append(group)
        self.state = {}  # id(param) -> dict

    def zero_grad(self, set_to_none=True):
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
            if (data.dtype not in (np.float32, np.float64) or not data.flags.c_contiguous
                    or not data.flags.writeable):
                raise ValueError(f"{type(self).__name__}: a parameter must be a writable "
                                 f"C-contiguous float32 or float64 array, got {data.dtype} of "
                                 f"shape {data.shape}")
            if np.shape(g) != data.shape:
                raise ValueError(f"{type(self).__name__}: gradient of shape {np.shape(g)} for a "
                                 f"parameter of shape {data.shape}")
            for k, v in state.items():  # (loaded state is cast to the parameter's dtype)
                if isinstance(v, np.ndarray) and v.shape == data.shape and not (
                        v.dtype == data.dtype and v.flags.c_contiguous and v.flags.writeable):
                    state[k] = np.array(v, dtype=data.dtype, order="C")
            datas, grads, states = out.setdefault(data.dtype, ([], [], []))
            datas.append(data)
            grads.append(np.ascontiguousarray(g, dtype=data.dtype))
            states.append(state)
        return out.values()

    def step(self):
        raise NotImplementedError

    def _state_keys(self, group):
        """The entries a parameter's state must hold once it has any (checked on load)."""
        return ()

    # --- state_dict -----------------------------------------------------------------------------
    def state_dict(self):
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

    def load_state_dict(self, state_dict):
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
            got = (sorted(map(str, state_dict)) if isinstance(state_dict, dict)
                   else type(state_dict).__name__)
            raise ValueError(f"load_state_dict: state_dict must be a dict with 'state' and "
                             f"'param_groups', got {got}")
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)) or not all(
                isinstance(g, dict) and isinstance(g.get("params"), (list, tuple))
                for g in saved_groups):
            raise ValueError("load_state_dict: param_groups must be a list of dicts, each with a "
                             "'params' list")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the state_dict has {len(saved_groups)} parameter "
                             f"groups, the optimizer {len(self.param_groups)}")
        groups = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"load_state_dict: param_groups[{i}] has {len(saved['params'])} "
                                 f"parameters in the state_dict, {len(group['params'])} in the "
                                 f"optimizer")
            missing = [k for k in self.defaults if k not in saved]
            if missing:
                raise ValueError(f"load_state_dict: param_groups[{i}] lacks the hyper-parameters "
                                 f"{missing} of {type(self).__name__}")
            new = {}
            for k, v in saved.items():
                if k != "params":
                    v = copy.deepcopy(v)
                    if isinstance(group.get(k), tuple) and isinstance(v, list):  # from JSON
                        v = tuple(v)
                    new[k] = v
            new["params"] = list(group["params"])
            groups.append(new)

        saved_ids = [i for g in saved_groups for i in g["params"]]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in saved_ids) or \
                len(set(saved_ids)) != len(saved_ids):
            raise ValueError(f"load_state_dict: the 'params' of param_groups must be distinct int "
                             f"indices, got {saved_ids}")
        if not isinstance(state_dict["state"], dict):
            raise ValueError(f"load_state_dict: 'state' must be a dict, got "
                             f"{type(state_dict['state']).__name__}")
        owner = dict(zip(saved_ids, ((p, g) for g in groups for p in g["params"])))
        state = {}
        for index, entries in state_dict["state"].items():
            if index not in owner:
                raise ValueError(f"load_state_dict: state has an entry for parameter {index!r}, "
                                 f"which no parameter group lists")
            if not isinstance(entries, dict):
                raise ValueError(f"load_state_dict: state[{index!r}] must be a dict, got "
                                 f"{type(entries).__name__}")
            p, group = owner[index]
            missing = [k for k in self._state_keys(group) if k not in entries]
            if entries and missing:
                raise ValueError(f"load_state_dict: state[{index!r}] lacks {missing} "
                                 f"({type(self).__name__} keeps {list(self._state_keys(group))})")
            state[id(p)] = {k: _loaded(f"state[{index!r}][{k!r}]", k, v, p.data)
                            for k, v in entries.items()}
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
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not (
                step >= 0 and float(step).is_integer()):
            raise ValueError(f"load_state_dict: {what} must be a count of steps, got {value!r}")
        return int(step)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise ValueError(f"load_state_dict: {what} has dtype {value.dtype}, not a number")
        if value.shape != like.shape:
            raise ValueError(f"load_state_dict: {what} has shape {value.shape}, its parameter "
                             f"shape {like.shape}")
        return np.array(value, dtype=like.dtype, copy=True)
    return copy.deepcopy(value)


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule: d = g + wd*p; buf = m*buf + (1-dampening)*d
    (buf = d at the first step); d = d + m*buf (nesterov) or buf; p -= lr*d."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid SGD hyper-parameter: lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def step(self):
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
                _core.sgd_step(params, grads, bufs, init, group["lr"], momentum, group["dampening"],
                               group["weight_decay"], group["nesterov"], group["maximize"])


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's rule with bias correction; ``weight_decay`` is the L2 term
    added to the gradient (see AdamW for the decoupled form); ``amsgrad`` keeps the max of v."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid {type(self).__name__} hyper-parameter: lr={lr}, "
                             f"betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _state_keys(self, group):
        return ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def step(self):
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
                    step_size.append(lr / (1 - b1 ** t))  # (as PyTorch computes them)
                    bias2_sqrt.append((1 - b2 ** t) ** 0.5)
                    arrays.append([state["exp_avg"], state["exp_avg_sq"]] +
                                  ([state["max_exp_avg_sq"]] if amsgrad else []))
                _core.adam_step(params, grads, arrays, step_size, bias2_sqrt, lr, b1, b2,
                                group["eps"], group["weight_decay"], amsgrad, group["maximize"],
                                self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr*wd before the step."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


# ----------------------------------------------------------------------------------------------
# learning-rate schedules: call ``scheduler.step()`` once per epoch, after ``optimizer.step()``


class LRScheduler:
    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self):
        raise NotImplementedError

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        """Every attribute but the optimizer (PyTorch's rule), copied."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore a :meth:`state_dict` (copied; the optimizer's learning rates are the
        optimizer's own state_dict's business, as in PyTorch)."""
        self.__dict__.update(self._checked_state_dict(state_dict))

    def _checked_state_dict(self, state_dict):
        if not isinstance(state_dict, dict):
            raise ValueError(f"load_state_dict: state_dict must be a dict, got "
                             f"{type(state_dict).__name__}")
        if "optimizer" in state_dict:
            raise ValueError("load_state_dict: a schedule's state_dict holds no 'optimizer'")
        groups = len(self.optimizer.param_groups)
        for key in ("base_lrs", "_last_lr"):
            value = state_dict.get(key, [None] * groups)
            if not isinstance(value, (list, tuple)) or len(value) != groups:
                raise ValueError(f"load_state_dict: {key} must be a list of one learning rate per "
                                 f"parameter group ({groups}), got {value!r}")
        if not isinstance(state_dict.get("last_epoch", 0), int):
            raise ValueError(f"load_state_dict: last_epoch must be an int, got "
                             f"{state_dict['last_epoch']!r}")
        return copy.deepcopy(state_dict)

    def step(self):
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]


class CosineAnnealingLR(LRScheduler):
    """lr follows eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, computed in
    PyTorch's recursive form (so it also follows a learning rate changed from outside)."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        groups = self.optimizer.param_groups
        if t == 0:
            return [g["lr"] for g in groups]
        if (t - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for base, g in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (g["lr"] - lo) + lo for g in groups]

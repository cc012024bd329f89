"""Gradient clipping with ``torch.nn.utils``' names and semantics, on NumPy gradients in place."""
from __future__ import annotations

import math
import types
import warnings
from collections.abc import Iterable
from typing import Any, Union

import numpy as np

from ..autograd import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]

_Parameters = Union[Tensor, Iterable[Tensor]]


def _as_list(parameters):
    """A single Tensor/Parameter as a list of one, an iterable as a list (as PyTorch)."""
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def _array(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _vector_norm(a: np.ndarray, p: float):
    """torch.linalg.vector_norm(a, p) in ``a``'s dtype: the p-norm of all elements; inf and -inf
    the largest and smallest magnitude, 0 the count of nonzeros."""
    a = np.abs(a.ravel())
    if p == math.inf:
        return a.max() if a.size else a.dtype.type(0)
    if p == -math.inf:
        return a.min() if a.size else a.dtype.type(math.inf)
    if p == 0:
        return a.dtype.type(np.count_nonzero(a))
    if p == 1:
        return a.sum()
    if p == 2:
        return np.sqrt(np.dot(a, a))
    return np.sum(a ** p) ** (1 / p)


def get_total_norm(tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> np.generic:
    """The ``norm_type``-norm of ``tensors`` (arrays or Tensors, or one) taken together, as if
    concatenated into one vector: the norm of their norms, each in its own dtype, the total in
    their common dtype. ``norm_type`` may be ``inf`` (or ``"inf"``). No tensors: float32 0, as
    PyTorch. Returns a NumPy scalar (``float(n)`` and ``n.item()`` work as on torch's 0-d
    tensor). ``error_if_nonfinite``: a nan or inf total raises RuntimeError. ``foreach`` is
    accepted for PyTorch's signature and ignored."""
    arrays = [_array(t) for t in ([tensors] if isinstance(tensors, (Tensor, np.ndarray))
                                  else tensors)]
    norm_type = float(norm_type)
    if not arrays:
        return np.float32(0.0)
    norms = [_vector_norm(a, norm_type) for a in arrays]
    total = _vector_norm(np.array(norms, dtype=np.result_type(*norms)), norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is {total}, so "
                           f"they cannot be clipped; pass error_if_nonfinite=False to scale them "
                           f"by it anyway")
    return total


def clip_grads_with_norm_(parameters: _Parameters, max_norm: float, total_norm: Any,
                          foreach: bool | None = None) -> None:
    """Scale every gradient (``p.grad``, in place) by min(max_norm / (total_norm + 1e-6), 1),
    ``total_norm`` computed beforehand (:func:`get_total_norm`). Parameters without a gradient
    are skipped; ``foreach`` is ignored."""
    params = [p for p in _as_list(parameters) if p.grad is not None]
    if not params:
        return
    total = np.asarray(_array(total_norm))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        coef = np.minimum(float(max_norm) / (total + total.dtype.type(1e-6)), 1.0)
        for p in params:
            grad = p.grad
            c = np.asarray(coef, dtype=_array(grad).dtype)  # (as PyTorch: in the grad's dtype)
            if isinstance(grad, np.ndarray) and grad.flags.writeable:
                grad *= c
            else:
                p.grad = _array(grad) * c


def clip_grad_norm_(parameters: _Parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> np.generic:
    """Clip the gradients of ``parameters`` (one Tensor/Parameter or an iterable) so that their
    total ``norm_type``-norm (all gradients as one vector; ``inf`` for the max) is at most about
    ``max_norm``: each ``p.grad`` is multiplied in place by min(max_norm / (total + 1e-6), 1).
    Returns the total norm before clipping, a NumPy scalar (see :func:`get_total_norm`), as
    ``torch.nn.utils.clip_grad_norm_`` returns its tensor. ``error_if_nonfinite``: a nan or inf
    total raises RuntimeError instead; ``foreach`` is ignored."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    else:
        generator = isinstance(parameters, types.GeneratorType)
        parameters = list(parameters)
        if generator and not parameters:
            warnings.warn("clip_grad_norm_: `parameters` is an empty generator, nothing is "
                          "clipped", stacklevel=2)
    grads = [p.grad for p in parameters if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(parameters, max_norm, total, foreach)
    return total


def clip_grad_value_(parameters: _Parameters, clip_value: float,
                     foreach: bool | None = None) -> None:
    """Clamp every gradient of ``parameters`` (one Tensor/Parameter or an iterable) into
    [-clip_value, clip_value], in place, as ``torch.nn.utils.clip_grad_value_`` (nan stays nan).
    ``foreach`` is ignored."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        grad = p.grad
        if grad is None:
            continue
        if isinstance(grad, np.ndarray) and grad.flags.writeable:
            np.clip(grad, -clip_value, clip_value, out=grad)
        else:
            p.grad = np.clip(_array(grad), -clip_value, clip_value)

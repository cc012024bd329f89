"""Checking helpers for the autograd, nn and model tests (tinygrad's helper_test_op idea).

``check_op`` runs an op on float64 inputs, backpropagates a random upstream gradient, and checks
forward and every input gradient against PyTorch (when importable) and against central finite
differences.
"""

from __future__ import annotations

import contextlib

import numpy as np

from fastconv.autograd import Tensor

try:
    import torch
except ImportError:  # the torch comparisons are skipped, the finite differences still run
    torch = None

F64_RTOL = 1e-10


def rel_err(a, b):
    """max |a - b| relative to the largest magnitude of b (0 for two zero arrays)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.abs(b).max(initial=0.0), np.abs(a).max(initial=0.0))
    return 0.0 if scale == 0 else float(np.abs(a - b).max(initial=0.0) / scale)


def assert_close(a, b, rtol, what=""):
    err = rel_err(a, b)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:.1g}"


def numeric_grads(fn, arrays, upstream, eps=1e-6):
    """Central differences of sum(fn(*arrays) * upstream) with respect to each array."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            plus = float((np.asarray(fn(*arrays)) * upstream).sum())
            flat[i] = old - eps
            minus = float((np.asarray(fn(*arrays)) * upstream).sum())
            flat[i] = old
            gflat[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def run_ours(op, arrays, upstream=None, seed=0):
    """Forward and input gradients of op(*Tensors) for the upstream gradient (random if None)."""
    ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = op(*ts)
    if upstream is None:
        upstream = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(upstream.astype(out.dtype))
    return out.data, [t.grad for t in ts], upstream


def run_torch(op, arrays, upstream):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = op(*ts)
    out.backward(torch.from_numpy(np.asarray(upstream)))
    return out.detach().numpy(), [
        t.grad.numpy() if t.grad is not None else np.zeros_like(a) for t, a in zip(ts, arrays)
    ]


def check_op(
    shapes,
    op,
    torch_op=None,
    arrays=None,
    fd=True,
    seed=0,
    low=-1.0,
    high=1.0,
    rtol=F64_RTOL,
    fd_rtol=1e-6,
):
    """Check op (on Tensors) against torch_op (on torch tensors) and finite differences, float64.

    ``arrays`` overrides the random inputs drawn uniformly from [low, high) with ``shapes``.
    """
    rng = np.random.default_rng(seed)
    if arrays is None:
        arrays = [rng.uniform(low, high, s) for s in shapes]
    arrays = [np.asarray(a, np.float64) for a in arrays]
    out, grads, upstream = run_ours(op, arrays, seed=seed + 1)
    assert out.dtype == np.float64
    if torch_op is not None and torch is not None:
        t_out, t_grads = run_torch(torch_op, arrays, upstream)
        assert_close(out, t_out, rtol, "forward vs torch")
        for i, (g, tg) in enumerate(zip(grads, t_grads)):
            assert_close(g, tg, rtol, f"grad of input {i} vs torch")
    if fd:
        num = numeric_grads(
            lambda *a: op(*[Tensor(x) for x in a]).data, [a.copy() for a in arrays], upstream
        )
        for i, (g, n) in enumerate(zip(grads, num)):
            assert_close(g, n, fd_rtol, f"grad of input {i} vs finite differences")
    return out, grads


@contextlib.contextmanager
def no_init():
    """Model constructors skip fastconv.nn.init's initialisers (the tests load or redraw every
    parameter anyway): VGG's torchvision initialisation, or ZFNet's 37M-weight FC in float64,
    alone take seconds."""
    from fastconv.nn import init

    names = [n for n in init.__all__ if n.endswith("_")]
    saved = {n: getattr(init, n) for n in names}
    for n in names:
        setattr(init, n, lambda t, *args, **kwargs: t)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)

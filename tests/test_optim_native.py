"""The optimizers' one-pass native updates (csrc/optim.cpp): bitwise PyTorch's SGD in float64;
Adam and AdamW bitwise an exact-arithmetic reference of PyTorch's formula (and within an ulp
of torch.optim, whose CPU square root is not always correctly rounded); float32 within
rounding; many tensors of mixed sizes and dtypes in one step; determinism; bad input."""

import math
from fractions import Fraction

import numpy as np
import pytest

from _autograd_ref import torch
from fastconv import _core, optim, threads
from fastconv.nn import Parameter

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")

SIZES = [1, 7, 16385, 40000]  # a chunk's edge (16384) crossed; one tensor of one element


def _params(seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for n in SIZES]


def _grads(seed, steps, dtype=np.float64):
    rng = np.random.default_rng(seed + 100)
    return [[rng.standard_normal(n).astype(dtype) for n in SIZES] for _ in range(steps)]


def _run_ours(make, start, grads):
    ps = [Parameter(a.copy()) for a in start]
    opt = make(ps)
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = g.copy()
        opt.step()
    return [p.data for p in ps], opt


def _run_torch(make, start, grads):
    ts = [torch.tensor(a.copy(), requires_grad=True) for a in start]
    opt = make(ts)
    for gs in grads:
        for t, g in zip(ts, gs):
            t.grad = torch.from_numpy(g.copy())
        opt.step()
    return [t.detach().numpy() for t in ts]


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, weight_decay=1e-4),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    dict(lr=0.1, momentum=0.8, dampening=0.3),
    dict(lr=0.1, momentum=0.9, maximize=True),
]


@needs_torch
@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_is_bitwise_pytorch_in_float64(kw):
    start, grads = _params(0), _grads(0, 4)
    ours, _ = _run_ours(lambda p: optim.SGD(p, **kw), start, grads)
    theirs = _run_torch(lambda p: torch.optim.SGD(p, **kw), start, grads)
    for a, b in zip(ours, theirs):
        assert np.array_equal(a, b)


def _fma(a, b, c):
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def _adam_reference(start, grads, lr, betas, eps, wd, decoupled, amsgrad):
    """PyTorch's single-tensor Adam, element by element in Python floats, its fused
    multiply-adds (add with alpha, lerp, addcmul) exactly rounded by Fraction."""
    b1, b2 = betas
    out = []
    for k, p0 in enumerate(start):
        p = [float(v) for v in p0]
        m, v, vmax = [0.0] * len(p), [0.0] * len(p), [0.0] * len(p)
        for t, gs in enumerate(grads, 1):
            step_size, bc2 = lr / (1 - b1**t), (1 - b2**t) ** 0.5
            for i in range(len(p)):
                g = float(gs[k][i])
                if wd and decoupled:
                    p[i] = p[i] * (1 - lr * wd)
                elif wd:
                    g = _fma(p[i], wd, g)
                w = 1 - b1  # torch.lerp: from the nearer end
                m[i] = _fma(w, g - m[i], m[i]) if abs(w) < 0.5 else _fma(w - 1, g - m[i], g)
                v[i] = _fma((1 - b2) * g, g, v[i] * b2)
                vi = v[i]
                if amsgrad:
                    vi = vmax[i] = max(vmax[i], vi)
                p[i] = p[i] + (-step_size * m[i]) / (math.sqrt(vi) / bc2 + eps)
        out.append(np.array(p))
    return out


ADAM_CASES = [
    ("Adam", dict(lr=1e-3)),
    ("Adam", dict(lr=1e-2, weight_decay=1e-2)),
    ("AdamW", dict(lr=1e-3, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-3, amsgrad=True)),
    ("AdamW", dict(lr=2e-3, betas=(0.5, 0.99), amsgrad=True)),
]


@pytest.mark.parametrize("name,kw", ADAM_CASES)
def test_adam_is_bitwise_the_exact_reference(name, kw):
    start = [a[:300] for a in _params(1)]  # (the reference is slow: Fraction per element)
    grads = [[g[:300] for g in gs] for gs in _grads(1, 3)]
    ours, _ = _run_ours(lambda p: getattr(optim, name)(p, **kw), start, grads)
    ref = _adam_reference(
        start,
        grads,
        kw["lr"],
        kw.get("betas", (0.9, 0.999)),
        1e-8,
        kw.get("weight_decay", 1e-2 if name == "AdamW" else 0.0),
        name == "AdamW",
        kw.get("amsgrad", False),
    )
    for a, b in zip(ours, ref):
        assert np.array_equal(a, b)


@needs_torch
@pytest.mark.parametrize("name,kw", ADAM_CASES)
def test_adam_matches_pytorch(name, kw):
    start, grads = _params(2), _grads(2, 5)
    ours, _ = _run_ours(lambda p: getattr(optim, name)(p, **kw), start, grads)
    theirs = _run_torch(lambda p: getattr(torch.optim, name)(p, **kw), start, grads)
    for a, b in zip(ours, theirs):  # torch's sqrt is off by an ulp in ~1% of elements
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)


@needs_torch
@pytest.mark.parametrize(
    "name,kw", [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-4))] + ADAM_CASES
)
def test_float32_within_rounding_of_pytorch(name, kw):
    start, grads = _params(3, np.float32), _grads(3, 4, np.float32)
    ours, _ = _run_ours(lambda p: getattr(optim, name)(p, **kw), start, grads)
    theirs = _run_torch(lambda p: getattr(torch.optim, name)(p, **kw), start, grads)
    for a, b in zip(ours, theirs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mixed_dtypes_and_no_grad_in_one_step():
    rng = np.random.default_rng(4)
    a, b, c = (
        Parameter(rng.standard_normal(n).astype(t))
        for n, t in ((5, np.float32), (6, np.float64), (7, np.float64))
    )
    a0, b0, c0 = a.data.copy(), b.data.copy(), c.data.copy()
    opt = optim.SGD([a, b, c], lr=0.5, momentum=0.9)
    a.grad, b.grad = np.ones(5, np.float32), np.ones(6)
    opt.step()
    np.testing.assert_array_equal(a.data, a0 - np.float32(0.5))
    np.testing.assert_array_equal(b.data, b0 - 0.5)
    np.testing.assert_array_equal(c.data, c0)  # no grad: untouched, no state
    assert a.data.dtype == np.float32


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_deterministic_at_any_thread_count(name):
    start, grads = _params(5, np.float32), _grads(5, 3, np.float32)
    kw = dict(lr=0.1, momentum=0.9) if name == "SGD" else dict(lr=1e-3)
    with threads(1):
        one, _ = _run_ours(lambda p: getattr(optim, name)(p, **kw), start, grads)
    with threads(2):
        two, _ = _run_ours(lambda p: getattr(optim, name)(p, **kw), start, grads)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)


def test_the_kernels_check_their_arrays():
    p, g, buf = np.zeros(4), np.zeros(4), np.zeros(4)
    with pytest.raises(ValueError):
        _core.sgd_step([p], [np.zeros(3)], [[buf]], [1], 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(ValueError):
        _core.sgd_step([p], [g], [[np.zeros(3)]], [1], 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(TypeError):
        _core.sgd_step([p], [g.astype(np.float32)], [[buf]], [1], 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(ValueError):
        _core.adam_step(
            [p], [g], [[buf]], [0.1], [1.0], 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False
        )
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _core.sgd_step([ro], [g], [[buf]], [1], 0.1, 0.9, 0.0, 0.0, False, False)

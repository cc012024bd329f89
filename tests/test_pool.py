"""Pooling: max with switches, its backward, unpooling, average and adaptive average pooling.

Checked against the loop references in pool_reference.py (max pooling and switches exactly,
sums within DESIGN.md's tolerances), against PyTorch when it is importable (values and switches
identical), by finite differences in float64, across thread counts and forced instruction sets,
and through the C ABI (a bad switch leaves the output untouched)."""
import ctypes
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

import fastconv  # noqa: E402
from pool_reference import (  # noqa: E402
    adaptive_avg_pool2d_backward_ref,
    adaptive_avg_pool2d_ref,
    avg_pool2d_backward_ref,
    avg_pool2d_ref,
    max_pool2d_backward_ref,
    max_pool2d_ref,
    max_unpool2d_ref,
    pair,
)

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}

# x shape, kernel_size, stride, padding, dilation, ceil_mode
MAX_CASES = [
    ((2, 3, 9, 11), 3, 2, 1, 1, False),  # overlapping 3/2 windows with padding
    ((2, 3, 9, 11), 3, 2, 1, 1, True),  # ceil mode: an extra edge window
    ((1, 2, 10, 10), 3, 3, 0, 1, True),  # ceil mode: a partial last window, stride 3
    ((2, 2, 7, 8), 2, 2, 0, 1, True),  # ceil mode on an odd size
    ((1, 3, 20, 37), (3, 2), (1, 3), (1, 0), (2, 1), True),  # rectangular, dilated rows
    ((1, 2, 13, 40), 3, 1, 1, 1, False),  # stride 1: full and tail vectors
    ((1, 2, 9, 70), 3, 2, 1, 2, False),  # dilation with stride 2, several full vectors
    ((1, 2, 6, 67), 2, 2, 0, 1, False),  # VGG-like 2/2, odd tail
    ((2, 1, 5, 5), 5, 1, 2, 1, False),  # window as large as the input, padding 2
    ((1, 1, 1, 33), (1, 3), (1, 2), (0, 1), 1, True),  # a single row
    ((1, 2, 17, 5), (4, 1), (3, 1), (2, 0), 1, False),  # tall kernel, narrow plane
    ((1, 1, 4, 4), 2, 1, 1, 5, False),  # a window holding no input (PyTorch: -inf)
    ((1, 2, 11, 35), 3, 4, 1, 3, True),  # stride 4 (gathers), dilation 3, ceil mode
]
MAX_IDS = [f"x{'x'.join(map(str, c[0]))}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-{'ceil' if c[5] else 'floor'}"
           for c in MAX_CASES]

# the real layers (channels and batch cut down): AlexNet, VGG, GoogLeNet, ResNet stem
LAYERS = [((1, 4, 55, 55), 3, 2, 0), ((1, 2, 112, 112), 2, 2, 0), ((1, 4, 56, 56), 3, 2, 1),
          ((1, 2, 112, 112), 3, 2, 1)]

# x shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
AVG_CASES = [
    ((2, 3, 9, 11), 3, 2, 1, False, True, None),
    ((2, 3, 9, 11), 3, 2, 1, True, False, None),
    ((1, 2, 10, 10), 3, 3, 1, True, True, None),  # ceil: the last window clipped at h + pad
    ((1, 2, 13, 40), 3, 1, 1, False, False, None),
    ((1, 2, 8, 37), (2, 4), (2, 3), (1, 2), True, True, 7),
    ((2, 2, 7, 7), 2, 2, 1, True, False, -3),  # a negative divisor divides too (PyTorch)
    ((1, 1, 5, 5), 5, 1, 2, False, True, None),
    ((1, 2, 6, 67), 2, 2, 0, False, True, None),
]
AVG_IDS = [f"case{i}" for i in range(len(AVG_CASES))]

ADAPTIVE_CASES = [((2, 3, 7, 9), 1), ((2, 3, 7, 9), 3), ((1, 2, 5, 6), (7, 5)),
                  ((1, 2, 8, 8), (4, None)), ((2, 2, 10, 13), (3, 5)), ((1, 3, 6, 6), (None, None))]


@pytest.fixture
def prng(request):
    """A generator seeded from the test id: reproducible, different for every test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def threads():
    """Restores fastconv's thread count after a test that changes it."""
    before = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(before)


def special_values(rng, shape, dtype):
    """Small integers (many ties), signed zeros, infinities and a few NaNs."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=(4, max(1, flat.size // 20)), replace=False)
    flat[picks[0]] = -0.0
    flat[picks[1]] = np.inf
    flat[picks[2]] = -np.inf
    flat[picks[3][: max(1, flat.size // 60)]] = np.nan
    return x


def assert_max_equal(y, idx, y_ref, idx_ref):
    assert y.dtype == y_ref.dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)  # NaNs compare equal here
    np.testing.assert_array_equal(idx, idx_ref)


def assert_close(got, ref, scale, dtype):
    err = np.abs(got.astype(np.float64) - ref) / (scale + 1e-300)
    assert got.dtype == dtype
    assert np.all(err <= TOL[dtype]), f"worst relative error {err.max():.3g}"


def torch_max(torch, x, k, s, p, d, ceil):
    y, i = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, d, ceil, return_indices=True)
    return y.numpy(), i.numpy()


# ---------------------------------------------------------------------------------------------
# max pooling forward

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", MAX_CASES, ids=MAX_IDS)
def test_max_pool2d_matches_reference(case, dtype, prng):
    shape, k, s, p, d, ceil = case
    for x in (prng.standard_normal(shape).astype(dtype), special_values(prng, shape, dtype)):
        y_ref, i_ref = max_pool2d_ref(x, k, s, p, d, ceil)
        y, idx = fastconv.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        assert_max_equal(y, idx, y_ref, i_ref)
        np.testing.assert_array_equal(fastconv.max_pool2d(x, k, s, p, d, ceil), y_ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", MAX_CASES, ids=MAX_IDS)
def test_max_pool2d_matches_torch(case, dtype, prng):
    torch = pytest.importorskip("torch")
    shape, k, s, p, d, ceil = case
    for x in (prng.standard_normal(shape).astype(dtype), special_values(prng, shape, dtype)):
        y, idx = fastconv.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        assert_max_equal(y, idx, *torch_max(torch, x, k, s, p, d, ceil))


@pytest.mark.parametrize("layer", LAYERS, ids=["alexnet", "vgg", "googlenet", "resnet"])
def test_max_pool2d_layer_shapes(layer, prng):
    shape, k, s, p = layer
    x = prng.standard_normal(shape).astype(np.float32)
    y, idx = fastconv.max_pool2d(x, k, s, p, return_indices=True)
    assert_max_equal(y, idx, *max_pool2d_ref(x, k, s, p))


def test_max_pool2d_ties_pick_first_and_nan_wins():
    x = np.array([[[[1, 5, 5], [5, 0, 5], [2, 2, 2]]]], np.float32)
    y, idx = fastconv.max_pool2d(x, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[5, 5], [5, 5]])
    np.testing.assert_array_equal(idx[0, 0], [[1, 1], [3, 5]])  # first maximum in row-major order
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 2] = np.nan
    y, idx = fastconv.max_pool2d(x, 2, 1, return_indices=True)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(idx[0, 0], [[4, 4], [4, 8]])  # the last NaN of each window
    x = np.full((1, 1, 3, 4), -np.inf)
    y, idx = fastconv.max_pool2d(x, 2, 2, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2]])  # all -inf: the window's first position


def test_max_pool2d_unbatched_noncontiguous_readonly(prng):
    base = prng.standard_normal((3, 12, 2, 15))
    x = base.transpose(2, 0, 3, 1)[:, :, ::-1, ::2]  # (2, 3, 15, 6), no contiguous axis
    x.flags.writeable = False
    before = x.copy()
    y, idx = fastconv.max_pool2d(x, (3, 2), 2, 1, return_indices=True)
    assert_max_equal(y, idx, *max_pool2d_ref(np.ascontiguousarray(x), (3, 2), 2, 1))
    np.testing.assert_array_equal(x, before)
    y1, i1 = fastconv.max_pool2d(x[1], (3, 2), 2, 1, return_indices=True)  # unbatched (C, H, W)
    assert y1.shape == y.shape[1:]
    assert_max_equal(y1, i1, y[1], idx[1])


def test_max_pool2d_empty_batch_and_list_input():
    y, idx = fastconv.max_pool2d(np.zeros((0, 3, 8, 8), np.float32), 2, return_indices=True)
    assert y.shape == idx.shape == (0, 3, 4, 4) and y.dtype == np.float32
    y = fastconv.max_pool2d([[[1, 2], [3, 4]]], 2)  # a list of ints: float64 (exact)
    assert y.dtype == np.float64 and y.tolist() == [[[4.0]]]


# ---------------------------------------------------------------------------------------------
# switches: backward, unpooling, unpooling backward

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", MAX_CASES, ids=MAX_IDS)
def test_max_pool2d_backward_matches_reference(case, dtype, prng):
    shape, k, s, p, d, ceil = case
    x = prng.standard_normal(shape).astype(dtype)
    y, idx = fastconv.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    if not ((idx >= 0) & (idx < shape[2] * shape[3])).all():
        with pytest.raises(ValueError, match="indices"):  # a window with no input has no switch
            fastconv.max_pool2d_backward(np.ones_like(y), idx, shape)
        return
    g = prng.standard_normal(y.shape).astype(dtype)
    gx = fastconv.max_pool2d_backward(g, idx, shape)
    ref = max_pool2d_backward_ref(g, idx, shape)
    assert gx.shape == shape and gx.dtype == dtype
    assert_close(gx, ref, max_pool2d_backward_ref(np.abs(g), idx, shape).astype(np.float64), dtype)


def test_max_pool2d_backward_accumulates_overlaps():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0  # the maximum of all four overlapping 3/2 windows
    y, idx = fastconv.max_pool2d(x, 3, 2, return_indices=True)
    assert (idx == 12).all()
    gx = fastconv.max_pool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), idx, x.shape)
    assert gx[0, 0, 2, 2] == 10.0 and gx.sum() == 10.0


@pytest.mark.parametrize("case", [c for c in MAX_CASES if c[0] != (1, 1, 4, 4)],
                         ids=[i for c, i in zip(MAX_CASES, MAX_IDS) if c[0] != (1, 1, 4, 4)])
def test_max_pool2d_backward_matches_torch(case, prng):
    torch = pytest.importorskip("torch")
    shape, k, s, p, d, ceil = case
    x = prng.standard_normal(shape)
    tx = torch.from_numpy(x).requires_grad_()
    ty, ti = torch.nn.functional.max_pool2d(tx, k, s, p, d, ceil, return_indices=True)
    g = prng.standard_normal(ty.shape)
    ty.backward(torch.from_numpy(g))
    _, idx = fastconv.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_allclose(fastconv.max_pool2d_backward(g, idx, shape), tx.grad.numpy(),
                               rtol=1e-12, atol=1e-12)


UNPOOL_CASES = [((2, 3, 8, 10), 2, None, 0, None), ((1, 2, 9, 11), 3, 2, 1, None),
                ((1, 2, 9, 11), 3, 2, 1, (10, 12)), ((2, 1, 7, 7), 3, 2, 0, (1, 1, 8, 8))]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", UNPOOL_CASES, ids=[f"case{i}" for i in range(len(UNPOOL_CASES))])
def test_max_unpool2d_matches_reference_and_torch(case, dtype, prng):
    shape, k, s, p, out = case
    x = prng.standard_normal(shape).astype(dtype)
    y, idx = fastconv.max_pool2d(x, k, s, p, return_indices=True)
    u = fastconv.max_unpool2d(y, idx, k, s, p, out)
    stride = k if s is None else s
    hw = tuple(out[-2:]) if out is not None else tuple((y.shape[2 + i] - 1) * stride + k - 2 * p
                                                       for i in range(2))
    np.testing.assert_array_equal(u, max_unpool2d_ref(y, idx, hw))
    assert u.dtype == dtype
    torch = pytest.importorskip("torch")
    tu = torch.nn.functional.max_unpool2d(torch.from_numpy(y), torch.from_numpy(idx), k, s, p, out)
    np.testing.assert_array_equal(u, tu.numpy())


def test_max_unpool2d_places_the_maxima_and_last_duplicate_wins(prng):
    x = prng.standard_normal((2, 3, 8, 8))
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    u = fastconv.max_unpool2d(y, idx, 2)
    assert u.shape == x.shape and np.count_nonzero(u) == y.size
    np.testing.assert_array_equal(u[u != 0], x[u != 0])  # each maximum back where it came from
    dup = np.zeros((1, 1, 2, 2), np.int64)  # every switch points at element 0
    u = fastconv.max_unpool2d(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), dup, 2)
    assert u[0, 0, 0, 0] == 4.0 and np.count_nonzero(u) == 1


def test_max_unpool2d_backward_gathers(prng):
    x = prng.standard_normal((2, 3, 9, 11))
    y, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    g = prng.standard_normal(x.shape)
    gx = fastconv.max_unpool2d_backward(g, idx)
    ref = np.take_along_axis(g.reshape(2, 3, -1), idx.reshape(2, 3, -1), axis=2).reshape(idx.shape)
    np.testing.assert_array_equal(gx, ref)
    np.testing.assert_array_equal(fastconv.max_unpool2d_backward(g[0], idx[0]), ref[0])


BAD_SWITCHES = {
    "negative": (ValueError, lambda i: i.__setitem__((0, 1, 1, 0), -1)),
    "beyond-plane": (ValueError, lambda i: i.__setitem__((1, 0, 0, 2), 8 * 10)),
    "huge": (ValueError, lambda i: i.__setitem__((1, 2, 3, 4), 2**62)),
    "int64-min": (ValueError, lambda i: i.__setitem__((0, 0, 0, 0), -2**63)),
}


def _switch_ops(x, y, idx):
    g = np.ones(x.shape)
    return {
        "max_pool2d_backward": lambda i: fastconv.max_pool2d_backward(np.ones_like(y), i, x.shape),
        "max_unpool2d": lambda i: fastconv.max_unpool2d(y, i, 2, output_size=x.shape[2:]),
        "max_unpool2d_backward": lambda i: fastconv.max_unpool2d_backward(g, i),
    }


@pytest.mark.parametrize("op", ["max_pool2d_backward", "max_unpool2d", "max_unpool2d_backward"])
@pytest.mark.parametrize("kind", list(BAD_SWITCHES) + ["shape", "int32", "float64"])
def test_bad_switches_raise(op, kind, prng):
    x = prng.standard_normal((2, 3, 8, 10))
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    call = _switch_ops(x, y, idx)[op]
    bad = idx.copy()
    if kind in BAD_SWITCHES:
        err, spoil = BAD_SWITCHES[kind]
        spoil(bad)
        with pytest.raises(err, match=r"indices.*outside its 8x10 plane"):
            call(bad)
    elif kind == "shape":
        with pytest.raises(ValueError, match="indices"):
            call(bad[:, :2])
    else:
        with pytest.raises(TypeError, match="indices must be int64"):
            call(bad.astype(kind))
    call(idx)  # the good switches still work


# ---------------------------------------------------------------------------------------------
# average and adaptive average pooling

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", AVG_CASES, ids=AVG_IDS)
def test_avg_pool2d_matches_reference_and_torch(case, dtype, prng):
    shape, k, s, p, ceil, incl, div = case
    x = prng.standard_normal(shape).astype(dtype)
    y = fastconv.avg_pool2d(x, k, s, p, ceil, incl, div)
    assert_close(y, avg_pool2d_ref(x, k, s, p, ceil, incl, div),
                 np.abs(avg_pool2d_ref(np.abs(x), k, s, p, ceil, incl, div)), dtype)
    g = prng.standard_normal(y.shape).astype(dtype)
    gx = fastconv.avg_pool2d_backward(g, shape, k, s, p, ceil, incl, div)
    assert gx.shape == shape
    assert_close(gx, avg_pool2d_backward_ref(g, shape, k, s, p, ceil, incl, div),
                 np.abs(avg_pool2d_backward_ref(np.abs(g), shape, k, s, p, ceil, incl, div)), dtype)
    torch = pytest.importorskip("torch")
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.avg_pool2d(tx, k, s, p, ceil, incl, div)
    ty.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=[f"case{i}" for i in range(len(ADAPTIVE_CASES))])
def test_adaptive_avg_pool2d_matches_reference_and_torch(case, dtype, prng):
    shape, size = case
    x = prng.standard_normal(shape).astype(dtype)
    y = fastconv.adaptive_avg_pool2d(x, size)
    out = pair(size) if not isinstance(size, tuple) else tuple(
        shape[2 + i] if v is None else v for i, v in enumerate(size))
    assert y.shape == shape[:2] + out
    assert_close(y, adaptive_avg_pool2d_ref(x, out), adaptive_avg_pool2d_ref(np.abs(x), out), dtype)
    g = prng.standard_normal(y.shape).astype(dtype)
    gx = fastconv.adaptive_avg_pool2d_backward(g, shape)
    assert_close(gx, adaptive_avg_pool2d_backward_ref(g, shape),
                 adaptive_avg_pool2d_backward_ref(np.abs(g), shape), dtype)
    torch = pytest.importorskip("torch")
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, size)
    ty.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **tol)


def test_global_average_pooling_and_unbatched(prng):
    x = prng.standard_normal((3, 64, 7, 7)).astype(np.float32)
    y = fastconv.adaptive_avg_pool2d(x, 1)
    np.testing.assert_allclose(y[:, :, 0, 0], x.astype(np.float64).mean(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(fastconv.adaptive_avg_pool2d(x[1], (1, 1)), y[1])
    np.testing.assert_array_equal(fastconv.avg_pool2d(x[1], 3, 2, 1), fastconv.avg_pool2d(x, 3, 2, 1)[1])
    assert fastconv.adaptive_avg_pool2d(x, (0, 3)).shape == (3, 64, 0, 3)  # PyTorch allows 0


# ---------------------------------------------------------------------------------------------
# finite differences (float64)

def _numeric_grad(f, x, g, eps=1e-4):  # the ops are piecewise linear
    gx = np.zeros_like(x)
    flat, out = x.reshape(-1), gx.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = np.sum(f(x) * g)
        flat[i] = old - eps
        lo = np.sum(f(x) * g)
        flat[i] = old
        out[i] = (hi - lo) / (2 * eps)
    return gx


def test_gradients_match_finite_differences(prng):
    x = prng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 10.0  # distinct: no ties
    checks = [
        (lambda a: fastconv.max_pool2d(a, 3, 2, 1, ceil_mode=True),
         lambda g: fastconv.max_pool2d_backward(
             g, fastconv.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)[1], x.shape)),
        (lambda a: fastconv.avg_pool2d(a, 3, 2, 1, True, False),
         lambda g: fastconv.avg_pool2d_backward(g, x.shape, 3, 2, 1, True, False)),
        (lambda a: fastconv.adaptive_avg_pool2d(a, (3, 4)),
         lambda g: fastconv.adaptive_avg_pool2d_backward(g, x.shape)),
    ]
    for f, back in checks:
        g = prng.standard_normal(f(x).shape)
        np.testing.assert_allclose(back(g), _numeric_grad(f, x.copy(), g), rtol=1e-7, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# threads and instruction sets

def _all_ops(x, rng):
    """Every pooling op on x: a dict of results (max pooling on 3/2 with padding and ceil mode)."""
    y, idx = fastconv.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    g = rng.standard_normal(y.shape).astype(x.dtype)
    a = fastconv.avg_pool2d(x, 3, 2, 1, True, False)
    ga = rng.standard_normal(a.shape).astype(x.dtype)
    ad = fastconv.adaptive_avg_pool2d(x, (5, 3))
    gd = rng.standard_normal(ad.shape).astype(x.dtype)
    y2, i2 = fastconv.max_pool2d(x, (2, 3), (1, 3), (1, 0), (2, 1), return_indices=True)
    return {
        "y": y, "idx": idx, "y2": y2, "idx2": i2,
        "gx": fastconv.max_pool2d_backward(g, idx, x.shape),
        "unpool": fastconv.max_unpool2d(y, idx, 3, 2, 1, x.shape[2:]),
        "avg": a, "avg_gx": fastconv.avg_pool2d_backward(ga, x.shape, 3, 2, 1, True, False),
        "adaptive": ad, "adaptive_gx": fastconv.adaptive_avg_pool2d_backward(gd, x.shape),
    }


@pytest.mark.usefixtures("threads")
def test_one_and_two_threads_agree(prng):
    x = prng.standard_normal((4, 16, 33, 35)).astype(np.float32)  # large enough to use the team
    fastconv.set_num_threads(1)
    one = _all_ops(x, np.random.default_rng(1))
    fastconv.set_num_threads(2)
    two = _all_ops(x, np.random.default_rng(1))
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    y_ref, i_ref = max_pool2d_ref(x[:1, :4], 3, 2, 1, ceil_mode=True)
    assert_max_equal(two["y"][:1, :4], two["idx"][:1, :4], y_ref, i_ref)


ISA_ORDER = ["generic", "avx2", "avx512"]
ISA_SCRIPT = textwrap.dedent(r"""
    import sys
    import numpy as np
    import fastconv
    sys.path.insert(0, sys.argv[1])
    from test_pool import _all_ops, special_values
    out = {"isa": np.array(fastconv.isa())}
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        for k, x in enumerate((rng.standard_normal((2, 3, 19, 41)).astype(dtype),
                               special_values(rng, (2, 3, 19, 41), dtype))):
            for name, v in _all_ops(x, np.random.default_rng(1)).items():
                out[f"{np.dtype(dtype).name}-{k}-{name}"] = v
    np.savez(sys.argv[2], **out)
""")


@pytest.mark.parametrize("isa", ISA_ORDER[: ISA_ORDER.index(fastconv.isa()) + 1])
def test_forced_isa_gives_identical_results(isa, tmp_path):
    """Every micro-kernel set (FASTCONV_ISA forces the lower ones) computes the same bits."""
    path = str(tmp_path / "out.npz")
    env = dict(os.environ, FASTCONV_ISA=isa)
    run = subprocess.run([sys.executable, "-c", ISA_SCRIPT, TESTS_DIR, path], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = np.load(path)
    assert str(got["isa"]) == isa
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        for k, x in enumerate((rng.standard_normal((2, 3, 19, 41)).astype(dtype),
                               special_values(rng, (2, 3, 19, 41), dtype))):
            y_ref, i_ref = max_pool2d_ref(x, 3, 2, 1, ceil_mode=True)
            key = f"{np.dtype(dtype).name}-{k}"
            assert_max_equal(got[f"{key}-y"], got[f"{key}-idx"], y_ref, i_ref)
            for name, v in _all_ops(x, np.random.default_rng(1)).items():
                np.testing.assert_array_equal(got[f"{key}-{name}"], v, err_msg=f"{key}-{name}")


# ---------------------------------------------------------------------------------------------
# argument checking (PyTorch's rules; every message names the argument)

X = np.zeros((2, 3, 8, 8), np.float32)
Y, IDX = fastconv.max_pool2d(X, 2, return_indices=True)
ARG_ERRORS = [
    (lambda: fastconv.max_pool2d(X, 0), ValueError, "kernel_size must be >= 1"),
    (lambda: fastconv.max_pool2d(X, (2, 2, 2)), TypeError, "kernel_size"),
    (lambda: fastconv.max_pool2d(X, 2, 0), ValueError, "stride must be >= 1"),
    (lambda: fastconv.max_pool2d(X, 2, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: fastconv.max_pool2d(X, 3, padding=2), ValueError,
     "pad should be at most half of effective kernel size.*padding=2"),
    (lambda: fastconv.max_pool2d(X, 2, padding=2, dilation=3), ValueError,
     "pad should be smaller than or equal to half of kernel size.*padding=2"),
    (lambda: fastconv.max_pool2d(X, 2, dilation=0), ValueError, "dilation must be >= 1"),
    (lambda: fastconv.max_pool2d(X, 10), ValueError, r"x of shape \(2, 3, 8, 8\).*too small"),
    (lambda: fastconv.max_pool2d(X, 2, ceil_mode="yes"), TypeError, "ceil_mode"),
    (lambda: fastconv.max_pool2d(X, 2, return_indices=2), TypeError, "return_indices"),
    (lambda: fastconv.max_pool2d(X[0, 0], 2), ValueError, "x must be 3-D .* or 4-D"),
    (lambda: fastconv.max_pool2d(np.zeros((2, 0, 8, 8)), 2), ValueError, "x must have non-zero"),
    (lambda: fastconv.max_pool2d(X.astype(np.int32), 2), TypeError, "x: dtype int32"),
    (lambda: fastconv.max_pool2d_backward(Y, IDX, (2, 3, 8)), ValueError, "grad_out must be 3-D"),
    (lambda: fastconv.max_pool2d_backward(Y, IDX, (2, 4, 8, 8)), ValueError,
     "batch and channel dimensions"),
    (lambda: fastconv.max_pool2d_backward(Y, IDX, (2, 3, -8, 8)), ValueError, "input_shape"),
    (lambda: fastconv.max_pool2d_backward(Y, IDX, "abc"), TypeError, "input_shape"),
    (lambda: fastconv.max_unpool2d(Y, IDX[:1], 2), ValueError, "indices must have the shape of x"),
    (lambda: fastconv.max_unpool2d(Y, IDX, 2, output_size=(5, 5)), ValueError,
     r'invalid output_size "\(5, 5\)" \(dim 0 must be between 6 and 10\)'),
    (lambda: fastconv.max_unpool2d(Y, IDX, 2, output_size=(8,)), ValueError,
     "output_size should be a sequence containing 2 or 4 elements"),
    (lambda: fastconv.avg_pool2d(X, 2, divisor_override=0), ValueError,
     "divisor_override: divisor must be not zero"),
    (lambda: fastconv.avg_pool2d(X, 2, divisor_override=1.5), TypeError, "divisor_override"),
    (lambda: fastconv.avg_pool2d(X, 3, padding=2), ValueError, "pad should be at most half"),
    (lambda: fastconv.avg_pool2d(X, 2, count_include_pad=None), TypeError, "count_include_pad"),
    (lambda: fastconv.avg_pool2d_backward(Y, X.shape, 3), ValueError,
     r"grad_out must have the forward output's shape \(2, 3, 2, 2\)"),
    (lambda: fastconv.adaptive_avg_pool2d(X, (-1, 3)), ValueError,
     "elements of output_size must be greater than or equal to 0"),
    (lambda: fastconv.adaptive_avg_pool2d(X, 2.5), TypeError, "output_size"),
    (lambda: fastconv.adaptive_avg_pool2d_backward(Y, (2, 3, 8)), ValueError, "grad_out must be 3-D"),
]


@pytest.mark.parametrize("call,err,match", ARG_ERRORS, ids=[f"err{i}" for i in range(len(ARG_ERRORS))])
def test_argument_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# the C ABI (ctypes): descriptor checks and "no write on a bad switch"

class PoolDesc(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in ("n", "c", "h", "w", "kh", "kw", "stride_h", "stride_w",
                                              "pad_h", "pad_w", "dil_h", "dil_w", "ceil_mode")]


class PlanesDesc(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in ("n", "c", "h", "w", "ho", "wo")]


@pytest.fixture(scope="module")
def lib():
    path = None
    with open("/proc/self/maps") as f:
        for line in f:
            name = line.split()[-1]
            if os.path.basename(name).startswith("libfastconv") and ".so" in name:
                path = name
    if path is None:
        pytest.skip("libfastconv is not loaded from a shared library")
    lib = ctypes.CDLL(path)
    lib.fc_last_error.restype = ctypes.c_char_p
    P = ctypes.c_void_p
    lib.fc_pool2d_output_size.argtypes = [ctypes.POINTER(PoolDesc), ctypes.POINTER(ctypes.c_int64),
                                          ctypes.POINTER(ctypes.c_int64)]
    lib.fc_max_pool2d_forward.argtypes = [ctypes.POINTER(PoolDesc), ctypes.c_int, P, P, P]
    lib.fc_avg_pool2d_forward.argtypes = [ctypes.POINTER(PoolDesc), ctypes.c_int, ctypes.c_int,
                                          ctypes.c_int64, P, P]
    for fn in ("fc_max_pool2d_backward", "fc_max_unpool2d_forward", "fc_max_unpool2d_backward"):
        getattr(lib, fn).argtypes = [ctypes.POINTER(PlanesDesc), ctypes.c_int, P, P, P]
    return lib


def _p(a):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


def test_c_abi_switch_entries_write_nothing_on_a_bad_switch(lib):
    d = PlanesDesc(2, 3, 8, 10, 4, 5)
    dy = np.ones((2, 3, 4, 5), np.float32)
    idx = np.zeros((2, 3, 4, 5), np.int64)
    idx[1, 2, 3, 4] = 80  # one past the plane
    dx = np.full((2, 3, 8, 10), 7.0, np.float32)
    small = np.full((2, 3, 4, 5), 7.0, np.float32)
    for fn, a, out in (("fc_max_pool2d_backward", dy, dx), ("fc_max_unpool2d_forward", dy, dx),
                       ("fc_max_unpool2d_backward", dx.copy(), small)):
        before = out.copy()
        assert getattr(lib, fn)(ctypes.byref(d), 0, _p(a), _p(idx), _p(out)) == 1  # FC_EINVAL
        assert b"switches[119] = 80" in lib.fc_last_error()
        np.testing.assert_array_equal(out, before)
    idx[1, 2, 3, 4] = 79
    assert lib.fc_max_pool2d_backward(ctypes.byref(d), 0, _p(dy), _p(idx), _p(dx)) == 0
    assert dx.sum() == dy.sum() and lib.fc_last_error() == b""


@pytest.mark.parametrize("field,value,match", [
    ("kh", 0, b"kh must be >= 1, got 0"), ("stride_w", -2, b"stride_w must be >= 1"),
    ("pad_h", 2, b"pad should be at most half of effective kernel size, but got pad_h=2"),
    ("ceil_mode", 2, b"ceil_mode must be 0 or 1"), ("h", 1, b"Output size is too small"),
    ("dil_w", 1 << 62, b"overflows int64"), ("n", 1 << 62, b"overflows int64"),
])
def test_c_abi_pool_desc_checks(lib, field, value, match):
    d = PoolDesc(2, 3, 8, 8, 3, 3, 2, 2, 0, 0, 1, 1, 0)
    ho, wo = ctypes.c_int64(), ctypes.c_int64()
    assert lib.fc_pool2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) == 0
    assert (ho.value, wo.value) == (3, 3)
    setattr(d, field, value)
    assert lib.fc_pool2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) in (1, 4)
    assert match in lib.fc_last_error()


def test_c_abi_null_pointers_bad_dtype_and_avg_dilation(lib):
    d = PoolDesc(1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1, 0)
    x, y = np.zeros(16, np.float32), np.zeros(4, np.float32)
    assert lib.fc_max_pool2d_forward(ctypes.byref(d), 0, None, _p(y), None) == 1
    assert b"NULL" in lib.fc_last_error()
    assert lib.fc_max_pool2d_forward(ctypes.byref(d), 7, _p(x), _p(y), None) == 1
    assert b"dtype 7" in lib.fc_last_error()
    d.dil_h = 2
    assert lib.fc_avg_pool2d_forward(ctypes.byref(d), 0, 1, 0, _p(x), _p(y)) == 1
    assert b"dil_h and dil_w must be 1" in lib.fc_last_error()

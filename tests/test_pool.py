"""Pooling: max with switches, its backward, unpooling, average and adaptive average pooling.

Checked against the loop references in pool_reference.py (max pooling and switches exactly,
sums within the README's accuracy contract), against PyTorch when it is importable (values and
switches identical) and by finite differences in float64. test_pool_checks.py covers bad arguments
and switches, the C ABI, thread counts and forced instruction sets."""

import os
import sys
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
    # padded pools on small planes read bordered copies of the planes (pool.h)
    ((2, 8, 14, 14), 3, 1, 1, 1, False),  # GoogLeNet's 3x3/1 on 14x14
    ((1, 4, 35, 35), 3, 1, 1, 1, False),  # unit stride, 35 wide
    ((2, 3, 28, 27), 3, 2, 1, 1, True),  # stride 2 with ceil mode's extra window
    ((3, 2, 9, 9), 3, 1, 1, 2, False),  # dilated
    ((1, 3, 4, 4), 2, 1, 1, 5, False),  # windows of border only (PyTorch: -inf, first tap)
]
MAX_IDS = [
    f"x{'x'.join(map(str, c[0]))}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-{'ceil' if c[5] else 'floor'}"
    for c in MAX_CASES
]

# the real layers (channels and batch cut down): AlexNet, VGG, GoogLeNet, ResNet stem
LAYERS = [
    ((1, 4, 55, 55), 3, 2, 0),
    ((1, 2, 112, 112), 2, 2, 0),
    ((1, 4, 56, 56), 3, 2, 1),
    ((1, 2, 112, 112), 3, 2, 1),
]

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
    # bordered copies (pool.h): Inception's 3x3/1 branch pools, ceil mode, divisors
    ((2, 8, 17, 17), 3, 1, 1, False, True, None),
    ((2, 3, 8, 8), 3, 1, 1, True, False, None),
    ((1, 3, 9, 9), 3, 2, 1, True, True, 5),
    ((2, 2, 5, 6), 4, 3, 2, True, False, None),  # ceil windows past the padding
]
AVG_IDS = [f"case{i}" for i in range(len(AVG_CASES))]

ADAPTIVE_CASES = [
    ((2, 3, 7, 9), 1),
    ((2, 3, 7, 9), 3),
    ((1, 2, 5, 6), (7, 5)),
    ((1, 2, 8, 8), (4, None)),
    ((2, 2, 10, 13), (3, 5)),
    ((1, 3, 6, 6), (None, None)),
]


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


def special_values(rng, shape, dtype, nan=True):
    """Small integers (many ties), signed zeros, infinities and (with ``nan``) a few NaNs."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=(4, max(1, flat.size // 20)), replace=False)
    flat[picks[0]] = -0.0
    flat[picks[1]] = np.inf
    flat[picks[2]] = -np.inf
    if nan:
        flat[picks[3][: max(1, flat.size // 60)]] = np.nan
    return x


def special_inputs(rng, shape, dtype):
    """Random normals; special values with NaNs in (nearly) every plane; special values without
    NaNs; and without NaNs except in one plane (the max kernels check each plane for NaNs and
    drop their NaN test where there are none)."""
    one_nan = special_values(rng, shape, dtype, nan=False)
    one_nan.reshape(-1, *shape[-2:])[-1, -1, 0] = np.nan
    return (
        rng.standard_normal(shape).astype(dtype),
        special_values(rng, shape, dtype),
        special_values(rng, shape, dtype, nan=False),
        one_nan,
    )


def assert_max_equal(y, idx, y_ref, idx_ref):
    assert y.dtype == y_ref.dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)  # NaNs compare equal here
    np.testing.assert_array_equal(idx, idx_ref)


def assert_close(got, ref, scale, dtype):
    err = np.abs(got.astype(np.float64) - ref) / (scale + 1e-300)
    assert got.dtype == dtype
    assert np.all(err <= TOL[dtype]), f"worst relative error {err.max():.3g}"


def torch_max(torch, x, k, s, p, d, ceil):
    y, i = torch.nn.functional.max_pool2d(
        torch.from_numpy(x), k, s, p, d, ceil, return_indices=True
    )
    return y.numpy(), i.numpy()


# ---------------------------------------------------------------------------------------------
# max pooling forward


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", MAX_CASES, ids=MAX_IDS)
def test_max_pool2d_matches_reference(case, dtype, prng):
    shape, k, s, p, d, ceil = case
    for x in special_inputs(prng, shape, dtype):
        y_ref, i_ref = max_pool2d_ref(x, k, s, p, d, ceil)
        y, idx = fastconv.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        assert_max_equal(y, idx, y_ref, i_ref)
        # without switches (the bordered planes' flat runs, pool.h): the same values, and where
        # +0 and -0 tie, the first one's sign
        y0 = fastconv.max_pool2d(x, k, s, p, d, ceil)
        np.testing.assert_array_equal(y0, y_ref)
        np.testing.assert_array_equal(np.signbit(y0), np.signbit(y_ref))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", MAX_CASES, ids=MAX_IDS)
def test_max_pool2d_matches_torch(case, dtype, prng):
    torch = pytest.importorskip("torch")
    shape, k, s, p, d, ceil = case
    for x in special_inputs(prng, shape, dtype):
        y, idx = fastconv.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        assert_max_equal(y, idx, *torch_max(torch, x, k, s, p, d, ceil))


SEPARABLE_CASES = [
    ((2, 3, 7, 7), 3, 1, 1, False),  # the flat 3x3/1 run: GoogLeNet's 7x7 planes
    ((1, 2, 20, 37), 3, 1, 1, False),  # (whole vectors and a tail in each pass)
    ((1, 2, 2, 9), 3, 1, 1, False),  # (two rows: no row with both neighbours)
    ((1, 2, 14, 9), 3, 1, 1, False),
    ((1, 2, 1, 6), 3, 1, 1, False),  # one row, one column, one pixel
    ((1, 2, 6, 1), 3, 1, 1, False),
    ((2, 2, 1, 1), 3, 1, 1, False),
    ((1, 3, 2, 2), 3, 1, 1, True),
    ((2, 3, 15, 15), 3, 2, 1, False),  # ResNet's 3x3/2, odd and even planes, ceil mode
    ((1, 2, 16, 14), 3, 2, 1, True),
    ((1, 3, 13, 27), 3, 2, 0, True),  # AlexNet's and Inception's, no padding
    ((1, 2, 12, 19), 2, 2, 0, True),  # VGG's 2x2/2, a ceil window past the right edge
    ((1, 2, 11, 23), (3, 2), (2, 3), (1, 1), False),  # rectangular, strides 2 and 3
    ((1, 2, 9, 40), (1, 5), 1, (0, 2), False),
    # rows of whole vectors and a tail (16 floats a vector on AVX-512, 8 on AVX2)
    ((1, 3, 9, 37), 3, 2, 0, True),
    ((1, 2, 7, 33), 3, 1, 0, False),
    ((1, 2, 6, 50), 2, 2, 0, False),
    ((1, 2, 5, 130), 3, 2, 1, False),  # (AVX2 floats keep the compiler's loops on wide rows)
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", SEPARABLE_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_max_pool2d_separable_planes_same_bits(case, dtype, prng):
    """Without switches at dilation 1, planes free of NaN and -0 are pooled by separable
    maxima (rows, then columns), the others by the scanning kernel: every plane the reference's
    bits, with ties, +0, infinities and a plane of -inf, and NaN or -0 planes among clean ones."""
    shape, k, s, p, ceil = case
    ties = prng.integers(-2, 3, size=shape).astype(dtype)
    flat = ties.reshape(-1)
    picks = prng.choice(flat.size, size=(2, max(1, flat.size // 20)), replace=False)
    flat[picks[0]], flat[picks[1]] = np.inf, -np.inf
    ties.reshape(-1, *shape[-2:])[0] = -np.inf
    mixed = special_values(prng, shape, dtype)  # NaNs and -0s in most planes
    mixed.reshape(-1, *shape[-2:])[::2] = ties.reshape(-1, *shape[-2:])[::2]
    for x in (prng.standard_normal(shape).astype(dtype), ties, mixed):
        y_ref, _ = max_pool2d_ref(x, k, s, p, 1, ceil)
        y = fastconv.max_pool2d(x, k, s, p, 1, ceil)
        assert y.dtype == dtype
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(np.signbit(y), np.signbit(y_ref))


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_all_minus_inf_windows_on_bordered_planes(dtype, prng):
    # unit-stride padded pools on small planes take the bordered-plane path (pool_api.cpp): a
    # window of -inf only (here a 5x5 block and a whole plane) must still point its switch at its
    # first in-plane position, never at the border
    x = prng.standard_normal((2, 3, 14, 14)).astype(dtype)
    x[0, 1, 3:8, 5:10] = -np.inf
    x[1, 2] = -np.inf
    for kernel, padding in ((3, 1), (5, 2)):
        y, idx = fastconv.max_pool2d(x, kernel, 1, padding, return_indices=True)
        assert_max_equal(y, idx, *max_pool2d_ref(x, kernel, 1, padding))
        assert (y[1, 2] == -np.inf).all() and idx[1, 2].min() >= 0


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


@pytest.mark.parametrize(
    "case",
    [c for c in MAX_CASES if c[0][-2:] != (4, 4)],  # (windows of padding: switches outside)
    ids=[i for c, i in zip(MAX_CASES, MAX_IDS) if c[0][-2:] != (4, 4)],
)
def test_max_pool2d_backward_matches_torch(case, prng):
    torch = pytest.importorskip("torch")
    shape, k, s, p, d, ceil = case
    x = prng.standard_normal(shape)
    tx = torch.from_numpy(x).requires_grad_()
    ty, ti = torch.nn.functional.max_pool2d(tx, k, s, p, d, ceil, return_indices=True)
    g = prng.standard_normal(ty.shape)
    ty.backward(torch.from_numpy(g))
    _, idx = fastconv.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_allclose(
        fastconv.max_pool2d_backward(g, idx, shape), tx.grad.numpy(), rtol=1e-12, atol=1e-12
    )


UNPOOL_CASES = [
    ((2, 3, 8, 10), 2, None, 0, None),
    ((1, 2, 9, 11), 3, 2, 1, None),
    ((1, 2, 9, 11), 3, 2, 1, (10, 12)),
    ((2, 1, 7, 7), 3, 2, 0, (1, 1, 8, 8)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", UNPOOL_CASES, ids=[f"case{i}" for i in range(len(UNPOOL_CASES))])
def test_max_unpool2d_matches_reference_and_torch(case, dtype, prng):
    shape, k, s, p, out = case
    x = prng.standard_normal(shape).astype(dtype)
    y, idx = fastconv.max_pool2d(x, k, s, p, return_indices=True)
    u = fastconv.max_unpool2d(y, idx, k, s, p, out)
    stride = k if s is None else s
    hw = (
        tuple(out[-2:])
        if out is not None
        else tuple((y.shape[2 + i] - 1) * stride + k - 2 * p for i in range(2))
    )
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


# ---------------------------------------------------------------------------------------------
# average and adaptive average pooling


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", AVG_CASES, ids=AVG_IDS)
def test_avg_pool2d_matches_reference_and_torch(case, dtype, prng):
    shape, k, s, p, ceil, incl, div = case
    x = prng.standard_normal(shape).astype(dtype)
    y = fastconv.avg_pool2d(x, k, s, p, ceil, incl, div)
    assert_close(
        y,
        avg_pool2d_ref(x, k, s, p, ceil, incl, div),
        np.abs(avg_pool2d_ref(np.abs(x), k, s, p, ceil, incl, div)),
        dtype,
    )
    g = prng.standard_normal(y.shape).astype(dtype)
    gx = fastconv.avg_pool2d_backward(g, shape, k, s, p, ceil, incl, div)
    assert gx.shape == shape
    assert_close(
        gx,
        avg_pool2d_backward_ref(g, shape, k, s, p, ceil, incl, div),
        np.abs(avg_pool2d_backward_ref(np.abs(g), shape, k, s, p, ceil, incl, div)),
        dtype,
    )
    torch = pytest.importorskip("torch")
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.avg_pool2d(tx, k, s, p, ceil, incl, div)
    ty.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(
    "shape,k,s,p,incl",
    [
        ((1, 6, 35, 35), 3, 1, 1, True),  # Inception v3's branch pools: rows of 4+ full vectors
        ((2, 5, 17, 17), 3, 1, 1, True),
        ((1, 4, 8, 8), 3, 1, 1, True),
        ((1, 3, 30, 70), 3, 1, 1, False),  # unbordered rows, 4 blocks side by side and a tail
        ((2, 3, 20, 75), 3, 2, 1, True),  # stride 2
    ],
)
def test_avg_pool2d_same_bits_as_torch(shape, k, s, p, incl, dtype, prng):
    """Each output sums its taps in PyTorch's order from 0 (several blocks of outputs side by
    side change no lane's order): the same bits as torch.nn.functional.avg_pool2d."""
    torch = pytest.importorskip("torch")
    x = prng.standard_normal(shape).astype(dtype)
    y = fastconv.avg_pool2d(x, k, s, p, count_include_pad=incl)
    want = torch.nn.functional.avg_pool2d(torch.from_numpy(x), k, s, p, count_include_pad=incl)
    np.testing.assert_array_equal(y.view(np.uint8), want.numpy().view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize(
    "case", ADAPTIVE_CASES, ids=[f"case{i}" for i in range(len(ADAPTIVE_CASES))]
)
def test_adaptive_avg_pool2d_matches_reference_and_torch(case, dtype, prng):
    shape, size = case
    x = prng.standard_normal(shape).astype(dtype)
    y = fastconv.adaptive_avg_pool2d(x, size)
    out = (
        pair(size)
        if not isinstance(size, tuple)
        else tuple(shape[2 + i] if v is None else v for i, v in enumerate(size))
    )
    assert y.shape == shape[:2] + out
    assert_close(y, adaptive_avg_pool2d_ref(x, out), adaptive_avg_pool2d_ref(np.abs(x), out), dtype)
    g = prng.standard_normal(y.shape).astype(dtype)
    gx = fastconv.adaptive_avg_pool2d_backward(g, shape)
    assert_close(
        gx,
        adaptive_avg_pool2d_backward_ref(g, shape),
        adaptive_avg_pool2d_backward_ref(np.abs(g), shape),
        dtype,
    )
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
    np.testing.assert_array_equal(
        fastconv.avg_pool2d(x[1], 3, 2, 1), fastconv.avg_pool2d(x, 3, 2, 1)[1]
    )
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
        (
            lambda a: fastconv.max_pool2d(a, 3, 2, 1, ceil_mode=True),
            lambda g: fastconv.max_pool2d_backward(
                g, fastconv.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)[1], x.shape
            ),
        ),
        (
            lambda a: fastconv.avg_pool2d(a, 3, 2, 1, True, False),
            lambda g: fastconv.avg_pool2d_backward(g, x.shape, 3, 2, 1, True, False),
        ),
        (
            lambda a: fastconv.adaptive_avg_pool2d(a, (3, 4)),
            lambda g: fastconv.adaptive_avg_pool2d_backward(g, x.shape),
        ),
    ]
    for f, back in checks:
        g = prng.standard_normal(f(x).shape)
        np.testing.assert_allclose(back(g), _numeric_grad(f, x.copy(), g), rtol=1e-7, atol=1e-8)


def test_backwards_take_unbatched_shapes(prng):
    x = prng.standard_normal((3, 9, 11))
    y, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    g = prng.standard_normal(y.shape)
    gx = fastconv.max_pool2d_backward(g, idx, x.shape)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(
        gx, fastconv.max_pool2d_backward(g[None], idx[None], (1,) + x.shape)[0]
    )
    ga = fastconv.avg_pool2d_backward(g, x.shape, 3, 2, 1)
    np.testing.assert_array_equal(
        ga, fastconv.avg_pool2d_backward(g[None], (1,) + x.shape, 3, 2, 1)[0]
    )
    gd = fastconv.adaptive_avg_pool2d_backward(g, x.shape)
    np.testing.assert_array_equal(
        gd, fastconv.adaptive_avg_pool2d_backward(g[None], (1,) + x.shape)[0]
    )
    u = fastconv.max_unpool2d(y, idx, 3, 2, 1)
    assert u.shape == x.shape
    np.testing.assert_array_equal(fastconv.max_unpool2d_backward(u, idx), y)  # unpool's adjoint


def test_switch_ops_take_noncontiguous_readonly_arrays(prng):
    x = prng.standard_normal((2, 3, 8, 10))
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    g = prng.standard_normal(y.shape)
    want_gx = fastconv.max_pool2d_backward(g, idx, x.shape)
    want_u = fastconv.max_unpool2d(y, idx, 2)
    # the same values in transposed storage, read-only
    g2, idx2, y2 = (
        np.ascontiguousarray(a.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0) for a in (g, idx, y)
    )
    for a in (g2, idx2, y2):
        a.flags.writeable = False
        assert not a.flags.c_contiguous
    np.testing.assert_array_equal(fastconv.max_pool2d_backward(g2, idx2, x.shape), want_gx)
    np.testing.assert_array_equal(fastconv.max_unpool2d(y2, idx2, 2), want_u)
    np.testing.assert_array_equal(fastconv.max_unpool2d_backward(want_u, idx2), y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape,k,s,p", [((2, 3, 9, 11), 3, 1, 1), ((1, 4, 12, 12), 3, 2, 1), ((2, 2, 7, 5), 2, 2, 0)]
)
def test_module_without_grad_skips_switches_same_values(rng, dtype, shape, k, s, p):
    """nn.MaxPool2d under no_grad (or on a constant input) runs without switches: the same
    values, bit for bit, as with them (ties, signed zeros, infinities and NaNs included)."""
    from fastconv import nn
    from fastconv.autograd import Tensor, no_grad

    x = special_values(rng, shape, dtype)
    pool = nn.MaxPool2d(k, s, p)
    with_grad = pool(Tensor(x, requires_grad=True))
    with no_grad():
        without = pool(Tensor(x, requires_grad=True))
    constant = pool(Tensor(x))
    want = fastconv.max_pool2d(x, k, s, p)
    for y in (with_grad, without, constant):
        assert y.data.dtype == dtype
        np.testing.assert_array_equal(y.data, want)
    assert with_grad.requires_grad and not without.requires_grad

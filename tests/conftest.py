"""Shared fixtures and checking helpers for the convolution tests.

Test modules import the helpers directly (`from conftest import assert_close, ...`); the tests
directory is put on sys.path here so that works whatever pytest's import mode.
"""

import itertools
import os
import random
import sys
import zlib
from typing import NamedTuple

import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

# auto's table follows the measured multiply-add rate of AVX-512 (hw.h, full_avx512), which
# differs between the CPUs the suite runs on (Zen 4 half rate, Xeons with two 512-bit pipes
# full). The heuristic tests expect the half-rate table: pinned here, for this process and its
# subprocesses, before fastconv loads; test_auto_full_avx512 sets it itself, and test_hardware
# checks the measurement with it unset.
os.environ.setdefault("FASTCONV_FULL_AVX512", "0")

from reference import (  # noqa: E402
    conv2d_backward_ref,
    conv2d_backward_scale,
    conv2d_ref,
    conv2d_scale,
    pair,
    same_padding,
)

# README, "Algorithms and accuracy": float32 within 1e-4 and float64 within 1e-10, relative to the
# magnitude of the summed terms (computed per element by the reference on absolute values).
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
TINY = np.finfo(np.float64).tiny
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]


# --- a convolution case ---------------------------------------------------------------


class Case(NamedTuple):
    n: int
    c: int
    h: int
    w: int
    k: int
    kh: int
    kw: int
    stride: object = 1  # int or (h, w): passed to fastconv as written
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self):
        return (self.k, self.c // self.groups, self.kh, self.kw)

    @property
    def params(self):
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )

    @property
    def id(self):
        def f(v):
            return "x".join(map(str, pair(v)))

        return (
            f"{self.n}x{self.c}x{self.h}x{self.w}-w{self.k}x{self.c // self.groups}x"
            f"{self.kh}x{self.kw}-s{f(self.stride)}-p{f(self.padding)}-d{f(self.dilation)}"
            f"-g{self.groups}" + ("" if self.bias else "-nobias")
        )


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def rng(request):
    """A generator seeded from the test id: reproducible, different for every test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def restore_threads():
    """Put fastconv's thread count back after a test that changes it."""
    import fastconv

    before = fastconv.get_num_threads()
    yield before
    fastconv.set_num_threads(before)


# --- tolerance rule ------------------------------------------------------------------------


def assert_close(actual, expected, dtype, scale, name="result"):
    """|actual - expected| <= tol(dtype) * (scale + tiny), elementwise.

    `expected` and `scale` are float64 arrays from the reference; `scale` is the sum of the
    absolute values of the terms behind each element. Shape and dtype must match exactly.
    """
    dtype = np.dtype(dtype)
    assert isinstance(actual, np.ndarray), f"{name}: expected an ndarray, got {type(actual)}"
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape}, expected {expected.shape}"
    )
    if actual.size == 0:
        return
    tol = TOLERANCE[dtype]
    a = actual.astype(np.float64)
    finite = np.isfinite(a)
    assert finite.all(), f"{name}: non-finite values at {np.argwhere(~finite)[:5].tolist()}"
    err = np.abs(a - expected)
    bound = tol * (np.asarray(scale, dtype=np.float64) + TINY)
    bad = err > bound
    if bad.any():
        ratio = err / bound
        worst = np.unravel_index(np.argmax(ratio), ratio.shape)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements outside tolerance {tol:g}*scale "
            f"(shape {a.shape}, {dtype}); worst at {tuple(int(i) for i in worst)}: "
            f"actual {a[worst]!r}, expected {expected[worst]!r}, "
            f"scale {np.asarray(scale)[worst]!r}, "
            f"err/bound {ratio[worst]:.3g}; first bad indices {np.argwhere(bad)[:5].tolist()}"
        )


# --- argument helpers ----------------------------------------------------------------------


def described_caches(root, l2, l1="32K", l3=None):
    """A sysfs cache description under root (for FASTCONV_SYSFS_CACHE): an L1d of l1, a unified
    L2 of l2 ("64K") and, if given, a unified L3 of l3; returns root as a string."""
    levels = [(1, "Data", l1), (2, "Unified", l2)] + ([(3, "Unified", l3)] if l3 else [])
    for i, (level, kind, size) in enumerate(levels):
        d = root / f"index{i}"
        d.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (d / name).write_text(f"{value}\n")
    return str(root)


def ref_padding(padding, kernel, dilation):
    """The user's padding argument (int, pair, "same", "valid") as the reference takes it."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        assert padding == "same"
        return same_padding(kernel, pair(dilation))
    return pair(padding)


def make_inputs(rng, x_shape, w_shape, dtype, bias=True):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    return x, w, b


def expected_forward(x, w, b, stride, padding, dilation, groups):
    """(expected, scale) for conv2d, any padding form; x may be unbatched (C, H, W)."""
    unbatched = np.ndim(x) == 3
    x4 = x[None] if unbatched else x
    pad = ref_padding(padding, np.shape(w)[2:], dilation)
    args = (pair(stride), pad, pair(dilation), groups)
    y = conv2d_ref(x4, w, b, *args)
    s = conv2d_scale(x4, w, b, *args)
    return (y[0], s[0]) if unbatched else (y, s)


def expected_backward(dy, x, w, stride, padding, dilation, groups):
    """((dx, dw, db), (sdx, sdw, sdb)) for conv2d_backward; x, dy may be unbatched."""
    unbatched = np.ndim(x) == 3
    x4, dy4 = (x[None], dy[None]) if unbatched else (x, dy)
    pad = ref_padding(padding, np.shape(w)[2:], dilation)
    args = (pair(stride), pad, pair(dilation), groups)
    dx, dw, db = conv2d_backward_ref(dy4, x4, w, *args)
    sdx, sdw, sdb = conv2d_backward_scale(dy4, x4, w, *args)
    if unbatched:
        dx, sdx = dx[0], sdx[0]
    return (dx, dw, db), (sdx, sdw, sdb)


def output_shape(x_shape, w_shape, stride, padding, dilation):
    """Shape conv2d gives for a batched x_shape (N, C, H, W)."""
    from reference import out_size, padding4

    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    top, bottom, left, right = padding4(ref_padding(padding, w_shape[2:], dilation))
    ho = out_size(x_shape[2], top, bottom, w_shape[2], sh, dh)
    wo = out_size(x_shape[3], left, right, w_shape[3], sw, dw)
    return (x_shape[0], w_shape[0], ho, wo)


def check_backward(grads, expected, scales, dtype, needs=(True, True, True)):
    """Compare (grad_x, grad_w, grad_b) against the reference; collect every failure."""
    assert isinstance(grads, tuple) and len(grads) == 3, (
        f"conv2d_backward must return a 3-tuple, got {type(grads)}"
    )
    failures = []
    for name, got, exp, sc, need in zip(
        ("grad_x", "grad_w", "grad_b"), grads, expected, scales, needs
    ):
        if not need:
            if got is not None:
                failures.append(f"{name}: not asked for (needs={needs}) but returned {type(got)}")
            continue
        try:
            assert_close(got, exp, dtype, sc, name)
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        raise AssertionError("\n".join(failures))


def snapshot(*arrays):
    """Copies of the inputs, to check afterwards that a call left them unchanged."""
    return [None if a is None else np.array(a, copy=True) for a in arrays]


def assert_unchanged(before, arrays, names):
    for b, a, n in zip(before, arrays, names):
        if b is None:
            continue
        assert np.array_equal(b, np.asarray(a), equal_nan=True), f"input {n} was modified"


# --- case lists ----------------------------------------------------------------------------


def pairwise(axes, seed):
    """A small list of dicts covering every pair of values of every two axes (greedy AETG)."""
    names = list(axes)
    uncovered = {
        (a, i, b, j)
        for a, b in itertools.combinations(names, 2)
        for i in range(len(axes[a]))
        for j in range(len(axes[b]))
    }
    rnd = random.Random(seed)
    rows = []

    def covers(row):
        return {(a, row[a], b, row[b]) for a, b in itertools.combinations(names, 2)} & uncovered

    while uncovered:
        todo = sorted(uncovered)
        best, best_cov = None, set()
        for _ in range(40):
            a, i, b, j = rnd.choice(todo)
            row = {n: rnd.randrange(len(axes[n])) for n in names}
            row[a], row[b] = i, j
            cov = covers(row)
            if len(cov) > len(best_cov):
                best, best_cov = row, cov
        uncovered -= best_cov
        rows.append({n: axes[n][i] for n, i in best.items()})
    return rows

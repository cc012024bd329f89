"""conv2d forward and its data, weight and bias gradients against the float64 reference.

Every algorithm x {stride, padding, dilation, groups, kernel, batch, odd spatial sizes} x
{float32, float64}. Not the full Cartesian product: three pairwise-covering case lists
(general, 1x1 for gemm1x1, groups == C for depthwise), each value of each parameter appearing
with each algorithm that can run it; plus scaled-down real layers, a randomized (hypothesis)
test, and the API properties (needs, threads, unbatched, "same"/"valid", views, read-only).
"""

import functools
import itertools
import os
import subprocess
import sys
import textwrap
import zlib
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
from _isa import AVAILABLE_ISAS, run_isa
from conftest import (
    DTYPE_IDS,
    DTYPES,
    Case,
    assert_close,
    assert_unchanged,
    check_backward,
    expected_backward,
    expected_forward,
    make_inputs,
    output_shape,
    pairwise,
    snapshot,
)
from reference import conv2d_backward_ref, conv2d_ref, pair

SPEC_ALGORITHMS = ("im2col", "direct", "gemm1x1", "depthwise", "reference", "winograd", "fft")


def spec_algorithms(case):
    """The algorithms the API promises can run this case (issue 2 / the brief)."""
    algos = {"im2col", "direct", "reference"}
    if case.kh == 1 and case.kw == 1:
        algos.add("gemm1x1")
    if case.groups == case.c:
        algos.add("depthwise")
    if pair(case.stride) == (1, 1):
        if pair(case.dilation) == (1, 1):
            algos.add("fft")  # (the small test shapes are far from its size limits)
        if (case.kh, case.kw) == (3, 3):
            algos.add("winograd")  # dilated ones through their phase planes
    return algos


# --- the pairwise case lists ---------------------------------------------------------------

# (C, K, groups) for each kind of grouping, a small and a wider channel count
CHANNELS = {
    "g1": {"small": (3, 5, 1), "wide": (16, 20, 1)},
    "g2": {"small": (4, 6, 2), "wide": (10, 18, 2)},
    "dw": {"small": (3, 3, 3), "wide": (17, 17, 17)},  # groups == C, multiplier 1
    "dw2": {"small": (3, 6, 3), "wide": (9, 18, 9)},  # groups == C, multiplier 2
}


def fit(size, k, pad, stride, dil):
    """Grow a spatial size until the dilated kernel fits the padded input; keep it odd."""
    eff = dil * (k - 1) + 1
    if size + 2 * pad < eff:
        size = eff - 2 * pad + 2 * stride
        size += 1 - size % 2
    return max(size, 1)


def build(kernel, stride, padding, dilation, groups, batch, spatial, chan, bias):
    c, k, g = CHANNELS[groups][chan]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, pair(stride), pair(padding), pair(dilation)
    h = fit(spatial[0], kh, ph, sh, dh)
    w = fit(spatial[1], kw, pw, sw, dw)
    return Case(batch, c, h, w, k, kh, kw, stride, padding, dilation, g, bias)


KERNELS = [(1, 1), (3, 3), (5, 5), (1, 7), (7, 1), (11, 11)]
STRIDES = [1, 2, 3, (2, 1)]
PADDINGS = [0, 1, 2, (0, 2), (2, 1)]
DILATIONS = [1, 2, 3, (1, 2)]
GROUPINGS = ["g1", "g2", "dw", "dw2"]
BATCHES = [1, 3]
SPATIAL = [(13, 11), (7, 9), (5, 17)]
CHANS = ["small", "wide"]
BIAS = [True, False]

GENERAL = [
    build(**r)
    for r in pairwise(
        dict(
            kernel=KERNELS,
            stride=STRIDES,
            padding=PADDINGS,
            dilation=DILATIONS,
            groups=GROUPINGS,
            batch=BATCHES,
            spatial=SPATIAL,
            chan=CHANS,
            bias=BIAS,
        ),
        seed=1,
    )
]
ONE_BY_ONE = [
    build(kernel=(1, 1), **r)
    for r in pairwise(
        dict(
            stride=STRIDES,
            padding=PADDINGS,
            dilation=DILATIONS,
            groups=GROUPINGS,
            batch=BATCHES,
            spatial=SPATIAL,
            chan=CHANS,
            bias=BIAS,
        ),
        seed=2,
    )
]
DEPTHWISE = [
    build(**r)
    for r in pairwise(
        dict(
            kernel=KERNELS,
            stride=STRIDES,
            padding=PADDINGS,
            dilation=DILATIONS,
            groups=["dw", "dw2"],
            batch=BATCHES,
            spatial=SPATIAL,
            chan=CHANS,
            bias=BIAS,
        ),
        seed=3,
    )
]
# Unit stride, where Winograd (3x3) and FFT (any kernel) apply; dilated ones run on phase planes.
UNIT_STRIDE = [
    build(stride=1, **r)
    for r in pairwise(
        dict(
            kernel=[(3, 3), (3, 3), (5, 5), (1, 7), (7, 1), (11, 11)],
            padding=PADDINGS,
            dilation=DILATIONS,
            groups=GROUPINGS,
            batch=BATCHES,
            spatial=SPATIAL,
            chan=CHANS,
            bias=BIAS,
        ),
        seed=4,
    )
]
CASES = list(dict.fromkeys(GENERAL + ONE_BY_ONE + DEPTHWISE + UNIT_STRIDE))

# Scaled-down layers of src/fastconv/suites/convnet_benchmarks.json (and the nets' typical convs).
LAYERS = {
    "L1": Case(1, 3, 35, 35, 96, 11, 11),
    "L2": Case(1, 32, 20, 20, 64, 9, 9),
    "L3": Case(1, 64, 16, 16, 64, 9, 9),
    "L4": Case(2, 64, 16, 16, 64, 7, 7),
    "L5": Case(1, 384, 13, 13, 384, 3, 3),
    "vgg-3x3-pad1": Case(2, 64, 14, 14, 64, 3, 3, padding=1),
    "alexnet-11x11-s4-p2": Case(1, 3, 63, 63, 64, 11, 11, stride=4, padding=2),
    "alexnet-5x5-p2": Case(2, 16, 13, 13, 48, 5, 5, padding=2),
    "googlenet-7x7-s2-p3": Case(2, 3, 31, 31, 64, 7, 7, stride=2, padding=3),
    "googlenet-1x1": Case(2, 64, 14, 14, 32, 1, 1, bias=False),
    "overfeat-11x11-s4": Case(1, 3, 47, 47, 96, 11, 11, stride=4),
    "resnet-1x1-s2-down": Case(2, 64, 14, 14, 128, 1, 1, stride=2, bias=False),
    "resnet-3x3-s2-p1": Case(2, 32, 15, 15, 64, 3, 3, stride=2, padding=1, bias=False),
    "inception3-1x7": Case(1, 32, 17, 17, 48, 1, 7, padding=(0, 3)),
    "inception3-7x1": Case(1, 48, 17, 17, 32, 7, 1, padding=(3, 0)),
    "mobilenet-dw-3x3-s2": Case(1, 32, 28, 28, 32, 3, 3, stride=2, padding=1, groups=32),
    "dw-mult2-5x5": Case(2, 24, 15, 15, 48, 5, 5, padding=2, groups=24),
    "resnext-g8": Case(2, 64, 14, 14, 64, 3, 3, padding=1, groups=8),
    "deeplab-atrous-d4": Case(1, 32, 21, 21, 32, 3, 3, padding=4, dilation=4),
    "large-batch": Case(33, 16, 20, 20, 24, 3, 3, padding=1),
    "odd-tails": Case(2, 19, 9, 37, 37, 3, 3, padding=1),
}


# The layers whose every algorithm runs in the fast loop (`-m "not slow"`): one of each kind,
# a second or less each. The others, and the reference twin at every layer (its naive loops
# take seconds there), are marked slow and run in the full suite.
FAST_LAYERS = {
    "vgg-3x3-pad1",
    "googlenet-7x7-s2-p3",
    "overfeat-11x11-s4",
    "alexnet-11x11-s4-p2",
    "resnet-1x1-s2-down",
    "resnet-3x3-s2-p1",
    "inception3-1x7",
    "inception3-7x1",
    "mobilenet-dw-3x3-s2",
    "deeplab-atrous-d4",
    "odd-tails",
}


def combos(cases, slow=lambda case_id, algo: False):
    """(case, algo, dtype) for every algorithm promised to run the case, both dtypes; marked
    slow where slow(case_id, algo) says so."""
    out = []
    for case_id, case in cases:
        for algo in fastconv.ALGORITHMS:
            # unknown (newer) algorithms are included; the test skips them if inapplicable
            if algo in spec_algorithms(case) or algo not in SPEC_ALGORITHMS:
                marks = [pytest.mark.slow] if slow(case_id, algo) else []
                for dtype, dname in zip(DTYPES, DTYPE_IDS):
                    out.append(
                        pytest.param(case, algo, dtype, id=f"{case_id}-{algo}-{dname}", marks=marks)
                    )
    return out


# (the fast loop still runs the reference algorithm through test_unbatched and test_conv1d.py)
CASE_COMBOS = combos([(c.id, c) for c in CASES], slow=lambda _, algo: algo == "reference")
LAYER_COMBOS = combos(
    list(LAYERS.items()), slow=lambda name, algo: algo == "reference" or name not in FAST_LAYERS
)


class Data(NamedTuple):
    x: np.ndarray
    w: np.ndarray
    b: object
    dy: np.ndarray
    y: np.ndarray
    sy: np.ndarray
    grads: tuple
    scales: tuple
    pristine: list


@functools.cache
def reference_data(case, dtype_name):
    """Inputs and reference results for one case, shared by every algorithm's tests."""
    dtype = np.dtype(dtype_name)
    rng = np.random.default_rng(zlib.crc32(f"{case.id}-{dtype_name}".encode()))
    x, w, b = make_inputs(rng, case.x_shape, case.w_shape, dtype, bias=case.bias)
    y, sy = expected_forward(x, w, b, **case.params)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads, scales = expected_backward(dy, x, w, **case.params)
    return Data(x, w, b, dy, y, sy, grads, scales, snapshot(x, w, b, dy))


def skip_if_not_offered(case, algo):
    offered = fastconv.algorithms(case.x_shape, case.w_shape, **case.params)
    if algo not in offered:
        if algo in spec_algorithms(case):
            pytest.fail(
                f"fastconv.algorithms{case.x_shape, case.w_shape, case.params} = "
                f"{offered} leaves out {algo!r}, which must apply to this shape"
            )
        pytest.skip(f"{algo} does not apply")


def run_forward(case, algo, dtype):
    d = reference_data(case, np.dtype(dtype).name)
    skip_if_not_offered(case, algo)
    y = fastconv.conv2d(d.x, d.w, d.b, algo=algo, **case.params)
    assert_unchanged(d.pristine, (d.x, d.w, d.b), ("x", "weight", "bias"))
    assert_close(y, d.y, dtype, d.sy, "y")


def run_backward(case, algo, dtype):
    d = reference_data(case, np.dtype(dtype).name)
    skip_if_not_offered(case, algo)
    grads = fastconv.conv2d_backward(d.dy, d.x, d.w, algo=algo, **case.params)
    assert_unchanged(d.pristine, (d.x, d.w, d.b, d.dy), ("x", "weight", "bias", "grad_out"))
    check_backward(grads, d.grads, d.scales, dtype)


# --- the API's own description of itself ---------------------------------------------------


def test_algorithm_names():
    # every promised algorithm is registered; newer ones may follow (tests take the registry's)
    assert tuple(fastconv.ALGORITHMS[: len(SPEC_ALGORITHMS)]) == SPEC_ALGORITHMS


def test_isa_name():
    assert fastconv.isa() in ("avx512", "avx2", "generic")


def test_case_lists_cover_every_value_with_every_algorithm():
    """The pairwise lists are what the coverage claim rests on: check it, per algorithm."""
    axes = {
        "kernel": lambda c: (c.kh, c.kw),
        "stride": lambda c: c.stride,
        "padding": lambda c: c.padding,
        "dilation": lambda c: c.dilation,
        "groups": lambda c: (
            ("dw2" if c.k == 2 * c.c else "dw") if c.groups == c.c else f"g{c.groups}"
        ),
        "batch": lambda c: c.n,
        "bias": lambda c: c.bias,
    }
    wanted = {
        "kernel": KERNELS,
        "stride": STRIDES,
        "padding": PADDINGS,
        "dilation": DILATIONS,
        "groups": GROUPINGS,
        "batch": BATCHES,
        "bias": BIAS,
    }
    for algo in SPEC_ALGORITHMS:
        mine = [c for c in CASES if algo in spec_algorithms(c)]
        for axis, get in axes.items():
            values = wanted[axis]
            if algo == "gemm1x1" and axis == "kernel":
                values = [(1, 1)]
            if algo == "depthwise" and axis == "groups":
                values = ["dw", "dw2"]
            if algo in ("winograd", "fft") and axis == "stride":
                values = [1]
            if algo == "fft" and axis == "dilation":
                values = [1]
            if algo == "winograd" and axis == "kernel":
                values = [(3, 3)]
            seen = {get(c) for c in mine}
            assert set(values) <= seen, (algo, axis, set(values) - seen)
        assert any(c.h % 2 and c.w % 2 for c in mine), algo  # odd spatial sizes


@pytest.mark.parametrize("case", CASES + list(LAYERS.values()), ids=lambda c: c.id)
def test_algorithms_offered(case):
    offered = fastconv.algorithms(case.x_shape, case.w_shape, **case.params)
    assert isinstance(offered, list) and all(isinstance(a, str) for a in offered), offered
    assert len(set(offered)) == len(offered), offered
    assert set(offered) <= set(fastconv.ALGORITHMS), offered
    assert set(offered) & set(SPEC_ALGORITHMS) == spec_algorithms(case), offered


@pytest.mark.parametrize("algo", ["gemm1x1", "depthwise"])
def test_inapplicable_algo_raises(algo):
    cases = [c for c in CASES + list(LAYERS.values()) if algo not in spec_algorithms(c)]
    assert cases
    for case in cases[:25]:
        x = np.zeros(case.x_shape, np.float32)
        w = np.zeros(case.w_shape, np.float32)
        with pytest.raises(ValueError, match=r"\balgo\b"):
            fastconv.conv2d(x, w, algo=algo, **case.params)
        dy = np.zeros(
            output_shape(case.x_shape, case.w_shape, case.stride, case.padding, case.dilation),
            np.float32,
        )
        with pytest.raises(ValueError, match=r"\balgo\b"):
            fastconv.conv2d_backward(dy, x, w, algo=algo, **case.params)


@pytest.mark.parametrize("case", [CASES[i] for i in range(0, len(CASES), 7)], ids=lambda c: c.id)
def test_auto_picks_first_offered(case):
    d = reference_data(case, "float32")
    first = fastconv.algorithms(case.x_shape, case.w_shape, **case.params)[0]
    y_auto = fastconv.conv2d(d.x, d.w, d.b, **case.params)
    y_first = fastconv.conv2d(d.x, d.w, d.b, algo=first, **case.params)
    np.testing.assert_array_equal(y_auto, y_first)
    assert_close(y_auto, d.y, np.float32, d.sy, "y")


# --- every algorithm x every parameter value x both dtypes ---------------------------------


@pytest.mark.parametrize("case, algo, dtype", CASE_COMBOS)
def test_forward(case, algo, dtype):
    run_forward(case, algo, dtype)


@pytest.mark.parametrize("case, algo, dtype", CASE_COMBOS)
def test_backward(case, algo, dtype):
    run_backward(case, algo, dtype)


@pytest.mark.parametrize("case, algo, dtype", LAYER_COMBOS)
def test_layer_forward(case, algo, dtype):
    run_forward(case, algo, dtype)


@pytest.mark.parametrize("case, algo, dtype", LAYER_COMBOS)
def test_layer_backward(case, algo, dtype):
    run_backward(case, algo, dtype)


def test_reference_against_scalar_loops():
    """The reference itself, against the definition written as seven plain loops."""
    rng = np.random.default_rng(7)
    n, c, h, w, k, g, kh, kw = 2, 4, 7, 6, 6, 2, 3, 2
    (sh, sw), (ph, pw), (dh, dw) = (2, 1), (1, 2), (2, 1)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c // g, kh, kw))
    b = rng.standard_normal(k)
    y = conv2d_ref(x, wt, b, (sh, sw), (ph, pw), (dh, dw), g)
    dy = rng.standard_normal(y.shape)
    dx, dwt, db = conv2d_backward_ref(dy, x, wt, (sh, sw), (ph, pw), (dh, dw), g)
    ho, wo = y.shape[2:]
    y2 = np.zeros_like(y)
    dx2 = np.zeros_like(x)
    dw2 = np.zeros_like(wt)
    cg, kg = c // g, k // g
    for ni in range(n):
        for ko in range(k):
            grp = ko // kg
            for oy in range(ho):
                for ox in range(wo):
                    acc = b[ko]
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                iy, ix = oy * sh - ph + i * dh, ox * sw - pw + j * dw
                                if 0 <= iy < h and 0 <= ix < w:
                                    cc = grp * cg + ci
                                    acc += wt[ko, ci, i, j] * x[ni, cc, iy, ix]
                                    dx2[ni, cc, iy, ix] += wt[ko, ci, i, j] * dy[ni, ko, oy, ox]
                                    dw2[ko, ci, i, j] += x[ni, cc, iy, ix] * dy[ni, ko, oy, ox]
                    y2[ni, ko, oy, ox] = acc
    np.testing.assert_allclose(y, y2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dwt, dw2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dy.sum((0, 2, 3)), rtol=1e-12)


# --- randomized shapes ---------------------------------------------------------------------


@st.composite
def random_case(draw):
    groups = draw(st.integers(1, 3))
    cg = 1 if draw(st.booleans()) else draw(st.integers(1, 4))
    kg = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 6))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, 6))

    def form(a, b):
        return a if a == b and draw(st.booleans()) else (a, b)

    return Case(
        draw(st.integers(1, 3)),
        cg * groups,
        h,
        w,
        kg * groups,
        kh,
        kw,
        form(sh, sw),
        form(ph, pw),
        form(dh, dw),
        groups,
        draw(st.booleans()),
    )


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=random_case(), dtype=st.sampled_from(DTYPES), data=st.data())
def test_random_shapes(case, dtype, data):
    offered = fastconv.algorithms(case.x_shape, case.w_shape, **case.params)
    assert spec_algorithms(case) <= set(offered), (case, offered)
    algo = data.draw(st.sampled_from(["auto"] + offered), label="algo")
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, w, b = make_inputs(rng, case.x_shape, case.w_shape, dtype, bias=case.bias)
    y = fastconv.conv2d(x, w, b, algo=algo, **case.params)
    ye, sy = expected_forward(x, w, b, **case.params)
    assert_close(y, ye, dtype, sy, f"y ({case}, {algo})")
    dy = rng.standard_normal(ye.shape).astype(dtype)
    grads = fastconv.conv2d_backward(dy, x, w, algo=algo, **case.params)
    expected, scales = expected_backward(dy, x, w, **case.params)
    check_backward(grads, expected, scales, dtype)


# --- API properties ------------------------------------------------------------------------

NEEDS = list(itertools.product([True, False], repeat=3))
NEEDS_CASES = [
    Case(2, 6, 11, 9, 4, 3, 3, stride=2, padding=(1, 2), dilation=(1, 2), groups=2),
    Case(3, 4, 7, 9, 8, 1, 1, stride=(1, 2), groups=4),
]


@pytest.mark.parametrize(
    "needs", NEEDS, ids=lambda n: "".join("xwb"[i] if v else "-" for i, v in enumerate(n))
)
@pytest.mark.parametrize("case", NEEDS_CASES, ids=lambda c: c.id)
def test_needs_subsets(case, needs):
    for algo in fastconv.algorithms(case.x_shape, case.w_shape, **case.params):
        for dtype in DTYPES:
            d = reference_data(case, np.dtype(dtype).name)
            grads = fastconv.conv2d_backward(d.dy, d.x, d.w, needs=needs, algo=algo, **case.params)
            check_backward(grads, d.grads, d.scales, dtype, needs=needs)


def test_needs_list_and_default():
    case = NEEDS_CASES[0]
    d = reference_data(case, "float64")
    grads = fastconv.conv2d_backward(d.dy, d.x, d.w, needs=[False, True, False], **case.params)
    check_backward(grads, d.grads, d.scales, np.float64, needs=(False, True, False))


THREAD_CASES = [
    Case(4, 16, 13, 11, 24, 3, 3, padding=1),
    Case(5, 12, 9, 13, 12, 5, 5, stride=2, padding=2, groups=12),
    Case(4, 32, 9, 9, 16, 1, 1),
    Case(4, 8, 15, 7, 8, 3, 5, stride=(2, 1), padding=(2, 1), dilation=(2, 1), groups=2),
    Case(1, 3, 27, 27, 16, 11, 11, stride=4, padding=2),
]


@pytest.mark.parametrize("case", THREAD_CASES, ids=lambda c: c.id)
def test_threads_agree(case, restore_threads):
    for dtype in DTYPES:
        d = reference_data(case, np.dtype(dtype).name)
        for algo in fastconv.algorithms(case.x_shape, case.w_shape, **case.params):
            results = []
            for threads in (1, 2, 5):  # 5: more threads than cores and than images
                fastconv.set_num_threads(threads)
                assert fastconv.get_num_threads() == threads
                y = fastconv.conv2d(d.x, d.w, d.b, algo=algo, **case.params)
                grads = fastconv.conv2d_backward(d.dy, d.x, d.w, algo=algo, **case.params)
                assert_close(y, d.y, dtype, d.sy, f"y ({algo}, {threads} threads)")
                check_backward(grads, d.grads, d.scales, dtype)
                results.append((y,) + tuple(grads))
            one = results[0]
            for threads, other in zip((2, 5), results[1:]):
                for name, a, b, s in zip(
                    ("y", "grad_x", "grad_w", "grad_b"), one, other, (d.sy,) + tuple(d.scales)
                ):
                    assert_close(
                        a,
                        b.astype(np.float64),
                        dtype,
                        2 * s,
                        f"{name} 1 vs {threads} threads ({algo})",
                    )


@pytest.mark.parametrize("algo", fastconv.ALGORITHMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_unbatched(algo, dtype, rng):
    # (C, H, W) in, (K, Ho, Wo) out, as in PyTorch; 1x1 depthwise so every algorithm applies
    for kernel, groups, k in [((1, 1), 4, 8), ((3, 3), 4, 4), ((3, 3), 2, 6)]:
        x_shape, w_shape = (4, 9, 7), (k, 4 // groups) + kernel
        if algo not in fastconv.algorithms(
            (1,) + x_shape, w_shape, padding=1, stride=(1, 2), groups=groups
        ):
            continue
        x, w, b = make_inputs(rng, x_shape, w_shape, dtype)
        params = dict(stride=(1, 2), padding=1, dilation=1, groups=groups)
        y = fastconv.conv2d(x, w, b, algo=algo, **params)
        ye, sy = expected_forward(x, w, b, **params)
        assert y.ndim == 3
        assert_close(y, ye, dtype, sy, "y")
        dy = rng.standard_normal(ye.shape).astype(dtype)
        grads = fastconv.conv2d_backward(dy, x, w, algo=algo, **params)
        assert grads[0].shape == x.shape
        check_backward(grads, *expected_backward(dy, x, w, **params), dtype)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize(
    "kernel, dilation, groups",
    [
        ((3, 3), 1, 1),
        ((4, 2), 1, 1),
        ((1, 7), 1, 1),
        ((5, 4), (2, 3), 2),
        ((2, 2), 2, 6),
        ((1, 1), 1, 6),
        ((6, 6), 1, 3),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_same_and_valid_padding(padding, kernel, dilation, groups, dtype, rng):
    x_shape, w_shape = (2, 6, 13, 12), (6, 6 // groups) + kernel
    x, w, b = make_inputs(rng, x_shape, w_shape, dtype)
    params = dict(stride=1, padding=padding, dilation=dilation, groups=groups)
    ye, sy = expected_forward(x, w, b, **params)
    if padding == "same":
        assert ye.shape[2:] == x_shape[2:]
    dy = rng.standard_normal(ye.shape).astype(dtype)
    expected, scales = expected_backward(dy, x, w, **params)
    for algo in fastconv.algorithms(x_shape, w_shape, **params):
        y = fastconv.conv2d(x, w, b, algo=algo, **params)
        assert_close(y, ye, dtype, sy, f"y ({algo})")
        grads = fastconv.conv2d_backward(dy, x, w, algo=algo, **params)
        check_backward(grads, expected, scales, dtype)


def non_contiguous(a, rng, kind):
    """The same values as `a`, as a view that is not C-contiguous."""
    big = [ax for ax in range(a.ndim) if a.shape[ax] > 1]
    if kind == "transposed" and len(big) >= 2:  # two axes swapped in memory
        i, j = big[-2], big[-1]
        view = np.swapaxes(np.ascontiguousarray(np.swapaxes(a, i, j)), i, j)
    elif kind == "reversed":  # negative strides
        view = np.flip(np.ascontiguousarray(np.flip(a, big[0])), big[0])
    else:  # every other element of a larger buffer
        ax = big[0]
        shape = list(a.shape)
        shape[ax] *= 2
        base = rng.standard_normal(shape).astype(a.dtype)
        index = [slice(None)] * a.ndim
        index[ax] = slice(None, None, 2)
        base[tuple(index)] = a
        view = base[tuple(index)]
    assert not view.flags.c_contiguous and np.array_equal(view, a)
    return view


@pytest.mark.parametrize("kind", ["transposed", "step", "reversed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_non_contiguous_inputs(kind, dtype, rng):
    for case in [
        Case(2, 4, 9, 11, 6, 3, 3, stride=2, padding=1, groups=2),
        Case(2, 4, 9, 11, 8, 1, 1, groups=4),
    ]:
        x, w, b = make_inputs(rng, case.x_shape, case.w_shape, dtype)
        ye, sy = expected_forward(x, w, b, **case.params)
        dy = rng.standard_normal(ye.shape).astype(dtype)
        expected, scales = expected_backward(dy, x, w, **case.params)
        xv, wv, bv, dyv = (non_contiguous(a, rng, kind) for a in (x, w, b, dy))
        before = snapshot(xv, wv, bv, dyv)
        for algo in fastconv.algorithms(case.x_shape, case.w_shape, **case.params):
            y = fastconv.conv2d(xv, wv, bv, algo=algo, **case.params)
            assert_close(y, ye, dtype, sy, f"y ({algo})")
            grads = fastconv.conv2d_backward(dyv, xv, wv, algo=algo, **case.params)
            check_backward(grads, expected, scales, dtype)
            assert_unchanged(before, (xv, wv, bv, dyv), ("x", "weight", "bias", "grad_out"))


def misaligned(a):
    """A C-contiguous copy of `a` whose data starts one element past a 64-byte boundary."""
    raw = np.empty(a.size * a.itemsize + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + a.itemsize
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and out.ctypes.data % 64 == a.itemsize
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_misaligned_contiguous_inputs(dtype, rng):
    """Contiguous arrays need not be SIMD-aligned (e.g. a slice of a larger buffer)."""
    for case in [
        Case(2, 5, 13, 19, 17, 3, 3, padding=1),
        Case(2, 8, 9, 21, 16, 3, 3, stride=2, padding=1, groups=8),
        Case(2, 20, 7, 19, 33, 1, 1),
    ]:
        x, w, b = make_inputs(rng, case.x_shape, case.w_shape, dtype)
        ye, sy = expected_forward(x, w, b, **case.params)
        dy = rng.standard_normal(ye.shape).astype(dtype)
        expected, scales = expected_backward(dy, x, w, **case.params)
        xm, wm, bm, dym = (misaligned(a) for a in (x, w, b, dy))
        for algo in fastconv.algorithms(case.x_shape, case.w_shape, **case.params):
            assert_close(
                fastconv.conv2d(xm, wm, bm, algo=algo, **case.params), ye, dtype, sy, f"y ({algo})"
            )
            check_backward(
                fastconv.conv2d_backward(dym, xm, wm, algo=algo, **case.params),
                expected,
                scales,
                dtype,
            )


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_read_only_inputs(dtype, rng):
    case = Case(2, 6, 10, 9, 6, 3, 3, stride=(2, 1), padding=(2, 1), dilation=2, groups=3)
    x, w, b = make_inputs(rng, case.x_shape, case.w_shape, dtype)
    ye, sy = expected_forward(x, w, b, **case.params)
    dy = rng.standard_normal(ye.shape).astype(dtype)
    expected, scales = expected_backward(dy, x, w, **case.params)
    for a in (x, w, b, dy):
        a.setflags(write=False)
    for algo in fastconv.algorithms(case.x_shape, case.w_shape, **case.params):
        assert_close(fastconv.conv2d(x, w, b, algo=algo, **case.params), ye, dtype, sy, "y")
        check_backward(
            fastconv.conv2d_backward(dy, x, w, algo=algo, **case.params), expected, scales, dtype
        )


def test_python_lists(rng):
    params = dict(stride=1, padding=1, dilation=1, groups=1)
    x, w, b = make_inputs(rng, (1, 2, 5, 6), (3, 2, 3, 3), np.float64)
    y = fastconv.conv2d(x.tolist(), w.tolist(), b.tolist(), **params)
    ye, sy = expected_forward(x, w, b, **params)
    assert_close(y, ye, np.float64, sy, "y")
    dy = rng.standard_normal(y.shape)
    grads = fastconv.conv2d_backward(dy.tolist(), x.tolist(), w.tolist(), **params)
    check_backward(grads, *expected_backward(dy, x, w, **params), np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_result_dtype_and_fresh_arrays(dtype, rng):
    x, w, b = make_inputs(rng, (2, 3, 8, 8), (4, 3, 3, 3), dtype)
    y = fastconv.conv2d(x, w, b)
    gx, gw, gb = fastconv.conv2d_backward(y, x, w)
    for name, a, shape in (
        ("y", y, (2, 4, 6, 6)),
        ("grad_x", gx, x.shape),
        ("grad_w", gw, w.shape),
        ("grad_b", gb, b.shape),
    ):
        assert a.dtype == dtype and a.shape == shape, (name, a.dtype, a.shape)
        assert a.flags.writeable, name
        for inp in (x, w, b):
            assert not np.shares_memory(a, inp), (name, "shares memory with an input")


# --- every micro-kernel set, forced at import ----------------------------------------------


ISA_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import fastconv
    from conftest import make_inputs, expected_forward, expected_backward, assert_close, \\
        check_backward
    print(fastconv.isa())
    rng = np.random.default_rng(0)
    cases = [((2, 5, 13, 11), (17, 5, 3, 3), dict(stride=1, padding=1, dilation=1, groups=1)),
             ((1, 6, 9, 37), (9, 2, 5, 3), dict(stride=(2, 1), padding=(2, 0), dilation=(1, 2),
                                               groups=3)),
             ((2, 8, 7, 9), (16, 1, 3, 3), dict(stride=2, padding=1, dilation=1, groups=8)),
             ((2, 20, 7, 19), (33, 20, 1, 1), dict(stride=1, padding=0, dilation=1, groups=1)),
             ((1, 3, 35, 35), (24, 3, 11, 11), dict(stride=1, padding=0, dilation=1, groups=1))]
    for dtype in (np.float32, np.float64):
        for xs, ws, p in cases:
            x, w, b = make_inputs(rng, xs, ws, dtype)
            ye, sy = expected_forward(x, w, b, **p)
            dy = rng.standard_normal(ye.shape).astype(dtype)
            exp, sc = expected_backward(dy, x, w, **p)
            for algo in fastconv.algorithms(xs, ws, **p):
                assert_close(fastconv.conv2d(x, w, b, algo=algo, **p), ye, dtype, sy,
                             f"y {xs} {ws} {p} {algo}")
                check_backward(fastconv.conv2d_backward(dy, x, w, algo=algo, **p), exp, sc, dtype)
    print("ok")
""")


@pytest.mark.slow  # a subprocess per ISA, every algorithm on five shapes
@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_forced_isa(isa):
    r = run_isa(isa, ISA_SCRIPT, timeout=300)
    assert r.stdout.split() == [isa, "ok"], r.stdout + r.stderr


def test_omp_num_threads_is_honoured():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-c", "import fastconv; print(fastconv.get_num_threads())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1"], r.stdout + r.stderr


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_weight_gradient_over_long_reductions(dtype, stride):
    """The depthwise weight gradient keeps per-lane partial sums across images and folds them
    into double every few thousand terms per lane: enough images of a large plane to fold
    several times (and a multiplier, so several outputs share an input plane)."""
    rng = np.random.default_rng(11)
    x, w, _ = make_inputs(rng, (9, 2, 120, 121), (4, 1, 3, 3), np.dtype(dtype), bias=False)
    params = dict(stride=stride, padding=1, dilation=1, groups=2)
    y, _ = expected_forward(x, w, None, **params)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads, scales = expected_backward(dy, x, w, **params)
    got = fastconv.conv2d_backward(dy, x, w, algo="depthwise", **params)
    check_backward(got, grads, scales, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "kernel, padding, mult",
    [
        ((3, 3), (1, 1), 1),
        ((3, 3), (0, 0), 1),
        ((5, 3), (4, 0), 1),
        ((3, 5), (2, 1), 1),
        ((3, 3), (3, 1), 1),
        ((3, 3), (1, 1), 2),
    ],
)
def test_depthwise_data_gradient_at_unit_stride(dtype, kernel, padding, mult):
    """At unit stride with one output per channel the data gradient runs as a forward of dy
    with the filters turned (padding kh-1-ph, kw-1-pw, non-square kernels and planes); padding
    of a whole kernel or more and a multiplier keep the phase planes. Against the reference."""
    rng = np.random.default_rng(12)
    c = 5
    x, w, _ = make_inputs(rng, (3, c, 11, 13), (c * mult, 1, *kernel), np.dtype(dtype), bias=False)
    params = dict(stride=1, padding=padding, dilation=1, groups=c)
    y, _ = expected_forward(x, w, None, **params)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads, scales = expected_backward(dy, x, w, **params)
    got = fastconv.conv2d_backward(dy, x, w, algo="depthwise", **params)
    check_backward(got, grads, scales, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mult", [1, 3])
def test_depthwise_weight_gradient_channel_blocks(dtype, mult):
    """The depthwise weight gradient walks blocks of up to 16 output channels image by image:
    37 input channels (blocks that end inside a channel's multiplier group, and a short last
    block) over 5 images of a small plane."""
    rng = np.random.default_rng(12)
    c = 37
    x, w, _ = make_inputs(rng, (5, c, 9, 8), (c * mult, 1, 3, 3), np.dtype(dtype), bias=False)
    params = dict(stride=1, padding=1, dilation=1, groups=c)
    y, _ = expected_forward(x, w, None, **params)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads, scales = expected_backward(dy, x, w, **params)
    got = fastconv.conv2d_backward(dy, x, w, algo="depthwise", **params)
    check_backward(got, grads, scales, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (2, 4), (3, 3), (1, 17), (5, 7)])
def test_bias_gradient_sums_every_position(hw, dtype):
    # The bias gradient runs 8 partial sums over each plane's positions (the tail continues from
    # the first): planes shorter than, equal to, just over and well over 8 positions, 3 images,
    # against NumPy's float64 sum; a large offset makes a dropped or doubled position visible.
    rng = np.random.default_rng(11)
    h, w = hw
    dy = (rng.standard_normal((3, 5, h, w)) + 1000.0).astype(dtype)
    x = rng.standard_normal((3, 2, h, w)).astype(dtype)
    weight = rng.standard_normal((5, 2, 1, 1)).astype(dtype)
    _, _, gb = fastconv.conv2d_backward(dy, x, weight, needs=(False, False, True))
    want = dy.astype(np.float64).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(gb, want, rtol=1e-6 if dtype == np.float32 else 1e-13)

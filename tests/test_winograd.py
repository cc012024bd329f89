"""Winograd convolution (algo="winograd"): forward, data and weight gradients against the
float64 reference, for every padding, ragged tiles, groups, channel counts around the vector
width, both tiles (F(4x4,3x3), the default, and F(2x2,3x3), forced by FASTCONV_WINOGRAD_TILE)
and every instruction set (forced by FASTCONV_ISA, in a subprocess: both are chosen at load).

Error bound. Every result is held to |err| <= bound * scale elementwise, scale being the same
convolution on absolute values (the sum of the magnitudes of the terms; conftest.assert_close):
the project-wide 1e-4 (float32) and 1e-10 (float64) everywhere, and on real layer shapes the
tighter bound Winograd is stated to keep, WINOGRAD_BOUND: 2e-5 for float32 (F(4x4) measured
at most 3.2e-6 on VGG/L5/ResNet layers, F(2x2) 2.6e-7) and 1e-13 for float64 (measured 7e-15).
"""

import textwrap

import numpy as np
import pytest

import fastconv
from _isa import AVAILABLE_ISAS, run_isa_json
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
    snapshot,
)

WINOGRAD_BOUND = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-13}


def case3x3(n, c, h, w, k, padding=1, groups=1, bias=True):
    """A 3x3, stride-1 case (conftest.Case); padding 1 unless given."""
    return Case(n, c, h, w, k, 3, 3, padding=padding, groups=groups, bias=bias)


CASES = [
    case3x3(1, 1, 3, 3, 1, padding=0),  # the smallest: one output, one (ragged) tile
    case3x3(1, 2, 3, 3, 3, padding=1),
    case3x3(1, 3, 4, 4, 2, padding=0),  # a 2x2 output: a quarter of an F(4x4) tile
    case3x3(2, 3, 8, 8, 5, padding=0),  # whole tiles
    case3x3(3, 5, 9, 11, 7, padding=1),  # ragged right and bottom tiles, batch 3
    case3x3(1, 4, 7, 6, 4, padding=2, bias=False),
    case3x3(2, 3, 5, 7, 6, padding=3),  # padding beyond the kernel's reach
    case3x3(1, 2, 4, 5, 3, padding=4, bias=False),
    case3x3(2, 6, 10, 9, 4, padding=(0, 2)),  # asymmetric
    case3x3(1, 3, 9, 6, 5, padding=(2, 0)),
    case3x3(1, 3, 37, 5, 4, padding=1),  # tall
    case3x3(2, 2, 4, 45, 3, padding=1),  # wide
    case3x3(1, 17, 12, 12, 33, padding=1),  # channels > the vector width, K != C
    case3x3(3, 33, 7, 13, 16, padding=1, bias=False),
    case3x3(2, 8, 9, 9, 6, padding=1, groups=2),
    case3x3(1, 12, 11, 10, 8, padding=(1, 2), groups=4),
    case3x3(2, 4, 6, 7, 12, padding=0, groups=4, bias=False),
    case3x3(5, 16, 14, 14, 16, padding=1),  # tiles of several images in one block
    # 392 tiles under 16x24 filters: the fused forward and data gradient in blocks of tiles by
    # their rule, ragged last tiles
    case3x3(2, 16, 55, 54, 24, padding=1),
]


def reference(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x, w, b = make_inputs(rng, case.x_shape, case.w_shape, dtype, bias=case.bias)
    y, sy = expected_forward(x, w, b, **case.params)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads, scales = expected_backward(dy, x, w, **case.params)
    return x, w, b, dy, y, sy, grads, scales


def worst_ratio(got, expected, scale):
    """max |got - expected| / scale (0 for empty results)."""
    if np.size(got) == 0:
        return 0.0
    err = np.abs(np.asarray(got, np.float64) - expected)
    return float(np.max(err / (np.asarray(scale, np.float64) + np.finfo(np.float64).tiny)))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_winograd_matches_reference(case, dtype):
    assert "winograd" in fastconv.algorithms(case.x_shape, case.w_shape, **case.params)
    x, w, b, dy, y_ref, sy, grads_ref, scales = reference(case, dtype)
    before = snapshot(x, w, b, dy)
    y = fastconv.conv2d(x, w, b, algo="winograd", **case.params)
    assert_close(y, y_ref, dtype, sy, "y")
    grads = fastconv.conv2d_backward(dy, x, w, algo="winograd", **case.params)
    check_backward(grads, grads_ref, scales, dtype)
    assert_unchanged(before, (x, w, b, dy), ("x", "weight", "bias", "grad_out"))
    # and within Winograd's own bound
    bound = WINOGRAD_BOUND[np.dtype(dtype)]
    for name, got, exp, sc in zip(
        ("y", "grad_x", "grad_w"), (y, *grads[:2]), (y_ref, *grads_ref[:2]), (sy, *scales[:2])
    ):
        assert worst_ratio(got, exp, sc) <= bound, name


# Real layers: VGG's first 3x3 stage, L5 of convnet-benchmarks, ResNet's 3x3 64-channel block
# (batch reduced so the float64 reference stays quick).
LAYERS = {
    "vgg-64x56x56": case3x3(1, 64, 56, 56, 64),
    "L5-384x13x13": case3x3(1, 384, 13, 13, 384),
    "resnet-64x56x56": case3x3(2, 64, 56, 56, 64, bias=False),
    "vgg-256x28x28": case3x3(1, 256, 28, 28, 256),
    # 8 tiles under 256x256 filters: the fused forward and data gradient by their rule
    "resnet-256x7x7": case3x3(2, 256, 7, 7, 256, bias=False),
    # 49 F(2x2) tiles under 256x256 filters: fused by elements (forward_fused_elements)
    "resnet-256x14x14": case3x3(1, 256, 14, 14, 256),
}


# the fast loop keeps VGG's 64-channel layer and the fused ones; the larger take seconds (slow)
FAST_LAYERS = ("vgg-64x56x56", "resnet-256x7x7", "resnet-256x14x14")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "name", [n if n in FAST_LAYERS else pytest.param(n, marks=pytest.mark.slow) for n in LAYERS]
)
def test_real_layers_within_winograd_bound(name, dtype):
    case = LAYERS[name]
    x, w, b, dy, y_ref, sy, grads_ref, scales = reference(case, dtype, seed=1)
    y = fastconv.conv2d(x, w, b, algo="winograd", **case.params)
    dx, dw, db = fastconv.conv2d_backward(dy, x, w, algo="winograd", **case.params)
    bound = WINOGRAD_BOUND[np.dtype(dtype)]
    ratios = {
        n: worst_ratio(g, e, s)
        for n, g, e, s in zip(
            ("y", "grad_x", "grad_w"), (y, dx, dw), (y_ref, *grads_ref[:2]), (sy, *scales[:2])
        )
    }
    assert max(ratios.values()) <= bound, ratios
    assert_close(db, grads_ref[2], dtype, scales[2], "grad_b")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ["transposed", "step", "reversed"])
def test_non_contiguous_inputs(kind, dtype):
    from test_conv2d import non_contiguous

    rng = np.random.default_rng(3)
    case = case3x3(2, 6, 9, 11, 8, padding=1, groups=2)
    x, w, b, dy, y_ref, sy, grads_ref, scales = reference(case, dtype, seed=2)
    xv, wv, bv, dyv = (non_contiguous(a, rng, kind) for a in (x, w, b, dy))
    before = snapshot(xv, wv, bv, dyv)
    y = fastconv.conv2d(xv, wv, bv, algo="winograd", **case.params)
    assert_close(y, y_ref, dtype, sy, "y")
    grads = fastconv.conv2d_backward(dyv, xv, wv, algo="winograd", **case.params)
    check_backward(grads, grads_ref, scales, dtype)
    assert_unchanged(before, (xv, wv, bv, dyv), ("x", "weight", "bias", "grad_out"))


def test_threads_agree(restore_threads):
    case = case3x3(3, 20, 17, 15, 24, padding=1)
    x, w, b, dy, *_ = reference(case, np.float32)
    out = []
    for n in (1, 2, 3):
        fastconv.set_num_threads(n)
        out.append(
            (
                fastconv.conv2d(x, w, b, algo="winograd", **case.params),
                *fastconv.conv2d_backward(dy, x, w, algo="winograd", **case.params),
            )
        )
    for other in out[1:]:
        for a, b_ in zip(out[0], other):
            np.testing.assert_allclose(a, b_, rtol=0, atol=1e-4 * float(np.max(np.abs(a))))


@pytest.mark.parametrize(
    "case",
    [
        case3x3(2, 512, 7, 7, 512),  # 32 tiles: the fused forward (panel by panel), a V each
        case3x3(1, 256, 14, 14, 256),  # 49 tiles: fused by elements, a V per thread (0.9 MB)
        case3x3(4, 256, 7, 7, 256, bias=False),  # 64 tiles, the same path
        case3x3(12, 256, 14, 14, 256),  # 192 F(4x4) tiles: one V shared (7 MB, over 2x the L2)
    ],
    ids=lambda c: c.id,
)
def test_fused_by_elements_bitwise_at_any_thread_count(case, restore_threads):
    """Every product sums its input channels in one pass, whichever thread owns its panel: the
    forward and the data gradient are the same bits at 1, 2 and 3 threads, and at 20 (more
    threads than the 16 panels of 256 channels: some own none)."""
    x, w, b, dy, y_ref, sy, grads_ref, scales = reference(case, np.float32)
    out = []
    for n in (1, 2, 3, 20):
        fastconv.set_num_threads(n)
        y = fastconv.conv2d(x, w, b, algo="winograd", **case.params)
        dx = fastconv.conv2d_backward(
            dy, x, w, needs=(True, False, False), algo="winograd", **case.params
        )[0]
        out.append((y, dx))
    for other in out[1:]:
        for a, b_ in zip(out[0], other):
            np.testing.assert_array_equal(a, b_)
    bound = WINOGRAD_BOUND[np.dtype(np.float32)]
    assert worst_ratio(out[0][0], y_ref, sy) <= bound
    assert worst_ratio(out[0][1], grads_ref[0], scales[0]) <= bound


@pytest.mark.parametrize(
    "case",
    [
        # x's transformed tiles within twice the L2: channels owned by threads (2 blocks of 28,
        # of 4, and of 128: the GEMMs' shapes fixed by the shape)
        case3x3(4, 40, 14, 14, 56),
        case3x3(2, 24, 30, 30, 8),
        case3x3(1, 256, 14, 14, 256),
        # 64 F(4x4) tiles of 640 channels (5.9 MB, over twice any L2): the chunked weight
        # gradient, one sub-block whose transforms are cut into channel runs
        case3x3(4, 640, 14, 14, 16),
    ],
    ids=lambda c: c.id,
)
def test_weight_gradient_bitwise_at_any_thread_count(case, restore_threads):
    """The weight gradient's items write disjoint parts, and each GEMM's shape follows the layer:
    the result is bitwise the same at 1, 2, 3 and 20 threads (more than the channel blocks),
    and within Winograd's bound of the float64 reference."""
    x, w, _, dy, _, _, grads, scales = reference(case, np.float32)
    out = []
    for n in (1, 2, 3, 20):
        fastconv.set_num_threads(n)
        dx, dw, db = fastconv.conv2d_backward(dy, x, w, algo="winograd", **case.params)
        out.append(dw)
    assert worst_ratio(out[0], grads[1], scales[1]) <= WINOGRAD_BOUND[np.dtype(np.float32)]
    for other in out[1:]:
        assert np.array_equal(out[0], other)


@pytest.mark.parametrize(
    "params, kernel",
    [
        (dict(stride=2, padding=1), 3),
        (dict(dilation=2, stride=2, padding=2), 3),
        (dict(padding=2), 5),
        (dict(stride=(1, 2)), 3),
    ],
)
def test_not_offered_and_refused(params, kernel):
    x = np.zeros((1, 2, 9, 9), np.float32)
    w = np.zeros((3, 2, kernel, kernel), np.float32)
    assert "winograd" not in fastconv.algorithms(x.shape, w.shape, **params)
    with pytest.raises(ValueError, match="winograd"):
        fastconv.conv2d(x, w, algo="winograd", **params)


# Every ISA x both tiles x both paths, in a subprocess (FASTCONV_ISA, FASTCONV_WINOGRAD_TILE and
# FASTCONV_WINOGRAD_FUSED are read once).
SCRIPT = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import fastconv
    sys.path.insert(0, sys.argv[1])
    from test_winograd import CASES, LAYERS, WINOGRAD_BOUND, reference, worst_ratio
    cases = CASES + [LAYERS["L5-384x13x13"]]
    worst = 0.0
    for dtype in (np.float32, np.float64):
        for case in cases:
            x, w, b, dy, y_ref, sy, grads_ref, scales = reference(case, dtype)
            y = fastconv.conv2d(x, w, b, algo="winograd", **case.params)
            dx, dw, _ = fastconv.conv2d_backward(dy, x, w, algo="winograd", **case.params)
            for got, exp, sc in zip((y, dx, dw), (y_ref, *grads_ref[:2]), (sy, *scales[:2])):
                worst = max(worst, worst_ratio(got, exp, sc) / WINOGRAD_BOUND[np.dtype(dtype)])
    print(json.dumps({"isa": fastconv.isa(), "worst": worst}))
""")


@pytest.mark.slow  # a subprocess per ISA, tile size and path
@pytest.mark.parametrize("fused", ["", "1", "2"], ids=["rule", "fused", "elements"])
@pytest.mark.parametrize("tile", ["2", "4"])
@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_forced_isa_and_tile(isa, tile, fused):
    """FASTCONV_WINOGRAD_FUSED=1 takes the fused forward and data gradient (filters transformed
    panel by panel, csrc/conv/winograd.cpp) for every one-group case, =2 the fused one by
    elements; by its rule (unset) these small cases run unfused, and L5's 384 on 13x13 (49
    F(2x2) tiles) fused by elements."""
    res = run_isa_json(
        isa, SCRIPT, timeout=900, FASTCONV_WINOGRAD_TILE=tile, FASTCONV_WINOGRAD_FUSED=fused
    )
    assert res["isa"] == isa
    assert res["worst"] <= 1.0, res  # error / WINOGRAD_BOUND, worst case over every result


@pytest.mark.parametrize("where", ["x", "weight", "grad_out"])
def test_nan_and_inf_stay_where_they_reach(where):
    """A NaN or an infinity reaches only the outputs whose taps read it (as im2col and torch),
    not the whole Winograd tile around it."""
    case = case3x3(2, 5, 10, 11, 4, padding=1)
    x, w, b, dy, *_ = reference(case, np.float64)
    target = {"x": x, "weight": w, "grad_out": dy}[where]
    target.flat[[3, target.size // 2]] = [np.inf, np.nan]
    want = (
        fastconv.conv2d(x, w, b, algo="im2col", **case.params),
        *fastconv.conv2d_backward(dy, x, w, algo="im2col", **case.params)[:2],
    )
    got = (
        fastconv.conv2d(x, w, b, algo="winograd", **case.params),
        *fastconv.conv2d_backward(dy, x, w, algo="winograd", **case.params)[:2],
    )
    for name, g, e in zip(("y", "grad_x", "grad_w"), got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(e), err_msg=name)
        np.testing.assert_array_equal(np.isinf(g), np.isinf(e), err_msg=name)
        np.testing.assert_allclose(g[np.isfinite(e)], e[np.isfinite(e)], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    "padding, dilation", [(5, 2), (7, 3), ((6, 1), (2, 1)), (2, 2), ((0, 4), (1, 4))]
)
def test_dilated_through_phase_planes(padding, dilation, dtype):
    """Dilated 3x3 runs on the input's phase planes (csrc/conv/phases.cpp). Padding wider than
    the dilated kernel leaves outputs, inputs and taps without any term: exactly bias or 0."""
    rng = np.random.default_rng(7)
    x, w, b = make_inputs(rng, (2, 5, 11, 9), (6, 5, 3, 3), np.dtype(dtype), bias=True)
    params = dict(stride=1, padding=padding, dilation=dilation, groups=1)
    assert "winograd" in fastconv.algorithms(x.shape, w.shape, **params)
    y, sy = expected_forward(x, w, b, **params)
    pristine = snapshot(x, w, b)
    out = fastconv.conv2d(x, w, b, algo="winograd", **params)
    assert_close(out, y, dtype, sy, "y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads, scales = expected_backward(dy, x, w, **params)
    check_backward(
        fastconv.conv2d_backward(dy, x, w, algo="winograd", **params), grads, scales, dtype
    )
    assert_unchanged(pristine, (x, w, b), ("x", "weight", "bias"))


@pytest.mark.parametrize(
    "x_shape,k,want",
    [
        ((8, 512, 7, 7), 512, "winograd"),  # 32 F(4x4) tiles: F(2x2)'s 128
        ((2, 256, 14, 14), 256, "winograd"),  # 32 over 14x14: 98
        ((4, 256, 12, 12), 512, "winograd"),  # 36 covering 12x12 exactly: 144
        ((4, 832, 7, 7), 128, "winograd"),  # 16: 64, GoogLeNet's 5b reduce-to-3x3 sizes
        ((16, 512, 7, 7), 512, "winograd"),  # 64 tiles: F(4x4)
        ((1, 256, 14, 14), 256, "winograd"),  # 16: 49
        ((2, 512, 7, 7), 512, "winograd"),  # 8: F(2x2)'s 32, 98 outputs
        ((1, 384, 8, 8), 384, "winograd"),  # 4: 16, 64 outputs
        ((1, 512, 7, 7), 512, "direct"),  # 4: 16, 49 outputs (narrow_same_3x3: direct)
        ((1, 1024, 6, 6), 1024, "im2col"),  # 4: 9, 36 outputs
    ],
)
def test_auto_weight_gradient_of_few_tiles(x_shape, k, want):
    """auto's weight gradient under 40 F(4x4) tiles takes Winograd (run as F(2x2) there) from
    64 outputs in all (api.cpp, winograd_pays); the forward keeps it from 32 F(4x4) tiles."""
    from fastconv import _core

    d = (*x_shape, k, 3, 3, 1, 1, 1, 1, 1, 1, 1)
    if want == "direct" and _core.isa() == "generic":  # (direct's scalar tiles: im2col)
        want = "im2col"
    assert _core.ALGO_NAMES[_core.conv2d_choose(d, 2)] == want
    if winograd_tiles(x_shape) >= 32:
        assert _core.ALGO_NAMES[_core.conv2d_choose(d, 0)] == "winograd"


def test_auto_takes_it_on_32_channels_either_way():
    """Inception's 3x3 32>32 at 149x149 runs Winograd forward and data gradient at any batch
    (direct's blocked forward beat it below 4 images before the transforms ran by rows), and
    with 64 channels on either side too."""
    w = (32, 32, 3, 3)
    for direction in ("forward", "backward_data"):
        for n in (1, 2, 4):
            got = fastconv.algorithms((n, 32, 149, 149), w, direction=direction)[0]
            assert got == "winograd", (n, direction)
    assert fastconv.algorithms((1, 32, 147, 147), (64, 32, 3, 3))[0] == "winograd"
    assert fastconv.algorithms((1, 64, 56, 56), (64, 64, 3, 3), padding=1)[0] == "winograd"


def winograd_tiles(x_shape):
    """F(4x4) output tiles of a 3x3 'same' convolution over the batch."""
    n, _, h, w = x_shape
    return n * -(-h // 4) * -(-w // 4)


# The weight gradient's tile by its rule (winograd_weight_tile): F(2x2) up to 48 F(4x4) tiles.
WEIGHT_TILE_CASES = [
    ((2, 8, 7, 7), 2),
    ((3, 8, 14, 14), 2),
    ((1, 8, 28, 28), 4),
    ((4, 8, 16, 16), 4),
]
# Hashes of the forward, data gradient and weight gradient of 8 filters over each shape.
TILE_SCRIPT = textwrap.dedent(r"""
    import hashlib, json, sys
    import numpy as np
    import fastconv
    out = []
    for shape in json.loads(sys.argv[2]):
        rng = np.random.default_rng(11)
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.standard_normal((8, shape[1], 3, 3), dtype=np.float32)
        dy = rng.standard_normal((shape[0], 8, shape[2], shape[3]), dtype=np.float32)
        y = fastconv.conv2d(x, w, padding=1, algo="winograd")
        dx, dw, _ = fastconv.conv2d_backward(dy, x, w, padding=1, algo="winograd")
        out.append([hashlib.sha256(a.tobytes()).hexdigest() for a in (y, dx, dw)])
    print(json.dumps(out))
""")


def default_and_forced_tiles(cases):
    """TILE_SCRIPT's output over the cases' shapes by default and with FASTCONV_WINOGRAD_TILE at
    2 and at 4, each in a fresh process (the variable is read once)."""
    import json

    shapes = json.dumps([list(s) for s, _ in cases])
    isa = fastconv.isa()
    forced = {
        t: run_isa_json(isa, TILE_SCRIPT, shapes, FASTCONV_WINOGRAD_TILE=str(t)) for t in (2, 4)
    }
    return run_isa_json(isa, TILE_SCRIPT, shapes), forced


def test_weight_gradient_tile_follows_the_tiles(monkeypatch):
    """The weight gradient runs F(2x2) on up to 48 F(4x4) tiles and F(4x4) above: its bits are
    those of the same call with FASTCONV_WINOGRAD_TILE forcing that tile (each in a fresh
    process, as the variable is read once), and not those of the other tile."""

    monkeypatch.delenv("FASTCONV_WINOGRAD_TILE", raising=False)
    default, forced = default_and_forced_tiles(WEIGHT_TILE_CASES)
    for i, (shape, tile) in enumerate(WEIGHT_TILE_CASES):
        assert default[i][2] == forced[tile][i][2], (shape, tile)
        assert default[i][2] != forced[6 - tile][i][2], (shape, tile)


# A forward's and data gradient's tile by its rule (forward_tile): F(2x2) up to 32 F(4x4)
# tiles, with 8 channels on both sides (under 8 a reduction takes F(2x2) anyway).
PLAIN_TILE_CASES = [
    ((1, 8, 14, 14), 2),  # 16 tiles
    ((2, 8, 14, 14), 2),  # 32
    ((8, 8, 7, 7), 2),  # 32
    ((3, 8, 14, 14), 4),  # 48
    ((9, 8, 7, 7), 4),  # 36
    ((1, 8, 28, 28), 4),  # 49
]


def test_forward_and_data_gradient_tile_follows_the_tiles(monkeypatch):
    """A forward or data gradient runs F(2x2) on up to 32
    F(4x4) tiles and F(4x4) above: its bits are those of the same call with
    FASTCONV_WINOGRAD_TILE forcing that tile (fresh processes), and not the other tile's."""

    monkeypatch.delenv("FASTCONV_WINOGRAD_TILE", raising=False)
    default, forced = default_and_forced_tiles(PLAIN_TILE_CASES)
    for i, (shape, tile) in enumerate(PLAIN_TILE_CASES):
        for j, name in enumerate(("forward", "data gradient")):
            assert default[i][j] == forced[tile][i][j], (shape, tile, name)
            assert default[i][j] != forced[6 - tile][i][j], (shape, tile, name)


# Which fused path a forward and data gradient take by their rule (winograd_fused,
# winograd_fused_elements): (x shape, filters, the FASTCONV_WINOGRAD_FUSED value whose bits the
# rule gives, values whose bits differ). The paths sum the same terms; their bits part where one
# of them cuts the reduction (OpenBLAS's unfused GEMMs over 512 channels, the panels' chunks of
# 128), so each case names the paths it tells apart.
FUSED_PATH_CASES = [
    ((2, 256, 7, 7), 256, "1", "02"),  # 32 F(2x2) tiles: fused by panels
    ((1, 512, 14, 14), 512, "2", "0"),  # 49: fused by elements
    ((4, 512, 7, 7), 512, "2", "0"),  # 64
    ((1, 128, 28, 28), 128, "0", "12"),  # 49 F(4x4) tiles under 128x128 filters: unfused
]
FUSED_SCRIPT = textwrap.dedent(r"""
    import hashlib, json, sys
    import numpy as np
    import fastconv
    out = []
    for shape, k in json.loads(sys.argv[2]):
        rng = np.random.default_rng(12)
        x = rng.standard_normal(shape, dtype=np.float32)
        w = rng.standard_normal((k, shape[1], 3, 3), dtype=np.float32)
        dy = rng.standard_normal((shape[0], k, shape[2], shape[3]), dtype=np.float32)
        y = fastconv.conv2d(x, w, padding=1, algo="winograd")
        dx = fastconv.conv2d_backward(dy, x, w, padding=1, needs=(True, False, False),
                                      algo="winograd")[0]
        out.append([hashlib.sha256(a.tobytes()).hexdigest() for a in (y, dx)])
    print(json.dumps(out))
""")


@pytest.mark.slow  # four processes
def test_fused_path_follows_its_rule(monkeypatch):
    """The forward and data gradient take the path their rule names: their bits are those of
    the same calls with FASTCONV_WINOGRAD_FUSED forcing it (0 unfused, 1 fused, 2 fused by
    elements; fresh processes, the variable is read once), and not those of the others."""
    import json

    monkeypatch.delenv("FASTCONV_WINOGRAD_FUSED", raising=False)
    cases = json.dumps([[list(s), k] for s, k, _, _ in FUSED_PATH_CASES])
    isa = fastconv.isa()
    default = run_isa_json(isa, FUSED_SCRIPT, cases)
    forced = {v: run_isa_json(isa, FUSED_SCRIPT, cases, FASTCONV_WINOGRAD_FUSED=v) for v in "012"}
    for i, (shape, k, want, differ) in enumerate(FUSED_PATH_CASES):
        for j, name in enumerate(("forward", "data gradient")):
            assert default[i][j] == forced[want][i][j], (shape, k, want, name)
            for other in differ:
                assert default[i][j] != forced[other][i][j], (shape, k, other, name)


@pytest.mark.slow  # two processes
def test_fused_blocks_same_bits_whatever_the_work_items(monkeypatch):
    """The fused forward in blocks (from 392 tiles under filters of up to 128x256) cuts its
    tiles into at least fixed_items() blocks on machines of more CPUs (fastconv.hardware()
    ["work_items"]): a block only groups tiles, so the bits are those of 8 work items."""
    import json

    monkeypatch.delenv("FASTCONV_WINOGRAD_FUSED", raising=False)
    cases = json.dumps([[[8, 128, 28, 28], 128], [[2, 32, 56, 56], 48], [[8, 96, 28, 28], 128]])
    isa = fastconv.isa()
    eight = run_isa_json(isa, FUSED_SCRIPT, cases, FASTCONV_WORK_ITEMS="8")
    more = run_isa_json(isa, FUSED_SCRIPT, cases, FASTCONV_WORK_ITEMS="32")
    assert eight == more


# Two panels of output channels a pass (tile_gemm2, winograd.cpp pair_panels): on full-rate
# AVX-512 cores only, where conftest's pinned half rate (FASTCONV_FULL_AVX512=0) never takes it,
# so both rates run in processes of their own. The same sums: the same bits. Cases: the fused
# forward in blocks (392 tiles, 40 outputs: a pair and a part panel), by elements (49 tiles
# under 256x264 filters: 17 panels, an odd run a thread), and up to 40 tiles with prepared
# filters (a plan's step: 32 F(2x2) tiles, 72 outputs), float32 and float64, with each data
# gradient (its filters transposed) where the plain call takes a fused path.
PAIR_CASES = [((2, 32, 56, 56), 40), ((1, 256, 28, 28), 264), ((2, 128, 7, 7), 72)]
PAIR_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import fastconv
    from fastconv import _core
    from test_inference_native import _conv_plan
    WINO = _core.ALGO_NAMES.index("winograd")
    out = {}
    for i, (shape, k) in enumerate(json.loads(sys.argv[2])):
        for dt in ("float32", "float64"):
            rng = np.random.default_rng(21 + i)
            x = rng.standard_normal(shape).astype(dt)
            w = rng.standard_normal((k, shape[1], 3, 3)).astype(dt)
            b = rng.standard_normal(k).astype(dt)
            dy = rng.standard_normal((shape[0], k) + tuple(shape[2:])).astype(dt)
            out[f"{i}/{dt}/y"] = fastconv.conv2d(x, w, b, padding=1, algo="winograd")
            out[f"{i}/{dt}/dx"] = fastconv.conv2d_backward(
                dy, x, w, padding=1, needs=(True, False, False), algo="winograd")[0]
            p, ys = _conv_plan(x, w, b, WINO, 1, act=1)
            yp = np.empty(ys, dt)
            p.run(x.reshape(-1), yp.reshape(-1))
            out[f"{i}/{dt}/plan"] = yp
    np.savez(sys.argv[3], **out)
    print(json.dumps(fastconv.hardware()["full_avx512"]))
    """
)


@pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="needs an AVX-512 CPU")
def test_two_panels_a_pass_give_one_panels_bits(tmp_path):
    import json

    runs = {}
    for full in ("1", "0"):
        path = tmp_path / f"full{full}.npz"
        cases = json.dumps([[list(s), k] for s, k in PAIR_CASES])
        assert run_isa_json("avx512", PAIR_SCRIPT, cases, path, FASTCONV_FULL_AVX512=full) is (
            full == "1"
        )
        with np.load(path) as f:
            runs[full] = dict(f)
    assert sorted(runs["1"]) == sorted(runs["0"])
    for key, a in runs["1"].items():
        assert np.array_equal(a, runs["0"][key]), key
    for i, (shape, k) in enumerate(PAIR_CASES):
        rng = np.random.default_rng(21 + i)
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal((k, shape[1], 3, 3)).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        want, scale = expected_forward(x, w, b, 1, 1, 1, 1)
        bound = WINOGRAD_BOUND[np.dtype(np.float32)]
        assert worst_ratio(runs["1"][f"{i}/float32/y"], want, scale) <= bound, i
        assert worst_ratio(runs["1"][f"{i}/float32/plan"], np.maximum(want, 0), scale) <= bound, i

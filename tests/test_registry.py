"""The algorithm registry (csrc/registry.cpp) as the C ABI and Python show it: names, flags,
descriptions, supports/why-not and cost estimates, all from one table.

Through ctypes on libfastconv (skipped when it cannot be found) and through fastconv itself.
No convolution is computed here: every check is on descriptors.
"""

import ctypes
import math
import os
import re

import pytest

import fastconv
from fastconv import _core
from fastconv.functional import _ALGO_IDS
from test_c_abi import FC_EINVAL, FC_EUNSUPPORTED, FC_OK, LIB_PATH, Desc, desc, load

pytestmark = pytest.mark.skipif(LIB_PATH is None, reason="libfastconv shared library not found")

DIRECTIONS = ("forward", "backward_data", "backward_weight")
FLAG_FORWARD, FLAG_BACKWARD_DATA, FLAG_BACKWARD_WEIGHT = 0x1, 0x2, 0x4
FLAG_PHASE_PLANES, FLAG_NONFINITE_FALLBACK = 0x8, 0x10

# (x_shape, w_shape, params): a spread that each algorithm runs on some and refuses on others.
SHAPES = {
    "dense3x3": ((2, 8, 12, 11), (6, 8, 3, 3), dict(padding=1)),
    "dilated3x3": ((2, 4, 15, 14), (6, 2, 3, 3), dict(padding=2, dilation=(2, 3), groups=2)),
    "strided5x5": ((1, 6, 13, 11), (9, 2, 5, 3), dict(stride=(2, 1), padding=(2, 0), groups=3)),
    "1x1": ((2, 8, 7, 9), (12, 8, 1, 1), dict()),
    "1x1-strided": ((2, 8, 7, 9), (12, 8, 1, 1), dict(stride=2, padding=1)),
    "depthwise": ((2, 5, 9, 9), (10, 1, 3, 3), dict(padding=1, groups=5)),
    "large-kernel": ((2, 3, 40, 40), (4, 3, 11, 11), dict()),
    "row": ((3, 4, 1, 50), (5, 4, 1, 7), dict(padding=(0, 3))),
    "fft-too-large": ((200000, 1, 60, 60), (1, 1, 5, 5), dict(padding=2)),
}

# Real layers (batch 4) on which the estimates must rank as measured.
VGG_3X3 = ((4, 64, 112, 112), (128, 64, 3, 3), dict(padding=1))
L1_11X11 = ((4, 3, 128, 128), (96, 3, 11, 11), dict())
RESNET_1X1 = ((4, 256, 56, 56), (64, 256, 1, 1), dict())
MOBILENET_DW = ((4, 64, 56, 56), (64, 1, 3, 3), dict(padding=1, groups=64))


@pytest.fixture(scope="module")
def lib():
    return load(LIB_PATH)


def names(lib):
    return [lib.fc_algo_name(i).decode() for i in range(lib.fc_algo_count())]


def c_cost(lib, d, algo, direction):
    cost = ctypes.c_double(-1.0)
    status = lib.fc_conv2d_cost(ctypes.byref(d), algo, direction, ctypes.byref(cost))
    return status, cost.value


def py_desc(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    d = desc(x_shape, w_shape, stride, padding, dilation, groups)
    return [getattr(d, f) for f, _ in Desc._fields_]


def test_every_algorithm_has_a_name_and_description(lib):
    count = lib.fc_algo_count()
    assert count >= 2
    got = names(lib)
    assert got[0] == "auto"
    assert all(n and n == n.strip() and " " not in n for n in got), got
    assert len(set(got)) == len(got), got
    for i in range(count):
        text = lib.fc_algo_description(i)
        assert text and text.decode().strip(), (i, text)
    for bad in (-1, count, count + 1, 1000):
        assert lib.fc_algo_name(bad) is None, bad
        assert lib.fc_algo_description(bad) is None, bad
        assert lib.fc_algo_flags(bad) == 0, bad


def test_algo_name_round_trips(lib):
    got = names(lib)
    assert tuple(got[1:]) == fastconv.ALGORITHMS
    assert list(_core.ALGO_NAMES) == got
    for ident, name in enumerate(got):
        assert _ALGO_IDS[name] == ident  # name -> id (Python's algo=)
        assert lib.fc_algo_name(_ALGO_IDS[name]).decode() == name  # id -> name (C)


def test_flags_describe_each_algorithm(lib):
    assert lib.fc_algo_flags(0) == 0  # auto is no algorithm
    every_direction = FLAG_FORWARD | FLAG_BACKWARD_DATA | FLAG_BACKWARD_WEIGHT
    for ident, name in enumerate(names(lib)[1:], start=1):
        flags = lib.fc_algo_flags(ident)
        assert flags & every_direction == every_direction, name  # all three today
        assert not flags & ~0x1F, (name, hex(flags))
    flags = {name: lib.fc_algo_flags(i) for i, name in enumerate(names(lib))}
    assert flags["winograd"] & FLAG_PHASE_PLANES and flags["winograd"] & FLAG_NONFINITE_FALLBACK
    assert not flags["fft"] & FLAG_PHASE_PLANES and flags["fft"] & FLAG_NONFINITE_FALLBACK
    for name in ("im2col", "direct", "gemm1x1", "depthwise", "reference"):
        assert not flags[name] & (FLAG_PHASE_PLANES | FLAG_NONFINITE_FALLBACK), name


def test_algorithm_info_comes_from_the_library(lib):
    info = fastconv.algorithm_info()
    assert "algorithm_info" in fastconv.__all__ and fastconv.algorithm_info is not None
    assert tuple(info) == fastconv.ALGORITHMS
    for name, row in info.items():
        ident = _ALGO_IDS[name]
        flags = lib.fc_algo_flags(ident)
        assert row["name"] == name
        assert row["description"] == lib.fc_algo_description(ident).decode()
        assert row["directions"] == tuple(
            d
            for d, bit in zip(DIRECTIONS, (FLAG_FORWARD, FLAG_BACKWARD_DATA, FLAG_BACKWARD_WEIGHT))
            if flags & bit
        )
        assert row["phase_planes"] == bool(flags & FLAG_PHASE_PLANES)
        assert row["non_finite_fallback"] == bool(flags & FLAG_NONFINITE_FALLBACK)


def test_phase_plane_algorithms_run_dilated_convolutions():
    # A phase-plane algorithm runs the dilated shape whenever it runs the undilated one; FFT,
    # which has no phase planes, needs dilation 1 and says so.
    x, w = (2, 4, 16, 16), (6, 4, 3, 3)
    for name, row in fastconv.algorithm_info().items():
        plain = _core.conv2d_supports(py_desc(x, w, padding=1), _ALGO_IDS[name])
        dilated = _core.conv2d_supports(py_desc(x, w, padding=2, dilation=2), _ALGO_IDS[name])
        if row["phase_planes"] and plain:
            assert dilated, name
    why = _core.conv2d_why_not(py_desc(x, w, padding=2, dilation=2), _ALGO_IDS["fft"])
    assert why.endswith("it needs dilation 1"), why
    assert _core.conv2d_why_not(py_desc(x, w, padding=2, dilation=2), _ALGO_IDS["winograd"]) == ""


@pytest.mark.parametrize("direction", range(3), ids=DIRECTIONS)
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_cost_is_positive_where_supported(lib, shape, direction):
    x_shape, w_shape, params = shape
    d = desc(x_shape, w_shape, **params)
    seen = set()
    for ident, name in enumerate(names(lib)):
        supported = ident == 0 or lib.fc_conv2d_supports(ctypes.byref(d), ident) == FC_OK
        reason = None if supported else lib.fc_last_error()
        status, cost = c_cost(lib, d, ident, direction)
        if supported:
            assert status == FC_OK, (name, status, lib.fc_last_error())
            assert math.isfinite(cost) and cost > 0, (name, cost)
            seen.add(name)
        else:
            assert status == FC_EUNSUPPORTED, (name, status)
            assert lib.fc_last_error() == reason, name  # the same why-not text
            assert cost == -1.0, name  # untouched
        py = _core.conv2d_cost(py_desc(x_shape, w_shape, **params), ident, direction)
        assert (py is None) == (not supported) and (py is None or py == cost), (name, py, cost)
    assert {"direct", "reference"} <= seen  # they run anything


@pytest.mark.parametrize("direction", range(3), ids=DIRECTIONS)
def test_cost_of_auto_is_its_choice(lib, direction):
    for x_shape, w_shape, params in list(SHAPES.values()) + [VGG_3X3, L1_11X11]:
        d = desc(x_shape, w_shape, **params)
        chosen = ctypes.c_int()
        assert lib.fc_conv2d_choose_for(ctypes.byref(d), direction, ctypes.byref(chosen)) == FC_OK
        assert c_cost(lib, d, 0, direction) == c_cost(lib, d, chosen.value, direction)


def test_cost_rejects_bad_arguments(lib):
    d = desc((2, 4, 9, 9), (6, 4, 3, 3))
    cost = ctypes.c_double(-1.0)
    assert lib.fc_conv2d_cost(ctypes.byref(d), 1, 0, None) == FC_EINVAL
    assert "cost" in lib.fc_last_error().decode()
    for algo, direction in ((lib.fc_algo_count(), 0), (-1, 0), (1, 3), (1, -1)):
        assert lib.fc_conv2d_cost(ctypes.byref(d), algo, direction, ctypes.byref(cost)) == FC_EINVAL
    assert lib.fc_conv2d_cost(None, 1, 0, ctypes.byref(cost)) == FC_EINVAL
    bad = desc((2, 4, 9, 9), (6, 4, 3, 3), stride=0)
    assert lib.fc_conv2d_cost(ctypes.byref(bad), 1, 0, ctypes.byref(cost)) == FC_EINVAL
    assert "stride" in lib.fc_last_error().decode()
    assert cost.value == -1.0


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_algorithms_with_costs(direction):
    for x_shape, w_shape, params in SHAPES.values():
        plain = fastconv.algorithms(x_shape, w_shape, direction=direction, **params)
        with_costs = fastconv.algorithms(
            x_shape, w_shape, direction=direction, costs=True, **params
        )
        assert [a for a, _ in with_costs] == plain
        assert all(isinstance(c, float) and math.isfinite(c) and c > 0 for _, c in with_costs)
    # conv1d shapes (3-D) too
    got = fastconv.algorithms((2, 4, 30), (5, 4, 3), padding=1, costs=True, direction=direction)
    assert got and all(c > 0 for _, c in got)


def costs_of(shape, direction):
    x_shape, w_shape, params = shape
    return dict(fastconv.algorithms(x_shape, w_shape, direction=direction, costs=True, **params))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_costs_rank_algorithms(direction):
    c = costs_of(VGG_3X3, direction)  # Winograd measured 1.3-2x faster than im2col here
    assert c["winograd"] < c["im2col"] < c["reference"], c
    assert c["winograd"] < c["direct"] < c["reference"], c
    c = costs_of(L1_11X11, direction)  # FFT measured 2-4x faster than im2col here
    assert c["fft"] < c["im2col"] < c["reference"], c
    c = costs_of(RESNET_1X1, direction)  # the 1x1 GEMM on the input as it lies: no copy
    # (im2col on a 1x1 kernel runs gemm1x1's code, in place)
    assert c["gemm1x1"] == c["im2col"] < c["reference"] and c["gemm1x1"] < c["fft"], c
    strided = ((1, 64, 28, 28), (128, 64, 1, 1), dict(stride=2))  # both gather first
    c = costs_of(strided, direction)
    assert c["gemm1x1"] == c["im2col"], c
    c = costs_of(MOBILENET_DW, direction)  # no channel reduction for a GEMM to amortise
    assert c["depthwise"] == min(c.values()), c
    for shape in (VGG_3X3, L1_11X11, RESNET_1X1):
        c = costs_of(shape, direction)
        assert c["reference"] == max(c.values()) or c["fft"] == max(c.values()), c
        assert c["reference"] > 10 * min(c.values()), c


@pytest.mark.parametrize(
    "shape,direction",
    [
        # (the weight gradient of one group without dilation runs on the blocked tiles; of
        # these, a dot product per tap)
        (((1, 256, 28, 28), (256, 256, 3, 3), dict(padding=2, dilation=2)), "backward_weight"),
        (((2, 384, 13, 13), (384, 192, 3, 3), dict(padding=1, groups=2)), "backward_weight"),
    ],
)
def test_tuner_prunes_direct_backwards_that_take_seconds(shape, direction):
    """direct's weight gradient by dot products ran 12-50x im2col's time (17-250 ms a call on
    ResNet's 3x3 512 at 7x7; session 15's bench auto): costed over the tuner's pruning factor
    (4x the cheapest, tune.cpp), so tuning such a key never runs them."""
    c = costs_of(shape, direction)
    assert c["direct"] > 4 * min(v for a, v in c.items() if a != "reference"), c


@pytest.mark.parametrize(
    "shape,slower",
    [
        # a stem's 3 channels of dx fill 3 of a tile's 16: 2-3x im2col's time (session 47)
        (((8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)), True),
        (((1, 3, 299, 299), (32, 3, 3, 3), dict(stride=2)), True),
        # ResNet's 3x3/2 256 at 28x28 at 8 images: 0.73x im2col's time
        (((8, 256, 28, 28), (256, 256, 3, 3), dict(stride=2, padding=1)), False),
    ],
)
def test_strided_direct_data_gradients_are_costed_on_their_phases(shape, slower):
    """direct's strided data gradient runs on phase planes (conv/direct_blocked.cpp): costed as
    the blocked tiles, not the scatter it had been (12-24x im2col's time)."""
    c = costs_of(shape, "backward_data")
    assert (c["direct"] > c["im2col"]) == slower, c
    assert c["direct"] < 4 * c["im2col"], c


def test_readme_table_lists_every_algorithm():
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    if not os.path.isfile(readme):
        pytest.skip("no README.md beside tests/")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, flags=re.M))
    assert set(rows) == set(fastconv.ALGORITHMS), sorted(rows)
    info = fastconv.algorithm_info()
    for name, runs in rows.items():
        # the table's "runs" column agrees with the registry about phase planes
        assert ("phase planes" in runs) == info[name]["phase_planes"], (name, runs)
    assert "dilation 1" in rows["fft"], rows["fft"]


@pytest.mark.parametrize("batch", [1, 8])
def test_heuristic_fft_rule_on_l3(batch):
    """fft_pays (csrc/api.cpp): L3's 9x9 on 32x32 (kernel taps x outputs over frequency bins:
    86) takes FFT in every direction from two images; at one image in none: its weight gradient
    runs direct's blocked tiles (0.6x FFT's time there), which FFT must beat by 256x."""
    x, w = (batch, 128, 32, 32), (128, 128, 9, 9)
    first = {
        d: fastconv.algorithms(x, w, direction=d)[0]
        for d in ("forward", "backward_data", "backward_weight")
    }
    if batch > 1:
        assert set(first.values()) == {"fft"}, first
    else:
        assert first["backward_weight"] == "direct", first
        assert "fft" not in first.values(), first


@pytest.mark.parametrize(
    "x, w, pad, want",
    [
        # L2's 9x9 (ratio 120): direct's blocked forward and weight gradient at one image, FFT
        # from two
        ((1, 64, 64, 64), (128, 64, 9, 9), 0, ("direct", "fft", "direct")),
        ((2, 64, 64, 64), (128, 64, 9, 9), 0, ("fft", "fft", "fft")),
        # L4's 7x7 on 16x16 (34): direct's weight gradient below 8 images, FFT from 8
        ((2, 128, 16, 16), (128, 128, 7, 7), 0, ("direct", "fft", "direct")),
        ((8, 128, 16, 16), (128, 128, 7, 7), 0, ("fft", "fft", "fft")),
        # GoogLeNet's 5x5 32>96 on 28x28 (36): direct at batch 4; from 8 images the forward and
        # the weight gradient are FFT
        ((4, 32, 28, 28), (96, 32, 5, 5), 2, ("direct", "direct", "direct")),
        ((8, 32, 28, 28), (96, 32, 5, 5), 2, ("fft", "direct", "fft")),
        # 16 input channels: no blocked forward, FFT keeps it; its data gradient (32 in) and
        # weight gradient are direct
        ((4, 16, 28, 28), (32, 16, 5, 5), 2, ("fft", "direct", "direct")),
        # L1's 3 input channels (ratio 202): FFT forward from one image (the blocked forward's
        # bar there is 192); its weight gradient FFT (no blocked tiles for 3 channels)
        ((1, 3, 128, 128), (96, 3, 11, 11), 0, ("fft", "im2col", "fft")),
        # an 11x11 on 3 channels at 96x96, padded 5 (134): under 192, the blocked forward
        ((1, 3, 96, 96), (64, 3, 11, 11), 5, ("direct", "im2col", "fft")),
        ((2, 3, 128, 128), (96, 3, 11, 11), 0, ("fft", "im2col", "fft")),
        # its data gradient into 3 channels: FFT from four images (160x the bins per output and
        # more, 3+ channels); one channel stays on im2col
        ((4, 3, 128, 128), (96, 3, 11, 11), 0, ("fft", "fft", "fft")),
        ((8, 3, 128, 128), (96, 3, 11, 11), 0, ("fft", "fft", "fft")),
        ((8, 1, 128, 128), (96, 1, 11, 11), 0, ("fft", "im2col", "fft")),
        ((8, 3, 96, 96), (64, 3, 11, 11), 5, ("fft", "im2col", "fft")),  # 134x: im2col
    ],
)
def test_heuristic_fft_needs_more_where_direct_is_the_alternative(x, w, pad, want):
    """fft_pays (csrc/api.cpp): where direct, not im2col, would run the layer, FFT needs 192x the
    bins per output for a forward at one image (256x for its gradients) and 64x from two (32x for
    forwards and weight gradients from eight images)."""
    got = tuple(
        fastconv.algorithms(x, w, padding=pad, direction=d)[0]
        for d in ("forward", "backward_data", "backward_weight")
    )
    assert got == want, (x, w, got)


@pytest.mark.parametrize(
    "x, w, stride, pad, want",
    [
        # unit stride, 16+ channels in and out, 5x5 and up, rows 10+ wide: direct
        # 3x3/2 onto rows 28+ wide, 16+ channels in and out: direct
        ((8, 128, 56, 56), (128, 128, 3, 3), 2, 1, "direct"),  # ResNet's 3x3/2 128
        ((1, 64, 56, 56), (128, 64, 3, 3), 2, 1, "direct"),  # ResNet-18's 64>128
        ((8, 48, 35, 35), (64, 48, 5, 5), 1, 2, "direct"),  # Inception v3's 5x5 48>64
        ((1, 48, 35, 35), (64, 48, 5, 5), 1, 2, "direct"),
        ((4, 24, 14, 14), (64, 24, 5, 5), 1, 2, "direct"),  # GoogLeNet's 5x5 at 14x14
        ((1, 128, 16, 16), (128, 128, 7, 7), 1, 0, "direct"),  # L4: rows 10 wide
        # "same"-padded 1x7 and 7x1 (Inception v3's), rows 10+ wide
        ((8, 128, 17, 17), (192, 128, 7, 1), 1, (3, 0), "direct"),
        ((2, 192, 17, 17), (192, 192, 1, 7), 1, (0, 3), "direct"),
        ((1, 192, 17, 17), (192, 192, 1, 7), 1, (0, 3), "direct"),
        ((8, 32, 9, 9), (32, 32, 7, 1), 1, (3, 0), "im2col"),  # rows 9 wide
        ((8, 384, 8, 8), (384, 384, 1, 3), 1, (0, 1), "im2col"),  # 1x3: 3 taps
        ((8, 128, 17, 17), (192, 128, 7, 1), 1, 0, "im2col"),  # unpadded
        # off the generic table ("simd"): 3x3/2 onto rows 14+ wide with 64+ channels each way,
        # and a "same" 3x3 on rows 7-9 wide at 1-2 images with 128+ (where Winograd does not run)
        ((8, 256, 28, 28), (256, 256, 3, 3), 2, 1, "simd"),  # ResNet's 3x3/2 onto 14 wide
        ((1, 384, 35, 35), (384, 384, 3, 3), 2, 0, "simd"),  # onto 17 wide
        ((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, "simd"),  # ResNet's 3x3 512 at 7x7
        # strided few channels, 3 input channels, narrow rows, few output channels: not direct
        ((1, 32, 28, 28), (32, 32, 3, 3), 2, 1, "im2col"),  # 3x3/2 32 onto 14 wide
        # (but a 3x3 on under 8 channels at 4+ images sums along dy's rows, off the generic
        # table: direct_rows_weight_grad_pays)
        ((8, 3, 224, 224), (64, 3, 3, 3), 1, 1, "simd"),  # VGG's first layer
        ((4, 48, 7, 7), (128, 48, 5, 5), 1, 2, "im2col"),  # GoogLeNet's 5x5 at 7x7
        ((1, 384, 13, 13), (384, 384, 3, 3), 1, 0, "winograd"),  # L5: rows 11 wide
        ((4, 32, 28, 28), (8, 32, 5, 5), 1, 2, "fft"),  # 8 output channels
    ],
)
def test_heuristic_direct_weight_gradient(x, w, stride, pad, want):
    """direct_weight_grad_pays (csrc/api.cpp): the weight gradient on direct's blocked tiles
    ("simd": direct except on the generic table, im2col there)."""
    if want == "simd":
        want = "direct" if fastconv.isa() != "generic" else "im2col"
    got = fastconv.algorithms(x, w, stride=stride, padding=pad, direction="backward_weight")[0]
    assert got == want, (x, w, got)


@pytest.mark.parametrize(
    "x, w, pad, want",
    [
        # GoogLeNet's 5x5 on 14x14 and 7x7 planes at batch 4: direct's data gradient below 24
        # rows from 4 images; at one image im2col keeps it
        ((4, 32, 14, 14), (128, 32, 5, 5), 2, ("direct", "direct")),
        ((1, 32, 14, 14), (128, 32, 5, 5), 2, ("direct", "im2col")),
        # rows under 10 (no blocked forward): the forward on direct as well
        ((4, 48, 7, 7), (128, 48, 5, 5), 2, ("direct", "direct")),
        ((1, 48, 7, 7), (128, 48, 5, 5), 2, ("direct", "im2col")),
        # unpadded, or 3x3, or under 16 input channels: as before
        ((4, 48, 11, 11), (128, 48, 5, 5), 0, ("im2col", "im2col")),
        ((4, 8, 14, 14), (32, 8, 5, 5), 2, ("direct", "im2col")),
        # "same"-padded 1x7 / 7x1 (Inception v3's): the data gradient on direct from one
        # image, on rows 7+ wide, with 16+ input and 24+ output channels; not 1x3, not 16
        # outputs
        ((2, 128, 17, 17), (128, 128, 1, 7), (0, 3), ("direct", "direct")),
        ((1, 128, 17, 17), (128, 128, 1, 7), (0, 3), ("direct", "direct")),
        ((8, 128, 17, 17), (192, 128, 7, 1), (3, 0), ("direct", "direct")),
        ((8, 32, 9, 9), (32, 32, 7, 1), (3, 0), ("direct", "direct")),
        ((8, 384, 8, 8), (384, 384, 1, 3), (0, 1), ("im2col", "im2col")),
        ((8, 128, 17, 17), (16, 128, 1, 7), (0, 3), ("direct", "im2col")),
    ],
)
def test_heuristic_direct_for_narrow_same_padded_large_kernels(x, w, pad, want):
    """direct_narrow_forward_pays and direct_data_grad_pays (csrc/api.cpp)."""
    got = tuple(
        fastconv.algorithms(x, w, padding=pad, direction=d)[0] for d in ("forward", "backward_data")
    )
    assert got == want, (x, w, got)


def test_heuristic_winograd_forward_needs_more_than_one_images_nine_tiles():
    """winograd_pays (csrc/api.cpp): the fused forward from 10 tiles. L5 at batch 1 (11x11
    outputs: 9 tiles of 4x4) runs without Winograd (direct's blocked forward); the same layer
    at two images (18 tiles) and on 16x16 outputs (16 whole tiles) runs Winograd."""
    w = (384, 384, 3, 3)
    assert fastconv.algorithms((1, 384, 13, 13), w, direction="forward")[0] == "direct"
    assert fastconv.algorithms((2, 384, 13, 13), w, direction="forward")[0] == "winograd"
    assert fastconv.algorithms((1, 384, 16, 16), w, padding=1, direction="forward")[0] == "winograd"


@pytest.mark.parametrize(
    "x, w",
    [
        ((1, 256, 14, 14), (256, 256, 3, 3)),  # ResNet's 3x3 256: 16 part-filled F(4x4) tiles
        ((1, 512, 14, 14), (512, 512, 3, 3)),  # VGG's 512
        ((1, 384, 13, 13), (256, 384, 3, 3)),  # AlexNet's 384>256
        ((1, 160, 14, 14), (320, 160, 3, 3)),  # GoogLeNet's 160>320
    ],
)
def test_heuristic_one_images_13x13_and_14x14_run_winograd(x, w):
    """winograd_pays (csrc/api.cpp): one image's 16 tiles on 13x13 and 14x14 planes run
    Winograd forward and data gradient (as F(2x2), forward_tile in conv/winograd.cpp); a plan,
    whose filters are transformed once, runs Winograd too."""
    for d in ("forward", "backward_data"):
        assert fastconv.algorithms(x, w, padding=1, direction=d)[0] == "winograd", d
    desc = [*x, w[0], 3, 3, 1, 1, 1, 1, 1, 1, 1]
    assert _core.ALGO_NAMES[_core.conv2d_choose_prepared(desc)] == "winograd"

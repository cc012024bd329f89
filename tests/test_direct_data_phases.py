"""direct's data gradient of strided convolutions on phase planes (csrc/conv/direct_blocked.cpp,
direct_blocked_backward_data_phases): dx split into its sh*sw phases, each a unit-stride
convolution of dy with some of the flipped taps on the blocked tiles. Against the float64
reference (naive loops), float32 and float64: strides 2 and 3, unequal strides, kernels
narrower than the stride (phases with no taps), even kernels, paddings that make a phase read a
row or column past dy's end, edge channel blocks, 32-channel groups and lone pairs; the same
bits at 1, 2 and 3 threads; non-finite filters and dy; and auto's choice."""

import json

import numpy as np
import pytest

import fastconv
from _isa import AVAILABLE_ISAS, run_isa, run_isa_json
from conftest import described_caches
from fastconv import _core
from reference import conv2d_backward_ref

F = fastconv.functional

CASES = [  # (n, c, h, w, k, kh, kw, sh, sw, ph, pw)
    (2, 24, 15, 16, 32, 3, 3, 2, 2, 1, 1),  # odd height: the phases' rows differ (8, 7)
    (1, 40, 16, 17, 24, 3, 3, 2, 2, 0, 0),  # unpadded: a phase reads a row below dy
    (2, 64, 14, 14, 64, 3, 3, 2, 2, 1, 1),  # a whole group of four blocks (32 channels)
    (1, 32, 17, 18, 40, 5, 5, 2, 2, 2, 2),  # 5x5: 3x3, 3x2, 2x3 and 2x2 phases
    (2, 33, 13, 14, 30, 3, 3, 3, 3, 1, 1),  # stride 3, edge blocks on both sides
    (1, 24, 12, 12, 24, 2, 2, 2, 2, 0, 0),  # kernel as wide as the stride: one tap a phase
    (1, 24, 14, 15, 48, 1, 1, 2, 2, 0, 0),  # 1x1/2: three phases without taps (zeros)
    (1, 24, 20, 21, 24, 7, 7, 2, 2, 3, 3),  # 7x7/2
    (3, 48, 23, 22, 40, 3, 3, 2, 1, 1, 1),  # stride along the height only
    (1, 24, 19, 20, 24, 4, 4, 3, 3, 1, 1),  # even kernel, stride 3
    (2, 56, 14, 16, 72, 3, 5, 2, 3, 1, 2),  # unequal kernel and strides
    (1, 80, 15, 15, 24, 3, 3, 2, 2, 1, 1),  # a lone last pair after a group of four
]


def _run(case, dtype, seed=3):
    n, c, h, w, k, kh, kw, sh, sw, ph, pw = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, c, kh, kw)).astype(dtype)
    y = F.conv2d(x, wt, stride=(sh, sw), padding=(ph, pw), algo="im2col")
    dy = rng.standard_normal(y.shape).astype(dtype)
    return x, wt, dy


def _dx(dy, x, wt, case, algo="direct"):
    stride, padding = case[7:9], case[9:11]
    return F.conv2d_backward(
        dy, x, wt, stride=stride, padding=padding, needs=(True, False, False), algo=algo
    )[0]


def _assert_within_contract(dx, x, wt, dy, case):
    """dx within the accuracy contract of the float64 reference: 1e-4 (float32) or 1e-12
    (float64) of the sum of |terms|."""
    stride, padding = case[7:9], case[9:11]
    ref, _, _ = conv2d_backward_ref(
        dy.astype(np.float64),
        x.astype(np.float64),
        wt.astype(np.float64),
        stride=stride,
        padding=padding,
    )
    scale, _, _ = conv2d_backward_ref(
        np.abs(dy).astype(np.float64),
        x.astype(np.float64),
        np.abs(wt).astype(np.float64),
        stride=stride,
        padding=padding,
    )
    tol = 1e-4 if dx.dtype == np.float32 else 1e-12
    assert np.all(np.abs(dx - ref) <= tol * scale + 1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_phases_match_the_reference(case, dtype):
    x, wt, dy = _run(case, dtype)
    before = [a.copy() for a in (x, wt, dy)]
    dx = _dx(dy, x, wt, case)
    assert dx.shape == x.shape and dx.dtype == dtype
    _assert_within_contract(dx, x, wt, dy, case)
    for a, a0 in zip((x, wt, dy), before):
        assert np.array_equal(a, a0)  # inputs untouched


def test_phases_give_the_same_bits_at_any_thread_count():
    case = (2, 64, 28, 28, 96, 3, 3, 2, 2, 1, 1)
    x, wt, dy = _run(case, np.float32)
    got = []
    for t in (1, 2, 3):
        with fastconv.threads(t):
            got.append(_dx(dy, x, wt, case))
            got.append(_dx(dy, x, wt, case))
    for g in got[1:]:
        assert np.array_equal(g, got[0])


# Where the threads divide the batch and a thread's copies of dy would not stay in the L2, it
# runs its images in groups (split_images), each group's dy copied as it comes. With a described
# L2 of 64 KiB, at 2 threads (4 images a thread): a 1x1/2 with 96 channels of dy one by one, one
# with 40 channels three and one (whole at 4 threads), a 3x3/2 whole (its filters fill the
# budget). Same bits as one thread, within the contract of the float64 reference.
GROUPED_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import fastconv
from test_direct_data_phases import _dx, _run
out = []
for case, dtype in json.loads(sys.argv[2]):
    x, wt, dy = _run(tuple(case), dtype)
    got = []
    for threads in (1, 2, 4):
        with fastconv.threads(threads):
            got.append(_dx(dy, x, wt, tuple(case)).tobytes().hex())
    out.append(got)
print(json.dumps(out))
"""
GROUPED = [
    (8, 48, 14, 15, 96, 1, 1, 2, 2, 0, 0),  # 1x1/2, 96 channels of dy: one by one
    (8, 96, 13, 15, 40, 1, 1, 2, 2, 0, 0),  # 1x1/2, 40 channels of dy: three and one
    (8, 40, 18, 18, 24, 3, 3, 2, 2, 1, 1),  # 3x3/2: whole
]


def test_phases_in_groups_of_images_keep_the_bits(tmp_path):
    caches = described_caches(tmp_path, "64K")
    cases = [(c, dt) for c in GROUPED for dt in ("float32", "float64")]
    proc = run_isa(fastconv.isa(), GROUPED_SCRIPT, json.dumps(cases), FASTCONV_SYSFS_CACHE=caches)
    for (case, dtype), got in zip(cases, json.loads(proc.stdout.strip().splitlines()[-1])):
        assert len(set(got)) == 1, f"{case} {dtype}: threads differ"
        x, wt, dy = _run(case, dtype)
        dx = np.frombuffer(bytes.fromhex(got[0]), dtype=dtype).reshape(x.shape)
        _assert_within_contract(dx, x, wt, dy, case)


def _same_as_im2col(dy, x, wt, case):
    """direct's dx has its NaNs and infinities where im2col's has them, the rest close."""
    got = _dx(dy, x, wt, case)
    want = _dx(dy, x, wt, case, algo="im2col")
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-10, atol=1e-10)


def test_a_non_finite_filter_lands_where_im2col_puts_it():
    """An infinite tap meets dy's zero border (0 x inf: NaN, as im2col and PyTorch): the
    phases leave such filters to the scatter, which keeps every product."""
    case = (1, 24, 14, 14, 32, 3, 3, 2, 2, 1, 1)
    x, wt, dy = _run(case, np.float64, seed=5)
    wt[3, 5, 0, 1] = np.inf
    dy[dy > 2] = 0.0
    _same_as_im2col(dy, x, wt, case)


def test_non_finite_dy_spreads_as_in_im2col():
    case = (2, 32, 16, 16, 40, 3, 3, 2, 2, 1, 1)
    x, wt, dy = _run(case, np.float64, seed=6)
    dy[0, 3, 2, 5] = np.inf
    dy[1, 39, 7, 7] = np.nan
    _same_as_im2col(dy, x, wt, case)


_BITS = """
import json, sys
import numpy as np
import fastconv
F = fastconv.functional
out = []
for case in json.loads(sys.argv[2]):
    n, c, h, w, k, kh, kw, sh, sw, ph, pw = case
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, kh, kw)).astype(np.float32)
    y = F.conv2d(x, wt, stride=(sh, sw), padding=(ph, pw), algo="im2col")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    g = lambda a: F.conv2d_backward(dy, x, wt, stride=(sh, sw), padding=(ph, pw),
                                    needs=(True, False, False), algo=a)[0].astype(np.float64)
    d, r = g("direct"), g("im2col")
    out.append(float(np.abs(d - r).max() / np.abs(r).max()))
print(json.dumps({"isa": fastconv.isa(), "err": out}))
"""


@pytest.mark.slow  # (a forced-ISA subprocess each)
@pytest.mark.parametrize("isa", [i for i in AVAILABLE_ISAS if i != "generic"])
def test_phases_on_every_isa(isa):
    # pack_block8_taps' transposes and the tiles are compiled per ISA
    cases = [CASES[0], CASES[3], CASES[4], CASES[11]]
    got = run_isa_json(isa, _BITS, json.dumps(cases))
    assert got["isa"] == isa
    assert all(e < 1e-5 for e in got["err"]), got


def _desc(n, c, h, k, kk=3, s=2, p=1):
    return [n, c, h, h, k, kk, kk, s, s, p, p, 1, 1, 1]


def test_auto_sends_strided_data_gradients_with_wide_phases_to_it():
    """64+ channels each way, phases 14+ wide from two images and 28+ at one: direct; onto 7x7
    phases, at one image onto 14x14, with few channels or groups: im2col (or depthwise)."""
    name = _core.ALGO_NAMES
    if fastconv.isa() == "generic":
        pytest.skip("the generic table keeps im2col")
    for d in (
        _desc(8, 256, 28, 256),
        _desc(2, 256, 28, 256),
        _desc(8, 128, 56, 128),
        _desc(1, 128, 56, 128),
        _desc(8, 384, 35, 384, p=0),
        _desc(8, 64, 112, 64),
    ):
        assert name[_core.conv2d_choose(d, 1)] == "direct", d
    for d in (
        _desc(8, 512, 14, 512),
        _desc(1, 256, 28, 256),
        _desc(1, 384, 35, 384, p=0),
        _desc(8, 32, 56, 64),
        _desc(8, 3, 224, 64, kk=7, p=3),
    ):
        assert name[_core.conv2d_choose(d, 1)] != "direct", d

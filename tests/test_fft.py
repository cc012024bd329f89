"""FFT convolution (algo="fft") against the float64 reference, all three directions.

The bound is the library's (README, "Algorithms and accuracy"): |error| <= 1e-4 * scale in
float32 and 1e-10 * scale in float64, per element, scale = the sum of the absolute values of the
terms.
FFT rounding errors are spread over a whole plane rather than kept per element, so the
kernels compute float32 convolutions in double (csrc/conv/fft.cpp), and outputs without any
term come out exactly. Measured on L1-L5 and AlexNet's 5x5 at batch 8: at most 2.8e-8 * scale
in float32 (the final rounding to float32) and 1.6e-15 * scale in float64.
"""

import json
import textwrap
import zlib

import numpy as np
import pytest

import fastconv
from _isa import AVAILABLE_ISAS, run_isa, run_isa_json
from conftest import (
    DTYPE_IDS,
    DTYPES,
    Case,
    assert_close,
    assert_unchanged,
    check_backward,
    described_caches,
    expected_backward,
    expected_forward,
    make_inputs,
    snapshot,
)

CASES = [
    # every kernel size, square and not
    Case(2, 3, 13, 11, 5, 1, 1),
    Case(1, 4, 12, 12, 6, 3, 3, padding=1),
    Case(3, 5, 17, 19, 4, 5, 5, padding=2, bias=False),
    Case(2, 6, 16, 16, 7, 7, 7),
    Case(1, 3, 23, 21, 8, 9, 9, padding=4),
    Case(2, 2, 29, 31, 3, 11, 11, padding=5),
    Case(1, 5, 9, 20, 6, 1, 7, padding=(0, 3)),
    Case(3, 4, 14, 10, 5, 5, 3, padding=(2, 1)),
    # paddings 0..5, asymmetric between the axes
    Case(1, 3, 8, 9, 4, 3, 3, padding=0),
    Case(2, 3, 7, 11, 2, 3, 5, padding=(3, 0)),
    Case(1, 2, 6, 6, 3, 5, 5, padding=5),
    Case(1, 2, 5, 7, 3, 3, 3, padding=(4, 1)),
    # outputs with no terms at all (taps that only meet padding) must be exactly the bias / 0
    Case(2, 3, 7, 6, 4, 1, 1, padding=2),
    Case(2, 3, 1, 9, 4, 3, 3, padding=1, bias=False),
    Case(1, 2, 4, 5, 3, 2, 6, padding=(3, 4)),
    # odd, prime, non-power-of-two sizes; a single row; planes exactly a power of two
    Case(1, 3, 1, 37, 4, 1, 5, padding=(0, 2)),
    Case(2, 3, 31, 29, 3, 3, 3),
    Case(1, 2, 32, 32, 3, 5, 5),
    Case(1, 3, 3, 97, 2, 3, 9),
    # channels: one, odd, K != C, more than a vector of lanes (remainders), groups
    Case(3, 1, 11, 13, 1, 3, 3, padding=1),
    Case(1, 1, 12, 9, 19, 5, 5, padding=2),
    Case(2, 19, 10, 10, 1, 3, 3, bias=False),
    Case(2, 37, 9, 9, 21, 3, 3, padding=1),
    Case(2, 4, 11, 11, 6, 5, 5, padding=2, groups=2),
    Case(1, 6, 9, 13, 9, 3, 3, padding=(1, 0), groups=3, bias=False),
    Case(2, 8, 8, 8, 8, 3, 3, padding=1, groups=8),
    # channel and batch counts that chunk the frequency-domain buffers (r and m blocks)
    Case(2, 24, 60, 60, 16, 5, 5),
    Case(2, 40, 60, 60, 16, 5, 5, bias=False),
    Case(17, 3, 30, 30, 5, 3, 3, padding=1),
]

# convnet-benchmarks L1-L4 and AlexNet's 5x5 at full spatial size, channels reduced where the
# float64 reference would be slow (the transform sizes are the real ones: 128, 64, 32, 16, 32).
LAYERS = {
    "L1": Case(1, 3, 128, 128, 24, 11, 11),
    "L2": Case(1, 16, 64, 64, 32, 9, 9),
    "L3": Case(2, 32, 32, 32, 32, 9, 9),
    "L4": Case(2, 128, 16, 16, 128, 7, 7),
    "alexnet-5x5": Case(2, 32, 27, 27, 48, 5, 5, padding=2),
}


def inputs(case, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{case.id}-{np.dtype(dtype).name}".encode()))
    x, w, b = make_inputs(rng, case.x_shape, case.w_shape, dtype, bias=case.bias)
    y, sy = expected_forward(x, w, b, 1, case.padding, 1, case.groups)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, b, dy, y, sy


def check_all_directions(case, dtype):
    x, w, b, dy, y_ref, sy = inputs(case, dtype)
    assert "fft" in fastconv.algorithms(case.x_shape, case.w_shape, **case.params)
    before = snapshot(x, w, b, dy)
    y = fastconv.conv2d(x, w, b, algo="fft", **case.params)
    grads = fastconv.conv2d_backward(dy, x, w, algo="fft", **case.params)
    assert_unchanged(before, (x, w, b, dy), ("x", "weight", "bias", "grad_out"))
    assert_close(y, y_ref, dtype, sy, "y")
    expected, scales = expected_backward(dy, x, w, 1, case.padding, 1, case.groups)
    check_backward(grads, expected, scales, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fft_matches_reference(case, dtype):
    check_all_directions(case, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
# L1-L4 take about a second each (slow); the fast loop keeps AlexNet's 5x5
@pytest.mark.parametrize(
    "name", [n if n == "alexnet-5x5" else pytest.param(n, marks=pytest.mark.slow) for n in LAYERS]
)
def test_fft_real_layers(name, dtype):
    check_all_directions(LAYERS[name], dtype)


def test_fft_conv1d():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 300))
    w = rng.standard_normal((7, 5, 15))
    assert "fft" in fastconv.algorithms((2, 5, 1, 300), (7, 5, 1, 15), padding=(0, 7))
    y = fastconv.conv1d(x, w, padding=7, algo="fft")
    y_ref, sy = expected_forward(x[:, :, None], w[:, :, None], None, 1, (0, 7), 1, 1)
    assert_close(y, y_ref[:, :, 0], np.float64, sy[:, :, 0], "y")


@pytest.mark.parametrize(
    "case",
    [Case(3, 20, 24, 24, 18, 5, 5, padding=2), Case(3, 2, 20, 20, 12, 5, 5, padding=1)],
    ids=lambda c: c.id,
)
def test_fft_threads_agree(case, restore_threads):
    """Work is split by the shape, never by the thread count: results are bitwise equal.
    (The second case has a single block of lanes, so its sums over r are split in parts.)"""
    x, w, b, dy, _, _ = inputs(case, np.float32)
    runs = []
    for nt in (1, 2, 3):
        fastconv.set_num_threads(nt)
        runs.append(
            (
                fastconv.conv2d(x, w, b, algo="fft", **case.params),
                *fastconv.conv2d_backward(dy, x, w, algo="fft", **case.params)[:2],
            )
        )
    for other in runs[1:]:
        for a, b_ in zip(runs[0], other):
            np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize(
    "params",
    [dict(stride=2), dict(dilation=2), dict(stride=(1, 2))],
    ids=["stride", "dilation", "stride-w"],
)
def test_fft_not_offered_for_strides_or_dilation(params):
    assert "fft" not in fastconv.algorithms((1, 3, 16, 16), (4, 3, 3, 3), **params)
    x = np.zeros((1, 3, 16, 16), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"\balgo\b"):
        fastconv.conv2d(x, w, algo="fft", **params)


def test_fft_not_offered_beyond_its_largest_transform():
    # a padded plane over 4096 along a side, or over 256 x 256 in area (after rounding up)
    assert "fft" not in fastconv.algorithms((1, 1, 1, 5000), (1, 1, 1, 3))
    assert "fft" not in fastconv.algorithms((1, 1, 300, 300), (1, 1, 3, 3))
    assert "fft" in fastconv.algorithms((1, 1, 256, 256), (1, 1, 3, 3))
    assert "fft" in fastconv.algorithms((1, 1, 1, 4000), (1, 1, 1, 3), padding=(0, 1))


ISA_SCRIPT = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import fastconv
    sys.path.insert(0, sys.argv[1])
    from reference import conv2d_ref, conv2d_backward_ref
    rng = np.random.default_rng(0)
    cases = [  # x shape, w shape, padding, groups: lane remainders, chunks, both lane choices
        ((2, 5, 11, 13), (9, 5, 3, 3), (1, 1), 1),
        ((3, 19, 9, 14), (3, 19, 5, 5), (2, 0), 1),
        ((2, 6, 17, 10), (20, 3, 7, 3), (3, 1), 2),
        ((1, 3, 40, 40), (17, 3, 11, 11), (0, 0), 1),
        ((2, 1, 1, 50), (4, 1, 1, 9), (0, 4), 1),
    ]
    worst = 0.0
    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        for xs, ws, p, g in cases:
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            b = rng.standard_normal(ws[0]).astype(dtype)
            y_ref = conv2d_ref(x, w, b, 1, p, 1, g)
            dy = rng.standard_normal(y_ref.shape).astype(dtype)
            dx_ref, dw_ref, _ = conv2d_backward_ref(dy, x, w, 1, p, 1, g)
            sy = conv2d_ref(abs(x), abs(w), abs(b), 1, p, 1, g) + 1e-300
            sx, sw, _ = conv2d_backward_ref(abs(dy), abs(x), abs(w), 1, p, 1, g)
            y = fastconv.conv2d(x, w, b, padding=p, groups=g, algo="fft")
            dx, dw, _ = fastconv.conv2d_backward(dy, x, w, padding=p, groups=g, algo="fft")
            for got, ref, sc in ((y, y_ref, sy), (dx, dx_ref, sx + 1e-300),
                                 (dw, dw_ref, sw + 1e-300)):
                worst = max(worst, float(np.max(np.abs(got - ref) / sc)) / tol)
    print(json.dumps({"isa": fastconv.isa(), "worst": worst}))
""")


@pytest.mark.slow  # a subprocess per ISA
@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_fft_each_isa(isa):
    res = run_isa_json(isa, ISA_SCRIPT)
    assert res["isa"] == isa
    assert res["worst"] <= 1.0, res  # error / tolerance, worst over the cases and directions


def test_fft_nan_and_inf_stay_where_their_terms_are():
    """A transform spreads a NaN over its whole plane; fft must not (it runs such calls on
    the GEMM path): non-finite outputs exactly where im2col has them, the rest equal."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 20, 20))
    w = rng.standard_normal((4, 3, 5, 5))
    x[0, 1, 3, 4], x[1, 2, 15, 9] = np.nan, np.inf
    dy = rng.standard_normal((2, 4, 18, 18))
    dy[1, 3, 10, 10] = -np.inf
    got = (
        fastconv.conv2d(x, w, padding=1, algo="fft"),
        *fastconv.conv2d_backward(dy, x, w, padding=1, algo="fft")[:2],
    )
    want = (
        fastconv.conv2d(x, w, padding=1, algo="im2col"),
        *fastconv.conv2d_backward(dy, x, w, padding=1, algo="im2col")[:2],
    )
    for g, e in zip(got, want):
        np.testing.assert_array_equal(np.isfinite(g), np.isfinite(e))
        np.testing.assert_allclose(g[np.isfinite(g)], e[np.isfinite(e)], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "x_shape, w_shape",
    [
        ((8, 1, 32, 32), (6, 1, 5, 5)),  # LeNet-5's C1 (150 multiply-adds a position)
        ((64, 3, 32, 32), (8, 3, 5, 5)),  # a CIFAR first layer (600)
        ((8, 2, 64, 64), (16, 2, 7, 7)),  # (1568)
        ((8, 1, 64, 64), (32, 1, 9, 9)),  # (2592)
    ],
)
def test_auto_leaves_forwards_of_a_short_reduction_to_the_gemm(x_shape, w_shape):
    """Under 4096 multiply-adds per output position and image, FFT's plane transforms outweigh
    its saving (1.2-7x im2col's time forward): auto's forward is not FFT there, while FFT still
    runs when asked and L1's 11x11 3>96 (34848) stays on FFT."""
    assert fastconv.algorithms(x_shape, w_shape)[0] != "fft"
    assert "fft" in fastconv.algorithms(x_shape, w_shape)
    assert fastconv.algorithms((1, 3, 128, 128), (96, 3, 11, 11))[0] == "fft"


# The products' blocks of r and of m (fft_products): where half the L2 holds 8 or more planes'
# bins, a block is what fits there. With a described L2 of 128 KiB an 8x8 transform's 32-40
# planes go in blocks of 12 or 25 (AVX-512's or AVX2's lanes), each block's sum added to the
# ones before; with this machine's L2 in one. Either way the same bits at 1, 2 and 3 threads in
# every direction, within the contract of the float64 reference.
BLOCKS_SCRIPT = r"""
import json, sys
import numpy as np
import fastconv
out = []
for dtype in ("float32", "float64"):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((8, 32, 6, 6)).astype(dtype)
    w = rng.standard_normal((40, 32, 3, 3)).astype(dtype)
    dy = rng.standard_normal((8, 40, 6, 6)).astype(dtype)
    got = []
    for t in (1, 2, 3):
        with fastconv.threads(t):
            y = fastconv.conv2d(x, w, padding=1, algo="fft")
            dx, dw = fastconv.conv2d_backward(dy, x, w, padding=1, algo="fft")[:2]
            got.append([a.tobytes().hex() for a in (y, dx, dw)])
    out.append(got)
print(json.dumps(out))
"""


def test_fft_product_blocks_of_half_the_l2_keep_the_bits(tmp_path):
    caches = described_caches(tmp_path, "128K")
    here = run_isa(fastconv.isa(), BLOCKS_SCRIPT).stdout.strip().splitlines()[-1]
    small = run_isa(fastconv.isa(), BLOCKS_SCRIPT, FASTCONV_SYSFS_CACHE=caches)
    small = small.stdout.strip().splitlines()[-1]
    runs = [*zip((np.float32, np.float64), json.loads(here))]
    runs += [*zip((np.float32, np.float64), json.loads(small))]
    for dtype, got in runs:
        assert all(g == got[0] for g in got), f"{dtype}: threads differ"
        rng = np.random.default_rng(9)
        x = rng.standard_normal((8, 32, 6, 6)).astype(dtype)
        w = rng.standard_normal((40, 32, 3, 3)).astype(dtype)
        dy = rng.standard_normal((8, 40, 6, 6)).astype(dtype)
        y, dx, dw = (np.frombuffer(bytes.fromhex(h), dtype=dtype) for h in got[0])
        ey, sy = expected_forward(x, w, None, 1, 1, 1, 1)
        (edx, edw, _), (sdx, sdw, _) = expected_backward(dy, x, w, 1, 1, 1, 1)
        assert_close(y.reshape(ey.shape), ey, dtype, sy)
        assert_close(dx.reshape(edx.shape), edx, dtype, sdx)
        assert_close(dw.reshape(edw.shape), edw, dtype, sdw)

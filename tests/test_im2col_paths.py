"""The GEMM paths for few images (csrc/conv/im2col.cpp, "Few images"): batch below 8, where a
run of an image's positions gets its columns built once into a shared buffer and the product is
cut into tiles of rows x columns for the threads; and for small planes, where several images'
columns lie side by side in one GEMM (csrc/conv/image_groups.cpp).

Checked against the float64 reference (tests/reference.py) on the machine's own caches and, in a
subprocess, with a described L3 of 256 KiB (FASTCONV_SYSFS_CACHE), so that the shared buffer
holds only part of a plane and the runs accumulate; in that subprocess also bitwise equal at 1,
2 and 3 threads.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from conftest import assert_close, described_caches, expected_forward
from fastconv import functional as F
from reference import conv2d_backward_ref, conv2d_ref

# (x shape, w shape, stride, padding, groups, algo): each reaches a few-image or image-group path:
CASES = [
    ((1, 64, 7, 7), (96, 64, 3, 3), 1, 1, 1, "im2col"),  # one column block: forward tiles
    ((1, 48, 14, 14), (64, 48, 3, 3), 2, 1, 1, "im2col"),  # strided, forward tiles
    ((1, 32, 8, 8), (40, 16, 3, 3), 1, 1, 2, "im2col"),  # groups, forward tiles
    ((2, 32, 9, 9), (40, 16, 3, 3), 1, 1, 2, "im2col"),  # groups, two images
    ((1, 32, 20, 20), (48, 32, 3, 3), 1, 1, 1, "im2col"),  # dW tiles, 7 runs at 256 KiB
    ((1, 22, 9, 9), (16, 11, 3, 3), 1, 1, 2, "im2col"),  # columns built by 8 runs of channels
    ((1, 3, 40, 40), (16, 3, 7, 7), 2, 3, 1, "im2col"),  # a stem: small dW (slots)
    ((1, 256, 6, 6), (128, 256, 1, 1), 1, 0, 1, "gemm1x1"),  # 1x1 in place: dW tiles
    ((3, 128, 5, 5), (96, 128, 1, 1), 1, 0, 1, "gemm1x1"),  # 1x1 in place, 3 images
    ((4, 256, 7, 7), (80, 256, 1, 1), 1, 0, 1, "gemm1x1"),  # 4 images, short slots: dW tiles
    ((2, 96, 8, 8), (64, 96, 3, 3), 2, 1, 1, "im2col"),  # dW tiles over columns
    ((1, 40, 11, 13), (72, 40, 1, 1), 2, 0, 1, "gemm1x1"),  # 1x1 strided (gathered)
    # 1x1 in place, dx at under 8 (image, group) pairs: tiles of channels x positions
    ((1, 40, 30, 31), (24, 40, 1, 1), 1, 0, 1, "gemm1x1"),  # positions cut 8 ways, ragged
    ((1, 200, 9, 9), (16, 200, 1, 1), 1, 0, 1, "gemm1x1"),  # channels and positions cut
    ((1, 48, 12, 12), (32, 24, 1, 1), 1, 0, 2, "gemm1x1"),  # groups: 4 tiles each
    # small planes, several images per GEMM (csrc/conv/image_groups.cpp): 16+ images on planes
    # under 64 outputs, every direction; 2 groups of 8 images at 256 KiB (dW sums them)
    ((16, 8, 5, 5), (12, 8, 3, 3), 1, 1, 1, "im2col"),
    ((18, 16, 6, 6), (24, 8, 3, 3), 1, 1, 2, "im2col"),  # groups, a partial last group
    ((16, 64, 4, 4), (32, 64, 1, 1), 1, 0, 1, "gemm1x1"),  # 1x1 in place
    ((3, 40, 13, 13), (72, 40, 1, 1), 2, 0, 1, "gemm1x1"),  # gathered 1x1: dW grouped
    ((4, 6, 7, 7), (10, 6, 5, 5), 1, 2, 1, "im2col"),  # a 5x5's dW grouped at 4 images
    ((3, 8, 6, 6), (12, 4, 3, 3), 1, 1, 2, "im2col"),  # groups: dW grouped at 3 images
    ((8, 40, 8, 8), (24, 40, 1, 1), 1, 0, 1, "gemm1x1"),  # 1x1 in place: dW grouped at 8
    ((9, 24, 7, 6), (16, 12, 1, 1), 1, 0, 2, "gemm1x1"),  # the same with groups
    # dx grouped at 4-15 images where the weights are 8 L2s or more: in the subprocess (an L2 of
    # 64 KiB) these weights of 540-576 KiB are; on a real L2 the per-image path runs
    ((4, 96, 13, 13), (160, 96, 3, 3), 2, 1, 1, "im2col"),  # 3x3/2 to 7x7
    ((5, 384, 6, 6), (384, 384, 1, 1), 1, 0, 1, "gemm1x1"),  # 1x1 in place
    # dW grouped at 2-7 images on planes of 64-511 outputs
    ((3, 20, 12, 12), (24, 20, 3, 3), 1, 1, 1, "im2col"),  # 144 outputs, 3 images
    ((7, 12, 15, 15), (16, 6, 5, 5), 1, 2, 2, "im2col"),  # 225 outputs, groups, 7 images
    ((2, 16, 17, 17), (24, 16, 1, 7), 1, 0, 1, "im2col"),  # a 1x7 (unpadded): 17x11 outputs
    ((2, 8, 22, 23), (8, 8, 3, 3), 1, 1, 1, "im2col"),  # 506 outputs
    # dW under 32 columns: the dot-product micro-kernel (weight_gemm in gemm_blocks.h), with
    # full register tiles and remainders of rows and columns on every ISA's tile
    ((1, 3, 45, 47), (13, 3, 3, 3), 2, 0, 1, "im2col"),  # a 3-channel stem: 27 columns
    ((9, 1, 30, 30), (10, 1, 5, 5), 1, 2, 1, "im2col"),  # 9 images (slots): 25 columns
    ((2, 6, 21, 19), (14, 3, 3, 3), 1, 1, 2, "im2col"),  # groups of 3 channels
    ((16, 2, 5, 5), (7, 2, 3, 3), 1, 1, 1, "im2col"),  # image groups: 18 columns
    ((2, 31, 9, 11), (5, 31, 1, 1), 1, 0, 1, "gemm1x1"),  # in place: 31 columns
    # dx of one image of up to 4 channels: shared runs, scattered in bands of input rows
    ((1, 2, 5, 30), (6, 2, 3, 5), 1, 2, 1, "im2col"),  # 4 bands on 5 rows
    ((1, 1, 3, 17), (5, 1, 3, 3), 1, 1, 1, "im2col"),  # fewer rows than bands
    ((1, 4, 23, 19), (8, 4, 5, 5), 3, 2, 1, "im2col"),  # stride 3, 2 bands
]

SCRIPT = r"""
import json, sys
import numpy as np
import fastconv
cases = json.loads(sys.argv[1])
out = []
for xs, ws, stride, pad, groups, algo in cases:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs); w = rng.standard_normal(ws); b = rng.standard_normal(ws[0])
    res = {}
    for t in (1, 2, 3):
        with fastconv.threads(t):
            y = fastconv.conv2d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32),
                                stride=stride, padding=pad, groups=groups, algo=algo)
            dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
            dx, dw, db = fastconv.conv2d_backward(dy, x.astype(np.float32),
                                                  w.astype(np.float32), stride=stride,
                                                  padding=pad, groups=groups, algo=algo)
        res[t] = (y, dx, dw)
    same = all(a.tobytes() == c.tobytes() for t in (2, 3) for a, c in zip(res[1], res[t]))
    y, dx, dw = (a.tolist() for a in res[1])
    out.append({"same": same, "y": y, "dx": dx, "dw": dw})
print(json.dumps(out))
"""


def check(case, y, dx, dw):
    xs, ws, stride, pad, groups, _ = case
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    geo = dict(stride=(stride, stride), padding=(pad, pad), groups=groups)
    y_ref = conv2d_ref(x, w, b, **geo)
    dy = np.random.default_rng(2).standard_normal(y_ref.shape).astype(np.float32).astype(np.float64)
    dx_ref, dw_ref = conv2d_backward_ref(
        dy, x.astype(np.float32).astype(np.float64), w.astype(np.float32).astype(np.float64), **geo
    )[:2]
    for name, got, want in (("y", y, y_ref), ("dx", dx, dx_ref), ("dw", dw, dw_ref)):
        got = np.asarray(got, dtype=np.float64)
        scale = np.abs(want).max() + 1.0
        assert got.shape == want.shape, name
        assert np.abs(got - want).max() <= 1e-4 * scale, (name, np.abs(got - want).max(), scale)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[5]}-{c[0]}-{c[1]}" for c in CASES])
def test_few_images_against_reference(case):
    xs, ws, stride, pad, groups, algo = case
    rng = np.random.default_rng(1)
    x, w, b = (
        a.astype(np.float32)
        for a in (rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0]))
    )
    y = fastconv.conv2d(x, w, b, stride=stride, padding=pad, groups=groups, algo=algo)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    dx, dw, _ = fastconv.conv2d_backward(
        dy, x, w, stride=stride, padding=pad, groups=groups, algo=algo
    )
    check(case, y, dx, dw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ksize,stride,algo", [(1, 1, "gemm1x1"), (3, 2, "im2col")])
def test_data_gradient_grouped_where_the_weights_are_large(dtype, ksize, stride, algo):
    # this machine's own L2: weights of 8 L2s or more (at most 8 MiB: csrc/conv/image_groups.cpp)
    # at 4 images on a plane under 64 outputs take the grouped data gradient
    elem = np.dtype(dtype).itemsize
    ch = math.ceil(math.sqrt(8 * fastconv.hardware()["l2_bytes"] / (elem * ksize * ksize)))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, ch, 7 * stride, 7 * stride)).astype(dtype)
    w = (rng.standard_normal((ch, ch, ksize, ksize)) / ch).astype(dtype)
    pad = ksize // 2
    dy = rng.standard_normal((4, ch, 7, 7)).astype(dtype)
    x0, w0, dy0 = x.copy(), w.copy(), dy.copy()
    dx = fastconv.conv2d_backward(
        dy, x, w, stride=stride, padding=pad, needs=(True, False, False), algo=algo
    )[0]
    geo = dict(stride=(stride, stride), padding=(pad, pad))
    want = conv2d_backward_ref(dy, x, w, **geo)[0]
    scale = conv2d_backward_ref(np.abs(dy), x, np.abs(w), **geo)[0]
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert np.all(np.abs(dx - want) <= tol * scale + 1e-30)
    for a, b in ((x, x0), (w, w0), (dy, dy0)):  # inputs untouched
        assert a.tobytes() == b.tobytes()


@pytest.mark.slow  # a subprocess with a small fake L3
def test_runs_accumulate_with_a_small_l3(tmp_path):
    # a described L3 of 256 KiB: a quarter of it (the shared buffer) holds 64 KiB of columns,
    # less than one plane of every case with a column matrix above
    caches = described_caches(tmp_path, "64K", l3="256K")
    env = {**os.environ, "FASTCONV_SYSFS_CACHE": caches}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(CASES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for case, got in zip(CASES, json.loads(proc.stdout)):
        assert got["same"], f"{case}: not bitwise equal at 1, 2 and 3 threads"
        check(case, got["y"], got["dx"], got["dw"])


# --- implicit columns (im2col.cpp, forward_implicit) ---------------------------------------------
# (n, c, h, w, k, kh, kw, stride, padding, dilation, groups): forwards of up to 16 input channels
# a group, up to 400 terms and output rows 14+ wide, which run on the input's column phases with
# no column matrix. Output rows that end in part vectors (15, 17, 18, 151 wide), output channels
# not a multiple of the tile's (5, 13, 33), strides 1-4, asymmetric padding, height dilations,
# groups, one channel, bands of one and of several output rows.
IMPLICIT = [
    (2, 3, 31, 35, 13, 3, 3, 2, 0, 1, 1),  # Inception v3's first layer, smaller: 15x17 outputs
    (1, 3, 30, 30, 33, 7, 7, 2, 3, 1, 1),  # the 7x7/2 stem, 15x15 outputs
    (3, 3, 16, 18, 5, 3, 3, 1, 1, 1, 1),  # VGG's first layer, 16x18, 5 outputs
    (1, 16, 14, 17, 20, 3, 3, 1, (1, 0), 1, 1),  # 16 channels (the most), 14x15
    (1, 1, 20, 30, 6, 5, 5, 1, 2, 1, 1),  # one channel (LeNet's C1, padded)
    (2, 8, 21, 40, 16, 3, 5, 3, (2, 1), 1, 1),  # stride 3, a 3x5 kernel
    (1, 6, 23, 70, 8, 3, 3, 4, 1, (2, 1), 1),  # stride 4, dilated along the height
    (1, 12, 12, 30, 10, 3, 3, 1, 1, 1, 2),  # 2 groups of 6 channels
    (1, 4, 12, 151, 7, 3, 1, 1, (1, 0), 1, 1),  # a 3x1, 151-wide rows
    # 80 output rows: bands of several rows (4-10 at 1-3 threads), the last in part
    (2, 5, 80, 16, 6, 3, 3, 1, (2, 1), (2, 1), 1),
]
IMPLICIT_IDS = ["x".join(map(str, c[:7])) + f"/s{c[7]}" for c in IMPLICIT]


def _implicit_inputs(case, dtype, seed=0):
    n, c, h, w, k, kh, kw, _, _, _, g = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, c // g, kh, kw)).astype(dtype)
    return x, wt, rng.standard_normal(k).astype(dtype)


def _implicit_forward(x, w, b, case):
    stride, pad, dil, groups = case[7:]
    return F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups, algo="im2col")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", IMPLICIT, ids=IMPLICIT_IDS)
def test_implicit_columns_against_reference(case, dtype):
    x, w, b = _implicit_inputs(case, dtype)
    x0, w0, b0 = x.copy(), w.copy(), b.copy()
    for bias in (b, None):
        y = _implicit_forward(x, w, bias, case)
        expected, scale = expected_forward(x, w, bias, *case[7:])
        assert_close(y, expected, dtype, scale)
    for a, a0 in ((x, x0), (w, w0), (b, b0)):  # inputs untouched
        assert a.tobytes() == a0.tobytes()


@pytest.mark.parametrize(
    "case", IMPLICIT[:4] + IMPLICIT[-3:], ids=IMPLICIT_IDS[:4] + IMPLICIT_IDS[-3:]
)
def test_implicit_columns_bits_follow_the_shape_not_the_threads(case, restore_threads):
    """The same bits at 1, 2 and 3 threads, and for a batch as for its images one at a time."""
    x, w, b = _implicit_inputs(case, np.float32, seed=1)
    fastconv.set_num_threads(1)
    y1 = _implicit_forward(x, w, b, case)
    for threads in (2, 3):
        fastconv.set_num_threads(threads)
        assert np.array_equal(_implicit_forward(x, w, b, case), y1)
    for i in range(x.shape[0]):
        assert np.array_equal(_implicit_forward(x[i : i + 1], w, b, case), y1[i : i + 1])


def test_implicit_columns_non_finite_inputs_land_where_the_reference_puts_them():
    case = IMPLICIT[1]
    x, w, _ = _implicit_inputs(case, np.float64, seed=4)
    x[0, 0, 0, 0] = np.inf
    x[0, 2, 17, 9] = np.nan
    x[0, 1, 29, 29] = -np.inf
    y = _implicit_forward(x, w, None, case)
    expected, _ = expected_forward(x, w, None, *case[7:])
    assert np.array_equal(np.isnan(y), np.isnan(expected))
    assert np.array_equal(np.isinf(y), np.isinf(expected))
    finite = np.isfinite(expected)
    assert np.allclose(y[finite], expected[finite], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", IMPLICIT[:3], ids=IMPLICIT_IDS[:3])
def test_prepared_implicit_columns_fuse_bias_residual_relu_bitwise(case, dtype):
    """A plan's im2col step applies bias, residual and ReLU per output row: bit for bit the
    ordinary forward followed by the same operations."""
    from test_inference_native import _conv_plan

    stride, padding = case[7], case[8]
    x, w, b = _implicit_inputs(case, dtype, seed=2)
    y0 = F.conv2d(x, w, b, stride=stride, padding=padding, algo="im2col")
    res = np.random.default_rng(3).standard_normal(y0.shape).astype(dtype)
    im2col = fastconv._core.ALGO_NAMES.index("im2col")
    p, out_shape = _conv_plan(x, w, b, im2col, padding, residual=res, act=1, stride=stride)
    y = np.empty(out_shape, dtype)
    p.run(np.concatenate([x.reshape(-1), res.reshape(-1)]), y.reshape(-1))
    expected = y0 + res
    assert np.array_equal(y, np.where(expected > 0, expected, dtype(0)))


def test_heuristics_send_short_reductions_over_few_channels_to_implicit_columns():
    """auto's forward: the 7x7/2 stem, Inception v3's and VGG's first layers on im2col's
    implicit columns at 1 and 8 images, plain and planned; AlexNet's 11x11/4 (363 terms) and a
    5x5 over 16 channels (400, one image; FFT from two) stay on direct."""

    def desc(n, c, h, k, kh, s, p):
        return [n, c, h, h, k, kh, kh, s, s, p, p, 1, 1, 1]

    def name(i):
        return fastconv._core.ALGO_NAMES[i]

    for n in (1, 8):
        for d in (desc(n, 3, 224, 64, 7, 2, 3), desc(n, 3, 299, 32, 3, 2, 0)):
            assert name(fastconv._core.conv2d_choose(d, 0)) == "im2col"
            assert name(fastconv._core.conv2d_choose_prepared(d)) == "im2col"
        assert name(fastconv._core.conv2d_choose(desc(n, 3, 224, 64, 3, 1, 1), 0)) == "im2col"
        assert name(fastconv._core.conv2d_choose(desc(n, 3, 224, 64, 11, 4, 2), 0)) == "direct"
    assert name(fastconv._core.conv2d_choose(desc(1, 16, 28, 48, 5, 1, 2), 0)) == "direct"


# --- dW's tiles for short reductions (im2col.cpp, plan_wide_tiles) ------------------------------
# In-place 1x1 weight gradients on planes up to 16x16 whose slots would sum under 256 positions:
# as few tiles as the cores where a tile's block of dW fits a quarter of the L2; with a described
# L2 of 64 KiB into more, smaller tiles. Either way within the contract of the float64 sums and
# the same bits at 1, 2 and 3 threads (the cut follows the L2, fixed on a machine, not the
# threads).
WIDE_TILES = [
    ((8, 256, 9, 9), (192, 256, 1, 1)),  # 8 images (was: slots)
    ((1, 256, 14, 14), (512, 256, 1, 1)),  # one image, 14x14
    ((3, 128, 7, 7), (320, 128, 1, 1)),  # 3 images, 7x7
    ((8, 192, 16, 16), (96, 192, 1, 1)),  # 16x16, rows under two tiles' 16
]

WIDE_SCRIPT = r"""
import json, sys
import numpy as np
import fastconv
out = []
for xs, ws, dtype in json.loads(sys.argv[1]):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(xs).astype(dtype)
    dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(dtype)
    w = np.zeros(ws, dtype)
    got = []
    for t in (1, 2, 3):
        with fastconv.threads(t):
            got.append(fastconv.conv2d_backward(dy, x, w, needs=(False, True, False),
                                                algo="gemm1x1")[1].tobytes().hex())
    out.append(got)
print(json.dumps(out))
"""


def _wide_tiles_bits(env):
    cases = [(xs, ws, dt) for xs, ws in WIDE_TILES for dt in ("float32", "float64")]
    proc = subprocess.run(
        [sys.executable, "-c", WIDE_SCRIPT, json.dumps(cases)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return cases, json.loads(proc.stdout)


def test_short_weight_gradient_tiles_against_float64_at_any_cut(tmp_path):
    caches = described_caches(tmp_path, "64K")
    cases, here = _wide_tiles_bits({})
    _, small = _wide_tiles_bits({"FASTCONV_SYSFS_CACHE": caches})
    for (xs, ws, dtype), a in [*zip(cases, here), *zip(cases, small)]:
        assert len(set(a)) == 1, f"{xs} {dtype}: threads differ"
        rng = np.random.default_rng(4)
        x = rng.standard_normal(xs).astype(dtype)
        dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(dtype)
        dw = np.frombuffer(bytes.fromhex(a[0]), dtype=dtype).reshape(ws)
        x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
        want = np.einsum("nkp,ncp->kc", dy64.reshape(xs[0], ws[0], -1), x64.reshape(*xs[:2], -1))
        scale = np.einsum(
            "nkp,ncp->kc", np.abs(dy64).reshape(xs[0], ws[0], -1), np.abs(x64).reshape(*xs[:2], -1)
        )
        tol = 1e-4 if dtype == "float32" else 1e-10
        assert np.all(np.abs(dw[:, :, 0, 0] - want) <= tol * scale), (xs, dtype)

"""The direct algorithm's blocked forward (csrc/conv/direct_blocked.cpp): channels in blocks of
8 (or, under 8 input channels, the rows layout: each row's pixels with their channels
interleaved, a window row's taps one run), tiles of 16 output channels x a few positions of one
output row, or of several (a 1x1's flat runs, a strided 1x1 on its subsampled pixels, rows of
7-9 positions). Against the float64 reference in float32 and float64 on channel counts that
leave part blocks (input and output), row widths that split into tiles unevenly, strides 1-3,
padding, non-square kernels and planes; inputs untouched; bitwise equal across thread counts,
between a batch and its images one at a time, between a prepared (plan) forward with its
fused bias, residual and ReLU and the ordinary forward, and between filters packed once (a
plan) and packed pair by pair as the threads reach them (a plain forward on a small plane), and
with the images split among the threads (a batch the threads divide);
non-finite inputs where the reference puts them; and where the heuristics send a forward to
it.

Also the weight gradient on the same tiles (direct_blocked_backward_weight: 16 output channels x
a tile's width of input channels at one tap, summed over output rows), the same way."""

import json
import textwrap

import numpy as np
import pytest

import fastconv
from _isa import AVAILABLE_ISAS, run_isa, run_isa_json
from conftest import assert_close, described_caches, expected_backward, expected_forward
from fastconv import _core
from fastconv import functional as F
from test_inference_native import _conv_plan

DIRECT = _core.ALGO_NAMES.index("direct")

# (n, c, h, w, k, kh, kw, stride, padding): every one has 24+ input channels and output rows
# 7+ wide (the blocked path; narrower or fewer take the other direct tiles)
CASES = [
    (1, 24, 9, 9, 16, 3, 3, 1, 1),  # whole blocks, one pair of output blocks
    (2, 30, 11, 13, 20, 3, 3, 1, 1),  # part input block (30 = 3x8 + 6), part output pair
    (1, 33, 15, 15, 9, 3, 3, 2, 1),  # stride 2, 9 outputs: one block of a pair is padding
    (1, 40, 17, 17, 33, 1, 7, 1, (0, 3)),  # 1x7, 17-wide rows: tiles of 6, 6, 5
    (1, 40, 17, 17, 24, 7, 1, 1, (3, 0)),  # 7x1
    (2, 48, 21, 21, 20, 5, 5, 1, 2),  # 5x5 "same"
    (1, 64, 14, 14, 48, 3, 3, 2, 1),  # 7-wide output rows: tiles of 4 and 3
    (1, 25, 23, 19, 17, 3, 5, 3, 2),  # stride 3, a 3x5 kernel, non-square plane
    (1, 32, 16, 16, 32, 7, 7, 1, 0),  # L4-like: 10-wide rows, no padding
    (1, 24, 8, 30, 8, 1, 1, 1, 0),  # 1x1 (auto takes gemm1x1; direct forced here)
    # AVX-512's forward tile (14 positions): 30-wide rows in 3 tiles of 10, 5-wide rows whole
    (1, 24, 6, 30, 24, 3, 3, 1, 1),
    (2, 32, 9, 9, 20, 3, 3, 2, 1),
]
# 1x1, unpadded, unit stride: runs of several output rows (flat_runs), cut into tiles that
# cross row ends; runs = ceil(8 / (n * output pairs)) of the ho rows
FLAT = [
    (1, 40, 7, 7, 40, 1, 1, 1, 0),  # 3 pairs: runs of 2, 2 and 3 rows (14, 14, 21 positions)
    (2, 27, 9, 11, 130, 1, 1, 1, 0),  # 9 pairs, part input block: one run of 99 positions
    (3, 33, 13, 7, 17, 1, 1, 1, 0),  # 17 outputs (a part pair), 2 runs per image
    # strided: only the pixels read, subsampled into the blocked copy, then the same runs
    (2, 40, 15, 17, 20, 1, 1, 2, 0),  # 8x9 outputs of an odd plane
    (1, 64, 28, 28, 130, 1, 1, 2, 0),  # ResNet's 1x1/2 shape, 130 outputs
    (3, 33, 13, 14, 17, 1, 1, 3, 0),  # stride 3, 5x5 outputs
]
# Rows under two tiles wide whose even cut leaves tiles of under 5 positions (AVX2's 6-position
# tiles: 7-9 wide): tiles of positions from several rows, each read from its own place
NARROW = [
    (2, 30, 8, 8, 20, 3, 3, 1, 1),  # 8-wide rows, part blocks, 2 images
    (3, 25, 11, 7, 33, 3, 3, 1, 1),  # 7-wide rows of a non-square plane, 33 outputs
    (1, 40, 15, 15, 24, 3, 3, 2, 1),  # strided onto 8x8
    (2, 24, 8, 8, 17, 3, 3, 2, 1),  # strided onto 4x4 (narrow for every tile width)
]
CASES += FLAT + NARROW
# Under 8 input channels, the rows layout (c*kw taps a row: 15+ strided, 28+ at unit stride)
ROWS = [
    (2, 3, 23, 23, 20, 7, 7, 2, 3),  # the stem's 7x7/2 on 3 channels, a part output pair
    (1, 3, 35, 39, 17, 11, 11, 4, 2),  # AlexNet's 11x11/4, non-square plane
    (1, 3, 40, 36, 9, 11, 11, 1, 0),  # L1's 11x11 at unit stride (33 taps a row)
    (2, 6, 14, 14, 16, 5, 5, 1, 0),  # LeNet's C3 (30 taps a row)
    (1, 5, 19, 17, 33, 3, 5, 2, (1, 2)),  # 3x5/2 on 5 channels, 25 taps a row
    (1, 1, 30, 45, 8, 3, 15, 3, 1),  # one channel, 1x15 runs, stride 3
    (3, 7, 16, 16, 24, 5, 3, 2, 1),  # 7 channels (the most in rows), 21 taps a row
]
CASES += ROWS
IDS = ["x".join(map(str, c[:7])) + f"/s{c[7]}" for c in CASES]
ROW_IDS = IDS[-len(ROWS) :]
FLAT_IDS = [IDS[CASES.index(c)] for c in FLAT]
NARROW_IDS = [IDS[CASES.index(c)] for c in NARROW]


def _inputs(case, dtype, seed=0):
    n, c, h, w, k, kh, kw, _, _ = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    return x, wt, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_blocked_forward_against_reference(case, dtype):
    x, w, b = _inputs(case, dtype)
    stride, padding = case[7], case[8]
    before = [a.copy() for a in (x, w, b)]
    y = F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct")
    expected, scale = expected_forward(x, w, b, stride, padding, 1, 1)
    assert_close(y, expected, dtype, scale)
    for a, a0 in zip((x, w, b), before):
        assert np.array_equal(a, a0)  # inputs untouched


@pytest.mark.parametrize("case", CASES[1:8:3] + ROWS[:2], ids=IDS[1:8:3] + ROW_IDS[:2])
def test_blocked_forward_bits_follow_the_shape_not_the_threads(case, restore_threads):
    """Shared input copies with dynamic items, per-thread copies with fixed runs of items (an
    odd batch's small input; at 7 threads runs of under one pair), images split between
    threads: the same bits."""
    x, w, b = _inputs(case, np.float32, seed=1)
    runs = []
    for threads in (1, 2, 3, 7):
        fastconv.set_num_threads(threads)
        runs.append(F.conv2d(x, w, b, stride=case[7], padding=case[8], algo="direct"))
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


@pytest.mark.parametrize("case", FLAT + NARROW, ids=FLAT_IDS + NARROW_IDS)
def test_runs_of_rows_give_the_bits_of_each_image_alone(case, restore_threads):
    """How rows are grouped into runs (a 1x1's flat runs, narrow rows) follows the batch (one
    image: more runs per image), and tiles cross row ends, yet every output is one tile's sum
    in the same order: the batch's forward is bit for bit the forwards of its images one at a
    time, at 1, 2 and 3 threads."""
    x, w, b = _inputs(case, np.float32, seed=4)
    stride, padding = case[7], case[8]
    whole = []
    for threads in (1, 2, 3):
        fastconv.set_num_threads(threads)
        whole.append(F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct"))
        alone = np.concatenate(
            [
                F.conv2d(x[i : i + 1], w, b, stride=stride, padding=padding, algo="direct")
                for i in range(len(x))
            ]
        )
        assert np.array_equal(whole[-1], alone)
    assert all(np.array_equal(whole[0], r) for r in whole[1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "case",
    [CASES[1], CASES[2], CASES[6], FLAT[0], FLAT[2], FLAT[3], NARROW[1], ROWS[0], ROWS[6]],
    ids=[IDS[1], IDS[2], IDS[6]]
    + [FLAT_IDS[0], FLAT_IDS[2], FLAT_IDS[3], NARROW_IDS[1], ROW_IDS[0], ROW_IDS[6]],
)
def test_prepared_blocked_forward_fuses_bias_residual_relu_bitwise(case, dtype):
    """A plan packs the filters once and applies bias, residual and ReLU per output row: bit
    for bit the ordinary direct forward followed by the same operations."""
    stride, padding = case[7], case[8]
    x, w, b = _inputs(case, dtype, seed=2)
    y0 = F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct")
    res = np.random.default_rng(3).standard_normal(y0.shape).astype(dtype)
    p, out_shape = _conv_plan(x, w, b, DIRECT, padding, residual=res, act=1, stride=stride)
    y = np.empty(out_shape, dtype)
    p.run(np.concatenate([x.reshape(-1), res.reshape(-1)]), y.reshape(-1))
    expected = y0 + res
    assert np.array_equal(y, np.where(expected > 0, expected, dtype(0)))
    p, out_shape = _conv_plan(x, w, None, DIRECT, padding, stride=stride)  # no bias, no epilogue
    y = np.empty(out_shape, dtype)
    p.run(x.reshape(-1), y.reshape(-1))
    assert np.array_equal(y, F.conv2d(x, w, stride=stride, padding=padding, algo="direct"))


# Plain forwards on up to 512 output positions pack each pair of output blocks (16 channels)
# as a thread reaches it, whole pairs to a thread where there are two or more a thread, items
# one at a time with fewer (a pair then packed by every thread that runs part of it); larger
# ones pack all the filters first, as plans do once.
PAIR_BY_PAIR = [
    (1, 40, 7, 7, 130, 3, 3, 1, 1),  # 9 pairs, the last with 2 channels; narrow rows
    (2, 33, 9, 9, 70, 3, 3, 2, 1),  # strided onto 5x5, 5 pairs, part input block
    (1, 24, 8, 30, 100, 1, 1, 1, 0),  # 1x1 flat runs, 7 pairs
    (3, 3, 15, 15, 40, 7, 7, 2, 3),  # rows layout (3 channels), 3 pairs
    (2, 32, 16, 17, 70, 3, 3, 1, 1),  # 544 positions: all packed first
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "case", PAIR_BY_PAIR, ids=["x".join(map(str, c[:7])) + f"/s{c[7]}" for c in PAIR_BY_PAIR]
)
def test_filters_packed_pair_by_pair_give_the_bits_of_filters_packed_once(
    case, dtype, restore_threads
):
    x, w, b = _inputs(case, dtype, seed=5)
    stride, padding = case[7], case[8]
    p, out_shape = _conv_plan(x, w, b, DIRECT, padding, stride=stride)  # packed once
    once = np.empty(out_shape, dtype)
    p.run(x.reshape(-1), once.reshape(-1))
    expected, scale = expected_forward(x, w, b, stride, padding, 1, 1)
    assert_close(once, expected, dtype, scale)
    for threads in (1, 2, 3):
        fastconv.set_num_threads(threads)
        y = F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct")
        assert np.array_equal(y, once)


# Where the batch divides among the threads, each thread copies and runs its own images (all
# output pairs of them), so a step's input and output stay with the thread that wrote them; a
# plain forward's filters are then packed by every thread where they fit the L2 (else the
# pair-by-pair items above). Cases: packed once (over 512 positions), packed as it goes (a small
# plane), a strided 1x1 on its subsampled pixels, and filters too large to pack twice.
IMAGE_SPLIT = [
    (4, 40, 17, 17, 33, 1, 7, 1, 0),  # 1x7, 748 positions: filters packed first
    (4, 24, 7, 7, 40, 3, 3, 1, 1),  # 196 positions: packed pair by pair, or per thread
    (6, 40, 15, 17, 20, 1, 1, 2, 0),  # strided 1x1, 6 images: 3 a thread at 2, none at 4
    (4, 256, 5, 5, 256, 3, 3, 1, 1),  # 2.4 MB of filters (float32): no packing per thread
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "case", IMAGE_SPLIT, ids=["x".join(map(str, c[:7])) + f"/s{c[7]}" for c in IMAGE_SPLIT]
)
def test_images_split_among_the_threads_keep_the_bits(case, dtype, restore_threads):
    x, w, b = _inputs(case, dtype, seed=7)
    stride, padding = case[7], case[8]
    expected, scale = expected_forward(x, w, b, stride, padding, 1, 1)
    fastconv.set_num_threads(1)
    one = F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct")
    assert_close(one, expected, dtype, scale)
    p, out_shape = _conv_plan(x, w, b, DIRECT, padding, stride=stride)
    for threads in (2, 3, 4):
        fastconv.set_num_threads(threads)
        y = F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct")
        assert np.array_equal(y, one), f"{threads} threads"
        prepared = np.empty(out_shape, dtype)
        p.run(x.reshape(-1), prepared.reshape(-1))
        assert np.array_equal(prepared, one), f"prepared, {threads} threads"


# Where a thread's images do not fit half the L2 with a group of outputs' filters, it runs them
# in groups of images (split_images), each group's input copied as it comes. With a described
# L2 of 64 KiB: 8 images of 24 channels at 9x11 (9.3 KiB each blocked, float32) and 256 outputs
# go three and one a group at 2 threads, whole at 4; a 1x1 of 40 channels at 15x17 one by one;
# a 3x3 whose filters fill the budget whole at 2 threads, one by one at 4. The bits are those of
# one thread (the pair-major items, no split) and of the reference's sums, plain and prepared.
GROUPED_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import fastconv
from fastconv import functional as F
from test_inference_native import _conv_plan
out = []
for case, dtype in json.loads(sys.argv[2]):
    n, c, h, w_, k, kh, kw, stride, padding = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((k, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    p, out_shape = _conv_plan(x, w, b, fastconv._core.ALGO_NAMES.index("direct"), padding,
                              stride=stride)
    got = []
    for threads in (1, 2, 4):
        with fastconv.threads(threads):
            got.append(F.conv2d(x, w, b, stride=stride, padding=padding, algo="direct"))
            y = np.empty(out_shape, dtype)
            p.run(x.reshape(-1), y.reshape(-1))
            got.append(y)
    out.append([g.tobytes().hex() for g in got])
print(json.dumps(out))
"""
GROUPED = [
    (8, 24, 9, 11, 256, 1, 1, 1, 0),  # 3 + 1 images a group at 2 threads, whole at 4
    (8, 40, 15, 17, 96, 1, 1, 1, 0),  # 40 KiB an image: one by one
    (8, 24, 9, 11, 64, 3, 3, 1, 1),  # 3x3, 13.5 KiB of filters a group (float32)
    # all the filters past the L2 (plain forwards: each thread packs its groups' first, then
    # runs the batch in groups of images, thread_groups), ones by ones and twos
    (8, 128, 7, 7, 160, 1, 1, 1, 0),
    (8, 64, 7, 7, 288, 1, 1, 1, 0),
]


# (full "1" with the AVX-512 tables: the 32-channel items, the 1x1s among them reading their
# input's own planes, plane_tile32, with no copy to group)
@pytest.mark.parametrize(
    "full",
    [
        "0",
        pytest.param("1", marks=pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="")),
    ],
)
def test_image_groups_of_a_threads_share_keep_the_bits(tmp_path, full):
    caches = described_caches(tmp_path, "64K")
    cases = [(c, dt) for c in GROUPED for dt in ("float32", "float64")]
    isa = "avx512" if full == "1" else fastconv.isa()
    proc = run_isa(
        isa,
        GROUPED_SCRIPT,
        json.dumps(cases),
        FASTCONV_SYSFS_CACHE=caches,
        FASTCONV_FULL_AVX512=full,
    )
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (case, dtype), got in zip(cases, results):
        assert len(set(got)) == 1, f"{case} {dtype}: threads or plan differ"
        rng = np.random.default_rng(11)
        n, c, h, w_, k, kh, kw, stride, padding = case
        x = rng.standard_normal((n, c, h, w_)).astype(dtype)
        w = rng.standard_normal((k, c, kh, kw)).astype(dtype)
        b = rng.standard_normal(k).astype(dtype)
        expected, scale = expected_forward(x, w, b, stride, padding, 1, 1)
        y = np.frombuffer(bytes.fromhex(got[0]), dtype=dtype).reshape(expected.shape)
        assert_close(y, expected, np.dtype(dtype).type, scale)


# Data gradients at unit stride whose transposed convolution runs on the blocked forward (k
# becomes its input channels: 24+, or under 8 in rows; input rows 7+ wide): the packing reads
# the layer's own filters transposed and flipped (pack_block8_flipped: 8 taps at a time through
# the transposes, the rest one by one), with no transposed copy of them all first.
DGRAD = [
    (1, 20, 9, 9, 24, 3, 3, 1, 1),  # whole input blocks, 20 outputs: a part pair
    (2, 33, 11, 13, 30, 3, 3, 1, 1),  # part blocks both ways, two images
    (1, 17, 17, 17, 40, 1, 7, 1, (0, 3)),  # 1x7: 7 taps, all one by one
    (1, 24, 16, 16, 32, 7, 7, 1, 0),  # L4-like, unpadded: 49 taps (6 transposes + 1), pad 6
    (2, 16, 12, 12, 48, 5, 5, 1, 2),  # 5x5: 25 taps (3 transposes + 1)
    (1, 40, 8, 30, 24, 1, 1, 1, 0),  # 1x1
    (1, 20, 9, 9, 4, 7, 7, 1, 3),  # 4 outputs: the transposed input in rows (28 taps a row)
    (4, 24, 14, 14, 32, 3, 3, 1, 1),  # 784 positions: all the filters packed first
    (4, 36, 7, 7, 40, 1, 1, 1, 0),  # a 1x1 at 7x7, 4 images (auto's rule: 2048 channels)
]
DGRAD_IDS = ["x".join(map(str, c[:7])) for c in DGRAD]


def _transposed_forward(dy, w, padding):
    """The data gradient as the forward it is: dy convolved with the filters transposed and
    flipped, padded k - 1 - p (the path direct took before it packed them that way)."""
    kh, kw = w.shape[2:]
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    return F.conv2d(dy, wt, padding=(kh - 1 - ph, kw - 1 - pw), algo="direct")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", DGRAD, ids=DGRAD_IDS)
def test_blocked_data_gradient_packs_the_filters_transposed_and_flipped(
    case, dtype, restore_threads
):
    x, w, _ = _inputs(case, dtype, seed=9)
    padding = case[8]
    dy = (
        np.random.default_rng(10)
        .standard_normal(F.conv2d(x, w, padding=padding).shape)
        .astype(dtype)
    )
    before = [a.copy() for a in (dy, w)]
    needs = (True, False, False)
    (want, _, _), (scale, _, _) = expected_backward(dy, x, w, 1, padding, 1, 1)
    runs = []
    for threads in (1, 2, 3):
        fastconv.set_num_threads(threads)
        runs.append(F.conv2d_backward(dy, x, w, padding=padding, needs=needs, algo="direct")[0])
    assert_close(runs[0], want, dtype, scale, "grad_x")
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    # the same packed values in the same tiles as the forward of a transposed copy: the same bits
    assert np.array_equal(runs[0], _transposed_forward(dy, w, padding))
    for a, a0 in zip((dy, w), before):
        assert np.array_equal(a, a0)  # inputs untouched


DGRAD_BITS = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import fastconv
    from fastconv import functional as F
    from test_direct_blocked import _inputs, _transposed_forward
    same = []
    for case in json.loads(sys.argv[2]):
        padding = case[8] if isinstance(case[8], int) else tuple(case[8])
        x, w, _ = _inputs(case, np.float32, seed=9)
        dy = np.random.default_rng(10).standard_normal(
            F.conv2d(x, w, padding=padding).shape).astype(np.float32)
        dx = F.conv2d_backward(dy, x, w, padding=padding, needs=(True, False, False),
                               algo="direct")[0]
        same.append(bool(np.array_equal(dx, _transposed_forward(dy, w, padding))))
    print(json.dumps({"isa": fastconv.isa(), "same": same}))
    """
)


@pytest.mark.slow  # (a forced-ISA subprocess each)
@pytest.mark.parametrize("isa", [i for i in AVAILABLE_ISAS if i != "generic"])
def test_blocked_data_gradient_packing_on_every_isa(isa):
    # pack_block8_flipped's transposes are compiled per ISA (AVX2 and AVX-512 tables)
    got = run_isa_json(isa, DGRAD_BITS, json.dumps(DGRAD))
    assert got == {"isa": isa, "same": [True] * len(DGRAD)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "case", [DGRAD[0], DGRAD[3], DGRAD[6], DGRAD[8]], ids=["3x3", "7x7", "rows", "1x1"]
)
def test_blocked_data_gradient_non_finite_filters_land_where_im2col_puts_them(case, dtype):
    """An infinite filter tap keeps its pair's products with dy's zero padding (0 x inf: NaN,
    as im2col and PyTorch have); pairs of finite filters leave those rows out, as before."""
    x, w, _ = _inputs(case, dtype, seed=11)
    w[2 % case[4], 1, 0, min(1, case[6] - 1)] = np.inf
    padding = case[8]
    dy = np.random.default_rng(12).standard_normal(F.conv2d(x, w, padding=padding).shape)
    dy = dy.astype(dtype)
    dy[dy > 2] = 0.0  # (keep every sum finite but the infinite tap's)
    needs = (True, False, False)
    got = F.conv2d_backward(dy, x, w, padding=padding, needs=needs, algo="direct")[0]
    want = F.conv2d_backward(dy, x, w, padding=padding, needs=needs, algo="im2col")[0]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert np.allclose(got[finite], want[finite], rtol=tol, atol=tol)


_CHOOSE = (
    "import json, sys\n"
    "from fastconv import _core\n"
    "descs, direction = json.loads(sys.argv[2])\n"
    "print(json.dumps([_core.ALGO_NAMES[_core.conv2d_choose(d, direction)] for d in descs]))"
)


def _choices(isa, descs, direction):
    """auto's algorithm for each descriptor in one direction (0 forward, 1 data gradient, 2
    weight gradient) with FASTCONV_ISA=isa (in a process of its own: the ISA is read at load)."""
    return run_isa_json(isa, _CHOOSE, json.dumps([descs, direction]))


def _data_gradient_choices(isa, descs):
    return _choices(isa, descs, 1)


def test_heuristic_sends_narrow_same_3x3_data_gradients_to_it():
    """At one or two images, rows of 7-9 and 128+ channels each way: direct's data gradient
    (its filters packed transposed and flipped), on every ISA; not with fewer channels, wider
    rows (Winograd), from four images, or unpadded."""

    def desc(n, c, h, k, p=1):
        return [n, c, h, h, k, 3, 3, 1, 1, p, p, 1, 1, 1]

    takes = [desc(1, 512, 7, 512), desc(2, 384, 8, 384), desc(1, 128, 7, 256), desc(1, 448, 8, 384)]
    keeps = [
        desc(1, 96, 9, 96),
        desc(1, 256, 14, 256),
        desc(4, 512, 7, 512),
        desc(1, 384, 9, 384, 0),
    ]
    for isa in AVAILABLE_ISAS:
        got = _data_gradient_choices(isa, takes + keeps)
        if isa == "generic":  # (no blocked tiles there)
            assert "direct" not in got, isa
            continue
        assert got[: len(takes)] == ["direct"] * len(takes), isa
        assert "direct" not in got[len(takes) :], isa


def test_heuristic_sends_strided_and_narrow_3x3_weight_gradients_to_it():
    """3x3/2 weight gradients with 64+ channels each way onto rows 14+ wide (7+ with AVX-512),
    and narrow "same" 3x3 ones where Winograd does not run (one or two images, rows of 7-9, 128+
    channels): direct on every ISA but the generic one; not with 32 channels onto 14-wide rows,
    nor where Winograd runs (4 images)."""

    def desc(n, c, h, k, s=1, p=1):
        return [n, c, h, h, k, 3, 3, s, s, p, p, 1, 1, 1]

    takes = [desc(1, 256, 28, 256, 2), desc(8, 256, 28, 256, 2), desc(1, 384, 35, 384, 2, 0)]
    takes += [desc(1, 96, 35, 96, 2, 0), desc(1, 512, 7, 512), desc(1, 160, 7, 320)]
    onto_7 = [desc(1, 512, 14, 512, 2), desc(8, 512, 14, 512, 2)]
    keeps = [desc(1, 32, 28, 32, 2), desc(4, 512, 7, 512)]
    for isa in AVAILABLE_ISAS:
        got = _choices(isa, takes + onto_7 + keeps, 2)
        if isa == "generic":
            assert "direct" not in got, isa
            continue
        assert got[: len(takes)] == ["direct"] * len(takes), isa
        want_7 = "direct" if isa == "avx512" else "im2col"
        assert got[len(takes) : len(takes) + 2] == [want_7] * 2, isa
        assert got[len(takes) + 2 :] == ["im2col", "winograd"], isa


def test_heuristic_sends_1x1_data_gradients_of_2048_channels_on_small_planes_to_it():
    """2+ images on 7x7 or 8x8 planes (up to 512 positions), 2048 channels on either side:
    direct's data gradient; not at one image, with 1280 channels, at 16 images or on 14x14."""

    def desc(n, c, h, k):
        return [n, c, h, h, k, 1, 1, 1, 1, 0, 0, 1, 1, 1]

    takes = [desc(8, 2048, 7, 512), desc(8, 512, 7, 2048), desc(4, 2048, 8, 320)]
    takes += [desc(2, 2048, 7, 512)]
    keeps = [desc(1, 2048, 7, 512), desc(8, 1280, 8, 384)]
    keeps += [desc(16, 2048, 7, 512), desc(8, 1024, 14, 256)]
    for isa in AVAILABLE_ISAS:
        got = _data_gradient_choices(isa, takes + keeps)
        want = ["direct" if isa != "generic" else "gemm1x1"] * len(takes)
        assert got == want + ["gemm1x1"] * len(keeps), isa


def test_data_gradient_off_the_blocked_tiles_non_finite_filters_land_where_im2col_puts_them():
    """Dilated (the row tiles of a transposed copy) the same: an infinite tap takes the scatter."""
    x, w, _ = _inputs((1, 12, 11, 11, 10, 3, 3, 1, 2), np.float64, seed=13)
    w[3, 4, 2, 0] = -np.inf
    geo = dict(padding=2, dilation=2)
    dy = np.random.default_rng(14).standard_normal(F.conv2d(x, w, **geo).shape)
    dy[0, 3, 4, 4] = 0.0
    needs = (True, False, False)
    got = F.conv2d_backward(dy, x, w, needs=needs, algo="direct", **geo)[0]
    want = F.conv2d_backward(dy, x, w, needs=needs, algo="im2col", **geo)[0]
    assert np.isnan(want).sum() == 1
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-10, atol=1e-10)


def test_non_finite_inputs_land_where_the_reference_puts_them():
    x, w, _ = _inputs(CASES[1], np.float64, seed=4)
    x[0, 3, 5, 6] = np.inf
    x[1, 29, 0, 0] = np.nan  # the last channel of a part block
    x[1, 10, 10, 12] = -np.inf
    y = F.conv2d(x, w, padding=1, algo="direct")
    expected, _ = expected_forward(x, w, None, 1, 1, 1, 1)
    assert np.array_equal(np.isnan(y), np.isnan(expected))
    assert np.array_equal(np.isinf(y), np.isinf(expected))
    finite = np.isfinite(expected)
    assert np.allclose(y[finite], expected[finite], rtol=1e-10, atol=1e-10)


def test_non_finite_inputs_in_rows_land_where_the_reference_puts_them():
    x, w, _ = _inputs(ROWS[0], np.float64, seed=5)
    x[0, 2, 0, 22] = np.inf  # the last channel of a row's last pixel
    x[1, 0, 11, 0] = np.nan
    y = F.conv2d(x, w, stride=2, padding=3, algo="direct")
    expected, _ = expected_forward(x, w, None, 2, 3, 1, 1)
    assert np.array_equal(np.isnan(y), np.isnan(expected))
    assert np.array_equal(np.isinf(y), np.isinf(expected))
    finite = np.isfinite(expected)
    assert np.allclose(y[finite], expected[finite], rtol=1e-10, atol=1e-10)


def test_heuristics_send_wide_forwards_to_it_and_plans_also_narrow_ones():
    """auto: unit stride, 24+ input channels, 10+ wide output rows, where neither Winograd nor
    FFT pays (Inception's 1x7 at 17x17, its 5x5 48>64 at 35x35), and at one or two images rows of
    7-9 under a 3x3 or larger kernel (ResNet's 512-channel 3x3 at 7x7, Inception's 3x3 at 8x8; not
    its 1x3 there). A plan, whose filters are packed once, takes it on 7-wide rows of any kernel
    and on strided layers (a 3x3/2 96 onto 7x7, ResNet's at batch 1 and 8)."""

    def desc(n, c, h, k, kh, kw, s, ph, pw):
        return [n, c, h, h, k, kh, kw, s, s, ph, pw, 1, 1, 1]

    def name(i):
        return _core.ALGO_NAMES[i]

    for d in (desc(1, 128, 17, 128, 1, 7, 1, 0, 3), desc(8, 48, 35, 64, 5, 5, 1, 2, 2)):
        assert name(_core.conv2d_choose(d, 0)) == "direct"
        assert name(_core.conv2d_choose_prepared(d)) == "direct"
    # one or two images on 7-9 wide rows with a 3x3 or larger kernel: its filters packed pair
    # by pair (from four images Winograd takes the 3x3 layers there)
    for n in (1, 2):
        for d in (desc(n, 512, 7, 512, 3, 3, 1, 1, 1), desc(n, 448, 8, 384, 3, 3, 1, 1, 1)):
            assert name(_core.conv2d_choose(d, 0)) == "direct"
    assert name(_core.conv2d_choose(desc(4, 256, 7, 256, 3, 3, 1, 1, 1), 0)) == "winograd"
    d = desc(1, 384, 8, 384, 1, 3, 1, 0, 1)
    assert name(_core.conv2d_choose(d, 0)) == "im2col"
    assert name(_core.conv2d_choose_prepared(d)) == "direct"
    # (a 3x3/2 onto 7x7: test_heuristic_sends_strided_forwards_to_it)
    assert name(_core.conv2d_choose_prepared(desc(1, 96, 14, 96, 3, 3, 2, 1, 1))) == "direct"
    assert name(_core.conv2d_choose(desc(8, 512, 7, 512, 3, 3, 1, 1, 1), 0)) == "winograd"
    b8 = desc(8, 128, 56, 128, 3, 3, 2, 1, 1)  # (strided at any batch: the strided test)
    assert name(_core.conv2d_choose_prepared(b8)) == "direct"


def test_plans_send_one_image_1x1_onto_small_planes_with_many_outputs_to_it():
    """Filters packed once: a 1x1 of one image onto a 7x7 plane from 128 outputs (ResNet-50's
    2048>512 and 512>2048, GoogLeNet's 832>128) or a 14x14 to 28x28 one from 256 (1024>512,
    128>512), and a strided 1x1 of one or two images onto 14x14 or smaller (ResNet's
    downsampling 512>1024, 1024>2048); gemm1x1 with fewer outputs, larger planes or padding.
    auto, which packs per call, keeps gemm1x1 for the unit-stride ones of one image (the batch
    rule is the next test's) and takes direct for a strided one of one or two images with up to
    512 input channels (ResNet's 256>512 onto 28x28, not its 1024>2048), at any size."""

    def desc(n, c, h, k, s=1, p=0):
        return [n, c, h, h, k, 1, 1, s, s, p, p, 1, 1, 1]

    def prepared(d):
        return _core.ALGO_NAMES[_core.conv2d_choose_prepared(d)]

    # (n, c, h, k[, stride, padding])
    taken = [(1, 2048, 7, 512), (1, 512, 7, 2048), (1, 832, 7, 128), (1, 1024, 14, 512)]
    taken += [(1, 128, 28, 512), (1, 512, 28, 256)]
    taken += [
        (1, 528, 14, 256),
        (1, 512, 28, 1024, 2),
        (2, 1024, 14, 2048, 2),
        (1, 128, 28, 256, 2),
    ]
    left = [(1, 832, 7, 48), (1, 512, 14, 160), (16, 2048, 7, 512), (1, 256, 28, 128)]
    left += [(1, 256, 56, 512, 2), (8, 512, 28, 1024, 2), (1, 512, 7, 512, 1, 1)]
    left += [(1, 64, 56, 256), (1, 512, 28, 128), (2, 128, 28, 512)]
    for args in taken:
        assert prepared(desc(*args)) == "direct", args
        strided_plain = len(args) > 4 and args[4] > 1 and args[1] <= 512
        want = "direct" if strided_plain else "gemm1x1"
        assert _core.ALGO_NAMES[_core.conv2d_choose(desc(*args), 0)] == want, args
    plain = {a: _core.ALGO_NAMES[_core.conv2d_choose(desc(*a), 0)] for a in taken + left}
    assert plain[(1, 256, 56, 512, 2)] == "direct"  # onto 28x28: plain only
    assert plain[(2, 1024, 14, 2048, 2)] == "gemm1x1"  # 1024 input channels
    assert plain[(8, 512, 28, 1024, 2)] == "gemm1x1"  # eight images
    for args in left:
        assert prepared(desc(*args)) != "direct", args


def test_heuristics_send_1x1_of_a_few_images_onto_7x7_planes_with_512_outputs_to_it():
    """From two images, plain and planned: a 1x1 forward onto 7x7 planes under 512 positions
    in all with 512+ outputs (ResNet-50's 2048>512 and 512>2048 at 2 and 8 images); not with
    fewer outputs (GoogLeNet's 832>384), not onto 8x8 (Inception v3's 2048>384), not from 512
    positions (ResNet-50's at 16 images); their weight gradients stay on gemm1x1, their data
    gradients from two images with 2048 channels go to direct (the test below)."""

    def desc(n, c, h, k):
        return [n, c, h, h, k, 1, 1, 1, 1, 0, 0, 1, 1, 1]

    def names(d):
        return (
            _core.ALGO_NAMES[_core.conv2d_choose(d, 0)],
            _core.ALGO_NAMES[_core.conv2d_choose_prepared(d)],
        )

    for args in [(8, 2048, 7, 512), (8, 512, 7, 2048), (2, 512, 7, 2048), (10, 1024, 7, 512)]:
        assert names(desc(*args)) == ("direct", "direct"), args
        assert _core.ALGO_NAMES[_core.conv2d_choose(desc(*args), 2)] == "gemm1x1"
    for args in [(8, 832, 7, 384), (4, 2048, 8, 384), (16, 2048, 7, 512), (11, 512, 7, 2048)]:
        assert names(desc(*args)) == ("gemm1x1", "gemm1x1"), args


# c, h, k, padding (3x3/2 onto 7-8 wide rows) and AVX2's choice: direct up to 256x256 filters
_NARROW = [
    (512, 14, 512, 1, "im2col"),
    (256, 14, 512, 1, "im2col"),
    (192, 17, 320, 0, "direct"),
    (96, 14, 96, 1, "direct"),
]


def test_heuristic_sends_strided_forwards_to_it():
    """auto, packing the filters per call: a strided forward with 64-512 input channels at any
    batch (its tiles prefetch the next channel block), onto narrow rows (7-9 wide) at one or
    two images too (ResNet's 3x3/2 512 onto 7x7, Inception v3's 192>320 onto 8x8) with AVX2 or
    AVX-512; on the generic table only under filters of up to 256x256 channels there (each ISA
    this CPU runs checked in a process of its own); not with 768 input channels, nor with 32."""

    def desc(n, c, h, k, s, p):
        return [n, c, h, h, k, 3, 3, s, s, p, p, 1, 1, 1]

    def name(d):
        return _core.ALGO_NAMES[_core.conv2d_choose(d, 0)]

    assert name(desc(1, 384, 35, 384, 2, 0)) == "direct"
    assert name(desc(2, 384, 35, 384, 2, 0)) == "direct"
    assert name(desc(8, 384, 35, 384, 2, 0)) == "direct"
    assert name(desc(1, 256, 24, 512, 2, 1)) == "direct"
    assert name(desc(8, 128, 56, 128, 2, 1)) == "direct"
    assert name(desc(8, 64, 112, 64, 2, 1)) == "direct"
    assert name(desc(16, 256, 28, 256, 2, 1)) == "direct"
    assert name(desc(8, 512, 14, 512, 2, 1)) == "direct"  # narrow rows, 8 images
    assert name(desc(4, 512, 14, 512, 2, 1)) == "direct"
    narrow = [desc(n, c, h, k, 2, p) for n in (1, 2) for c, h, k, p, _ in _NARROW]  # 1-2 images
    script = (
        "import json, sys\nfrom fastconv import _core\n"
        "print(json.dumps([_core.ALGO_NAMES[_core.conv2d_choose(d, 0)]"
        " for d in json.loads(sys.argv[2])]))"
    )
    for isa in AVAILABLE_ISAS:  # (each in a process of its own: the ISA is read at load)
        want = [("direct" if isa != "generic" else w) for n in (1, 2) for *_, w in _NARROW]
        assert run_isa_json(isa, script, json.dumps(narrow)) == want, isa
    assert name(desc(2, 768, 17, 768, 2, 0)) == "im2col"
    assert name(desc(8, 768, 35, 768, 2, 0)) == "im2col"
    assert name(desc(1, 32, 28, 128, 2, 1)) == "im2col"
    # a plan (its filters packed once) takes all of them
    for d in (
        desc(1, 512, 14, 512, 2, 1),
        desc(8, 128, 56, 128, 2, 1),
        desc(2, 192, 17, 320, 2, 0),
    ):
        assert _core.ALGO_NAMES[_core.conv2d_choose_prepared(d)] == "direct"
    # (the data gradient keeps im2col; the weight gradient: the test after the next)
    d = desc(1, 384, 35, 384, 2, 0)
    assert _core.ALGO_NAMES[_core.conv2d_choose(d, 1)] == "im2col"


def test_heuristics_send_few_channel_stems_with_long_rows_of_taps_to_it():
    """In rows: AlexNet's 11x11/4 at 1 and 8 images, plain and planned; not the 7x7/2 stem nor
    Inception v3's 3x3/2 on 3 channels (147 and 27 terms: im2col's implicit columns,
    test_im2col_paths.py), nor the data gradient; the weight gradient only on AVX-512 (below)."""

    def desc(n, c, h, k, kh, s, p):
        return [n, c, h, h, k, kh, kh, s, s, p, p, 1, 1, 1]

    def name(i):
        return _core.ALGO_NAMES[i]

    for n in (1, 8):
        d = desc(n, 3, 224, 64, 11, 4, 2)
        assert name(_core.conv2d_choose(d, 0)) == "direct"
        assert name(_core.conv2d_choose_prepared(d)) == "direct"
        assert name(_core.conv2d_choose(d, 1)) != "direct"
        assert (name(_core.conv2d_choose(d, 2)) == "direct") == (fastconv.isa() == "avx512")
        for d in (desc(n, 3, 224, 64, 7, 2, 3), desc(n, 3, 299, 32, 3, 2, 0)):
            assert name(_core.conv2d_choose(d, 0)) == "im2col"
            assert name(_core.conv2d_choose_prepared(d)) == "im2col"


def test_heuristics_send_few_channel_weight_gradients_of_large_kernels_to_it_on_avx512():
    """AVX-512's weight gradient tiles over (channel, tap column) pairs: under 8 input channels,
    a 5x5 or larger kernel and 16+ outputs go to direct (the 7x7/2 stem, AlexNet's 11x11/4, a
    5x5 3>32); 3x3 kernels and under 16 outputs (LeNet's C1) do not. Elsewhere im2col or FFT."""

    def choose(n, c, h, k, kh, s, p):
        return _core.ALGO_NAMES[
            _core.conv2d_choose([n, c, h, h, k, kh, kh, s, s, p, p, 1, 1, 1], 2)
        ]

    avx512 = fastconv.isa() == "avx512"
    for n in (1, 8):
        for shape in ((3, 224, 64, 7, 2, 3), (3, 224, 64, 11, 4, 2), (3, 32, 32, 5, 1, 2)):
            assert (choose(n, *shape) == "direct") == avx512, shape
        assert choose(n, 1, 32, 6, 5, 1, 0) != "direct"


def test_heuristic_sends_few_channel_3x3_weight_gradients_along_dy_rows():
    """3x3 kernels on under 8 input channels onto 16+ outputs (VGG's 3>64, Inception v3's
    3x3/2 3>32) go to direct's sums along dy's rows: with the AVX-512 tables at any batch, with
    AVX2's from 4 images, not with the generic ones (api.cpp, direct_rows_weight_grad_pays);
    not under 16 outputs."""

    def choose(n, c, h, k, kh, s, p):
        return _core.ALGO_NAMES[
            _core.conv2d_choose([n, c, h, h, k, kh, kh, s, s, p, p, 1, 1, 1], 2)
        ]

    isa = fastconv.isa()
    for n in (1, 2, 4, 8):
        for shape in ((3, 224, 64, 3, 1, 1), (3, 299, 32, 3, 2, 0), (7, 56, 16, 3, 1, 1)):
            want = isa == "avx512" or (isa == "avx2" and n >= 4)
            assert (choose(n, *shape) == "direct") == want, (n, shape)
        assert choose(n, 3, 224, 8, 3, 1, 1) != "direct"
    # (a 5x5 with the AVX2 tables stays where it was)
    if isa == "avx2":
        assert choose(8, 3, 32, 32, 5, 1, 2) != "direct"


# --- the weight gradient of under 8 input channels along dy's rows ------------------------------

# (n, c, h, w, k, kh, kw, stride, padding): 3x3 or smaller kernels, or one or two channels, sum
# along dy's rows with every table (direct_weight_grad_rows_applies). Rows of 7 (all one part
# vector), 37 and 65 (full vectors and a part one), 64 (whole vectors); output channels that
# leave a part group of rows_kt (5, 9, 33); strides 1 and 2 each way, 2x2/2 (no column shift);
# planes tall enough for several blocks of output rows; 1, 2, 3 and 5 images.
ROWS_WGRAD = [
    (3, 3, 19, 23, 5, 3, 3, 2, 0),  # Inception v3's first layer, smaller: stride 2, a part row
    (2, 1, 13, 40, 9, 5, 3, 1, 1),  # one channel, 5x3
    (1, 2, 40, 37, 33, 7, 7, 1, 3),  # two channels, 7x7, 33 outputs
    (2, 7, 16, 64, 20, 3, 3, 1, 1),  # 7 channels, whole vectors
    (1, 3, 9, 9, 16, 3, 3, 1, 0),  # 7-wide rows: only the part vector
    (5, 4, 12, 12, 16, 2, 2, 2, 0),  # 2x2/2
    (2, 3, 64, 130, 40, 3, 3, 2, 1),  # 32 output rows of 65: several blocks
    (2, 3, 21, 30, 12, 3, 3, (2, 1), (0, 1)),  # stride 2 down, 1 across
]
ROWS_WGRAD_IDS = ["x".join(map(str, c[:7])) + f"/s{c[7]}" for c in ROWS_WGRAD]


@pytest.mark.parametrize("case", ROWS_WGRAD, ids=ROWS_WGRAD_IDS)
def test_weight_gradient_along_dy_rows_is_each_images_sums_in_image_order(case, restore_threads):
    """Items are (image, run of output channels), the runs cut by the thread count: the bits
    stay those of one thread, and a batch's dW is its images' own dWs added in image order."""
    x, w, dy = _wgrad_inputs(case, np.float32, seed=12)
    runs = _weight_grad_at_thread_counts(x, w, dy, case)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    total = _weight_grad(x[:1], w, dy[:1], case)
    for i in range(1, x.shape[0]):
        total = total + _weight_grad(x[i : i + 1], w, dy[i : i + 1], case)
    assert np.array_equal(runs[0], total)


def test_weight_gradient_along_dy_rows_non_finite_inputs_land_where_the_reference_puts_them():
    """A NaN or infinity leaves its sums non-finite and the call runs again on the blocked
    tiles: where the reference puts them, wherever they are (a value read by the part vector's
    zero-weighted lanes only, one read by no product at all, in dy)."""
    case = (2, 3, 20, 24, 5, 3, 3, 2, 0)  # 9 x 11 outputs: rows 0-18, columns 0-22 read
    for where in ("x", "x_lanes", "x_unread", "dy"):
        x, w, dy = _wgrad_inputs(case, np.float64, seed=13)
        if where == "x":
            x[1, 2, 4, 6] = np.inf
            x[0, 0, 0, 0] = np.nan
        elif where == "x_lanes":
            x[0, 1, 3, 23] = np.inf  # column 23: only output column 11's lane (zero dy) reads it
        elif where == "x_unread":
            x[1, 0, 19, 5] = np.nan  # row 19: no window reaches it
        else:
            dy[1, 4, 2, 3] = -np.inf
        dw = _weight_grad(x, w, dy, case)
        (_, expected, _), _ = expected_backward(dy, x, w, case[7], case[8], 1, 1)
        assert np.array_equal(np.isnan(dw), np.isnan(expected)), where
        assert np.array_equal(np.isinf(dw), np.isinf(expected)), where
        finite = np.isfinite(expected)
        assert np.allclose(dw[finite], expected[finite], rtol=1e-10, atol=1e-10), where


ROWS_ON_ISA = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import fastconv
    from conftest import expected_backward
    from test_direct_blocked import ROWS_WGRAD, _wgrad_inputs, _weight_grad
    worst = 0.0
    for case in ROWS_WGRAD:
        case = [tuple(v) if isinstance(v, list) else v for v in case]
        for dtype in (np.float32, np.float64):
            x, w, dy = _wgrad_inputs(case, dtype, seed=14)
            dw = _weight_grad(x, w, dy, case)
            (_, expected, _), (_, scale, _) = expected_backward(dy, x, w, case[7], case[8], 1, 1)
            tol = 1e-4 if dtype == np.float32 else 1e-10
            worst = max(worst, float(np.max(np.abs(dw - expected) / (tol * (scale + 1e-30)))))
    print(json.dumps({"isa": fastconv.isa(), "worst": worst}))
    """
)


@pytest.mark.slow  # (a forced-ISA subprocess each)
@pytest.mark.parametrize("isa", [i for i in AVAILABLE_ISAS if i != fastconv.isa()])
def test_weight_gradient_along_dy_rows_on_every_isa(isa):
    # dot_rows is compiled per ISA (tiles of 4 rows of dy with 32 vector registers, else 2)
    got = run_isa_json(isa, ROWS_ON_ISA)
    assert got["isa"] == isa
    assert got["worst"] <= 1.0


# --- the weight gradient on the blocked tiles ---------------------------------------------------

# (n, c, h, w, k, kh, kw, stride, padding): one group, no dilation. Input channels not a multiple
# of the tile's width (6 on AVX2, 12 on AVX-512, 3 generic), output channels not of 16, strides
# 1-3 (column phases), asymmetric padding and non-square kernels and planes, one image and one
# channel, narrow rows.
WGRAD = [
    (2, 48, 13, 13, 64, 5, 5, 1, 2),  # Inception v3's 5x5 48>64, smaller
    (1, 16, 9, 9, 17, 3, 3, 1, 0),  # 17 outputs: a pair of blocks of 16 and 1
    (3, 7, 11, 13, 5, 3, 5, 2, (1, 2)),  # stride 2, 5 outputs, 7 channels
    (2, 3, 20, 19, 40, 7, 7, 2, (3, 2)),  # a stem on 3 channels
    (2, 13, 17, 17, 33, 1, 7, 1, (0, 3)),  # 1x7
    (1, 25, 23, 19, 17, 3, 5, 3, 2),  # stride 3
    (1, 1, 5, 5, 1, 5, 5, 1, 2),  # one channel, one output
    (4, 50, 12, 12, 70, 5, 5, 1, 2),  # 4 images
    (2, 20, 6, 30, 24, 1, 1, 1, 0),  # 1x1 (auto takes gemm1x1; direct forced here)
    (1, 32, 7, 7, 48, 3, 3, 1, 1),  # 7-wide rows
    # under 8 channels on AVX-512: tiles of (channel, tap column) pairs, 33 in 3 tiles, 15 in 2
    (1, 3, 30, 30, 20, 11, 11, 4, 2),
    (2, 3, 20, 22, 96, 11, 11, 1, 1),  # 3 items of 32 channels x 11 rows x 3 tiles (L1's)
    (2, 5, 12, 12, 16, 3, 3, 1, 1),
]
WGRAD_IDS = ["x".join(map(str, c[:7])) + f"/s{c[7]}" for c in WGRAD]


def _weight_grad(x, w, dy, case):
    return F.conv2d_backward(
        dy, x, w, stride=case[7], padding=case[8], needs=(False, True, False), algo="direct"
    )[1]


def _weight_grad_at_thread_counts(x, w, dy, case):
    runs = []
    for threads in (1, 2, 3, 7):
        fastconv.set_num_threads(threads)
        runs.append(_weight_grad(x, w, dy, case))
    return runs


def _wgrad_inputs(case, dtype, seed):
    x, w, _ = _inputs(case, dtype, seed)
    y = F.conv2d(x, w, stride=case[7], padding=case[8], algo="im2col")
    dy = np.random.default_rng(seed + 100).standard_normal(y.shape).astype(dtype)
    return x, w, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", WGRAD + ROWS_WGRAD, ids=WGRAD_IDS + ROWS_WGRAD_IDS)
def test_weight_gradient_against_reference(case, dtype):
    # (the blocked tiles' cases, then those summed along dy's rows)
    x, w, dy = _wgrad_inputs(case, dtype, seed=6)
    before = [a.copy() for a in (x, w, dy)]
    dw = _weight_grad(x, w, dy, case)
    (_, expected, _), (_, scale, _) = expected_backward(dy, x, w, case[7], case[8], 1, 1)
    assert_close(dw, expected, dtype, scale, "grad_weight")
    for a, a0 in zip((x, w, dy), before):
        assert np.array_equal(a, a0)  # inputs untouched


@pytest.mark.parametrize("case", WGRAD, ids=WGRAD_IDS)
def test_blocked_weight_gradient_bits_follow_the_shape_not_the_threads(case, restore_threads):
    """Each thread takes a fixed run of the (output pair, channel group) items and copies the
    input of the groups it starts: at 3 and 7 threads the runs split groups between threads (the
    other reads that copy), at 7 some own no group; the bits stay those of one thread."""
    x, w, dy = _wgrad_inputs(case, np.float32, seed=7)
    runs = _weight_grad_at_thread_counts(x, w, dy, case)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


FEW_CHANNEL_BITS = textwrap.dedent(r"""
    import hashlib, json, sys
    import numpy as np
    import fastconv
    from fastconv import functional as F
    cases = json.loads(sys.argv[2])
    out = []
    for n, c, h, w, k, kh, kw, stride, padding in cases:
        rng = np.random.default_rng(5)
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        wt = rng.standard_normal((k, c, kh, kw)).astype(np.float32)
        dy = rng.standard_normal(F.conv2d(x, wt, stride=stride, padding=padding).shape)
        dw = F.conv2d_backward(dy.astype(np.float32), x, wt, stride=stride, padding=padding,
                               needs=(False, True, False), algo="direct")[1]
        out.append(hashlib.sha256(dw.tobytes()).hexdigest())
    print(json.dumps({"isa": fastconv.isa(), "hashes": out}))
""")


@pytest.mark.slow  # (two forced-ISA subprocesses)
@pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="needs an AVX-512 CPU")
def test_few_channel_weight_gradient_tiles_give_the_channel_tiles_bits():
    # AVX-512's tiles over (channel, tap column) pairs against AVX2's tiles of channels: every
    # dW value the same sum in the same order, so the same bits (the few-channel cases that stay
    # on the tiles with both tables: 3 or more channels and kernels over 3x3, rows of dy too
    # short to fill vectors better; the others go along dy's rows, whose lanes follow the ISA)
    few = [c for c in WGRAD if 2 < c[1] < 8 and c[5] * c[6] > 9]
    assert len(few) == 4
    runs = [run_isa_json(isa, FEW_CHANNEL_BITS, json.dumps(few)) for isa in ("avx2", "avx512")]
    assert [r["isa"] for r in runs] == ["avx2", "avx512"]
    assert runs[0]["hashes"] == runs[1]["hashes"]


def test_blocked_weight_gradient_non_finite_inputs_land_where_the_reference_puts_them():
    case = WGRAD[2]  # strided: the column phases
    x, w, dy = _wgrad_inputs(case, np.float64, seed=8)
    x[0, 6, 0, 12] = np.inf  # the last channel, a row's last column
    x[2, 0, 5, 0] = np.nan
    dy[1, 4, 2, 3] = -np.inf  # the last output channel
    dw = _weight_grad(x, w, dy, case)
    (_, expected, _), _ = expected_backward(dy, x, w, case[7], case[8], 1, 1)
    assert np.array_equal(np.isnan(dw), np.isnan(expected))
    assert np.array_equal(np.isinf(dw), np.isinf(expected))
    finite = np.isfinite(expected)
    assert np.allclose(dw[finite], expected[finite], rtol=1e-10, atol=1e-10)


def test_blocked_weight_gradient_in_a_training_step_matches_im2col():
    """conv2d_backward with auto on a layer whose weight gradient direct takes (Inception v3's
    5x5 48>64, smaller plane): within the contract of im2col's, every gradient."""
    x, w, dy = _wgrad_inputs((2, 48, 14, 14, 64, 5, 5, 1, 2), np.float32, seed=9)
    assert fastconv.algorithms(x.shape, w.shape, 1, 2, direction="backward_weight")[0] == "direct"
    got = F.conv2d_backward(dy, x, w, padding=2)
    want = F.conv2d_backward(dy, x, w, padding=2, algo="im2col")
    _, scale = expected_backward(dy, x, w, 1, 2, 1, 1)
    for g, e, sc, name in zip(got, want, scale, ("grad_x", "grad_weight", "grad_bias")):
        assert_close(g, e.astype(np.float64), np.float32, sc, name)


@pytest.mark.parametrize(
    "case",
    [
        (2, 24, 10, 17, 16, 7, 1, 1, (3, 0)),  # (rows 12+ wide: one output row a run)
        (1, 32, 17, 17, 16, 3, 3, 1, 1),
        (1, 3, 30, 30, 40, 7, 7, 2, 3),
    ],
    ids=["7x1", "3x3", "rows"],
)
def test_non_finite_filters_and_gradients_keep_the_products_with_the_padding(case):
    """Window rows in the padding are left out of the sums (their products are 0), but not
    where a filter tap (forward, plain and planned) or dy (weight gradient) is infinite: there
    0 x inf is NaN, where im2col and PyTorch put it."""
    stride, padding = case[7], case[8]
    x, w, _ = _inputs(case, np.float64, seed=6)
    w[1, 2 % case[1], 0, 0] = np.inf
    geo = dict(stride=stride, padding=padding)
    y = F.conv2d(x, w, algo="direct", **geo)
    want = F.conv2d(x, w, algo="im2col", **geo)
    assert np.isnan(want).any()
    assert np.array_equal(np.isnan(y), np.isnan(want))
    finite = np.isfinite(want)
    assert np.allclose(y[finite], want[finite], rtol=1e-10, atol=1e-10)
    if isinstance(padding, int):  # (the one-step plan takes a square padding)
        p, out_shape = _conv_plan(x, w, None, DIRECT, padding, stride=stride)
        planned = np.empty(out_shape)
        p.run(x.reshape(-1), planned.reshape(-1))
        assert np.array_equal(np.isnan(planned), np.isnan(want))
    x, w, _ = _inputs(case, np.float64, seed=7)
    dy = np.random.default_rng(8).standard_normal(want.shape)
    dy[0, 1, 0, 0] = np.inf
    needs = (False, True, False)
    dw = F.conv2d_backward(dy, x, w, needs=needs, algo="direct", **geo)[1]
    want_dw = F.conv2d_backward(dy, x, w, needs=needs, algo="im2col", **geo)[1]
    assert np.array_equal(np.isnan(dw), np.isnan(want_dw))


# The 32-channel tile (blocked_tile32: two pairs of output blocks an item, each input value
# broadcast once into two multiply-adds, the four blocks' filters packed joined; a plan's
# prefetched ahead), taken where 512-bit multiply-adds run at full rate
# with the AVX-512 tables (hw.h, wide_avx512; conftest pins the half rate for the suite). The
# same sums in the same order as the 16-channel tile: the same bits. Cases: output channels
# that leave a part group (20: one group of 17-32; 33 and 130: groups and a last lone pair),
# unit stride and stride 2, padded rows (window rows in the padding left out), a 1x1's flat
# runs and its subsampled strided copy, narrow rows (which keep the 16-channel tiles), filters
# packed as the threads go (small planes) and once (a plan, with bias, residual and ReLU, which
# its 32-channel tiles add before they store, TileEpilogue; the bias alone; ReLU keeping NaN),
# images split among the threads, the data gradient (filters transposed and flipped); and the
# weight gradient's 32-channel tile (wgrad_tile32).
WIDE = [
    (1, 24, 9, 9, 20, 3, 3, 1, 1),
    (2, 30, 11, 13, 33, 3, 3, 1, 1),
    (1, 33, 15, 15, 130, 3, 3, 2, 1),
    (1, 40, 17, 17, 48, 1, 7, 1, (0, 3)),
    (2, 27, 9, 11, 130, 1, 1, 1, 0),
    (2, 40, 7, 7, 48, 1, 1, 1, 0),  # a 1x1 data gradient's 32 channels of rows copied whole,
    (2, 72, 17, 17, 48, 1, 1, 1, 0),  # as it goes and (578 positions) all packed first
    (4, 40, 8, 8, 130, 1, 1, 1, 0),  # a plan's 1x1 of 2-8 images on 8x8 planes
    # 1x1s whose tiles read the input's own planes (plane_tile32: outputs in whole groups of 32,
    # inputs whole blocks of 8, planes up to 14x14): the forward, the data gradient (dy's planes),
    # both, the images split among the threads or not
    (2, 40, 7, 7, 64, 1, 1, 1, 0),
    (3, 64, 5, 9, 40, 1, 1, 1, 0),
    (4, 96, 12, 12, 96, 1, 1, 1, 0),
    (2, 32, 21, 23, 64, 1, 1, 1, 0),  # 483 positions (planes up to 28x28, each tile prefetching)
    (1, 64, 28, 28, 70, 1, 1, 2, 0),
    (3, 25, 11, 7, 33, 3, 3, 1, 1),
    (4, 24, 7, 7, 40, 3, 3, 1, 1),
    (1, 72, 14, 30, 64, 3, 3, 1, 1),
    # under 8 input channels (the weight gradient by (channel, tap column) pairs)
    (2, 3, 23, 23, 40, 7, 7, 2, 3),
    (1, 3, 19, 21, 32, 3, 3, 2, 0),
    # rows of dy over 1000 wide: the weight gradient's blocks of 4 rows (512 KB of 32 channels)
    (1, 3, 9, 1010, 40, 5, 11, 1, 2),
    (2, 3, 9, 1010, 36, 5, 11, 2, 0),
]

WIDE_RUNS = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import fastconv
    from fastconv import functional as F
    from test_direct_blocked import DIRECT, _conv_plan, _inputs
    out = {}
    for i, case in enumerate(json.loads(sys.argv[2])):
        stride = case[7]
        padding = case[8] if isinstance(case[8], int) else tuple(case[8])
        x, w, b = _inputs(case, np.float32, seed=11)
        for threads in (1, 2, 3):
            fastconv.set_num_threads(threads)
            out[f"{i}/fwd/{threads}"] = F.conv2d(x, w, b, stride=stride, padding=padding,
                                                 algo="direct")
        fastconv.set_num_threads(2)
        y = out[f"{i}/fwd/2"]
        dy = np.random.default_rng(12).standard_normal(y.shape).astype(np.float32)
        out[f"{i}/dx"] = F.conv2d_backward(dy, x, w, stride=stride, padding=padding,
                                           needs=(True, False, False), algo="direct")[0]
        for threads in (1, 3):
            fastconv.set_num_threads(threads)
            out[f"{i}/dw/{threads}"] = F.conv2d_backward(
                dy, x, w, stride=stride, padding=padding, needs=(False, True, False),
                algo="direct")[1]
        fastconv.set_num_threads(2)
        if isinstance(padding, int):
            p, shape = _conv_plan(x, w, b, DIRECT, padding, residual=dy, act=1, stride=stride)
            yp = np.empty(shape, np.float32)
            p.run(np.concatenate([x.reshape(-1), dy.reshape(-1)]), yp.reshape(-1))
            out[f"{i}/plan"] = yp
            # (the bias alone; and ReLU where a NaN input meets it, which it keeps)
            p, shape = _conv_plan(x, w, b, DIRECT, padding, stride=stride)
            yp = np.empty(shape, np.float32)
            p.run(x.reshape(-1), yp.reshape(-1))
            out[f"{i}/plan_bias"] = yp
            xn = x.copy()
            xn[0, 0, 0, 0] = np.nan
            p, shape = _conv_plan(xn, w, b, DIRECT, padding, act=1, stride=stride)
            yp = np.empty(shape, np.float32)
            p.run(xn.reshape(-1), yp.reshape(-1))
            out[f"{i}/plan_nan"] = yp
            out[f"{i}/fwd_nan"] = F.conv2d(xn, w, b, stride=stride, padding=padding,
                                           algo="direct")
        if sys.argv[4:] == ["edges"]:  # (the input padded beforehand; a non-finite first tap)
            ph, pw = (padding, padding) if isinstance(padding, int) else padding
            xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
            out[f"{i}/padded"] = F.conv2d(xp, w, b, stride=stride, padding=0, algo="direct")
            for bad in (np.inf, np.nan):
                wb = w.copy()
                wb[1, 2, case[5] // 2, 0] = bad
                out[f"{i}/fwd/{bad}"] = F.conv2d(x, wb, b, stride=stride, padding=padding,
                                                 algo="direct")
    np.savez(sys.argv[3], **out)
    hw = fastconv.hardware()
    print(json.dumps([fastconv.isa(), hw["full_avx512"]]))
    """
)


@pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="needs an AVX-512 CPU")
def test_the_32_channel_tiles_give_the_16_channel_tiles_bits(tmp_path):
    runs = {}
    for full in ("1", "0"):
        path = tmp_path / f"full{full}.npz"
        got = run_isa_json("avx512", WIDE_RUNS, json.dumps(WIDE), path, FASTCONV_FULL_AVX512=full)
        assert got == ["avx512", full == "1"]
        with np.load(path) as f:
            runs[full] = dict(f)
    wide, narrow = runs["1"], runs["0"]
    assert sorted(wide) == sorted(narrow)
    for key in wide:
        assert np.array_equal(wide[key], narrow[key], equal_nan=True), key
    for i, case in enumerate(WIDE):
        x, w, b = _inputs(case, np.float32, seed=11)
        expected, scale = expected_forward(x, w, b, case[7], case[8], 1, 1)
        assert_close(wide[f"{i}/fwd/1"], expected, np.float32, scale)
        dy = np.random.default_rng(12).standard_normal(expected.shape).astype(np.float32)
        (want, want_w, _), (sdx, sdw, _) = expected_backward(dy, x, w, case[7], case[8], 1, 1)
        assert_close(wide[f"{i}/dx"], want, np.float32, sdx, "grad_x")
        assert_close(wide[f"{i}/dw/1"], want_w, np.float32, sdw, "grad_w")
        assert np.array_equal(wide[f"{i}/dw/3"], wide[f"{i}/dw/1"])
        for threads in (2, 3):
            assert np.array_equal(wide[f"{i}/fwd/{threads}"], wide[f"{i}/fwd/1"])
        if f"{i}/plan" in wide:
            z = wide[f"{i}/fwd/1"] + dy
            assert np.array_equal(wide[f"{i}/plan"], np.where(z > 0, z, np.float32(0)))
            assert np.array_equal(wide[f"{i}/plan_bias"], wide[f"{i}/fwd/1"])
            z = wide[f"{i}/fwd_nan"]
            want = np.where((z > 0) | np.isnan(z), z, np.float32(0))
            assert np.array_equal(wide[f"{i}/plan_nan"], want, equal_nan=True)
            assert np.isnan(want).any()


# Tiles at a row's ends whose taps reach into the padding leave those products of zeros out, tap
# column by tap column (ukernels_impl.inc, for_positions): the same bits as the same convolution
# of the input padded beforehand (no padding left to skip), on every instruction set. A 9x9's data
# gradient (a full convolution: 8 columns of padding each side of a 12-wide dy), 3x3s whose tile
# spans a 7-wide row (both ends in one tile), a 1x7, a strided 5x5 (every second column; its data
# gradient on phases), padding of 5 for a 7x7 (past half the kernel).
EDGE = [
    (1, 16, 12, 12, 40, 9, 9, 1, 0),
    (2, 24, 7, 7, 36, 3, 3, 1, 1),
    (1, 16, 17, 17, 40, 1, 7, 1, (0, 3)),
    (1, 16, 11, 13, 40, 5, 5, 2, 2),
    (1, 20, 6, 30, 48, 7, 7, 1, 5),
]


def test_tiles_at_row_ends_leave_the_paddings_products_out_with_the_same_bits(tmp_path):
    runs = {}
    wide = [("avx512", "1")] if "avx512" in AVAILABLE_ISAS else []
    for isa, full in [(isa, "0") for isa in AVAILABLE_ISAS] + wide:
        path = tmp_path / f"{isa}{full}.npz"
        got = run_isa_json(
            isa, WIDE_RUNS, json.dumps(EDGE), path, "edges", FASTCONV_FULL_AVX512=full
        )
        assert got == [isa, full == "1"]
        with np.load(path) as f:
            runs[isa + full] = dict(f)
    for name, run in runs.items():  # (padded beforehand: every product summed)
        for i in range(len(EDGE)):
            assert np.array_equal(run[f"{i}/fwd/1"], run[f"{i}/padded"]), (name, i)
    sums = runs["avx20"] if "avx2" in AVAILABLE_ISAS else runs["generic0"]
    for name in [n for n in runs if n.startswith("avx512")]:  # (the same multiply-adds as AVX2's)
        assert sorted(runs[name]) == sorted(sums)
        for key, value in runs[name].items():
            if "/dw/" not in key:  # (the weight gradient's own tiles: not these)
                assert np.array_equal(value, sums[key], equal_nan=True), (name, key)
    for i, case in enumerate(EDGE):
        x, w, b = _inputs(case, np.float32, seed=11)
        expected, scale = expected_forward(x, w, b, case[7], case[8], 1, 1)
        assert_close(sums[f"{i}/fwd/1"], expected, np.float32, scale)
        assert np.array_equal(sums[f"{i}/fwd/2"], sums[f"{i}/fwd/1"])
        dy = np.random.default_rng(12).standard_normal(expected.shape).astype(np.float32)
        (want, _, _), (sdx, _, _) = expected_backward(dy, x, w, case[7], case[8], 1, 1)
        assert_close(sums[f"{i}/dx"], want, np.float32, sdx, "grad_x")
        if f"{i}/plan" in sums:
            z = sums[f"{i}/fwd/1"] + dy
            assert np.array_equal(sums[f"{i}/plan"], np.where(z > 0, z, np.float32(0)))
        for run in runs.values():  # (0 x inf in the padding is NaN, as every product summed)
            for bad in ("inf", "nan"):
                y = run[f"{i}/fwd/{bad}"]
                assert np.isfinite(np.delete(y, 1, axis=1)).all()
                assert np.isnan(y[:, 1]).any() == (bad == "nan" or case[8] != 0)

"""The linear algorithm (algo="linear"): convolutions in which every output position sees every
input element (a 1x1 output whose window covers the input, a 3x3 "same" on a 2x2 plane), run as
one GEMM over the batch on the expanded kernel. Checked against the float64 reference in all three
directions, within the library's bound (README, "Algorithms and accuracy"); the taps that only
ever meet padding get exactly the reference's 0 weight gradient, and NaNs in them spread nowhere.
"""

import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import fastconv
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

CASES = [
    # ResNet's last stage on 8x8 images: a 3x3 "same" convolution on a 1x1 plane
    Case(5, 16, 1, 1, 24, 3, 3, padding=1),
    # its stride-2 entry on a 2x2 plane: taps (1..2, 1..2) meet the input
    Case(3, 8, 2, 2, 12, 3, 3, stride=2, padding=1),
    # fc_to_conv's classifier: a kernel as large as the plane, no padding (W' is w as it lies)
    Case(4, 6, 7, 7, 10, 7, 7),
    Case(2, 5, 3, 4, 7, 3, 4, bias=False),
    # a 1x1 convolution on a 1x1 plane (squeeze-excitation's layers)
    Case(9, 32, 1, 1, 8, 1, 1),
    # rectangles: a row, a column, padding on one axis only
    Case(3, 4, 1, 5, 6, 3, 5, padding=(1, 0)),
    Case(2, 4, 3, 1, 6, 5, 3, padding=(1, 1)),
    # a dilated kernel on a 1x1 plane: only the tap at pad/dilation meets it
    Case(3, 4, 1, 1, 5, 3, 3, padding=2, dilation=2),
    # groups and a batch of one; odd sizes that leave partial tiles
    Case(2, 12, 1, 1, 18, 3, 3, padding=1, groups=3),
    Case(1, 7, 2, 2, 9, 3, 3, stride=2, padding=1, groups=1, bias=False),
    Case(37, 70, 1, 1, 130, 3, 3, padding=1),
    Case(33, 20, 2, 2, 90, 3, 3, stride=(2, 3), padding=1, groups=2),
    # planes larger than one output, every output seeing every input: ResNet's 3x3 "same" on a
    # 2x2 plane, a 5x5 on 3x3 and 2x3 planes, stride 2 with a kernel reaching every input twice
    Case(6, 16, 2, 2, 24, 3, 3, padding=1),
    Case(3, 4, 3, 3, 5, 5, 5, padding=2, groups=1),
    Case(2, 6, 2, 3, 4, 5, 5, padding=2, groups=2, bias=False),
    Case(3, 5, 2, 2, 7, 5, 5, stride=2, padding=2),
    Case(17, 9, 1, 2, 11, 1, 3, padding=(0, 1)),
    # kernels larger than the L2 at small batches: the forward's dot products over the kernel's
    # rows (rows_times_nt), a batch of 2 and of 5 (a partial block of rows)
    Case(2, 64, 7, 7, 100, 7, 7),
    Case(5, 600, 1, 1, 512, 1, 1),
]

# Shapes whose output is larger than 1x1, or where some input element meets no tap or two.
UNSUPPORTED = [
    Case(2, 3, 4, 4, 4, 3, 3, padding=1),  # a corner output misses the far input rows
    Case(2, 3, 3, 3, 4, 3, 3, padding=1),
    Case(2, 3, 3, 3, 4, 2, 2, stride=2),  # row/column 2 meets no tap
    Case(2, 3, 3, 3, 4, 3, 3, padding=1, dilation=2),  # rows 0, 2 fall between dilated taps
]


def inputs(case, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{case.id}-{np.dtype(dtype).name}".encode()))
    x, w, b = make_inputs(rng, case.x_shape, case.w_shape, dtype, bias=case.bias)
    y, sy = expected_forward(x, w, b, case.stride, case.padding, case.dilation, case.groups)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, b, dy, y, sy


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_linear_matches_reference(case, dtype):
    x, w, b, dy, y_ref, sy = inputs(case, dtype)
    assert "linear" in fastconv.algorithms(case.x_shape, case.w_shape, **case.params)
    before = snapshot(x, w, b, dy)
    y = fastconv.conv2d(x, w, b, algo="linear", **case.params)
    grads = fastconv.conv2d_backward(dy, x, w, algo="linear", **case.params)
    assert_unchanged(before, (x, w, b, dy), ("x", "weight", "bias", "grad_out"))
    assert y.shape == y_ref.shape
    assert_close(y, y_ref, dtype, sy, "y")
    expected, scales = expected_backward(
        dy, x, w, case.stride, case.padding, case.dilation, case.groups
    )
    check_backward(grads, expected, scales, dtype)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: c.id)
def test_auto_takes_linear_in_every_direction(case):
    """The heuristic picks it first wherever it applies (README, the algorithm table)."""
    from fastconv import _core
    from reference import pair

    (sh, sw), (ph, pw) = pair(case.stride), pair(case.padding)
    d = (*case.x_shape, case.k, case.kh, case.kw, sh, sw, ph, pw, 1, 1, case.groups)
    assert [_core.ALGO_NAMES[_core.conv2d_choose(d, direction)] for direction in range(3)] == [
        "linear"
    ] * 3
    assert fastconv.algorithms(case.x_shape, case.w_shape, **case.params)[0] == "linear"


@pytest.mark.parametrize("case", UNSUPPORTED, ids=lambda c: c.id)
def test_linear_refuses_other_shapes(case):
    assert "linear" not in fastconv.algorithms(case.x_shape, case.w_shape, **case.params)
    x, w, b, *_ = inputs(case, np.float32)
    with pytest.raises(ValueError, match="linear"):
        fastconv.conv2d(x, w, b, algo="linear", **case.params)


def test_padding_taps_spread_no_nan():
    """A NaN or an infinity in a tap that only meets padding reaches no output (the reference
    skips those terms), and the weight gradient of such a tap is exactly 0 even when dy is not
    finite."""
    case = Case(4, 3, 1, 1, 5, 3, 3, padding=1)
    x, w, b, dy, y_ref, sy = inputs(case, np.float64)
    w[:, :, 0, 0] = np.nan
    w[:, :, 2, 1] = np.inf
    y = fastconv.conv2d(x, w, b, algo="linear", padding=1)
    ref = fastconv.conv2d(x, w, b, algo="reference", padding=1)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dx, _, _ = fastconv.conv2d_backward(dy, x, w, padding=1, algo="linear")
    assert np.isfinite(dx).all()
    dy[1, 2] = np.inf
    _, dw, _ = fastconv.conv2d_backward(dy, x, w, padding=1, algo="linear")
    _, dw_ref, _ = fastconv.conv2d_backward(dy, x, w, padding=1, algo="reference")
    border = np.ones((3, 3), bool)
    border[1, 1] = False
    assert (dw[:, :, border] == 0).all() and (dw_ref[:, :, border] == 0).all()
    np.testing.assert_array_equal(np.isfinite(dw), np.isfinite(dw_ref))


@pytest.mark.parametrize("plane", [1, 2])
def test_same_bits_at_every_thread_count(plane):
    """Its tiles follow the shape, never the thread count (README, "Determinism")."""
    script = textwrap.dedent(
        """
        import hashlib, sys, numpy as np, fastconv
        fastconv.set_num_threads(int(sys.argv[1]))
        rng = np.random.default_rng(0)
        h = int(sys.argv[2])
        x = rng.standard_normal((67, 96, h, h), dtype=np.float32)
        w = rng.standard_normal((200, 96, 3, 3), dtype=np.float32)
        y = fastconv.conv2d(x, w, padding=1, algo="linear")
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        g = fastconv.conv2d_backward(dy, x, w, padding=1, algo="linear")
        print(hashlib.sha256(b"".join(a.tobytes() for a in (y, *g))).hexdigest())
        """
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script, str(t), str(plane)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for t in (1, 2, 3)
    }
    assert len(digests) == 1, digests

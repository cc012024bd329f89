"""The direct forward on convolutions strided along rows (csrc/conv/direct.cpp,
forward_width_phases): the padded input split into column phases, run by the unit-stride register
tiles. Against the float64 reference, float32 and float64, with strides 2 and 3, unequal strides,
kernels narrower and wider than the stride, padding on one axis, groups, and a 1-wide kernel row
(which keeps the row path)."""

import numpy as np
import pytest

import fastconv
from reference import conv2d_ref

CASES = [  # (n, c, h, w, k, kh, kw, sh, sw, ph, pw, groups)
    (2, 3, 17, 23, 8, 7, 7, 2, 2, 3, 3, 1),  # a stem
    (1, 4, 13, 19, 6, 3, 3, 1, 2, 1, 1, 2),  # stride along rows only, groups
    (1, 2, 11, 16, 5, 5, 4, 3, 3, 2, 0, 1),  # stride 3, even kernel width
    (2, 6, 9, 9, 12, 3, 5, 2, 3, 0, 2, 3),  # unequal strides, groups of 2
    (1, 3, 8, 8, 4, 2, 2, 2, 2, 0, 0, 1),  # kernel as wide as the stride (one tap per phase)
    (1, 1, 30, 31, 3, 1, 3, 1, 2, 0, 1, 1),  # one input channel
    (1, 3, 12, 12, 4, 3, 1, 2, 2, 1, 0, 1),  # 1-wide kernel: the row path
    (1, 16, 10, 40, 40, 3, 3, 2, 2, 1, 1, 1),  # more output channels than a tile, wide rows
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_strided_direct_forward_against_reference(case, dtype):
    n, c, h, w, k, kh, kw, sh, sw, ph, pw, g = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c // g, kh, kw))
    b = rng.standard_normal(k)
    xs, ws, bs = (a.astype(dtype) for a in (x, wt, b))
    before = [a.copy() for a in (xs, ws, bs)]
    y = fastconv.conv2d(xs, ws, bs, stride=(sh, sw), padding=(ph, pw), groups=g, algo="direct")
    ref = conv2d_ref(
        xs.astype(np.float64),
        ws.astype(np.float64),
        bs.astype(np.float64),
        stride=(sh, sw),
        padding=(ph, pw),
        groups=g,
    )
    assert y.shape == ref.shape and y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.abs(y - ref).max() <= tol * (np.abs(ref).max() + 1)
    for a, a0 in zip((xs, ws, bs), before):
        assert np.array_equal(a, a0)  # inputs untouched


def test_non_finite_inputs_land_where_the_reference_puts_them():
    # the column phases add zero taps past the kernel's width; an infinity they read must not
    # become a NaN (such inputs take the row path)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 9, 12))
    x[0, 0, 4, 11] = np.inf  # read only by a zero tap of the last phase
    x[0, 1, 2, 3] = np.nan
    w = rng.standard_normal((5, 2, 3, 3))
    y = fastconv.conv2d(x, w, stride=2, algo="direct")
    ref = conv2d_ref(x, w, stride=(2, 2))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
    finite = np.isfinite(ref)
    assert np.abs(y[finite] - ref[finite]).max() <= 1e-12 * (np.abs(ref[finite]).max() + 1)

"""A training step's FFT forward and data gradient sharing one filter transform.

fc_conv2d_prepare with FFT keeps the filters' frequency bins (where fc_conv2d_prepared_reuse
says a step should); the forward and fc_conv2d_backward_data_prepared then take them as their
broadcast operand instead of transforming the filters again. Checked against the float64
reference, against the ordinary FFT calls bit for bit, added into an array, at any thread
count, with non-finite operands, through the C ABI and in autograd.
"""

import ctypes

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from conftest import DTYPE_IDS, DTYPES, assert_close, expected_backward, expected_forward
from fastconv import _core, autograd
from fastconv.nn import functional as NF
from test_c_abi import FC_OK, desc, ptr
from test_prepared_grad import (
    _count_prepared,
    _desc,
    _operands,
    bits_at_thread_counts,
    prepared_abi,
)

FFT = F._ALGO_IDS["fft"]


def _fft_dx(dy, x, w, padding, groups=1):
    """The ordinary FFT data gradient."""
    return fastconv.conv2d_backward(
        dy, x, w, padding=padding, groups=groups, needs=(True, False, False), algo="fft"
    )[0]


# (x, w, padding, groups). Eight images fill the lanes of every ISA's products (2, 4 or 8
# doubles), so the ordinary calls put the images in the lanes, as the prepared ones do: the
# prepared calls give their bits exactly.
REUSED = [
    ((8, 3, 20, 20), (5, 3, 7, 7), 3, 1),
    ((8, 3, 17, 13), (5, 3, 5, 5), 2, 1),  # not square; outputs beyond the input's reach
    ((8, 6, 12, 12), (10, 3, 5, 5), 2, 2),  # groups
    ((8, 3, 16, 16), (5, 3, 9, 9), 0, 1),
]
IDS = [f"{c[0]}x{c[1]}p{c[2]}g{c[3]}" for c in REUSED]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", REUSED, ids=IDS)
def test_prepared_filters_serve_both_directions(case, dtype):
    x_shape, w_shape, padding, groups = case
    d = _desc(x_shape, w_shape, padding, groups)
    assert _core.conv2d_prepared_reuse(d, FFT, dtype == np.float64)
    x, w, dy = _operands(x_shape, w_shape, padding, dtype)
    before = (x.copy(), w.copy(), dy.copy())
    prep = _core.Conv2dPrepared(d, FFT, w)
    dx = np.empty(x_shape, dtype)
    prep.backward_data(dy, dx.reshape(-1))
    (dx_ref, _, _), (scale, _, _) = expected_backward(
        dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, padding, 1, groups
    )
    assert_close(dx, dx_ref, dtype, scale, "grad_x")
    # the ordinary FFT data gradient's bits (it puts the images in the lanes here too)
    np.testing.assert_array_equal(dx, _fft_dx(dy, x, w, padding, groups))
    # added into an array: exactly the array plus the same result
    base = np.random.default_rng(1).standard_normal(x_shape).astype(dtype)
    acc = base.copy()
    prep.backward_data(dy, acc.reshape(-1), accumulate=True)
    np.testing.assert_array_equal(acc, base + dx)
    # the forward: the ordinary one's bits, within the contract of the reference
    y = np.empty(dy.shape, dtype)
    prep.forward(x, None, y.reshape(-1))
    np.testing.assert_array_equal(
        y, fastconv.conv2d(x, w, padding=padding, groups=groups, algo="fft")
    )
    y_ref, y_scale = expected_forward(x, w, None, 1, padding, 1, groups)
    assert_close(y, y_ref, dtype, y_scale, "y")
    # the same on every call; the operands untouched
    again = np.empty_like(dx)
    prep.backward_data(dy, again.reshape(-1))
    np.testing.assert_array_equal(again, dx)
    for a, b in zip((x, w, dy), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "x_shape, w_shape, padding, why",
    [
        ((1, 3, 20, 20), (5, 3, 7, 7), 3, "one image: the filters fill the lanes better"),
        ((8, 64, 60, 60), (64, 64, 5, 5), 2, "64x64 grid, 64 x 64 filters: 134 MB of bins"),
        ((3, 8, 20, 20), (16, 8, 7, 7), 3, "3 images leave lanes empty, 16 filters do not"),
        # 4 images and 16 channels each way fill the lanes alike: the ordinary calls put the
        # filters in them (the bins with the images there took 3.8x their time)
        ((4, 16, 28, 28), (16, 16, 7, 7), 3, "channels fill the lanes as well as the images"),
        ((8, 5, 20, 20), (24, 5, 5, 5), 2, "24 filters fill the forward's lanes as 8 images do"),
    ],
)
def test_where_a_step_does_not_prepare(x_shape, w_shape, padding, why):
    d = _desc(x_shape, w_shape, padding)
    assert not _core.conv2d_prepared_reuse(d, FFT, False), why
    if w_shape[0] == 64:
        return
    # prepared anyway: the calls run on w, the ordinary calls' bits
    x, w, dy = _operands(x_shape, w_shape, padding, np.float32)
    prep = _core.Conv2dPrepared(d, FFT, w)
    dx = np.empty(x_shape, np.float32)
    prep.backward_data(dy, dx.reshape(-1))
    want = _fft_dx(dy, x, w, padding)
    np.testing.assert_array_equal(dx, want)
    y = np.empty(dy.shape, np.float32)
    prep.forward(x, None, y.reshape(-1))
    np.testing.assert_array_equal(y, fastconv.conv2d(x, w, padding=padding, algo="fft"))


def test_strided_never_reuses():
    d = (8, 3, 20, 20, 5, 7, 7, 2, 2, 3, 3, 1, 1, 1)
    assert not _core.conv2d_prepared_reuse(d, FFT, False)


def test_bitwise_at_any_thread_count(restore_threads):
    x_shape, w_shape, padding, groups = REUSED[0]
    d = _desc(x_shape, w_shape, padding, groups)
    x, w, dy = _operands(x_shape, w_shape, padding, np.float32)
    out = bits_at_thread_counts(d, FFT, x, w, dy, forward=True)
    for dx, y in out[1:]:
        np.testing.assert_array_equal(out[0][0], dx)
        np.testing.assert_array_equal(out[0][1], y)


@pytest.mark.parametrize("where", ["x", "dy", "weight"])
def test_non_finite_operands_take_the_ordinary_calls(where):
    x_shape, w_shape, padding, groups = REUSED[1]
    d = _desc(x_shape, w_shape, padding, groups)
    x, w, dy = _operands(x_shape, w_shape, padding, np.float64)
    {"x": x, "dy": dy, "weight": w}[where].reshape(-1)[7] = np.nan if where != "weight" else np.inf
    prep = _core.Conv2dPrepared(d, FFT, w)
    dx = np.empty(x_shape)
    prep.backward_data(dy, dx.reshape(-1))
    want = _fft_dx(dy, x, w, padding)
    np.testing.assert_array_equal(dx, want)  # (NaN where the GEMM path puts NaN)
    acc = np.ones(x_shape)
    prep.backward_data(dy, acc.reshape(-1), accumulate=True)
    np.testing.assert_array_equal(acc, want + 1)
    y = np.empty(dy.shape)
    prep.forward(x, None, y.reshape(-1))
    np.testing.assert_array_equal(y, fastconv.conv2d(x, w, padding=padding, algo="fft"))
    if where != "dy":
        assert not np.isfinite(y).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_c_abi(dtype):
    lib = prepared_abi()
    x_shape, w_shape, padding, _ = REUSED[0]
    d = desc(x_shape, w_shape, padding=padding)
    t = 0 if dtype == np.float32 else 1
    reuses = ctypes.c_int(-1)
    assert lib.fc_conv2d_prepared_reuse(ctypes.byref(d), t, FFT, ctypes.byref(reuses)) == FC_OK
    assert reuses.value == 1
    x, w, dy = _operands(x_shape, w_shape, padding, dtype)
    want = _fft_dx(dy, x, w, padding)
    p = ctypes.c_void_p()
    assert lib.fc_conv2d_prepare(ctypes.byref(d), t, FFT, ptr(w), 1, ctypes.byref(p)) == FC_OK
    try:
        dx = np.empty(x_shape, dtype)
        assert lib.fc_conv2d_backward_data_prepared(p, ptr(dy), 0, ptr(dx)) == FC_OK
        np.testing.assert_array_equal(dx, want)
        acc = np.ones(x_shape, dtype)
        assert lib.fc_conv2d_backward_data_prepared(p, ptr(dy), 1, ptr(acc)) == FC_OK
        np.testing.assert_array_equal(acc, np.ones(x_shape, dtype) + want)
    finally:
        lib.fc_conv2d_prepared_destroy(p)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_autograd_step_prepares_once(dtype, monkeypatch):
    made = _count_prepared(monkeypatch)
    x_shape, w_shape, padding, _ = REUSED[0]
    x, w, g = _operands(x_shape, w_shape, padding, dtype, seed=5)
    b = np.linspace(-1, 1, w_shape[0]).astype(dtype)
    tx = autograd.Tensor(x, requires_grad=True)
    tw, tb = autograd.Tensor(w, requires_grad=True), autograd.Tensor(b, requires_grad=True)
    y = NF.conv2d(tx, tw, tb, padding=padding, algo="fft")
    assert made == [FFT] and y._ctx.prepared is not None
    y.backward(g)
    assert getattr(y._ctx, "prepared", None) is None
    np.testing.assert_array_equal(y.data, fastconv.conv2d(x, w, b, padding=padding, algo="fft"))
    want = fastconv.conv2d_backward(g, x, w, padding=padding, algo="fft")
    for got, exp in zip((tx.grad, tw.grad, tb.grad), want):
        np.testing.assert_array_equal(got, exp)
    with autograd.no_grad():
        NF.conv2d(tx, tw, padding=padding, algo="fft")
    assert made == [FFT]  # (no grad_x wanted: nothing prepared)

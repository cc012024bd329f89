"""A training step's forward and data gradient sharing one filter transform.

Winograd's data gradient on the forward's prepared filters (fc_conv2d_backward_data_prepared,
_core.Conv2dPrepared): dy and dx are mirrored and the forward's transformed filters read
transposed. Checked against the float64 reference (the project's accuracy contract and
Winograd's tighter bound), added into an array, at every padding with ragged tiles, with
groups, against the data gradient on w, bitwise at any thread count, with non-finite
operands, through the C ABI, and in autograd (where a step prepares, and what it frees).
"""

import ctypes

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from conftest import DTYPE_IDS, DTYPES, assert_close, expected_backward
from fastconv import _core, autograd
from fastconv import nn as fnn
from fastconv.nn import functional as NF
from test_c_abi import FC_EINVAL, FC_OK, LIB_PATH, desc, load, ptr

WINOGRAD = F._ALGO_IDS["winograd"]
# Winograd's float32 bound on real layers (tests/test_winograd.py), float64 the contract's
BOUND = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-13}


def _desc(x_shape, w_shape, padding, groups=1):
    n, c, h, w = x_shape
    k, _, kh, kw = w_shape
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (n, c, h, w, k, kh, kw, 1, 1, ph, pw, 1, 1, groups)


def _operands(x_shape, w_shape, padding, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    kh, kw = w_shape[2:]
    y_shape = (x_shape[0], w_shape[0], x_shape[2] + 2 * ph - kh + 1, x_shape[3] + 2 * pw - kw + 1)
    dy = rng.standard_normal(y_shape).astype(dtype)
    return x, w, dy


def bits_at_thread_counts(d, algo, x, w, dy, forward=False):
    """A Conv2dPrepared of descriptor d and algorithm algo made and run at 1, 2 and 3 threads:
    per thread count, its data gradient of dy (and with ``forward`` its forward of x)."""
    out = []
    for n in (1, 2, 3):
        fastconv.set_num_threads(n)
        prep = _core.Conv2dPrepared(d, algo, w)
        dx = np.empty(x.shape, x.dtype)
        prep.backward_data(dy, dx.reshape(-1))
        got = [dx]
        if forward:
            y = np.empty(dy.shape, dy.dtype)
            prep.forward(x, None, y.reshape(-1))
            got.append(y)
        out.append(got)
    return out


def _within(got, want, scale, dtype):
    err = np.abs(got.astype(np.float64) - want) / (scale + np.finfo(np.float64).tiny)
    return float(err.max())


# (x, w, padding, groups): shapes where the flipped data gradient runs (reuse), ragged tiles on
# both axes, paddings 0-3 (3: outputs beyond the input's reach), asymmetric padding, groups
REUSED = [
    ((2, 8, 9, 11), (12, 8, 3, 3), 1, 1),
    ((1, 9, 10, 7), (8, 9, 3, 3), 0, 1),
    ((3, 10, 6, 9), (9, 10, 3, 3), 2, 1),
    ((1, 8, 5, 5), (10, 8, 3, 3), 3, 1),
    ((2, 9, 11, 8), (8, 9, 3, 3), (0, 2), 1),
    ((2, 16, 8, 7), (24, 8, 3, 3), 1, 2),
    ((4, 32, 14, 14), (48, 32, 3, 3), 1, 1),  # a 14x14 plane at 4 images (64 tiles)
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", REUSED, ids=[f"{c[0]}x{c[1]}p{c[2]}g{c[3]}" for c in REUSED])
def test_data_gradient_from_prepared_filters(case, dtype):
    x_shape, w_shape, padding, groups = case
    d = _desc(x_shape, w_shape, padding, groups)
    assert _core.conv2d_prepared_reuse(d, WINOGRAD, dtype == np.float64)
    x, w, dy = _operands(x_shape, w_shape, padding, dtype)
    (dx_ref, _, _), (scale, _, _) = expected_backward(
        dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, padding, 1, groups
    )
    prep = _core.Conv2dPrepared(d, WINOGRAD, w)
    before = (dy.copy(), w.copy())
    dx = np.empty(x_shape, dtype)
    prep.backward_data(dy, dx.reshape(-1))
    assert_close(dx, dx_ref, dtype, scale, "grad_x")
    assert _within(dx, dx_ref, scale, dtype) <= BOUND[np.dtype(dtype)]
    # added into an array: exactly the array plus the same result
    base = np.random.default_rng(1).standard_normal(x_shape).astype(dtype)
    acc = base.copy()
    prep.backward_data(dy, acc.reshape(-1), accumulate=True)
    np.testing.assert_array_equal(acc, base + dx)
    # the same on every call; the operands untouched
    again = np.empty_like(dx)
    prep.backward_data(dy, again.reshape(-1))
    np.testing.assert_array_equal(again, dx)
    np.testing.assert_array_equal(dy, before[0])
    np.testing.assert_array_equal(w, before[1])
    # the prepared forward is the forward's own, bit for bit
    y = np.empty(dy.shape, dtype)
    prep.forward(x, None, y.reshape(-1))
    np.testing.assert_array_equal(
        y, fastconv.conv2d(x, w, padding=padding, groups=groups, algo="winograd")
    )


@pytest.mark.parametrize(
    "x_shape, w_shape, padding, flips, why",
    [
        ((1, 8, 14, 14), (8, 8, 5, 5), 2, False, "not 3x3"),
        ((4, 9, 13, 10), (6, 9, 3, 3), 2, False, "F(2x2) for 6 channels, F(4x4) forward"),
        ((9, 192, 7, 7), (384, 192, 3, 3), 1, False, "36 tiles: the forward runs fused"),
        ((1, 256, 14, 14), (256, 256, 3, 3), 1, False, "49 tiles: fused by elements"),
        ((4, 128, 28, 28), (192, 128, 3, 3), 1, True, "196 tiles: the transform is a small part"),
        ((1, 512, 28, 28), (512, 512, 3, 3), 1, True, "36 x 512 x 512 filters: over 16 MiB"),
    ],
)
def test_where_a_step_does_not_prepare(x_shape, w_shape, padding, flips, why):
    """fc_conv2d_prepared_reuse says no; filters prepared anyway serve the data gradient where
    the flipped form applies (within the bound), else it runs on w (bitwise the ordinary one)."""
    d = _desc(x_shape, w_shape, padding)
    assert not _core.conv2d_prepared_reuse(d, WINOGRAD, False), why
    if w_shape[2] != 3 or w_shape[0] >= 512:
        return
    x, w, dy = _operands(x_shape, w_shape, padding, np.float32)
    prep = _core.Conv2dPrepared(d, WINOGRAD, w)
    got = np.empty(x_shape, np.float32)
    prep.backward_data(dy, got.reshape(-1))
    want = fastconv.conv2d_backward(
        dy, x, w, padding=padding, needs=(True, False, False), algo="winograd"
    )[0]
    if not flips:
        np.testing.assert_array_equal(got, want)
        return
    (dx_ref, _, _), (scale, _, _) = expected_backward(
        dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, padding, 1, 1
    )
    assert _within(got, dx_ref, scale, np.float32) <= BOUND[np.dtype(np.float32)]


def test_other_algorithms_never_reuse():
    d = _desc((4, 32, 14, 14), (48, 32, 3, 3), 1)
    for name, ident in F._ALGO_IDS.items():
        if name not in ("winograd", "fft"):  # (FFT's: tests/test_prepared_fft.py)
            assert not _core.conv2d_prepared_reuse(d, ident, False), name


@pytest.mark.parametrize(
    "x_shape, w_shape", [((4, 40, 14, 14), (56, 40, 3, 3)), ((2, 24, 30, 30), (8, 24, 3, 3))]
)
def test_bitwise_at_any_thread_count(x_shape, w_shape, restore_threads):
    d = _desc(x_shape, w_shape, 1)
    x, w, dy = _operands(x_shape, w_shape, 1, np.float32)
    out = bits_at_thread_counts(d, WINOGRAD, x, w, dy)
    for other in out[1:]:
        np.testing.assert_array_equal(out[0][0], other[0])


@pytest.mark.parametrize("where", ["dy", "weight"])
def test_non_finite_operands_take_the_gemm_path(where):
    x_shape, w_shape = (2, 8, 9, 11), (12, 8, 3, 3)
    d = _desc(x_shape, w_shape, 1)
    x, w, dy = _operands(x_shape, w_shape, 1, np.float64)
    if where == "dy":
        dy[1, 3, 4, 5] = np.nan
    else:
        w[2, 1, 0, 2] = np.inf
    prep = _core.Conv2dPrepared(d, WINOGRAD, w)
    got = np.empty(x_shape)
    prep.backward_data(dy, got.reshape(-1))
    want = fastconv.conv2d_backward(dy, x, w, padding=1, needs=(True, False, False), algo="im2col")[
        0
    ]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert fin.any() and not fin.all()
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=1e-12)
    # added into an array the same way
    base = np.ones(x_shape)
    prep.backward_data(dy, base.reshape(-1), accumulate=True)
    np.testing.assert_allclose(base[fin], want[fin] + 1, rtol=1e-12, atol=1e-12)


def test_bad_arguments_are_named():
    d = _desc((2, 8, 9, 11), (12, 8, 3, 3), 1)
    x, w, dy = _operands((2, 8, 9, 11), (12, 8, 3, 3), 1, np.float32)
    prep = _core.Conv2dPrepared(d, WINOGRAD, w)
    with pytest.raises((TypeError, ValueError), match="grad_out"):
        prep.backward_data(dy.astype(np.float64), np.empty(x.size, np.float32))
    with pytest.raises((TypeError, ValueError), match="grad_out"):
        prep.backward_data(dy.reshape(-1)[:-1], np.empty(x.size, np.float32))
    with pytest.raises((TypeError, ValueError), match="grad_x"):
        prep.backward_data(dy, np.empty(x.size - 1, np.float32))
    ro = np.empty(x.size, np.float32)
    ro.flags.writeable = False
    with pytest.raises((TypeError, ValueError), match="grad_x"):
        prep.backward_data(dy, ro)
    both = np.zeros(dy.size + x.size, np.float32)
    with pytest.raises(ValueError, match="overlap"):
        prep.backward_data(both[: dy.size], both[dy.size - 1 : dy.size - 1 + x.size])
    with pytest.raises((TypeError, ValueError), match="weight"):
        _core.Conv2dPrepared(d, WINOGRAD, w[:, :4])
    with pytest.raises(ValueError):
        _core.Conv2dPrepared(d, 0, w)  # auto: prepare needs a concrete algorithm


def test_prepared_keeps_its_weights_alive():
    d = _desc((2, 8, 9, 11), (12, 8, 3, 3), 1)
    x, w, dy = _operands((2, 8, 9, 11), (12, 8, 3, 3), 1, np.float64)
    want = fastconv.conv2d_backward(dy, x, w, padding=1, needs=(True, False, False), algo="im2col")[
        0
    ]
    prep = _core.Conv2dPrepared(d, WINOGRAD, w.copy())  # the only reference to its weights
    import gc

    gc.collect()
    got = np.empty_like(x)
    prep.backward_data(dy, got.reshape(-1))
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


# -- the C ABI ---------------------------------------------------------------------------------


def prepared_abi():
    """libfastconv with the prepared-filter entries' argument types (tests/test_prepared_fft.py
    uses it too)."""
    lib = load(LIB_PATH)
    P, Int = ctypes.c_void_p, ctypes.c_int
    D = ctypes.POINTER(type(desc((1, 1, 3, 3), (1, 1, 3, 3))))
    lib.fc_conv2d_prepare.argtypes = [D, Int, Int, P, Int, ctypes.POINTER(P)]
    lib.fc_conv2d_backward_data_prepared.argtypes = [P, P, Int, P]
    lib.fc_conv2d_prepared_reuse.argtypes = [D, Int, Int, ctypes.POINTER(Int)]
    lib.fc_conv2d_prepared_destroy.argtypes = [P]
    return lib


@pytest.fixture(scope="module")
def lib():
    return prepared_abi()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_c_abi(lib, dtype):
    x_shape, w_shape = (2, 8, 9, 11), (12, 8, 3, 3)
    d = desc(x_shape, w_shape, padding=1)
    t = 0 if dtype == np.float32 else 1
    reuses = ctypes.c_int(-1)
    assert lib.fc_conv2d_prepared_reuse(ctypes.byref(d), t, WINOGRAD, ctypes.byref(reuses)) == FC_OK
    assert reuses.value == 1
    im2col = F._ALGO_IDS["im2col"]
    assert lib.fc_conv2d_prepared_reuse(ctypes.byref(d), t, im2col, ctypes.byref(reuses)) == FC_OK
    assert reuses.value == 0
    assert lib.fc_conv2d_prepared_reuse(ctypes.byref(d), t, WINOGRAD, None) == FC_EINVAL
    assert lib.fc_conv2d_prepared_reuse(None, t, WINOGRAD, ctypes.byref(reuses)) == FC_EINVAL
    assert lib.fc_conv2d_prepared_reuse(ctypes.byref(d), 7, WINOGRAD, ctypes.byref(reuses)) != 0

    x, w, dy = _operands(x_shape, w_shape, 1, dtype)
    (dx_ref, _, _), (scale, _, _) = expected_backward(
        dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, 1, 1, 1
    )
    for algo in (WINOGRAD, im2col):  # reused, and on w
        p = ctypes.c_void_p()
        assert lib.fc_conv2d_prepare(ctypes.byref(d), t, algo, ptr(w), 1, ctypes.byref(p)) == FC_OK
        try:
            dx = np.empty(x_shape, dtype)
            assert lib.fc_conv2d_backward_data_prepared(p, ptr(dy), 0, ptr(dx)) == FC_OK
            assert_close(dx, dx_ref, dtype, scale, "dx")
            acc = np.ones(x_shape, dtype)
            assert lib.fc_conv2d_backward_data_prepared(p, ptr(dy), 1, ptr(acc)) == FC_OK
            assert_close(acc, dx_ref + 1, dtype, scale + 1, "dx + 1")
            assert lib.fc_conv2d_backward_data_prepared(None, ptr(dy), 0, ptr(dx)) == FC_EINVAL
            assert lib.fc_conv2d_backward_data_prepared(p, None, 0, ptr(dx)) == FC_EINVAL
            assert lib.fc_conv2d_backward_data_prepared(p, ptr(dy), 0, None) == FC_EINVAL
        finally:
            lib.fc_conv2d_prepared_destroy(p)


# -- autograd ----------------------------------------------------------------------------------


def _count_prepared(monkeypatch):
    """The algorithm of every _core.Conv2dPrepared made from now on (a list it appends to)."""
    made = []
    real = _core.Conv2dPrepared

    def spy(*args, **kw):
        made.append(args[1])
        return real(*args, **kw)

    monkeypatch.setattr(_core, "Conv2dPrepared", spy)
    return made


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_autograd_step_reuses_and_matches_the_reference(dtype, monkeypatch):
    made = _count_prepared(monkeypatch)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 32, 14, 14)).astype(dtype)
    w = (rng.standard_normal((48, 32, 3, 3)) * 0.1).astype(dtype)
    b = rng.standard_normal(48).astype(dtype)
    g = rng.standard_normal((4, 48, 14, 14)).astype(dtype)
    tx = autograd.Tensor(x, requires_grad=True)
    tw, tb = autograd.Tensor(w, requires_grad=True), autograd.Tensor(b, requires_grad=True)
    y = NF.conv2d(tx, tw, tb, padding=1, algo="winograd")
    assert len(made) == 1 and y._ctx.prepared is not None
    y.backward(g)
    assert getattr(y._ctx, "prepared", None) is None  # freed once used (or the graph released)
    (dx, dw, db), (sdx, sdw, sdb) = expected_backward(
        g.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, 1, 1, 1
    )
    assert_close(tx.grad, dx, dtype, sdx, "x.grad")
    assert_close(tw.grad, dw, dtype, sdw, "w.grad")
    assert_close(tb.grad, db, dtype, sdb, "b.grad")
    # the forward is the plain one, bit for bit
    np.testing.assert_array_equal(y.data, fastconv.conv2d(x, w, b, padding=1, algo="winograd"))


def test_autograd_prepares_only_where_it_pays(monkeypatch):
    made = _count_prepared(monkeypatch)
    rng = np.random.default_rng(4)
    x = autograd.Tensor(rng.standard_normal((4, 32, 14, 14)), requires_grad=True)
    w = autograd.Tensor(rng.standard_normal((48, 32, 3, 3)), requires_grad=True)
    NF.conv2d(x, w, padding=1, algo="im2col")
    NF.conv2d(x, w, padding=1, algo="winograd", stride=1, dilation=2)
    with autograd.no_grad():
        NF.conv2d(x, w, padding=1, algo="winograd")
    NF.conv2d(autograd.Tensor(x.data), w, padding=1, algo="winograd")  # no grad_x wanted
    fastconv.set_autotune("on")
    try:
        NF.conv2d(x, w, padding=1)  # tuned choices are left to each call
    finally:
        fastconv.set_autotune("off")
    assert made == []
    NF.conv2d(x, w, padding=1, algo="winograd")
    assert len(made) == 1


def test_autograd_retain_graph_runs_backward_twice():
    rng = np.random.default_rng(5)
    x = autograd.Tensor(rng.standard_normal((4, 32, 14, 14)), requires_grad=True)
    w = autograd.Tensor(rng.standard_normal((48, 32, 3, 3)), requires_grad=True)
    y = NF.conv2d(x, w, padding=1, algo="winograd")
    g = rng.standard_normal(y.shape)
    y.backward(g, retain_graph=True)
    first = x.grad.copy()
    y.backward(g)  # the filters were freed: the data gradient on w, the same sum
    np.testing.assert_allclose(x.grad, 2 * first, rtol=1e-12, atol=1e-12)


def test_model_step_is_deterministic_and_matches_unprepared(monkeypatch):
    """nn.Conv2d layers whose 3x3 convolutions run Winograd both ways (auto's choice on these
    shapes) reuse: two steps give bitwise the same gradients, equal to the gradients without
    reuse within float64 rounding."""
    assert F.algorithms((4, 64, 14, 14), (64, 64, 3, 3), padding=1)[0] == "winograd"
    assert (
        F.algorithms((4, 64, 14, 14), (64, 64, 3, 3), padding=1, direction="backward_data")[0]
        == "winograd"
    )

    def grads():
        rng = np.random.default_rng(6)
        net = fnn.Sequential(
            fnn.Conv2d(64, 64, 3, padding=1),
            fnn.ReLU(),
            fnn.Conv2d(64, 64, 3, padding=1),
            fnn.ReLU(),
        ).double()
        for p in net.parameters():
            p.data[...] = rng.standard_normal(p.data.shape) * 0.1
        x = autograd.Tensor(rng.standard_normal((4, 64, 14, 14)), requires_grad=True)
        net(x).sum().backward()
        return [x.grad] + [p.grad for p in net.parameters()]

    made = _count_prepared(monkeypatch)
    a, b = grads(), grads()
    assert len(made) == 4, "each step's two 3x3 layers should have prepared their filters"
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    monkeypatch.setattr(F._Conv, "reuses", lambda self, ident: False)
    c = grads()
    assert len(made) == 4
    for u, v in zip(a, c):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)

"""fastconv.cs231n against straightforward NumPy versions of the CS231n layers (written here)
and against centred finite differences in float64, as the course's gradient checks do."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv.cs231n as L
from fastconv._threads import threads

CONV_VARIANTS = ["naive", "fast", "im2col", "strides"]
POOL_VARIANTS = ["naive", "fast", "reshape", "im2col"]


# ---------------------------------------------------------------------------------------------
# naive references (the course's loops)


def naive_conv_forward(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    f, _, hh, ww = w.shape
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    out = np.zeros((n, f, ho, wo))
    for i in range(n):
        for k in range(f):
            for r in range(ho):
                for s in range(wo):
                    patch = xp[i, :, r * stride : r * stride + hh, s * stride : s * stride + ww]
                    out[i, k, r, s] = np.sum(patch * w[k]) + b[k]
    return out


def naive_conv_backward(dout, x, w, stride, pad):
    n, c, h, wd = x.shape
    f, _, hh, ww = w.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(n):
        for k in range(f):
            for r in range(dout.shape[2]):
                for s in range(dout.shape[3]):
                    win = (
                        i,
                        slice(None),
                        slice(r * stride, r * stride + hh),
                        slice(s * stride, s * stride + ww),
                    )
                    dw[k] += xp[win] * dout[i, k, r, s]
                    dxp[win] += w[k] * dout[i, k, r, s]
    return dxp[:, :, pad : pad + h, pad : pad + wd], dw, dout.sum(axis=(0, 2, 3))


def naive_pool_forward(x, ph, pw, stride):
    n, c, h, w = x.shape
    ho, wo = 1 + (h - ph) // stride, 1 + (w - pw) // stride
    out = np.zeros((n, c, ho, wo))
    for r in range(ho):
        for s in range(wo):
            out[:, :, r, s] = x[
                :, :, r * stride : r * stride + ph, s * stride : s * stride + pw
            ].max(axis=(2, 3))
    return out


def naive_pool_backward(dout, x, ph, pw, stride):
    dx = np.zeros_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            for r in range(dout.shape[2]):
                for s in range(dout.shape[3]):
                    win = x[i, c, r * stride : r * stride + ph, s * stride : s * stride + pw]
                    a, bb = np.unravel_index(np.argmax(win), win.shape)
                    dx[i, c, r * stride + a, s * stride + bb] += dout[i, c, r, s]
    return dx


def naive_batchnorm_train(x, gamma, beta, eps):
    """The course's spatial batchnorm: flatten to (N*H*W, C) and normalize each column."""
    n, c, h, w = x.shape
    flat = x.transpose(0, 2, 3, 1).reshape(-1, c)
    mu, var = flat.mean(axis=0), flat.var(axis=0)
    out = gamma * (flat - mu) / np.sqrt(var + eps) + beta
    return out.reshape(n, h, w, c).transpose(0, 3, 1, 2), mu, var


def numeric_grad(f, x, dout, h=1e-5):
    """d sum(f(x) * dout) / dx by centred differences (modifies x in place, then restores it).

    Runs the many tiny forwards on one thread (thread start-up would dominate); the analytic
    gradients they are compared with run on the default threads."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    with threads(1):
        while not it.finished:
            ix = it.multi_index
            old = x[ix]
            x[ix] = old + h
            pos = np.array(f(x), copy=True)
            x[ix] = old - h
            neg = np.array(f(x), copy=True)
            x[ix] = old
            grad[ix] = np.sum((pos - neg) * dout) / (2 * h)
            it.iternext()
    return grad


def rel_error(a, b):
    return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))


@pytest.fixture
def rng():
    return np.random.default_rng(231)


# ---------------------------------------------------------------------------------------------
# convolution


@pytest.mark.parametrize("variant", CONV_VARIANTS)
@pytest.mark.parametrize(
    "shape,stride,pad",
    [
        ((2, 3, 4, 4), 2, 1),  # the assignment's conv_forward_naive check
        ((2, 3, 7, 6), 1, 0),
        ((1, 2, 8, 9), 3, 2),  # (W + 2*pad - WW) not divisible by the stride: floored
    ],
)
def test_conv_forward_matches_naive(rng, variant, shape, stride, pad):
    fwd = getattr(L, f"conv_forward_{variant}")
    x = rng.standard_normal(shape)
    w = rng.standard_normal((3, shape[1], 3, 3))
    b = rng.standard_normal(3)
    conv_param = {"stride": stride, "pad": pad}
    out, cache = fwd(x, w, b, conv_param)
    assert out.dtype == np.float64
    np.testing.assert_allclose(
        out, naive_conv_forward(x, w, b, stride, pad), rtol=1e-10, atol=1e-12
    )
    assert len(cache) == 4 and cache[0] is x and cache[1] is w and cache[2] is b
    assert cache[3] is conv_param


def test_conv_forward_assignment_value():
    # The assignment's own check: linspace inputs, known output.
    x = np.linspace(-0.1, 0.5, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=3 * 3 * 4 * 4).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3)
    out, _ = L.conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    correct = np.array(
        [
            [
                [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
            ],
            [
                [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
            ],
        ]
    )
    assert rel_error(out, correct) < 1e-7


def test_variants_are_one_kernel_path():
    for v in CONV_VARIANTS:
        assert getattr(L, f"conv_forward_{v}") is L.conv_forward_fast
        assert getattr(L, f"conv_backward_{v}") is L.conv_backward_fast
    for v in POOL_VARIANTS:
        assert getattr(L, f"max_pool_forward_{v}") is L.max_pool_forward_fast
        assert getattr(L, f"max_pool_backward_{v}") is L.max_pool_backward_fast


def test_conv_backward_numeric(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((3, 3, 3, 3))
    b = rng.standard_normal(3)
    conv_param = {"stride": 1, "pad": 1}
    dout = rng.standard_normal((2, 3, 5, 5))
    _, cache = L.conv_forward_naive(x, w, b, conv_param)
    dx, dw, db = L.conv_backward_naive(dout, cache)
    assert dx.dtype == dw.dtype == db.dtype == np.float64
    fwd = L.conv_forward_naive
    assert rel_error(dx, numeric_grad(lambda v: fwd(v, w, b, conv_param)[0], x, dout)) < 1e-8
    assert rel_error(dw, numeric_grad(lambda v: fwd(x, v, b, conv_param)[0], w, dout)) < 1e-8
    assert rel_error(db, numeric_grad(lambda v: fwd(x, w, v, conv_param)[0], b, dout)) < 1e-8


def test_conv_backward_matches_naive_and_accepts_course_fast_cache(rng):
    x = rng.standard_normal((3, 4, 9, 8))
    w = rng.standard_normal((5, 4, 3, 2))
    b = rng.standard_normal(5)
    conv_param = {"stride": 2, "pad": 1}
    out, cache = L.conv_forward_fast(x, w, b, conv_param)
    dout = rng.standard_normal(out.shape)
    want = naive_conv_backward(dout, x, w, 2, 1)
    for got in (
        L.conv_backward_fast(dout, cache),
        L.conv_backward_im2col(dout, cache + (np.zeros(1),)),
    ):  # the course's 5-tuple
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-11)


def test_conv_dtypes(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((2, 2, 3, 3))
    b = rng.standard_normal(2)
    p = {"stride": 1, "pad": 1}
    out32, cache = L.conv_forward_fast(
        x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), p
    )
    assert out32.dtype == np.float32
    assert all(g.dtype == np.float32 for g in L.conv_backward_fast(np.ones_like(out32), cache))
    np.testing.assert_allclose(
        out32,
        naive_conv_forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), 1, 1),
        rtol=1e-4,
        atol=1e-5,
    )
    # mixed float32/float64 and integer inputs compute in float64, as NumPy would promote
    out_mixed, _ = L.conv_forward_fast(x.astype(np.float32), w, b, p)
    assert out_mixed.dtype == np.float64
    xi = np.arange(50).reshape(1, 2, 5, 5)
    out_int, _ = L.conv_forward_naive(xi, w, b, p)
    assert out_int.dtype == np.float64
    np.testing.assert_allclose(
        out_int, naive_conv_forward(xi.astype(float), w, b, 1, 1), rtol=1e-12
    )


def test_conv_param_errors(rng):
    x, w, b = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 3, 3)), np.zeros(2)
    with pytest.raises(ValueError, match="conv_param.*'pad'"):
        L.conv_forward_fast(x, w, b, {"stride": 1})
    with pytest.raises(ValueError, match="stride"):
        L.conv_forward_fast(x, w, b, {"stride": 0, "pad": 0})
    with pytest.raises(ValueError):
        L.conv_forward_fast(x, rng.standard_normal((2, 3, 3, 3)), b, {"stride": 1, "pad": 0})


# ---------------------------------------------------------------------------------------------
# max pooling


@pytest.mark.parametrize("variant", POOL_VARIANTS)
@pytest.mark.parametrize(
    "shape,ph,pw,stride",
    [
        ((2, 3, 4, 4), 2, 2, 2),
        ((2, 2, 7, 6), 3, 2, 1),  # overlapping windows
        ((1, 3, 9, 8), 3, 3, 2),  # windows that do not tile the input
    ],
)
def test_max_pool_forward_backward(rng, variant, shape, ph, pw, stride):
    fwd, bwd = getattr(L, f"max_pool_forward_{variant}"), getattr(L, f"max_pool_backward_{variant}")
    x = rng.standard_normal(shape)
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = fwd(x, pool_param)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, naive_pool_forward(x, ph, pw, stride))
    cx, cp = cache  # the naive layer's cache: (x, pool_param)
    assert cx is x and cp is pool_param
    dout = rng.standard_normal(out.shape)
    dx = bwd(dout, cache)
    np.testing.assert_allclose(
        dx, naive_pool_backward(dout, x, ph, pw, stride), rtol=1e-14, atol=1e-15
    )
    # a plain (x, pool_param) tuple, as the course's own naive forward returns, works too
    np.testing.assert_allclose(bwd(dout, (x, pool_param)), dx, rtol=0, atol=0)


def test_max_pool_backward_numeric(rng):
    x = rng.standard_normal((3, 2, 8, 8))
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    dout = rng.standard_normal((3, 2, 4, 4))
    _, cache = L.max_pool_forward_fast(x, pool_param)
    dx = L.max_pool_backward_fast(dout, cache)
    num = numeric_grad(lambda v: L.max_pool_forward_fast(v, pool_param)[0], x, dout)
    assert rel_error(dx, num) < 1e-8


def test_max_pool_dtypes_and_errors(rng):
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    out, cache = L.max_pool_forward_fast(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert out.dtype == np.float32
    assert L.max_pool_backward_fast(np.ones_like(out), cache).dtype == np.float32
    with pytest.raises(ValueError, match="pool_param.*'pool_width'"):
        L.max_pool_forward_fast(x, {"pool_height": 2, "stride": 2})


# ---------------------------------------------------------------------------------------------
# sandwich layers


def test_conv_relu_pool(rng):
    x = rng.standard_normal((2, 2, 6, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    conv_param = {"stride": 1, "pad": 1}
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out, cache = L.conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    want = naive_pool_forward(np.maximum(naive_conv_forward(x, w, b, 1, 1), 0), 2, 2, 2)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.conv_relu_pool_backward(dout, cache)
    f = lambda xx, ww, bb: L.conv_relu_pool_forward(xx, ww, bb, conv_param, pool_param)[0]  # noqa: E731
    assert rel_error(dx, numeric_grad(lambda v: f(v, w, b), x, dout)) < 1e-7
    assert rel_error(dw, numeric_grad(lambda v: f(x, v, b), w, dout)) < 1e-7
    assert rel_error(db, numeric_grad(lambda v: f(x, w, v), b, dout)) < 1e-7


def test_conv_relu(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    conv_param = {"stride": 2, "pad": 1}
    out, cache = L.conv_relu_forward(x, w, b, conv_param)
    np.testing.assert_allclose(
        out, np.maximum(naive_conv_forward(x, w, b, 2, 1), 0), rtol=1e-10, atol=1e-12
    )
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.conv_relu_backward(dout, cache)
    f = lambda xx, ww, bb: L.conv_relu_forward(xx, ww, bb, conv_param)[0]  # noqa: E731
    assert rel_error(dx, numeric_grad(lambda v: f(v, w, b), x, dout)) < 1e-7
    assert rel_error(dw, numeric_grad(lambda v: f(x, v, b), w, dout)) < 1e-7
    assert rel_error(db, numeric_grad(lambda v: f(x, w, v), b, dout)) < 1e-7


def test_affine_relu(rng):
    x = rng.standard_normal((2, 3, 4))
    w = rng.standard_normal((12, 5))
    b = rng.standard_normal(5)
    out, cache = L.affine_relu_forward(x, w, b)
    np.testing.assert_allclose(out, np.maximum(x.reshape(2, -1) @ w + b, 0), rtol=1e-14)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.affine_relu_backward(dout, cache)
    assert dx.shape == x.shape
    assert rel_error(dx, numeric_grad(lambda v: L.affine_relu_forward(v, w, b)[0], x, dout)) < 1e-8
    assert rel_error(dw, numeric_grad(lambda v: L.affine_relu_forward(x, v, b)[0], w, dout)) < 1e-8
    assert rel_error(db, numeric_grad(lambda v: L.affine_relu_forward(x, w, v)[0], b, dout)) < 1e-8


# ---------------------------------------------------------------------------------------------
# batch normalization


def test_spatial_batchnorm_train_and_running_stats(rng):
    n, c, h, w = 4, 3, 5, 6
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    bn_param = {"mode": "train", "momentum": 0.8}
    x1 = 3 * rng.standard_normal((n, c, h, w)) + 5
    out, _ = L.spatial_batchnorm_forward(x1, gamma, beta, bn_param)
    want, mu1, var1 = naive_batchnorm_train(x1, gamma, beta, 1e-5)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn_param["running_mean"], 0.2 * mu1, rtol=1e-12)
    np.testing.assert_allclose(bn_param["running_var"], 0.2 * var1, rtol=1e-12)
    x2 = rng.standard_normal((n, c, h, w)) - 1
    L.spatial_batchnorm_forward(x2, gamma, beta, bn_param)
    _, mu2, var2 = naive_batchnorm_train(x2, gamma, beta, 1e-5)
    np.testing.assert_allclose(bn_param["running_mean"], 0.8 * 0.2 * mu1 + 0.2 * mu2, rtol=1e-12)
    np.testing.assert_allclose(bn_param["running_var"], 0.8 * 0.2 * var1 + 0.2 * var2, rtol=1e-12)
    # test mode: the running statistics, left unchanged
    bn_param["mode"] = "test"
    rm, rv = bn_param["running_mean"].copy(), bn_param["running_var"].copy()
    out_t, _ = L.spatial_batchnorm_forward(x1, gamma, beta, bn_param)
    want_t = (
        gamma[:, None, None] * (x1 - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5)
        + beta[:, None, None]
    )
    np.testing.assert_allclose(out_t, want_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(bn_param["running_mean"], rm)
    np.testing.assert_array_equal(bn_param["running_var"], rv)


def test_spatial_batchnorm_defaults_normalize(rng):
    x = 4 * rng.standard_normal((10, 4, 3, 3)) + 7
    out, _ = L.spatial_batchnorm_forward(x, np.ones(4), np.zeros(4), {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-5)


@pytest.mark.parametrize("mode", ["train", "test"])
def test_spatial_batchnorm_backward_numeric(rng, mode):
    n, c, h, w = 2, 3, 4, 5
    x = 5 * rng.standard_normal((n, c, h, w)) + 12
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    dout = rng.standard_normal((n, c, h, w))
    base = {
        "mode": mode,
        "running_mean": rng.standard_normal(c),
        "running_var": rng.random(c) + 0.5,
    }

    def f(xx, gg, bb):
        return L.spatial_batchnorm_forward(xx, gg, bb, dict(base))[0]

    _, cache = L.spatial_batchnorm_forward(x, gamma, beta, dict(base))
    dx, dgamma, dbeta = L.spatial_batchnorm_backward(dout, cache)
    assert rel_error(dx, numeric_grad(lambda v: f(v, gamma, beta), x, dout)) < 1e-6
    assert rel_error(dgamma, numeric_grad(lambda v: f(x, v, beta), gamma, dout)) < 1e-8
    assert rel_error(dbeta, numeric_grad(lambda v: f(x, gamma, v), beta, dout)) < 1e-8


def test_batchnorm_bad_mode(rng):
    with pytest.raises(ValueError, match="mode"):
        L.spatial_batchnorm_forward(
            rng.standard_normal((2, 2, 2, 2)), np.ones(2), np.zeros(2), {"mode": "eval"}
        )
    with pytest.raises(ValueError, match="bn_param.*'mode'"):
        L.batchnorm_forward(rng.standard_normal((2, 2)), np.ones(2), np.zeros(2), {})


def test_batchnorm_flat_backward_numeric(rng):
    x = rng.standard_normal((6, 4)) * 2 + 1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))
    _, cache = L.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    dx, dgamma, dbeta = L.batchnorm_backward_alt(dout, cache)
    f = lambda v: L.batchnorm_forward(v, gamma, beta, {"mode": "train"})[0]  # noqa: E731
    assert rel_error(dx, numeric_grad(f, x, dout)) < 1e-7
    np.testing.assert_allclose(dbeta, dout.sum(axis=0), rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# relu, affine, losses


def test_relu_affine(rng):
    x = rng.standard_normal((3, 4, 5))
    out, cache = L.relu_forward(x)
    np.testing.assert_array_equal(out, np.where(x > 0, x, 0))
    dout = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(L.relu_backward(dout, cache), dout * (x > 0))
    w, b = rng.standard_normal((20, 6)), rng.standard_normal(6)
    out, cache = L.affine_forward(x, w, b)
    assert cache[0] is x and cache[1] is w and cache[2] is b
    np.testing.assert_allclose(out, x.reshape(3, 20) @ w + b, rtol=1e-14)
    dout = rng.standard_normal((3, 6))
    dx, dw, db = L.affine_backward(dout, cache)
    assert rel_error(dx, numeric_grad(lambda v: L.affine_forward(v, w, b)[0], x, dout)) < 1e-8
    assert rel_error(dw, numeric_grad(lambda v: L.affine_forward(x, v, b)[0], w, dout)) < 1e-8
    assert rel_error(db, numeric_grad(lambda v: L.affine_forward(x, w, v)[0], b, dout)) < 1e-8


@pytest.mark.parametrize("loss_fn", ["softmax_loss", "svm_loss"])
def test_losses(rng, loss_fn):
    fn = getattr(L, loss_fn)
    n, c = 8, 5
    x = rng.standard_normal((n, c))
    y = rng.integers(0, c, size=n)
    loss, dx = fn(x, y)
    if loss_fn == "softmax_loss":
        p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
        want = -np.mean(np.log(p[np.arange(n), y]))
    else:
        m = np.maximum(0, x - x[np.arange(n), y][:, None] + 1)
        m[np.arange(n), y] = 0
        want = m.sum() / n
    assert abs(loss - want) < 1e-12
    num = numeric_grad(lambda v: np.array(fn(v, y)[0]), x, np.array(1.0))
    assert rel_error(dx, num) < 1e-7
    # large scores do not overflow
    big_loss, _ = L.softmax_loss(x * 1e4, y)
    assert np.isfinite(big_loss)


def test_star_import():
    ns = {}
    exec("from fastconv.cs231n import *", ns)
    for name in [
        "conv_forward_naive",
        "conv_backward_strides",
        "max_pool_forward_reshape",
        "max_pool_backward_im2col",
        "conv_relu_pool_forward",
        "conv_relu_backward",
        "spatial_batchnorm_forward",
        "spatial_batchnorm_backward",
        "relu_forward",
        "affine_backward",
        "softmax_loss",
    ]:
        assert callable(ns[name]), name

"""A convolution's data gradient added into a pending gradient (fc_conv2d_backward_data_into,
the binding's accumulate=True, autograd's Context.grad_into): a residual block's input gets the
shortcut's gradient first, and the block's first convolution adds its own into that array
instead of into a new one the backward pass then adds. Checked against the plain data gradient
plus the array (float64, every GEMM path and a temporary's), and end to end in autograd against
the unfused pass and finite differences."""

import numpy as np
import pytest

import fastconv
from _autograd_ref import torch
from fastconv import _core
from fastconv import functional as K
from fastconv.autograd import Tensor
from fastconv.nn import functional as F

# (x shape, w shape, stride, padding): the GEMM paths' branches, each with and without adding
CASES = [
    ((1, 24, 6, 6), (16, 24, 1, 1), 1, 0),  # 1x1 in place, few (image, group) pairs: tiles
    ((9, 12, 5, 5), (8, 12, 1, 1), 1, 0),  # 1x1 in place, per image
    ((16, 8, 5, 5), (6, 8, 1, 1), 1, 0),  # 1x1 in place, 16 images on a small plane: groups
    ((4, 8, 9, 9), (6, 8, 1, 1), 2, 0),  # 1x1 strided (gathered), small plane: image groups
    ((2, 8, 20, 20), (6, 8, 1, 1), 2, 0),  # 1x1 strided, per image: col2im into dx
    ((2, 5, 9, 9), (7, 5, 3, 3), 1, 1),  # 3x3: col2im into dx
    ((16, 3, 6, 6), (4, 3, 3, 3), 1, 1),  # 3x3, 16 images: image groups' col2im
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adds_the_data_gradient_into_the_array(case, dtype):
    xs, ws, s, p = case
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    cv = K._conv(x, w, s, p, 1, 1, 2)
    dy = rng.standard_normal(cv.out_shape).astype(dtype)
    ref = np.empty(xs, np.float64)  # the reference kernel, float64
    rcv = K._conv(x.astype(np.float64), w.astype(np.float64), s, p, 1, 1, 2)
    _core.conv2d_backward_data(
        rcv.desc, rcv.algo("reference"), dy.astype(np.float64), w.astype(np.float64), ref.ravel()
    )
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for algo in K.algorithms(xs, ws, stride=s, padding=p, direction="backward_data"):
        d0 = rng.standard_normal(xs).astype(dtype)
        out = d0.copy()
        _core.conv2d_backward_data(cv.desc, cv.algo(algo), dy, w, out.ravel(), accumulate=True)
        scale = np.abs(d0).max() + np.abs(ref).max()
        np.testing.assert_allclose(out, d0 + ref, rtol=0, atol=tol * scale, err_msg=algo)


def test_accumulate_refuses_overlapping_arrays():
    x, w = np.ones((1, 4, 5, 5)), np.ones((4, 4, 1, 1))
    cv = K._conv(x, w, 1, 0, 1, 1, 2)
    dy = np.ones(cv.out_shape)
    with pytest.raises(ValueError, match="grad_x: must not overlap"):
        _core.conv2d_backward_data(cv.desc, cv.algo("auto"), dy, w, dy.ravel(), accumulate=True)


def _block(x, w1, w2, bn_w):
    """A residual block's shape: conv, conv, then batch norm + the shortcut + ReLU fused (its
    shortcut gradient is an array of its own, the one the first convolution adds into)."""
    h = F.conv2d(x, w1, padding=1)
    h = F.conv2d(h, w2)
    return F.batch_norm(h, None, None, bn_w, None, training=True, residual=x, activation="relu")


@pytest.mark.parametrize("leaf", [True, False])
def test_residual_block_gradients_match_the_unfused_pass(leaf, monkeypatch):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((3, 4, 6, 6))
    w1, w2 = rng.standard_normal((5, 4, 3, 3)) * 0.3, rng.standard_normal((4, 5, 1, 1)) * 0.3
    bn_w, up = rng.uniform(0.5, 1.5, 4), rng.standard_normal((3, 4, 6, 6))
    calls = []
    kernel = _core.conv2d_backward_data

    def spy(*args, **kw):
        calls.append(kw.get("accumulate", False))
        return kernel(*args, **kw)

    monkeypatch.setattr(_core, "conv2d_backward_data", spy)

    def grads(sums_into):
        monkeypatch.setattr(F._Conv, "sums_into", sums_into)
        calls.clear()
        x = Tensor(x0, requires_grad=True)
        inp = x if leaf else x * 1.0  # (a leaf's .grad adopts the summed array)
        ts = [Tensor(a, requires_grad=True) for a in (w1, w2, bn_w)]
        _block(inp, *ts).backward(up)
        return [x.grad] + [t.grad for t in ts], list(calls)

    fused, fused_calls = grads(True)
    plain, plain_calls = grads(False)
    assert fused_calls.count(True) == 1 and not any(plain_calls)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    if torch is not None:
        tx = torch.tensor(x0, requires_grad=True)
        tw = [torch.tensor(a, requires_grad=True) for a in (w1, w2, bn_w)]
        h = torch.nn.functional.conv2d(torch.nn.functional.conv2d(tx, tw[0], padding=1), tw[1])
        h = torch.nn.functional.batch_norm(h, None, None, tw[2], None, training=True)
        torch.relu(h + tx).backward(torch.tensor(up))
        np.testing.assert_allclose(fused[0], tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_finite_differences_through_the_fused_sum():
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((2, 3, 4, 4))
    w1, w2 = rng.standard_normal((3, 3, 3, 3)) * 0.4, rng.standard_normal((3, 3, 1, 1)) * 0.4
    bn_w, up = np.ones(3), rng.standard_normal((2, 3, 4, 4))

    def loss(xv):
        return float((_block(Tensor(xv), Tensor(w1), Tensor(w2), Tensor(bn_w)).data * up).sum())

    x = Tensor(x0.copy(), requires_grad=True)
    _block(x, Tensor(w1), Tensor(w2), Tensor(bn_w)).backward(up)
    num = np.empty_like(x0)
    eps = 1e-6
    for i in range(x0.size):
        e = np.zeros(x0.size)
        e[i] = eps
        e = e.reshape(x0.shape)
        num.flat[i] = (loss(x0 + e) - loss(x0 - e)) / (2 * eps)
    np.testing.assert_allclose(x.grad, num, rtol=1e-5, atol=1e-7)


def test_shapes_it_cannot_add_into_fall_back():
    """An input the kernels see padded ('same' with an even kernel) or unbatched: a new array,
    added by the backward pass as before."""
    rng = np.random.default_rng(3)
    for xs, ws, pad in (((2, 3, 5, 5), (3, 3, 2, 2), "same"), ((3, 5, 5), (3, 3, 3, 3), 1)):
        x0, w = rng.standard_normal(xs), rng.standard_normal(ws)
        x = Tensor(x0, requires_grad=True)
        y = F.conv2d(x, Tensor(w), padding=pad)
        r = F.relu(x) * 2.0  # a second use: x's gradient is a sum either way
        (y.sum() + r.sum()).backward()
        gx = K.conv2d_backward(np.ones(y.shape), x0, w, padding=pad, needs=(True, False, False))[0]
        np.testing.assert_allclose(x.grad, gx + 2.0 * (x0 > 0), rtol=1e-12, atol=1e-12)


def test_thread_counts_give_the_same_bits():
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((4, 8, 7, 7)).astype(np.float32)
    ws = [rng.standard_normal(s).astype(np.float32) * 0.2 for s in ((8, 8, 3, 3), (8, 8, 1, 1))]
    bn_w, up = np.ones(8, np.float32), rng.standard_normal((4, 8, 7, 7)).astype(np.float32)

    def run():
        x = Tensor(x0, requires_grad=True)
        _block(x, Tensor(ws[0]), Tensor(ws[1]), Tensor(bn_w)).backward(up)
        return x.grad

    with fastconv.threads(1):
        one = run()
    with fastconv.threads(2):
        two = run()
    assert np.array_equal(one, two)

"""Batch norm on fastconv's kernels (csrc/batchnorm.cpp): training and eval, forward and every
gradient, plain and fused with a residual add and ReLU, against PyTorch in float64 (1e-10) and
float32 (the accuracy contract), central finite differences for the fused paths, odd shapes,
running statistics, determinism, and bad input."""

import numpy as np
import pytest

from _autograd_ref import assert_close, check_op, torch
from fastconv import _core, nn
from fastconv.autograd import Tensor
from fastconv.nn import functional as F

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
TF = torch.nn.functional if torch is not None else None

SHAPES = [(2, 3, 4, 5), (1, 1, 3, 3), (5, 2, 1, 1), (1, 4, 7, 1), (3, 5), (2, 3, 6), (8, 16, 9, 9)]


def _stats(c, rng):
    return rng.standard_normal(c), rng.uniform(0.5, 2.0, c)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("fuse", [None, "relu", "residual", "residual+relu"])
def test_matches_torch_and_finite_differences(shape, training, fuse):
    rng = np.random.default_rng(1)
    c = shape[1]
    rm, rv = _stats(c, rng)
    residual = fuse and "residual" in fuse
    act = "relu" if fuse and "relu" in fuse else None
    shapes = [shape, (c,), (c,)] + ([shape] if residual else [])

    def ours(x, w, b, r=None):  # fresh running statistics per call (finite differences)
        return F.batch_norm(
            x, rm.copy(), rv.copy(), w, b, training=training, eps=1e-3, residual=r, activation=act
        )

    def theirs(x, w, b, r=None):
        y = TF.batch_norm(x, torch.tensor(rm), torch.tensor(rv), w, b, training=training, eps=1e-3)
        y = y + r if r is not None else y
        return TF.relu(y) if act else y

    # (finite differences only where they fit: away from ReLU's kink is what the random data gives)
    check_op(shapes, ours, TF and theirs, fd=int(np.prod(shape)) <= 200)


@needs_torch
@pytest.mark.parametrize("fuse", [None, "residual+relu"])
def test_float32_within_the_accuracy_contract(fuse):
    rng = np.random.default_rng(2)
    shape = (4, 32, 14, 14)
    x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)  # a mean far from 0
    w, b = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32) if fuse else None
    up = rng.standard_normal(shape).astype(np.float32)
    act = "relu" if fuse else None
    ts = [Tensor(a, requires_grad=True) for a in (x, w, b)] + (
        [Tensor(r, requires_grad=True)] if fuse else []
    )
    y = F.batch_norm(
        ts[0],
        None,
        None,
        ts[1],
        ts[2],
        training=True,
        residual=ts[3] if fuse else None,
        activation=act,
    )
    y.backward(up)
    tt = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)] + (
        [torch.tensor(r.astype(np.float64), requires_grad=True)] if fuse else []
    )
    yt = TF.batch_norm(tt[0], None, None, tt[1], tt[2], training=True)
    if fuse:
        yt = TF.relu(yt + tt[3])
    yt.backward(torch.tensor(up.astype(np.float64)))
    assert_close(y.data, yt.detach().numpy(), 1e-5, "y")
    for t, u, name in zip(ts, tt, "x w b r".split()):
        assert t.grad.dtype == np.float32
        assert_close(t.grad, u.grad.numpy(), 1e-4, f"grad {name}")


@needs_torch
@pytest.mark.parametrize("momentum", [0.1, None])
def test_module_running_statistics_match_torch(momentum):
    rng = np.random.default_rng(3)
    ours, theirs = (
        nn.BatchNorm2d(3, momentum=momentum, dtype=np.float64),
        torch.nn.BatchNorm2d(3, momentum=momentum, dtype=torch.float64),
    )
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
        ours(Tensor(x), None, "relu")
        theirs(torch.tensor(x))
    for k in ("running_mean", "running_var"):
        assert_close(getattr(ours, k), getattr(theirs, k).numpy(), 1e-12, k)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3


@pytest.mark.parametrize("layout", ["in place", "strided", "other dtype"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_running_statistics_formula(dtype, layout):
    # The kernel call updates arrays it can write in place; NumPy updates the others (a strided
    # view, float32 statistics of a float64 batch): the same formula, PyTorch's, in double
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((6, 4, 3, 5)) * 3 + 2).astype(dtype)
    stat_dtype = np.float32 if layout == "other dtype" and dtype == np.float64 else dtype
    if layout == "other dtype" and dtype == np.float32:
        stat_dtype = np.float64
    base_m = rng.standard_normal(8).astype(stat_dtype)
    base_v = rng.uniform(0.5, 2, 8).astype(stat_dtype)
    saved = base_m.copy()
    rm, rv = (a[::2] if layout == "strided" else a[:4].copy() for a in (base_m, base_v))
    before_m, before_v = rm.astype(np.float64), rv.astype(np.float64)
    F.batch_norm(Tensor(x), rm, rv, training=True, momentum=0.3)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3), ddof=1)
    tol = 1e-6 if np.float32 in (dtype, stat_dtype) else 1e-12
    assert rm.dtype == stat_dtype and rv.dtype == stat_dtype
    np.testing.assert_allclose(rm, 0.3 * mean + 0.7 * before_m, rtol=tol, atol=tol)
    np.testing.assert_allclose(rv, 0.3 * var + 0.7 * before_v, rtol=tol, atol=tol)
    if layout == "strided":  # the elements between the view's are untouched
        np.testing.assert_array_equal(base_m[1::2], saved[1::2])


def test_kernel_updates_running_statistics_only_from_batch_statistics():
    x, y = np.ones((2, 3, 4), np.float32), np.empty((2, 3, 4), np.float32)
    mean, invstd, rm, rv = (np.ones(3, np.float32) for _ in range(4))
    with pytest.raises(ValueError, match="running_mean, running_var"):
        _core.batch_norm_forward(
            x, 2, 3, 4, None, None, None, 0, False, 1e-5, mean, None, invstd, y, None, rm, rv, 0.1
        )
    with pytest.raises(TypeError, match="running_var"):
        _core.batch_norm_forward(
            x,
            2,
            3,
            4,
            None,
            None,
            None,
            0,
            True,
            1e-5,
            mean,
            mean.copy(),
            invstd,
            y,
            None,
            rm,
            rv.astype(np.float64),
            0.1,
        )
    np.testing.assert_array_equal(rm, 1)


def test_fused_is_the_composition():
    rng = np.random.default_rng(4)
    x, r = rng.standard_normal((3, 4, 5, 5)), rng.standard_normal((3, 4, 5, 5))
    bn = nn.BatchNorm2d(4, dtype=np.float64)
    fused = bn(Tensor(x), Tensor(r), "relu").data
    plain = F.relu(bn(Tensor(x)) + Tensor(r)).data
    np.testing.assert_allclose(fused, plain, rtol=0, atol=1e-14)


@pytest.mark.parametrize("shape", [(3, 7, 11, 13), (4, 37, 3, 3)])
@pytest.mark.parametrize("mode", ["relu", "residual+relu", "plain", "weight only"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_deterministic_at_any_thread_count(dtype, mode, shape):
    # the kernels split channels into groups by the thread count (bn_group): every grouping
    # gives the same bits
    import fastconv

    rng = np.random.default_rng(5)
    c = shape[1]
    x, r = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    up = rng.standard_normal(x.shape).astype(dtype)

    def run():
        t = Tensor(x, requires_grad=mode != "weight only")
        w = Tensor(np.linspace(0.5, 2, c).astype(dtype), requires_grad=True)
        tr = Tensor(r, requires_grad=True) if mode == "residual+relu" else None
        act = None if mode == "plain" else "relu"
        y = F.batch_norm(t, None, None, w, None, training=True, residual=tr, activation=act)
        y.backward(up)
        return [y.data, w.grad] + [a.grad for a in (t, tr) if a is not None and a.requires_grad]

    with fastconv.threads(1):
        one = run()
    for n in (2, 3):
        with fastconv.threads(n):
            two, again = run(), run()
        for a, b, c2 in zip(one, two, again):
            assert np.array_equal(a, b) and np.array_equal(b, c2)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(6)
    x, r = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    x0, r0 = x.copy(), r.copy()
    t, tr = Tensor(x, requires_grad=True), Tensor(r, requires_grad=True)
    F.batch_norm(
        t, None, None, None, None, training=True, residual=tr, activation="relu"
    ).sum().backward()
    assert np.array_equal(x, x0) and np.array_equal(r, r0)


def test_bad_input_is_a_clear_error():
    x = np.zeros((2, 3, 4, 4))
    with pytest.raises(ValueError, match="activation"):
        F.batch_norm(Tensor(x), None, None, training=True, activation="gelu")
    with pytest.raises(ValueError, match="residual"):
        F.batch_norm(Tensor(x), None, None, training=True, residual=Tensor(np.zeros((2, 3, 4, 5))))
    with pytest.raises(ValueError, match="weight"):
        F.batch_norm(Tensor(x), None, None, np.ones(4), training=True)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.batch_norm(Tensor(x.astype(np.int32)), None, None, training=True)
    with pytest.raises(ValueError, match="more than 1 value"):
        F.batch_norm(Tensor(np.zeros((1, 3, 1, 1))), None, None, training=True)
    # the binding checks buffer sizes: a short output is an error, not a write past its end
    m, i = np.empty(3), np.empty(3)
    with pytest.raises(ValueError, match="out"):
        _core.batch_norm_forward(
            x, 2, 3, 16, None, None, None, 0, True, 1e-5, m, None, i, np.empty(5)
        )
    with pytest.raises(Exception, match="act"):
        _core.batch_norm_forward(
            x, 2, 3, 16, None, None, None, 3, True, 1e-5, m, None, i, np.empty_like(x)
        )


def test_empty_batch_passes():
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    y = bn(Tensor(np.zeros((0, 3, 4, 4))))
    assert y.shape == (0, 3, 4, 4)
    assert np.array_equal(bn.running_mean, np.zeros(3)) and np.array_equal(
        bn.running_var, np.ones(3)
    )


def _planes_mask(y):
    """The ReLU mask fc_batch_norm_forward_masked documents, from y: per (image, channel) plane
    (hw + 7) // 8 bytes, bit j % 8 of byte j // 8 set where element j is > 0."""
    n, c = y.shape[:2]
    planes = (y.reshape(n * c, -1) > 0).astype(np.uint8)
    return np.packbits(planes, axis=1, bitorder="little").reshape(-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (2, 4), (7, 7), (3, 11), (8, 8)])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("batch_stats", [True, False])
def test_relu_mask_gives_the_same_bits(dtype, hw, residual, batch_stats):
    """The masked entries (the mask written with the output, read by the backward in place of
    y) give the unmasked entries' outputs and gradients bit for bit, the mask is y > 0 plane by
    plane, and NaN, +-0 and +-inf take the ReLU's path."""
    rng = np.random.default_rng(7)
    n, c = 3, 5
    h, w = hw
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    x.flat[::13] = 0.0  # outputs that are exactly 0 (batch statistics or not)
    x.flat[5::17] = -0.0
    if not batch_stats:
        x.flat[3] = np.nan
        x.flat[4] = np.inf
        x.flat[9] = -np.inf
    res = rng.standard_normal(x.shape).astype(dtype) if residual else None
    wt, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    count = h * w

    def forward(mask):
        if batch_stats:
            mean, var, inv = (np.empty(c, dtype) for _ in range(3))
        else:  # (the running statistics, inputs)
            mean, var, inv = (
                np.arange(c, dtype=dtype) / 7,
                None,
                np.linspace(0.5, 2, c, dtype=dtype),
            )
        y = np.empty_like(x)
        _core.batch_norm_forward(
            x, n, c, count, wt, b, res, 1, batch_stats, 1e-5, mean, var, inv, y, mask
        )
        return y, mean, inv

    mask = np.full(n * c * ((count + 7) // 8), 0xA5, np.uint8)  # (every bit overwritten)
    y0, mean, inv = forward(None)
    y1, _, _ = forward(mask)
    assert np.array_equal(y0, y1, equal_nan=True)
    assert np.array_equal(mask, _planes_mask(y0))
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy.flat[2] = np.nan  # a NaN gradient passes where the output was positive, else 0
    outs = []
    for use_mask in (False, True):
        dx, dr = np.empty_like(x), np.empty_like(x)
        dw, db = np.empty(c, dtype), np.empty(c, dtype)
        _core.batch_norm_backward(
            dy,
            x,
            n,
            c,
            count,
            None if use_mask else y0,
            mean,
            inv,
            wt,
            batch_stats,
            dx,
            dr,
            dw,
            db,
            mask if use_mask else None,
        )
        outs.append((dx, dr, dw, db))
    for a, b_ in zip(*outs):
        assert np.array_equal(a, b_, equal_nan=True)
    np.testing.assert_array_equal(outs[1][1], np.where(y0 > 0, dy, 0))


def test_relu_mask_bad_input_is_a_clear_error():
    x = np.zeros((2, 3, 4, 4), np.float32)
    m, i, y = np.empty(3, np.float32), np.empty(3, np.float32), np.empty_like(x)
    good = np.empty(2 * 3 * 2, np.uint8)
    fwd = (x, 2, 3, 16, None, None, None, 1, True, 1e-5, m, None, i, y)
    with pytest.raises(TypeError, match="mask: dtype must be uint8"):
        _core.batch_norm_forward(*fwd, good.astype(np.int8))
    with pytest.raises(ValueError, match="mask: has 11 elements"):
        _core.batch_norm_forward(*fwd, good[:11])
    with pytest.raises(TypeError, match="mask: must be a numpy array"):
        _core.batch_norm_forward(*fwd, [0] * 12)
    with pytest.raises(ValueError, match="act == 1"):
        _core.batch_norm_forward(*(fwd[:7] + (0,) + fwd[8:]), good)
    _core.batch_norm_forward(*fwd, good)
    with pytest.raises(ValueError, match="y and mask"):
        _core.batch_norm_backward(x, x, 2, 3, 16, y, m, i, None, True, None, None, None, None, good)
    with pytest.raises(ValueError, match="mask: must be writeable"):
        ro = good.copy()
        ro.flags.writeable = False
        _core.batch_norm_forward(*fwd, ro)


@pytest.mark.parametrize("fuse", ["relu", "residual+relu"])
def test_layer_keeps_the_mask_not_the_output(fuse, monkeypatch):
    """With a fused ReLU the layer keeps the forward's mask for its backward, not its output;
    without gradients it writes none."""
    from fastconv.autograd import no_grad

    masks = []
    kernel = _core.batch_norm_forward

    def spy(*args):
        masks.append(args[14] if len(args) > 14 else None)
        return kernel(*args)

    monkeypatch.setattr(_core, "batch_norm_forward", spy)
    rng = np.random.default_rng(8)
    x = Tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True)
    r = Tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True) if "res" in fuse else None
    y = F.batch_norm(x, None, None, training=True, residual=r, activation="relu")
    saved = [s for s in y._ctx.saved if isinstance(s, np.ndarray)]
    assert not any(s is y.data for s in saved)
    assert [s.dtype for s in saved].count(np.uint8) == 1
    with no_grad():
        z = F.batch_norm(x, None, None, training=True, residual=r, activation="relu")
    assert z._ctx is None
    assert masks[0] is not None and masks[1] is None


@pytest.mark.parametrize("shape", [(3, 7, 11, 13), (4, 37, 3, 3), (2, 5, 1, 1)])
def test_weight_gradient_alone_equals_the_full_backward(shape):
    # without x's gradient a fused ReLU's masked gradient goes to the kernel's own scratch, not
    # to grad_x: the same sums, the same bits
    rng = np.random.default_rng(9)
    x, up = rng.standard_normal(shape), rng.standard_normal(shape)
    grads = []
    for need_x in (True, False):
        t = Tensor(x, requires_grad=need_x)
        w, b = (
            Tensor(rng.standard_normal(shape[1]) * 0 + v, requires_grad=True) for v in (1.5, 0.2)
        )
        F.batch_norm(t, None, None, w, b, training=True, activation="relu").backward(up)
        grads.append((w.grad, b.grad))
    for a, b in zip(*grads):
        assert np.array_equal(a, b)

"""nn.Sequential's Conv2d or BatchNorm followed by ReLU, run as one node.

A convolution's (Conv2dRelu): the ReLU is applied in the convolution's output stage (the GEMM
algorithms' epilogue, Winograd's output transform where a training step keeps its filters, one
in-place pass otherwise). Checked: the same bits as the two modules called one by one, forward
and every gradient, for each algorithm auto picks (and with autotuning on); against the float64
reference; NaN kept as ReLU keeps it; where Sequential does not fuse (hooks, subclasses, a
forward being captured), and the binding's act argument.

A batch norm's (its fused activation, one pass each way): the same bits, gradients and running
statistics as the two modules one by one (the tests at the end).
"""

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from conftest import DTYPE_IDS, DTYPES, TOLERANCE, assert_close
from fastconv import _core, autograd, nn
from fastconv.nn import functional as NF
from reference import conv2d_backward_ref, conv2d_backward_scale, conv2d_ref, conv2d_scale

# (x shape, out channels, kernel, stride, padding, dilation, groups): what auto runs on each
# is asserted below, so a heuristic change cannot quietly drop an algorithm from the test
CASES = {
    "im2col": ((2, 3, 11, 10), 8, 3, 2, 1, 1, 1),
    "gemm1x1": ((2, 16, 7, 7), 24, 1, 1, 0, 1, 1),
    "winograd-kept": ((4, 64, 14, 14), 64, 3, 1, 1, 1, 1),  # (the step keeps the filters)
    "winograd": ((4, 16, 28, 28), 32, 3, 1, 1, 1, 1),  # (196 tiles: not kept)
    "im2col-implicit": ((2, 3, 20, 20), 8, 3, 1, 1, 1, 1),  # (implicit columns: 27 terms)
    "direct": ((2, 12, 20, 20), 8, 5, 1, 2, 1, 1),
    "fft": ((3, 8, 40, 40), 12, 7, 1, 3, 1, 1),  # (4704 multiply-adds a position: 4096+)
    "depthwise": ((2, 8, 10, 10), 8, 3, 1, 1, 1, 8),
    "dilated": ((2, 8, 12, 12), 8, 3, 1, 2, 2, 1),
}


def _pair(case, dtype, bias=True, seed=0):
    x_shape, k, ks, stride, pad, dil, groups = CASES[case]
    conv = nn.Conv2d(
        x_shape[1],
        k,
        ks,
        stride=stride,
        padding=pad,
        dilation=dil,
        groups=groups,
        bias=bias,
        dtype=dtype,
    )
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    return conv, nn.ReLU(), x


def _auto(case):
    x_shape, k, ks, stride, pad, dil, groups = CASES[case]
    w_shape = (k, x_shape[1] // groups, ks, ks)
    return F.algorithms(x_shape, w_shape, stride=stride, padding=pad, dilation=dil, groups=groups)


def _step(model, x, gy, params, x_grad=True):
    """(y, grad_x or None, grads of params) of one forward and backward."""
    for p in params:
        p.grad = None
    xt = autograd.Tensor(x.copy(), requires_grad=x_grad)
    y = model(xt)
    y.backward(gy)
    return y, (xt.grad if x_grad else None), [p.grad.copy() for p in params]


@pytest.mark.parametrize("case", list(CASES))
def test_auto_runs_the_algorithm_named(case):
    want = {"winograd-kept": "winograd", "im2col-implicit": "im2col", "dilated": "direct"}.get(
        case, case
    )
    assert _auto(case)[0] == want
    x_shape, k, ks, stride, pad, dil, groups = CASES[case]
    desc = x_shape + (k, ks, ks, stride, stride, pad, pad, dil, dil, groups)
    kept = _core.conv2d_prepared_reuse(desc, F._ALGO_IDS["winograd"], False)
    assert kept == (case == "winograd-kept") or want != "winograd"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_equals_modules_one_by_one(case, bias, dtype):
    conv, relu, x = _pair(case, dtype, bias)
    params = [p for p in (conv.weight, conv.bias) if p is not None]
    fused = nn.Sequential(conv, relu)
    rng = np.random.default_rng(1)
    y0 = fused(autograd.Tensor(x))
    gy = rng.standard_normal(y0.shape).astype(dtype)
    for x_grad in (True, False):
        yf, gxf, gpf = _step(fused, x, gy, params, x_grad)
        assert yf._ctx.fn is NF.Conv2dRelu
        yu, gxu, gpu = _step(lambda t: relu(conv(t)), x, gy, params, x_grad)
        assert yu._ctx.fn is not NF.Conv2dRelu
        np.testing.assert_array_equal(yf.data, yu.data)
        if x_grad:
            np.testing.assert_array_equal(gxf, gxu)
        for a, b in zip(gpf, gpu):
            np.testing.assert_array_equal(a, b)
    with autograd.no_grad():
        np.testing.assert_array_equal(fused(autograd.Tensor(x)).data, relu(conv(x)).data)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", ["im2col", "winograd-kept", "fft"])
def test_fused_against_the_float64_reference(case, dtype):
    conv, relu, x = _pair(case, dtype)
    _, _, _, stride, pad, dil, groups = CASES[case]
    geo = dict(stride=(stride,) * 2, padding=(pad,) * 2, dilation=(dil,) * 2, groups=groups)
    w, b = conv.weight.data, conv.bias.data
    pre = conv2d_ref(x, w, b, **geo)
    want = np.maximum(pre, 0)
    gy = np.random.default_rng(2).standard_normal(want.shape).astype(dtype)
    y, gx, (gw, gb) = _step(nn.Sequential(conv, relu), x, gy, [conv.weight, conv.bias])
    scale_y = conv2d_scale(x, w, b, **geo)
    assert_close(y.data, want, dtype, scale_y, "y")
    # the gradient through the mask of fastconv's own output, as autograd takes it: where it
    # differs from the reference's, the pre-activation is within the tolerance of 0 (float32's
    # rounding puts a few of 50k outputs on the other side of 0 with some weights)
    mask = y.data > 0
    flipped = mask != (pre > 0)
    assert (np.abs(pre[flipped]) <= TOLERANCE[np.dtype(dtype)] * scale_y[flipped]).all()
    dy = np.where(mask, gy.astype(np.float64), 0.0)
    want_gx, want_gw = conv2d_backward_ref(dy, x, w, **geo)[:2]
    scale_gx, scale_gw = conv2d_backward_scale(dy, x, w, **geo)[:2]
    assert_close(gx, want_gx, dtype, scale_gx, "grad_x")
    assert_close(gw, want_gw, dtype, scale_gw, "grad_w")
    scale_gb = np.abs(dy).sum(axis=(0, 2, 3))
    assert_close(gb, dy.sum(axis=(0, 2, 3)), dtype, scale_gb, "grad_b")


@pytest.mark.parametrize("case", ["im2col", "gemm1x1", "winograd", "direct"])
def test_nan_and_negative_zero_as_relu_keeps_them(case):
    conv, relu, x = _pair(case, np.float32)
    x[0, 0, 2, 3] = np.nan
    seq = nn.Sequential(conv, relu)
    with autograd.no_grad():
        got, want = seq(autograd.Tensor(x)).data, relu(conv(x)).data
    assert np.isnan(got).any()
    np.testing.assert_array_equal(got, want)  # (NaN where ReLU leaves NaN)
    assert not np.signbit(got[got == 0]).any()  # ReLU gives +0, never -0


def test_autotuning_on_gives_the_same_values():
    conv, relu, x = _pair("winograd", np.float32)
    seq = nn.Sequential(conv, relu)
    previous = fastconv.get_autotune()
    fastconv.set_autotune("on")
    try:
        with autograd.no_grad():
            want = relu(conv(x)).data  # (tunes, and remembers the choice for the next call)
            got = seq(autograd.Tensor(x)).data
    finally:
        fastconv.set_autotune(previous)
    np.testing.assert_array_equal(got, want)


def test_repeated_calls_are_bitwise_equal():
    conv, relu, x = _pair("im2col", np.float32)
    seq = nn.Sequential(conv, relu)
    gy = np.ones((2, 8, 6, 5), np.float32)
    first = _step(seq, x, gy, [conv.weight, conv.bias])
    again = _step(seq, x, gy, [conv.weight, conv.bias])
    np.testing.assert_array_equal(first[0].data, again[0].data)
    np.testing.assert_array_equal(first[1], again[1])
    for a, b in zip(first[2], again[2]):
        np.testing.assert_array_equal(a, b)


def test_inputs_not_modified_and_empty_batch():
    conv, relu, x = _pair("gemm1x1", np.float64)
    before = x.copy()
    nn.Sequential(conv, relu)(autograd.Tensor(x))
    np.testing.assert_array_equal(x, before)
    y = nn.Sequential(conv, relu)(autograd.Tensor(np.zeros((0, 16, 7, 7))))
    assert y.shape == (0, 24, 7, 7)


def test_reflect_padding_fuses_with_the_same_values():
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = nn.Sequential(conv, nn.ReLU())(autograd.Tensor(x, requires_grad=True))
    assert y._ctx.fn is NF.Conv2dRelu
    np.testing.assert_array_equal(y.data, nn.ReLU()(conv(x)).data)


def _fn_of(seq, x):
    return seq(autograd.Tensor(x, requires_grad=True))._ctx.fn


def test_hooks_see_the_convolution_output_unfused():
    conv, relu, x = _pair("im2col", np.float32)
    seen = []
    handle = conv.register_forward_hook(lambda m, args, out: seen.append(out.data.copy()))
    assert _fn_of(nn.Sequential(conv, relu), x) is autograd.Relu
    assert (seen[0] < 0).any()  # the convolution's own output, before the ReLU
    handle.remove()
    handle = relu.register_forward_pre_hook(lambda m, args: None)
    assert _fn_of(nn.Sequential(conv, relu), x) is autograd.Relu
    handle.remove()
    assert _fn_of(nn.Sequential(conv, relu), x) is NF.Conv2dRelu


def test_subclasses_and_other_orders_are_not_fused():
    conv, relu, x = _pair("im2col", np.float32)

    class Scaled(nn.Conv2d):
        def forward(self, t):
            return super().forward(t) * 2.0

    class Clipped(nn.ReLU):
        def forward(self, t):
            return super().forward(t - 0.5)

    scaled = Scaled(3, 8, 3, stride=2, padding=1)
    assert _fn_of(nn.Sequential(scaled, relu), x) is autograd.Relu
    with autograd.no_grad():
        np.testing.assert_array_equal(nn.Sequential(scaled, relu)(x).data, relu(scaled(x)).data)
    assert _fn_of(nn.Sequential(conv, Clipped()), x) is not NF.Conv2dRelu
    assert _fn_of(nn.Sequential(relu, conv), x) is not NF.Conv2dRelu
    assert _fn_of(nn.Sequential(conv), x) is not NF.Conv2dRelu


def test_a_captured_forward_sees_both_ops():
    conv, relu, x = _pair("im2col", np.float32)
    model = nn.Sequential(conv, relu).eval()
    recorded = []
    autograd._tracer.record = lambda cls, *rest: recorded.append(cls)
    try:
        with autograd.no_grad():
            model(autograd.Tensor(x))
    finally:
        autograd._tracer.record = None
    assert NF.Conv2dRelu not in recorded and autograd.Relu in recorded


def test_compiled_plan_of_a_fused_sequential_matches_eager():
    from fastconv import inference

    conv, relu, x = _pair("winograd", np.float32)
    model = nn.Sequential(conv, relu).eval()
    plan = inference.compile(model, x)
    with autograd.no_grad():
        want = model(autograd.Tensor(x)).data
    w, b = conv.weight.data, conv.bias.data
    assert_close(plan(x), want, np.float32, conv2d_scale(x, w, b, (1, 1), (1, 1), (1, 1), 1))


def test_prepared_forward_act_argument():
    x_shape, k, ks, stride, pad, dil, groups = CASES["gemm1x1"]
    x = np.random.default_rng(4).standard_normal(x_shape).astype(np.float32)
    w = np.random.default_rng(5).standard_normal((k, x_shape[1], 1, 1)).astype(np.float32)
    desc = x_shape + (k, 1, 1, 1, 1, 0, 0, 1, 1, 1)
    p = _core.Conv2dPrepared(desc, F._ALGO_IDS["gemm1x1"], w)
    y = np.empty((x_shape[0], k) + x_shape[2:], np.float32)
    p.forward(x, None, y.reshape(-1), 1)
    np.testing.assert_array_equal(y, np.maximum(F.conv2d(x, w, algo="gemm1x1"), 0))
    p.forward(x, None, y.reshape(-1))  # (act defaults to none)
    np.testing.assert_array_equal(y, F.conv2d(x, w, algo="gemm1x1"))
    with pytest.raises(ValueError, match="act"):
        p.forward(x, None, y.reshape(-1), 99)


# -- batch norm + ReLU -------------------------------------------------------------------------


def _bn_step(model, bn, x, gy):
    bn.zero_grad()
    xt = autograd.Tensor(x.copy(), requires_grad=True)
    y = model(xt)
    y.backward(gy)
    stats = [a.copy() for a in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]
    return y, [xt.grad.copy(), bn.weight.grad.copy(), bn.bias.grad.copy()], stats


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dims", [1, 2])
def test_batch_norm_relu_fused_equals_modules_one_by_one(dims, training, dtype):
    rng = np.random.default_rng(6)
    shape = (4, 6, 5, 7) if dims == 2 else (9, 6)
    x = rng.standard_normal(shape).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    weight, bias, mean = (rng.standard_normal(6) for _ in range(3))
    results = []
    for fused in (True, False):
        bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(6, dtype=dtype)
        bn.weight.data[:], bn.bias.data[:], bn.running_mean[:] = weight, bias, mean
        bn.train(training)
        relu = nn.ReLU()
        model = nn.Sequential(bn, relu) if fused else (lambda t, bn=bn, relu=relu: relu(bn(t)))
        y, grads, stats = _bn_step(model, bn, x, gy)
        assert (y._ctx.fn is not autograd.Relu) == fused
        results.append([y.data] + grads + stats)
    for a, b in zip(*results):  # output, gradients, running statistics
        np.testing.assert_array_equal(a, b)


def test_conv_batch_norm_relu_fuses_the_batch_norm_pair():
    conv, bn, relu = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
    x = np.random.default_rng(7).standard_normal((2, 3, 6, 6)).astype(np.float32)
    seen = []
    for m in (conv, bn):
        m.register_forward_hook(lambda mod, args, out: seen.append(type(mod)))
    y = nn.Sequential(conv, bn, relu)(autograd.Tensor(x, requires_grad=True))
    assert seen == [nn.Conv2d, nn.BatchNorm2d] and y._ctx.fn is autograd.Relu  # (hooked)
    bn._forward_hooks.clear()
    y = nn.Sequential(conv, bn, relu)(autograd.Tensor(x, requires_grad=True))
    assert y._ctx.fn is not autograd.Relu and y._ctx.fn is not NF.Conv2dRelu

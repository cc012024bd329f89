"""Transposed convolution (nn.functional.conv_transpose2d, nn.ConvTranspose2d) against PyTorch:
forward and the three gradients in float64 (1e-12) and float32 (1e-4), argument errors, the
module's parameters, initialisation and output_size."""

import itertools
import math

import numpy as np
import pytest

from _autograd_ref import check_op, rel_err, torch
from fastconv import nn
from fastconv.autograd import Tensor
from fastconv.nn import functional as F
from fastconv.nn._conv_transpose import conv_transpose2d_array, conv_transpose2d_backward_array

pytestmark = pytest.mark.skipif(torch is None, reason="torch not installed")
TF = torch.nn.functional if torch is not None else None


def _torch_all(x, w, b, gy, **p):
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    y = TF.conv_transpose2d(xt, wt, bt, **p)
    y.backward(torch.tensor(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def _ours_all(x, w, b, gy, **p):
    xt, wt, bt = (Tensor(a.copy(), requires_grad=True) for a in (x, w, b))
    y = F.conv_transpose2d(xt, wt, bt, **p)
    y.backward(gy)
    return y.data, xt.grad, wt.grad, bt.grad


def _out_size(h, k, s, p, op, d):
    return (h - 1) * s - 2 * p + d * (k - 1) + op + 1


# stride x padding x output_padding x groups x dilation x batch, kernel 2x3 on a 4x5 input with
# 4 -> 6 channels (output_padding only where it is smaller than stride or dilation)
GRID = [
    c
    for c in itertools.product((1, 2, 3), (0, 1, 2), (0, 1), (1, 2), (1, 2), (1, 3))
    if c[2] < c[0] or c[2] < c[4]
]


@pytest.mark.parametrize("stride,padding,output_padding,groups,dilation,n", GRID)
def test_float64_matches_torch(stride, padding, output_padding, groups, dilation, n):
    rng = np.random.default_rng(
        stride * 100 + padding * 10 + output_padding + groups + 7 * dilation + n
    )
    kh, kw = 2, 3
    if (
        min(
            _out_size(4, kh, stride, padding, output_padding, dilation),
            _out_size(5, kw, stride, padding, output_padding, dilation),
        )
        < 1
    ):
        pytest.skip("empty output")
    x = rng.standard_normal((n, 4, 4, 5))
    w = rng.standard_normal((4, 6 // groups, kh, kw))
    b = rng.standard_normal(6)
    p = dict(
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    gy = rng.standard_normal(TF.conv_transpose2d(torch.tensor(x), torch.tensor(w), None, **p).shape)
    ours, theirs = _ours_all(x, w, b, gy, **p), _torch_all(x, w, b, gy, **p)
    for what, a, t in zip(("forward", "grad input", "grad weight", "grad bias"), ours, theirs):
        assert a.shape == t.shape, what
        assert a.dtype == np.float64
        assert rel_err(a, t) <= 1e-12, what


CASES = [  # x shape, w shape, stride, padding, output_padding, groups, dilation
    ((2, 3, 5, 4), (3, 2, 3, 3), 2, 1, 1, 1, 1),
    ((1, 4, 3, 6), (4, 3, 1, 4), (2, 3), (0, 1), (1, 2), 2, 1),
    (
        (3, 2, 4, 4),
        (2, 5, 3, 2),
        1,
        (2, 0),
        (1, 0),
        1,
        (2, 1),
    ),  # output_padding >= stride, < dilation
    ((2, 6, 3, 3), (6, 1, 3, 3), 2, 1, 0, 6, 1),  # depthwise
    ((1, 3, 7, 7), (3, 4, 1, 1), 1, 0, 0, 1, 1),  # 1x1
    ((2, 8, 2, 3), (8, 4, 4, 4), 2, 1, 0, 1, 1),  # DCGAN's 4x4/2 upsampling
    ((1, 2, 2, 2), (2, 2, 7, 1), 3, (3, 0), 2, 1, 1),  # tall kernel, large padding
]


@pytest.mark.parametrize("xs,ws,stride,padding,output_padding,groups,dilation", CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-4)])
def test_cases_match_torch(xs, ws, stride, padding, output_padding, groups, dilation, dtype, tol):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[1] * groups).astype(dtype)
    p = dict(
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    gy = rng.standard_normal(
        TF.conv_transpose2d(torch.tensor(x), torch.tensor(w), None, **p).shape
    ).astype(dtype)
    ours, theirs = _ours_all(x, w, b, gy, **p), _torch_all(x, w, b, gy, **p)
    for what, a, t in zip(("forward", "grad input", "grad weight", "grad bias"), ours, theirs):
        assert a.dtype == dtype, what
        assert rel_err(a, t) <= tol, what


def test_finite_differences_and_no_bias():
    def op(x, w):
        return F.conv_transpose2d(x, w, None, stride=2, padding=1, output_padding=1, groups=2)

    def top(x, w):
        return TF.conv_transpose2d(x, w, None, stride=2, padding=1, output_padding=1, groups=2)

    check_op([(1, 4, 3, 2), (4, 1, 3, 2)], op, top)


def test_unbatched_and_empty_batch():
    rng = np.random.default_rng(2)
    x, w, b = (
        rng.standard_normal((3, 4, 5)),
        rng.standard_normal((3, 2, 3, 3)),
        rng.standard_normal(2),
    )
    y = conv_transpose2d_array(x, w, b, stride=2, padding=1, output_padding=1)
    t = TF.conv_transpose2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), 2, 1, 1)
    assert y.shape == tuple(t.shape) and rel_err(y, t.numpy()) <= 1e-12
    gx, gw, gb = conv_transpose2d_backward_array(np.ones_like(y), x, w, 2, 1, 1)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (2,)
    empty = conv_transpose2d_array(np.zeros((0, 3, 4, 5)), w, b, stride=2)
    assert empty.shape == (0, 2, 9, 11)
    gx, gw, gb = conv_transpose2d_backward_array(
        np.zeros((0, 2, 9, 11)), np.zeros((0, 3, 4, 5)), w, 2
    )
    assert gx.shape == (0, 3, 4, 5) and not gw.any() and not gb.any()


@pytest.mark.parametrize("algo", ["im2col", "reference", "direct"])
def test_algo_passes_through(algo):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((3, 4, 3, 3))
    ref = conv_transpose2d_array(x, w, None, stride=2, padding=1)
    got = conv_transpose2d_array(x, w, None, stride=2, padding=1, algo=algo)
    assert rel_err(got, ref) <= 1e-12
    with pytest.raises(ValueError, match="algo"):
        conv_transpose2d_array(x, w, None, algo="nope")


def test_inputs_are_not_modified():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 6, 5))[:, :, ::2]  # non-contiguous
    w, b = rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(3)
    w.flags.writeable = False
    copies = [a.copy() for a in (x, w, b)]
    y = conv_transpose2d_array(x, w, b, stride=2, output_padding=1)
    g = rng.standard_normal(y.shape)
    g_copy = g.copy()
    conv_transpose2d_backward_array(g, x, w, stride=2, output_padding=1)
    for a, c in zip((x, w, b, g), copies + [g_copy]):
        assert np.array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(stride=1, output_padding=1), "output_padding"),
        (dict(stride=2, output_padding=2), "output_padding"),
        (dict(stride=2, dilation=2, output_padding=(0, 2)), "output_padding"),
        (dict(stride=0), "stride"),
        (dict(padding=-1), "padding"),
        (dict(dilation=0), "dilation"),
        (dict(groups=0), "groups"),
        (dict(groups=4), "groups"),
        (dict(padding=5), "padding"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    x, w = np.zeros((1, 2, 3, 3)), np.zeros((2, 2, 3, 3))
    with pytest.raises((ValueError, TypeError), match=match):
        conv_transpose2d_array(x, w, **kwargs)


def test_shape_and_dtype_errors():
    x, w = np.zeros((1, 2, 3, 3)), np.zeros((2, 2, 3, 3))
    with pytest.raises(ValueError, match="weight"):
        conv_transpose2d_array(x, np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="weight"):
        conv_transpose2d_array(x, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="input"):
        conv_transpose2d_array(np.zeros((2, 3)), w)
    with pytest.raises(TypeError, match="weight"):
        conv_transpose2d_array(x, w.astype(np.float32))
    with pytest.raises(ValueError, match="bias"):
        conv_transpose2d_array(x, w, np.zeros(3))
    with pytest.raises(ValueError, match="grad_out"):
        conv_transpose2d_backward_array(np.zeros((1, 2, 4, 4)), x, w)


# --- the module -------------------------------------------------------------------------------


def test_module_matches_torch_module():
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(
        4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2, dilation=1
    ).double()
    m = nn.ConvTranspose2d(
        4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2, dtype=np.float64
    )
    assert list(m.state_dict()) == list(tm.state_dict())
    assert all(m.state_dict()[k].shape == tuple(v.shape) for k, v in tm.state_dict().items())
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(5).standard_normal((2, 4, 3, 4))
    xt = Tensor(x, requires_grad=True)
    y = m(xt)
    y.sum().backward()
    xtt = torch.tensor(x, requires_grad=True)
    yt = tm(xtt)
    yt.sum().backward()
    assert rel_err(y.data, yt.detach().numpy()) <= 1e-12
    assert rel_err(xt.grad, xtt.grad.numpy()) <= 1e-12
    assert rel_err(m.weight.grad, tm.weight.grad.numpy()) <= 1e-12
    assert rel_err(m.bias.grad, tm.bias.grad.numpy()) <= 1e-12
    assert "output_padding=(1, 1)" in repr(m)


def test_module_init_and_no_bias():
    m = nn.ConvTranspose2d(3, 8, 4, stride=2, bias=False)
    assert m.weight.shape == (3, 8, 4, 4) and m.bias is None
    assert m.weight.dtype == np.float32
    assert list(m.state_dict()) == ["weight"]
    m = nn.ConvTranspose2d(6, 4, 3, groups=2)
    bound = 1 / math.sqrt(2 * 3 * 3)  # torch's fan_in: weight.shape[1] * kh * kw
    assert m.weight.shape == (6, 2, 3, 3)
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.bias.data).max() <= bound
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")


def test_module_output_size():
    m = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, dtype=np.float64)
    tm = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1).double()
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(6).standard_normal((1, 2, 4, 4))
    for size in [(7, 7), (8, 7), (1, 3, 8, 8)]:
        y = m(Tensor(x), output_size=size)
        yt = tm(torch.tensor(x), output_size=list(size))
        assert y.shape == tuple(yt.shape) and rel_err(y.data, yt.detach().numpy()) <= 1e-12
    with pytest.raises(ValueError, match="output size"):
        m(Tensor(x), output_size=(9, 9))

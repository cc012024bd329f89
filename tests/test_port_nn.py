"""fastconv.nn for code ported from PyTorch: the later activations, Dropout2d, AdaptiveMaxPool2d,
ModuleDict, AvgPool2d(divisor_override), Conv2d's padding strings and padding modes, F.pad,
module hooks, get_submodule/to/zero_grad/requires_grad_, and docstrings everywhere.
Float64 values and gradients against PyTorch (1e-12) and finite differences."""

import importlib
import inspect
import pkgutil
import warnings

import numpy as np
import pytest

from _autograd_ref import assert_close, check_op, torch
from fastconv import autograd, models, nn
from fastconv.autograd import Tensor
from fastconv.nn import functional as F

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
TF = torch.nn.functional if torch is not None else None
RTOL = 1e-12


def _t(f):
    return f if torch is not None else None


def _ported(ours, theirs):
    """ours (a fastconv module) in float64 with theirs' (a torch module's) weights."""
    theirs.double()
    ours.double().load_state_dict(theirs.state_dict())
    return ours, theirs


# --- activations ------------------------------------------------------------------------------

ACTS = [  # name, ours, theirs
    ("relu6", F.relu6, TF and TF.relu6),
    ("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.7), TF and (lambda x: TF.hardtanh(x, -0.5, 0.7))),
    ("hardsigmoid", F.hardsigmoid, TF and TF.hardsigmoid),
    ("hardswish", F.hardswish, TF and TF.hardswish),
    ("silu", F.silu, TF and TF.silu),
    ("gelu", F.gelu, TF and TF.gelu),
    (
        "gelu_tanh",
        lambda x: F.gelu(x, approximate="tanh"),
        TF and (lambda x: TF.gelu(x, approximate="tanh")),
    ),
    (
        "relu_inplace",
        lambda x: F.relu(x, inplace=True),
        TF and (lambda x: TF.relu(x * 1, inplace=True)),
    ),
]


@pytest.mark.parametrize("name,ours,theirs", ACTS, ids=[a[0] for a in ACTS])
def test_activation_functions(name, ours, theirs):
    check_op([(4, 6)], ours, theirs, low=-7, high=7, rtol=RTOL)  # every piece of each


@pytest.mark.parametrize("name,ours,theirs", ACTS, ids=[a[0] for a in ACTS])
def test_activation_functions_at_their_kinks_and_far_out(name, ours, theirs):
    x = np.array([-800.0, -40.0, -6.0, -3.0, -1.0, -0.5, 0.0, 0.5, 0.7, 1.0, 3.0, 6.0, 40.0, 800.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        check_op(None, ours, theirs, arrays=[x], fd=False, rtol=RTOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_functions_keep_the_dtype(dtype):
    x = Tensor(np.linspace(-4, 4, 9, dtype=dtype), requires_grad=True)
    for _, ours, _ in ACTS:
        y = ours(x)
        y.backward(np.ones_like(y.data))
        assert y.dtype == dtype and x.grad.dtype == dtype
        x.grad = None


def test_gelu_without_scipy_uses_math_erf(monkeypatch):
    import math
    import sys

    from fastconv.nn import _activations

    x = np.linspace(-6, 6, 41)
    with_scipy = F.gelu(Tensor(x)).data
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # import fails
    monkeypatch.setattr(_activations, "_erf_ufunc", None)
    np.testing.assert_array_equal(_activations._erf(x), [math.erf(v) for v in x])
    check_op(None, F.gelu, TF and TF.gelu, arrays=[x], rtol=RTOL)
    assert_close(F.gelu(Tensor(x)).data, with_scipy, RTOL, "scipy vs math.erf")


ACT_MODULES = [
    (lambda: nn.ReLU(inplace=True), lambda: torch.nn.ReLU(inplace=True)),
    (lambda: nn.ReLU6(True), lambda: torch.nn.ReLU6(True)),
    (lambda: nn.Hardtanh(-2.0, 2.0), lambda: torch.nn.Hardtanh(-2.0, 2.0)),
    (lambda: nn.Hardswish(), lambda: torch.nn.Hardswish()),
    (lambda: nn.Hardsigmoid(inplace=True), lambda: torch.nn.Hardsigmoid(inplace=True)),
    (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
    (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh")),
    (lambda: nn.LeakyReLU(0.2, inplace=True), lambda: torch.nn.LeakyReLU(0.2, inplace=True)),
    (lambda: nn.ELU(0.5, True), lambda: torch.nn.ELU(0.5, True)),
    (
        lambda: nn.Dropout(0.3, inplace=True).eval(),
        lambda: torch.nn.Dropout(0.3, inplace=True).eval(),
    ),
    (lambda: nn.Dropout2d(0.3).eval(), lambda: torch.nn.Dropout2d(0.3).eval()),
    (lambda: nn.Identity(54, unused="x"), lambda: torch.nn.Identity(54, unused="x")),
]


@needs_torch
@pytest.mark.parametrize("i", range(len(ACT_MODULES)))
def test_activation_modules_match_torch_and_leave_the_input(i):
    ours, theirs = ACT_MODULES[i][0](), ACT_MODULES[i][1]()
    assert repr(ours) == repr(theirs)
    x = np.random.default_rng(i).uniform(-5, 5, (2, 3, 4, 4))
    before = x.copy()
    y = ours(Tensor(x))
    np.testing.assert_array_equal(x, before)  # inplace=True computes out of place
    assert_close(y.data, theirs(torch.tensor(x)).numpy(), RTOL, "forward")
    check_op([(2, 3, 4, 2)], ours, lambda t: theirs(t * 1), low=-5, high=5, fd=False, rtol=RTOL)


def test_activation_arguments_are_checked():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        nn.GELU("erf")
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(Tensor(np.ones(2)), approximate="fast")
    with pytest.raises(ValueError, match="min_val"):
        nn.Hardtanh(1.0, -1.0)


# --- dropout2d --------------------------------------------------------------------------------


def test_dropout2d_zeroes_whole_channels_and_scales_the_rest():
    x = np.random.default_rng(0).uniform(1, 2, (8, 16, 3, 5))
    t = Tensor(x, requires_grad=True)
    autograd.manual_seed(3)
    y = F.dropout2d(t, 0.25)
    kept = (y.data != 0).all(axis=(2, 3))
    assert ((y.data == 0).all(axis=(2, 3)) | kept).all()  # channel by channel
    assert 0.6 < kept.mean() < 0.9
    np.testing.assert_allclose(y.data[kept], x[kept] / 0.75, rtol=1e-15)
    y.backward(np.ones_like(x))
    np.testing.assert_allclose(t.grad, np.broadcast_to(kept[..., None, None] / 0.75, x.shape))
    autograd.manual_seed(3)
    np.testing.assert_array_equal(F.dropout2d(t, 0.25).data, y.data)  # fastconv's generator
    assert F.dropout2d(t, 0.25, training=False) is t and F.dropout2d(t, 0.0) is t
    assert not F.dropout2d(t, 1.0).data.any()

    def fixed_mask(v):
        autograd.manual_seed(7)
        return F.dropout2d(v, 0.5)

    check_op([(2, 4, 2, 2)], fixed_mask, rtol=RTOL)


def test_dropout2d_module_and_argument_checks():
    m = nn.Dropout2d(0.5, inplace=True)
    assert repr(m) == "Dropout2d(p=0.5, inplace=True)"
    x = Tensor(np.ones((2, 6, 3, 3)))
    assert m.eval()(x) is x
    y = m.train()(x).data
    assert set(np.unique(y)) <= {0.0, 2.0}
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout2d(1.5)
    with pytest.raises(ValueError, match=r"dropout2d: dropout probability.*-0.1"):
        F.dropout2d(x, -0.1)
    with pytest.raises(ValueError, match="channel dimension"):
        F.dropout2d(Tensor(np.ones(4)), 0.5)
    with pytest.warns(UserWarning, match=r"3-D input is taken as \(N, C, L\)"):
        y3 = F.dropout2d(Tensor(np.ones((2, 6, 5))), 0.5).data
    assert ((y3 == 0).all(axis=2) | (y3 != 0).all(axis=2)).all()


# --- adaptive max pooling ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,out",
    [
        ((2, 3, 7, 5), (3, 2)),
        ((2, 3, 7, 5), 4),
        ((1, 2, 6, 6), 1),
        ((2, 2, 5, 7), (5, 7)),
        ((2, 2, 5, 7), (None, 3)),
        ((3, 5, 8), (3, 5)),
        ((2, 3, 4, 4), (6, 5)),
    ],
)
def test_adaptive_max_pool2d(shape, out):
    check_op(
        [shape],
        lambda x: F.adaptive_max_pool2d(x, out),
        _t(lambda x: TF.adaptive_max_pool2d(x, out)),
        rtol=RTOL,
    )
    x = np.random.default_rng(5).standard_normal(shape)
    y, idx = F.adaptive_max_pool2d(Tensor(x), out, return_indices=True)
    assert idx.dtype == np.int64 and not idx.requires_grad
    module = nn.AdaptiveMaxPool2d(out, return_indices=True)
    np.testing.assert_array_equal(module(Tensor(x))[1].data, idx.data)
    if torch is not None:
        ty, tidx = TF.adaptive_max_pool2d(torch.tensor(x), out, return_indices=True)
        np.testing.assert_array_equal(idx.data, tidx.numpy())
        np.testing.assert_array_equal(y.data, ty.numpy())
        assert repr(nn.AdaptiveMaxPool2d(out)) == repr(torch.nn.AdaptiveMaxPool2d(out))


def test_adaptive_max_pool2d_errors():
    x = Tensor(np.ones((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="output_size must be positive"):
        F.adaptive_max_pool2d(x, 0)
    with pytest.raises(TypeError, match="output_size must be an int"):
        F.adaptive_max_pool2d(x, 2.5)
    with pytest.raises(ValueError, match=r"output_size must be an int or a pair"):
        F.adaptive_max_pool2d(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\)"):
        F.adaptive_max_pool2d(Tensor(np.ones((4, 4))), 2)


# --- average pooling's divisor, ModuleDict, Identity ------------------------------------------


@pytest.mark.parametrize(
    "kernel,stride,padding,divisor", [(2, None, 0, 3), (3, 2, 1, 5), ((2, 3), 1, 0, 1)]
)
def test_avg_pool2d_divisor_override(kernel, stride, padding, divisor):
    check_op(
        [(2, 3, 7, 6)],
        lambda x: F.avg_pool2d(x, kernel, stride, padding, divisor_override=divisor),
        _t(lambda x: TF.avg_pool2d(x, kernel, stride, padding, divisor_override=divisor)),
        rtol=RTOL,
    )
    check_op(
        [(2, 3, 7, 6)],
        nn.AvgPool2d(kernel, stride, padding, divisor_override=divisor),
        _t(torch.nn.AvgPool2d(kernel, stride, padding, divisor_override=divisor))
        if torch
        else None,
        fd=False,
        rtol=RTOL,
    )
    with pytest.raises(ValueError, match="divisor_override"):
        F.avg_pool2d(Tensor(np.ones((1, 1, 4, 4))), 2, divisor_override=0)


def test_module_dict():
    d = nn.ModuleDict({"conv": nn.Conv2d(2, 3, 3), "act": nn.ReLU()})
    d["fc"] = nn.Linear(3, 2)
    d.update([("pool", nn.MaxPool2d(2))])
    assert list(d) == ["conv", "act", "fc", "pool"] and len(d) == 4 and "fc" in d
    assert list(d.keys()) == ["conv", "act", "fc", "pool"] and isinstance(d["act"], nn.ReLU)
    assert [k for k, _ in d.named_parameters()] == [
        "conv.weight",
        "conv.bias",
        "fc.weight",
        "fc.bias",
    ]
    assert isinstance(d.pop("pool"), nn.MaxPool2d) and "pool" not in d
    with pytest.raises(KeyError):
        d["nothing"]
    with pytest.raises(TypeError, match="keys must be strings"):
        d[3] = nn.ReLU()
    with pytest.raises(TypeError, match="must be a Module"):
        d["x"] = 3
    if torch is not None:
        td = torch.nn.ModuleDict(
            {"conv": torch.nn.Conv2d(2, 3, 3), "act": torch.nn.ReLU(), "fc": torch.nn.Linear(3, 2)}
        )
        d.load_state_dict(td.state_dict())  # strict: the same keys
        assert repr(d).replace("bias=True", "") == repr(td).replace("bias=True", "")
    d.clear()
    assert len(d) == 0


# --- Conv2d: padding strings and padding modes ------------------------------------------------


@needs_torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel,dilation", [(3, 1), (4, 1), ((3, 2), (2, 1))])
def test_conv2d_module_padding_strings(padding, kernel, dilation):
    ours, theirs = _ported(
        nn.Conv2d(3, 4, kernel, padding=padding, dilation=dilation),
        torch.nn.Conv2d(3, 4, kernel, padding=padding, dilation=dilation),
    )
    assert repr(ours) == repr(theirs)
    check_op([(2, 3, 7, 6)], ours, theirs, fd=False, rtol=RTOL)
    check_op(
        [(2, 3, 9)],
        *_ported(nn.Conv1d(3, 2, 3, padding=padding), torch.nn.Conv1d(3, 2, 3, padding=padding)),
        fd=False,
        rtol=RTOL,
    )


def test_conv2d_issue_example_and_argument_checks():
    conv = nn.Conv2d(3, 8, 3, padding="same")  # failed in forward before: ('same', 'same')
    assert conv(Tensor(np.ones((1, 3, 5, 5), np.float32))).shape == (1, 8, 5, 5)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(
        ValueError, match="padding must be an int, a tuple, 'valid' or 'same', got 'full'"
    ):
        nn.Conv2d(3, 8, 3, padding="full")
    with pytest.raises(ValueError, match="padding_mode must be one of 'zeros'.*got 'mirror'"):
        nn.Conv2d(3, 8, 3, padding_mode="mirror")


def _same_gradients(ours, theirs, shape, seed=0):
    """Forward, and the gradients of the input and every parameter, of a ported layer."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    t = Tensor(x, requires_grad=True)
    y = ours(t)
    up = rng.standard_normal(y.shape)
    y.backward(up)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(up))
    assert_close(y.data, ty.detach().numpy(), RTOL, "forward")
    assert_close(t.grad, tx.grad.numpy(), RTOL, "input gradient")
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs_params[name].grad.numpy(), RTOL, f"{name} gradient")


@needs_torch
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    "kernel,stride,padding,dilation",
    [
        (3, 1, 1, 1),
        (3, 2, (2, 1), 1),
        ((2, 3), 1, "same", 1),
        (3, 1, "same", 2),
        (3, 1, "valid", 1),
        (5, 1, 2, 1),
    ],
)
def test_conv2d_padding_modes(mode, kernel, stride, padding, dilation):
    ours, theirs = _ported(
        nn.Conv2d(3, 4, kernel, stride, padding, dilation, padding_mode=mode),
        torch.nn.Conv2d(3, 4, kernel, stride, padding, dilation, padding_mode=mode),
    )
    assert repr(ours) == repr(theirs) and ours.padding_mode == mode
    _same_gradients(ours, theirs, (2, 3, 6, 5))
    check_op([(1, 3, 6, 5)], ours, theirs, rtol=RTOL)  # input gradient: finite differences too


@needs_torch
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv1d_padding_modes(mode):
    check_op(
        [(2, 3, 8)],
        *_ported(
            nn.Conv1d(3, 2, 3, padding=2, padding_mode=mode),
            torch.nn.Conv1d(3, 2, 3, padding=2, padding_mode=mode),
        ),
        rtol=RTOL,
    )


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad", [(1, 2), (2, 0, 1, 3), (0, 0, 1, 1), (1, 1, 2, 2, 1, 0), (3, 4)])
def test_pad(mode, pad):
    if mode == "reflect" and max(pad) > 2:
        pad = pad[:-2] + (2, 1)  # (reflect needs pads smaller than the size)
    shape = {2: (2, 3, 5), 4: (2, 3, 4, 5), 6: (2, 3, 4, 5)}[len(pad)]  # what torch takes
    value = 0.5 if mode == "constant" else None
    check_op(
        [shape],
        lambda x: F.pad(x, pad, mode, value),
        _t(lambda x: TF.pad(x, pad, mode, value)),
        rtol=RTOL,
    )


def test_pad_errors():
    x = Tensor(np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="mode must be one of"):
        F.pad(x, (1, 1), "wrap")
    with pytest.raises(ValueError, match="even length"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match="reflect padding \\(3, 3\\) must be smaller.*size 3"):
        F.pad(x, (3, 3), "reflect")
    with pytest.raises(ValueError, match="circular padding \\(4, 0\\) must be at most"):
        F.pad(x, (4, 0), "circular")
    with pytest.raises(ValueError, match="negative"):
        F.pad(x, (-1, 1))
    with pytest.raises(ValueError, match="takes no value"):
        F.pad(x, (1, 1), "reflect", 0.0)
    with pytest.raises(TypeError, match="sequence of ints"):
        F.pad(x, 1)


def test_inference_plans_refuse_what_they_do_not_know():
    from fastconv import inference

    x = np.ones((1, 3, 6, 6), np.float32)
    for layer, op in [
        (nn.AvgPool2d(2, divisor_override=3), "AvgPool2dDivisor"),
        (nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect"), "Pad"),
        (nn.Hardswish(), "Hardswish"),
        (nn.AdaptiveMaxPool2d(2), "AdaptiveMaxPool2d"),
    ]:
        with pytest.raises(inference.UnsupportedOp, match=op):  # not a plan without the divisor
            inference.compile(nn.Sequential(layer).eval(), x)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding="same"), nn.ReLU(inplace=True)).eval()
    np.testing.assert_allclose(inference.compile(model, x)(x), model(Tensor(x)).data, rtol=1e-5)


# --- hooks ------------------------------------------------------------------------------------


def test_forward_pre_hook_and_forward_hook_replace_and_remove():
    lin = nn.Linear(3, 2, dtype=np.float64)
    x = Tensor(np.ones((1, 3)))
    seen = []
    h1 = lin.register_forward_pre_hook(lambda m, args: (args[0] * 2,))
    h2 = lin.register_forward_hook(
        lambda m, args, out: seen.append((args[0].data.copy(), out)) or None
    )
    h3 = lin.register_forward_hook(lambda m, args, out: out + 1)
    y = lin(x)
    np.testing.assert_allclose(seen[0][0], 2 * np.ones((1, 3)))  # the pre-hook's replacement
    np.testing.assert_allclose(
        y.data, F.linear(Tensor(2 * np.ones((1, 3))), lin.weight, lin.bias).data + 1
    )
    h1.remove(), h2.remove(), h3.remove()
    np.testing.assert_allclose(lin(x).data, F.linear(x, lin.weight, lin.bias).data)
    h1.remove()  # twice is fine
    order = []
    lin.register_forward_pre_hook(lambda m, a: order.append("second"))
    lin.register_forward_pre_hook(lambda m, a: order.append("first"), prepend=True)
    lin.register_forward_pre_hook(lambda m, a: a[0] * 0)  # a single value becomes (value,)
    with lin.register_forward_hook(
        lambda m, a, kw, out: (order.append(sorted(kw)), out)[1], with_kwargs=True
    ):
        np.testing.assert_array_equal(lin(x).data, lin.bias.data[None])  # zeros in, the bias out
    assert order == ["first", "second", []]


@needs_torch
def test_forward_hooks_with_kwargs_as_torch():
    class Scale(nn.Module):
        def forward(self, x, factor=1.0):
            return x * factor

    m = Scale()
    m.register_forward_pre_hook(
        lambda mod, args, kwargs: (args, {**kwargs, "factor": 3.0}), with_kwargs=True
    )
    assert m(Tensor(np.ones(2)), factor=2.0).data.tolist() == [3.0, 3.0]
    m.register_forward_pre_hook(lambda mod, args, kwargs: 5, with_kwargs=True)
    with pytest.raises(TypeError, match=r"must return None or a tuple \(args, kwargs\)"):
        m(Tensor(np.ones(2)))
    with pytest.raises(TypeError, match="callable"):
        m.register_forward_hook(3)


class _TwoIn(nn.Module):
    """Two tensor inputs and a non-tensor one; two outputs."""

    def __init__(self, lib):
        super().__init__()
        self.lib = lib

    def forward(self, a, k, b):
        return a * b * k, (a * a).sum(1)


def _record(store):
    def hook(module, grad_input, grad_output):
        def arr(g):
            return (
                None if g is None else np.array(g.detach().numpy() if hasattr(g, "detach") else g)
            )

        store.append(([arr(g) for g in grad_input], [arr(g) for g in grad_output]))

    return hook


@needs_torch
def test_full_backward_hook_matches_torch():
    rng = np.random.default_rng(0)
    a, b, up = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    up2 = rng.standard_normal(3)

    class TorchTwoIn(torch.nn.Module):
        def forward(self, a, k, b):
            return a * b * k, (a * a).sum(1)

    got, want = [], []
    ours, theirs = _TwoIn(np), TorchTwoIn()
    ours.register_full_backward_hook(_record(got))
    theirs.register_full_backward_hook(_record(want))
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    y1, y2 = ours(ta, 2.0, tb)
    ((y1 * up).sum() + (y2 * up2).sum()).backward()
    pa, pb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    z1, z2 = theirs(pa, 2.0, pb)
    ((z1 * torch.tensor(up)).sum() + (z2 * torch.tensor(up2)).sum()).backward()
    (gin, gout), (tin, tout) = got[0], want[0]
    assert len(got) == len(want) == 1 and len(gin) == len(tin) == 3 and len(gout) == len(tout) == 2
    assert gin[1] is None and tin[1] is None
    for g, t in zip(gin[::2] + gout, tin[::2] + tout):
        np.testing.assert_allclose(g, t, rtol=RTOL, atol=0)
    np.testing.assert_allclose(ta.grad, pa.grad.numpy(), rtol=RTOL)


@needs_torch
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_full_backward_hook_replaces_grad_input_and_runs_on_layers():
    tlin = torch.nn.Linear(4, 3).double()
    lin, _ = _ported(nn.Linear(4, 3), tlin)
    x = np.random.default_rng(1).standard_normal((5, 4))
    got, want = [], []
    handles = [
        lin.register_full_backward_hook(_record(got)),
        lin.register_full_backward_hook(lambda m, gi, go: (gi[0] * 2,)),
    ]
    tlin.register_full_backward_hook(_record(want))
    doubling = tlin.register_full_backward_hook(lambda m, gi, go: (gi[0] * 2,))
    tx, px = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (lin(tx) ** 2).sum().backward()
    (tlin(px) ** 2).sum().backward()
    np.testing.assert_allclose(tx.grad, px.grad.numpy(), rtol=RTOL)  # doubled by the hook
    np.testing.assert_allclose(got[0][0][0], want[0][0][0], rtol=RTOL)
    np.testing.assert_allclose(got[0][1][0], want[0][1][0], rtol=RTOL)
    np.testing.assert_allclose(lin.weight.grad, tlin.weight.grad.numpy(), rtol=RTOL)

    # an input that requires no grad: the hook still runs, with grad_input (None,)
    handles.pop().remove(), doubling.remove()
    lin.zero_grad(), tlin.zero_grad()
    got.clear(), want.clear()
    (lin(Tensor(x)) ** 2).sum().backward()
    (tlin(torch.tensor(x)) ** 2).sum().backward()
    assert got[0][0] == [None] and [g is None for g in want[0][0]] == [True]
    np.testing.assert_allclose(got[0][1][0], want[0][1][0], rtol=RTOL)

    # under no_grad nothing is recorded; after remove() the hook is gone
    with autograd.no_grad():
        lin(Tensor(x, requires_grad=True))
    for h in handles:
        h.remove()
    got.clear()
    t = Tensor(x, requires_grad=True)
    lin(t).sum().backward()
    assert got == [] and not lin._backward_hooks


def test_full_backward_hook_errors_are_clear():
    lin = nn.Linear(2, 2, dtype=np.float64)
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    with pytest.raises(ValueError, match="returned 2 gradients for 1 inputs"):
        lin(Tensor(np.ones((1, 2)), requires_grad=True)).sum().backward()
    lin2 = nn.Linear(2, 2, dtype=np.float64)
    lin2.register_full_backward_hook(lambda m, gi, go: (np.ones(3),))
    with pytest.raises(ValueError, match=r"grad_input\[0\] has shape \(3,\)"):
        lin2(Tensor(np.ones((1, 2)), requires_grad=True)).sum().backward()
    lin3 = nn.Linear(2, 2, dtype=np.float64)
    lin3.register_full_backward_hook(lambda m, gi, go: (np.ones((1, 2)),))
    with pytest.raises(ValueError, match="none of whose inputs requires grad must return None"):
        lin3(Tensor(np.ones((1, 2)))).sum().backward()


def test_hooks_in_a_network_see_every_layer_once():
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 2, dtype=np.float64),
    )
    calls = []
    for name, m in net.named_children():
        m.register_forward_hook(lambda mod, a, out, name=name: calls.append(("fwd", name)))
        m.register_full_backward_hook(lambda mod, gi, go, name=name: calls.append(("bwd", name)))
    plain = nn.Sequential(*[m for m in net])  # the same modules, hooks included
    x = Tensor(np.random.default_rng(2).standard_normal((2, 2, 4, 4)), requires_grad=True)
    net(x).sum().backward()
    assert calls == [("fwd", n) for n in "0123"] + [("bwd", n) for n in "3210"]
    assert len(list(plain.parameters())) == 4


# --- Module API -------------------------------------------------------------------------------


def _net():
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Sequential(nn.ReLU(), nn.Linear(4, 2))
    )


def test_get_submodule_and_get_parameter():
    net = _net()
    assert net.get_submodule("") is net and net.get_submodule("2.1") is net[2][1]
    assert net.get_parameter("2.1.weight") is net[2][1].weight
    with pytest.raises(
        AttributeError, match=r"get_submodule\('2.5'\): Sequential has no sub-module '5'"
    ):
        net.get_submodule("2.5")
    with pytest.raises(AttributeError, match="has no parameter 'scale'"):
        net.get_parameter("1.scale")
    if torch is not None:
        tnet = torch.nn.Sequential(
            torch.nn.Conv2d(2, 3, 3),
            torch.nn.BatchNorm2d(3),
            torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(4, 2)),
        )
        for name, _ in tnet.named_modules():
            assert type(net.get_submodule(name)).__name__ == type(tnet.get_submodule(name)).__name__


def test_to_dtype_and_device():
    net = _net()
    x = Tensor(np.ones((2, 2, 6, 6), np.float32))
    net(x).sum().backward()
    assert net.to("cpu") is net and net.cpu() is net and net[0].weight.dtype == np.float32
    assert net.to(np.float64) is net
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert net[1].running_mean.dtype == np.float64 and net[1].num_batches_tracked.dtype == np.int64
    net.to("cpu", "float32")
    assert net[0].weight.dtype == np.float32
    net.to(device="cpu:0", dtype=np.float64, non_blocking=True)
    assert net[0].weight.dtype == np.float64
    net.to(Tensor(np.ones(1, np.float32)))
    assert net[0].weight.dtype == np.float32
    if torch is not None:
        net.to(torch.float64)
        assert net[0].weight.dtype == np.float64
        net.to(torch.device("cpu"), torch.float32)
        net.to(torch.ones(1, dtype=torch.float64))
        assert net[0].weight.dtype == np.float64
    with pytest.raises(ValueError, match="CPU only, got device 'cuda:0'"):
        net.to("cuda:0")
    with pytest.raises(TypeError, match="only floating-point dtypes"):
        net.to(np.int32)
    with pytest.raises(TypeError, match="unexpected keyword"):
        net.to(dtpye=np.float64)


def test_zero_grad_and_requires_grad():
    net = _net().double()
    x = Tensor(np.ones((2, 2, 6, 6)))
    net(x).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters())
    net.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in net.parameters())
    assert net[0].requires_grad_(False) is net[0]
    net(x).sum().backward()
    assert net[0].weight.grad is None and net[2][1].weight.grad is not None
    net.requires_grad_(requires_grad=True)
    assert all(p.requires_grad for p in net.parameters())


# --- docstrings -------------------------------------------------------------------------------


def _public_modules():
    out = [nn, F, models]
    for pkg, names in (
        (
            nn,
            [
                "module",
                "container",
                "activation",
                "layers",
                "conv",
                "pooling",
                "normalization",
                "init",
                "hooks",
            ],
        ),
        (models, [m.name for m in pkgutil.iter_modules(models.__path__)]),
    ):
        out += [importlib.import_module(f"{pkg.__name__}.{n}") for n in names]
    return out


def test_every_public_class_and_function_has_a_docstring():
    missing = []
    for mod in _public_modules():
        assert (mod.__doc__ or "").strip(), mod.__name__
        names = set(getattr(mod, "__all__", []))
        names |= {
            n
            for n, o in vars(mod).items()
            if inspect.isclass(o) and not n.startswith("_") and o.__module__.startswith("fastconv")
        }
        for name in sorted(names):
            obj = getattr(mod, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (
                obj.__doc__ or ""
            ).strip():
                missing.append(f"{mod.__name__}.{name}")
    assert not missing, f"no docstring: {missing}"


def test_every_top_level_name_has_a_docstring():
    """fastconv's own namespace: each name in ``fastconv.__all__`` that is a function, class or
    module, and the public methods of those classes (Tensor's, say)."""
    import fastconv

    missing = []
    for name in fastconv.__all__:
        obj = getattr(fastconv, name)
        if not (inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
            continue  # constants (ALGORITHMS)
        if not (inspect.getdoc(obj) or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            missing += [
                f"{name}.{attr}"
                for attr, member in vars(obj).items()
                if not attr.startswith("_")
                and callable(member)
                and not (inspect.getdoc(member) or "").strip()
            ]
    assert not missing, f"no docstring: {missing}"

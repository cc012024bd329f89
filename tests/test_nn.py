"""fastconv.nn: the network ops (float64, against PyTorch and finite differences), the layers, and
Module's bookkeeping (names, state_dict, train/eval, dtype)."""

import warnings
from collections import OrderedDict

import numpy as np
import pytest

from _autograd_ref import assert_close, check_op, torch
from fastconv import autograd, nn
from fastconv.autograd import Tensor, no_grad
from fastconv.nn import functional as F
from fastconv.nn import init

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
TF = torch.nn.functional if torch is not None else None


# --- convolution ------------------------------------------------------------------------------

CONV2D = [  # x shape, w shape, stride, padding, dilation, groups
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1, 1, 1),
    ((2, 4, 8, 7), (6, 2, 3, 2), 2, (1, 0), 1, 2),
    ((1, 3, 9, 9), (2, 3, 3, 3), 1, 2, 2, 1),
    ((2, 4, 6, 6), (4, 1, 3, 3), (2, 1), 1, 1, 4),  # depthwise
    ((2, 3, 5, 5), (5, 3, 1, 1), 1, 0, 1, 1),  # 1x1
    ((1, 2, 9, 9), (3, 2, 1, 7), 1, (0, 3), 1, 1),  # Inception v3's 1x7
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV2D)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(xs, ws, stride, padding, dilation, groups, bias):
    shapes = [xs, ws] + ([(ws[0],)] if bias else [])

    def ours(x, w, b=None):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    def theirs(x, w, b=None):
        return TF.conv2d(x, w, b, stride, padding, dilation, groups)

    check_op(shapes, ours, TF and theirs)


@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1)]
)
def test_conv1d(stride, padding, dilation, groups):
    shapes = [(2, 4, 11), (6, 4 // groups, 3), (6,)]
    check_op(
        shapes,
        lambda x, w, b: F.conv1d(x, w, b, stride, padding, dilation, groups),
        TF and (lambda x, w, b: TF.conv1d(x, w, b, stride, padding, dilation, groups)),
    )


def test_conv2d_gradient_only_where_asked():
    x = Tensor(np.random.default_rng(0).standard_normal((1, 2, 5, 5)))
    w = Tensor(np.ones((3, 2, 3, 3)), requires_grad=True)
    F.conv2d(x, w).sum().backward()
    assert x.grad is None and w.grad.shape == (3, 2, 3, 3)


def test_conv2d_on_a_non_contiguous_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 5, 3)).transpose(0, 3, 1, 2)  # (2, 3, 6, 5), not C-contiguous
    check_op(
        None,
        lambda a, w: F.conv2d(a.transpose(0, 2, 3, 1).transpose(0, 3, 1, 2), w, padding=1),
        TF and (lambda a, w: TF.conv2d(a, w, padding=1)),
        arrays=[x, rng.standard_normal((4, 3, 3, 3))],
    )


# --- pooling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,ceil_mode",
    [
        (2, None, 0, 1, False),
        (3, 2, 1, 1, False),
        (3, 2, 0, 1, True),
        ((2, 3), (1, 2), (1, 1), 1, False),
        (3, 1, 1, 2, False),
    ],
)
def test_max_pool2d(kernel, stride, padding, dilation, ceil_mode):
    check_op(
        [(2, 3, 9, 8)],
        lambda x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode),
        TF and (lambda x: TF.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)),
    )


def test_max_pool2d_indices_changed_in_place_leave_the_gradient_alone():
    rng = np.random.default_rng(4)
    x = Tensor(rng.standard_normal((1, 2, 6, 6)), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    idx.data[...] = 0  # the caller's array is its own: backward keeps the forward's switches
    y.sum().backward()
    ref = Tensor(x.data, requires_grad=True)
    F.max_pool2d(ref, 2).sum().backward()
    np.testing.assert_array_equal(x.grad, ref.grad)


def test_max_pool2d_switches_and_unpool():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 6))
    y, idx = F.max_pool2d(Tensor(x), 2, return_indices=True)
    assert idx.dtype == np.int64 and not idx.requires_grad
    if torch is not None:
        ty, tidx = TF.max_pool2d(torch.tensor(x), 2, return_indices=True)
        np.testing.assert_array_equal(idx.data, tidx.numpy())
        np.testing.assert_array_equal(y.data, ty.numpy())

    # unpool: forward and the gather backward, with the switches held fixed
    def ours(v):
        return F.max_unpool2d(v, idx, 2) * 2

    def theirs(v):
        return TF.max_unpool2d(v, torch.from_numpy(idx.data), 2) * 2

    check_op([y.shape], ours, TF and theirs)
    check_op(
        [y.shape],
        lambda v: F.max_unpool2d(v, idx, 2, output_size=(9, 7)),
        TF and (lambda v: TF.max_unpool2d(v, torch.from_numpy(idx.data), 2, output_size=(9, 7))),
    )


@pytest.mark.parametrize(
    "kernel,stride,padding,ceil_mode,count_include_pad",
    [
        (2, None, 0, False, True),
        (3, 2, 1, False, True),
        (3, 2, 1, True, False),
        ((3, 2), 1, (1, 0), False, False),
    ],
)
def test_avg_pool2d(kernel, stride, padding, ceil_mode, count_include_pad):
    check_op(
        [(2, 3, 9, 8)],
        lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad),
        TF and (lambda x: TF.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)),
    )


@pytest.mark.parametrize("out", [1, (3, 2), (4, 4), (7, 5)])
def test_adaptive_avg_pool2d(out):
    check_op(
        [(2, 3, 7, 5)],
        lambda x: F.adaptive_avg_pool2d(x, out),
        TF and (lambda x: TF.adaptive_avg_pool2d(x, out)),
    )


# --- linear, normalisation, dropout -----------------------------------------------------------


@pytest.mark.parametrize("xs", [(4, 5), (2, 3, 5), (33, 5)])
def test_linear(xs):
    check_op([xs, (3, 5), (3,)], F.linear, TF and TF.linear)
    check_op([xs, (3, 5)], F.linear, TF and TF.linear)


@pytest.mark.parametrize("dtype, rows", [(np.float32, (1, 3, 64, 65)), (np.float64, (3, 32, 33))])
def test_linear_weight_past_the_l2(dtype, rows):
    """A weight larger than the L2 (500 x 700) at the batch sizes on either side of the rows
    path (its dot products read the weight once): forward and both gradients within the
    accuracy contract (1e-4 / 1e-10 times the sum of |terms|) of the float64 products."""
    rng = np.random.default_rng(7)
    w, b = rng.uniform(-1, 1, (500, 700)), rng.uniform(-1, 1, 500)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for m in rows:
        x, g = rng.uniform(-1, 1, (m, 700)), rng.uniform(-1, 1, (m, 500))
        xt, wt, bt = (Tensor(a.astype(dtype), requires_grad=True) for a in (x, w, b))
        y = F.linear(xt, wt, bt)
        y.backward(Tensor(g.astype(dtype)))
        ax, aw, ag = np.abs(x), np.abs(w), np.abs(g)
        for got, want, bound in [
            (y.data, x @ w.T + b, ax @ aw.T + np.abs(b)),
            (xt.grad, g @ w, ag @ aw),
            (wt.grad, g.T @ x, ag.T @ ax),
            (bt.grad, g.sum(0), ag.sum(0)),
        ]:
            assert got.dtype == dtype and got.shape == want.shape
            assert (np.abs(got - want) <= tol * bound).all(), (m, got.shape)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 4, 5, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, training):
    rng = np.random.default_rng(5)
    c = shape[1]
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)

    def ours(x, w, b):  # fresh running stats per call: finite differences call it many times
        return F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training, eps=1e-3)

    def theirs(x, w, b):
        return TF.batch_norm(
            x, torch.tensor(rm), torch.tensor(rv), w, b, training=training, eps=1e-3
        )

    check_op([shape, (c,), (c,)], ours, TF and theirs)
    check_op(
        [shape],
        lambda x: F.batch_norm(x, None, None, training=training),
        TF and (lambda x: TF.batch_norm(x, None, None, training=True)),
    )


@needs_torch
def test_batch_norm_running_stats_match_torch():
    rng = np.random.default_rng(6)
    ours, theirs = nn.BatchNorm2d(3).double(), torch.nn.BatchNorm2d(3).double()
    for momentum in (0.1, None):
        ours.momentum = theirs.momentum = momentum
        for _ in range(3):
            x = rng.standard_normal((4, 3, 5, 5)) * 3 + 1
            ours(Tensor(x))
            theirs(torch.tensor(x))
        for key, value in theirs.state_dict().items():
            assert_close(ours.state_dict()[key], value.numpy(), 1e-12, key)
    with pytest.raises(ValueError, match="more than 1 value"):
        ours(Tensor(np.ones((1, 3, 1, 1))))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_local_response_norm(size):
    check_op(
        [(2, 7, 4, 3)],
        lambda x: F.local_response_norm(x, size, alpha=0.5, beta=0.75, k=2.0),
        TF and (lambda x: TF.local_response_norm(x, size, alpha=0.5, beta=0.75, k=2.0)),
        low=-2,
        high=2,
    )
    check_op(
        [(2, 6, 5)],
        lambda x: F.local_response_norm(x, size),
        TF and (lambda x: TF.local_response_norm(x, size)),
    )


def test_dropout():
    x = np.random.default_rng(0).uniform(1, 2, (50, 40))
    t = Tensor(x, requires_grad=True)
    y = F.dropout(t, 0.3)
    kept = y.data != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(y.data[kept], x[kept] / 0.7)
    y.backward(np.ones_like(x))
    np.testing.assert_allclose(t.grad, kept / 0.7)
    assert F.dropout(t, 0.3, training=False) is t
    assert not F.dropout(t, 1.0).data.any()

    def fixed_mask(v):  # the same mask for every finite-difference evaluation
        autograd.manual_seed(7)
        return F.dropout(v, 0.5)

    check_op([(3, 4)], fixed_mask)


# --- losses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(reduction, smoothing):
    target = np.array([0, 3, 2, 3, 1])
    check_op(
        [(5, 4)],
        lambda x: F.cross_entropy(x, target, reduction=reduction, label_smoothing=smoothing),
        TF
        and (
            lambda x: TF.cross_entropy(
                x, torch.from_numpy(target), reduction=reduction, label_smoothing=smoothing
            )
        ),
        low=-3,
        high=3,
    )


def test_cross_entropy_spatial_and_probability_targets():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 4, (2, 3, 5))
    check_op(
        [(2, 4, 3, 5)],
        lambda x: F.cross_entropy(x, target, label_smoothing=0.2),
        TF and (lambda x: TF.cross_entropy(x, torch.from_numpy(target), label_smoothing=0.2)),
    )
    probs = rng.dirichlet(np.ones(4), 5)
    check_op(
        [(5, 4)],
        lambda x: F.cross_entropy(x, probs, label_smoothing=0.1),
        TF and (lambda x: TF.cross_entropy(x, torch.from_numpy(probs), label_smoothing=0.1)),
    )
    with pytest.raises(ValueError, match="class indices"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 3]))


def test_nll_and_mse_loss():
    target = np.array([2, 0, 1])
    check_op(
        [(3, 3)],
        lambda x: F.nll_loss(F.log_softmax(x, 1), target),
        TF and (lambda x: TF.nll_loss(TF.log_softmax(x, 1), torch.from_numpy(target))),
    )
    check_op([(3, 4), (3, 4)], F.mse_loss, TF and TF.mse_loss)
    check_op(
        [(3, 4), (3, 4)],
        lambda a, b: F.mse_loss(a, b, reduction="sum"),
        TF and (lambda a, b: TF.mse_loss(a, b, reduction="sum")),
    )


# --- modules ----------------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def test_module_names_follow_pytorch():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
        "fc.weight",
        "fc.bias",
    ]
    assert list(net.state_dict()) == [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == [
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
    ]
    assert [n for n, _ in net.named_modules()] == [
        "",
        "features",
        "features.0",
        "features.1",
        "features.2",
        "features.3",
        "fc",
    ]
    assert net.num_parameters() == 4 * 27 + 4 + 8 + 16 * 5 + 5
    assert "(0): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in repr(net)
    assert "(fc): Linear(in_features=16, out_features=5, bias=True)" in repr(net)


def test_state_dict_round_trip_and_errors():
    a, b = Net(), Net()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32))
    a(x)  # moves the running statistics
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    assert b.state_dict()["features.1.num_batches_tracked"] == 1
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)

    sd = a.state_dict()
    with pytest.raises(KeyError, match="missing keys.*fc.bias"):
        b.load_state_dict({k: v for k, v in sd.items() if k != "fc.bias"})
    partial = b.load_state_dict({"fc.bias": np.zeros(5), "extra": 1}, strict=False)
    assert "extra" in partial.unexpected_keys and "fc.weight" in partial.missing_keys
    with pytest.raises(ValueError, match=r"fc.weight.*\(5, 3\)"):
        b.load_state_dict({**sd, "fc.weight": np.zeros((5, 3))})


@needs_torch
def test_state_dict_ports_both_ways_with_torch():
    t = torch.nn.Sequential(
        OrderedDict(
            features=torch.nn.Sequential(
                torch.nn.Conv2d(3, 4, 3, padding=1),
                torch.nn.BatchNorm2d(4),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
            ),
            flat=torch.nn.Flatten(),
            fc=torch.nn.Linear(16, 5),
        )
    ).double()
    net = Net().double()
    assert [(k, tuple(v.shape)) for k, v in t.state_dict().items()] == [
        (k, v.shape) for k, v in net.state_dict().items()
    ]
    t.train()(torch.randn(2, 3, 4, 4, dtype=torch.float64))  # non-trivial running stats
    net.load_state_dict(t.state_dict())  # torch -> fastconv, one line
    t2 = torch.nn.Sequential(
        OrderedDict(
            features=torch.nn.Sequential(
                torch.nn.Conv2d(3, 4, 3, padding=1),
                torch.nn.BatchNorm2d(4),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
            ),
            flat=torch.nn.Flatten(),
            fc=torch.nn.Linear(16, 5),
        )
    ).double()
    t2.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})  # and back
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4))
    t2.eval(), net.eval()
    assert_close(net(Tensor(x)).data, t2(torch.tensor(x)).detach().numpy(), 1e-12)


def _torch_net():
    return torch.nn.Sequential(
        OrderedDict(
            features=torch.nn.Sequential(
                torch.nn.Conv2d(3, 4, 3, padding=1),
                torch.nn.BatchNorm2d(4),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
            ),
            flat=torch.nn.Flatten(),
            fc=torch.nn.Linear(16, 5),
        )
    )


@needs_torch
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64", "int32", "complex64"])
def test_state_dict_of_another_dtype_converts_as_torch(dtype):
    """PyTorch's load_state_dict copies with dtype conversion (copy_): so does fastconv's,
    bfloat16 (which NumPy lacks) included."""
    src = _torch_net()
    src.train()(torch.randn(2, 3, 4, 4))  # non-trivial running stats
    sd = {
        k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v
        for k, v in src.state_dict().items()
    }
    ref, net = _torch_net(), Net()
    with warnings.catch_warnings():  # complex -> real drops the imaginary part (both warn)
        warnings.simplefilter("ignore")
        ref.load_state_dict(sd)
        net.load_state_dict(sd)
    for key, want in ref.state_dict().items():
        got = net.state_dict()[key]
        assert got.dtype == want.numpy().dtype, key
        np.testing.assert_array_equal(got, want.numpy(), err_msg=key)


def test_state_dict_of_unsupported_values_names_the_key_and_copies_nothing():
    net = Net()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    sd = {k: np.zeros_like(v) for k, v in before.items()}
    sd["fc.bias"] = np.array(["a"] * 5)
    sd["fc.weight"] = np.empty((5, 16), object)
    with pytest.raises(
        TypeError,
        match=r"fc.weight: dtype object is not numeric; "
        r"fc.bias: dtype <U1 is not numeric.*float16 and bfloat16",
    ):
        net.load_state_dict(sd)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)  # not even the good entries


def test_train_eval_zero_grad_and_dtype():
    net = Net()
    assert net.training and net.features[1].training
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    x = Tensor(np.ones((2, 3, 4, 4), np.float32))
    net(x).sum().backward()
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(not p.grad.any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.double()
    assert all(v.dtype == np.float64 for k, v in net.state_dict().items() if "num_batches" not in k)
    assert net.state_dict()["features.1.num_batches_tracked"].dtype == np.int64
    assert net(Tensor(np.ones((2, 3, 4, 4)))).dtype == np.float64


def test_attribute_bookkeeping():
    m = nn.Module()
    m.w = nn.Parameter(np.ones(2))
    m.register_buffer("stat", np.zeros(2))
    m.register_buffer("scratch", np.zeros(2), persistent=False)
    m.child = nn.Linear(2, 2)
    m.plain = 3
    assert list(m.state_dict()) == ["w", "stat", "child.weight", "child.bias"]
    m.stat = np.ones(2)
    assert m.state_dict()["stat"].sum() == 2
    with pytest.raises(TypeError, match="Parameter"):
        m.w = np.zeros(2)
    del m.child
    assert "child.weight" not in m.state_dict()
    lin = nn.Linear(3, 2, bias=False)
    assert list(lin.state_dict()) == ["weight"] and "bias=False" in repr(lin)
    seq = nn.Sequential(nn.ReLU(), nn.Tanh())
    seq.append(nn.Sigmoid())
    assert len(seq) == 3 and isinstance(seq[-1], nn.Sigmoid) and isinstance(seq[1:][0], nn.Tanh)
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]


LAYERS = [
    (
        lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
        lambda: torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
        (2, 3, 7, 7),
    ),
    (
        lambda: nn.Conv1d(4, 6, 3, padding=1, groups=2),
        lambda: torch.nn.Conv1d(4, 6, 3, padding=1, groups=2),
        (2, 4, 9),
    ),
    (lambda: nn.Linear(5, 3), lambda: torch.nn.Linear(5, 3), (4, 5)),
    (lambda: nn.BatchNorm1d(5), lambda: torch.nn.BatchNorm1d(5), (4, 5)),
    (lambda: nn.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3), (2, 3, 4, 4)),
    (lambda: nn.MaxPool2d(3, 2, 1), lambda: torch.nn.MaxPool2d(3, 2, 1), (2, 3, 7, 7)),
    (lambda: nn.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2), (2, 3, 6, 6)),
    (
        lambda: nn.AdaptiveAvgPool2d((2, 3)),
        lambda: torch.nn.AdaptiveAvgPool2d((2, 3)),
        (2, 3, 7, 7),
    ),
    (
        lambda: nn.LocalResponseNorm(5, k=2.0),
        lambda: torch.nn.LocalResponseNorm(5, k=2.0),
        (2, 7, 3, 3),
    ),
    (lambda: nn.ReLU(), lambda: torch.nn.ReLU(), (3, 4)),
    (lambda: nn.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1), (3, 4)),
    (lambda: nn.ELU(0.7), lambda: torch.nn.ELU(0.7), (3, 4)),
    (lambda: nn.Tanh(), lambda: torch.nn.Tanh(), (3, 4)),
    (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid(), (3, 4)),
    (lambda: nn.Softmax(1), lambda: torch.nn.Softmax(1), (3, 4)),
    (lambda: nn.LogSoftmax(1), lambda: torch.nn.LogSoftmax(1), (3, 4)),
    (lambda: nn.Flatten(), lambda: torch.nn.Flatten(), (2, 3, 2)),
    (lambda: nn.Dropout(0.5).eval(), lambda: torch.nn.Dropout(0.5).eval(), (3, 4)),
    (lambda: nn.Identity(), lambda: torch.nn.Identity(), (3, 4)),
]


@needs_torch
@pytest.mark.parametrize("i", range(len(LAYERS)))
def test_layers_match_torch_modules(i):
    make_ours, make_theirs, shape = LAYERS[i]
    ours, theirs = make_ours().double(), make_theirs().double()
    assert [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()] == [
        (k, v.shape) for k, v in ours.state_dict().items()
    ]
    ours.load_state_dict(theirs.state_dict())
    check_op([shape], ours, theirs, fd=False)


@needs_torch
def test_max_pool_with_indices_then_unpool_modules():
    x = np.random.default_rng(4).standard_normal((2, 3, 7, 6))
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    y, idx = pool(Tensor(x))
    ty, tidx = torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(idx.data, tidx.numpy())
    out = unpool(y, idx, output_size=(7, 6))
    np.testing.assert_array_equal(
        out.data, torch.nn.MaxUnpool2d(2)(ty, tidx, output_size=(7, 6)).numpy()
    )
    assert "kernel_size=2, stride=2" in repr(unpool)


def test_losses_as_modules():
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3)))
    y = np.array([0, 1, 2, 1])
    np.testing.assert_allclose(
        nn.CrossEntropyLoss(label_smoothing=0.1)(x, y).data,
        F.cross_entropy(x, y, label_smoothing=0.1).data,
    )
    np.testing.assert_allclose(nn.MSELoss()(x, x * 2).data, (x.data**2).mean())


# --- initialisers -----------------------------------------------------------------------------


def test_default_init_bounds_as_pytorch():
    autograd.manual_seed(0)
    conv = nn.Conv2d(16, 8, 3)
    fan_in = 16 * 9
    assert np.abs(conv.weight.data).max() <= 1 / np.sqrt(fan_in)
    assert np.abs(conv.bias.data).max() <= 1 / np.sqrt(fan_in)
    assert conv.weight.data.std() == pytest.approx(1 / np.sqrt(3 * fan_in), rel=0.1)
    assert conv.weight.dtype == np.float32


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_and_xavier(mode):
    autograd.manual_seed(1)
    w = np.empty((256, 128, 3, 3), np.float32)
    fan = 128 * 9 if mode == "fan_in" else 256 * 9
    init.kaiming_normal_(w, mode=mode, nonlinearity="relu")
    assert w.std() == pytest.approx(np.sqrt(2 / fan), rel=0.02)
    init.kaiming_uniform_(w, mode=mode, nonlinearity="relu")
    assert np.abs(w).max() <= np.sqrt(6 / fan) and w.std() == pytest.approx(
        np.sqrt(2 / fan), rel=0.02
    )
    init.xavier_uniform_(w, gain=init.calculate_gain("tanh"))
    assert w.std() == pytest.approx(5 / 3 * np.sqrt(2 / (128 * 9 + 256 * 9)), rel=0.02)
    init.xavier_normal_(w)
    assert w.std() == pytest.approx(np.sqrt(2 / (128 * 9 + 256 * 9)), rel=0.02)
    t = Tensor(np.empty((1000, 50)))
    init.trunc_normal_(t, std=1.0, a=-0.5, b=1.5)
    assert t.data.min() >= -0.5 and t.data.max() <= 1.5
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(np.sqrt(2 / 1.04))


def test_manual_seed_makes_init_reproducible():
    autograd.manual_seed(42)
    a = nn.Linear(4, 3).weight.data.copy()
    autograd.manual_seed(42)
    np.testing.assert_array_equal(nn.Linear(4, 3).weight.data, a)


def test_no_grad_inference_keeps_no_graph():
    net = Net().eval()
    with no_grad():
        out = net(Tensor(np.ones((1, 3, 4, 4), np.float32)))
    assert not out.requires_grad and out.is_leaf


# --- empty batches (N = 0), forward and backward, against PyTorch -----------------------------

EMPTY = [  # name, fastconv module, torch module, input shape
    ("Linear", lambda: nn.Linear(4, 3), lambda: torch.nn.Linear(4, 3), (0, 4)),
    ("Linear-3d", lambda: nn.Linear(4, 3), lambda: torch.nn.Linear(4, 3), (2, 0, 4)),
    ("Flatten", lambda: nn.Flatten(), lambda: torch.nn.Flatten(), (0, 16, 5, 5)),
    (
        "Conv2d",
        lambda: nn.Conv2d(3, 4, 3, padding=1),
        lambda: torch.nn.Conv2d(3, 4, 3, padding=1),
        (0, 3, 5, 5),
    ),
    ("Conv1d", lambda: nn.Conv1d(3, 4, 3), lambda: torch.nn.Conv1d(3, 4, 3), (0, 3, 6)),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3), (0, 3, 4, 4)),
    ("BatchNorm2d-1x1", lambda: nn.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3), (0, 3, 1, 1)),
    (
        "BatchNorm1d",
        lambda: nn.BatchNorm1d(3, momentum=None),
        lambda: torch.nn.BatchNorm1d(3, momentum=None),
        (0, 3),
    ),
    ("MaxPool2d", lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2), (0, 3, 4, 4)),
    ("AvgPool2d", lambda: nn.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2), (0, 3, 4, 4)),
    (
        "AdaptiveAvgPool2d",
        lambda: nn.AdaptiveAvgPool2d(1),
        lambda: torch.nn.AdaptiveAvgPool2d(1),
        (0, 3, 4, 4),
    ),
    ("ReLU", lambda: nn.ReLU(), lambda: torch.nn.ReLU(), (0, 3)),
    ("LeakyReLU", lambda: nn.LeakyReLU(), lambda: torch.nn.LeakyReLU(), (0, 3)),
    ("ELU", lambda: nn.ELU(), lambda: torch.nn.ELU(), (0, 3)),
    ("Tanh", lambda: nn.Tanh(), lambda: torch.nn.Tanh(), (0, 3)),
    ("Sigmoid", lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid(), (0, 3)),
    ("LogSoftmax", lambda: nn.LogSoftmax(1), lambda: torch.nn.LogSoftmax(1), (0, 3)),
    ("Dropout", lambda: nn.Dropout(), lambda: torch.nn.Dropout(), (0, 3)),
    (
        "LocalResponseNorm",
        lambda: nn.LocalResponseNorm(2),
        lambda: torch.nn.LocalResponseNorm(2),
        (0, 3, 4, 4),
    ),
]


@needs_torch
@pytest.mark.parametrize("name,ours,theirs,shape", EMPTY, ids=[e[0] for e in EMPTY])
def test_empty_batch_layers_as_torch(name, ours, theirs, shape):
    """Training mode, as PyTorch: empty outputs, empty input gradients, zero parameter gradients,
    and the buffers after the step (BatchNorm: running stats kept, num_batches_tracked + 1)."""
    ref = theirs().double().train()
    net = ours().double().train()
    net.load_state_dict(ref.state_dict())
    tx = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    x = Tensor(np.zeros(shape), requires_grad=True)
    ty, y = ref(tx), net(x)
    ty.sum().backward()
    y.sum().backward()
    assert y.shape == tuple(ty.shape) and y.dtype == np.float64
    assert x.grad.shape == tuple(tx.grad.shape)
    for (key, p), tp in zip(net.named_parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.grad, tp.grad.numpy(), err_msg=key)
    for key, value in ref.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[key], value.numpy(), err_msg=key)


@needs_torch
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss", "mse_loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_losses_as_torch(loss, reduction):
    """A mean over no elements is nan (without a warning), a sum 0, as PyTorch."""
    x = Tensor(np.zeros((0, 5)), requires_grad=True)
    tx = torch.zeros((0, 5), dtype=torch.float64, requires_grad=True)
    target = np.zeros((0, 5)) if loss == "mse_loss" else np.zeros(0, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = getattr(F, loss)(
            x, Tensor(target) if loss == "mse_loss" else target, reduction=reduction
        )
        out.sum().backward()
    tout = getattr(TF, loss)(tx, torch.from_numpy(target), reduction=reduction)
    tout.sum().backward()
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    assert x.grad.shape == (0, 5)


def test_batch_norm_with_one_value_per_channel_still_raises():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(3)(Tensor(np.zeros((1, 3, 1, 1), np.float32)))

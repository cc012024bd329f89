"""Inference plans' native side and PyTorch front end: prepared Winograd filters equal the
ordinary forward bit for bit, a plan makes no heap allocation in steady state, and
fastconv.torch.compile (torch.fx) matches the module it traced."""

import numpy as np
import pytest

import fastconv
from fastconv import _core, inference, models
from fastconv import functional as F

WINOGRAD = _core.ALGO_NAMES.index("winograd")


def _conv_plan(x, w, b, algo, padding=1, residual=None, act=0, stride=1):
    """A one-step native plan: y = act(conv(x, w) + b (+ residual)) with algorithm algo (w's
    kernel size, square stride and padding); the residual (an array laid out as y) is a second
    input value after x."""
    desc = (
        x.shape[0],
        x.shape[1],
        x.shape[2],
        x.shape[3],
        w.shape[0],
        w.shape[2],
        w.shape[3],
        stride,
        stride,
        padding,
        padding,
        1,
        1,
        1,
    )
    ho, wo = _core.conv2d_output_size(desc)
    n_out = x.shape[0] * w.shape[0] * ho * wo
    n_in = x.size + (0 if residual is None else residual.size)
    p = _core.Plan(x.dtype == np.float64, n_in, n_out, 0)
    step = {
        "op": 0,
        "act": act,
        "in0": p.add_value(0, 0, x.size),
        "out": p.add_value(1, 0, n_out),
        "conv": list(desc),
        "algo": algo,
        "weight": p.add_constant(w),
    }
    if residual is not None:
        step["in1"] = p.add_value(0, x.size, residual.size)
    if b is not None:
        step["bias"] = p.add_constant(b)
    p.add_step(step)
    return p, (x.shape[0], w.shape[0], ho, wo)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# (the last three run fused, from filters prepared in panels, the last in blocks of tiles; 72, 50
# and 40 filters end in a part panel)
@pytest.mark.parametrize(
    "shape",
    [
        (1, 16, 14, 14, 24),
        (2, 64, 28, 28, 32),
        (1, 8, 9, 11, 5),
        (2, 64, 7, 7, 72),
        (1, 96, 13, 11, 50),
        (2, 16, 56, 55, 40),
    ],
)
def test_prepared_winograd_equals_the_ordinary_forward_bitwise(dtype, shape):
    """The filters transformed once at plan time give exactly fc_conv2d_forward's result."""
    n, c, h, w_, k = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    p, out_shape = _conv_plan(x, w, b, WINOGRAD)
    y = np.empty(out_shape, dtype)
    p.run(x.reshape(-1), y.reshape(-1))
    assert np.array_equal(y, F.conv2d(x, w, b, padding=1, algo="winograd"))


@pytest.mark.parametrize("c, k", [(8, 4), (64, 72)], ids=["unfused", "fused"])
def test_prepared_winograd_with_nonfinite_filters_falls_back_like_the_forward(c, k):
    """An infinite filter tap: the prepared path redoes the call as the ordinary one does, so
    NaNs stay where a plain convolution puts them."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, c, 10, 10)).astype(np.float32)
    w = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    w[1, 2, 0, 0] = np.inf
    p, out_shape = _conv_plan(x, w, None, WINOGRAD)
    y = np.empty(out_shape, np.float32)
    p.run(x.reshape(-1), y.reshape(-1))
    ref = F.conv2d(x, w, padding=1, algo="winograd")
    assert np.array_equal(np.isnan(y), np.isnan(ref)) and np.isfinite(np.delete(y, 1, axis=1)).all()
    assert np.array_equal(y, ref, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape,padding",
    [
        ((1, 16, 14, 14, 24), 1),
        ((2, 8, 9, 11, 5), 3),
        ((1, 64, 28, 28, 32), 1),
        ((3, 4, 5, 4, 6), 4),
        ((2, 64, 7, 7, 72), 1),  # fused
        ((1, 70, 9, 8, 66), 3),  # fused, outputs beyond the input's reach
        ((2, 16, 56, 56, 40), 1),  # fused in blocks of tiles
        ((2, 8, 54, 54, 20), 3),  # fused in blocks, outputs beyond the input's reach
    ],
)
def test_prepared_winograd_fuses_residual_and_relu_bitwise(dtype, shape, padding):
    """The residual add and ReLU run inside Winograd's output transform (and on the outputs
    beyond the input's reach, padding > 2): bit for bit the ordinary forward followed by the
    same two operations in one pass."""
    n, c, h, w_, k = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    y0 = F.conv2d(x, w, b, padding=padding, algo="winograd")
    res = rng.standard_normal(y0.shape).astype(dtype)
    p, out_shape = _conv_plan(x, w, b, WINOGRAD, padding, residual=res, act=1)
    y = np.empty(out_shape, dtype)
    p.run(np.concatenate([x.reshape(-1), res.reshape(-1)]), y.reshape(-1))
    expected = y0 + res
    expected = np.where(expected > 0, expected, dtype(0))
    assert np.array_equal(y, expected)


def test_prepared_winograd_fused_epilogue_after_the_nonfinite_fallback():
    """An infinite filter tap sends the call to the GEMM path; the epilogue then runs there,
    once (the residual is added once, not on top of the abandoned Winograd outputs)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, 10, 10)).astype(np.float32)
    w = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    w[1, 2, 0, 0] = np.inf
    y0 = F.conv2d(x, w, padding=1, algo="winograd")
    res = rng.standard_normal(y0.shape).astype(np.float32)
    p, out_shape = _conv_plan(x, w, None, WINOGRAD, residual=res, act=1)
    y = np.empty(out_shape, np.float32)
    p.run(np.concatenate([x.reshape(-1), res.reshape(-1)]), y.reshape(-1))
    expected = y0 + res
    expected = np.where((expected > 0) | np.isnan(expected), expected, np.float32(0))
    assert np.array_equal(y, expected, equal_nan=True)


@pytest.mark.parametrize(
    "name,shape",
    [
        ("resnet18", (1, 3, 64, 64)),
        pytest.param("googlenet", (2, 3, 64, 64), marks=pytest.mark.slow),
        pytest.param("vgg11_bn", (1, 3, 32, 32), marks=pytest.mark.slow),
    ],
)
def test_no_heap_allocation_in_steady_state(name, shape):
    """After compile (which sizes the workspace scratch by a run), every run takes all its
    algorithms' workspaces from the scratch: the counter of heap allocations stays 0."""
    model = models.get_model(name).eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    plan = inference.compile(model, x, tune=False)
    out = np.empty_like(plan(x))
    for _ in range(3):
        plan.run(x, out=out)
        ws = plan.workspace()
        assert ws["allocations"] == 0, ws
    assert ws["scratch_bytes"] > 0 and ws["arena_bytes"] > 0


def test_an_undersized_scratch_is_counted_then_grown():
    """The first run of a fresh native plan has no scratch: its workspaces are heap allocations
    (counted); the plan grows its scratch, and the next run makes none."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 32, 28, 28)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    p, out_shape = _conv_plan(x, w, None, _core.ALGO_NAMES.index("im2col"))
    y = np.empty(out_shape, np.float32)
    p.run(x.reshape(-1), y.reshape(-1))
    first = p.workspace()
    p.run(x.reshape(-1), y.reshape(-1))
    assert first[1] > 0 and p.workspace()[1] == 0 and p.workspace()[0] >= first[0]


# ---------------------------------------------------------------------------------------------
# fastconv.torch.compile

torch = pytest.importorskip("torch")
fct = pytest.importorskip("fastconv.torch")
tnn = torch.nn


class _Inception(tnn.Module):
    def __init__(self):
        super().__init__()
        self.a = tnn.Conv2d(8, 4, 1)
        self.b = tnn.Sequential(tnn.Conv2d(8, 4, 1), tnn.ReLU(), tnn.Conv2d(4, 6, 3, padding=1))
        self.pool = tnn.MaxPool2d(3, 1, 1, ceil_mode=True)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x), self.pool(x)], 1)


class _Net(tnn.Module):
    """Every layer and function the front end takes, in one module."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = tnn.BatchNorm2d(8)
        self.inc = _Inception()
        self.conv2 = tnn.Conv2d(18, 18, 3, padding=1, groups=3)
        self.bn2 = tnn.BatchNorm2d(18)
        self.fc1, self.fc2 = tnn.Linear(18, 4), tnn.Linear(4, 18)
        self.lrn = tnn.LocalResponseNorm(3)
        self.pool = tnn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
        self.head = tnn.Sequential(
            tnn.Flatten(), tnn.Dropout(), tnn.Linear(18 * 4 * 4, 10), tnn.Tanh()
        )
        self.register_buffer("scale", torch.tensor([0.5, 2.0, 1.5]).reshape(1, 3, 1, 1))

    def forward(self, x):
        x = torch.nn.functional.leaky_relu(self.bn(self.conv(x * self.scale)), 0.1)
        x = self.inc(x)
        y = torch.relu(self.bn2(self.conv2(x)) + x)  # residual add + ReLU
        s = torch.sigmoid(
            self.fc2(
                torch.relu(
                    self.fc1(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))
                )
            )
        )
        y = y * s.view(s.size(0), -1, 1, 1)  # squeeze-excitation
        return self.head(self.pool(torch.nn.functional.elu(self.lrn(y))))


def _randomize_bn(module):
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, tnn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return module


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("batch", [1, 3])
def test_torch_compile_matches_the_module(dtype, tol, batch):
    """The fx-traced plan of a module using every supported layer equals its eval output."""
    torch.manual_seed(0)
    net = _randomize_bn(_Net()).to(dtype).eval()
    x = torch.randn(batch, 3, 8, 8, dtype=dtype)
    plan = fct.compile(net, x)
    with torch.no_grad():
        ref = net(x)
    y = plan(x)
    assert isinstance(y, torch.Tensor) and y.shape == ref.shape and y.dtype == dtype
    err = float((y - ref).abs().max() / ref.abs().max())
    assert err < tol, err
    assert "batch_norm" in plan.summary()


def test_torch_compile_errors():
    """Training mode, an op fastconv has no layer for, and a bad example are clear errors."""
    net = _Net()
    with pytest.raises(ValueError, match="eval"):
        fct.compile(net, torch.randn(1, 3, 8, 8))

    class Soft(tnn.Module):
        def forward(self, x):
            return torch.softmax(x, 1)

    with pytest.raises(inference.UnsupportedOp, match="softmax"):
        fct.compile(Soft().eval(), torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="4-D"):
        fct.compile(net.eval(), torch.randn(3, 8, 8))
    with pytest.raises(TypeError):
        fct.compile(net.eval(), np.zeros((1, 3, 8, 8), np.float32))


def test_bench_infer_twin_equals_the_plan():
    """bench infer's PyTorch peer (the captured graph run by torch.nn.functional) computes the
    same network as the plan."""
    from fastconv.autograd import manual_seed
    from fastconv.inference._twin import torch_twin

    manual_seed(0)
    model = models.resnet18().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    twin = torch_twin(inference._graph.capture(model, x))
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    y = inference.compile(model, x, tune=False)(x)
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()
    assert fastconv.inference.compile(model, x, tune=False)(x).shape == (2, 1000)


def test_calls_from_several_threads_take_turns():
    """One plan has one arena: concurrent calls (the GIL is released while it runs) must not
    interleave; each thread gets the single-threaded answer."""
    import threading

    model = models.resnet18().eval()
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    plan = inference.compile(model, xs[0], tune=False)
    want = [plan(x) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(5):
            got[i] = plan(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(g, w) for g, w in zip(got, want))

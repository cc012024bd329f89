"""fastconv.torch against PyTorch itself: forward values and gradients (float64 to 1e-10
relative), the modules' state, convert(), zero-copy and the fall-backs."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
TF = torch.nn.functional

import fastconv  # noqa: E402
import fastconv.torch as fct  # noqa: E402


def close(got, want, rtol):
    """Every element within rtol of the reference, relative to the reference's magnitude."""
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(want.abs().max().item(), 1e-300)
    err = (got - want).abs().max().item() if want.numel() else 0.0
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:g} * {scale:.3g}"


def grads(fn, inputs, seed=0):
    """The output of fn(*inputs) and the gradients of sum(out * r) for a fixed random r."""
    inputs = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    out = fn(*inputs)
    r = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    leaves = [t for t in inputs if t is not None]
    return out.detach(), torch.autograd.grad(out, leaves, r)


def compare(ours, theirs, inputs, rtol):
    y1, g1 = grads(ours, inputs)
    y2, g2 = grads(theirs, inputs)
    close(y1, y2, rtol)
    for a, b in zip(g1, g2):
        close(a, b, rtol)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def randn(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# convolutions

CONV_CASES = [
    # x shape, w shape, bias, stride, padding, dilation, groups
    ((2, 3, 9, 8), (4, 3, 3, 3), True, 1, 1, 1, 1),
    ((2, 4, 11, 10), (6, 2, 3, 2), True, (2, 1), (1, 0), (2, 3), 2),
    ((1, 6, 12, 12), (6, 1, 3, 3), False, 1, "same", 2, 6),  # dilated depthwise
    ((2, 4, 10, 9), (12, 1, 5, 5), True, 2, 2, 1, 4),  # depthwise, multiplier 3
    ((3, 8, 7, 7), (16, 8, 1, 1), True, 1, 0, 1, 1),  # 1x1
    ((2, 3, 8, 8), (5, 3, 4, 4), True, 1, "same", 1, 1),  # even kernel: asymmetric 'same'
    ((3, 7, 9), (4, 3, 3, 3), True, 2, "valid", 1, 1),  # unbatched
]


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
@pytest.mark.parametrize("xs,ws,bias,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_matches_torch_float64(gen, xs, ws, bias, stride, padding, dilation, groups):
    x, w = randn(gen, *xs), randn(gen, *ws)
    b = randn(gen, ws[0]) if bias else None
    args = (stride, padding, dilation, groups)
    compare(
        lambda x, w, b=None: fct.conv2d(x, w, b, *args),
        lambda x, w, b=None: TF.conv2d(x, w, b, *args),
        [x, w, b],
        1e-10,
    )


def test_conv2d_float32(gen):
    x, w, b = (
        randn(gen, 2, 6, 13, 11, dtype=torch.float32),
        randn(gen, 8, 3, 3, 3, dtype=torch.float32),
        randn(gen, 8, dtype=torch.float32),
    )
    compare(
        lambda x, w, b: fct.conv2d(x, w, b, 2, 1, 1, 2),
        lambda x, w, b: TF.conv2d(x, w, b, 2, 1, 1, 2),
        [x, w, b],
        1e-4,
    )


@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 2, 1, 1), (2, "same", 1, 1), (1, 1, 3, 2)]
)
def test_conv1d_matches_torch(gen, stride, padding, dilation, groups):
    if padding == "same" and stride != 1:
        stride = 1
    x, w, b = randn(gen, 2, 4, 23), randn(gen, 6, 4 // groups, 3), randn(gen, 6)
    args = (stride, padding, dilation, groups)
    compare(
        lambda x, w, b: fct.conv1d(x, w, b, *args),
        lambda x, w, b: TF.conv1d(x, w, b, *args),
        [x, w, b],
        1e-10,
    )


def test_conv2d_gradcheck(gen):
    x, w, b = randn(gen, 1, 2, 4, 5), randn(gen, 2, 1, 3, 2), randn(gen, 2)
    for t in (x, w, b):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: fct.conv2d(x, w, b, 1, 1, (1, 2), 2), (x, w, b), fast_mode=True
    )


def test_conv2d_only_needed_grads(gen, monkeypatch):
    seen = []
    real = fastconv.functional.conv2d_backward

    def spy(*a, **k):
        seen.append(k["needs"])
        return real(*a, **k)

    monkeypatch.setattr(fastconv.functional, "conv2d_backward", spy)
    x, w, b = randn(gen, 2, 3, 6, 6).requires_grad_(True), randn(gen, 4, 3, 3, 3), randn(gen, 4)
    (gx,) = torch.autograd.grad(fct.conv2d(x, w, b).sum(), [x])
    close(gx, torch.autograd.grad(TF.conv2d(x, w, b).sum(), [x])[0], 1e-10)
    w.requires_grad_(True)
    (gw,) = torch.autograd.grad(fct.conv2d(x.detach(), w).sum(), [w])
    close(gw, torch.autograd.grad(TF.conv2d(x.detach(), w).sum(), [w])[0], 1e-10)
    assert seen == [(True, False, False), (False, True, False)]


def test_zero_copy_and_noncontiguous(gen, monkeypatch):
    x = randn(gen, 2, 3, 8, 8)
    w = randn(gen, 4, 3, 3, 3)
    seen = []
    real = fastconv.functional.conv2d

    def spy(xa, wa, *a, **k):
        seen.append((xa, wa))
        return real(xa, wa, *a, **k)

    monkeypatch.setattr(fastconv.functional, "conv2d", spy)
    y = fct.conv2d(x, w)
    xa, wa = seen[-1]
    assert xa.ctypes.data == x.data_ptr() and wa.ctypes.data == w.data_ptr()  # no copies
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    # a transposed (non-contiguous) input is made contiguous first and gives torch's answer
    xt = randn(gen, 2, 3, 8, 8).transpose(2, 3)
    assert not xt.is_contiguous()
    close(fct.conv2d(xt, w, None, 1, 1), TF.conv2d(xt, w, None, 1, 1), 1e-10)


def test_fallbacks_to_torch(gen):
    x, w = randn(gen, 1, 2, 6, 6), randn(gen, 3, 2, 3, 3)
    for dtype in (torch.bfloat16, torch.float16):
        got = fct.conv2d(x.to(dtype), w.to(dtype), None, 1, 1)
        assert got.dtype == dtype
        assert torch.equal(got, TF.conv2d(x.to(dtype), w.to(dtype), None, 1, 1))
    # mixed dtypes are PyTorch's error, not a crash
    with pytest.raises(RuntimeError):
        fct.conv2d(x, w.float())


# ---------------------------------------------------------------------------------------------
# pooling

MAXPOOL_CASES = [
    # x shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((2, 3, 9, 10), 3, 2, 1, 1, False),
    ((1, 2, 11, 9), (3, 2), (2, 1), (1, 1), (2, 1), True),
    ((2, 4, 7, 7), 3, 2, 0, 1, True),
    ((3, 9, 9), 2, 2, 1, 1, False),  # unbatched
]


@pytest.mark.parametrize("xs,kernel,stride,padding,dilation,ceil_mode", MAXPOOL_CASES)
def test_max_pool2d_matches_torch(gen, xs, kernel, stride, padding, dilation, ceil_mode):
    x = randn(gen, *xs)
    args = (kernel, stride, padding, dilation, ceil_mode)
    compare(lambda x: fct.max_pool2d(x, *args), lambda x: TF.max_pool2d(x, *args), [x], 1e-12)
    y1, i1 = fct.max_pool2d(x, *args, return_indices=True)
    y2, i2 = TF.max_pool2d(x, *args, return_indices=True)
    assert i1.dtype == torch.int64 and torch.equal(i1, i2) and torch.equal(y1, y2)


@pytest.mark.parametrize("pool", [fct.max_pool2d, TF.max_pool2d], ids=["fastconv", "torch"])
def test_max_pool2d_indices_changed_in_place_make_backward_raise(gen, pool):
    """The returned indices are the ones backward scatters through: changing them in place must
    not silently move the gradient, backward raises as PyTorch's does."""
    x = randn(gen, 1, 2, 6, 6).requires_grad_(True)
    y, idx = pool(x, 2, return_indices=True)
    idx.zero_()  # every switch now points at element 0 of its plane
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    # unchanged indices (or a copy changed) still give PyTorch's gradient
    y, idx = pool(x, 2, return_indices=True)
    idx.clone().zero_()
    (gx,) = torch.autograd.grad(y.sum(), x)
    (want,) = torch.autograd.grad(TF.max_pool2d(x, 2).sum(), x)
    assert torch.equal(gx, want)


AVGPOOL_CASES = [
    # x shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    ((2, 3, 8, 8), 2, None, 0, False, True, None),
    ((2, 3, 9, 10), 3, 2, 1, False, True, None),
    ((2, 3, 9, 10), 3, 2, 1, True, False, None),
    ((1, 2, 7, 11), (3, 2), (2, 3), (1, 1), True, True, None),
    ((2, 2, 8, 8), 3, 1, 1, False, True, 5),
]


@pytest.mark.parametrize("xs,kernel,stride,padding,ceil_mode,cip,div", AVGPOOL_CASES)
def test_avg_pool2d_matches_torch(gen, xs, kernel, stride, padding, ceil_mode, cip, div):
    x = randn(gen, *xs)
    args = (kernel, stride, padding, ceil_mode, cip, div)
    compare(lambda x: fct.avg_pool2d(x, *args), lambda x: TF.avg_pool2d(x, *args), [x], 1e-10)


@pytest.mark.parametrize(
    "xs,size", [((2, 3, 7, 9), 1), ((2, 3, 10, 7), (3, 4)), ((1, 2, 5, 6), (None, 4))]
)
def test_adaptive_avg_pool2d_matches_torch(gen, xs, size):
    x = randn(gen, *xs)
    compare(
        lambda x: fct.adaptive_avg_pool2d(x, size),
        lambda x: TF.adaptive_avg_pool2d(x, size),
        [x],
        1e-10,
    )


# ---------------------------------------------------------------------------------------------
# modules and convert()


def test_modules_are_torch_modules():
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    ours = fct.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    assert isinstance(ours, nn.Conv2d)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    assert repr(ours) == repr(ref)
    x = torch.randn(2, 4, 9, 9)
    close(ours(x), ref(x), 1e-4)
    pool = fct.MaxPool2d(3, 2, 1, return_indices=True)
    y, idx = pool(x)
    y2, idx2 = nn.MaxPool2d(3, 2, 1, return_indices=True)(x)
    assert torch.equal(y, y2) and torch.equal(idx, idx2)
    close(fct.AvgPool2d(2)(x), nn.AvgPool2d(2)(x), 1e-6)
    close(fct.AdaptiveAvgPool2d((2, 3))(x), nn.AdaptiveAvgPool2d((2, 3))(x), 1e-6)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),  # bias: BN's
            nn.MaxPool2d(2, 2),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False),  # depthwise, dilated
            nn.Conv2d(8, 12, 1),
            nn.ReLU(),
            nn.AvgPool2d(3, 1, 1, count_include_pad=False),
            nn.Conv2d(12, 12, 3, padding=1, padding_mode="reflect"),  # stays PyTorch's
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def test_convert_matches_original(monkeypatch):
    torch.manual_seed(0)
    ref = Net().double()
    model = copy.deepcopy(ref)
    params_before = [id(p) for p in model.parameters()]
    assert fct.convert(model) is model
    kinds = [type(m) for m in model.features]
    assert kinds[0] is fct.Conv2d and kinds[3] is fct.MaxPool2d and kinds[4] is fct.Conv2d
    assert kinds[5] is fct.Conv2d and kinds[7] is fct.AvgPool2d
    assert kinds[8] is nn.Conv2d  # padding_mode='reflect' is skipped
    assert type(model.pool) is fct.AdaptiveAvgPool2d and type(model.fc) is nn.Linear
    assert [id(p) for p in model.parameters()] == params_before  # the very same parameters
    assert list(model.state_dict()) == list(ref.state_dict())

    calls = {"conv": 0, "pool": 0}
    real_conv, real_pool = fastconv.functional.conv2d, fastconv.functional.max_pool2d

    def conv_spy(*a, **k):
        calls["conv"] += 1
        return real_conv(*a, **k)

    def pool_spy(*a, **k):
        calls["pool"] += 1
        return real_pool(*a, **k)

    monkeypatch.setattr(fastconv.functional, "conv2d", conv_spy)
    monkeypatch.setattr(fastconv.functional, "max_pool2d", pool_spy)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    for mode in ("train", "eval"):
        getattr(ref, mode)()
        getattr(model, mode)()
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = model(xa), ref(xb)
        close(ya.detach(), yb.detach(), 1e-10)
        r = torch.randn_like(ya)
        (ya * r).sum().backward()
        (yb * r).sum().backward()
        close(xa.grad, xb.grad, 1e-10)
        for (_, pa), (_, pb) in zip(model.named_parameters(), ref.named_parameters()):
            close(pa.grad, pb.grad, 1e-10)
        model.zero_grad()
        ref.zero_grad()
    assert calls["conv"] == 2 * 3 and calls["pool"] == 2  # fastconv really ran
    # running statistics moved identically
    close(model.features[1].running_mean, ref.features[1].running_mean, 1e-12)


def test_convert_keeps_optimizer_working():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fct.convert(model)
    before = model[0].weight.detach().clone()
    model(torch.randn(4, 2, 6, 6)).sum().backward()
    opt.step()
    assert not torch.equal(before, model[0].weight)
    assert type(fct.convert(nn.Conv2d(1, 1, 1))) is fct.Conv2d  # a bare module converts too


def test_convert_skips_subclasses():
    class MyConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2

    m = nn.Sequential(MyConv(1, 1, 1))
    fct.convert(m)
    assert type(m[0]) is MyConv


def test_torch_is_not_imported_by_fastconv():
    import subprocess
    import sys

    code = "import sys, fastconv, fastconv.cs231n; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

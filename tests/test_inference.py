"""fastconv.inference: a model's forward compiled into one native plan.

- Every model in fastconv.models: the float32 plan (batch 2 and 1, where that is cheap) within
  1e-4 of the float64 eager forward, relative to each sample's largest output; float64 plans
  within 1e-10 of it.
  ResNet-18 and GoogLeNet also against their PyTorch twins (fastconv/_torch_models.py).
- The passes did what they claim: BatchNorm folded and residual add + ReLU fused into ResNet-50's
  convolutions; GoogLeNet's concat written in place at batch 1 and copied at batch 2.
- Small models mixing every op a plan has (float64 within 1e-10 of eager).
- save/load (bitwise, atomic), determinism (repeat, 1 vs 2 threads), the argument checks of
  compile, run and load, summary and profile.
- The native plan (fastconv._core.Plan) validates every value and step when it is added.

The models' own initialisations leave BatchNorm at identity and (GoogLeNet) make activations
vanish, so every parameter and BatchNorm statistic is redrawn from a seeded generator first.
"""

import collections
import json
import os
import zlib

import numpy as np
import pytest

import fastconv
from _autograd_ref import no_init
from fastconv import _core, inference, models, nn
from fastconv.autograd import Tensor, concat, no_grad
from fastconv.inference import UnsupportedOp
from fastconv.nn import functional as F

# (channels, height = width): small where an adaptive pool allows (ResNet-101/152 at 32: layer4
# still gets 1x1), the fixed sizes of the models with a flatten into a linear layer
SIZES = {
    "lenet5": (1, 32),
    "alexnet": (3, 64),
    "alexnet_owt": (3, 224),
    "overfeat_fast": (3, 231),
    "vgg_a": (3, 224),
    "googlenet": (3, 96),
    "googlenet_v1": (3, 224),
    "resnet101": (3, 32),
    "resnet152": (3, 32),
    "inception_v3": (3, 75),
    "inception_v4": (3, 75),
    "inception_resnet_v2": (3, 75),
    "zfnet": (3, 64),
    "nin_cifar": (3, 32),
    "nin_imagenet": (3, 64),
}
DEFAULT_SIZE = {"vgg": (3, 32), "resnet": (3, 64), "se_resnet": (3, 64)}
BATCH1_ONLY = {"overfeat_fast", "vgg_a", "googlenet_v1"}  # 224/231 inputs: batch 1 keeps it short
# Each planned shape copies all constants into its native plan. VGG-13/16/19 at batch 2 only:
# their 25088x4096 classifier (VGG-11's, whose batch-1 plan is checked) is most of their cost.
BATCH2_ONLY = {f"vgg{d}{bn}" for d in (13, 16, 19) for bn in ("", "_bn")}
F64_PLANS = {"lenet5", "alexnet", "vgg11_bn", "googlenet", "resnet18", "se_resnet50"}
BIG_FC = {"alexnet", "vgg11_bn"}  # 60-130M weights: their float64 plan at batch 2 only
F32_TOL, F64_TOL = 1e-4, 1e-10
BIG = 1 << 22  # weights this large are drawn once per shape and shared by the models that have them


def _size(name):
    if name in SIZES:
        return SIZES[name]
    return next(v for k, v in DEFAULT_SIZE.items() if name.startswith(k))


def _shared(bank, shape):
    """A large weight (float32, and the same values in float64), drawn once per shape."""
    if shape not in bank:
        rng = np.random.default_rng(zlib.crc32(repr(shape).encode()))
        a = np.empty(shape, np.float32)
        rng.random(out=a, dtype=np.float32)
        bound = np.float32(np.sqrt(6.0 / a[0].size))
        a *= 2 * bound
        a -= bound
        bank[shape] = (a, a.astype(np.float64))
    return bank[shape]


def _randomise(m32, m64, rng, bank):
    """Weights uniform with variance 2 / fan_in, other biases in +-0.1, BatchNorm weight in
    [0.5, 1.5] and bias in +-0.2, running mean in +-0.2 and variance in [0.5, 2]; m64 gets the
    same (float32) values."""
    bn = {k for k, m in m32.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))}
    params64 = dict(m64.named_parameters())
    for key, p in m32.named_parameters():
        owner, _, leaf = key.rpartition(".")
        a = p.data
        if a.size >= BIG:
            p.data, params64[key].data = _shared(bank, a.shape)
            continue
        if owner in bn:
            lo, hi = (0.5, 1.5) if leaf == "weight" else (-0.2, 0.2)
        elif a.ndim == 1:
            lo, hi = -0.1, 0.1
        else:
            hi = np.sqrt(6.0 / a[0].size)
            lo = -hi
        rng.random(out=a, dtype=a.dtype)  # in place: no float64 temporaries for the big convs
        a *= a.dtype.type(hi - lo)
        a += a.dtype.type(lo)
        params64[key].data[...] = a
    buffers64 = dict(m64.named_buffers())
    for key, b in m32.named_buffers():
        leaf = key.rpartition(".")[2]
        if leaf == "running_mean":
            b[...] = rng.uniform(-0.2, 0.2, b.shape)
        elif leaf == "running_var":
            b[...] = rng.uniform(0.5, 2.0, b.shape)
        buffers64[key][...] = b


@pytest.fixture(scope="module")
def bank():
    """The shared large weights (the classifiers' 25088x4096 and such), for this module only."""
    return {}


@pytest.fixture(scope="module")
def zoo(bank):
    """zoo(name) -> (float32 model, float64 model) in eval mode with the same random weights;
    small models are built once for the module."""
    cache = {}

    def get(name, keep=True):
        if name in cache:
            return cache[name]
        with no_init():
            m32 = models.get_model(name)
            m64 = models.get_model(name, dtype=np.float64)
        _randomise(m32, m64, np.random.default_rng(zlib.crc32(name.encode())), bank)
        pair = (m32.eval(), m64.eval())
        if keep:
            cache[name] = pair
        return pair

    return get


def _input(name, n, seed=0):
    c, s = _size(name)
    return np.random.default_rng(seed).standard_normal((n, c, s, s))


def _eager(model, x):
    with no_grad():
        return model(Tensor(x)).data


def _assert_close(actual, ref, tol, what):
    """|actual - ref| <= tol * max|ref| per sample. A practical bound for whole networks: float32
    rounding grows with the magnitude of the intermediate sums, which the sample's largest output
    tracks, not with each output element's own (possibly tiny) size."""
    assert isinstance(actual, np.ndarray), f"{what}: got {type(actual).__name__}"
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape}, expected {ref.shape}"
    a = actual.astype(np.float64).reshape(len(ref), -1)
    r = ref.reshape(len(ref), -1)
    assert np.isfinite(a).all(), f"{what}: non-finite output"
    rel = np.abs(a - r).max(axis=1) / np.abs(r).max(axis=1)
    assert (rel <= tol).all(), f"{what}: max relative error {rel.max():.3g} > {tol:g}"
    return float(rel.max())


def _assert_nontrivial(ref, what):
    flat = ref.reshape(len(ref), -1)
    assert np.isfinite(flat).all(), f"{what}: eager reference is not finite"
    peak = np.abs(flat).max(axis=1)
    assert (peak > 1e-3).all(), f"{what}: eager reference is ~0 (max {peak.min():.3g})"
    assert (np.ptp(flat, axis=1) > 1e-3 * peak).all(), f"{what}: eager reference is constant"


# --- every model against the eager forward --------------------------------------------------------

# The fast loop (`-m "not slow"`) compiles LeNet-5 here; the other models take seconds to tens
# of seconds each and run in the full suite (the tests below keep ResNet-18, ResNet-50 and
# GoogLeNet plans in the fast loop).
FAST_MODELS = {"lenet5"}


@pytest.mark.parametrize(
    "name",
    [n if n in FAST_MODELS else pytest.param(n, marks=pytest.mark.slow) for n in models.MODELS],
)
def test_model_plan_matches_eager(name, zoo):
    """float32 plan at batch 2 and 1 (BATCH1_ONLY, BATCH2_ONLY: one of them) within 1e-4 of the
    float64 eager forward; for F64_PLANS the float64 plan within 1e-10."""
    m32, m64 = zoo(name, keep=name in ("resnet18", "resnet50", "googlenet"))
    n = 1 if name in BATCH1_ONLY else 2
    x = _input(name, n)
    ref = _eager(m64, x)
    _assert_nontrivial(ref, name)
    x32 = x.astype(np.float32)
    plan = inference.compile(m32, x32, tune=False)
    y = plan(x32)
    assert y.dtype == np.float32
    _assert_close(y, ref, F32_TOL, f"{name} float32 plan, batch {n}")
    if n == 2 and name not in BATCH2_ONLY:
        _assert_close(plan(x32[:1]), ref[:1], F32_TOL, f"{name} float32 plan, batch 1")
        assert sorted(plan._lowered) == [(1,) + x.shape[1:], x.shape]
    if name in F64_PLANS:
        p64 = inference.compile(m64, x, tune=False)
        assert p64.dtype == np.float64
        _assert_close(p64(x), ref, F64_TOL, f"{name} float64 plan, batch {n}")
        if name not in BIG_FC:
            _assert_close(p64(x[:1]), ref[:1], F64_TOL, f"{name} float64 plan, batch 1")


def _torch_googlenet_forward(t, x):
    """fastconv.models.GoogLeNet's forward (eval, no aux heads) on fastconv._torch_models' twin."""
    import torch

    def basic(seq, v):  # the twin's BasicConv2d is conv -> bn; the ReLU is in the forward
        return torch.relu(seq(v))

    def inception(d, v):
        return torch.cat(
            [
                basic(d["branch1"], v),
                basic(d["branch2"][1], basic(d["branch2"][0], v)),
                basic(d["branch3"][1], basic(d["branch3"][0], v)),
                basic(d["branch4"][1], d["branch4"][0](v)),
            ],
            1,
        )

    def pool(v, k=3):
        return torch.nn.functional.max_pool2d(v, k, 2, ceil_mode=True)

    x = pool(basic(t["conv1"], x))
    x = pool(basic(t["conv3"], basic(t["conv2"], x)))
    x = pool(inception(t["inception3b"], inception(t["inception3a"], x)))
    for k in ("4a", "4b", "4c", "4d", "4e"):
        x = inception(t["inception" + k], x)
    x = inception(t["inception5b"], inception(t["inception5a"], pool(x, 2)))
    return t["fc"](torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("name", ["resnet18", pytest.param("googlenet", marks=pytest.mark.slow)])
def test_plan_matches_pytorch(name, zoo):
    """The fastconv weights loaded into the PyTorch twin (float64, eval): the float32 plan within
    1e-4 and the float64 plan within 1e-10 of PyTorch's output; a torch tensor input is taken."""
    torch = pytest.importorskip("torch")
    from fastconv._torch_models import torch_googlenet, torch_resnet

    m32, m64 = zoo(name)
    if name == "resnet18":
        theirs = torch_resnet("basic", [2, 2, 2, 2])
        forward = theirs
    else:
        theirs = torch_googlenet(aux_logits=False)
        forward = lambda v: _torch_googlenet_forward(theirs, v)  # noqa: E731
    theirs = theirs.double().eval()
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m64.state_dict().items()})
    x = _input(name, 2, seed=5)
    if name == "googlenet":
        x = x[:, :, :64, :64].copy()
    with torch.no_grad():
        want = forward(torch.from_numpy(x)).numpy()
    _assert_nontrivial(want, name)
    x32 = x.astype(np.float32)
    plan = inference.compile(m32, x32, tune=False)
    err32 = _assert_close(plan(x32), want, F32_TOL, f"{name} float32 plan vs PyTorch")
    p64 = inference.compile(m64, x, tune=False)
    err64 = _assert_close(p64(x), want, F64_TOL, f"{name} float64 plan vs PyTorch")
    assert err32 > err64  # the float32 plan computed in float32
    assert np.array_equal(plan(torch.from_numpy(x32)), plan(x32))


# --- what the passes did --------------------------------------------------------------------------


def test_resnet50_batch_norm_folded_and_residual_fused(zoo):
    """No standalone batch-norm, activation or add step: every conv has its BatchNorm folded, one
    conv per bottleneck has (batch_norm, add, relu): the third conv, or (first block of a stage)
    the downsample conv that runs after it, the third conv then keeping only batch_norm."""
    m32, _ = zoo("resnet50")
    x = _input("resnet50", 1).astype(np.float32)
    plan = inference.compile(m32, x, tune=False)
    steps = plan._for(x.shape).steps
    assert {s.op for s in steps} == {"conv", "max_pool", "adaptive_avg", "linear"}
    convs = [s for s in steps if s.op == "conv"]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in m32.modules()) == 53
    kinds = collections.Counter(s.fused for s in convs)
    assert kinds == {
        ("batch_norm", "relu"): 33,
        ("batch_norm", "add", "relu"): 16,
        ("batch_norm",): 4,
    }, kinds
    blocks = 0
    for i, s in enumerate(steps):
        if s.fused != ("batch_norm", "add", "relu"):
            continue
        blocks += 1
        before = steps[i - 1]
        if before.fused == ("batch_norm",):  # downsample block: conv3 just before, same output
            assert before.out_shape == s.out_shape
        else:  # conv3: 1x1 expanding the 3x3 conv's output 4 times, same plane
            assert before.fused == ("batch_norm", "relu") and before.out_shape == s.in_shape
            assert s.out_shape[1] == 4 * s.in_shape[1] and s.out_shape[2:] == s.in_shape[2:]
    assert blocks == 16


def _prepared_1x1_choice(x_shape, k):
    """The heuristic's forward for a prepared unit-stride 1x1 of k outputs on x_shape."""
    desc = [*x_shape, k, 1, 1, 1, 1, 0, 0, 1, 1, 1]
    return _core.ALGO_NAMES[_core.conv2d_choose_prepared(desc)]


def _stack_choice(x_shape, k):
    """A stack of sibling 1x1s (k outputs in all) runs the heuristic's choice for its shape
    where that is gemm1x1 or direct, else gemm1x1."""
    want = _prepared_1x1_choice(x_shape, k)
    return want if want in ("gemm1x1", "direct") else "gemm1x1"


def test_googlenet_concat_in_place_at_batch_1_copied_at_batch_2(zoo):
    """Batch 1: each inception module's first 1x1 of every branch run as one stacked product
    (fused "a+b+c", on the heuristic's algorithm for the stacked shape), whose first branch the
    concat copies into its slice, every other branch writing its slice itself; batch 2: no
    stacking, one copy step per branch (4 x 9); both within tolerance of eager."""
    m32, m64 = zoo("googlenet")
    x = _input("googlenet", 2, seed=3)[:, :, :64, :64].copy()
    ref = _eager(m64, x)
    x32 = x.astype(np.float32)
    plan = inference.compile(m32, x32[:1], tune=False)
    steps1, steps2 = plan._for((1, 3, 64, 64)).steps, plan._for((2, 3, 64, 64)).steps
    ops1 = collections.Counter(s.op for s in steps1)
    ops2 = collections.Counter(s.op for s in steps2)
    stacked = [s for s in steps1 if s.op == "conv" and "+" in s.fused[-1]]
    assert stacked and ops1["copy"] == len(stacked), (ops1, stacked)
    for s in stacked:
        parts = [int(k) for k in s.fused[-1].split("+")]
        assert len(parts) == 3 and sum(parts) == s.out_shape[1]
        assert s.algo == _stack_choice(s.in_shape, s.out_shape[1]), s
        assert s.fused[:-1] == ("batch_norm", "relu")
    assert ops1["conv"] == 57 - 2 * len(stacked) and ops2["conv"] == 57 and ops2["copy"] == 36
    assert all(s.fused == ("batch_norm", "relu") for s in steps2 if s.op == "conv")
    assert all(
        s.fused == ("batch_norm", "relu") for s in steps1 if s.op == "conv" and s not in stacked
    )
    _assert_close(plan(x32[:1]), ref[:1], F32_TOL, "googlenet batch 1")
    _assert_close(plan(x32), ref, F32_TOL, "googlenet batch 2")


class Siblings(nn.Module):
    """Two modules of sibling 1x1 convolutions on planes of two sizes (stacked separately),
    with and without bias, one feeding a concat first, one a 3x3, one a residual add; a sibling
    with another activation (not stacked with the others)."""

    def __init__(self, dtype):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, dtype=dtype)
        self.a1 = nn.Conv2d(8, 5, 1, dtype=dtype)
        self.a2 = nn.Conv2d(8, 7, 1, bias=False, dtype=dtype)
        self.a3 = nn.Conv2d(8, 4, 1, dtype=dtype)
        self.a4 = nn.Conv2d(8, 3, 1, dtype=dtype)  # sigmoid
        self.t2 = nn.Conv2d(7, 6, 3, padding=1, dtype=dtype)
        self.pool = nn.MaxPool2d(2)
        self.b1 = nn.Conv2d(18, 6, 1, dtype=dtype)
        self.b2 = nn.Conv2d(18, 6, 1, dtype=dtype)
        self.b3 = nn.Conv2d(18, 9, 1, dtype=dtype)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = concat(
            [F.relu(self.a1(x)), F.relu(self.t2(F.relu(self.a2(x)))), F.relu(self.a3(x))], axis=1
        )
        y = concat([y, F.sigmoid(self.a4(x))], axis=1)
        z = self.pool(y)
        return concat([F.relu(self.b1(z)) + F.relu(self.b2(z)), F.relu(self.b3(z))], axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sibling_1x1_convolutions_stacked_at_batch_1(dtype):
    """Siblings within tolerance of eager (1e-10 in float64) at batch 1 (two stacked GEMMs, on
    16x12 and 8x6 planes) and batch 2 (none); the same bits run to run."""
    model = _fill(Siblings(dtype), 5)
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 12)).astype(dtype)
    tol = F64_TOL if dtype == np.float64 else F32_TOL
    plan = inference.compile(model, x[:1], tune=False)
    for n in (1, 2):
        ref = _eager(model, x[:n])
        y = plan(x[:n])
        _assert_close(y, ref, tol, f"siblings batch {n}")
        assert np.array_equal(plan(x[:n]), y)
        stacked = [s.fused[-1] for s in plan._for(x[:n].shape).steps if "+" in "".join(s.fused)]
        assert stacked == (["5+7+4", "6+6+9"] if n == 1 else []), stacked


class MixedSiblings(nn.Module):
    """Three 1x1 branch heads on a 14x14 plane whose own algorithms differ (256 outputs: direct
    on its own; 24 and 40: gemm1x1), stacked into one 320-output product."""

    def __init__(self, dtype):
        super().__init__()
        self.a = nn.Conv2d(48, 256, 1, dtype=dtype)
        self.b = nn.Conv2d(48, 24, 1, dtype=dtype)
        self.c = nn.Conv2d(48, 40, 1, bias=False, dtype=dtype)
        self.t = nn.Conv2d(24, 16, 3, padding=1, dtype=dtype)

    def forward(self, x):
        return concat(
            [F.relu(self.a(x)), F.relu(self.t(F.relu(self.b(x)))), F.relu(self.c(x))], axis=1
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_siblings_of_mixed_algorithms_stacked(dtype):
    """Sibling 1x1s stack whichever of gemm1x1 and direct each would run alone; the stacked
    product runs the heuristic's choice for the stacked shape (a 48>320 1x1 at 14x14: direct's
    blocked tiles where they run); within tolerance of eager, the same bits run to run."""
    model = _fill(MixedSiblings(dtype), 7)
    x = np.random.default_rng(5).standard_normal((1, 48, 14, 14)).astype(dtype)
    plan = inference.compile(model, x, tune=False)
    steps = plan._for(x.shape).steps
    conv_algos = [s.algo for s in steps if s.op == "conv"]
    stacked = [s for s in steps if "256+24+40" in s.fused]
    assert len(stacked) == 1, [s.fused for s in steps]
    assert stacked[0].algo == _stack_choice(x.shape, 320)
    if fastconv.isa() != "generic":
        assert stacked[0].algo == "direct", conv_algos
    own = [_prepared_1x1_choice(x.shape, k) for k in (256, 24, 40)]
    if fastconv.isa() != "generic":
        assert own[0] == "direct" and own[1] == "gemm1x1", own  # (mixed before stacking)
    y = plan(x)
    _assert_close(y, _eager(model, x), F64_TOL if dtype == np.float64 else F32_TOL, "mixed")
    assert np.array_equal(plan(x), y)


def test_sibling_viewed_by_the_output_is_not_stacked():
    """A 1x1 whose output the model returns through a view keeps its own buffer (the caller's
    output), so its sibling runs alone."""

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 3, 1, dtype=np.float64)
            self.b = nn.Conv2d(4, 5, 1, dtype=np.float64)

        def forward(self, x):
            self.seen = F.relu(self.a(x))
            return F.relu(self.b(x)).flatten(1)

    model = _fill(Two(), 6)
    x = np.random.default_rng(4).standard_normal((1, 4, 6, 5))
    plan = inference.compile(model, x, tune=False)
    _assert_close(plan(x), _eager(model, x), F64_TOL, "viewed sibling")
    assert not any("+" in "".join(s.fused) for s in plan._for(x.shape).steps)


@pytest.mark.parametrize(
    "hw, c, k, stride, batch2",
    [(7, 48, 128, 1, "gemm1x1"), (14, 40, 256, 1, "gemm1x1"), (14, 40, 128, 2, "direct")],
)
def test_small_batch_1x1_on_small_planes_runs_direct_within_tolerance(hw, c, k, stride, batch2):
    """Batch 1: a 1x1 onto a 7x7 plane with 128+ outputs or a 14x14 one with 256+, and a strided
    1x1 onto 14x14 or smaller (also at batch 2), run direct's blocked forward on filters packed
    once (runs over several rows; the strided one over its subsampled pixels; bias, BatchNorm
    and ReLU in the epilogue); otherwise gemm1x1. Within tolerance of the float64 eager forward,
    the float64 plan within 1e-10."""

    def model():
        return nn.Sequential(
            nn.Conv2d(c, k, 1, stride=stride), nn.BatchNorm2d(k), nn.ReLU(),
            nn.Conv2d(k, k, 1), nn.ReLU(),
        )  # fmt: skip

    m64, m32 = _fill(model().double(), seed=hw), _fill(model(), seed=hw)
    x = np.random.default_rng(hw).standard_normal((2, c, hw, hw))
    ref = _eager(m64, x)
    x32 = x.astype(np.float32)
    plan = inference.compile(m32, x32[:1], tune=False)
    assert [s.algo for s in plan._for((1, c, hw, hw)).steps] == ["direct", "direct"]
    assert [s.algo for s in plan._for((2, c, hw, hw)).steps] == [batch2, "gemm1x1"]
    _assert_close(plan(x32[:1]), ref[:1], F32_TOL, "batch 1")
    _assert_close(plan(x32), ref, F32_TOL, "batch 2")
    _assert_close(inference.compile(m64, x[:1], tune=False)(x[:1]), ref[:1], F64_TOL, "float64")


@pytest.mark.parametrize(
    "dtype, batches",
    [(np.float32, (1, 9, 64, 65)), (np.float64, (1, 31, 32, 33))],
    ids=["float32", "float64"],
)
def test_linear_step_at_every_batch_size(dtype, batches, restore_threads):
    """The plan's linear step: dot products of the weight's rows (a weight larger than the L2,
    up to 64 rows of float, 32 of double, the weight in chunks of rows), OpenBLAS's GEMM above.
    Both sides of the switch, an inner dimension that is no multiple of the vector width and
    spans several chunks of rows, each element within the accuracy contract of the float64
    product (1e-4 / 1e-10 times the sum of |terms|), bias and ReLU fused, the same bits at 1 and
    2 threads."""
    k, n = 9001, 100
    rng = np.random.default_rng(5)
    w, b = rng.uniform(-0.5, 0.5, (n, k)), rng.uniform(-0.5, 0.5, n)
    model = nn.Sequential(nn.Flatten(), nn.Linear(k, n, dtype=dtype), nn.ReLU()).eval()
    model[1].weight.data[...], model[1].bias.data[...] = w, b
    tol = F32_TOL if dtype == np.float32 else F64_TOL
    for m in batches:
        x = rng.standard_normal((m, k, 1, 1)).astype(dtype)
        x64 = x.reshape(m, k).astype(np.float64)
        ref = np.maximum(x64 @ w.T + b, 0)
        bound = tol * (np.abs(x64) @ np.abs(w).T + np.abs(b))
        plan = inference.compile(model, x, tune=False)
        fastconv.set_num_threads(2)
        y = plan(x)
        assert y.dtype == dtype and y.shape == (m, n)
        err = np.abs(y - ref)
        assert (err <= bound).all(), (m, float((err / bound).max()))
        fastconv.set_num_threads(1)
        assert plan(x).tobytes() == y.tobytes(), m


# --- small models mixing the ops ------------------------------------------------------------------


def _fill(model, seed):
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.uniform(-0.5, 0.5, p.shape)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean[...] = rng.uniform(-0.2, 0.2, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)
            if m.weight is not None:
                m.weight.data[...] = rng.uniform(0.5, 1.5, m.num_features)
    return model.eval()


class Mix(nn.Module):
    """An input-side per-channel affine, conv -> BatchNorm -> LeakyReLU, a residual add of two
    convs, a squeeze-excitation channel multiply, LRN, average pooling without the padding in
    the count, tanh, a BatchNorm whose output is used twice (not folded), ELU, c - x, max
    pooling, linear -> BatchNorm1d."""

    def __init__(self, dtype):
        super().__init__()
        rng = np.random.default_rng(11)
        self.scale = rng.uniform(0.5, 1.5, (1, 3, 1, 1)).astype(dtype)
        self.shift = rng.uniform(-0.5, 0.5, (1, 3, 1, 1)).astype(dtype)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(8, dtype=dtype)
        self.lrelu = nn.LeakyReLU(0.2)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False, dtype=dtype)
        self.c3 = nn.Conv2d(8, 8, 1, dtype=dtype)
        self.fc1 = nn.Linear(8, 4, dtype=dtype)
        self.fc2 = nn.Linear(4, 8, dtype=dtype)
        self.lrn = nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.5)
        self.bn2 = nn.BatchNorm2d(8, affine=False, dtype=dtype)
        self.fc3 = nn.Linear(8 * 4 * 4, 6, dtype=dtype)
        self.bn3 = nn.BatchNorm1d(6, dtype=dtype)

    def forward(self, x):
        x = x * self.scale + self.shift
        y = self.lrelu(self.bn1(self.c1(x)))
        z = self.c2(y) + self.c3(y)
        s = F.adaptive_avg_pool2d(z, 1).flatten(1)
        s = F.sigmoid(self.fc2(F.relu(self.fc1(s))))
        z = self.lrn(z * s.reshape(s.shape + (1, 1)))
        z = F.tanh(F.avg_pool2d(z, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False))
        u = self.bn2(z)
        w = F.elu(u, 0.7) + u
        w = F.max_pool2d(F.elu(1.0 - w), 2, stride=1)
        return self.bn3(self.fc3(w.flatten(1)))


def _mix(dtype, seed=0):
    return _fill(Mix(dtype), seed)


@pytest.mark.parametrize("n", [1, 2])
def test_mixed_ops_model(n):
    """Mix (float64) within 1e-10 of eager, float32 within 1e-4 of float64 eager; the BatchNorm
    after c1 and fc3 folded, LeakyReLU/add/ReLU/sigmoid/tanh/ELU fused where they follow an op with
    an epilogue, the BatchNorm used twice kept as an affine step."""
    x = np.random.default_rng(n).standard_normal((n, 3, 9, 9))
    m64 = _mix(np.float64)
    ref = _eager(m64, x)
    _assert_nontrivial(ref, "mix")
    plan = inference.compile(m64, x, tune=False)
    _assert_close(plan(x), ref, F64_TOL, "mix float64")
    m32 = _mix(np.float32)
    p32 = inference.compile(m32, x.astype(np.float32), tune=False)
    _assert_close(p32(x.astype(np.float32)), _eager(m32.double(), x), F32_TOL, "mix float32")
    steps = plan._for(x.shape).steps
    fused = [(s.op, s.fused) for s in steps]
    assert ("conv", ("batch_norm", "leaky_relu")) in fused
    assert ("conv", ("add",)) in fused
    assert ("linear", ("relu",)) in fused and ("linear", ("sigmoid",)) in fused
    assert ("avg_pool", ("tanh",)) in fused and ("affine", ("elu",)) in fused
    assert fused[-1] == ("linear", ("batch_norm",))
    ops = collections.Counter(s.op for s in steps)
    assert ops["channel_mul"] == 1 and ops["lrn"] == 1 and ops["add"] == 1 and ops["affine"] == 4


class PoolThen1x1(nn.Module):
    """An Inception pool branch: avg_pool (kernel, padding, count_include_pad as given) -> 1x1
    conv (c -> k) -> BatchNorm -> ReLU; `also` reads the pool's output a second time."""

    def __init__(self, c, k, kernel=3, stride=1, padding=1, incl=True, also=False):
        super().__init__()
        self.pool = nn.AvgPool2d(kernel, stride, padding, count_include_pad=incl)
        self.conv = nn.Conv2d(c, k, 1, dtype=np.float64)
        self.bn = nn.BatchNorm2d(k, dtype=np.float64)
        self.also = also

    def forward(self, x):
        p = self.pool(x)
        y = F.relu(self.bn(self.conv(p)))
        return concat([y, p], axis=1) if self.also else y


@pytest.mark.parametrize(
    "kernel, padding, incl",
    [(3, 1, True), (3, 1, False), ((3, 5), (1, 2), True), ((5, 3), (2, 1), False), (1, 0, True)],
)
def test_avg_pool_then_1x1_runs_the_1x1_first(kernel, padding, incl):
    """avg_pool -> 1x1 conv (8 -> 3) runs as the 1x1 (no bias) and then the pool, which adds
    the folded bias and fuses the ReLU: float64 within 1e-10 of eager, float32 within 1e-4, at
    batch 1 and 2, and the same bits run to run."""
    for n in (1, 2):
        x = np.random.default_rng(n).standard_normal((n, 8, 7, 6))
        model = _fill(PoolThen1x1(8, 3, kernel, 1, padding, incl), 5)
        ref = _eager(model, x)
        _assert_nontrivial(ref, "pool then 1x1")
        plan = inference.compile(model, x, tune=False)
        _assert_close(plan(x), ref, F64_TOL, "pool then 1x1, float64")
        steps = plan._for(x.shape).steps
        assert [(s.op, s.fused, s.out_shape[1]) for s in steps] == [
            ("conv", ("batch_norm", "ahead of avg_pool"), 3),
            ("avg_pool", ("bias", "relu"), 3),
        ]
        x32 = x.astype(np.float32)
        p32 = inference.compile(model.float(), x32, tune=False)
        y32 = p32(x32)
        _assert_close(y32, ref, F32_TOL, "pool then 1x1, float32")
        assert np.array_equal(y32, p32(x32))


@pytest.mark.parametrize(
    "case",
    [
        dict(c=3, k=8),  # more outputs than inputs: pooling after would pool more channels
        dict(c=8, k=8),
        dict(c=8, k=3, stride=2),  # a strided pool shrinks the plane: the conv after is cheaper
        dict(c=8, k=3, kernel=3, padding=0),  # a smaller plane
        dict(c=8, k=3, also=True),  # the pool's output read twice
    ],
    ids=["widening", "square", "strided", "unpadded", "read-twice"],
)
def test_avg_pool_then_1x1_kept_in_order(case):
    """Where moving the 1x1 ahead would not pay or not be valid, the pool runs first; within
    1e-10 of eager either way."""
    x = np.random.default_rng(3).standard_normal((2, case["c"], 7, 7))
    model = _fill(PoolThen1x1(**case), 6)
    ref = _eager(model, x)
    plan = inference.compile(model, x, tune=False)
    _assert_close(plan(x), ref, F64_TOL, f"pool then 1x1 {case}")
    steps = plan._for(x.shape).steps
    assert steps[0].op == "avg_pool" and steps[0].fused == ()
    assert steps[1].op == "conv" and "ahead of avg_pool" not in steps[1].fused


class Edges(nn.Module):
    """The model's input as a residual and a concat operand, x + x, an op used twice feeding a
    concat, standalone activations after a concat, a scalar multiply and subtraction, the
    output a concat (written into the caller's output at batch 1)."""

    def __init__(self, dtype):
        super().__init__()
        self.c1 = nn.Conv2d(3, 3, 3, padding=1, dtype=dtype)
        self.c2 = nn.Conv2d(3, 4, 1, dtype=dtype)
        self.c3 = nn.Conv2d(10, 5, 3, padding=1, dtype=dtype)

    def forward(self, x):
        r = self.c1(x) + x
        d = r + r
        e = F.relu(self.c2(d))
        s = F.sigmoid(concat([x, e, d], axis=1))
        t = F.tanh(self.c3(s * 2.0 - 1.0))
        return concat([t, F.elu(e), x - 0.5], axis=1)


@pytest.mark.parametrize("n", [1, 2])
def test_edge_cases_model(n):
    """Edges within 1e-10 of eager (float64); the add with the input became c1's residual; the
    first concat's operands (the input, values read twice) are copied, the output concat's are
    written in place at batch 1 and copied at batch 2."""
    x = np.random.default_rng(7 + n).standard_normal((n, 3, 6, 5))
    model = _fill(Edges(np.float64), 3)
    ref = _eager(model, x)
    _assert_nontrivial(ref, "edges")
    plan = inference.compile(model, x, tune=False)
    _assert_close(plan(x), ref, F64_TOL, "edges")
    steps = plan._for(x.shape).steps
    assert steps[0].op == "conv" and steps[0].fused == ("add",)
    assert [s.in_shape[1] for s in steps if s.op == "copy"] == [3, 4, 3] + [5, 4, 3] * (n - 1)


def test_output_aliasing_the_input():
    """A forward returning its input (or a view of it) copies it to the output."""

    class View(nn.Module):
        def forward(self, x):
            return x.flatten(1)

    class Same(nn.Module):
        def forward(self, x):
            return x

    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    for model, want in ((View(), x.reshape(2, -1)), (Same(), x)):
        plan = inference.compile(model.eval(), x, tune=False)
        y = plan(x)
        assert np.array_equal(y, want) and not np.shares_memory(y, x)
        assert [s.op for s in plan._for(x.shape).steps] == ["copy"]


def test_adaptive_pool_onto_its_own_size_is_a_view():
    """AlexNet's adaptive pool onto 6x6 of a 6x6 input is no step (its output is its input);
    on another input size it pools. Both within 1e-10 of eager; as the model's output, the
    convolution writes straight into the caller's output."""

    class Head(nn.Module):
        def __init__(self, last):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64)
            self.pool = nn.AdaptiveAvgPool2d((6, 6))
            self.fc = nn.Linear(4 * 36, 5, dtype=np.float64)
            self.last = last

        def forward(self, x):
            y = self.pool(F.relu(self.c(x)))
            return y if self.last else self.fc(y.flatten(1))

    for last in (False, True):
        model = _fill(Head(last), 4)
        for shape in ((2, 3, 6, 6), (1, 3, 9, 7)):
            x = np.random.default_rng(5).standard_normal(shape)
            plan = inference.compile(model, x, tune=False)
            _assert_close(plan(x), _eager(model, x), F64_TOL, "adaptive pool head")
            ops = [s.op for s in plan._for(x.shape).steps]
            assert ("adaptive_avg" in ops) == (shape[2:] != (6, 6)), ops
            if last and shape[2:] == (6, 6):
                assert ops == ["conv"]


class NestedConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64)
        self.b = nn.Conv2d(3, 5, 1, dtype=np.float64)
        self.c = nn.Conv2d(3, 6, 1, dtype=np.float64)

    def forward(self, x):
        inner = concat([self.a(x), self.b(x)], axis=1)
        return concat([inner, self.c(x)], axis=1)


def test_nested_concat_batch_2():
    """A concat of a concat at batch 2 (copy steps) matches eager."""
    model = _fill(NestedConcat(), 0)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    _assert_close(inference.compile(model, x, tune=False)(x), _eager(model, x), F64_TOL, "nested")


def test_nested_concat_batch_1():
    """A concat of a concat at batch 1 (channel slices written in place) matches eager
    (Inception-v3's E blocks, DenseNet-style models)."""
    model = _fill(NestedConcat(), 0)
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5))
    _assert_close(inference.compile(model, x, tune=False)(x), _eager(model, x), F64_TOL, "nested")


def test_plan_does_not_follow_later_weight_changes():
    """Changing the model's weights in place after compile changes no shape's result: the batch-2
    plan lowered afterwards agrees with the batch-1 plan lowered before."""
    model = _fill(nn.Sequential(nn.Conv2d(3, 4, 3, dtype=np.float64), nn.ReLU()), 0)
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6))
    plan = inference.compile(model, x, tune=False)
    before = plan(x)
    model[0].weight.data *= 2.0
    assert np.array_equal(plan(x), before)
    assert np.array_equal(plan(np.concatenate([x, x]))[:1], before)


# --- save and load --------------------------------------------------------------------------------


@pytest.mark.slow  # seconds; test_save_load_float64_bitwise round-trips the format fast
def test_save_load_resnet18_bitwise(zoo, tmp_path):
    """The loaded plan: same bits for every saved shape, same algorithms and summary, and it plans
    a new batch size (the same bits as the original plan there)."""
    m32, _ = zoo("resnet18")
    x = _input("resnet18", 3, seed=9).astype(np.float32)
    plan = inference.compile(m32, x[:2], tune=False)
    y2, y1 = plan(x[:2]), plan(x[:1])
    path = tmp_path / "r18.npz"
    plan.save(path)
    loaded = inference.load(path)
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded(x[:2]), y2) and np.array_equal(loaded(x[:1]), y1)
    for shape in ((2, 3, 64, 64), (1, 3, 64, 64)):
        assert loaded._for(shape).algos == plan._for(shape).algos
        assert loaded.summary(np.zeros(shape, np.float32)) == plan.summary(
            np.zeros(shape, np.float32)
        )
    y3 = loaded(x)
    assert (3, 3, 64, 64) in loaded._lowered
    assert np.array_equal(y3, plan(x))
    _assert_close(y3[:2], y2.astype(np.float64), F32_TOL, "loaded plan at batch 3")


def test_save_load_float64_bitwise(tmp_path):
    """A float64 plan with affine, LRN, channel multiply and pooling steps round-trips bitwise."""
    model = _mix(np.float64)
    x = np.random.default_rng(4).standard_normal((2, 3, 9, 9))
    plan = inference.compile(model, x, tune=False)
    plan.save(os.fspath(tmp_path / "mix.npz"))
    loaded = inference.load(tmp_path / "mix.npz")
    assert loaded.dtype == np.float64
    assert np.array_equal(loaded(x), plan(x))
    assert np.array_equal(loaded(x[:1]), plan(x[:1]))


def test_save_is_atomic(tmp_path, monkeypatch):
    """A save that fails (while serialising, or after writing, before the rename) leaves the
    existing file as it was and no temporary file; a successful one replaces it."""
    small = _fill(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()), 0)
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5)).astype(np.float32)
    plan = inference.compile(_mix(np.float32), np.zeros((1, 3, 9, 9), np.float32), tune=False)
    path = tmp_path / "plan.npz"
    inference.compile(small, x, tune=False).save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as mp:
        mp.setattr(np, "savez", boom)
        with pytest.raises(OSError, match="disk full"):
            plan.save(path)
    with monkeypatch.context() as mp:
        mp.setattr(os, "fsync", boom)  # the data is written to the temporary file by now
        with pytest.raises(OSError, match="disk full"):
            plan.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["plan.npz"]
    assert inference.load(path)(x).shape == (1, 2, 3, 3)
    plan.save(path)
    assert path.read_bytes() != before and os.listdir(tmp_path) == ["plan.npz"]
    assert inference.load(path)(np.zeros((1, 3, 9, 9), np.float32)).shape == (1, 6)


def _not_a_plan(tmp_path, kind):
    path = tmp_path / f"bad.{kind}"
    if kind == "txt":
        path.write_text("not a plan at all\n")
    elif kind == "npz":
        np.savez(path, weight=np.zeros(3))
    elif kind == "format":
        meta = json.dumps({"format": "fastconv-plan 99"}).encode()
        with open(path, "wb") as f:  # np.savez would add .npz to the name
            np.savez(f, __meta__=np.frombuffer(meta, np.uint8))
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("kind", ["txt", "npz", "format"])
def test_load_rejects_files_that_are_not_plans(tmp_path, kind):
    """A text file, an .npz without the plan's metadata, a plan of another format: ValueError."""
    with pytest.raises(ValueError, match="plan|pickle|format"):
        inference.load(_not_a_plan(tmp_path, kind))


@pytest.mark.parametrize("kind", ["npy", "empty"])
def test_load_rejects_npy_and_empty_files(tmp_path, kind):
    """An .npy array file and an empty file are not plans either: ValueError."""
    with pytest.raises(ValueError):
        inference.load(_not_a_plan(tmp_path, kind))


# --- determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", pytest.param("googlenet", marks=pytest.mark.slow)])
def test_deterministic_repeat_and_threads(name, zoo, restore_threads):
    """The same plan twice, and at 1 and 2 threads, gives the same bits (batch 2: GoogLeNet's copy
    steps; batch 1: its in-place concat)."""
    m32, _ = zoo(name)
    x = _input(name, 2, seed=2)[:, :, :64, :64].astype(np.float32)
    plan = inference.compile(m32, x, tune=False)
    for xs in (x, x[:1]):
        fastconv.set_num_threads(2)
        a, b = plan(xs), plan(xs)
        fastconv.set_num_threads(1)
        c = plan(xs)
        assert a.tobytes() == b.tobytes(), "two runs differ"
        assert a.tobytes() == c.tobytes(), "1 and 2 threads differ"


# --- run, compile and their checks ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet():
    """A float32 LeNet-5 plan compiled at batch 2, with the model and example."""
    with no_init():
        m32 = models.lenet5()
        m64 = models.lenet5(dtype=np.float64)
    _randomise(m32, m64, np.random.default_rng(0), {})
    x = np.random.default_rng(1).standard_normal((2, 1, 32, 32)).astype(np.float32)
    return inference.compile(m32.eval(), x, tune=False), m32, x


def test_run_into_out(lenet):
    """run(x, out) writes out and returns it; the input is left unchanged."""
    plan, _, x = lenet
    keep = x.copy()
    want = plan(x)
    out = np.full((2, 10), np.nan, np.float32)
    assert plan.run(x, out=out) is out
    assert np.array_equal(out, want) and np.array_equal(x, keep)


def _readonly(shape):
    a = np.empty(shape, np.float32)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "out",
    [
        np.empty((2, 11), np.float32),
        np.empty((1, 10), np.float32),
        np.empty((2, 10), np.float64),
        np.empty((2, 20), np.float32)[:, ::2],
        np.empty((10, 2), np.float32).T,
        [[0.0] * 10] * 2,
        _readonly((2, 10)),
    ],
    ids=["shape", "batch", "dtype", "strided", "fortran", "list", "readonly"],
)
def test_run_rejects_bad_out(lenet, out):
    """out of another shape or dtype, non-contiguous, not an ndarray or read-only: ValueError."""
    plan, _, x = lenet
    with pytest.raises(ValueError, match="out"):
        plan.run(x, out=out)


def test_run_rejects_out_overlapping_x():
    """A shape-preserving model: out may not be x itself."""
    model = _fill(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()), 0)
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    plan = inference.compile(model, x, tune=False)
    with pytest.raises(ValueError, match="overlap"):
        plan.run(x, out=x)


@pytest.mark.parametrize(
    "x, err",
    [
        (np.zeros((2, 1, 32, 32), np.float64), TypeError),
        (np.zeros((2, 1, 32, 32), np.int32), TypeError),
        ([[[[0.0] * 32] * 32]] * 2, TypeError),
        (np.zeros((1, 32, 32), np.float32), ValueError),
        (np.zeros((1, 1, 1, 32, 32), np.float32), ValueError),
    ],
    ids=["float64", "int32", "list", "3d", "5d"],
)
def test_run_rejects_bad_x(lenet, x, err):
    """x of another dtype or not an ndarray: TypeError; not 4-D: ValueError."""
    plan, _, _ = lenet
    with pytest.raises(err, match="x"):
        plan(x)


def test_run_takes_noncontiguous_x(lenet):
    """A non-contiguous x gives the contiguous one's result."""
    plan, _, x = lenet
    assert np.array_equal(plan(np.asfortranarray(x)), plan(x))
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), x.dtype)
    wide[..., ::2] = x
    assert np.array_equal(plan(wide[..., ::2]), plan(x))


def test_run_takes_a_fastconv_tensor(lenet):
    """plan(Tensor(x)) is plan(x), as compile takes a Tensor example (_as_input unwraps one)."""
    plan, _, x = lenet
    assert np.array_equal(plan(Tensor(x)), plan(x))


def test_other_shapes_are_planned_once_and_checked(lenet):
    """A new batch size is lowered on first use and kept; an input the traced graph cannot take
    (LeNet's flatten at 36x36 gives 480 features, not 120) is a ValueError and leaves the plan
    working; the plan's result at batch 3 matches eager."""
    plan, model, x = lenet
    x3 = np.concatenate([x, x[:1]])
    y3 = plan(x3)
    low = plan._lowered[x3.shape]
    plan(x3)
    assert plan._lowered[x3.shape] is low
    _assert_close(y3, _eager(model, x3).astype(np.float64), 1e-5, "lenet batch 3")
    with pytest.raises(ValueError, match="reshape"):
        plan(np.zeros((1, 1, 36, 36), np.float32))
    with pytest.raises(ValueError, match="conv"):
        plan(np.zeros((1, 2, 32, 32), np.float32))
    assert (1, 1, 36, 36) not in plan._lowered
    assert np.array_equal(plan(x), plan(x))


def test_compile_rejects_training_mode():
    """A model (or one submodule) in training mode: ValueError asking for eval(); in eval mode it
    compiles (from a Tensor example too)."""
    model = _fill(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), 0)
    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"eval\(\)"):
        inference.compile(model.train(), x)
    model.eval()
    model[1].train()
    with pytest.raises(ValueError, match=r"eval\(\)"):
        inference.compile(model, x)
    model.eval()
    assert inference.compile(model, Tensor(x), tune=False)(x).shape == (1, 4, 3, 3)


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda x: x.exp(), "Exp"),
        (lambda x: F.softmax(x.flatten(1)), "Softmax"),
        (lambda x: x / 2.0, "Div"),
        (lambda x: x * x, "mul of two computed values"),
        (lambda x: x + F.adaptive_avg_pool2d(x, 1), "add of two computed values"),
        (lambda x: concat([x, x], axis=0), "axis 0"),
        (lambda x: x * np.ones((1, 1, 5, 5), np.float32), "not per channel"),
        (lambda x: F.dropout(x, 0.5, training=True), "dropout"),
        (lambda x: F.conv2d(x, np.ones((2, 3, 2, 2), np.float32), padding="same"), "same"),
        (lambda x: (x, x), "tuple"),
        (lambda x: Tensor(np.zeros((1, 3, 5, 5), np.float32)), "Tensor computed from its input"),
    ],
    ids=[
        "exp",
        "softmax",
        "div",
        "mul",
        "broadcast-add",
        "concat-axis0",
        "const-not-per-channel",
        "dropout",
        "same-even-kernel",
        "tuple",
        "constant",
    ],
)
def test_compile_rejects_unsupported_ops(fn, match):
    """Ops without a plan step, and forwards not returning one computed Tensor: UnsupportedOp
    (a ValueError) naming the op; the next compile works (the tracer was removed)."""
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5)).astype(np.float32)
    with pytest.raises(UnsupportedOp, match=match) as info:
        inference.compile(_Fn(fn).eval(), x, tune=False)
    assert isinstance(info.value, ValueError)
    ok = inference.compile(_Fn(F.relu).eval(), x, tune=False)
    assert np.array_equal(ok(x), np.maximum(x, 0))


@pytest.mark.parametrize(
    "model, x, err",
    [
        (lambda x: x, np.zeros((1, 3, 4, 4), np.float32), TypeError),
        (nn.ReLU(), [[[[0.0]]]], TypeError),
        (nn.ReLU(), np.zeros((1, 3, 4, 4), np.int64), TypeError),
        (nn.ReLU(), np.zeros((3, 4, 4), np.float32), ValueError),
    ],
    ids=["not-a-module", "list-input", "int-input", "3d-input"],
)
def test_compile_argument_checks(model, x, err):
    """Not a fastconv Module, an example that is not a float32/float64 ndarray: TypeError; an
    example that is not 4-D: ValueError."""
    with pytest.raises(err):
        inference.compile(model, x, tune=False)


def test_compile_with_tuning():
    """tune=True measures each conv's algorithm (the autotuner's table, cleared afterwards): the
    chosen ones are concrete and the result matches eager. tune=None follows get_autotune()."""
    model = _fill(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, dtype=np.float64),
            nn.ReLU(),
            nn.Conv2d(8, 4, 1, dtype=np.float64),
        ),
        0,
    )
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12))
    heuristic = [
        _core.ALGO_NAMES[_core.conv2d_choose(d, 0)]
        for d in (
            (1, 3, 12, 12, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1),
            (1, 8, 12, 12, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1),
        )
    ]
    assert inference.compile(model, x, tune=False)._for(x.shape).algos == heuristic
    if fastconv.get_autotune() == "off":
        assert inference.compile(model, x)._for(x.shape).algos == heuristic
    try:
        plan = inference.compile(model, x, tune=True)
        algos = plan._for(x.shape).algos
        assert len(algos) == 2 and all(a in _core.ALGO_NAMES[1:] for a in algos)
        _assert_close(plan(x), _eager(model, x), F64_TOL, "tuned plan")
    finally:
        fastconv.clear_autotune()


# --- summary and profile --------------------------------------------------------------------------


def test_summary_and_profile():
    """summary: a header, a column line and one line per step (op, shapes, algorithm, fused);
    with profile=True a time per step and a total line; profile(): one float >= 0 per step."""
    model = _mix(np.float32)
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    plan = inference.compile(model, x, tune=False)
    steps = plan._for(x.shape).steps
    lines = plan.summary().splitlines()
    assert len(lines) == 2 + len(steps)
    assert f"{len(steps)} steps" in lines[0] and "(2, 3, 9, 9)" in lines[0] and "(2, 6)" in lines[0]
    for line, s in zip(lines[2:], steps):
        assert s.op in line and str(s.in_shape) in line and str(s.out_shape) in line
        assert s.algo in line and ("+".join(s.fused) or "-") in line
    lines = plan.summary(x[:1], profile=True).splitlines()
    assert len(lines) == 3 + len(steps)
    assert lines[-1].startswith("total ") and lines[-1].endswith(" ms")
    assert "(1, 3, 9, 9)" in lines[0]
    times = [float(line.split()[-1]) for line in lines[2:-1]]
    assert all(t >= 0 for t in times)
    secs = plan.profile(x, repeat=2)
    assert len(secs) == len(steps) == plan._for(x.shape).native.steps
    assert all(isinstance(s, float) and s >= 0 for s in secs)


# --- the native plan's validation -----------------------------------------------------------------


def _native():
    """A float32 plan: input and output of 12 elements, arena of 32. Values: x (input), y
    (output), a = arena[0:12], b = arena[16:28], a4 = arena[4:16] (overlapping a), s = arena[0:6];
    constants w1 (1), w3 (3), w9 (9)."""
    p = _core.Plan(False, 12, 12, 32)
    ids = {
        "x": p.add_value(0, 0, 12),
        "y": p.add_value(1, 0, 12),
        "a": p.add_value(2, 0, 12),
        "b": p.add_value(2, 16, 12),
        "a4": p.add_value(2, 4, 12),
        "s": p.add_value(2, 0, 6),
    }
    for k, n in (("w1", 1), ("w3", 3), ("w9", 9)):
        ids[k] = p.add_constant(np.ones(n, np.float32))
    return p, ids


CONV = [1, 3, 2, 2, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1]  # n c h w k kh kw stride pad dilation groups
ELT = {"op": 5, "in0": "x", "out": "a", "dims": [12, 0, 0, 0]}
AFFINE = {"op": 7, "in0": "a", "out": "b", "dims": [1, 3, 4, 0], "weight": "w3"}
LINEAR = {"op": 4, "in0": "a", "out": "b", "dims": [1, 3, 1, 0], "weight": "w3"}
CONV_STEP = {"op": 0, "in0": "x", "out": "a", "conv": CONV, "algo": 1, "weight": "w9"}
LRN = {
    "op": 8,
    "in0": "a",
    "out": "b",
    "dims": [1, 3, 4, 0],
    "extra": [3, 0],
    "lrn": [1e-4, 0.75, 1.0],
}
COPY = {"op": 9, "in0": "x", "out": "a", "dims": [1, 3, 4, 0], "extra": [3, 0]}
POOL = {"op": 2, "in0": "x", "out": "a", "pool": [1, 3, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 0]}
CHANNEL_MUL = {"op": 6, "in0": "x", "in1": "s", "out": "b", "dims": [1, 3, 4, 0]}

BAD_STEPS = [
    ("unknown-op", {**ELT, "op": 10}, "not an fc_plan_op"),
    ("negative-op", {**ELT, "op": -1}, "not an fc_plan_op"),
    ("unknown-act", {**ELT, "act": 6}, "not an fc_act"),
    ("negative-act", {**ELT, "act": -1}, "not an fc_act"),
    ("missing-value", {**ELT, "in0": 99}, "in0 id 99 does not exist"),
    ("no-input", {k: v for k, v in ELT.items() if k != "in0"}, "in0 id -1 does not exist"),
    ("input-too-small", {**ELT, "dims": [13, 0, 0, 0]}, "in0 holds 12 elements"),
    ("output-too-small", {**ELT, "out": "s"}, "out holds 6 elements"),
    ("residual-too-small", {**CONV_STEP, "in1": "s", "out": "b"}, "in1 holds 6 elements"),
    ("writes-input", {**ELT, "in0": "a", "out": "x"}, "caller's input"),
    ("partial-overlap", {**ELT, "in0": "a", "out": "a4"}, "overlaps"),
    ("in1-partial-overlap", {**ELT, "in1": "a4", "out": "a"}, "overlaps"),
    ("conv-in-place", {**CONV_STEP, "in0": "a"}, "overlaps"),
    ("conv-residual-is-out", {**CONV_STEP, "in1": "a"}, "overlaps"),
    ("linear-in-place", {**LINEAR, "out": "a"}, "overlaps"),
    ("lrn-in-place", {**LRN, "out": "a"}, "overlaps"),
    ("copy-in-place", {**COPY, "in0": "a"}, "overlaps"),
    ("weight-too-small", {**AFFINE, "weight": "w1"}, "weight holds 1 elements"),
    (
        "no-weight",
        {k: v for k, v in AFFINE.items() if k != "weight"},
        "weight id -1 does not exist",
    ),
    ("missing-constant", {**AFFINE, "weight": 99}, "weight id 99 does not exist"),
    ("bias-too-small", {**AFFINE, "bias": "w1"}, "bias holds 1 elements"),
    ("unused-in1", {**LINEAR, "in1": "x"}, "in1 is given but op 4 does not use it"),
    ("unused-in2", {**ELT, "in2": "b"}, "in2 is given but op 5 does not use it"),
    ("se-residual-too-small", {**CHANNEL_MUL, "in2": "s"}, "in2 holds 6 elements"),
    (
        "se-residual-partial-overlap",
        {**CHANNEL_MUL, "in0": "a", "out": "a", "in2": "a4"},
        "overlaps",
    ),
    ("unused-weight", {**ELT, "weight": "w3"}, "weight is given"),
    ("conv-algo-auto", {**CONV_STEP, "algo": 0}, "not a concrete fc_algo"),
    ("conv-algo-range", {**CONV_STEP, "algo": 99}, "not a concrete fc_algo"),
    (
        "conv-algo-unsupported",
        {**CONV_STEP, "algo": _core.ALGO_NAMES.index("winograd")},
        "winograd",
    ),
    ("conv-kernel-too-large", {**CONV_STEP, "conv": CONV[:5] + [5, 5] + CONV[7:]}, "larger than"),
    ("conv-weight-too-small", {**CONV_STEP, "weight": "w3"}, "weight holds 3 elements"),
    ("negative-count", {**ELT, "dims": [-1, 0, 0, 0]}, "< 0"),
    ("negative-linear", {**LINEAR, "dims": [-1, 3, 1, 0]}, "negative or overflow"),
    ("overflowing-linear", {**LINEAR, "dims": [2**40, 2**40, 1, 0]}, "negative or overflow"),
    ("copy-outside-channels", {**COPY, "extra": [3, 1]}, "outside"),
    ("copy-negative-offset", {**COPY, "extra": [3, -1]}, "outside"),
    ("lrn-size-0", {**LRN, "extra": [0, 0]}, "LRN size 0"),
    (
        "adaptive-size-0",
        {"op": 3, "in0": "x", "out": "a", "dims": [1, 3, 2, 2], "extra": [0, 1]},
        ">= 1",
    ),
    ("avg-pool-dilated", {**POOL, "pool": POOL["pool"][:10] + [2, 2, 0]}, "dilation 1"),
    ("pool-bias-too-small", {**POOL, "bias": "w1"}, "bias holds 1 elements"),
    ("dims-length", {**ELT, "dims": [12, 0, 0]}, "dims needs 4 entries"),
    ("pool-length", {**POOL, "pool": POOL["pool"][:12]}, "pool needs 13 entries"),
    ("conv-length", {**CONV_STEP, "conv": CONV[:13]}, "conv needs 14 entries"),
    ("lrn-length", {**LRN, "lrn": [1e-4, 0.75]}, "lrn needs"),
]


@pytest.mark.parametrize("step, match", [c[1:] for c in BAD_STEPS], ids=[c[0] for c in BAD_STEPS])
def test_native_plan_rejects_bad_steps(step, match):
    """Each invalid step: ValueError with a message, and the plan keeps no step."""
    p, ids = _native()
    resolved = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in step.items()}
    with pytest.raises(ValueError, match=match):
        p.add_step(resolved)
    assert p.steps == 0


@pytest.mark.parametrize(
    "step",
    [
        ELT,
        AFFINE,
        LINEAR,
        CONV_STEP,
        LRN,
        COPY,
        POOL,
        {**POOL, "bias": "w3"},
        {**CONV_STEP, "in1": "b"},
        {**AFFINE, "bias": "w3"},
        CHANNEL_MUL,
        {**CHANNEL_MUL, "in2": "a"},
        {**CHANNEL_MUL, "in0": "b", "in2": "b"},
    ],
    ids=[
        "eltwise",
        "affine",
        "linear",
        "conv",
        "lrn",
        "copy",
        "avg-pool",
        "avg-pool-bias",
        "conv-residual",
        "affine-bias",
        "channel-mul",
        "se-residual",
        "se-residual-in-place",
    ],
)
def test_native_plan_accepts_valid_steps(step):
    """The well-formed versions of the steps above are accepted (so the rejections are specific)."""
    p, ids = _native()
    p.add_step({k: ids.get(v, v) if isinstance(v, str) else v for k, v in step.items()})
    assert p.steps == 1


def test_native_plan_in_place_elementwise():
    """Element-wise steps may write their input in place (same offset): a = x; a = relu(a + a);
    a = a * w + b (affine in place); y = a, computed as NumPy does."""
    p = _core.Plan(True, 12, 12, 12)
    x, y, a = p.add_value(0, 0, 12), p.add_value(1, 0, 12), p.add_value(2, 0, 12)
    w = p.add_constant(np.array([2.0, -1.0, 0.5]))
    b = p.add_constant(np.array([0.25, 0.5, -1.0]))
    p.add_step({"op": 5, "in0": x, "out": a, "dims": [12, 0, 0, 0]})
    p.add_step({"op": 5, "act": 1, "in0": a, "in1": a, "out": a, "dims": [12, 0, 0, 0]})
    p.add_step({"op": 7, "in0": a, "out": a, "dims": [1, 3, 4, 0], "weight": w, "bias": b})
    p.add_step({"op": 5, "in0": a, "out": y, "dims": [12, 0, 0, 0]})
    xv = np.random.default_rng(0).standard_normal(12)
    out = np.empty(12)
    p.run(xv, out)
    want = np.maximum(xv + xv, 0).reshape(3, 4) * [[2.0], [-1.0], [0.5]] + [[0.25], [0.5], [-1.0]]
    np.testing.assert_allclose(out, want.reshape(-1), rtol=1e-15, atol=1e-15)
    assert len(p.run(xv, out, True)) == p.steps == 4


def test_native_plan_se_residual():
    """channel_mul with a residual (in2): y = relu(x * s[c] + r), in one step, as NumPy does."""
    p = _core.Plan(True, 12, 12, 20)
    x, y = p.add_value(0, 0, 12), p.add_value(1, 0, 12)
    s, r = p.add_value(2, 0, 3), p.add_value(2, 4, 12)
    rng = np.random.default_rng(3)
    rv, xv = rng.standard_normal(12), rng.standard_normal(12)
    p.add_step({"op": 5, "in0": x, "out": s, "dims": [3, 0, 0, 0]})  # s = x[:3]
    p.add_step(
        {
            "op": 7,
            "in0": x,
            "out": r,
            "dims": [1, 3, 4, 0],  # r = x * w + b
            "weight": p.add_constant(rv[:3].copy()),
            "bias": p.add_constant(rv[3:6].copy()),
        }
    )
    p.add_step({"op": 6, "act": 1, "in0": x, "in1": s, "in2": r, "out": y, "dims": [1, 3, 4, 0]})
    out = np.empty(12)
    p.run(xv, out)
    r_want = (xv.reshape(3, 4) * rv[:3, None] + rv[3:6, None]).reshape(-1)
    want = np.maximum(xv.reshape(3, 4) * xv[:3, None] + r_want.reshape(3, 4), 0).reshape(-1)
    np.testing.assert_allclose(out, want, rtol=1e-15, atol=1e-15)


@pytest.mark.slow  # SE-ResNet-50 compiled at 224x224
def test_se_block_tail_is_one_step():
    """SE-ResNet's block tail relu(x * scale + identity) compiles to one channel_mul step that
    fused the add and the ReLU, and the plan still equals eager."""
    from fastconv.autograd import Tensor, no_grad

    model = models.se_resnet50(num_classes=10).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    plan = inference.compile(model, x, tune=False)
    muls = [s for s in plan._for(x.shape).steps if s.op == "channel_mul"]
    assert len(muls) == 16 and all(s.fused == ("add", "relu") for s in muls), muls[:2]
    with no_grad():
        want = model(Tensor(x)).data
    np.testing.assert_allclose(plan(x), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_native_plan_rejects_channel_mul_scale_overwritten():
    """channel_mul may write in0 in place, but not over in1 (its n*c scales, read per plane):
    ValueError."""
    p, ids = _native()
    with pytest.raises(ValueError, match="overlaps"):
        p.add_step(
            {"op": 6, "in0": ids["x"], "in1": ids["a"], "out": ids["a"], "dims": [1, 3, 4, 0]}
        )


def test_native_plan_value_and_run_checks():
    """Values outside their buffer or of an unknown kind, a negative plan size: ValueError; a run
    with the wrong element count: ValueError, the wrong dtype (and such a constant): TypeError."""
    p, _ = _native()
    for kind, offset, elems in (
        (3, 0, 1),
        (-1, 0, 1),
        (2, 30, 5),
        (2, -1, 5),
        (0, 0, 13),
        (1, 12, 1),
        (2, 0, -1),
    ):
        with pytest.raises(ValueError, match="fc_value_kind|outside"):
            p.add_value(kind, offset, elems)
    with pytest.raises(ValueError, match=">= 0"):
        _core.Plan(False, -1, 1, 1)
    with pytest.raises(TypeError):
        p.add_constant(np.ones(3))
    with pytest.raises(ValueError, match="11 elements"):
        p.run(np.zeros(11, np.float32), np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="out"):
        p.run(np.zeros(12, np.float32), np.zeros(13, np.float32))
    with pytest.raises(TypeError):
        p.run(np.zeros(12, np.float64), np.zeros(12, np.float32))

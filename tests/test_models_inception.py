"""fastconv.models' Inception v3 (torchvision's layout), Inception-v4 and Inception-ResNet-v2
(Cadene's pretrainedmodels / timm), ZFNet and NiN against their PyTorch re-statements in
fastconv/_torch_models.py (independent torch.nn code, the same state_dict keys): parameter counts
to the unit, state_dict keys and shapes, the float64 forward in eval and training mode (Inception
v3's auxiliary head at 299x299), gradients and an SGD step (Inception v3 in training mode; the
auxiliary head and Inception-ResNet-v2's residual blocks on their own), a few SGD steps lowering
the loss (ZFNet, NiN; Adam steps for the Inception networks), the smallest input each takes, and
Inception v3's compiled inference plan.

Inputs are small (75x75, the smallest the Inception networks take, for most checks), so the file
stays short on two cores."""

import zlib

import numpy as np
import pytest

from _autograd_ref import assert_close, no_init, rel_err, torch
from fastconv import autograd, inference, models, optim
from fastconv._model_inputs import MODEL_INPUTS
from fastconv.autograd import Tensor, no_grad
from fastconv.nn import functional as F

pytestmark = pytest.mark.skipif(torch is None, reason="torch not installed")
if torch is not None:
    from fastconv._torch_models import TWINS

NAMES = [
    "inception_v3",
    "inception_v4",
    "inception_resnet_v2",
    "zfnet",
    "nin_cifar",
    "nin_imagenet",
]
# counted on the PyTorch re-statements; inception_v3: torchvision's inception_v3(aux_logits=True,
# init_weights=False), 1000 classes; inception_v4 / inception_resnet_v2: timm's, 1000 classes
# Building an Inception network and its PyTorch twin, then running it in float64, takes seconds:
# every test that builds one is slow. The fast loop keeps ZFNet's and the NiNs' checks here and
# Inception v3's forward in test_models.py.
INCEPTIONS = ("inception_v3", "inception_v4", "inception_resnet_v2")
NAMES_SLOW_INCEPTIONS = [
    pytest.param(n, marks=pytest.mark.slow) if n in INCEPTIONS else n for n in NAMES
]
PARAMS = {
    "inception_v3": 27_161_264,
    "inception_v4": 42_679_816,
    "inception_resnet_v2": 55_843_464,
    "zfnet": 62_357_608,
    "nin_cifar": 966_986,
    "nin_imagenet": 7_595_176,
}
PARAMS_1001 = {"inception_v4": 42_681_353, "inception_resnet_v2": 55_845_001}  # Cadene's default
V3_WITHOUT_AUX = 23_834_568
SIZE = {
    "inception_v3": 75,
    "inception_v4": 75,
    "inception_resnet_v2": 75,
    "zfnet": 83,
    "nin_cifar": 32,
    "nin_imagenet": 83,
}  # forward checks (ZFNet / NiN-ImageNet: 2x2 maps)
F64 = 1e-10


def key_shapes(state_dict):
    return [(k, tuple(np.shape(v))) for k, v in state_dict.items()]


def _randomise(theirs, size, seed):
    """Weights uniform with variance 2 / fan_in, biases in +-0.05, batch-norm weight in
    [0.5, 1.5] and bias in +-0.2; then every running mean and variance set to the statistics of
    a batch at ``size`` (a training-mode forward with momentum 1), so that the eval-mode forward
    is normalised and its output depends on the input (not only on the batch-norm shifts)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in theirs.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            owner = theirs.get_submodule(name.rpartition(".")[0])
            if isinstance(owner, torch.nn.BatchNorm2d):
                lo, hi = (0.5, 1.5) if name.endswith("weight") else (-0.2, 0.2)
            elif p.dim() == 1:
                lo, hi = -0.05, 0.05
            else:
                hi = (6.0 / p[0].numel()) ** 0.5
                lo = -hi
            p.uniform_(lo, hi, generator=g)
        for m in bns:  # (the auxiliary head's, which the calibration does not reach)
            m.running_mean.uniform_(-0.1, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.num_batches_tracked.zero_()
            m.momentum = 1.0
        aux = getattr(theirs, "AuxLogits", None)  # (Inception v3's needs 299x299)
        if aux is not None:
            theirs.AuxLogits = None
        theirs.train()
        theirs(torch.randn(2, 3, size, size, generator=g, dtype=torch.float64))
        if aux is not None:
            theirs.AuxLogits = aux
        for m in bns:
            m.momentum = 0.1
            m.num_batches_tracked.zero_()


def _build(name, **kw):
    """(fastconv float64 model, its torch twin in float64) with the twin's weights in both."""
    with torch.device("meta"):  # no default initialisation: _randomise draws every value
        theirs = TWINS[name](**kw)
    theirs = theirs.to_empty(device="cpu").double()
    _randomise(theirs, SIZE[name], zlib.crc32(name.encode()))
    with no_init():
        ours = models.get_model(name, dtype=np.float64, **kw)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _count(name, **kw):
    with torch.device("meta"):
        return sum(p.numel() for p in TWINS[name](**kw).parameters())


@pytest.fixture(scope="module")
def pairs():
    """pairs(name) -> (ours, theirs), built once for the module; dropout off in Inception v3
    (its only dropout, before the FC) so training-mode forwards are comparable.
    ``"inception_v3_noaux"`` is Inception v3 without the auxiliary head."""
    cache = {}

    def get(name):
        if name not in cache:
            if name == "inception_v3":
                cache[name] = _build(name, dropout=0.0)
            elif name == "inception_v3_noaux":
                cache[name] = _build("inception_v3", dropout=0.0, aux_logits=False)
            else:
                cache[name] = _build(name)
        ours, theirs = cache[name]
        ours.load_state_dict(theirs.state_dict())  # in step again after any earlier test
        return ours, theirs

    return get


def _forward_both(ours, theirs, x, training):
    ours.train(training), theirs.train(training)
    with no_grad():
        out = ours(Tensor(x))
    with torch.no_grad():
        t_out = theirs(torch.from_numpy(x))
    return out, t_out


# --- parameters and layout --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES_SLOW_INCEPTIONS)
def test_parameter_count_and_state_dict_layout(name, pairs):
    ours, theirs = pairs(name)
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters()) == PARAMS[name]
    assert key_shapes(ours.state_dict()) == key_shapes(theirs.state_dict())
    if name in PARAMS_1001:
        assert _count(name, num_classes=1001) == PARAMS_1001[name]


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
def test_inception_v3_names_and_count_without_aux(pairs):
    keys = list(pairs("inception_v3")[0].state_dict())
    for k in (
        "Conv2d_1a_3x3.conv.weight",
        "Conv2d_1a_3x3.bn.running_var",
        "Mixed_6b.branch7x7_2.conv.weight",
        "Mixed_7c.branch3x3dbl_3b.bn.bias",
        "AuxLogits.conv1.conv.weight",
        "AuxLogits.fc.weight",
        "fc.bias",
    ):
        assert k in keys
    ours, theirs = pairs("inception_v3_noaux")
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters()) == V3_WITHOUT_AUX
    assert not any(k.startswith("AuxLogits") for k in ours.state_dict())
    assert ours.Mixed_6b.branch7x7_2.conv.weight.shape == (128, 128, 1, 7)  # factorised 7x7


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
def test_inception_v4_and_resnet_v2_names(pairs):
    v4 = pairs("inception_v4")[0].state_dict()
    assert "features.3.conv.conv.weight" in v4  # mixed_3a's conv, beside its max-pool
    assert "features.21.branch2_3b.bn.running_mean" in v4 and "last_linear.weight" in v4
    ir = pairs("inception_resnet_v2")[0]
    assert len(ir.repeat) == 10 and len(ir.repeat_1) == 20 and len(ir.repeat_2) == 9
    assert [ir.repeat[0].scale, ir.repeat_1[0].scale, ir.repeat_2[0].scale] == [0.17, 0.10, 0.20]
    assert ir.block8.scale == 1.0 and not ir.block8.relu and ir.repeat_2[8].relu
    assert "repeat_2.8.conv2d.bias" in ir.state_dict() and "conv2d_7b.bn.weight" in ir.state_dict()


# --- forward against PyTorch, float64 ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES_SLOW_INCEPTIONS)
def test_forward_eval_matches_torch(name, pairs):
    ours, theirs = pairs(name)
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE[name], SIZE[name]))
    out, t_out = _forward_both(ours, theirs, x, training=False)
    assert isinstance(out, Tensor) and out.dtype == np.float64
    assert out.shape == (2, 10 if name == "nin_cifar" else 1000)
    assert rel_err(t_out[0].numpy(), t_out[1].numpy()) > 0.05  # the output depends on the input
    assert_close(out.data, t_out.numpy(), F64, f"{name} eval logits")


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
def test_inception_v3_transform_input_matches_torch(pairs):
    ours, theirs = pairs("inception_v3")
    x = np.random.default_rng(1).standard_normal((1, 3, 75, 75))
    ours.transform_input = theirs.transform_input = True
    try:
        out, t_out = _forward_both(ours, theirs, x, training=False)
    finally:
        ours.transform_input = theirs.transform_input = False
    plain, _ = _forward_both(ours, theirs, x, training=False)
    assert rel_err(out.data, plain.data) > 0.05  # it did something
    assert_close(out.data, t_out.numpy(), F64, "transform_input")


# Training mode at 107x107: the last grid is 2x2. At 75x75 it is 1x1, where batch statistics of
# 2 images are ill-conditioned (each channel normalises the difference of two numbers that can
# nearly cancel) and float64 results of any two implementations part at 1e-7.
TRAIN_SIZE = 107


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_forward_training_matches_torch(name, pairs):
    """Batch statistics and the running statistics they move (Inception v3's: in
    test_inception_v3_gradients_match_torch)."""
    ours, theirs = pairs(name)
    x = np.random.default_rng(2).standard_normal((2, 3, TRAIN_SIZE, TRAIN_SIZE))
    out, t_out = _forward_both(ours, theirs, x, training=True)
    assert isinstance(out, Tensor)  # no auxiliary head: the logits alone, as torchvision
    assert_close(out.data, t_out.numpy(), F64, f"{name} training logits")
    ours_sd = ours.state_dict()
    for k, v in theirs.state_dict().items():
        if "running" in k:
            assert_close(ours_sd[k], v.numpy(), F64, k)


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
def test_inception_v3_aux_head_training_299(pairs):
    """Training mode returns InceptionOutputs(logits, aux_logits), both as PyTorch's; 299x299 is
    the smallest input the auxiliary head takes (17x17 at Mixed_6e)."""
    ours, theirs = pairs("inception_v3")
    x = np.random.default_rng(3).standard_normal((2, 3, 299, 299))
    out, t_out = _forward_both(ours, theirs, x, training=True)
    assert type(out).__name__ == "InceptionOutputs" and out._fields == ("logits", "aux_logits")
    assert out.logits.shape == out.aux_logits.shape == (2, 1000)
    assert_close(out.logits.data, t_out.logits.numpy(), F64, "logits")
    assert_close(out.aux_logits.data, t_out.aux_logits.numpy(), F64, "aux_logits")
    for k, v in theirs.state_dict().items():
        if k.startswith("AuxLogits") and "running" in k:
            assert_close(ours.state_dict()[k], v.numpy(), F64, k)
    ours.eval()
    with no_grad():
        assert isinstance(ours(Tensor(x[:1, :, :75, :75])), Tensor)  # eval: the logits only


# --- gradients against PyTorch, float64 -------------------------------------------------------


def _compare_gradients(ours, theirs, x, target, training, tol=1e-8):
    """The gradients of cross-entropy against ``target`` (logits), or with ``target=None`` of
    sum(out * a fixed random array) (feature maps), with respect to the input and every
    parameter."""
    ours.train(training), theirs.train(training)
    ours.zero_grad(), theirs.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    xo = Tensor(x, requires_grad=True)
    t_out, out = theirs(xt), ours(xo)
    if target is None:
        w = np.random.default_rng(8).standard_normal(out.shape)
        (t_out * torch.from_numpy(w)).sum().backward()
        (out * w).sum().backward()
    else:
        torch.nn.functional.cross_entropy(t_out, torch.from_numpy(target)).backward()
        F.cross_entropy(out, target).backward()
    assert_close(out.data, t_out.detach().numpy(), F64, "output")
    assert_close(xo.grad, xt.grad.numpy(), tol, "input gradient")
    t_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(t_params)
    worst = max((rel_err(p.grad, t_params[n].grad.numpy()), n) for n, p in ours.named_parameters())
    assert worst[0] <= tol, f"gradient of {worst[1]}: relative error {worst[0]:.3g}"


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
def test_inception_v3_gradients_and_sgd_step_match_torch(pairs):
    """Cross-entropy's gradient with respect to the input and every parameter in training mode
    (batch norm on batch statistics; no auxiliary head, it needs 299x299), then one SGD step
    with momentum on each side: the weights, running statistics and next logits equal PyTorch's.

    (Whether a few steps lower the loss is not a usable check here: from torchvision's
    initialisation, on a few random images this small, the squared gradient norm is ~1e6-1e9 and
    the first steps move the loss up or down by chance, in PyTorch alike.)"""
    ours, theirs = pairs("inception_v3_noaux")
    x = np.random.default_rng(4).standard_normal((2, 3, TRAIN_SIZE, TRAIN_SIZE))
    target = np.array([3, 971])
    _compare_gradients(ours, theirs, x, target, training=True)
    optim.SGD(ours.parameters(), lr=1e-3, momentum=0.9).step()
    torch.optim.SGD(theirs.parameters(), lr=1e-3, momentum=0.9).step()
    ours_sd = ours.state_dict()
    for k, v in theirs.state_dict().items():
        assert_close(ours_sd[k], v.numpy(), F64, k)
    out, t_out = _forward_both(ours, theirs, x, training=True)
    assert_close(out.data, t_out.numpy(), 1e-8, "logits after the step")


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
@pytest.mark.parametrize("block", ["repeat.0", "repeat_1.0", "block8"])
def test_inception_resnet_v2_block_gradients_match_torch(block, pairs):
    """A Block35 / Block17 (scale 0.17 / 0.10, ReLU) and the last Block8 (scale 1, no ReLU) on
    their own, training mode: the scaled residual addition's backward."""
    ours, theirs = pairs("inception_resnet_v2")
    ours, theirs = ours.get_submodule(block), theirs.get_submodule(block)
    channels, size = {"repeat.0": (320, 5), "repeat_1.0": (1088, 3), "block8": (2080, 2)}[block]
    x = np.random.default_rng(6).standard_normal((2, channels, size, size))
    _compare_gradients(ours, theirs, x, None, training=True)


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
def test_inception_v3_aux_head_gradients_match_torch(pairs):
    """The auxiliary classifier on its own (17x17x768 input, training mode)."""
    ours, theirs = pairs("inception_v3")
    x = np.random.default_rng(5).standard_normal((4, 768, 17, 17))
    _compare_gradients(ours.AuxLogits, theirs.AuxLogits, x, np.array([0, 7, 1, 9]), training=True)


# --- training, input sizes, inference ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, size, lr",
    [
        pytest.param("zfnet", 47, 1e-2, marks=pytest.mark.slow),  # its 62M parameters: seconds
        ("nin_cifar", 32, 1e-3),
        ("nin_imagenet", 64, 1e-3),
    ],
)
def test_sgd_steps_lower_the_loss(name, size, lr):
    """float32, 4 classes, one random image each, two SGD steps with momentum in training mode
    (dropout off: the losses are comparable). The batch-normed Inception networks: see
    test_inception_v3_gradients_and_sgd_step_match_torch."""
    autograd.manual_seed(0)
    model = models.get_model(name, num_classes=4, dropout=0.0)
    rng = np.random.default_rng(6)
    y = np.array([0, 1, 2, 3])
    x = Tensor(rng.standard_normal((4, 3, size, size), dtype=np.float32))
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        assert out.dtype == np.float32 and out.shape == (4, 4)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    with no_grad():
        losses.append(float(F.cross_entropy(model(x), y).data))
    assert np.isfinite(losses).all() and losses[-1] < losses[0] - 1e-3, losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_v3", "inception_v4", "inception_resnet_v2"])
def test_adam_steps_lower_the_loss_of_the_inception_networks(name):
    """The batch-normed Inception networks from their own initialisation, 5 classes, four
    random 75x75 images, six Adam steps (lr 1e-3) on that batch in training mode: the loss falls
    below half of where it started, and ends below it. (Two SGD steps are not enough here: from
    torchvision's initialisation the squared gradient norm is 1e6-1e9, and a single step may
    raise the loss, in PyTorch too; Adam's per-parameter step sizes do not care.) The path down
    oscillates, and rounding-level changes move where: Inception v3's losses read 6.58, 10.27,
    1.94, 3.29, 0.51, 0.45 with one tiling of a 1x1 data gradient's GEMM and 6.58, 10.27, 3.24,
    3.72, 0.95, 4.05 with another (both within the accuracy contract; 0.79 and 0.001 two and
    four steps later), so the half is asked of the lowest loss, not of the sixth."""
    autograd.manual_seed(0)
    kwargs = {"aux_logits": False} if name == "inception_v3" else {}
    model = models.get_model(name, num_classes=5, **kwargs)
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((4, 3, 75, 75)).astype(np.float32))
    y = np.array([0, 1, 2, 3])
    opt = optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    assert np.isfinite(losses).all(), losses
    assert min(losses) < 0.5 * losses[0] and losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", NAMES_SLOW_INCEPTIONS)
def test_smallest_input(name, pairs):
    """MODEL_INPUTS' lower bound is where the forward starts working (eval mode)."""
    spec = MODEL_INPUTS[name]
    assert spec.channels == 3 and spec.max_size is None
    ours = pairs(name)[0].eval()

    def runs(size):
        try:
            with no_grad():
                return ours(Tensor(np.zeros((1, 3, size, size)))).shape[0] == 1
        except Exception:  # noqa: BLE001 - any failure: the size does not fit
            return False

    assert runs(spec.min_size) and not runs(spec.min_size - 1)


@pytest.mark.slow  # builds an Inception network (INCEPTIONS)
def test_inception_v3_inference_plan_matches_eager(pairs):
    """fastconv.inference.compile on the eval-mode model (the auxiliary head is skipped in eval
    mode), float32, batch 1, 75x75: within 1e-4 of the eager forward (relative to the largest
    output). (tests/test_inference.py compiles every model of MODELS the same way.)"""
    with no_init():
        ours = models.inception_v3().eval()
    ours.load_state_dict(pairs("inception_v3")[0].state_dict())
    x = np.random.default_rng(7).standard_normal((1, 3, 75, 75), dtype=np.float32)
    plan = inference.compile(ours, x, tune=False)
    y = plan(x)
    with no_grad():
        ref = ours(Tensor(x)).data
    assert y.dtype == np.float32 and y.shape == ref.shape == (1, 1000)
    assert_close(y, ref, 1e-4, "inception_v3 plan vs eager")

"""fastconv.models: output shapes, parameter counts, torchvision's state_dict layout, and
ResNet-18 / AlexNet ported from a PyTorch state_dict matching PyTorch's forward and every gradient
(float64).

torchvision is not a dependency: the PyTorch side is built from torch.nn modules with
torchvision's module names in fastconv/_torch_models.py."""

import numpy as np
import pytest

from _autograd_ref import assert_close, check_op, rel_err, torch
from fastconv import autograd, models
from fastconv.autograd import Tensor, no_grad
from fastconv.nn import functional as F

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
tnn = torch.nn if torch is not None else None
if torch is not None:
    from fastconv._torch_models import (
        torch_alexnet,
        torch_googlenet,
        torch_lenet5,
        torch_resnet,
        torch_vgg,
    )

# torchvision's documented parameter counts
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "inception_v3": 27_161_264,
}

# the new architectures' counts and PyTorch comparisons: tests/test_models_inception.py
INPUT_SIZE = {
    "lenet5": (1, 32),
    "overfeat_fast": (3, 231),
    "nin_cifar": (3, 32),
    "inception_v3": (3, 75),
    "inception_v4": (3, 75),
    "inception_resnet_v2": (3, 75),
}
CLASSES = {"lenet5": 10, "nin_cifar": 10}  # the default num_classes; the rest 1000

# A second or more each at 224x224 (AlexNet's and the VGGs' 60-140M parameters, the deepest
# ResNets, the larger Inceptions): the slow run checks them. The fast loop keeps LeNet-5,
# GoogLeNet, ResNet-18/34/50, SE-ResNet-50, Inception v3 and the NiNs here, AlexNet-OWT in
# test_num_classes; VGG, whose 130M parameters alone take seconds to allocate, is in the slow
# run only (here and in tests/test_summary.py).
SLOW_MODELS = {
    "alexnet",
    "alexnet_owt",
    "vgg_a",
    "overfeat_fast",
    *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    "resnet101",
    "resnet152",
    "inception_v4",
    "inception_resnet_v2",
    "zfnet",
}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_MODELS else n for n in models.MODELS],
)
def test_output_shape_parameters_and_layout(name):
    autograd.manual_seed(0)
    model = models.get_model(name).eval()
    channels, size = INPUT_SIZE.get(name, (3, 224))
    x = np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)
    with no_grad():
        out = model(Tensor(x))
    assert out.shape == (1, CLASSES.get(name, 1000)) and out.dtype == np.float32
    assert np.isfinite(out.data).all()
    if name in TORCHVISION_PARAMS:
        assert model.num_parameters() == TORCHVISION_PARAMS[name]
    if name in TORCH_LAYOUTS and torch is not None:  # state_dict keys and shapes as torchvision's
        assert key_shapes(model.state_dict()) == key_shapes(TORCH_LAYOUTS[name]().state_dict())


@pytest.mark.parametrize(
    "name", ["lenet5", "alexnet_owt", "googlenet", "googlenet_v1", "resnet18", "se_resnet50"]
)
def test_num_classes(name):
    channels, size = INPUT_SIZE.get(name, (3, 224))
    model = models.get_model(name, num_classes=7).eval()
    with no_grad():
        out = model(Tensor(np.zeros((2, channels, size, size), np.float32)))
    assert out.shape == (2, 7)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'resnet9'"):
        models.get_model("resnet9")


def test_lenet5_c3_table():
    net = models.lenet5(c3_table=True)
    c3 = net.features[4]
    effective = int((c3.weight.data * c3.mask).astype(bool).sum()) + c3.bias.size
    assert effective == 1516  # the paper's count
    assert "mask" not in "".join(net.state_dict())  # the table is structure, not state
    x = Tensor(np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32))
    F.cross_entropy(net(x), np.array([1, 2])).backward()
    assert not c3.weight.grad[c3.mask[..., 0, 0] == 0].any()
    assert c3.weight.grad[c3.mask[..., 0, 0] == 1].any()
    assert net(x).shape == (2, 10)


def test_googlenet_aux_heads():
    net = models.googlenet(num_classes=5, aux_logits=True)
    assert "aux1.conv.conv.weight" in net.state_dict() and "aux2.fc2.bias" in net.state_dict()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32))
    logits, aux2, aux1 = net(x)
    assert logits.shape == aux1.shape == aux2.shape == (2, 5)
    loss = F.cross_entropy(logits, np.array([0, 1])) + 0.3 * (
        F.cross_entropy(aux1, np.array([0, 1])) + F.cross_entropy(aux2, np.array([0, 1]))
    )
    loss.backward()
    assert net.aux1.fc2.weight.grad is not None and net.conv1.conv.weight.grad is not None
    assert net.eval()(x).shape == (2, 5)
    # transform_input maps ImageNet-normalised input to the (x - 0.5) / 0.5 the weights expect
    std, mean = np.array([0.229, 0.224, 0.225]), np.array([0.485, 0.456, 0.406])
    raw = (x.data * std.reshape(1, 3, 1, 1) + mean.reshape(1, 3, 1, 1) - 0.5) / 0.5
    want = net(Tensor(raw.astype(np.float32))).data
    net.transform_input = True
    np.testing.assert_allclose(net(x).data, want, rtol=1e-4, atol=1e-5)


def test_se_block():
    from fastconv.models.resnet import SEBlock

    autograd.manual_seed(3)
    block = SEBlock(32, reduction=16).double()
    w1, b1, w2, b2 = (
        (torch.from_numpy(p.data) for p in block.parameters()) if torch else (None,) * 4
    )

    def theirs(x):  # pool -> FC -> ReLU -> FC -> sigmoid -> channel scale
        s = tnn.functional.linear(
            torch.relu(tnn.functional.linear(x.mean(dim=(2, 3)), w1, b1)), w2, b2
        )
        return x * torch.sigmoid(s)[:, :, None, None]

    check_op([(2, 32, 3, 3)], block, torch and theirs, low=-3, high=3)
    assert [n for n, _ in block.named_parameters()] == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    assert block.fc1.weight.shape == (2, 32)


def key_shapes(state_dict):
    return [(k, tuple(np.shape(v))) for k, v in state_dict.items()]


TORCH_LAYOUTS = {
    "resnet18": lambda: torch_resnet("basic", [2, 2, 2, 2]),
    "resnet50": lambda: torch_resnet("bottleneck", [3, 4, 6, 3]),
    "alexnet": torch_alexnet,
    "vgg11_bn": lambda: torch_vgg(models.vgg.CFGS["A"], True),
    "vgg16": lambda: torch_vgg(models.vgg.CFGS["D"], False),
    "vgg19_bn": lambda: torch_vgg(models.vgg.CFGS["E"], True),
}


@needs_torch
def test_googlenet_state_dict_layout_equals_torchvision():
    theirs = key_shapes(torch_googlenet().state_dict())
    assert sorted(key_shapes(models.googlenet(aux_logits=True).state_dict())) == sorted(theirs)
    without_aux = [(k, s) for k, s in theirs if not k.startswith("aux")]
    assert sorted(key_shapes(models.googlenet().state_dict())) == sorted(without_aux)


# --- ported weights: forward and every gradient against PyTorch -------------------------------


def _compare_port(ours, theirs, x, target, tol=1e-8):
    ours.load_state_dict(theirs.state_dict())
    xt = torch.tensor(x, requires_grad=True)
    t_out = theirs(xt)
    tnn.functional.cross_entropy(t_out, torch.from_numpy(target)).backward()

    xo = Tensor(x, requires_grad=True)
    out = ours(xo)
    F.cross_entropy(out, target).backward()

    assert_close(out.data, t_out.detach().numpy(), tol, "logits")
    assert_close(xo.grad, xt.grad.numpy(), tol, "input gradient")
    t_params = dict(theirs.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(t_params)
    worst = max((rel_err(p.grad, t_params[n].grad.numpy()), n) for n, p in ours.named_parameters())
    assert worst[0] <= tol, f"gradient of {worst[1]}: relative error {worst[0]:.3g}"
    for k, v in theirs.state_dict().items():  # running statistics moved the same way
        assert_close(ours.state_dict()[k], v.numpy(), tol, k)


@needs_torch
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_resnet18_port_matches_torch(training):
    torch.manual_seed(0)
    theirs = torch_resnet("basic", [2, 2, 2, 2], num_classes=10).double().train(training)
    with torch.no_grad():  # non-trivial batch-norm parameters and statistics
        for m in theirs.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    ours = models.resnet18(num_classes=10).double().train(training)
    rng = np.random.default_rng(0)
    _compare_port(ours, theirs, rng.standard_normal((2, 3, 64, 64)), np.array([3, 7]))


@needs_torch
@pytest.mark.slow  # seconds; the ResNet-18 and LeNet-5 ports check the same machinery fast
def test_alexnet_port_matches_torch():
    torch.manual_seed(1)
    theirs = torch_alexnet(num_classes=10).double().eval()  # eval: dropout off, same function
    ours = models.alexnet(num_classes=10).double().eval()
    rng = np.random.default_rng(1)
    # 127x127 gives 3x3 features, which the adaptive pool spreads to torchvision's 6x6
    _compare_port(ours, theirs, rng.standard_normal((1, 3, 127, 127)), np.array([4]))


@needs_torch
def test_lenet5_port_matches_torch():
    torch.manual_seed(2)
    theirs = torch_lenet5().double()
    ours = models.lenet5().double()
    assert key_shapes(ours.state_dict()) == key_shapes(theirs.state_dict())
    _compare_port(
        ours, theirs, np.random.default_rng(2).standard_normal((3, 1, 32, 32)), np.array([0, 5, 9])
    )

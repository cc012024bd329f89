"""nn.utils.fc_to_conv: the converted network's score map on a larger image equals the original
network on each crop (float64, a net without padding), identity adaptive pools and Flatten are
dropped, the original is unchanged, and what cannot slide is refused by name."""

import numpy as np
import pytest

from fastconv import autograd, nn
from fastconv.autograd import Tensor, no_grad
from fastconv.nn.utils import fc_to_conv


class VGGLike(nn.Module):
    """torchvision's VGG/AlexNet layout in small: features (no padding), an adaptive pool that is
    an identity at the native 20x20, dropout, a three-layer classifier."""

    def __init__(self, dtype=np.float64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 20 -> 18 -> 9
            nn.Conv2d(4, 6, 3, stride=1, dtype=dtype),
            nn.ReLU(),  # 9 -> 7
            nn.Conv2d(6, 6, 2, stride=2, dtype=dtype),
            nn.ReLU(),  # 7 -> 3
        )
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(6 * 3 * 3, 12, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(12, 10, dtype=dtype),
            nn.ReLU(),
            nn.Linear(10, 5, dtype=dtype),
        )

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


STRIDE = 2 * 2  # the max-pool's and the last conv's


def _run(model, x):
    with no_grad():
        return model(Tensor(x)).data


def test_score_map_equals_every_crop():
    autograd.manual_seed(0)
    model = VGGLike().eval()
    conv = fc_to_conv(model, 20).eval()
    rng = np.random.default_rng(0)
    big = rng.standard_normal((2, 3, 32, 36))
    scores = _run(conv, big)
    assert scores.shape == (2, 5, 4, 5)  # (32-20)/4+1, (36-20)/4+1
    for i in range(scores.shape[2]):
        for j in range(scores.shape[3]):
            crop = big[:, :, i * STRIDE : i * STRIDE + 20, j * STRIDE : j * STRIDE + 20]
            want = _run(model, np.ascontiguousarray(crop))
            err = np.abs(scores[:, :, i, j] - want).max() / np.abs(want).max()
            assert err <= 1e-10, (i, j, err)


def test_structure_and_original_unchanged():
    autograd.manual_seed(1)
    model = VGGLike()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = autograd.default_generator().bit_generator.state
    conv = fc_to_conv(model, (3, 20, 20))
    assert autograd.default_generator().bit_generator.state == state  # no random draws
    assert model.training and conv.training
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    kinds = [type(m).__name__ for m in conv]
    assert "Linear" not in kinds and "Flatten" not in kinds and "AdaptiveAvgPool2d" not in kinds
    assert kinds.count("Dropout") == 2
    first = conv.classifier_1
    assert first.weight.shape == (12, 6, 3, 3)
    assert np.array_equal(first.weight.data.reshape(12, -1), model.classifier[1].weight.data)
    assert conv.classifier_4.weight.shape == (10, 12, 1, 1)
    assert conv.classifier_1.weight.data is not model.classifier[1].weight.data
    x = np.random.default_rng(1).standard_normal((3, 3, 20, 20))
    model.eval(), conv.eval()
    assert np.allclose(_run(conv, x)[:, :, 0, 0], _run(model, x), rtol=0, atol=1e-12)


def test_sequential_with_flatten_and_softmax():
    autograd.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 6, dtype=np.float64),
        nn.Tanh(),
        nn.Linear(6, 4, dtype=np.float64),
        nn.LogSoftmax(dim=-1),
    )
    conv = fc_to_conv(net, (10, 10))  # channels from the first conv
    x = np.random.default_rng(2).standard_normal((1, 1, 14, 12))
    scores = _run(conv, x)
    assert scores.shape == (1, 4, 3, 2)
    for i in range(3):
        for j in range(2):
            want = _run(net, np.ascontiguousarray(x[:, :, 2 * i : 2 * i + 10, 2 * j : 2 * j + 10]))
            assert np.abs(scores[:, :, i, j] - want).max() <= 1e-10


@pytest.mark.slow  # AlexNet at 224 and 384: seconds; the small models above run the same code
def test_alexnet_gives_the_notes_6x6_map():
    from fastconv.models import alexnet

    model = alexnet(num_classes=7).eval()
    conv = fc_to_conv(model, 224).eval()
    x = np.random.default_rng(3).standard_normal((1, 3, 224, 224)).astype(np.float32)
    a, b = _run(model, x), _run(conv, x)
    assert b.shape == (1, 7, 1, 1) and np.allclose(b[:, :, 0, 0], a, rtol=1e-4, atol=1e-6)
    assert _run(conv, np.zeros((1, 3, 384, 384), np.float32)).shape == (1, 7, 6, 6)


def test_refusals_name_the_module():
    model = VGGLike()
    with pytest.raises(ValueError, match="avgpool.*AdaptiveAvgPool2d.*does not slide"):
        fc_to_conv(model, 24)  # the pool is no identity there

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1, dtype=np.float64)
            self.fc = nn.Linear(2 * 4 * 4, 3, dtype=np.float64)

        def forward(self, x):
            return self.fc((x + self.conv(x)).flatten(1))

    with pytest.raises(ValueError, match="fc"):
        fc_to_conv(Residual(), (2, 4, 4))
    with pytest.raises(ValueError, match="no Linear"):
        fc_to_conv(nn.Sequential(nn.Conv2d(1, 1, 3, dtype=np.float64)), (1, 5, 5))
    head_bn = nn.Sequential(
        nn.Conv2d(1, 2, 3, dtype=np.float64),
        nn.Flatten(),
        nn.Linear(18, 4, dtype=np.float64),
        nn.BatchNorm1d(4, dtype=np.float64),
    )
    with pytest.raises(ValueError, match="BatchNorm1d"):
        fc_to_conv(head_bn, (1, 5, 5))

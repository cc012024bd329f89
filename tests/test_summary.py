"""nn.summary: VGG-16 reproduces the course notes' per-layer table (activations and weights),
totals agree with the models' own parameter counts, FLOPs follow DESIGN's 2 x MACs, and the
training-memory estimate adds up for each optimizer."""

import numpy as np
import pytest

from fastconv import nn, optim
from fastconv.models import lenet5, resnet18, vgg16

# The notes' VGG-16 table ("computational considerations"): layer, activations, weights (no
# biases). ReLU is in place and so has no row.
VGG16_TABLE = [
    ("Input", 224 * 224 * 3, 0),
    ("Conv2d", 224 * 224 * 64, (3 * 3 * 3) * 64),
    ("Conv2d", 224 * 224 * 64, (3 * 3 * 64) * 64),
    ("MaxPool2d", 112 * 112 * 64, 0),
    ("Conv2d", 112 * 112 * 128, (3 * 3 * 64) * 128),
    ("Conv2d", 112 * 112 * 128, (3 * 3 * 128) * 128),
    ("MaxPool2d", 56 * 56 * 128, 0),
    ("Conv2d", 56 * 56 * 256, (3 * 3 * 128) * 256),
    ("Conv2d", 56 * 56 * 256, (3 * 3 * 256) * 256),
    ("Conv2d", 56 * 56 * 256, (3 * 3 * 256) * 256),
    ("MaxPool2d", 28 * 28 * 256, 0),
    ("Conv2d", 28 * 28 * 512, (3 * 3 * 256) * 512),
    ("Conv2d", 28 * 28 * 512, (3 * 3 * 512) * 512),
    ("Conv2d", 28 * 28 * 512, (3 * 3 * 512) * 512),
    ("MaxPool2d", 14 * 14 * 512, 0),
    ("Conv2d", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("Conv2d", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("Conv2d", 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("MaxPool2d", 7 * 7 * 512, 0),
    ("Linear", 4096, 7 * 7 * 512 * 4096),
    ("Linear", 4096, 4096 * 4096),
    ("Linear", 1000, 4096 * 1000),
]


@pytest.fixture(scope="module")
def vgg():
    model = vgg16(init_weights=False)
    return model, nn.summary(model, (3, 224, 224), verbose=False)


@pytest.mark.slow  # VGG-16 traced at 224x224: seconds (the LeNet-5 checks below are fast)
def test_vgg16_rows_match_the_notes(vgg):
    model, s = vgg
    rows = [r for r in s.rows if r.activations]  # the layers that take memory
    assert len(rows) == len(VGG16_TABLE)
    for r, (kind, acts, weights) in zip(rows, VGG16_TABLE):
        assert r.type == kind
        assert r.activations == acts, r.name
        bias = r.output_shape[1] if kind in ("Conv2d", "Linear") else 0
        assert r.params == weights + bias, r.name
    # the in-place/view rows: ReLU, Dropout, and the 7x7 avgpool (an identity at 224)
    others = {r.type for r in s.rows if not r.activations}
    assert others == {"ReLU", "Dropout", "AdaptiveAvgPool2d"}


@pytest.mark.slow  # VGG-16 traced at 224x224: seconds (the LeNet-5 checks below are fast)
def test_vgg16_totals(vgg):
    model, s = vgg
    acts = sum(a for _, a, _ in VGG16_TABLE)
    assert s.total_activations == acts == 15_237_608  # the rows' sum (the notes print "~24M")
    assert s.forward_bytes == 4 * acts  # ~58 MiB of float32 per image forward
    assert sum(w for _, _, w in VGG16_TABLE) == 138_344_128  # "138M parameters" (weights)
    assert s.total_params == model.num_parameters() == 138_357_544
    assert s.trainable_params == s.total_params
    assert abs(s.total_macs / 1e9 - 15.47) < 0.01  # VGG-16's well-known 15.5 GMACs
    assert s.total_flops == 2 * s.total_macs
    conv0 = s.rows[1]
    assert conv0.output_shape == (1, 64, 224, 224) and conv0.macs == 224 * 224 * 64 * 27
    assert s.rows[-1].macs == 4096 * 1000


@pytest.mark.slow  # VGG-16 traced at 224x224: seconds (the LeNet-5 checks below are fast)
def test_memory_estimate_and_batch_scaling(vgg):
    model, _ = vgg
    s = nn.summary(model, (3, 224, 224), batch_size=4, optimizer="sgd_momentum", verbose=False)
    p = 138_357_544 * 4
    assert s.total_activations == 4 * 15_237_608
    assert s.rows[1].output_shape == (4, 64, 224, 224)
    assert s.memory == {
        "activations": 4 * 15_237_608 * 4,
        "activation_gradients": 4 * 15_237_608 * 4,
        "parameters": p,
        "parameter_gradients": p,
        "optimizer_state": p,
        "total": 2 * 4 * 15_237_608 * 4 + 3 * p,
    }
    assert abs(s.memory_mb["parameters"] - p / 2**20) < 1e-9


def test_parameter_counts_of_models():
    for model, shape in ((lenet5(), (1, 32, 32)), (resnet18(num_classes=10), (3, 64, 64))):
        s = nn.summary(model, shape, verbose=False)
        assert s.total_params == model.num_parameters()
        assert sum(r.params for r in s.rows) == model.num_parameters()  # every leaf called once


def test_lenet5_rows_and_flops():
    s = nn.summary(lenet5(), (1, 32, 32), verbose=False)
    convs = [r for r in s.rows if r.type == "Conv2d"]
    assert [r.output_shape for r in convs] == [(1, 6, 28, 28), (1, 16, 10, 10), (1, 120, 1, 1)]
    assert [r.macs for r in convs] == [28 * 28 * 6 * 25, 10 * 10 * 16 * 6 * 25, 120 * 16 * 25]
    assert [r.params for r in convs] == [156, 2416, 48120]
    assert all(r.activations == 0 for r in s.rows if r.type == "Tanh")
    assert {r.type for r in s.rows if r.macs} == {"Conv2d", "Linear"}


@pytest.mark.parametrize(
    "make,buffers",
    [
        (lambda ps: optim.SGD(ps, lr=0.1), 0),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), 1),
        (lambda ps: optim.Adam(ps), 2),
        (lambda ps: optim.RMSprop(ps, momentum=0.9, centered=True), 3),
        (lambda ps: "adam", 2),
        (lambda ps: 1.5, 1.5),
        (lambda ps: None, 0),
    ],
)
def test_optimizer_state(make, buffers):
    model = lenet5()
    s = nn.summary(model, (1, 32, 32), optimizer=make(model.parameters()), verbose=False)
    assert s.memory["optimizer_state"] == int(buffers * model.num_parameters() * 4)
    assert s.optimizer_buffers == buffers


def test_printed_table_and_errors(capsys):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2)
    )
    s = nn.summary(model, (3, 4, 4), dtype=np.float32)
    out = capsys.readouterr().out
    assert out.strip() == str(s).strip()
    for text in (
        "0 (Conv2d)",
        "(1, 8, 4, 4)",
        "Total params: 482",
        "FLOPs = 2 x MACs",
        "optimizer state",
        "MB",
    ):
        assert text in out
    assert [r.activations for r in s.rows] == [48, 128, 0, 0, 2]
    with pytest.raises(ValueError, match="optimizer"):
        nn.summary(model, (3, 4, 4), optimizer="sgdd", verbose=False)
    with pytest.raises(ValueError, match="batch_size"):
        nn.summary(model, (3, 4, 4), batch_size=0, verbose=False)
    with pytest.raises(ValueError, match="input_shape"):
        nn.summary(model, (3, 0, 4), verbose=False)

"""fastconv.visualize: the deconvnet projection against hand-written PyTorch re-statements
(float64), its masking of one channel, the layers it refuses, and ``fastconv visualize``."""

import os

import numpy as np
import pytest

from _autograd_ref import rel_err, torch
from fastconv import autograd, nn
from fastconv.cli import main
from fastconv.models import lenet5
from fastconv.visualize import deconvnet

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
TF = torch.nn.functional if torch is not None else None


def _keep_max(act, c):
    """act with only channel c's strongest activation per image kept (torch tensors)."""
    out = torch.zeros_like(act)
    plane = act[:, c].reshape(act.shape[0], -1)
    best = plane.argmax(dim=1)
    for n in range(act.shape[0]):
        out[n, c].view(-1)[best[n]] = plane[n, best[n]]
    return out


def _t(a):
    return torch.tensor(a.data if hasattr(a, "data") and not isinstance(a, np.ndarray) else a)


@needs_torch
def test_one_conv_net_is_the_transposed_conv_of_the_masked_activation():
    autograd.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, (3, 2), stride=2, padding=1, dtype=np.float64))
    x = np.random.default_rng(0).standard_normal((2, 2, 9, 9))
    got = deconvnet(net, x, 0, 1)
    w, b = _t(net[0].weight), _t(net[0].bias)
    act = TF.conv2d(torch.tensor(x), w, b, stride=2, padding=1)  # (2, 3, 5, 5): natural 9x8
    want = TF.conv_transpose2d(
        _keep_max(act, 1), w, None, stride=2, padding=1, output_padding=(0, 1)
    )
    assert got.shape == x.shape and rel_err(got, want.numpy()) <= 1e-12
    # only one position per image was kept
    assert (_keep_max(act, 1) != 0).sum() == 2


def _net(dtype=np.float64):
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, stride=1, dtype=dtype),
        nn.ReLU(),
    )


def _torch_deconvnet(net, x, layer, channel, keep="max"):
    w1, b1, w2, b2 = (_t(p) for p in (net[0].weight, net[0].bias, net[3].weight, net[3].bias))
    a1 = TF.relu(TF.conv2d(torch.tensor(x), w1, b1, padding=1))
    p1, idx = TF.max_pool2d(a1, 2, return_indices=True)
    a2 = TF.conv2d(p1, w2, b2)
    act = a2 if layer == 3 else TF.relu(a2)
    if keep == "max":
        r = _keep_max(act, channel)
    else:
        r = torch.zeros_like(act)
        r[:, channel] = act[:, channel]
    if layer == 4:
        r = TF.relu(r)
    r = TF.conv_transpose2d(r, w2, None)
    r = TF.max_unpool2d(r, idx, 2, output_size=a1.shape[-2:])
    r = TF.relu(r)
    return TF.conv_transpose2d(r, w1, None, padding=1).numpy()


@needs_torch
@pytest.mark.parametrize("layer,keep", [(3, "max"), (4, "max"), ("3", None), (4, "map")])
def test_conv_relu_pool_conv_matches_torch(layer, keep):
    autograd.manual_seed(1)
    net = _net()
    x = np.random.default_rng(1).standard_normal((3, 2, 10, 11))
    if keep is None:  # a name
        got, layer, keep = deconvnet(net, x, layer, 2), int(layer), "max"
    else:
        got = deconvnet(net, x, layer, 2, keep=keep)
    want = _torch_deconvnet(net, x, layer, 2, keep)
    assert got.shape == x.shape and got.dtype == np.float64
    assert np.abs(want).max() > 0 and rel_err(got, want) <= 1e-12


def test_other_channels_contribute_nothing():
    autograd.manual_seed(2)
    net = _net()
    x = np.random.default_rng(2).standard_normal((2, 2, 10, 11))
    for keep in ("max", "map"):
        before = deconvnet(net, x, 3, 1, keep=keep)
        w, b = net[3].weight.data, net[3].bias.data
        saved = w.copy(), b.copy()
        w[[0, 2, 3, 4]] *= -3.0  # every filter but channel 1's
        b[[0, 2, 3, 4]] += 5.0
        after = deconvnet(net, x, 3, 1, keep=keep)
        w[...], b[...] = saved
        assert np.array_equal(before, after)


def test_unbatched_mode_and_input_unchanged():
    net = _net()
    net.train()
    x = np.random.default_rng(3).standard_normal((2, 10, 11))
    x_copy = x.copy()
    got = deconvnet(net, x, 4, 0)
    assert got.shape == x.shape and np.array_equal(x, x_copy) and net.training
    assert np.allclose(got, deconvnet(net, x[None], 4, 0)[0], rtol=0, atol=0)


def test_lenet5_and_alexnet_style_models():
    autograd.manual_seed(4)
    model = lenet5()  # tanh and average pooling: passed through and undone by the adjoint
    x = np.random.default_rng(4).standard_normal((2, 1, 32, 32)).astype(np.float32)
    got = deconvnet(model, x, "features.4", 3)
    assert got.shape == x.shape and got.dtype == np.float32 and np.isfinite(got).all()
    assert np.abs(got).max() > 0
    # overlapping 3x3/2 max-pools, strided padded first conv, dropout/LRN passed through
    net = nn.Sequential(
        nn.Conv2d(3, 4, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.LocalResponseNorm(3),
        nn.MaxPool2d(3, 2),
        nn.Dropout(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
    )
    x = np.random.default_rng(5).standard_normal((1, 3, 31, 31)).astype(np.float32)
    got = np.stack([deconvnet(net, x, -1, c) for c in range(6)])
    assert got.shape == (6,) + x.shape and np.abs(got).max() > 0


def test_refusals_name_the_module():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
    x = np.zeros((1, 1, 6, 6), np.float32)
    with pytest.raises(ValueError, match=r"1 \(BatchNorm2d\)"):
        deconvnet(net, x, 2, 0)
    assert deconvnet(net, x, 0, 1).shape == x.shape  # below the batch norm: fine
    with pytest.raises(ValueError, match="classifier.0 \\(Linear\\)"):
        deconvnet(lenet5(), np.zeros((1, 1, 32, 32), np.float32), "classifier.0", 0)
    with pytest.raises(ValueError, match="not one of"):
        deconvnet(net, x, "nope", 0)
    with pytest.raises(ValueError, match="channel"):
        deconvnet(net, x, 0, 2)
    with pytest.raises(ValueError, match="keep"):
        deconvnet(net, x, 0, 0, keep="all")

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, padding=1)
            self.b = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.b(x + self.a(x))

    with pytest.raises(ValueError, match="chain"):
        deconvnet(Residual(), x, "b", 0)


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_a_png(tmp_path, capsys):
    import matplotlib.image as mpimg

    png, weights = tmp_path / "grid.png", tmp_path / "w.npz"
    assert (
        main(
            [
                "visualize",
                "--epochs",
                "1",
                "--train-images",
                "64",
                "--images",
                "24",
                "--channels",
                "2",
                "--top-k",
                "3",
                "--no-progress",
                "--threads",
                "1",
                "-o",
                str(png),
                "--save",
                str(weights),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 channels x top 3 of layer features.3" in out
    assert _is_png(png) and mpimg.imread(str(png)).ndim == 3
    assert sorted(os.listdir(tmp_path)) == ["grid.png", "w.npz"]  # no temporary file left
    png2 = tmp_path / "again.png"
    assert (
        main(
            [
                "visualize",
                "--load",
                str(weights),
                "--layer",
                "0",
                "--images",
                "8",
                "--channels",
                "1",
                "--top-k",
                "2",
                "--no-progress",
                "-o",
                str(png2),
            ]
        )
        == 0
    )
    assert _is_png(png2)
    with pytest.raises(SystemExit):
        main(
            [
                "visualize",
                "--layer",
                "classifier.0",
                "--epochs",
                "0",
                "--images",
                "4",
                "--no-progress",
                "-o",
                str(tmp_path / "x.png"),
            ]
        )

"""The command line beyond LeNet-5 on the digits: ``fastconv train --model NAME --data FILE.npz``
(inputs fitted to each model, --log, --plot, tqdm optional), ``fastconv --version``, ``python -m
fastconv``, ``fastconv info``, ``fastconv bench shapes --shape`` and ``fastconv bench model``,
and the top-level ``fastconv.cat`` / ``fastconv.flatten``. Benchmarks run on the smallest
settings; speed is never asserted."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import autograd, cli, models
from fastconv._model_inputs import MODEL_INPUTS


def run(argv, capsys):
    """cli.main(argv) in this process: (status, stdout, stderr)."""
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(argv, capsys):
    """The message of a command that must stop with one line (status 1 or 2), no traceback."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = e.value.code if isinstance(e.value.code, str) else err.strip().splitlines()[-1]
    assert "\n" not in message
    return message


def images(path, n=60, shape=(8, 8), classes=3, seed=0, **extra):
    """An .npz of n grey images whose class is where a bright square sits (learnable fast)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.uniform(0, 0.2, (n,) + shape).astype(np.float32)
    h = shape[0] // classes
    for i, label in enumerate(y):
        x[i, label * h : (label + 1) * h, : shape[1] // 2] += 1.0
    np.savez(path, x=x, y=y, **extra)
    return path


# ------------------------------------------------------------------------------------------------
# version, python -m fastconv, info


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"fastconv {fastconv.__version__}\n"


def test_python_m_fastconv_version():
    done = subprocess.run(
        [sys.executable, "-m", "fastconv", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"fastconv {fastconv.__version__}\n"


def test_info_text_and_json(capsys):
    status, out, _ = run(["info"], capsys)
    assert status == 0
    assert out.startswith(f"fastconv {fastconv.__version__} (Python ")
    for label in ("CPU:", "ISA:", "threads:", "OpenMP:", "BLAS:", "caches:", "autotune:"):
        assert re.search(rf"^{label}", out, re.M), label
    assert f"ISA:         {fastconv.isa()} in use" in out
    assert f"partitions of {fastconv.hardware()['work_items']} work items" in out

    status, out, _ = run(["info", "--json"], capsys)
    info = json.loads(out)
    hw = fastconv.hardware()
    assert info["fastconv"] == fastconv.__version__
    assert info["isa"]["in_use"] == fastconv.isa() and info["isa"]["best"] == hw["best_isa"]
    assert fastconv.isa() in info["isa"]["available"] and "generic" in info["isa"]["available"]
    assert info["threads"]["fastconv"] == fastconv.get_num_threads()
    assert info["caches"] == {k: hw[k] for k in ("l1d_bytes", "l2_bytes", "l3_bytes")}
    assert info["cpu"]["cores"] == hw["cores"]
    assert info["cpu"]["work_items"] == hw["work_items"]
    assert info["autotune"]["mode"] == fastconv.get_autotune()
    assert info["blas"]["config"].startswith("OpenBLAS")
    if sys.platform.startswith("linux"):  # fastconv links an OpenMP runtime: it is loaded
        assert info["openmp"] and all(o["path"].startswith("/") for o in info["openmp"])


# ------------------------------------------------------------------------------------------------
# fastconv.cat, fastconv.flatten (torch's spelling)


def test_top_level_cat_and_flatten():
    a = autograd.Tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    b = autograd.Tensor(np.ones((2, 1, 4)), requires_grad=True)
    c = fastconv.cat([a, b], dim=1)
    assert c.shape == (2, 4, 4)
    np.testing.assert_array_equal(c.data, np.concatenate([a.data, b.data], axis=1))
    (c * c).sum().backward()
    np.testing.assert_array_equal(a.grad, 2 * a.data)
    assert fastconv.flatten(a).shape == (24,)
    assert fastconv.flatten(a, 1).shape == (2, 12)
    assert fastconv.flatten(a, 0, 1).shape == (6, 4)
    assert {"cat", "flatten"} <= set(fastconv.__all__)


# ------------------------------------------------------------------------------------------------
# the input each model takes


def test_every_model_has_an_input_entry():
    assert set(MODEL_INPUTS) == set(models.MODELS)
    for name, spec in MODEL_INPUTS.items():
        assert spec.fits(spec.native) and spec.fits(spec.size_for(8)), name
        assert spec.size_for(spec.min_size - 1) in (spec.min_size, spec.native)


def _runs(model, channels, size):
    try:
        with autograd.no_grad():
            return model(
                autograd.Tensor(np.zeros((1, channels, size, size), np.float32))
            ).shape == (1, 10)
    except Exception:  # noqa: BLE001 - any failure: the size does not fit
        return False


@pytest.mark.parametrize(
    "name",
    ["lenet5", "resnet18", "googlenet", pytest.param("alexnet", marks=pytest.mark.slow)],  # 2 s
)
def test_model_input_edges(name):
    """The table's bounds are where the forward starts (and stops) working."""
    spec = MODEL_INPUTS[name]
    model = models.get_model(name, num_classes=10).eval()
    assert _runs(model, spec.channels, spec.min_size)
    assert spec.min_size == 1 or not _runs(model, spec.channels, spec.min_size - 1)
    if spec.max_size is not None:
        assert _runs(model, spec.channels, spec.max_size)
        assert not _runs(model, spec.channels, spec.max_size + 1)


# ------------------------------------------------------------------------------------------------
# fastconv train --data


def test_train_on_a_file_with_log_and_plot(tmp_path, capsys):
    data = images(tmp_path / "d.npz")
    log, png = tmp_path / "m.json", tmp_path / "c.png"
    argv = [
        "train",
        "--data",
        str(data),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--seed",
        "1",
        "--no-progress",
        "--log",
        str(log),
    ]
    if _has("matplotlib"):
        argv += ["--plot", str(png)]
    status, out, err = run(argv, capsys)
    assert status == 0
    lines = out.splitlines()
    # LeNet-5 on 8x8 grey images: resized to its 32x32, channels as given; 10% held out
    assert lines[0] == (
        "lenet5: 61,111 parameters; d.npz: 54 train, 6 validation images of "
        "32x32 (resized from 8x8, bilinear)"
    )
    assert re.fullmatch(r"epoch 1/2: loss \d+\.\d{4}", lines[1])
    assert re.fullmatch(r"validation accuracy: [01]\.\d{4}", lines[-1])
    val = re.findall(
        r"^epoch (\d)/2: validation accuracy ([01]\.\d{4}) \(lr ([\d.e-]+), "
        r"[\d.]+ s\)$",
        err,
        re.M,
    )
    assert [v[0] for v in val] == ["1", "2"]  # each epoch's, on stderr beside the bars
    record = json.loads(log.read_text())
    assert record["model"] == "lenet5" and record["input"] == [1, 32, 32]
    assert record["classes"] == 3 and record["train_samples"] == 54
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    for entry, (_, acc, lr) in zip(record["epochs"], val):
        assert set(entry) == {"epoch", "train_loss", "val_accuracy", "lr", "time_s", "elapsed_s"}
        assert f"{entry['val_accuracy']:.4f}" == acc and float(lr) == pytest.approx(
            entry["lr"], rel=1e-3
        )
    assert record["epochs"][0]["lr"] == 0.05 and record["epochs"][1]["lr"] < 0.05  # cosine
    assert f"{record['validation_accuracy']:.4f}" == lines[-1].split()[-1]
    if _has("matplotlib"):
        assert png.stat().st_size > 1000 and f"plot written to {png}" in out


def test_train_a_3_channel_model_on_grey_images(tmp_path, capsys):
    """Grey images go to ResNet-18 as 3 channels; classes from the labels; --size resizes."""
    data = images(tmp_path / "d.npz", n=24, classes=4)
    status, out, err = run(
        [
            "train",
            "--model",
            "resnet18",
            "--data",
            str(data),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--size",
            "12",
            "--no-progress",
        ],
        capsys,
    )
    assert status == 0
    assert out.splitlines()[0] == (
        "resnet18: 11,178,564 parameters; d.npz: 22 train, 2 validation images of 12x12, 3 "
        "channels (resized from 8x8, bilinear; grey repeated to 3 channels)"
    )
    assert "epoch 1/1: validation accuracy" in err


def test_train_resizes_to_the_models_smallest_size(tmp_path, capsys):
    data = images(tmp_path / "d.npz", n=20, classes=2)
    status, out, _ = run(
        ["train", "--model", "googlenet", "--data", str(data), "--epochs", "0", "--no-progress"],
        capsys,
    )
    assert status == 0
    assert "images of 15x15, 3 channels (resized from 8x8" in out.splitlines()[0]


def test_train_uses_x_val_and_lenet_takes_colour(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3, 32, 32)).astype(np.float32)
    path = tmp_path / "c.npz"
    np.savez(path, x=x, y=np.arange(12) % 2, x_val=x[:5], y_val=np.array([0.0, 1, 0, 1, 5]))
    status, out, _ = run(["train", "--data", str(path), "--epochs", "0", "--no-progress"], capsys)
    assert status == 0  # float labels that are whole numbers are labels; classes = 5 + 1
    assert out.splitlines()[0] == (
        "lenet5: 61,666 parameters; c.npz: 12 train, 5 validation images of 32x32, 3 channels"
    )


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_train_without_tqdm(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    data = images(tmp_path / "d.npz", n=20)
    for extra in ([], ["--no-progress"]):
        status, out, err = run(["train", "--data", str(data), "--epochs", "1"] + extra, capsys)
        assert status == 0 and "validation accuracy: " in out
        assert "it/s" not in err


BAD_DATA = [
    (
        dict(y=np.arange(4)),
        "no array 'x' (it has 'y'; needed: x and y, optionally x_val and y_val)",
    ),
    (dict(x=np.zeros((4, 8, 8)), y=np.arange(4), x_val=np.zeros((2, 8, 8))), "no array 'y_val'"),
    (dict(x=np.zeros((4, 64)), y=np.arange(4)), "x must hold images as (N, C, H, W) or (N, H, W)"),
    (
        dict(x=np.zeros((4, 8, 8)), y=np.array([0, 1, 0.5, 1])),
        "y must hold integer class labels; it holds float64 values such as 0.5",
    ),
    (
        dict(x=np.zeros((4, 8, 8)), y=np.array(["a", "b", "a", "b"])),
        "y must hold integer class labels, not <U1",
    ),
    (dict(x=np.zeros((4, 8, 8)), y=np.arange(3)), "x holds 4 images but y 3 labels"),
    (dict(x=np.zeros((4, 8, 8)), y=np.array([0, -1, 0, 1])), "y holds the negative label -1"),
    (dict(x=np.zeros((4, 8, 8)), y=np.zeros((4, 1), int)), "y must be a 1-D array"),
    (dict(x=np.full((4, 8, 8), np.nan), y=np.arange(4)), "x holds 256 values that are not finite"),
    (dict(x=np.zeros((4, 8, 8)), y=np.zeros(4, int)), "the training labels are all 0"),
    (dict(x=np.zeros((4, 8, 8)), y=np.array([0, 1, 2, 10**9])), "the largest label is 1000000000"),
    (
        dict(x=np.zeros((4, 8, 8)), y=np.arange(4), x_val=np.zeros((2, 9, 9)), y_val=np.arange(2)),
        "x_val's images are 1x9x9, x's 1x8x8: they must be alike",
    ),
    (
        dict(x=np.zeros((4, 2, 8, 8)), y=np.arange(4)),
        "the model takes 3-channel images and the data has 2 channels",
    ),
    ("corrupt", "is not a readable .npz file (truncated or corrupt?)"),
    ("npy", "a single .npy array"),
]


@pytest.mark.parametrize("content,message", BAD_DATA, ids=[m[:30] for _, m in BAD_DATA])
def test_train_bad_data_file_is_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "bad.npz"
    if content == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    else:
        np.savez(path, **content)
    model = "resnet18" if "channels" in message else "lenet5"
    err = one_line_error(["train", "--model", model, "--data", str(path), "--no-progress"], capsys)
    assert err.startswith(f"fastconv train: error: argument --data: {path}")
    assert message in err


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--model", "alexnet", "--size", "32"],
            "argument --size: alexnet takes 3 channels, 63x63 or larger, got 32",
        ),
        (["--size", "40"], "argument --size: lenet5 takes 1 channel, 32x32 to 35x35, got 40"),
        (["--model", "resnet18", "--c3-table"], "argument --c3-table: only LeNet-5 has it"),
    ],
)
def test_train_bad_model_options(args, message, capsys, monkeypatch):
    from fastconv import data

    def forbidden(*a, **k):
        raise AssertionError("loaded the data before checking the options")

    monkeypatch.setattr(data, "load_digits", forbidden)
    assert one_line_error(["train"] + args, capsys).startswith("fastconv train: error: " + message)


def test_train_rejects_unknown_model_and_plot_without_matplotlib(capsys, monkeypatch, tmp_path):
    assert "invalid choice: 'nope'" in one_line_error(["train", "--model", "nope"], capsys)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)
    assert one_line_error(["train", "--plot", str(tmp_path / "c.png")], capsys) == (
        "fastconv train: error: argument --plot: needs matplotlib: pip install 'fastconv[bench]'"
    )


class Crash(Exception):
    pass


def test_log_survives_a_crash_and_continues_on_resume(tmp_path, capsys, monkeypatch):
    """--log is rewritten after every epoch: a crash keeps the epochs done, and --resume carries
    the same file on; the resumed run's record equals an uninterrupted one's (times apart)."""
    from fastconv import optim

    data = images(tmp_path / "d.npz", n=40)
    base = [
        "train",
        "--data",
        str(data),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--no-progress",
    ]
    whole, log, ck = tmp_path / "whole.json", tmp_path / "log.json", tmp_path / "ck.npz"
    run(base + ["--log", str(whole)], capsys)

    calls, real = iter(range(1, 100)), optim.SGD.step

    def step(self):  # 5 steps an epoch: crash in epoch 3
        if next(calls) == 12:
            raise Crash
        real(self)

    with monkeypatch.context() as m:
        m.setattr(optim.SGD, "step", step)
        with pytest.raises(Crash):
            cli.main(base + ["--log", str(log), "--checkpoint", str(ck)])
    capsys.readouterr()
    assert [e["epoch"] for e in json.loads(log.read_text())["epochs"]] == [1, 2]
    run(base + ["--log", str(log), "--resume", str(ck)], capsys)

    def strip(path):
        record = json.loads(path.read_text())
        return record, [
            {k: v for k, v in e.items() if "time" not in k and k != "elapsed_s"}
            for e in record["epochs"]
        ]

    (a, ea), (b, eb) = strip(whole), strip(log)
    assert ea == eb and len(ea) == 3
    assert a["validation_accuracy"] == b["validation_accuracy"]


# ------------------------------------------------------------------------------------------------
# ResNet-18 on the digits, end to end

# README, "Networks and training": 0.9722 (175 of the 180 held-out digits) in about 40 s on 2 cores
RESNET_DIGITS_ACCURACY = 0.9722


@pytest.mark.slow  # a whole training run (~40 s); test_train_on_a_file_with_log_and_plot is fast
@pytest.mark.skipif(not _has("sklearn"), reason="the digits come with scikit-learn")
def test_resnet18_learns_the_digits_from_an_npz(tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = tmp_path / "digits.npz"
    np.savez(path, x=digits.images.astype(np.float32), y=digits.target)
    status, out, _ = run(
        [
            "train",
            "--model",
            "resnet18",
            "--data",
            str(path),
            "--epochs",
            "4",
            "--batch-size",
            "128",
            "--optimizer",
            "adam",
            "--threads",
            "2",
            "--no-progress",
        ],
        capsys,
    )
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == (
        "resnet18: 11,181,642 parameters; digits.npz: 1617 train, 180 validation "
        "images of 8x8, 3 channels (grey repeated to 3 channels)"
    )
    accuracy = float(lines[-1].split()[-1])
    assert accuracy >= 0.95, out  # a little below: other ISAs round differently


# ------------------------------------------------------------------------------------------------
# fastconv bench shapes --shape, fastconv bench model


def test_bench_user_shapes(tmp_path, capsys):
    out_json = tmp_path / "s.json"
    status, out, _ = run(
        [
            "bench",
            "shapes",
            "--shape",
            "1,4,9,9:8,3,3:2,1",
            "--shape",
            "1,4,6,6:4,3,3:1,1,1,4",
            "--repeat",
            "1",
            "--compare",
            "numpy",
            "--no-progress",
            "--json",
            str(out_json),
        ],
        capsys,
    )
    assert status == 0 and "[shapes]" in out
    rows = json.loads(out_json.read_text())["rows"]
    assert {r["case"] for r in rows} == {"1,4,9,9:8,3,3:2,1", "1,4,6,6:4,3,3:1,1,1,4"}
    fc = [r for r in rows if r["lib"] == "fastconv"]
    assert len(fc) == 6 and all(r["ms"] > 0 and r["suite"] == "shapes" for r in rows)
    # the NumPy baseline has no groups: it ran the plain convolution only
    assert {r["case"] for r in rows if r["lib"] == "numpy"} == {"1,4,9,9:8,3,3:2,1"}


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--shape", "1,3,8,8"],
            "argument --shape: must be N,C,H,W:K,kh,kw[:stride,pad,dilation,"
            "groups] (integers), got '1,3,8,8'",
        ),
        (["--shape", "1,3,8,8:4,3,x"], "must be N,C,H,W:K,kh,kw"),
        (
            ["--shape", "1,3,4,4:8,5,5"],
            "the 5x5 kernel (dilation 1: spans 5x5) is larger than the 4x4 input padded by 0",
        ),
        (["--shape", "1,6,8,8:4,3,3:1,1,1,4"], "groups 4 must divide the input channels C=6"),
        (["--shape", "1,3,8,8:4,3,3:0"], "stride, dilation and groups must be >= 1"),
    ],
)
def test_bench_shape_rejected_up_front(args, message, capsys, monkeypatch):
    from fastconv import bench

    monkeypatch.setattr(bench, "sgemm_rate", lambda *a: pytest.fail("ran past validation"))
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "shapes"] + args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_shape_goes_with_the_shapes_suite(capsys):
    for argv in (
        ["bench", "layers", "--shape", "1,3,8,8:4,3,3"],
        ["bench", "shapes", "--batch", "2", "--shape", "1,3,8,8:4,3,3"],
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
    assert "each shape's N is its batch" in capsys.readouterr().err


@pytest.mark.slow  # measures the SGEMM rate first (seconds); bench shapes above is fast
def test_bench_model_lenet5(tmp_path, capsys):
    out_json = tmp_path / "m.json"
    torch = _has("torch")
    status, out, _ = run(
        [
            "bench",
            "model",
            "lenet5",
            "--batch",
            "2",
            "--repeat",
            "1",
            "--threads",
            "1",
            "--no-progress",
            "--json",
            str(out_json),
        ],
        capsys,
    )
    assert status == 0
    assert "lenet5 batch 2 at 1x32x32" in out.splitlines()[0]
    res = json.loads(out_json.read_text())
    libs = ["fastconv"] + (["torch"] if torch else [])
    assert [(r["lib"], r["dir"]) for r in res["rows"]] == [
        (lib, d) for lib in libs for d in ("fwd", "fwd+bwd")
    ]
    assert all(r["case"] == "lenet5 b2" and r["ms"] > 0 for r in res["rows"])
    # LeNet-5's forward: 2 x 416,520 multiply-adds per 32x32 image
    assert res["rows"][0]["gflops"] * 1e9 * res["rows"][0]["ms"] / 1e3 == pytest.approx(
        2 * 2 * 416520, rel=0.01
    )
    if torch:
        assert re.search(r"lenet5 b2 +fastconv +fwd .* \d+\.\d\dx$", out, re.M)  # vs torch


def test_bench_model_twins():
    from fastconv.bench_user import torch_twin

    pytest.importorskip("torch")
    for name in ("googlenet", "googlenet_v1", "alexnet_owt", "overfeat_fast", "vgg_a"):
        assert torch_twin(name, 10) is None
    twin = torch_twin("resnet18", 10)
    ours = models.resnet18(num_classes=10).state_dict()
    assert {k: tuple(v.shape) for k, v in twin.state_dict().items()} == {
        k: v.shape for k, v in ours.items()
    }


def test_bench_model_bad_size(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "model", "vgg_a", "--size", "100"])
    assert e.value.code == 2
    assert (
        "argument --size: vgg_a takes 3 channels, 224x224 to 255x255, got 100"
        in capsys.readouterr().err
    )

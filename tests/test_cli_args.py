"""`fastconv train` and `fastconv bench` check every option while parsing, before any data is
loaded or anything is timed: a bad value exits with status 2 and one argparse line naming the
option. Files that pass the checks but cannot be read give one line naming the file."""

import numpy as np
import pytest

from fastconv import cli


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Loading the data or running a benchmark fails the test: validation must come first."""
    from fastconv import bench, data

    def forbidden(*a, **k):
        raise AssertionError("ran past validation")

    monkeypatch.setattr(data, "load_digits", forbidden)
    monkeypatch.setattr(bench, "run", forbidden)


def usage_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "Traceback" not in err
    return err


TRAIN = [
    (["--lr", "-1"], "argument --lr: must be a finite number >= 0, got '-1'"),
    (["--lr", "nan"], "argument --lr: must be a finite number >= 0, got 'nan'"),
    (["--lr", "fast"], "argument --lr: must be a finite number >= 0, got 'fast'"),
    (["--epochs", "-1"], "argument --epochs: must be an integer >= 0, got '-1'"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got '0'"),
    (["--momentum", "-0.5"], "argument --momentum: must be a finite number >= 0, got '-0.5'"),
    (["--weight-decay", "inf"], "argument --weight-decay: must be a finite number >= 0, got 'inf'"),
    (["--seed", "-3"], "argument --seed: must be an integer >= 0, got '-3'"),
    (["--threads", "0"], "argument --threads: must be an integer from 1 to 1024, got '0'"),
    (["--threads", "5000"], "argument --threads: must be an integer from 1 to 1024, got '5000'"),
    (["--save", "nodir/w.npz"], "argument --save: nodir/w.npz: directory "),
    (["--save", "."], "argument --save: .: is a directory"),
    (["--load", "missing.npz"], "argument --load: missing.npz: no such file"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
]


@pytest.mark.parametrize("args,message", TRAIN, ids=[" ".join(a) for a, _ in TRAIN])
def test_train_rejects_bad_values_up_front(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = usage_error(["train"] + args, capsys)
    assert err.startswith("fastconv train: error: " + message)


BENCH = [
    (["--batch", "0"], "argument --batch: must be an integer >= 1, got '0'"),
    (["--net-batch", "-2"], "argument --net-batch: must be an integer >= 1, got '-2'"),
    (["--repeat", "0"], "argument --repeat: must be an integer >= 1, got '0'"),
    (["--threads", "0"], "argument --threads: must be an integer from 1 to 1024, got '0'"),
    (
        ["--compare", "torch,tensorflow"],
        "argument --compare: unknown 'tensorflow' (choose from torch, numpy)",
    ),
    (["--algos", "im2col,strassen"], "argument --algos: unknown 'strassen' (choose from "),
    (["--json", "nodir/x.json"], "argument --json: nodir/x.json: directory "),
    (["--plot", "nodir/x.png"], "argument --plot: nodir/x.png: directory "),
    (["--plot", "x.xyz"], "argument --plot: x.xyz: matplotlib cannot write .xyz (formats: "),
]


@pytest.mark.parametrize("args,message", BENCH, ids=[" ".join(a) for a, _ in BENCH])
def test_bench_rejects_bad_values_up_front(args, message, capsys, tmp_path, monkeypatch):
    if args[0] == "--plot":
        pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    err = usage_error(["bench", "layers"] + args, capsys)
    assert err.startswith("fastconv bench: error: " + message)


def test_bench_plot_without_matplotlib(capsys, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)
    err = usage_error(["bench", "layers", "--plot", str(tmp_path / "b.png")], capsys)
    assert (
        err
        == "fastconv bench: error: argument --plot: needs matplotlib: pip install 'fastconv[bench]'"
    )


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "No data left in file"),
        (b"not a checkpoint at all" * 4, "pickled"),
        ("half", "File is not a zip file"),
        ("npy", "a single .npy array"),
    ],
)
def test_train_load_of_a_bad_file_is_one_line(content, reason, capsys, tmp_path):
    path = tmp_path / "w.npz"
    if content == "half":
        np.savez(path, a=np.ones(1000))
        path.write_bytes(path.read_bytes()[:3000])
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    else:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--load", str(path)])
    message = e.value.code  # sys.exit(message): status 1, the line on stderr
    assert message.startswith(
        f"fastconv train: error: argument --load: {path} is not a "
        f"readable .npz weights file (truncated or corrupt?): "
    )
    assert reason in message and "\n" not in message


def tiny_digits(*a, **k):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 32, 32)).astype(np.float32)
    y = np.arange(16) % 10
    return x, y, x[:8], y[:8]


@pytest.mark.parametrize("lr,changes", [("0", False), ("0.5", True)])
def test_train_lr_zero_is_honoured_and_save_load_agree_on_the_path(
    lr, changes, capsys, tmp_path, monkeypatch
):
    pytest.importorskip("tqdm")
    from fastconv import data, models
    from fastconv.train import load_weights, save_weights

    monkeypatch.setattr(data, "load_digits", tiny_digits)
    start, out = tmp_path / "start", tmp_path / "w"  # no suffix: written and read as given
    save_weights(models.lenet5(), start)
    assert (
        cli.main(
            [
                "train",
                "--epochs",
                "1",
                "--lr",
                lr,
                "--no-progress",
                "--load",
                str(start),
                "--save",
                str(out),
            ]
        )
        == 0
    )
    assert f"saved weights to {out}\n" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["start", "w"]
    a, b = models.lenet5(), models.lenet5()
    load_weights(a, start), load_weights(b, out)
    same = all(
        np.array_equal(va, vb) for va, vb in zip(a.state_dict().values(), b.state_dict().values())
    )
    assert same != changes  # lr 0 (once read as "use the default 0.05") leaves the weights alone
    assert cli.main(["train", "--epochs", "0", "--no-progress", "--load", str(out)]) == 0

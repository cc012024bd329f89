"""Real training: the digits data, the training loop, and ``fastconv train`` end to end (short)."""

import re

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the digits data comes with scikit-learn")
pytest.importorskip("tqdm")

import fastconv
from fastconv import models, optim
from fastconv.cli import main
from fastconv.data import batches, load_digits
from fastconv.train import evaluate, load_weights, save_weights, train_epoch


def test_load_digits():
    x_train, y_train, x_test, y_test = load_digits()
    assert x_train.shape == (1438, 1, 32, 32) and x_test.shape == (359, 1, 32, 32)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert set(np.unique(y_train)) == set(range(10)) and set(np.unique(y_test)) == set(range(10))
    assert abs(float(x_train.mean())) < 1e-4 and float(x_train.std()) == pytest.approx(1, rel=1e-3)
    # the digit sits in the central 20x20; the border is background
    border = x_train[:, 0, :6, :]
    assert np.allclose(border, border.min())
    again = load_digits()  # the split is fixed
    np.testing.assert_array_equal(again[1], y_train)
    np.testing.assert_array_equal(again[2], x_test)


def test_batches():
    x, y = np.arange(10), np.arange(10) * 2
    got = list(batches(x, y, 4))
    assert [len(b[0]) for b in got] == [4, 4, 2] and (got[2][1] == [16, 18]).all()
    shuffled = np.concatenate(
        [b[0] for b in batches(x, y, 3, shuffle=True, rng=np.random.default_rng(0))]
    )
    assert sorted(shuffled) == list(range(10)) and list(shuffled) != list(range(10))


@pytest.mark.slow  # two LeNet-5 epochs on 512 digits (train_epoch is also run by test_resume.py)
def test_training_loop_lowers_the_loss_and_weights_round_trip(tmp_path):
    x_train, y_train, x_test, y_test = load_digits()
    model = models.lenet5()
    opt = optim.Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    first = train_epoch(model, opt, x_train[:512], y_train[:512], 32, rng)
    second = train_epoch(model, opt, x_train[:512], y_train[:512], 32, rng)
    assert second < first
    acc = evaluate(model, x_test, y_test)
    path = tmp_path / "w.npz"
    save_weights(model, path)
    other = models.lenet5()
    load_weights(other, path)
    assert evaluate(other, x_test, y_test) == acc


def test_cli_train_save_load(tmp_path, capsys):
    path = tmp_path / "lenet5.npz"
    threads = fastconv.get_num_threads()
    assert (
        main(
            [
                "train",
                "--model",
                "lenet5",
                "--epochs",
                "1",
                "--seed",
                "1",
                "--threads",
                "1",
                "--save",
                str(path),
            ]
        )
        == 0
    )
    assert fastconv.get_num_threads() == threads  # --threads held for the command only
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert re.fullmatch(r"epoch 1/1: loss \d+\.\d{4}", lines[1])
    assert re.fullmatch(r"test accuracy: 0\.\d{4}", lines[-1])
    accuracy = float(lines[-1].split()[-1])
    assert accuracy > 0.7  # one epoch: far from the 0.97 of ten, far above chance
    assert "epoch 1/1" in captured.err and "/90 [" in captured.err  # the tqdm bar, 90 batches of 16
    assert path.exists()

    assert main(["train", "--epochs", "0", "--load", str(path), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == lines[-1]


def test_cli_usage(capsys):
    assert main([]) == 2
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--model", "nope"])

"""Checkpoints and benchmark files are written whole or not at all: a write that fails part-way
(here a file-size limit, as a full disk) raises and leaves the file that was there before
byte-identical, with no temporary file left behind."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastconv import nn
from fastconv._io import atomic_write
from fastconv.train import load_weights, save_weights

# The child may write at most LIMIT bytes per file; SIGXFSZ is ignored, so a write past the
# limit fails with EFBIG (OSError) instead of killing the process.
LIMIT = 16 * 1024
PRELUDE = f"""
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))
"""


def run_limited(code):
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def model(seed):
    from fastconv import autograd

    autograd.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))  # ~17 KB of weights


def assert_only(directory, names):
    assert sorted(os.listdir(directory)) == sorted(names)  # no temporary file left


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"partial")
            raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"old"
    assert_only(tmp_path, ["f.bin"])
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the old file's permissions
    with atomic_write(tmp_path / "t.json", binary=False) as f:
        json.dump({"a": 1}, f)
    assert json.loads((tmp_path / "t.json").read_text()) == {"a": 1}
    assert_only(tmp_path, ["f.bin", "t.json"])


def test_save_weights_writes_exactly_the_path_given(tmp_path):
    m = model(0)
    save_weights(m, tmp_path / "w")  # no ".npz" appended
    assert_only(tmp_path, ["w"])
    other = model(1)
    load_weights(other, tmp_path / "w")
    for (k, a), b in zip(m.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_save_weights_over_a_good_checkpoint_on_a_full_disk(tmp_path):
    path = tmp_path / "good.npz"
    save_weights(model(0), path)
    good = path.read_bytes()
    assert len(good) > LIMIT
    proc = run_limited(f"""
        from fastconv import autograd, nn
        from fastconv.train import save_weights
        autograd.manual_seed(1)
        m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        try:
            save_weights(m, {str(path)!r})
        except OSError as e:
            print("OSError", e.errno)
        else:
            print("saved")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["OSError", "27"]  # EFBIG
    assert path.read_bytes() == good
    load_weights(model(2), path)  # still a complete checkpoint
    assert_only(tmp_path, ["good.npz"])


@pytest.mark.slow  # `fastconv train` in a subprocess under a file-size limit
def test_cli_save_failure_is_one_line_and_keeps_the_old_file(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    path = tmp_path / "good.npz"
    from fastconv import models

    save_weights(models.lenet5(), path)
    good = path.read_bytes()
    proc = run_limited(f"""
        from fastconv.cli import main
        main(["train", "--epochs", "0", "--no-progress", "--save", {str(path)!r}])
    """)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == f"fastconv train: error: argument --save: {path}: "
        f"[Errno 27] File too large"
    )
    assert path.read_bytes() == good
    assert_only(tmp_path, ["good.npz"])


# `fastconv bench` with its run replaced by canned rows: only the writing of files is under test
FAKE_BENCH = """
from fastconv import bench, cli
bench.run = lambda *a, **k: dict(
    meta=dict(isa="x", threads=1, batch=1, net_batch=1, repeat=1, sgemm_gflops=1.0, torch=None),
    rows=[dict(suite="layers", case=f"L{i}", lib="fastconv", dir="fwd", ms=1.0, gflops=1.0,
               algo="") for i in range(ROWS)])
cli.main(["bench", "layers", "--no-progress", OPTION, PATH])
"""


@pytest.mark.parametrize(
    "option,rows",
    [("--json", 2000), pytest.param("--plot", 40, marks=pytest.mark.slow)],  # matplotlib: 2 s
)
def test_bench_output_on_a_full_disk_keeps_the_old_file(tmp_path, option, rows):
    if option == "--plot":
        pytest.importorskip("matplotlib")
    path = tmp_path / ("b.json" if option == "--json" else "b.png")
    path.write_bytes(b"old")
    code = (
        FAKE_BENCH.replace("ROWS", str(rows))
        .replace("OPTION", repr(option))
        .replace("PATH", repr(str(path)))
    )
    proc = run_limited(code)
    assert proc.returncode == 1, proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"fastconv bench: error: argument {option}: {path}: [Errno 27] File too large"
    )
    assert path.read_bytes() == b"old"
    assert_only(tmp_path, [path.name])

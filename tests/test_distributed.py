"""fastconv.distributed: DDP over MPI equals one process on the whole batch; failures end the
job; the sampler partitions every epoch. The MPI checks run tests/mpi/*.py under mpiexec -n 2
(one OpenMP thread per rank), as the README's "Scaling out" says."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastconv.distributed import DistributedSampler

HERE = Path(__file__).parent


def _mpiexec():
    pytest.importorskip("mpi4py")
    exe = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("no mpiexec (pip install 'fastconv[mpi]')")
    return exe


def _run_mpi(script, *args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, str(HERE / "mpi" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_two_ranks_train_as_one_process_on_the_whole_batch(tmp_path):
    r = _run_mpi("ddp_check.py", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    for line in (
        "ok equal batch_norm=False rank=0",
        "ok equal batch_norm=False rank=1",
        "ok equal batch_norm=True rank=0",
        "ok equal batch_norm=True rank=1",
        "ok overlap",
        "ok no_sync",
        "ok unused",
        "ok collectives",
    ):
        assert line in r.stdout, r.stdout + r.stderr


def test_a_failing_rank_ends_the_job_instead_of_hanging():
    r = _run_mpi("fail_check.py", timeout=60)
    assert r.returncode != 0
    assert "rank 1 failed" in r.stderr and "injected failure on rank 1" in r.stderr
    assert "should not get here" not in r.stdout


def _in_subprocess(code):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_import_fastconv_never_imports_mpi4py():
    r = _in_subprocess(
        "import sys, fastconv, fastconv.distributed, fastconv.nn\n"
        "assert 'mpi4py' not in sys.modules, 'imported'\nprint('fine')"
    )
    assert r.returncode == 0 and "fine" in r.stdout, r.stderr


def test_one_process_without_mpiexec_is_a_world_of_one():
    pytest.importorskip("mpi4py")
    r = _in_subprocess(
        "import numpy as np, fastconv, fastconv.distributed as dist\n"
        "from fastconv import nn\n"
        "dist.init(); assert (dist.rank(), dist.world_size()) == (0, 1)\n"
        "m = nn.Linear(3, 2, dtype=np.float64); ddp = dist.DistributedDataParallel(m)\n"
        "x = np.arange(6.0).reshape(2, 3); ddp(fastconv.Tensor(x)).sum().backward()\n"
        "assert np.array_equal(m.weight.grad, np.ones((2, 1)) * x.sum(0)), m.weight.grad\n"
        "assert list(ddp.state_dict()) == ['module.weight', 'module.bias']\n"
        "print('fine')"
    )
    assert r.returncode == 0 and "fine" in r.stdout, r.stderr


def test_uninitialised_use_is_a_clear_error():
    r = _in_subprocess(
        "import fastconv.distributed as d\ntry:\n d.barrier()\n"
        "except RuntimeError as e:\n print('err', e)"
    )
    assert "not initialised" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize(
    "n,world,drop_last",
    [(16, 2, False), (17, 2, False), (17, 3, True), (5, 4, False), (100, 3, False)],
)
def test_sampler_covers_every_index_once_per_epoch(n, world, drop_last):
    for epoch in range(3):
        parts = []
        for r in range(world):
            s = DistributedSampler(
                n, num_replicas=world, rank=r, shuffle=True, seed=4, drop_last=drop_last
            )
            s.set_epoch(epoch)
            parts.append(list(s))
            assert len(parts[-1]) == len(s)
        lengths = {len(p) for p in parts}
        assert len(lengths) == 1  # every rank runs the same number of steps
        together = np.concatenate(parts)
        if drop_last:
            assert len(together) == n // world * world and len(set(together)) == len(together)
        else:
            assert set(together) == set(range(n))
            assert len(together) == -(-n // world) * world  # padded by repeats


def test_sampler_reshuffles_by_epoch_and_agrees_across_ranks():
    a = DistributedSampler(64, num_replicas=2, rank=0, seed=1)
    b = DistributedSampler(64, num_replicas=2, rank=0, seed=1)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first  # a new order each epoch
    b.set_epoch(1)
    assert list(a) == list(b)  # and the same one on every process
    plain = DistributedSampler(10, num_replicas=2, rank=1, shuffle=False)
    assert list(plain) == [1, 3, 5, 7, 9]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_replicas=0), "num_replicas"),
        (dict(num_replicas=2, rank=2), "rank"),
        (dict(num_replicas=2, rank=-1), "rank"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DistributedSampler(10, **kwargs)
    with pytest.raises(ValueError, match="epoch"):
        DistributedSampler(10, num_replicas=1, rank=0).set_epoch(-1)


def test_scaling_projection_follows_the_ring_allreduce_model():
    from fastconv.bench_dist import project

    # 100 MB of gradients, 1 s step of which 0.3 s forward, 10 Gb/s, 4 machines:
    # T = 2*3/4 * 100e6 / 1.25e9 = 0.12 s; no overlap 1/(1.12); overlap: the last 25 MiB bucket
    # (T_last = 1.5 * 26214400 / 1.25e9 = 0.0315 s) after a backward (0.7 s) that hides the rest.
    rows = project(1.0, 0.3, 100e6, machines=(4,), speeds_gbit=(10,))
    (r,) = rows
    assert r["allreduce_ms"] == pytest.approx(120.0, abs=0.05)
    assert r["efficiency_no_overlap"] == pytest.approx(1 / 1.12, abs=1e-3)
    assert r["efficiency_overlap"] == pytest.approx(
        1 / (0.3 + 0.7 + 1.5 * 26214400 / 1.25e9), abs=1e-3
    )
    # communication longer than backward: overlap can hide only backward's length
    (r,) = project(0.1, 0.05, 1e9, machines=(64,), speeds_gbit=(10,))
    t = 2 * 63 / 64 * 1e9 / 1.25e9
    assert r["efficiency_overlap"] == pytest.approx(0.1 / (0.05 + t), abs=1e-3)
    assert r["efficiency_overlap"] >= r["efficiency_no_overlap"]


def test_bench_dist_step_runs_under_mpiexec():
    exe = _mpiexec()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [
            exe,
            "-n",
            "2",
            sys.executable,
            "-m",
            "fastconv.bench_dist",
            "step",
            "--net",
            "lenet5",
            "--global-batch",
            "4",
            "--size",
            "32",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 ranks x" in r.stdout and "(2 images each)" in r.stdout, r.stdout


def _train_cli(args, cwd, ranks=None, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "fastconv", "train", *args]
    if ranks:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd, "--distributed"]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def _losses(stdout):
    return [line for line in stdout.splitlines() if line.startswith(("epoch", "test accuracy"))]


@pytest.mark.slow  # `fastconv train` twice: on two MPI ranks and in one process
def test_fastconv_train_distributed_follows_the_one_process_run(tmp_path):
    pytest.importorskip("sklearn")
    args = ["--model", "lenet5", "--epochs", "2", "--batch-size", "30", "--no-progress"]
    one = _train_cli(args, tmp_path)
    two = _train_cli(args + ["--checkpoint", "ck.npz", "--log", "m.json"], tmp_path, ranks=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert _losses(two.stdout) == _losses(one.stdout)  # the global batch's figures, rank 0 only
    assert len(_losses(two.stdout)) == 3 and "2 ranks" in two.stdout
    assert (tmp_path / "ck.npz").exists() and (tmp_path / "m.json").exists()
    # resumed on 2 ranks from the checkpoint the 2 ranks wrote, one more epoch
    more = _train_cli(
        args[:2] + ["--epochs", "3", "--batch-size", "30", "--no-progress", "--resume", "ck.npz"],
        tmp_path,
        ranks=2,
    )
    assert more.returncode == 0, more.stderr
    assert "epoch 3/3: loss" in more.stdout and "epoch 1/" not in more.stdout


def test_fastconv_train_distributed_checks_its_arguments(tmp_path):
    r = _train_cli(["--model", "lenet5", "--epochs", "1", "--batch-size", "31"], tmp_path, ranks=2)
    assert r.returncode != 0 and "--batch-size" in r.stderr and "2 ranks" in r.stderr
    r = _train_cli(["--model", "lenet5", "--epochs", "1", "--sync-bn"], tmp_path)
    assert r.returncode != 0 and "--sync-bn: needs --distributed" in r.stderr

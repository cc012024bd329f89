"""Run under ``mpiexec -n 2`` by tests/test_distributed.py: data-parallel training must equal
one process on the whole batch. Prints "ok <name>" per check; any failure raises (and, through
fastconv.distributed's abort hook, ends both ranks with a non-zero exit)."""

import os
import sys
import time

import numpy as np

import fastconv
import fastconv.distributed as dist
from fastconv import nn
from fastconv.autograd import manual_seed
from fastconv.nn import functional as F

comm = dist.init()
R, W = dist.rank(), dist.world_size()
assert W == 2, "run with mpiexec -n 2"
PER_RANK = 8


def net(batch_norm):
    layers = [nn.Conv2d(3, 8, 3, padding=1, dtype=np.float64)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(8, dtype=np.float64))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 12, 3, padding=1, dtype=np.float64)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(12, dtype=np.float64))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(12 * 4 * 4, 5, dtype=np.float64)]
    return nn.Sequential(*layers)


def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((PER_RANK * W, 3, 8, 8))
    y = rng.integers(0, 5, PER_RANK * W)
    return x, y


def train(model, x, y, steps=5):
    opt = fastconv.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(fastconv.Tensor(x)), y)
        loss.backward()
        opt.step()
    return model


def check_equal(batch_norm):
    x, y = data()
    manual_seed(100 + R)  # different initial weights per rank: DDP must broadcast rank 0's
    model = net(batch_norm)
    if batch_norm:
        model = dist.convert_sync_batchnorm(model)
    ddp = dist.DistributedDataParallel(model)
    mine = slice(R * PER_RANK, (R + 1) * PER_RANK)
    train(ddp, x[mine], y[mine])
    manual_seed(100)  # rank 0's initial weights, one process, the whole batch
    ref = train(net(batch_norm), x, y)
    got, want = model.state_dict(), ref.state_dict()
    assert list(got) == list(want)
    for k in want:
        err = np.max(np.abs(np.asarray(got[k], np.float64) - np.asarray(want[k], np.float64)))
        assert err <= 1e-10, f"{k}: {err}"
    other = comm.bcast(model.state_dict() if R == 1 else None, root=1)
    if R == 0:
        for k, v in other.items():
            assert np.array_equal(v, got[k]), f"ranks differ on {k}"
    print(f"ok equal batch_norm={batch_norm} rank={R}", flush=True)


def check_overlap():
    manual_seed(1)
    model = nn.Sequential(*[nn.Linear(64, 64, dtype=np.float64) for _ in range(6)])
    events = []
    for i, layer in enumerate(model):
        layer.register_full_backward_hook(
            lambda m, gi, go, i=i: events.append(("layer_done", i, time.perf_counter()))
        )
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=64 * 65 * 8 / 2**20, record_events=True)
    x = np.random.default_rng(R).standard_normal((4, 64))
    (ddp(fastconv.Tensor(x)) ** 2).sum().backward()
    timeline = sorted(events + ddp.events, key=lambda e: e[2])
    kinds = [(k, i) for k, i, _ in timeline]
    assert len(ddp.buckets) == 6, len(ddp.buckets)
    first_start = kinds.index(("bucket_started", 0))
    last_layer = kinds.index(("layer_done", 0))  # the first layer finishes backward last
    assert first_start < last_layer, kinds
    assert max(i for i, k in enumerate(kinds) if k[0] == "bucket_started") < kinds.index(
        ("bucket_done", 0)
    ), kinds
    print("ok overlap " + " ".join(f"{k}:{i}" for k, i in kinds), flush=True)


def check_no_sync():
    manual_seed(3)
    model = nn.Linear(6, 3, dtype=np.float64)
    ddp = dist.DistributedDataParallel(model)
    rng = np.random.default_rng(10 + R)
    a, b = rng.standard_normal((2, 5, 6))
    with ddp.no_sync():
        ddp(fastconv.Tensor(a)).sum().backward()
    local = model.weight.grad.copy()
    mine_then = comm.allgather(local)
    assert not np.array_equal(mine_then[0], mine_then[1])  # not averaged inside no_sync
    ddp(fastconv.Tensor(b)).sum().backward()
    expect_local = local + np.ones((5, 3)).T @ b  # d/dW of sum(b W^T + c)
    expect = sum(comm.allgather(expect_local)) / W
    assert np.max(np.abs(model.weight.grad - expect)) < 1e-12
    print("ok no_sync", flush=True)


def check_collectives():
    assert dist.broadcast_object({"r": R}, src=1) == {"r": 1}
    a = np.full(3, float(R + 1))
    assert np.array_equal(dist.all_reduce(a, "mean"), np.full(3, 1.5))
    dist.barrier()
    path = os.path.join(sys.argv[1], "ck.npz")
    model = nn.Linear(2, 2)
    opt = fastconv.optim.SGD(model.parameters(), lr=0.1)
    ddp = dist.DistributedDataParallel(model)
    dist.save_checkpoint(path, ddp, opt, None, 1, 0, np.random.default_rng(0))
    epoch, step, _ = dist.load_checkpoint(path, ddp, opt, None)
    assert (epoch, step) == (1, 0)
    print("ok collectives", flush=True)


def check_unused_on_one_rank():
    """Rank 1 skips a layer (data-dependent control flow): its bucket still joins the allreduce,
    in the same order as on rank 0, with zeros; the averaged gradients are the mean of each
    rank's own."""
    manual_seed(5)
    a, b = nn.Linear(4, 4, dtype=np.float64), nn.Linear(4, 4, dtype=np.float64)
    model = nn.ModuleList([a, b])
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=4 * 5 * 8 / 2**20)
    assert len(ddp.buckets) == 2
    x = np.random.default_rng(20 + R).standard_normal((3, 4))

    def loss_of(m):
        h = m[0](fastconv.Tensor(x))
        return (m[1](h) if R == 0 else h).sum()

    loss_of(model).backward()
    got = [p.grad.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    with ddp.no_sync():  # this rank's own gradients, for the expected mean
        loss_of(model).backward()
    own = [np.zeros_like(p.data) if p.grad is None else p.grad for p in model.parameters()]
    every = comm.allgather(own)
    for k, g in enumerate(got):
        want = sum(e[k] for e in every) / W
        assert np.max(np.abs(g - want)) < 1e-12, k
    print("ok unused", flush=True)


check_equal(False)
check_equal(True)
check_overlap()
check_no_sync()
check_collectives()
check_unused_on_one_rank()

"""Scaling-out figures for the README's "Scaling out" section.

``mpiexec -n 2 python -m fastconv.bench_dist allreduce`` : allreduce time and bandwidth of
    float32 buffers from 1 MB to 256 MB between the ranks.
``mpiexec -n P python -m fastconv.bench_dist step --net resnet18 --global-batch 16 --threads T``:
    the time of one data-parallel SGD step (forward, loss, backward with the bucketed gradient
    allreduce, update) at a fixed global batch split over the P ranks, T threads each.
``python -m fastconv.bench_dist model``: one process; measures a training step of ResNet-50 and
    VGG-16 here (forward alone and the whole step) and projects the efficiency of data-parallel
    training on 4, 16 and 64 machines from it (ring allreduce, see :func:`project`).
Every time is the best of ``--repeat`` runs after a warm-up; rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

SPEEDS_GBIT = (10, 25, 100)
MACHINES = (4, 16, 64)


def _best(fn, repeat, comm=None):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        if comm is not None:
            comm.Barrier()
        t = time.perf_counter()
        fn()
        t = time.perf_counter() - t
        if comm is not None:  # a collective step takes as long as its slowest rank
            t = comm.allreduce(t, op=_mpi().MAX)
        best = min(best, t)
    return best


def _mpi():
    from mpi4py import MPI

    return MPI


def bench_allreduce(sizes_mb=(1, 4, 16, 64, 256), repeat=5):
    """Rows {"mb", "ms", "algbw_gbs", "busbw_gbs"}: algbw = bytes / time; busbw = algbw x
    2(p-1)/p, the bytes each rank's link carries in a ring allreduce (NCCL's convention)."""
    from . import distributed as dist

    comm = dist.init()
    MPI, p = _mpi(), comm.Get_size()
    rows = []
    for mb in sizes_mb:
        buf = np.ones(int(mb * 2**20) // 4, np.float32)
        t = _best(lambda: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM), repeat, comm)
        alg = buf.nbytes / t / 1e9
        rows.append(
            {
                "mb": mb,
                "ms": round(t * 1e3, 3),
                "algbw_gbs": round(alg, 3),
                "busbw_gbs": round(alg * 2 * (p - 1) / p, 3),
            }
        )
    return rows


def _step_fn(net, batch, size, seed=0, ddp=False):
    from . import autograd, models, optim
    from ._model_inputs import model_input
    from .nn import functional as F

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, model_input(net).channels, size, size), dtype=np.float32)
    autograd.manual_seed(seed)
    model = models.get_model(net)
    with autograd.no_grad():
        classes = model(autograd.Tensor(x[:1])).shape[1]
    y = rng.integers(0, classes, batch)
    if ddp:
        from . import distributed as dist

        model = dist.DistributedDataParallel(model)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    xt = autograd.Tensor(x)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(xt), y).backward()
        opt.step()

    def forward():
        with autograd.no_grad():
            model(xt)

    return step, forward, model


def bench_step(net, global_batch, size, repeat):
    """The data-parallel step time: {"ranks", "threads", "per_rank_batch", "ms"}."""
    from . import distributed as dist
    from . import get_num_threads

    comm = dist.init()
    p = comm.Get_size()
    if global_batch % p:
        raise SystemExit(f"--global-batch {global_batch} does not split over {p} ranks")
    step, _, _ = _step_fn(net, global_batch // p, size, seed=comm.Get_rank(), ddp=True)
    t = _best(step, repeat, comm)
    return {
        "net": net,
        "ranks": p,
        "threads": get_num_threads(),
        "global_batch": global_batch,
        "per_rank_batch": global_batch // p,
        "size": size,
        "ms": round(t * 1e3, 1),
    }


def project(
    step_s,
    forward_s,
    grad_bytes,
    machines=MACHINES,
    speeds_gbit=SPEEDS_GBIT,
    bucket_bytes=25 * 2**20,
):
    """Projected weak-scaling efficiency (compute time / step time, per-machine batch fixed).

    Ring allreduce of S bytes over p machines at B bytes/s takes T = 2(p-1)/p * S/B (latency and
    the reduction arithmetic ignored; one link per machine, full duplex). Without overlap the step
    is compute + T. With overlap (buckets start during backward) it is forward + max(backward,
    T - T_last) + T_last, where T_last is the last bucket's share (the first layers' gradients,
    ready only when backward ends), at most bucket_bytes. backward = step - forward (it includes
    the optimizer update, a small share)."""
    rows = []
    backward_s = step_s - forward_s
    for gbit in speeds_gbit:
        bw = gbit * 1e9 / 8
        for p in machines:
            comm = 2 * (p - 1) / p * grad_bytes / bw
            last = 2 * (p - 1) / p * min(grad_bytes, bucket_bytes) / bw
            plain = step_s + comm
            overlapped = forward_s + max(backward_s, comm - last) + last
            rows.append(
                {
                    "gbit": gbit,
                    "machines": p,
                    "allreduce_ms": round(comm * 1e3, 1),
                    "efficiency_no_overlap": round(step_s / plain, 3),
                    "efficiency_overlap": round(step_s / overlapped, 3),
                }
            )
    return rows


def bench_model(nets, batch, size, repeat):
    """Measures each net's step and forward here and returns its projection rows."""
    out = {}
    for net in nets:
        step, forward, model = _step_fn(net, batch, size)
        t_step = _best(step, repeat)
        t_fwd = _best(forward, repeat)
        grad_bytes = sum(p.data.nbytes for p in model.parameters())
        out[net] = {
            "batch": batch,
            "size": size,
            "step_ms": round(t_step * 1e3, 1),
            "forward_ms": round(t_fwd * 1e3, 1),
            "grad_mb": round(grad_bytes / 2**20, 1),
            "projection": project(t_step, t_fwd, grad_bytes),
        }
    return out


def _table(what, result):
    if what == "allreduce":
        lines = ["    MB        ms   algbw GB/s   busbw GB/s"]
        lines += [
            f"{r['mb']:6g} {r['ms']:9.2f} {r['algbw_gbs']:12.2f} {r['busbw_gbs']:12.2f}"
            for r in result
        ]
        return "\n".join(lines)
    if what == "step":
        r = result
        return (
            f"{r['net']} step, global batch {r['global_batch']} at {r['size']}x{r['size']}: "
            f"{r['ranks']} ranks x {r['threads']} threads ({r['per_rank_batch']} images "
            f"each): {r['ms']:.1f} ms"
        )
    lines = []
    for net, r in result.items():
        lines.append(
            f"{net}: batch {r['batch']} at {r['size']}x{r['size']}: step {r['step_ms']} "
            f"ms (forward {r['forward_ms']} ms), gradients {r['grad_mb']} MB"
        )
        lines.append("  Gb/s  machines  allreduce ms  efficiency (no overlap)  (overlap)")
        lines += [
            f"  {p['gbit']:4d}  {p['machines']:8d}  {p['allreduce_ms']:12.1f}  "
            f"{p['efficiency_no_overlap']:23.3f}  {p['efficiency_overlap']:9.3f}"
            for p in r["projection"]
        ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m fastconv.bench_dist",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("allreduce", help="allreduce bandwidth between the ranks")
    a.add_argument("--sizes-mb", default="1,4,16,64,256")
    s = sub.add_parser("step", help="one data-parallel training step")
    s.add_argument("--net", default="resnet18")
    s.add_argument("--global-batch", type=int, default=16)
    m = sub.add_parser("model", help="projected scaling efficiency from steps measured here")
    m.add_argument("--nets", default="resnet50,vgg16")
    m.add_argument("--batch", type=int, default=16, help="per-machine batch")
    for p in (a, s, m):
        p.add_argument("--repeat", type=int, default=3)
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--json", metavar="FILE", default=None)
    for p in (s, m):
        p.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    if args.threads is not None:
        from . import set_num_threads

        set_num_threads(args.threads)
    if args.what == "allreduce":
        result = bench_allreduce(tuple(float(v) for v in args.sizes_mb.split(",")), args.repeat)
    elif args.what == "step":
        result = bench_step(args.net, args.global_batch, args.size, args.repeat)
    else:
        result = bench_model(args.nets.split(","), args.batch, args.size, args.repeat)
    from . import distributed as dist

    if dist.rank() == 0:
        print(_table(args.what, result), flush=True)
        text = json.dumps(result, indent=1)
        if args.json:
            from ._io import atomic_write

            with atomic_write(args.json, binary=False) as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whole networks through fastconv's autograd (issue 4) next to PyTorch CPU, in one run.

    python bench/bench_networks.py [--threads 2] [--repeats 10] [--profile]

Times, float32, same threads for both libraries:
  * one LeNet-5 training step, batch 64, 32x32: zero_grad, forward, cross-entropy, backward,
    SGD-momentum step;
  * one ResNet-18 forward + backward, batch 4, 112x112 (train mode: batch-norm batch statistics),
    cross-entropy on 1000 classes.
PyTorch runs the same architecture built from torch.nn (fastconv/_torch_models.py, torchvision's
layout) with the same weights. Each row is the median over the repeats (best in parentheses)
and the ratio of medians. With --profile, cProfile splits fastconv's time into the kernels
(fastconv._core: convolution, pooling, the linear layers' GEMM) and the rest (NumPy element-wise
work in batch norm, activations, losses, the tape's Python), listing the top items.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time

import numpy as np
import torch

import fastconv
from fastconv import models, optim
from fastconv._torch_models import torch_lenet5, torch_resnet
from fastconv.autograd import Tensor
from fastconv.nn import functional as F


def timed(fn, repeats):
    fn()  # warm up: allocator, thread team, caches
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def lenet_step(batch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    ours, theirs = models.lenet5(), torch_lenet5()
    ours.load_state_dict(theirs.state_dict())
    opt_o = optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
    opt_t = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step_ours():
        opt_o.zero_grad()
        F.cross_entropy(ours(Tensor(x)), y).backward()
        opt_o.step()

    def step_theirs():
        opt_t.zero_grad()
        torch.nn.functional.cross_entropy(theirs(xt), yt).backward()
        opt_t.step()

    return step_ours, step_theirs


def resnet_fwd_bwd(batch, size):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 1000, batch)
    ours, theirs = models.resnet18(), torch_resnet("basic", [2, 2, 2, 2])
    ours.load_state_dict(theirs.state_dict())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def ours_fn():
        ours.zero_grad()
        F.cross_entropy(ours(Tensor(x)), y).backward()

    def theirs_fn():
        theirs.zero_grad()
        torch.nn.functional.cross_entropy(theirs(xt), yt).backward()

    return ours_fn, theirs_fn


def _op_names():
    """(file, first line) -> "Class.method" for every autograd Function, to label profile rows."""
    from fastconv import autograd
    from fastconv.nn import functional as nnf

    names = {}
    for module in (autograd, nnf):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, autograd.Function):
                for meth in ("forward", "backward"):
                    code = getattr(getattr(cls, meth), "__code__", None)
                    if code is not None and code.co_filename == module.__file__:
                        names[(code.co_filename, code.co_firstlineno)] = f"{cls.__name__}.{meth}"
    return names


def profile(fn, repeats, top=14):
    """Split fn's time: fastconv._core kernels (convolution, pooling, the linear layers' GEMM) and
    everything else."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeats):
        fn()
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())  # tottime over all functions = wall in the profiler
    ops = _op_names()
    kernels, rest = "kernels (fastconv._core)", "NumPy element-wise + Python glue"
    groups = dict.fromkeys((kernels, rest), 0.0)
    items = []
    for (filename, line, name), (_, _, tottime, _, _) in stats.items():
        label = ops.get((filename, line)) or (
            f"{os.path.basename(filename)}:{line}({name})" if line else name
        )
        group = rest
        if "fastconv._core" in name:
            group, label = (
                kernels,
                name.replace("<built-in method fastconv._core.", "_core.").rstrip(">"),
            )
        groups[group] += tottime
        items.append((tottime, label))
    print(f"    cProfile over {repeats} runs: {total / repeats * 1e3:.1f} ms per run")
    for g, t in groups.items():
        print(f"      {g:<36} {t / repeats * 1e3:8.1f} ms  {100 * t / total:5.1f}%")
    print(
        "      top items (time per run inside each; a Function's row includes the NumPy work"
        " it runs):"
    )
    for t, label in sorted(items, reverse=True)[:top]:
        print(f"        {t / repeats * 1e3:8.2f} ms  {label}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    fastconv.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(
        f"threads: fastconv {fastconv.get_num_threads()}, torch {torch.get_num_threads()}; "
        f"torch {torch.__version__}, numpy {np.__version__}; ISA {fastconv.isa()}"
    )
    cases = [
        ("LeNet-5 training step, batch 64, 32x32", lenet_step(64)),
        ("ResNet-18 forward+backward, batch 4, 112x112", resnet_fwd_bwd(4, 112)),
    ]
    for title, (ours, theirs) in cases:
        mo, bo = timed(ours, args.repeats)
        mt, bt = timed(theirs, args.repeats)
        print(
            f"{title}:\n    fastconv {mo * 1e3:8.2f} ms ({bo * 1e3:.2f})   "
            f"torch {mt * 1e3:8.2f} ms ({bt * 1e3:.2f})   fastconv/torch {mo / mt:5.2f}x"
        )
        if args.profile:
            profile(ours, args.repeats)


if __name__ == "__main__":
    main()

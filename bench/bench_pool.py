"""Max-pool speed (issue 3): fastconv vs PyTorch CPU vs a plain memcpy, in one run.

    python bench/bench_pool.py [--threads 2] [--repeats 40] [--batch 8]

For the AlexNet, VGG and GoogLeNet pooling layers (float32, batch 8) it times max-pool forward
with switches and max-pool backward through the switches, for fastconv (the public functions,
output allocation included) and for PyTorch (aten::max_pool2d_with_indices and
aten::max_pool2d_with_indices_backward), and np.copyto of a buffer of the same number of
bytes. GB/s counts the bytes each op must move once: forward x + y + indices, backward
grad_out + indices + grad_x (a memcpy of B bytes reads B and writes B).

The three are timed in turn, in a shuffled order, every repeat, so that the load of a shared
machine hits them alike; each column is the median over the repeats with the best in
parentheses, and the ratios are of medians (of bests in parentheses).

OpenMP threads wait passively here unless OMP_WAIT_POLICY is set (fastconv and PyTorch share
one libgomp, so the policy is the same for both). On a busy 2-core machine libgomp's default
spin-waiting makes the 2-thread team of either library wait for a scheduler tick (4 ms) on
most calls, whatever the kernel; OMP_WAIT_POLICY=ACTIVE shows that.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before libgomp loads (fastconv, torch)

import argparse
import random
import statistics
import time

import numpy as np

import fastconv

LAYERS = [  # name, (C, H, W), kernel, stride, padding
    ("AlexNet", (64, 55, 55), 3, 2, 0),
    ("VGG", (64, 112, 112), 2, 2, 0),
    ("GoogLeNet", (192, 56, 56), 3, 2, 1),
]


def interleaved(fns, repeats, seed=0):
    """Per function: the list of wall times over `repeats` rounds, run in a shuffled order."""
    order = random.Random(seed)
    for f in fns:
        f()  # warm up: caches, allocator, thread team
    times = [[] for _ in fns]
    for _ in range(repeats):
        idx = list(range(len(fns)))
        order.shuffle(idx)
        for i in idx:
            t0 = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    fastconv.set_num_threads(args.threads)
    aten = torch.ops.aten
    rng = np.random.default_rng(0)
    print(
        f"fastconv {fastconv.__version__} isa={fastconv.isa()} "
        f"threads={fastconv.get_num_threads()}; "
        f"torch {torch.__version__} threads={torch.get_num_threads()}; "
        f"batch {args.batch}, float32; "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; median (best) of {args.repeats}"
    )
    head = (
        f"{'layer':<10} {'op':<8} {'MB':>5}  {'fastconv GB/s':>14} {'torch GB/s':>14} "
        f"{'memcpy GB/s':>14}  {'fc/torch':>14} {'fc/memcpy':>13}"
    )
    print(head)
    print("-" * len(head))
    for name, (c, h, w), k, s, p in LAYERS:
        x = rng.standard_normal((args.batch, c, h, w), dtype=np.float32)
        tx = torch.from_numpy(x)
        y, idx = fastconv.max_pool2d(x, k, s, p, return_indices=True)
        ty, tidx = aten.max_pool2d_with_indices(tx, [k, k], [s, s], [p, p], [1, 1], False)
        assert np.array_equal(y, ty.numpy()) and np.array_equal(idx, tidx.numpy())
        g = rng.standard_normal(y.shape, dtype=np.float32)
        tg = torch.from_numpy(g)
        gx = fastconv.max_pool2d_backward(g, idx, x.shape)
        tgx = aten.max_pool2d_with_indices_backward(
            tg, tx, [k, k], [s, s], [p, p], [1, 1], False, tidx
        )
        np.testing.assert_allclose(gx, tgx.numpy(), rtol=1e-6, atol=1e-6)

        ops = {
            "forward": (
                x.nbytes + y.nbytes + idx.nbytes,
                lambda: fastconv.max_pool2d(x, k, s, p, return_indices=True),
                lambda: aten.max_pool2d_with_indices(tx, [k, k], [s, s], [p, p], [1, 1], False),
            ),
            "backward": (
                g.nbytes + idx.nbytes + x.nbytes,
                lambda: fastconv.max_pool2d_backward(g, idx, x.shape),
                lambda: aten.max_pool2d_with_indices_backward(
                    tg, tx, [k, k], [s, s], [p, p], [1, 1], False, tidx
                ),
            ),
        }
        for op, (nbytes, f_fc, f_torch) in ops.items():
            src = np.ones(nbytes, dtype=np.uint8)
            dst = np.empty_like(src)
            t_fc, t_th, t_mc = interleaved(
                [f_fc, f_torch, lambda: np.copyto(dst, src)], args.repeats
            )
            med = [statistics.median(t) for t in (t_fc, t_th, t_mc)]
            best = [min(t) for t in (t_fc, t_th, t_mc)]
            gbs = [f"{nbytes / m / 1e9:5.1f} ({nbytes / b / 1e9:5.1f})" for m, b in zip(med, best)]
            print(
                f"{name:<10} {op:<8} {nbytes / 1e6:5.1f}  {gbs[0]:>14} {gbs[1]:>14} {gbs[2]:>14}  "
                f"{med[1] / med[0]:5.1f}x ({best[1] / best[0]:5.1f}x) "
                f"{med[2] / med[0]:4.2f}x ({best[2] / best[0]:4.2f}x)"
            )


if __name__ == "__main__":
    main()

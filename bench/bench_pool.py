"""Max-pool speed (issue 3): fastconv vs PyTorch CPU vs a plain memcpy, in one run.

    python bench/bench_pool.py [--threads 2] [--repeats 30] [--batch 8]

For the AlexNet, VGG and GoogLeNet pooling layers (float32, batch 8) it times max-pool forward
with switches and max-pool backward through the switches, for fastconv and for PyTorch (the
aten kernels max_pool2d_with_indices and max_pool2d_with_indices_backward), and np.copyto of a
buffer of the same number of bytes. GB/s counts the bytes each op must move once:
forward x + y + indices, backward grad_out + indices + grad_x. Each row reports the median
over the repeats (best in parentheses) and the ratios of medians. Ratios measured in one run
are the result; absolute numbers drift on these shared machines.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastconv

LAYERS = [  # name, (C, H, W), kernel, stride, padding
    ("AlexNet", (64, 55, 55), 3, 2, 0),
    ("VGG", (64, 112, 112), 2, 2, 0),
    ("GoogLeNet", (192, 56, 56), 3, 2, 1),
]


def timed(fn, repeats):
    fn()  # warm up: caches, allocator, thread team
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def rate(nbytes, t):
    return nbytes / t / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    fastconv.set_num_threads(args.threads)
    aten = torch.ops.aten
    rng = np.random.default_rng(0)
    print(f"fastconv {fastconv.__version__} isa={fastconv.isa()} threads={args.threads}; "
          f"torch {torch.__version__} threads={torch.get_num_threads()}; "
          f"median of {args.repeats} (best)")
    head = (f"{'layer':<10} {'op':<9} {'MB':>6}  {'fastconv GB/s':>15} {'torch GB/s':>15} "
            f"{'memcpy GB/s':>15}  {'fc/torch':>8} {'fc/memcpy':>9}")
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

        ops = {
            "forward": (
                x.nbytes + y.nbytes + idx.nbytes,
                lambda: fastconv.max_pool2d(x, k, s, p, return_indices=True),
                lambda: aten.max_pool2d_with_indices(tx, [k, k], [s, s], [p, p], [1, 1], False),
            ),
            "backward": (
                g.nbytes + idx.nbytes + x.nbytes,
                lambda: fastconv.max_pool2d_backward(g, idx, x.shape),
                lambda: aten.max_pool2d_with_indices_backward(tg, tx, [k, k], [s, s], [p, p],
                                                              [1, 1], False, tidx),
            ),
        }
        for op, (nbytes, f_fc, f_torch) in ops.items():
            src = np.ones(nbytes, dtype=np.uint8)
            dst = np.empty_like(src)
            t_fc = timed(f_fc, args.repeats)
            t_th = timed(f_torch, args.repeats)
            t_mc = timed(lambda: np.copyto(dst, src), args.repeats)
            r = [rate(nbytes, t) for t in t_fc + t_th + t_mc]
            print(f"{name:<10} {op:<9} {nbytes / 1e6:6.1f}  {r[0]:6.1f} ({r[1]:6.1f}) "
                  f"{r[2]:6.1f} ({r[3]:6.1f}) {r[4]:6.1f} ({r[5]:6.1f})  "
                  f"{t_th[0] / t_fc[0]:7.1f}x {t_mc[0] / t_fc[0]:8.2f}x")


if __name__ == "__main__":
    main()

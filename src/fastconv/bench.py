"""Benchmarks in the convnet-benchmarks tradition, side by side with PyTorch CPU in one run.

Speed is reported as GFLOP/s (2*N*K*(C/g)*kh*kw*Ho*Wo per convolution), as a ratio to
PyTorch measured in the same process, and as a fraction of the SGEMM rate measured at the
start of the run (the machine's practical ceiling). Times are medians over repeats.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from importlib import resources

import numpy as np

from . import functional as F

DIRECTIONS = ("fwd", "bwd_data", "bwd_weight")


def load_suite():
    """The convnet-benchmarks shapes (shipped with the package)."""
    with resources.files("fastconv").joinpath("suites/convnet_benchmarks.json").open() as f:
        return json.load(f)


def conv_flops(x_shape, w_shape, out_shape):
    n, k = out_shape[0], out_shape[1]
    _, cg, kh, kw = w_shape
    return 2.0 * n * k * cg * kh * kw * out_shape[2] * out_shape[3]


def timeit(fn, repeat, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sgemm_rate(threads, size=2048, repeat=5):
    """GFLOP/s of a float32 [size x size] x [size x size] GEMM with NumPy's OpenBLAS."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is optional
        threadpool_limits = None
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    if threadpool_limits is not None:
        with threadpool_limits(limits=threads, user_api="blas"):
            t = timeit(lambda: np.matmul(a, b, out=c), repeat)
    else:
        t = timeit(lambda: np.matmul(a, b, out=c), repeat)
    return 2.0 * size ** 3 / t / 1e9


def _torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def bench_conv(name, x_shape, w_shape, stride, padding, algos, torch, repeat, dtype=np.float32):
    """Rows {name, lib, dir, ms, gflops} for each algorithm and PyTorch on one layer."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=dtype)
    w = rng.standard_normal(w_shape, dtype=dtype) * 0.01
    y = F.conv2d(x, w, stride=stride, padding=padding)
    dy = rng.standard_normal(y.shape, dtype=dtype)
    flops = conv_flops(x_shape, w_shape, y.shape)
    rows = []

    def add(lib, direction, seconds):
        rows.append({"layer": name, "lib": lib, "dir": direction, "ms": seconds * 1e3,
                     "gflops": flops / seconds / 1e9})

    for algo in algos:
        if algo not in F.algorithms(x_shape, w_shape, stride=stride, padding=padding):
            continue
        kw = dict(stride=stride, padding=padding, algo=algo)
        add(algo, "fwd", timeit(lambda: F.conv2d(x, w, **kw), repeat))
        add(algo, "bwd_data", timeit(lambda: F.conv2d_backward(dy, x, w, needs=(True, False, False), **kw), repeat))
        add(algo, "bwd_weight", timeit(lambda: F.conv2d_backward(dy, x, w, needs=(False, True, False), **kw), repeat))
    if torch is not None:
        tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
        conv = torch.nn.functional.conv2d
        bwd = torch.ops.aten.convolution_backward
        st, pd = (stride, stride), (padding, padding)
        with torch.no_grad():
            add("torch", "fwd", timeit(lambda: conv(tx, tw, None, st, pd), repeat))
            add("torch", "bwd_data", timeit(lambda: bwd(tdy, tx, tw, None, st, pd, (1, 1), False,
                                                        (0, 0), 1, (True, False, False)), repeat))
            add("torch", "bwd_weight", timeit(lambda: bwd(tdy, tx, tw, None, st, pd, (1, 1), False,
                                                          (0, 0), 1, (False, True, False)), repeat))
    return rows


def print_table(rows, peak, out=sys.stdout):
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    torch_ms = {(r["layer"], r["dir"]): r["ms"] for r in rows if r["lib"] == "torch"}
    out.write(f"{'layer':<8}{'lib':<11}{'dir':<12}{'ms':>10}{'GFLOP/s':>10}{'%sgemm':>8}{'vs torch':>10}\n")
    for layer in layers:
        for r in (r for r in rows if r["layer"] == layer):
            t = torch_ms.get((layer, r["dir"]))
            ratio = f"{t / r['ms']:.2f}x" if t else "-"
            out.write(f"{layer:<8}{r['lib']:<11}{r['dir']:<12}{r['ms']:>10.2f}{r['gflops']:>10.1f}"
                      f"{100 * r['gflops'] / peak:>7.0f}%{ratio:>10}\n")


def run_layers(batch, threads, repeat, algos, compare_torch=True, out=sys.stdout):
    F.set_num_threads(threads)
    torch = _torch(threads) if compare_torch else None
    peak = sgemm_rate(threads)
    out.write(f"fastconv {F.isa()} | threads {threads} | batch {batch} | "
              f"SGEMM (NumPy OpenBLAS, 2048^3, {threads} threads): {peak:.1f} GFLOP/s\n")
    suite = load_suite()["layers"]
    rows = []
    for name, spec in suite.items():
        n, c, h, w = spec["input"]
        cin, cout, k, s, p = spec["conv"]
        rows += bench_conv(name, (batch, c, h, w), (cout, cin, k, k), s, p, algos, torch, repeat)
    print_table(rows, peak, out)
    return {"sgemm_gflops": peak, "rows": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fastconv bench", description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--algos", default="im2col,direct,gemm1x1,auto")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    res = run_layers(args.batch, args.threads, args.repeat, args.algos.split(","),
                     compare_torch=not args.no_torch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

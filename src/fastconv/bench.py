"""``fastconv bench``: the convnet-benchmarks suite, side by side with PyTorch CPU in one run.

Suites: ``layers`` (L1-L5), ``shapes`` (ResNet 1x1, dilated and depthwise 3x3), ``nets``
(AlexNet-OWT, OverFeat-fast, VGG-A, GoogLeNet-v1 through fastconv.nn, forward and
forward+backward; and a ResNet-18 and a ResNet-50 SGD training step, bench_train.py), ``pool``
(the nets' pooling layers), ``all``.
Speed is reported as a ratio to PyTorch measured in the same process, and as GFLOP/s
(2*N*K*(C/g)*kh*kw*Ho*Wo per convolution) against the SGEMM rate measured at the start of the
run. A NumPy im2col baseline is always available. The libraries take turns over ``--repeat``
rounds, each timed call straight after an untimed one (bench.time_rounds, as ``bench auto`` and
``bench infer`` time theirs), and each reports its best round: on a shared machine a slow spell
then falls on every library of a case alike. How much each figure moved (slowest round over
best) is in the JSON rows ("spread") and, as a median, under the tables.
For Winograd and FFT, which do less arithmetic, GFLOP/s is the direct convolution's count over
the time taken (effective GFLOP/s, as NNPACK reports), so it can pass the SGEMM rate. The
tables name the algorithm ``auto`` chose for each layer and direction; ``fastconv bench auto``
(bench_auto.py) times every algorithm against that choice.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from importlib import resources

import numpy as np

from . import functional as F
from ._cliargs import BEST_OF_ROUNDS, add_run_options, comma_list, fail, int_at_least
from ._io import atomic_write, save_figure
from .bench_train import TRAIN_NETS, bench_train_step
from .models import MODELS

SUITES = ("layers", "shapes", "nets", "pool")
COMPARE = ("torch", "numpy")  # what --compare can name
CONV_DIRS = ("fwd", "bwd_data", "bwd_weight")


def load_suite():
    """The convnet-benchmarks shapes (shipped with the package)."""
    with resources.files("fastconv").joinpath("suites/convnet_benchmarks.json").open() as f:
        return json.load(f)


def timeit(fn, repeat, warmup=1, min_warm_seconds=0.25):
    """Median wall time of fn() over `repeat` runs, after at least `warmup` runs and
    `min_warm_seconds` of them (the previous library's threads, e.g. NumPy's spinning OpenBLAS
    pool, must have gone quiet before anything is timed)."""
    t_end = time.perf_counter() + min_warm_seconds
    for i in range(10**6):
        fn()
        if i + 1 >= warmup and time.perf_counter() >= t_end:
            break
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


#: Seconds of untimed calls before a timed call from another library than the previous one
#: (time_rounds).
SWITCH_WARM_S = 0.03


def core_probe(seconds=0.02):
    """A callable giving a cache line's round trip in ns between the first two CPUs this
    process may run on (``fastconv._core.core_round_trip``), or None with fewer than two CPUs or
    where threads cannot be pinned. On the 2-vCPU VMs the host moves the vCPUs between cores
    that share an L3 (tens of ns) and cores that do not (hundreds), and plans lose more than
    their peers in the second state (ARCHITECTURE.md, "How the benchmarks measure")."""
    import os

    from . import _core

    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # (no affinity masks on this platform)
        return None
    if len(cpus) < 2:
        return None
    try:
        _core.core_round_trip(cpus[0], cpus[1], seconds)
    except (ValueError, MemoryError):  # (FC_EUNSUPPORTED, FC_EINVAL, FC_ENOMEM)
        return None
    return lambda: _core.core_round_trip(cpus[0], cpus[1], seconds)


def probe_at_best(round_times, probes):
    """The probe's figure before the round of the best of round_times (one contender's times
    from time_rounds, with its probes), or None without probes."""
    if not probes or not round_times:
        return None
    return probes[round_times.index(min(round_times))]


def time_rounds(
    contenders, repeat, warm=None, keep=None, drop_beyond=None, probe=None, probes=None
):
    """Seconds per round for each contender: {name: (fn, library)}, in order. `repeat` rounds
    time every contender once, in order, each timed call straight after untimed ones of the
    same contender: one, or where the library differs from the previous call's, as many as take
    SWITCH_WARM_S. The other library's OpenMP threads spin-wait a while after its call and
    would share the cores with the timed call; and a pause to let them stop is worse: a core
    that idled runs slow for a while (after 50 ms of sleep and two untimed calls, a 1 ms GEMM
    measured up to 1.3x slower than the same code timed next).

    With drop_beyond, a contender not in `keep` whose first round took more than drop_beyond
    times the quickest first round is timed in that round only (a direct weight gradient or a
    small FFT, 10-100x the fastest, would otherwise take most of a long run).

    With probe (core_probe's callable), its figure before each round is appended to probes."""
    warm = SWITCH_WARM_S if warm is None else warm
    times = {name: [] for name in contenders}
    last = None
    for r in range(repeat):
        if r == 1 and drop_beyond is not None:
            quickest = min(t[0] for t in times.values())
            contenders = {
                name: c
                for name, c in contenders.items()
                if name in (keep or ()) or times[name][0] <= drop_beyond * quickest
            }
        if probe is not None:
            probes.append(probe())
            last = None  # (the probe pinned this thread for a moment: warm up again)
        for name, (fn, lib) in contenders.items():
            t_end = time.perf_counter() + (warm if lib != last else 0.0)
            fn()
            while time.perf_counter() < t_end:
                fn()
            last = lib
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def best_rounds(fns, repeat, timer=None):
    """{name: fn} timed in `repeat` interleaved rounds (time_rounds; `timer` takes its place in
    tests): {name: (best seconds, slowest round over best)}. A name "fastconv:<algo>" runs on
    fastconv's threads, so it is the same library as "fastconv" (no switch warm-up between)."""
    contenders = {name: (fn, name.split(":", 1)[0]) for name, fn in fns.items()}
    times = (timer or time_rounds)(contenders, repeat)
    return {name: (min(v), max(v) / min(v)) for name, v in times.items()}


def timed_rows(runs, work, repeat, tick, suite, case, unit="gflops", extra=None, timer=None):
    """Times runs ({lib: {direction: fn}}) direction by direction, the libraries taking turns
    (best_rounds), ticking once per library and direction. One row per (library, direction),
    libraries outer: {"suite", "case", "lib", "dir", "ms" (the best round), unit: work[direction]
    (FLOPs or bytes) per second / 1e9, "spread"}, plus extra(lib, direction) if given."""
    timed = {}
    for d in work:
        timed[d] = best_rounds({lib: fns[d] for lib, fns in runs.items()}, repeat, timer)
        for _ in runs:
            tick()
    rows = []
    for lib in runs:
        for d, w in work.items():
            t, spread = timed[d][lib]
            row = {"suite": suite, "case": case, "lib": lib, "dir": d, "ms": t * 1e3}
            row.update({unit: w / t / 1e9, "spread": spread}, **(extra(lib, d) if extra else {}))
            rows.append(row)
    return rows


def spread_line(rows, repeat):
    """How much the figures moved: per library, the median over the rows of the slowest round
    over the best (rows without a spread, e.g. the memcpy reference, left out)."""
    libs = list(dict.fromkeys(r["lib"] for r in rows if "spread" in r))
    if not libs:
        return ""
    medians = {
        lib: statistics.median(r["spread"] for r in rows if r["lib"] == lib and "spread" in r)
        for lib in libs
    }
    parts = ", ".join(f"{lib} {m:.2f}x" for lib, m in medians.items())
    return (
        f"best of {repeat} interleaved rounds; slowest round over best, median over the rows: "
        f"{parts}\n"
    )


def sgemm_rate(threads, size=2048, repeat=5):
    """GFLOP/s of a float32 size^3 GEMM through NumPy's OpenBLAS on `threads` threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    try:
        from threadpoolctl import threadpool_limits

        ctx = threadpool_limits(limits=threads, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl is optional
        import contextlib

        ctx = contextlib.nullcontext()
    with ctx:
        t = timeit(lambda: np.matmul(a, b, out=c), repeat)
    return 2.0 * size**3 / t / 1e9


def import_torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


# ---------------------------------------------------------------------------------------------
# the NumPy im2col baseline (what CS231n-style code does without fastconv)


def _np_windows(xp, kh, kw, s):
    """[N, C, Ho, Wo, kh, kw] strided view of a padded input."""
    v = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return v[:, :, ::s, ::s]


def np_conv2d(x, w, s, p):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = _np_windows(xp, w.shape[2], w.shape[3], s)
    return np.einsum("nchwij,kcij->nkhw", cols, w, optimize=True)


def np_conv2d_backward_weight(dy, x, w, s, p):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = _np_windows(xp, w.shape[2], w.shape[3], s)[:, :, : dy.shape[2], : dy.shape[3]]
    return np.einsum("nchwij,nkhw->kcij", cols, dy, optimize=True)


def np_conv2d_backward_data(dy, x_shape, w, s, p):
    """The data gradient as a convolution of dy (zero-inserted for stride s) with the flipped,
    transposed weights."""
    n, k, ho, wo = dy.shape
    kh, kw = w.shape[2:]
    h, wd = x_shape[2:]
    up = np.zeros((n, k, (ho - 1) * s + 1, (wo - 1) * s + 1), dy.dtype)
    up[:, :, ::s, ::s] = dy
    full = np.pad(up, ((0, 0), (0, 0), (kh - 1, kh - 1 + s), (kw - 1, kw - 1 + s)))
    wt = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    g = np_conv2d(full, wt, 1, 0)
    return np.ascontiguousarray(g[:, :, p : p + h, p : p + wd])


# ---------------------------------------------------------------------------------------------
# suites


def conv_flops(w_shape, out_shape):
    _, cg, kh, kw = w_shape
    return 2.0 * out_shape[0] * out_shape[1] * cg * kh * kw * out_shape[2] * out_shape[3]


def layer_cases(batch):
    for name, spec in load_suite()["layers"].items():
        _, c, h, w = spec["input"]
        cin, cout, k, s, p = spec["conv"]
        yield name, (batch, c, h, w), (cout, cin, k, k), s, p, 1, 1


def shape_cases(batch):
    """Shapes where algorithm choice matters: ResNet-50's 1x1 convolutions, dilated 3x3
    (DeepLab-style, 256 channels at 64x64) and MobileNet's depthwise 3x3 at stride 1 and 2.
    (name, x shape, w shape, stride, padding, dilation, groups)"""
    cases = [
        ("1x1 256>64 56", (batch, 256, 56, 56), (64, 256, 1, 1), 1, 0, 1, 1),
        ("1x1 64>256 56", (batch, 64, 56, 56), (256, 64, 1, 1), 1, 0, 1, 1),
        ("1x1 1024>256 14", (batch, 1024, 14, 14), (256, 1024, 1, 1), 1, 0, 1, 1),
        ("1x1 512>1024 s2", (batch, 512, 28, 28), (1024, 512, 1, 1), 2, 0, 1, 1),
        ("dil2 3x3 256 64", (batch, 256, 64, 64), (256, 256, 3, 3), 1, 2, 2, 1),
        ("dil4 3x3 256 64", (batch, 256, 64, 64), (256, 256, 3, 3), 1, 4, 4, 1),
    ]
    for c, hw, s in ((32, 112, 1), (64, 112, 2), (128, 56, 1), (256, 56, 2), (512, 14, 1)):
        cases.append((f"dw3x3 {c} {hw} s{s}", (batch, c, hw, hw), (c, 1, 3, 3), s, 1, 1, c))
    return cases


def bench_layer(name, x_shape, w_shape, s, p, d, g, libs, torch, repeat, tick, suite="layers"):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = (rng.standard_normal(w_shape, dtype=np.float32) * 0.05).astype(np.float32)
    y = F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    flops = conv_flops(w_shape, y.shape)
    runs, chosen = {}, {}
    for lib in libs:
        if lib == "torch":
            if torch is None:
                continue
            tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
            bwd = torch.ops.aten.convolution_backward

            def tb(mask):
                return lambda: bwd(
                    tdy, tx, tw, None, (s, s), (p, p), (d, d), False, (0, 0), g, mask
                )

            runs[lib] = {
                "fwd": lambda: torch.nn.functional.conv2d(tx, tw, None, s, p, d, g),
                "bwd_data": tb((True, False, False)),
                "bwd_weight": tb((False, True, False)),
            }
        elif lib == "numpy":
            if d != 1 or g != 1:  # the baseline is the plain CS231n-style im2col
                continue
            runs[lib] = {
                "fwd": lambda: np_conv2d(x, w, s, p),
                "bwd_data": lambda: np_conv2d_backward_data(dy, x.shape, w, s, p),
                "bwd_weight": lambda: np_conv2d_backward_weight(dy, x, w, s, p),
            }
        else:  # fastconv, with algo "auto" or a named one
            algo = "auto" if lib == "fastconv" else lib.split(":", 1)[1]
            if algo != "auto" and algo not in F.algorithms(
                x_shape, w_shape, stride=s, padding=p, dilation=d, groups=g
            ):
                continue
            kw = dict(stride=s, padding=p, dilation=d, groups=g, algo=algo)
            if algo == "auto":  # what auto picked, per direction, for the table
                chosen[lib] = {
                    dn: F.algorithms(
                        x_shape, w_shape, stride=s, padding=p, dilation=d, groups=g, direction=full
                    )[0]
                    for dn, full in zip(CONV_DIRS, ("forward", "backward_data", "backward_weight"))
                }
            runs[lib] = {
                "fwd": lambda kw=kw: F.conv2d(x, w, **kw),
                "bwd_data": lambda kw=kw: F.conv2d_backward(
                    dy, x, w, needs=(True, False, False), **kw
                ),
                "bwd_weight": lambda kw=kw: F.conv2d_backward(
                    dy, x, w, needs=(False, True, False), **kw
                ),
            }

    def algo(lib, direction):
        return {"algo": chosen.get(lib, {}).get(direction, "")}

    work = dict.fromkeys(CONV_DIRS, flops)
    with torch.no_grad() if torch is not None else _null():
        return timed_rows(runs, work, repeat, tick, suite, name, extra=algo)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def pool_cases(batch):
    """The nets' pooling layers: (name, input shape, kernel, stride, padding)."""
    return [
        ("alexnet 3/2", (batch, 64, 55, 55), 3, 2, 0),
        ("vgg 2/2", (batch, 64, 112, 112), 2, 2, 0),
        ("googlenet 3/2p1", (batch, 192, 56, 56), 3, 2, 1),
    ]


def bench_pool(name, shape, k, s, p, libs, torch, repeat, tick):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    fwd_bytes = x.nbytes + y.nbytes + idx.nbytes
    bwd_bytes = dy.nbytes + idx.nbytes + x.nbytes
    runs = {}
    for lib in libs:
        if lib == "torch" and torch is not None:
            tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
            ty, tidx = torch.nn.functional.max_pool2d(tx, k, s, p, return_indices=True)
            bwd = torch.ops.aten.max_pool2d_with_indices_backward
            runs[lib] = {
                "fwd": lambda: torch.nn.functional.max_pool2d(tx, k, s, p, return_indices=True),
                "bwd": lambda: bwd(tdy, tx, [k, k], [s, s], [p, p], [1, 1], False, tidx),
            }
        elif lib == "fastconv":
            runs[lib] = {
                "fwd": lambda: F.max_pool2d(x, k, s, p, return_indices=True),
                "bwd": lambda: F.max_pool2d_backward(dy, idx, x.shape),
            }
    # memcpy of the same bytes (np.copyto of as many bytes as the op reads and writes)
    src = np.ones(max(fwd_bytes, bwd_bytes) // 4, np.float32)
    dst = np.empty_like(src)
    sizes = {"fwd": fwd_bytes, "bwd": bwd_bytes}

    with torch.no_grad() if torch is not None else _null():
        rows = timed_rows(runs, sizes, repeat, tick, "pool", name, "gbs")
    memcpy = {d: lambda n=n // 4: np.copyto(dst[:n], src[:n]) for d, n in sizes.items()}
    # (a reference, not a contender: timed on its own)
    return rows + timed_rows({"memcpy": memcpy}, sizes, repeat, lambda: None, "pool", name, "gbs")


# ---------------------------------------------------------------------------------------------
# nets: one builder from the suite's layer lists, for fastconv.nn and for torch.nn


def build_net(spec, nn, cat):
    """A Sequential of `nn` modules from a convnet-benchmarks layer list. `cat` concatenates a
    list of tensors on channels (Inception)."""
    base = nn.Module

    class Inception(base):
        def __init__(self, cin, c1, r3, c3, r5, c5, pp):
            super().__init__()
            self.b1 = nn.Sequential(nn.Conv2d(cin, c1, 1), nn.ReLU())
            self.b2 = nn.Sequential(
                nn.Conv2d(cin, r3, 1), nn.ReLU(), nn.Conv2d(r3, c3, 3, padding=1), nn.ReLU()
            )
            self.b3 = nn.Sequential(
                nn.Conv2d(cin, r5, 1), nn.ReLU(), nn.Conv2d(r5, c5, 5, padding=2), nn.ReLU()
            )
            self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, pp, 1), nn.ReLU())

        def forward(self, x):
            return cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)])

    layers = []
    for layer in spec["layers"]:
        kind, args = layer[0], layer[1:]
        if kind == "conv":
            cin, cout, k, s, p = args
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "maxpool":
            k, s, p = args
            layers.append(nn.MaxPool2d(k, stride=s, padding=p))
        elif kind == "avgpool":
            k, s, p = args
            layers.append(nn.AvgPool2d(k, stride=s, padding=p))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "linear":
            layers.append(nn.Linear(*args))
        elif kind == "inception":
            layers.append(Inception(*args))
        else:
            raise ValueError(f"unknown layer kind {kind!r} in the suite")
    return nn.Sequential(*layers)


def net_flops(spec, batch):
    """Forward FLOPs of the convolutions and linear layers of a net (shape inference by hand)."""
    _, c, h, w = spec["input"]
    total = 0.0

    def conv(c, h, w, cout, k, s, p):
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return cout, ho, wo, 2.0 * batch * cout * c * k * k * ho * wo

    for layer in spec["layers"]:
        kind, a = layer[0], layer[1:]
        if kind == "conv":
            c, h, w, f = conv(c, h, w, a[1], a[2], a[3], a[4])
            total += f
        elif kind in ("maxpool", "avgpool"):
            k, s, p = a
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif kind == "linear":
            total += 2.0 * batch * a[0] * a[1]
        elif kind == "inception":
            cin, c1, r3, c3, r5, c5, pp = a
            for cout, k, ci in (
                (c1, 1, cin),
                (r3, 1, cin),
                (c3, 3, r3),
                (r5, 1, cin),
                (c5, 5, r5),
                (pp, 1, cin),
            ):
                total += conv(ci, h, w, cout, k, 1, k // 2)[3]
            c = c1 + c3 + c5 + pp
    return total


def bench_net(name, spec, batch, libs, torch, repeat, tick):
    from . import autograd, nn

    shape = (batch,) + tuple(spec["input"][1:])
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    flops = net_flops(spec, batch)
    runs = {}
    for lib in libs:
        if lib == "fastconv":
            fmodel = build_net(spec, nn, lambda ts: autograd.concat(ts, axis=1))
            fx = autograd.Tensor(x)

            def fwd():
                with autograd.no_grad():
                    fmodel(fx)

            def fwdbwd():
                fmodel.zero_grad()
                fmodel(fx).sum().backward()
        elif lib == "torch" and torch is not None:
            torch.manual_seed(0)
            tmodel = build_net(spec, torch.nn, lambda ts: torch.cat(ts, 1))
            tx = torch.from_numpy(x)

            def fwd():
                with torch.no_grad():
                    tmodel(tx)

            def fwdbwd():
                tmodel.zero_grad()
                tmodel(tx).sum().backward()
        else:
            continue
        runs[lib] = {"fwd": fwd, "fwd+bwd": fwdbwd}

    return timed_rows(runs, {"fwd": flops, "fwd+bwd": 3 * flops}, repeat, tick, "nets", name)


# ---------------------------------------------------------------------------------------------
# report


def format_table(rows, peak):
    """One text table per suite: ms, GFLOP/s (or GB/s), % of SGEMM, speed relative to torch."""
    out = []
    for suite in SUITES:
        rs = [r for r in rows if r["suite"] == suite]
        if not rs:
            continue
        rate = "GB/s" if suite == "pool" else "GFLOP/s"
        cw = max(18, max(len(r["case"]) for r in rs) + 2)  # (bench shapes --shape names)
        out.append(f"\n[{suite}]")
        out.append(
            f"{'case':<{cw}}{'lib':<18}{'dir':<12}{'ms':>10}{rate:>10}"
            + ("" if suite == "pool" else f"{'%sgemm':>8}")
            + f"{'vs torch':>10}"
            + ("  algo" if any(r.get("algo") for r in rs) else "")
        )
        ref = {(r["case"], r["dir"]): r["ms"] for r in rs if r["lib"] == "torch"}
        for r in rs:
            t = ref.get((r["case"], r["dir"]))
            rel = f"{t / r['ms']:.2f}x" if t else "-"
            val = r["gbs"] if suite == "pool" else r["gflops"]
            line = f"{r['case']:<{cw}}{r['lib']:<18}{r['dir']:<12}{r['ms']:>10.2f}{val:>10.1f}"
            if suite != "pool":
                line += f"{100 * val / peak:>7.0f}%"
            out.append(line + f"{rel:>10}" + (f"  {r['algo']}" if r.get("algo") else ""))
        totals = _totals(rs)
        if totals:
            out.append(
                "total ms (cases fastconv ran): "
                + ", ".join(
                    f"{lib} {ms:.1f}"
                    + (f" ({totals['torch'] / ms:.2f}x torch)" if "torch" in totals else "")
                    for lib, ms in totals.items()
                )
            )
    return "\n".join(out) + "\n"


def _totals(rows):
    """Total ms per library over the cases fastconv ran; a library that skipped some of them
    (the NumPy baseline has no dilation or groups) is left out rather than compared unfairly."""
    libs = list(dict.fromkeys(r["lib"] for r in rows))
    keys = {lib: {(r["case"], r["dir"]) for r in rows if r["lib"] == lib} for lib in libs}
    base = keys.get("fastconv", set())
    return {
        lib: sum(r["ms"] for r in rows if r["lib"] == lib and (r["case"], r["dir"]) in base)
        for lib in libs
        if base and base <= keys[lib]
    }


def plot(rows, peak, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = [s for s in SUITES if any(r["suite"] == s for r in rows)]
    fig, axes = plt.subplots(len(suites), 1, figsize=(12, 4 * len(suites)), squeeze=False)
    for ax, suite in zip(axes[:, 0], suites):
        rs = [r for r in rows if r["suite"] == suite]
        key = "gbs" if suite == "pool" else "gflops"
        groups = list(dict.fromkeys((r["case"], r["dir"]) for r in rs))
        libs = list(dict.fromkeys(r["lib"] for r in rs))
        width = 0.8 / len(libs)
        for i, lib in enumerate(libs):
            vals = {(r["case"], r["dir"]): r[key] for r in rs if r["lib"] == lib}
            ax.bar(
                [g + i * width for g in range(len(groups))],
                [vals.get(g, 0) for g in groups],
                width,
                label=lib,
            )
        if suite != "pool":
            ax.axhline(peak, color="k", linestyle="--", linewidth=1, label="SGEMM")
        ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
        ax.set_xticklabels([f"{c}\n{d}" for c, d in groups], fontsize=7)
        ax.set_ylabel("GB/s" if suite == "pool" else "GFLOP/s")
        ax.set_title(f"fastconv bench: {suite}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def run(
    suites,
    batch,
    threads,
    repeat,
    compare,
    algos,
    net_batch=None,
    progress=True,
    train_nets=TRAIN_NETS,
):
    """Runs the suites; returns {"meta": ..., "rows": [...]}. ``train_nets``: the models whose
    training step the nets suite times (any fastconv.models name)."""
    F.set_num_threads(threads)
    torch = import_torch(threads) if "torch" in compare else None
    peak = sgemm_rate(threads)
    conv_libs = ["fastconv"] + [f"fastconv:{a}" for a in algos]
    conv_libs += [c for c in compare if c in ("torch", "numpy")]
    pool_libs = ["fastconv"] + (["torch"] if "torch" in compare else [])
    net_libs = ["fastconv"] + (["torch"] if "torch" in compare else [])
    net_batch = net_batch or batch
    nets = load_suite()["nets"]
    n_layers = len(list(layer_cases(batch)))
    total = (
        ("layers" in suites) * n_layers * len(conv_libs) * 3
        + ("shapes" in suites) * len(shape_cases(batch)) * len(conv_libs) * 3
        + ("pool" in suites) * 3 * len(pool_libs) * 2
        + ("nets" in suites) * (len(nets) * 2 + len(train_nets)) * len(net_libs)
    )
    bar = _progress(total, progress)
    rows = []
    try:
        if "layers" in suites:
            for case in layer_cases(batch):
                bar.set_description(f"layers {case[0]}")
                rows += bench_layer(*case, conv_libs, torch, repeat, bar.update)
        if "shapes" in suites:
            for case in shape_cases(batch):
                bar.set_description(f"shapes {case[0]}")
                rows += bench_layer(*case, conv_libs, torch, repeat, bar.update, suite="shapes")
        if "pool" in suites:
            for case in pool_cases(batch):
                bar.set_description(f"pool {case[0]}")
                rows += bench_pool(*case, pool_libs, torch, repeat, bar.update)
        if "nets" in suites:
            for name, spec in nets.items():
                bar.set_description(f"nets {name}")
                rows += bench_net(name, spec, net_batch, net_libs, torch, repeat, bar.update)
            for name in train_nets:
                bar.set_description(f"nets {name} training step")
                rows += bench_train_step(name, net_batch, net_libs, torch, repeat, bar.update)
    finally:
        bar.close()
    meta = {
        "isa": F.isa(),
        "hardware": F.hardware(),
        "threads": threads,
        "batch": batch,
        "net_batch": net_batch,
        "repeat": repeat,
        "sgemm_gflops": peak,
        "torch": getattr(torch, "__version__", None),
    }
    return {"meta": meta, "rows": rows}


def _progress(total, enabled):
    try:
        from tqdm import tqdm

        return tqdm(total=total, disable=not enabled, file=sys.stderr, leave=False)
    except ImportError:  # pragma: no cover

        class Bar:
            def update(self, n=1):
                pass

            def set_description(self, d):
                pass

            def close(self):
                pass

        return Bar()


def peers_follow_forced_isa():
    """With FASTCONV_ISA=avx2 the benchmarks compare as on an AVX2 CPU: fastconv and its OpenBLAS
    run AVX2 (fastconv/__init__.py), and so does PyTorch (ATEN_CPU_CAPABILITY=avx2, oneDNN's
    ONEDNN_MAX_CPU_ISA=AVX2) unless those are set or torch is loaded already. ONNX Runtime and
    OpenVINO have no such switch and run their best kernels. Returns what it set."""
    if os.environ.get("FASTCONV_ISA") != "avx2" or "torch" in sys.modules:
        return {}
    want = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    set_here = {k: v for k, v in want.items() if k not in os.environ}
    os.environ.update(set_here)
    return set_here


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    peers_follow_forced_isa()
    if argv[:1] == ["auto"]:  # its own options (fastconv bench auto --help)
        from . import bench_auto

        return bench_auto.main(argv[1:])
    if argv[:1] == ["infer"]:  # its own options (fastconv bench infer --help)
        from . import bench_infer

        return bench_infer.main(argv[1:])
    if argv[:1] == ["breakdown"]:  # its own options (fastconv bench breakdown --help)
        from . import bench_train

        return bench_train.main_breakdown(argv[1:])
    if argv[:1] == ["memory"]:  # its own options (fastconv bench memory --help)
        from . import bench_memory

        return bench_memory.main(argv[1:])
    if argv[:1] == ["model"]:  # its own options (fastconv bench model --help)
        from . import bench_user

        return bench_user.main_model(argv[1:])
    from .bench_user import SHAPE_FORMAT, conv_shape

    ap = argparse.ArgumentParser(
        prog="fastconv bench",
        description="convnet-benchmarks layers, nets and pooling, next to PyTorch CPU in one run",
    )
    ap.add_argument(
        "suite",
        nargs="?",
        default="quick",
        help="layers, shapes, nets, pool, all, or quick (default: layers + pool, batch 2); "
        "'auto', 'breakdown', 'infer', 'memory' and 'model' are commands of their own: "
        "fastconv bench auto --help, fastconv bench breakdown --help, fastconv bench infer "
        "--help, fastconv bench memory --help, fastconv bench model --help",
    )
    ap.add_argument(
        "--batch",
        type=int_at_least(1),
        default=None,
        help="batch for layers and pool (default 2; 8 for all)",
    )
    ap.add_argument(
        "--net-batch", type=int_at_least(1), default=None, help="batch for nets (default 4)"
    )
    ap.add_argument(
        "--train-nets",
        type=comma_list(tuple(MODELS)),
        default=list(TRAIN_NETS),
        help="models whose training step the nets suite times, at their published "
        f"input size (default {','.join(TRAIN_NETS)}; any of fastconv.models)",
    )
    ap.add_argument(
        "--algos",
        type=comma_list(F.ALGORITHMS),
        default="",
        help="also time these algorithms by name, e.g. im2col,direct",
    )
    ap.add_argument(
        "--shape",
        action="append",
        type=conv_shape,
        metavar=SHAPE_FORMAT,
        help="with the shapes suite: time this convolution instead of the built-in "
        "shapes (repeatable; e.g. 8,64,56,56:64,3,3:1,1)",
    )
    add_run_options(
        ap, COMPARE, "torch,numpy", "the rows", "bar charts of the same", BEST_OF_ROUNDS
    )
    args = ap.parse_args(argv)
    if args.shape:  # your own layers (bench_user.py)
        from . import bench_user

        return bench_user.run_shapes(args, ap)
    if args.suite == "quick":
        suites, batch = ("layers", "pool"), args.batch or 2
    elif args.suite == "all":
        suites, batch = SUITES, args.batch or 8
    elif args.suite in SUITES:
        suites, batch = (args.suite,), args.batch or 8
    else:
        ap.error(
            f"unknown suite {args.suite!r}: choose from layers, shapes, nets, pool, all, quick"
        )
    threads = args.threads or F.get_num_threads()
    compare, algos = args.compare, args.algos
    res = run(
        suites,
        batch,
        threads,
        args.repeat,
        compare,
        algos,
        net_batch=args.net_batch or 4,
        progress=not args.no_progress,
        train_nets=args.train_nets,
    )
    m = res["meta"]
    print(
        f"fastconv bench | {cpu_line(F.hardware())} | ISA {m['isa']} | threads {threads} "
        f"| batch {batch} (nets {m['net_batch']}) | repeat {args.repeat} "
        f"| torch {m['torch'] or 'not installed'}"
    )
    print(
        f"SGEMM rate (NumPy OpenBLAS, float32 2048^3, {threads} threads): "
        f"{m['sgemm_gflops']:.1f} GFLOP/s"
    )
    sys.stdout.write(format_table(res["rows"], m["sgemm_gflops"]))
    sys.stdout.write(spread_line(res["rows"], args.repeat))
    write_results(
        "fastconv bench",
        res,
        args.json,
        args.plot,
        lambda path: plot(res["rows"], m["sgemm_gflops"], path),
    )
    return 0


def cpu_line(hw):
    """The machine in one line, from fastconv.hardware()."""
    return (
        f"{hw['model'] or 'CPU'}, {hw['cores']} cores, L2 {hw['l2_bytes'] >> 10} KiB, "
        f"L3 {hw['l3_bytes'] >> 20} MiB"
    )


def write_results(command, res, json_path, plot_path, draw):
    """--json and --plot (draw(path) makes the figure), each written whole or not at all: a
    failure (a full disk, say) names the option and the file, and the file there before stays."""
    if json_path:
        try:
            with atomic_write(json_path, binary=False) as f:
                json.dump(res, f, indent=1)
        except OSError as e:
            fail(command, "--json", json_path, e)
        print(f"results written to {json_path}")
    if plot_path:
        try:
            draw(plot_path)
        except OSError as e:
            fail(command, "--plot", plot_path, e)
        print(f"plot written to {plot_path}")


if __name__ == "__main__":
    sys.exit(main())

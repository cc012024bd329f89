"""``fastconv bench auto``: how close ``algo="auto"`` comes to the fastest algorithm here.

For every shape of the bench suites (``layers`` L1-L5, ``shapes``) and the distinct convolutions
of ResNet-50, VGG-16 and Inception v3, at each batch of ``--batches``, in each direction
(forward, data gradient, weight gradient), in float32: the time of every algorithm that can run
it (``reference`` excepted, and ``im2col`` on 1x1 kernels, where it runs ``gemm1x1``'s code),
the one auto's heuristic picks, the one autotuning measures
(switched on around one ``algo="auto"`` call; the user's mode and measured choices are put back)
and PyTorch's time in the same process. Auto and tuned are reported as ratios to the fastest
time measured here, so 1.00 means auto picked the fastest algorithm. The contenders of a row
(each algorithm and PyTorch) take turns over ``--repeat`` rounds, each timed call after an
untimed one, and each reports its best round (bench.time_rounds): on a shared machine a slow
spell then falls on every contender of the row alike instead of on whichever ran during it. An
algorithm over 3x the quickest in the first round is timed in that round only (auto's and the
tuned choice run every round). How much each figure moved (slowest round over best) is kept in
the JSON rows ("spread").
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
from typing import NamedTuple

import numpy as np

from . import _autotune, _core
from . import functional as F
from ._cliargs import BEST_OF_ROUNDS, add_run_options, int_list
from ._io import save_figure
from .bench import (
    _null,
    _progress,
    conv_flops,
    core_probe,
    cpu_line,
    import_torch,
    layer_cases,
    probe_at_best,
    sgemm_rate,
    shape_cases,
    time_rounds,
    write_results,
)

#: (row name, fastconv.algorithms direction); the index is the C direction (fc_direction)
DIRECTIONS = (("fwd", "forward"), ("bwd_data", "backward_data"), ("bwd_weight", "backward_weight"))
AUTO_SLACK, TUNED_SLACK = 1.10, 1.05  # "within 10% / 5% of the fastest"
#: a round ran "far" (the two threads on cores that share no L3) where the cores' round trip
#: before it was this many times the run's lowest: 54-74 ns against 310-330 on the 2-vCPU EPYC VMs
FAR_FACTOR = 2.5
_EPS = 1e-9  # (a ratio of exactly 1.10 counts as within)


class Case(NamedTuple):
    """One float32 convolution; stride, padding and dilation as (h, w). `also` names the layers
    of later suites with the same geometry, dropped as duplicates."""

    suite: str
    name: str
    x_shape: tuple
    w_shape: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    also: tuple = ()

    @property
    def geometry(self):
        return self[2:8]

    def text(self):
        """What --cases matches: suite, name and the names it stands for."""
        return " ".join((self.suite, self.name) + self.also).lower()


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv(suite, name, batch, cin, hw, cout, kernel, stride=1, padding=0, dilation=1, groups=1):
    kh, kw = _pair(kernel)
    return Case(
        suite,
        name,
        (batch, cin, hw, hw),
        (cout, cin // groups, kh, kw),
        _pair(stride),
        _pair(padding),
        _pair(dilation),
        groups,
    )


def _from_bench(suite, case):
    name, x_shape, w_shape, s, p, d, g = case
    return Case(suite, name, tuple(x_shape), tuple(w_shape), _pair(s), _pair(p), _pair(d), g)


def resnet50_cases(batch):
    """ResNet-50's convolutions at 224x224, torchvision v1.5 style (the stride-2 3x3 in the
    first block of stages 2-4): stem, then per stage the first block's 1x1 reduce, 3x3, 1x1
    expand and 1x1 downsample, and the later blocks' 1x1 reduce and 3x3."""
    out = [_conv("resnet50", "r50 stem 7x7/2 3>64 224", batch, 3, 224, 64, 7, 2, 3)]
    cin, hw = 64, 56
    for stage, width in enumerate((64, 128, 256, 512)):
        cout, s = 4 * width, 1 if stage == 0 else 2
        ho, sl = hw // s, "/2" if s == 2 else ""
        out += [
            _conv("resnet50", f"r50 1x1 {cin}>{width} {hw}", batch, cin, hw, width, 1),
            _conv("resnet50", f"r50 3x3{sl} {width} {hw}", batch, width, hw, width, 3, s, 1),
            _conv("resnet50", f"r50 1x1 {width}>{cout} {ho}", batch, width, ho, cout, 1),
            _conv("resnet50", f"r50 1x1{sl} {cin}>{cout} {hw} ds", batch, cin, hw, cout, 1, s),
            _conv("resnet50", f"r50 1x1 {cout}>{width} {ho}", batch, cout, ho, width, 1),
            _conv("resnet50", f"r50 3x3 {width} {ho}", batch, width, ho, width, 3, 1, 1),
        ]
        cin, hw = cout, ho
    return out


def vgg16_cases(batch):
    """VGG-16's 13 3x3 convolutions (pad 1), distinct shapes only."""
    return [
        _conv("vgg16", f"vgg16 3x3 {c}>{k} {hw}", batch, c, hw, k, 3, 1, 1)
        for c, k, hw in (
            (3, 64, 224),
            (64, 64, 224),
            (64, 128, 112),
            (128, 128, 112),
            (128, 256, 56),
            (256, 256, 56),
            (256, 512, 28),
            (512, 512, 28),
            (512, 512, 14),
        )
    ]


def inception_v3_cases(batch):
    """Inception v3's characteristic convolutions at 299x299: the stem, a 35x35 3x3 and 5x5,
    the 3x3/2 reduction, the factorised 1x7/7x1 at 17x17 and a 1x1 at 8x8."""
    specs = (
        ("3x3/2 3>32 299", 3, 299, 32, 3, 2, 0),
        ("3x3 32>32 149", 32, 149, 32, 3, 1, 0),
        ("3x3 32>64 147", 32, 147, 64, 3, 1, 1),
        ("3x3 64>96 35", 64, 35, 96, 3, 1, 1),
        ("5x5 48>64 35", 48, 35, 64, 5, 1, 2),
        ("3x3/2 384>384 35", 384, 35, 384, 3, 2, 0),
        ("1x7 128>128 17", 128, 17, 128, (1, 7), 1, (0, 3)),
        ("7x1 128>192 17", 128, 17, 192, (7, 1), 1, (3, 0)),
        ("1x1 2048>320 8", 2048, 8, 320, 1, 1, 0),
    )
    return [_conv("inception_v3", f"inc3 {name}", batch, *spec) for name, *spec in specs]


def _suite_cases(batch):
    yield from (_from_bench("layers", c) for c in layer_cases(batch))
    yield from (_from_bench("shapes", c) for c in shape_cases(batch))
    yield from resnet50_cases(batch)
    yield from vgg16_cases(batch)
    yield from inception_v3_cases(batch)


def cases(batches=(1, 8), only=()):
    """The distinct cases at each batch (a shape met again keeps its first name and lists the
    others in `also`); with `only`, those whose suite or names contain one of the substrings."""
    out = []
    for batch in batches:
        first = {}
        for case in _suite_cases(batch):
            kept = first.get(case.geometry)
            if kept is None:
                first[case.geometry] = case
            elif case.name != kept.name and case.name not in kept.also:
                first[case.geometry] = kept._replace(also=kept.also + (case.name,))
        out += first.values()
    subs = [s.lower() for s in only]
    return [c for c in out if not subs or any(s in c.text() for s in subs)]


def descriptor(case):
    """[n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, groups], as _core.conv2d_tuned takes."""
    n, c, h, w = case.x_shape
    k, _, kh, kw = case.w_shape
    return [n, c, h, w, k, kh, kw, *case.stride, *case.padding, *case.dilation, case.groups]


def out_shape(case):
    n, _, h, w = case.x_shape
    k, _, kh, kw = case.w_shape
    ho, wo = (
        (size + 2 * p - d * (kk - 1) - 1) // s + 1
        for size, p, d, kk, s in zip((h, w), case.padding, case.dilation, (kh, kw), case.stride)
    )
    return (n, k, ho, wo)


@contextlib.contextmanager
def tuning():
    """Autotuning on, from an empty table, for the block; afterwards the user's mode and measured
    choices are as before (nothing measured here is kept, and a "persist" file is not touched)."""
    mode, saved = _autotune.get_autotune(), _core.autotune_export()
    _autotune.clear_autotune()
    if mode == "off":
        _autotune.set_autotune("on")
    try:
        yield
    finally:
        if mode == "off":
            _autotune.set_autotune("off")
        _autotune.clear_autotune()
        if saved:
            _core.autotune_import(saved)


def make_row(case, direction, ms, auto, tuned, torch_ms, errors=None):
    """One result row from the algorithms' times (ms, by name) and the choices."""
    fastest = min(ms, key=ms.get) if ms else None  # (none: every algorithm failed)
    best = ms.get(fastest)
    auto_ms = ms.get(auto)
    flops = conv_flops(case.w_shape, out_shape(case))
    row = {
        "suite": case.suite,
        "case": case.name,
        "batch": case.x_shape[0],
        "dir": direction,
        "x": list(case.x_shape),
        "w": list(case.w_shape),
        "stride": list(case.stride),
        "padding": list(case.padding),
        "dilation": list(case.dilation),
        "groups": case.groups,
        "also": list(case.also),
        "ms": ms,
        "fastest": fastest,
        "fastest_ms": best,
        "auto": auto,
        "auto_ms": auto_ms,
        "auto_ratio": auto_ms / best if auto_ms else None,
        "auto_gflops": flops / auto_ms / 1e6 if auto_ms else None,
        "tuned": tuned,
        "tuned_ratio": ms[tuned] / best if tuned in ms else None,
        "torch_ms": torch_ms,
        "auto_vs_torch": torch_ms / auto_ms if torch_ms and auto_ms else None,
    }
    if errors:
        row["errors"] = errors
    return row


def bench_case(case, torch, repeat, tick=lambda n=1: None, probe=None):
    """Rows for the three directions of one case."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.x_shape, dtype=np.float32)
    w = rng.standard_normal(case.w_shape, dtype=np.float32) * np.float32(0.05)
    dy = rng.standard_normal(out_shape(case), dtype=np.float32)
    geo = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)

    def call(direction, algo):
        if direction == "fwd":
            return lambda: F.conv2d(x, w, algo=algo, **geo)
        needs = (True, False, False) if direction == "bwd_data" else (False, True, False)
        return lambda: F.conv2d_backward(dy, x, w, needs=needs, algo=algo, **geo)

    torch_fns = {}
    if torch is not None:
        tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
        args = (
            list(case.stride),
            list(case.padding),
            list(case.dilation),
            False,
            [0, 0],
            case.groups,
        )
        bwd = torch.ops.aten.convolution_backward
        torch_fns = {
            "fwd": lambda: torch.nn.functional.conv2d(tx, tw, None, *args[:3], case.groups),
            "bwd_data": lambda: bwd(tdy, tx, tw, None, *args, (True, False, False)),
            "bwd_weight": lambda: bwd(tdy, tx, tw, None, *args, (False, True, False)),
        }
    rows = []
    for index, (direction, full) in enumerate(DIRECTIONS):
        listed = F.algorithms(case.x_shape, case.w_shape, direction=full, **geo)
        auto = listed[0]  # the heuristic's choice, whatever the autotune mode
        with tuning():  # what a user's first algo="auto" call would measure and keep
            call(direction, "auto")()
            tuned = _core.conv2d_tuned(descriptor(case), index, False)
        contenders, errors = {}, {}
        for algo in listed:
            if algo == "reference" and algo != auto:
                continue
            if algo == "im2col" and "gemm1x1" in listed:
                continue  # (on a 1x1 kernel im2col runs gemm1x1's code: the same time twice)
            fn = call(direction, algo)
            try:
                fn()
            except (MemoryError, RuntimeError, ValueError) as e:
                # (a workspace too large for this machine, say): reported under the row rather
                # than losing the rest of a long run
                errors[algo] = " ".join(str(e).split())
                continue
            contenders[algo] = (fn, "fastconv")
        if torch_fns:
            contenders["torch"] = (torch_fns[direction], "torch")
        # (an algorithm 3x slower than the quickest in the first round is timed in it only)
        probes = []
        times = time_rounds(
            contenders,
            repeat,
            keep={auto, tuned, "torch"},
            drop_beyond=3.0,
            probe=probe,
            probes=probes,
        )
        best = {k: min(v) * 1e3 for k, v in times.items()}
        torch_ms = best.pop("torch", None)
        row = make_row(case, direction, best, auto, tuned, torch_ms, errors)
        row["spread"] = {k: max(v) / min(v) for k, v in times.items()}
        # the cores' round trip before each round, and before the round of auto's best time
        row["round_trip_ns"] = probes or None
        row["auto_round_trip_ns"] = probe_at_best(times.get(auto), probes)
        rows.append(row)
        tick(1)
    return rows


def _where(row):
    return f"{row['case']} b{row['batch']} {row['dir']}"


def summarize(rows):
    """Counts and ratios over the rows (case x batch x direction); percentages in 0-100."""
    auto = [r for r in rows if r["auto_ratio"] is not None]
    tuned = [r for r in rows if r["tuned_ratio"] is not None]
    vs = [r for r in rows if r["auto_vs_torch"]]
    worst = max(auto, key=lambda r: r["auto_ratio"], default=None)
    slowest = min(vs, key=lambda r: r["auto_vs_torch"], default=None)

    def pct(part, whole):
        return 100.0 * len(part) / len(whole) if whole else None

    # rows whose auto best round ran with the cores' round trip at FAR_FACTOR x the run's lowest
    probed = [r for r in rows if r.get("auto_round_trip_ns") is not None]
    lowest = min((r["auto_round_trip_ns"] for r in probed), default=None)
    far = [r for r in probed if r["auto_round_trip_ns"] >= FAR_FACTOR * lowest]
    below = [r for r in vs if r["auto_vs_torch"] < 0.9]

    return {
        "rows": len(rows),
        "cases": len({(r["case"], r["batch"]) for r in rows}),
        "auto_fastest_pct": pct([r for r in auto if r["auto"] == r["fastest"]], auto),
        "auto_within_10pct": pct([r for r in auto if r["auto_ratio"] <= AUTO_SLACK + _EPS], auto),
        "auto_worst_ratio": worst and worst["auto_ratio"],
        "auto_worst_case": worst and _where(worst),
        "tuned_within_5pct": pct(
            [r for r in tuned if r["tuned_ratio"] <= TUNED_SLACK + _EPS], tuned
        ),
        "tuned_measured": len(tuned),
        "auto_vs_torch_geomean": (
            math.exp(sum(math.log(r["auto_vs_torch"]) for r in vs) / len(vs)) if vs else None
        ),
        "auto_vs_torch_min": slowest and slowest["auto_vs_torch"],
        "auto_vs_torch_min_case": slowest and _where(slowest),
        "below_0.9x_torch": len(below),
        "lowest_round_trip_ns": lowest,
        "far_rows": len(far) if probed else None,
        "far_rows_below_0.9x_torch": len([r for r in far if r in below]) if probed else None,
        # how much the figures moved: per row, slowest round over best, medians over the rows
        "auto_spread_median": _median_spread(rows, lambda r: r["auto"]),
        "torch_spread_median": _median_spread(rows, lambda r: "torch"),
    }


def _median_spread(rows, who):
    spreads = [r["spread"][who(r)] for r in rows if who(r) in r.get("spread", {})]
    return statistics.median(spreads) if spreads else None


# ---------------------------------------------------------------------------------------------
# report


def _x(v, mark=None):
    return "-" if v is None else f"{v:.2f}" + ("!" if mark is not None and v > mark + _EPS else "")


def format_table(rows):
    """One line per case, batch and direction; '!' marks auto beyond 1.10x (tuned: 1.05x) of
    the fastest."""
    width = max([len(r["case"]) for r in rows] + [4]) + 2
    head = (
        f"{'case':<{width}}{'batch':>5}  {'dir':<11}{'fastest':<10}{'ms':>9}  {'auto':<10}"
        f"{'/fast':>6}  {'tuned':<10}{'/fast':>6}{'torch ms':>10}{'auto vs torch':>15}"
    )
    out = [head]
    for r in rows:
        rel = "-" if r["auto_vs_torch"] is None else f"{r['auto_vs_torch']:.2f}x"
        best = "-" if r["fastest_ms"] is None else f"{r['fastest_ms']:.2f}"
        out.append(
            f"{r['case']:<{width}}{r['batch']:>5}  {r['dir']:<11}{r['fastest'] or '-':<10}"
            f"{best:>9}  {r['auto']:<10}{_x(r['auto_ratio'], AUTO_SLACK):>6}  "
            f"{r['tuned'] or '-':<10}{_x(r['tuned_ratio'], TUNED_SLACK):>6}"
            f"{'-' if r['torch_ms'] is None else format(r['torch_ms'], '.2f'):>10}{rel:>15}"
        )
        for algo, err in r.get("errors", {}).items():
            out.append(f"    ({algo} could not run: {err})")
    return "\n".join(out) + "\n"


def format_summary(s, meta):
    def pct(v):
        return "-" if v is None else f"{v:.0f}%"

    lines = [
        f"\n{s['cases']} cases x 3 directions = {s['rows']} rows",
        f"auto picked the fastest algorithm: {pct(s['auto_fastest_pct'])}; "
        f"within 10% of the fastest: {pct(s['auto_within_10pct'])}",
    ]
    if s["auto_worst_ratio"] is not None:
        lines.append(f"worst auto/fastest: {s['auto_worst_ratio']:.2f}x ({s['auto_worst_case']})")
    lines.append(
        f"tuned within 5% of the fastest: {pct(s['tuned_within_5pct'])} "
        f"(of {s['tuned_measured']} measured)"
    )
    if s["auto_vs_torch_geomean"] is not None:
        lines.append(
            f"auto vs PyTorch: geomean {s['auto_vs_torch_geomean']:.2f}x, minimum "
            f"{s['auto_vs_torch_min']:.2f}x ({s['auto_vs_torch_min_case']}); "
            f">1 is faster than PyTorch"
        )
    if s["auto_vs_torch_geomean"] is not None:
        lines.append(f"rows below 0.9x PyTorch: {s['below_0.9x_torch']}")
    if s.get("far_rows") is not None:
        lines.append(
            f"rows whose auto best round ran with the round trip between the first two CPUs at "
            f"{FAR_FACTOR:g}x or more of the run's lowest ({s['lowest_round_trip_ns']:.0f} ns), "
            f"the host having put the threads on cores that share no L3 (ARCHITECTURE.md): "
            f"{s['far_rows']}, {s['far_rows_below_0.9x_torch']} of them below 0.9x PyTorch"
        )
    if s.get("auto_spread_median") is not None:
        torch_part = (
            f", PyTorch {s['torch_spread_median']:.2f}x"
            if s.get("torch_spread_median") is not None
            else ""
        )
        lines.append(
            f"best of {meta['repeat']} interleaved rounds; slowest round over best, median over "
            f"the rows: auto {s['auto_spread_median']:.2f}x{torch_part}"
        )
    lines.append(
        f"SGEMM rate (float32 2048^3, {meta['threads']} threads): "
        f"{meta['sgemm_gflops']:.1f} GFLOP/s; auto's GFLOP/s per row in --json"
    )
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """Per direction, one bar per case: auto's time over the fastest algorithm's (no bar: auto
    was the fastest; red: beyond 1.10) and a mark at tuned's; beside them fastconv-auto's speed
    relative to PyTorch. Log scales, the cases top to bottom as in the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    def ticks(ax, values):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis="x", alpha=0.3)

    labels = list(dict.fromkeys(f"{r['case']} b{r['batch']}" for r in rows))
    y = {lab: i for i, lab in enumerate(labels)}
    torch_too = any(r["auto_vs_torch"] for r in rows)
    ncol = len(DIRECTIONS) + torch_too
    fig, axes = plt.subplots(
        1, ncol, figsize=(3.6 * ncol + 2.5, 2 + 0.22 * len(labels)), sharey=True, squeeze=False
    )
    top = max([r["auto_ratio"] or 1 for r in rows] + [r["tuned_ratio"] or 1 for r in rows] + [1.3])
    for ax, (direction, full) in zip(axes[0], DIRECTIONS):
        rs = [r for r in rows if r["dir"] == direction and r["auto_ratio"] is not None]
        pos = [y[f"{r['case']} b{r['batch']}"] for r in rs]
        ratio = [r["auto_ratio"] for r in rs]
        ax.barh(
            pos,
            [v - 1 for v in ratio],
            left=1,
            height=0.7,
            color=["tab:green" if v <= AUTO_SLACK + _EPS else "tab:red" for v in ratio],
        )
        tp = [(p, r["tuned_ratio"]) for p, r in zip(pos, rs) if r["tuned_ratio"] is not None]
        ax.plot(
            [v for _, v in tp],
            [p for p, _ in tp],
            "D",
            color="k",
            fillstyle="none",
            markersize=4,
            linestyle="none",
        )
        ax.axvline(AUTO_SLACK, color="k", linestyle="--", linewidth=1)
        ticks(
            ax, [1, 1.5, 2, 3, 5, 10, 20, 50, 100, 1000] if top > 1.6 else [1, 1.1, 1.2, 1.3, 1.5]
        )
        ax.set_xlim(0.98, top * 1.15)
        ax.set_title(f"{full}\ntime / fastest algorithm's", fontsize=10)
    axes[0, 0].legend(
        handles=[
            Patch(color="tab:green", label="auto, within 1.1"),
            Patch(color="tab:red", label="auto, beyond"),
            Line2D(
                [], [], marker="D", color="k", fillstyle="none", linestyle="none", label="tuned"
            ),
            Line2D([], [], color="k", linestyle="--", label="1.1"),
        ],
        fontsize=7,
        loc="lower right",
    )
    if torch_too:
        ax = axes[0, -1]
        vals = []
        for k, (direction, _) in enumerate(DIRECTIONS):
            rs = [r for r in rows if r["dir"] == direction and r["auto_vs_torch"]]
            vals += [r["auto_vs_torch"] for r in rs]
            ax.plot(
                [r["auto_vs_torch"] for r in rs],
                [y[f"{r['case']} b{r['batch']}"] + (k - 1) * 0.22 for r in rs],
                "o",
                markersize=4,
                linestyle="none",
                label=direction,
            )
        ax.axvline(1, color="k", linewidth=1)
        ticks(ax, [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])
        ax.set_xlim(min(vals + [0.5]) / 1.3, max(vals + [2]) * 1.3)
        ax.set_title("fastconv auto vs PyTorch\nspeed (>1: fastconv faster)", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    axes[0, 0].set_yticks(range(len(labels)))
    axes[0, 0].set_yticklabels(labels, fontsize=7)
    axes[0, 0].set_ylim(len(labels) - 0.5, -0.5)  # first case at the top
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def run(case_list, threads, repeat, compare_torch=True, progress=True):
    """Benchmarks the cases; returns {"meta", "summary", "rows"}."""
    F.set_num_threads(threads)
    torch = import_torch(threads) if compare_torch else None
    peak = sgemm_rate(threads)
    probe = core_probe() if threads >= 2 else None
    bar = _progress(len(case_list) * len(DIRECTIONS), progress)
    rows = []
    try:
        with torch.no_grad() if torch is not None else _null():
            for case in case_list:
                bar.set_description(f"{case.name} b{case.x_shape[0]}")
                rows += bench_case(case, torch, repeat, bar.update, probe)
    finally:
        bar.close()
    meta = {
        "isa": F.isa(),
        "threads": threads,
        "repeat": repeat,
        "sgemm_gflops": peak,
        "batches": list(dict.fromkeys(c.x_shape[0] for c in case_list)),
        "torch": getattr(torch, "__version__", None),
    }
    return {"meta": meta, "summary": summarize(rows), "rows": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="fastconv bench auto",
        description="every algorithm, auto's choice, the tuned choice and PyTorch, per shape and "
        "direction of the bench suites and of ResNet-50, VGG-16 and Inception v3",
    )
    ap.add_argument(
        "--batches",
        type=int_list(1),
        default=[1, 8],
        metavar="N[,N]",
        help="batch sizes (default 1,8)",
    )
    ap.add_argument(
        "--cases",
        type=lambda t: [s.strip() for s in t.split(",") if s.strip()],
        default=[],
        metavar="SUBSTR[,SUBSTR]",
        help="only cases whose suite or name contains one of these (e.g. vgg16,L1)",
    )
    ap.add_argument("--list", action="store_true", help="print the cases and exit")
    add_run_options(
        ap, ("torch",), "torch", "the rows, the summary", "ratio charts of the same", BEST_OF_ROUNDS
    )
    args = ap.parse_args(argv)
    selected = cases(args.batches, args.cases)
    missed = [s for s in args.cases if not cases(args.batches[:1], [s])]
    if missed:
        ap.error(
            f"argument --cases: {', '.join(map(repr, missed))} matches no case "
            f"(fastconv bench auto --list shows them)"
        )
    if args.list:
        for c in selected:
            also = f"  (also {', '.join(c.also)})" if c.also else ""
            print(
                f"{c.suite:<13}{c.name:<26} x {c.x_shape} w {c.w_shape} stride {c.stride} "
                f"padding {c.padding} dilation {c.dilation} groups {c.groups}{also}"
            )
        print(f"{len(selected)} cases")
        return 0
    threads = args.threads or F.get_num_threads()
    res = run(selected, threads, args.repeat, "torch" in args.compare, not args.no_progress)
    m = res["meta"]
    print(
        f"fastconv bench auto | {cpu_line(F.hardware())} | ISA {m['isa']} | threads {threads} "
        f"| batches {','.join(map(str, m['batches']))} | repeat {args.repeat} | "
        f"torch {m['torch'] or 'not compared'}"
    )
    sys.stdout.write(format_table(res["rows"]))
    sys.stdout.write(format_summary(res["summary"], m))
    write_results(
        "fastconv bench auto", res, args.json, args.plot, lambda path: plot(res["rows"], path)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Thread scaling of whole-network inference: ``fastconv bench infer`` at several thread counts.

    python bench/thread_scaling.py [--threads 1,2,4,8,16] [--nets resnet50,googlenet]
        [--batches 1,8] [--repeat 3] [--compare torch,onnxruntime,openvino]
        [--json scaling.json] [--plot scaling.png] [--keep DIR]
        [--steps resnet50:8,googlenet:1] [--steps-repeat 5]

Each thread count runs in a fresh process (``python -m fastconv bench infer --threads N``, with
OMP_NUM_THREADS=N for every OpenMP runtime it loads): OpenMP's and the peers' thread pools are
sized once per process. Per (net, batch) the table gives, at each count, the plan's time, its
speed-up over one thread and parallel efficiency (speed-up / threads), the fastest peer's time
and the plan's speed against it, and the plan's GFLOP/s as a share of the SGEMM rate that
count's run measured. The plot shows each case's speed-up over one thread, the plan's and the
fastest peer's, beside the ideal line. --keep keeps each count's ``bench infer`` JSON.

--steps NET:BATCH[,...] adds, per listed plan, where the time goes at each count: the plan
compiled and profiled step by step (``Plan.profile``, best of --steps-repeat) in a fresh
process per count, then each kind of step (op and algorithm, e.g. ``conv/winograd``) with
its summed time, speed-up over the fewest threads and share of the plan, and the steps that
scale worst. That names the layers that keep a whole network from scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def _ints(s):
    try:
        vals = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {s!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {s!r}")
    return vals


def run_count(threads, args, out_dir):
    """One ``bench infer`` run at ``threads``; returns its JSON."""
    path = os.path.join(out_dir, f"infer-{threads}t.json")
    cmd = [
        sys.executable,
        "-m",
        "fastconv",
        "bench",
        "infer",
        "--threads",
        str(threads),
        "--nets",
        args.nets,
        "--batches",
        args.batches,
        "--repeat",
        str(args.repeat),
        "--compare",
        args.compare,
        "--json",
        path,
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    print(f"== {threads} thread{'s' if threads > 1 else ''}: {' '.join(cmd[1:])}", flush=True)
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        code = done.returncode
        sys.exit(f"thread_scaling: bench infer at {threads} threads failed (exit {code})")
    with open(path) as f:
        return json.load(f)


_STEPS_CODE = r"""
import json, sys
import numpy as np
import fastconv.functional as F
from fastconv import inference, models
from fastconv._model_inputs import model_input
from fastconv.autograd import manual_seed

name, batch, threads, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
F.set_num_threads(threads)
manual_seed(0)
model = models.get_model(name).eval()
spec = model_input(name)
x = np.random.default_rng(0).standard_normal(
    (batch, spec.channels, spec.native, spec.native), dtype=np.float32)
plan = inference.compile(model, x, tune=False)
plan(x)
secs = plan.profile(x, repeat)
steps = plan._for(x.shape).steps
print(json.dumps([
    {"op": s.op, "algo": s.algo, "in": list(s.in_shape), "out": list(s.out_shape),
     "fused": list(s.fused), "s": t} for s, t in zip(steps, secs)]))
"""


def profile_steps(net, batch, threads, repeat):
    """Per-step seconds of net's batch plan at `threads`, in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-c", _STEPS_CODE, net, str(batch), str(threads), str(repeat)]
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(
            f"thread_scaling: profiling {net} batch {batch} at {threads} threads failed "
            f"(exit {done.returncode}):\n{done.stderr[-2000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _kind(step):
    return f"{step['op']}/{step['algo']}" if step["algo"] else step["op"]


def step_rows(per_count):
    """per_count: {threads: [step, ...]} for one plan. Kinds of step with summed time per
    count, and each step's own times (the algorithm the plan chose at each count)."""
    counts = sorted(per_count)
    base = counts[0]
    n = len(per_count[base])
    if any(len(per_count[t]) != n for t in counts):
        raise ValueError("the plan has a different number of steps at another thread count")
    kinds = {}
    for i in range(n):
        k = _kind(per_count[base][i])
        row = kinds.setdefault(k, {t: 0.0 for t in counts})
        for t in counts:
            row[t] += per_count[t][i]["s"]
    steps = [
        {
            "index": i,
            "op": per_count[base][i]["op"],
            "in": per_count[base][i]["in"],
            "out": per_count[base][i]["out"],
            "algo": {t: per_count[t][i]["algo"] for t in counts},
            "s": {t: per_count[t][i]["s"] for t in counts},
        }
        for i in range(n)
    ]
    return kinds, steps


def format_steps(label, per_count, worst=8):
    counts = sorted(per_count)
    base, top = counts[0], counts[-1]
    kinds, steps = step_rows(per_count)
    total = {t: sum(s["s"] for s in per_count[t]) for t in counts}
    lines = [f"{label}: step times summed by kind (ms), speed-up over {base} thread(s) in ()"]
    lines.append(f"{'kind':22s}" + "".join(f"{str(t) + 't':>16s}" for t in counts) + "  share")
    for k, row in sorted(kinds.items(), key=lambda kv: -kv[1][top]):
        cells = "".join(
            f"{row[t] * 1e3:>9.2f} ({row[base] / row[t] * base:4.1f})" if row[t] else f"{'-':>16s}"
            for t in counts
        )
        lines.append(f"{k:22s}{cells}  {100 * row[top] / total[top]:4.0f}%")
    cells = "".join(
        f"{total[t] * 1e3:>9.2f} ({total[base] / total[t] * base:4.1f})" for t in counts
    )
    lines.append(f"{'all steps':22s}{cells}")
    lines.append(f"the {worst} steps with the most time at {top} threads over the ideal:")

    def lost(s):
        return s["s"][top] - s["s"][base] * base / top

    for s in sorted(steps, key=lambda s: -lost(s))[:worst]:
        algos = "/".join(sorted(set(s["algo"].values()))) or "-"
        lines.append(
            f"  #{s['index']:<3d} {s['op']:<12s} {str(tuple(s['in'])):<20s} -> "
            f"{str(tuple(s['out'])):<20s} {algos:<18s}"
            + " ".join(f"{s['s'][t] * 1e3:.3f}" for t in counts)
            + f" ms, speed-up {s['s'][base] / s['s'][top] * base:.1f}"
        )
    return "\n".join(lines) + "\n"


def _cases(spec):
    out = []
    for part in spec.split(","):
        net, _, batch = part.partition(":")
        try:
            out.append((net.strip(), int(batch or 1)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NET:BATCH pairs, got {part!r}") from None
    return out


def scaling_rows(runs):
    """runs: {threads: bench infer JSON}. One row per (net, batch) with per-count figures."""
    counts = sorted(runs)
    base = counts[0]
    cases = [(r["net"], r["batch"]) for r in runs[base]["rows"]]
    out = []
    for net, batch in cases:
        per = {}
        for t in counts:
            row = next(r for r in runs[t]["rows"] if r["net"] == net and r["batch"] == batch)
            peer = row["best_peer"]
            per[t] = {
                "plan_ms": row["ms"]["plan"],
                "best_peer": peer,
                "peer_ms": row["ms"][peer] if peer else None,
                "vs_best_peer": row["vs_best_peer"],
                "gflops": row["gflops"],
                "sgemm_gflops": runs[t]["meta"]["sgemm_gflops"],
            }
        b = per[base]
        for t in counts:
            p = per[t]
            p["speedup"] = b["plan_ms"] / p["plan_ms"] * base
            p["efficiency"] = p["speedup"] / t
            p["peer_speedup"] = b["peer_ms"] / p["peer_ms"] * base if p["peer_ms"] else None
        out.append({"net": net, "batch": batch, "threads": per})
    return out


def format_table(rows, runs):
    counts = sorted(runs)
    lines = [
        "SGEMM rate (float32 2048^3): "
        + ", ".join(f"{t}t {runs[t]['meta']['sgemm_gflops']:.0f}" for t in counts)
        + " GFLOP/s",
        f"{'net':14s}{'batch':>6s}{'threads':>8s}{'plan ms':>10s}{'speed-up':>10s}{'eff':>6s}"
        f"{'best peer':>13s}{'peer ms':>10s}{'peer x':>8s}{'vs peer':>9s}{'%sgemm':>8s}",
    ]
    for r in rows:
        for t in counts:
            p = r["threads"][t]
            peer = p["best_peer"] or "-"
            peer_ms = f"{p['peer_ms']:.1f}" if p["peer_ms"] else "-"
            peer_x = f"{p['peer_speedup']:.2f}" if p["peer_speedup"] else "-"
            vs = f"{p['vs_best_peer']:.2f}x" if p["vs_best_peer"] else "-"
            lines.append(
                f"{r['net']:14s}{r['batch']:>6d}{t:>8d}{p['plan_ms']:>10.1f}{p['speedup']:>10.2f}"
                f"{p['efficiency']:>6.2f}{peer:>13s}{peer_ms:>10s}{peer_x:>8s}{vs:>9s}"
                f"{100 * p['gflops'] / p['sgemm_gflops']:>7.0f}%"
            )
    return "\n".join(lines) + "\n"


def plot(rows, runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastconv._io import save_figure

    counts = sorted(runs)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(counts, counts, "k:", label="ideal")
    for i, r in enumerate(rows):
        color = f"C{i % 10}"
        label = f"{r['net']} b{r['batch']}"
        plan = [r["threads"][t]["speedup"] for t in counts]
        ax.plot(counts, plan, "o-", color=color, label=label)
        peer = [r["threads"][t]["peer_speedup"] for t in counts]
        if all(peer):
            ax.plot(counts, peer, "x--", color=color, alpha=0.6, label=f"{label}, fastest peer")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(counts)
    ax.set_xticklabels([str(t) for t in counts])
    ax.set_xlabel("threads")
    ax.set_ylabel(f"speed-up over {counts[0]} thread{'s' if counts[0] > 1 else ''}")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=_ints, default=[1, 2, 4, 8, 16])
    ap.add_argument("--nets", default="resnet50,googlenet")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare", default="torch,onnxruntime,openvino")
    ap.add_argument("--json", help="write the scaling rows and each run's facts as JSON")
    ap.add_argument("--plot", help="speed-up over the fewest threads, per case (matplotlib)")
    ap.add_argument("--keep", help="a folder to keep each thread count's bench infer JSON in")
    ap.add_argument("--steps", type=_cases, default=[], help="NET:BATCH plans to profile per step")
    ap.add_argument("--steps-repeat", type=int, default=5)
    ap.add_argument("--no-bench", action="store_true", help="only the per-step profiles")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("argument --repeat: must be >= 1")
    if args.steps_repeat < 1:
        ap.error("argument --steps-repeat: must be >= 1")
    if args.no_bench and not args.steps:
        ap.error("--no-bench needs --steps")
    counts = sorted(set(args.threads))
    result = {}
    if not args.no_bench:
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = args.keep or tmp
            os.makedirs(out_dir, exist_ok=True)
            runs = {t: run_count(t, args, out_dir) for t in counts}
        rows = scaling_rows(runs)
        meta = {t: runs[t]["meta"] for t in counts}
        print(f"thread scaling | {json.dumps(meta[counts[0]])}")
        sys.stdout.write(format_table(rows, runs))
        result = {"meta": {str(t): m for t, m in meta.items()}, "rows": rows}
    result["steps"] = []
    for net, batch in args.steps:
        per_count = {}
        for t in counts:
            print(f"== {net} batch {batch}: per-step profile at {t} threads", flush=True)
            per_count[t] = profile_steps(net, batch, t, args.steps_repeat)
        sys.stdout.write(format_steps(f"{net} batch {batch}", per_count))
        result["steps"].append(
            {"net": net, "batch": batch, "threads": {str(t): v for t, v in per_count.items()}}
        )

    from fastconv._io import atomic_write

    if args.json:
        with atomic_write(args.json, binary=False) as f:
            json.dump(result, f, indent=1)
        print(f"results written to {args.json}")
    if args.plot and not args.no_bench:
        plot(rows, runs, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

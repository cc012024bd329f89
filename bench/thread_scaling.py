"""Thread scaling of whole-network inference: ``fastconv bench infer`` at several thread counts.

    python bench/thread_scaling.py [--threads 1,2,4,8,16] [--nets resnet50,googlenet]
        [--batches 1,8] [--repeat 3] [--compare torch,onnxruntime,openvino]
        [--json scaling.json] [--plot scaling.png] [--keep DIR]

Each thread count runs in a fresh process (``python -m fastconv bench infer --threads N``, with
OMP_NUM_THREADS=N for every OpenMP runtime it loads): OpenMP's and the peers' thread pools are
sized once per process. Per (net, batch) the table gives, at each count, the plan's time, its
speed-up over one thread and parallel efficiency (speed-up / threads), the fastest peer's time
and the plan's speed against it, and the plan's GFLOP/s as a share of the SGEMM rate that
count's run measured. The plot shows each case's speed-up over one thread, the plan's and the
fastest peer's, beside the ideal line. --keep keeps each count's ``bench infer`` JSON.
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
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("argument --repeat: must be >= 1")
    counts = sorted(set(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or tmp
        os.makedirs(out_dir, exist_ok=True)
        runs = {t: run_count(t, args, out_dir) for t in counts}
    rows = scaling_rows(runs)
    meta = {t: runs[t]["meta"] for t in counts}
    print(f"thread scaling | {json.dumps(meta[counts[0]])}")
    sys.stdout.write(format_table(rows, runs))

    from fastconv._io import atomic_write

    if args.json:
        with atomic_write(args.json, binary=False) as f:
            json.dump({"meta": {str(t): m for t, m in meta.items()}, "rows": rows}, f, indent=1)
        print(f"results written to {args.json}")
    if args.plot:
        plot(rows, runs, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

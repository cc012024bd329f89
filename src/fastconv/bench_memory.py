"""fastconv bench memory: the peak resident memory (RSS high-water mark) of whole training steps,
fastconv next to PyTorch, each library in a fresh process of its own.

A process's high-water mark covers its whole life, so each (network, batch, library) runs in a
new Python process that imports only that library (fastconv's never imports torch), builds the
network and its inputs, runs ``--repeat`` training steps (bench_train.training_step: SGD with
momentum, as ``fastconv bench nets`` times them) and reports its RSS just before the first step,
its high-water mark after the last (VmHWM in /proc/self/status; getrusage's ru_maxrss where
there is no /proc) and its fastest step. PyTorch trains its torch.nn twin with the same weights.
fastconv's array and workspace caches keep what they hold, as in a user's run; its peak counts
them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from . import functional as F
from . import models
from ._cliargs import add_net_options, add_run_options
from .bench import _progress, cpu_line, write_results

__all__ = ["main", "measure"]

PEERS = ("torch",)
NETS = ("resnet50",)
CHILD = "--child"  # argv[1] of the measuring process: python -m fastconv.bench_memory --child JSON
TIMEOUT_S = 1800  # one process's limit (ResNet-50 at batch 64 on 2 cores: about 3 minutes)


def _status_mib(key):
    """A VmXXX line of /proc/self/status in MiB, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_mib():
    hwm = _status_mib("VmHWM")
    if hwm is not None:
        return hwm
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # (KiB on Linux, bytes on macOS)
    return kib / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def _child(spec):
    """The measuring process: one library, one network, one batch (spec: a dict, see measure)."""
    import gc

    import numpy as np

    from .bench_train import step_setup, training_step

    lib, threads = spec["lib"], spec["threads"]
    F.set_num_threads(threads)
    model, x, y, kw = step_setup(spec["net"], spec["batch"], spec["size"])
    torch = state = None
    if lib == "torch":
        import torch

        torch.set_num_threads(threads)
        state = {k: np.array(v) for k, v in model.state_dict().items()}
        model = None  # (only the twin stays)
    step = training_step(lib, spec["net"], x, y, kw, model, state, torch)
    state = None
    gc.collect()
    before = _status_mib("VmRSS")
    times = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "rss_before_mib": before,
        "peak_mib": _peak_mib(),
        "step_ms": min(times) * 1e3,
        "first_step_ms": times[0] * 1e3,
        "torch_imported": "torch" in sys.modules,
    }


def measure(lib, net, batch, steps, threads, size=None, timeout=TIMEOUT_S):
    """Runs one library's training steps in a fresh process and returns its row: net, batch,
    size, lib, steps, rss_before_mib, peak_mib, step_ms, first_step_ms. A process that fails
    or runs past ``timeout`` seconds raises RuntimeError with the end of its error output."""
    spec = {"lib": lib, "net": net, "batch": batch, "steps": steps, "threads": threads}
    spec["size"] = size
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fastconv.bench_memory", CHILD, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{lib} {net} b{batch}: no result within {timeout} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        err = done.stderr.strip().splitlines() or ["(no error output)"]
        raise RuntimeError(
            f"{lib} {net} b{batch}: the measuring process failed (exit status "
            f"{done.returncode}): {err[-1]}\n" + "\n".join(err[-8:-1])
        )
    row = {"net": net, "batch": batch, "size": size, "lib": lib, "steps": steps}
    row.update(json.loads(lines[-1]))
    return row


def format_table(rows):
    head = (
        f"{'net':14s} {'batch':>5s}  {'lib':9s} {'RSS before':>11s} {'peak RSS':>10s} "
        f"{'step ms':>9s}  peak vs torch"
    )
    out = [head]
    torch_peak = {(r["net"], r["batch"]): r["peak_mib"] for r in rows if r["lib"] == "torch"}
    for r in rows:
        ref = torch_peak.get((r["net"], r["batch"]))
        vs = f"{r['peak_mib'] / ref:.2f}x" if ref and r["lib"] != "torch" else ""
        out.append(
            f"{r['net']:14s} {r['batch']:5d}  {r['lib']:9s} {r['rss_before_mib']:8.0f} MiB "
            f"{r['peak_mib']:6.0f} MiB {r['step_ms']:9.1f}  {vs}"
        )
    return "\n".join(out) + "\n"


def plot(rows, path):
    """Per (net, batch), each library's peak RSS, with its RSS before the steps inside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._io import save_figure

    cases = list(dict.fromkeys((r["net"], r["batch"]) for r in rows))
    libs = list(dict.fromkeys(r["lib"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.6 * len(cases)))
    h = 0.8 / len(libs)
    for j, lib in enumerate(libs):
        mine = [(cases.index((r["net"], r["batch"])), r) for r in rows if r["lib"] == lib]
        ys = [i + (j - len(libs) / 2 + 0.5) * h for i, _ in mine]
        bars = ax.barh(ys, [r["peak_mib"] for _, r in mine], height=h, label=f"{lib} peak")
        ax.barh(
            ys,
            [r["rss_before_mib"] for _, r in mine],
            height=h,
            color=bars.patches[0].get_facecolor() if bars.patches else None,
            alpha=0.45,
            hatch="//",
            label=f"{lib} before the steps",
        )
    ax.set_yticks(range(len(cases)))
    ax.set_yticklabels([f"{n} b{b}" for n, b in cases])
    ax.invert_yaxis()
    ax.set_xlabel("resident memory (MiB)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fastconv bench memory", description=__doc__.split("\n\n")[0])
    add_net_options(ap, models.MODELS, NETS, [16], size=True)
    add_run_options(
        ap,
        PEERS,
        ",".join(PEERS),
        "the rows",
        "bars of each library's RSS before the steps and its peak",
        "training steps per process; the fastest step's time is reported (default 3)",
    )
    args = ap.parse_args(argv)
    if not args.nets:
        ap.error("argument --nets: no network given")
    threads = args.threads or F.get_num_threads()
    libs = ["fastconv"] + list(args.compare)
    bar = _progress(len(args.nets) * len(args.batches) * len(libs), not args.no_progress)
    rows = []
    try:
        for net in args.nets:
            for batch in args.batches:
                for lib in libs:
                    bar.set_description(f"{net} b{batch} {lib}")
                    try:
                        rows.append(measure(lib, net, batch, args.repeat, threads, args.size))
                    except RuntimeError as e:
                        sys.exit(f"fastconv bench memory: {e}")
                    bar.update()
    finally:
        bar.close()
    meta = {"isa": F.isa(), "threads": threads, "steps": args.repeat}
    print(
        f"fastconv bench memory | {cpu_line(F.hardware())} | ISA {meta['isa']} "
        f"| threads {threads} | {args.repeat} training steps per process"
    )
    sys.stdout.write(format_table(rows))
    write_results(
        "fastconv bench memory",
        {"meta": meta, "rows": rows},
        args.json,
        args.plot,
        lambda path: plot(rows, path),
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD]:
        print(json.dumps(_child(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())

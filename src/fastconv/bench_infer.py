"""``fastconv bench infer``: whole-network inference, fastconv's compiled plan against its peers.

Per network and batch, in one process and on the same weights: the fastconv plan
(``fastconv.inference.compile``), fastconv eager (the ``fastconv.nn`` model under ``no_grad``),
PyTorch eager, and, when installed (``pip install 'fastconv[infer]'``), ONNX Runtime and
OpenVINO on the network exported from its PyTorch definition with ``torch.onnx.export``. The
PyTorch definition is the captured graph run op for op by torch.nn.functional
(``fastconv.inference._twin``), so every runtime gets the very same network. The runners take
turns within each of ``--repeat`` rounds; the table gives each one's best round, and the JSON also
its median and slowest round (how much the figure moved).
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import time

import numpy as np

from . import functional as F
from . import inference, models
from ._cliargs import BEST_OF_ROUNDS, add_net_options, add_run_options
from ._model_inputs import model_input
from .autograd import Tensor, manual_seed, no_grad
from .bench import (
    _progress,
    core_probe,
    cpu_line,
    import_torch,
    probe_at_best,
    sgemm_rate,
    time_rounds,
    write_results,
)

NETS = ("resnet18", "resnet50", "vgg16", "googlenet", "alexnet", "se_resnet50", "inception_v3")
PEERS = ("torch", "onnxruntime", "openvino")
RUNNERS = ("plan", "eager") + PEERS


def net_flops(graph, x_shape):
    """2 x multiply-adds of the convolutions and linear layers for an input of x_shape."""
    from .inference import _lower

    shapes, total = {0: tuple(x_shape)}, 0
    for n in graph.nodes:
        shapes[n.out] = _lower._shape_of(n, shapes)
        out = shapes[n.out]
        if n.op == "conv":
            w = n.consts["weight"].shape
            total += 2 * int(np.prod(out)) * w[1] * w[2] * w[3]
        elif n.op == "linear":
            total += 2 * int(np.prod(out)) * n.consts["weight"].shape[1]
    return total


def _onnx_bytes(twin, x_t):
    import torch

    buf = io.BytesIO()
    kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    torch.onnx.export(
        twin, (x_t,), buf, input_names=["x"], output_names=["y"], opset_version=17, **kw
    )
    return buf.getvalue()


def peer_runners(graph, x, threads, compare, torch):
    """{name: callable(), ...} for the peers asked for and installed, and {name: why not}."""
    run, skipped = {}, {}
    if torch is None:
        return run, {p: "torch is not installed" for p in compare}
    from .inference._twin import torch_twin

    twin = torch_twin(graph)
    x_t = torch.from_numpy(x)
    if "torch" in compare:

        def torch_run():
            with torch.inference_mode():
                return twin(x_t).numpy()

        run["torch"] = torch_run
    onnx_model = None
    if {"onnxruntime", "openvino"} & set(compare):
        try:
            onnx_model = _onnx_bytes(twin, x_t)
        except Exception as e:  # an exporter without onnx installed, say
            for p in ("onnxruntime", "openvino"):
                skipped[p] = f"torch.onnx.export failed: {type(e).__name__}: {e}"
    if "onnxruntime" in compare and onnx_model is not None:
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(onnx_model, so, providers=["CPUExecutionProvider"])
            run["onnxruntime"] = lambda: sess.run(None, {"x": x})[0]
        except ImportError:
            skipped["onnxruntime"] = "onnxruntime is not installed (pip install 'fastconv[infer]')"
    if "openvino" in compare and onnx_model is not None:
        try:
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(
                core.read_model(onnx_model),
                "CPU",
                {
                    "INFERENCE_NUM_THREADS": threads,
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": "f32",
                },
            )
            req = compiled.create_infer_request()
            run["openvino"] = lambda: req.infer({0: x})[compiled.output(0)]
        except ImportError:
            skipped["openvino"] = "openvino is not installed (pip install 'fastconv[infer]')"
    return run, skipped


def bench_net(name, batch, threads, repeat, compare, torch, tune, seed=0, probe=None):
    """One row: each runner's median/min/max ms over interleaved rounds, and the facts; with
    probe (bench.core_probe), the cores' round trip before each round and before the plan's
    best."""
    manual_seed(seed)
    model = models.get_model(name).eval()
    spec = model_input(name)  # each network at the size it was published for
    channels, size = spec.channels, spec.native
    x = np.random.default_rng(seed).standard_normal((batch, channels, size, size), dtype=np.float32)
    t0 = time.perf_counter()
    plan = inference.compile(model, x, tune=tune)
    compile_s = time.perf_counter() - t0
    graph = inference._graph.capture(model, x)
    runners = {"plan": lambda: plan(x)}

    def eager():
        with no_grad():
            return model(Tensor(x)).data

    runners["eager"] = eager
    peers, skipped = peer_runners(graph, x, threads, compare, torch)
    runners.update(peers)
    ref = plan(x)
    errors = {}
    for k, f in runners.items():
        y = np.asarray(f())  # (also the first run, where ONNX Runtime and OpenVINO allocate)
        errors[k] = float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))
    # each timed call after an untimed one, after 30 ms of them where the library changes
    libs = {"plan": "fastconv", "eager": "fastconv"}
    probes = []
    rounds = time_rounds(
        {k: (f, libs.get(k, k)) for k, f in runners.items()}, repeat, probe=probe, probes=probes
    )
    times = {k: [t * 1e3 for t in v] for k, v in rounds.items()}
    ms = {k: min(v) for k, v in times.items()}  # best of the rounds (this machine is noisy)
    peer_ms = {k: ms[k] for k in PEERS if k in ms}
    best = min(peer_ms, key=peer_ms.get) if peer_ms else None
    flops = net_flops(graph, x.shape)
    return {
        "net": name,
        "batch": batch,
        "ms": ms,
        "median_ms": {k: statistics.median(v) for k, v in times.items()},
        "max_ms": {k: max(v) for k, v in times.items()},
        "best_peer": best,
        "vs_best_peer": peer_ms[best] / ms["plan"] if best else None,
        "images_per_s": batch / ms["plan"] * 1e3,
        "gflops": flops / ms["plan"] / 1e6,
        "compile_s": compile_s,
        "max_rel_err": errors,
        "skipped": skipped,
        "round_trip_ns": probes or None,
        "plan_round_trip_ns": probe_at_best(times["plan"], probes),
    }


def format_table(rows, peak):
    cols = [r for r in RUNNERS if any(r in row["ms"] for row in rows)]
    head = f"{'net':<13}{'batch':>5}" + "".join(f"{c + ' ms':>15}" for c in cols)
    head += (
        f"{'best peer':>13}{'vs best':>9}{'img/s':>8}{'GFLOP/s':>9}{'%sgemm':>8}{'compile s':>10}"
    )
    probed = [r["plan_round_trip_ns"] for r in rows if r.get("plan_round_trip_ns") is not None]
    if probed:
        head += f"{'cores ns':>10}"
    lines = [head]
    for r in rows:
        line = f"{r['net']:<13}{r['batch']:>5}"
        line += "".join(f"{r['ms'][c]:>15.1f}" if c in r["ms"] else f"{'-':>15}" for c in cols)
        vs = f"{r['vs_best_peer']:.2f}x" if r["vs_best_peer"] else "-"
        line += (
            f"{r['best_peer'] or '-':>13}{vs:>9}{r['images_per_s']:>8.1f}{r['gflops']:>9.1f}"
            f"{100 * r['gflops'] / peak:>7.0f}%{r['compile_s']:>10.1f}"
        )
        if probed:
            rt = r.get("plan_round_trip_ns")
            line += f"{rt:>10.0f}" if rt is not None else f"{'-':>10}"
        lines.append(line)
    ratios = [r["vs_best_peer"] for r in rows if r["vs_best_peer"]]
    if ratios:
        geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
        lines.append(
            f"plan vs the fastest peer per case: geomean {geo:.2f}x, min {min(ratios):.2f}x "
            f"(>1: the plan is faster)"
        )
    if probed:
        lines.append(
            f"cores ns: a cache line's round trip between the first two CPUs before the plan's "
            f"best round (lowest in this run {min(probed):.0f} ns); rows at several times the "
            f"lowest ran while the host had the threads on cores that share no L3, where plans "
            f"lose more than their peers (ARCHITECTURE.md)"
        )
    for r in rows:
        for p, why in r["skipped"].items():
            lines.append(f"{r['net']} b{r['batch']}: {p} skipped: {why}")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """Per case, each runner's speed relative to the fastest peer (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._io import save_figure

    labels = [f"{r['net']} b{r['batch']}" for r in rows]
    cols = [c for c in RUNNERS if any(c in r["ms"] for r in rows)]
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.5 * len(rows)))
    h = 0.8 / len(cols)
    for j, c in enumerate(cols):
        vals = [
            (i, r["ms"][r["best_peer"]] / r["ms"][c])
            for i, r in enumerate(rows)
            if c in r["ms"] and r["best_peer"]
        ]
        ax.barh(
            [i + (j - len(cols) / 2 + 0.5) * h for i, _ in vals],
            [v for _, v in vals],
            height=h,
            label=c,
        )
    ax.axvline(1, color="k", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlabel("speed relative to the fastest peer (>1: faster)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fastconv bench infer", description=__doc__.split("\n\n")[0])
    add_net_options(ap, models.MODELS, NETS, [1, 8])
    ap.add_argument(
        "--tune",
        action="store_true",
        help="compile with the autotuner measuring each convolution's algorithms",
    )
    add_run_options(
        ap, PEERS, ",".join(PEERS), "the rows", "speed relative to the fastest peer", BEST_OF_ROUNDS
    )
    args = ap.parse_args(argv)
    if not args.nets:
        ap.error("argument --nets: no network given")
    threads = args.threads or F.get_num_threads()
    F.set_num_threads(threads)
    torch = import_torch(threads)
    peak = sgemm_rate(threads)
    probe = core_probe() if threads >= 2 else None
    bar = _progress(len(args.nets) * len(args.batches), not args.no_progress)
    rows = []
    try:
        for name in args.nets:
            for batch in args.batches:
                bar.set_description(f"{name} b{batch}")
                rows.append(
                    bench_net(
                        name,
                        batch,
                        threads,
                        args.repeat,
                        args.compare,
                        torch,
                        args.tune,
                        probe=probe,
                    )
                )
                bar.update()
    finally:
        bar.close()
    meta = {
        "isa": F.isa(),
        "threads": threads,
        "repeat": args.repeat,
        "sgemm_gflops": peak,
        "torch": getattr(torch, "__version__", None),
    }
    for mod in ("onnxruntime", "openvino"):
        try:
            meta[mod] = __import__(mod).__version__
        except ImportError:
            meta[mod] = None
    print(
        f"fastconv bench infer | {cpu_line(F.hardware())} | ISA {meta['isa']} "
        f"| threads {threads} | best of {args.repeat} | torch {meta['torch']} "
        f"| onnxruntime {meta['onnxruntime']} | openvino {meta['openvino']}"
    )
    print(f"SGEMM rate (float32 2048^3, {threads} threads): {peak:.1f} GFLOP/s")
    sys.stdout.write(format_table(rows, peak))
    write_results(
        "fastconv bench infer",
        {"meta": meta, "rows": rows},
        args.json,
        args.plot,
        lambda path: plot(rows, path),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

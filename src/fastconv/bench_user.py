"""Benchmarks of the user's own layers and networks, timed and reported as ``fastconv bench``
times its suites (the libraries taking turns over ``--repeat`` interleaved rounds, each
reporting its best, next to PyTorch CPU in the same process):

* ``fastconv bench shapes --shape N,C,H,W:K,kh,kw[:stride,pad,dilation,groups]`` (repeatable):
  forward, data-gradient and weight-gradient convolutions of those shapes, in place of the
  built-in shapes suite;
* ``fastconv bench model NAME --batch B``: a model of fastconv.models, forward (eval mode, no
  graph) and forward+backward (training mode, cross-entropy), next to its torch.nn twin from
  fastconv._torch_models when there is one, with the same weights.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from . import functional as F
from ._cliargs import BEST_OF_ROUNDS, add_run_options, int_at_least
from ._threads import threads as thread_block

__all__ = ["conv_shape", "run_shapes", "main_model", "torch_twin"]

SHAPE_FORMAT = "N,C,H,W:K,kh,kw[:stride,pad,dilation,groups]"


def conv_shape(text):
    """argparse type: one convolution as ``N,C,H,W:K,kh,kw[:stride,pad,dilation,groups]`` (the
    last part may stop early: ``:2,1`` is stride 2, padding 1) -> a bench case
    ``(name, x_shape, w_shape, stride, padding, dilation, groups)``."""
    spec = "".join(text.split())
    parts = spec.split(":")
    try:
        fields = [[int(v) for v in part.split(",")] for part in parts]
    except ValueError:
        fields = []
    if not (
        2 <= len(fields) <= 3
        and len(fields[0]) == 4
        and len(fields[1]) == 3
        and (len(fields) == 2 or 1 <= len(fields[2]) <= 4)
    ):
        raise argparse.ArgumentTypeError(f"must be {SHAPE_FORMAT} (integers), got {text!r}")
    (n, c, h, w), (k, kh, kw) = fields[:2]
    extra = fields[2] if len(fields) == 3 else []
    s, p, d, g = extra + [1, 0, 1, 1][len(extra) :]  # the defaults of what is left out
    if min(n, c, h, w, k, kh, kw, s, d, g) < 1 or p < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: sizes, stride, dilation and groups must be >= 1 and padding >= 0"
        )
    if c % g or k % g:
        raise argparse.ArgumentTypeError(
            f"{text!r}: groups {g} must divide the input channels "
            f"C={c} and the output channels K={k}"
        )
    span_h, span_w = d * (kh - 1) + 1, d * (kw - 1) + 1
    if span_h > h + 2 * p or span_w > w + 2 * p:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the {kh}x{kw} kernel (dilation {d}: spans {span_h}x{span_w}) is larger "
            f"than the {h}x{w} input padded by {p}"
        )
    return spec, (n, c, h, w), (k, c // g, kh, kw), s, p, d, g


def _header(command, threads, what, repeat, torch):
    from .bench import cpu_line

    print(
        f"{command} | {cpu_line(F.hardware())} | ISA {F.isa()} | threads {threads} | {what} "
        f"| repeat {repeat} | torch {getattr(torch, '__version__', None) or 'not used'}"
    )


def run_shapes(args, ap):
    """``fastconv bench shapes --shape ...``: the parsed arguments of bench.main."""
    from .bench import (
        _progress,
        bench_layer,
        format_table,
        import_torch,
        plot,
        sgemm_rate,
        spread_line,
        write_results,
    )

    if args.suite != "shapes":
        ap.error(
            f"argument --shape: times your layers in the shapes suite (fastconv bench "
            f"shapes --shape {SHAPE_FORMAT}), not in {args.suite!r}"
        )
    if args.batch is not None:
        ap.error("argument --batch: with --shape each shape's N is its batch")
    n_threads = args.threads or F.get_num_threads()
    cases = list(dict.fromkeys(args.shape))
    with thread_block(n_threads):
        torch = import_torch(n_threads) if "torch" in args.compare else None
        peak = sgemm_rate(n_threads)
        libs = ["fastconv"] + [f"fastconv:{a}" for a in args.algos] + list(args.compare)
        bar = _progress(len(cases) * len(libs) * 3, not args.no_progress)
        rows = []
        try:
            for case in cases:
                bar.set_description(f"shapes {case[0]}")
                rows += bench_layer(*case, libs, torch, args.repeat, bar.update, suite="shapes")
        finally:
            bar.close()
    _header(
        "fastconv bench",
        n_threads,
        f"{len(cases)} shape{'s' * (len(cases) > 1)}",
        args.repeat,
        torch,
    )
    print(f"SGEMM rate (NumPy OpenBLAS, float32 2048^3, {n_threads} threads): {peak:.1f} GFLOP/s")
    sys.stdout.write(format_table(rows, peak))
    sys.stdout.write(spread_line(rows, args.repeat))
    meta = {
        "isa": F.isa(),
        "hardware": F.hardware(),
        "threads": n_threads,
        "repeat": args.repeat,
        "sgemm_gflops": peak,
        "shapes": [c[0] for c in cases],
        "torch": getattr(torch, "__version__", None),
    }
    res = {"meta": meta, "rows": rows}
    write_results("fastconv bench", res, args.json, args.plot, lambda path: plot(rows, peak, path))
    return 0


# ---------------------------------------------------------------------------------------------
# fastconv bench model NAME

_TORCH_RESNETS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}
_TORCH_VGGS = {
    f"vgg{depth}{bn}": (cfg, bool(bn))
    for depth, cfg in (("11", "A"), ("13", "B"), ("16", "D"), ("19", "E"))
    for bn in ("", "_bn")
}


def torch_twin(name, num_classes, **kw):
    """The torch.nn model of fastconv._torch_models with ``name``'s layout, or None: GoogLeNet's
    twin there holds the layers only (no forward), and the convnet-benchmarks variants
    (alexnet_owt, overfeat_fast, vgg_a, googlenet_v1) have none. ``kw`` goes to the twins of
    _torch_models.TWINS (``aux_logits`` for Inception v3, say)."""
    from . import _torch_models as tm

    if name in _TORCH_RESNETS:
        return tm.torch_resnet(*_TORCH_RESNETS[name], num_classes=num_classes)
    if name == "se_resnet50":
        return tm.torch_resnet(
            *_TORCH_RESNETS["resnet50"], num_classes=num_classes, se_reduction=16
        )
    if name in _TORCH_VGGS:
        from .models.vgg import CFGS

        cfg, batch_norm = _TORCH_VGGS[name]
        return tm.torch_vgg(CFGS[cfg], batch_norm, num_classes=num_classes)
    if name == "alexnet":
        return tm.torch_alexnet(num_classes)
    if name == "lenet5":
        return tm.torch_lenet5(num_classes)
    if name in tm.TWINS:  # inception_v3/v4, inception_resnet_v2, zfnet, nin_*
        return tm.TWINS[name](num_classes=num_classes, **kw)
    return None


def _forward_flops(model, x):
    """2 x the multiply-adds of the convolutions and linear layers (NaN where the model's graph
    cannot be captured)."""
    from .bench_infer import net_flops
    from .inference._graph import capture

    model.eval()
    try:
        return float(net_flops(capture(model, x), x.shape))
    except Exception:  # noqa: BLE001 - a layer the inference graph does not know
        return math.nan


def bench_model(name, batch, size, libs, torch, repeat, tick, timer=None):
    """Rows {"suite": "nets", "case": "<name> b<batch>", "lib", "dir": "fwd" | "fwd+bwd", "ms",
    "gflops", "spread"} and the libraries skipped, {lib: why}. The libraries take turns over
    interleaved rounds, direction by direction (bench.best_rounds; `timer`: bench.time_rounds's
    stand-in in tests)."""
    from . import autograd, models
    from ._model_inputs import model_input
    from .bench import timed_rows
    from .bench_train import train_kwargs, train_loss
    from .nn import functional as nnF

    channels = model_input(name).channels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    kw = train_kwargs(name, batch, size)
    autograd.manual_seed(0)
    model = models.get_model(name, **kw)
    classes = 10 if name in ("lenet5", "nin_cifar") else 1000
    y = rng.integers(0, classes, batch)
    flops = _forward_flops(model, x)
    runs, skipped = {}, {}
    for lib in libs:
        if lib == "fastconv":
            fx = autograd.Tensor(x)

            def fwd():
                model.eval()
                with autograd.no_grad():
                    model(fx)

            def fwdbwd():
                model.train()
                model.zero_grad()
                train_loss(model(fx), y, nnF.cross_entropy).backward()  # (+ an aux head's)
        elif lib == "torch":
            twin = torch_twin(name, classes, **kw) if torch is not None else None
            if twin is None:
                skipped[lib] = (
                    "torch is not installed"
                    if torch is None
                    else f"no runnable torch twin of {name} in fastconv._torch_models"
                )
                continue
            twin.load_state_dict(
                {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
            )
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)

            def fwd():
                twin.eval()
                with torch.no_grad():
                    twin(tx)

            def fwdbwd():
                twin.train()
                twin.zero_grad()
                train_loss(twin(tx), ty, torch.nn.functional.cross_entropy).backward()
        else:
            continue
        runs[lib] = {"fwd": fwd, "fwd+bwd": fwdbwd}

    work = {"fwd": flops, "fwd+bwd": 3 * flops}
    case = f"{name} b{batch}"
    return timed_rows(runs, work, repeat, tick, "nets", case, timer=timer), skipped


def main_model(argv):
    """``fastconv bench model NAME [--batch B] [--size S] ...``."""
    from ._model_inputs import model_input
    from .bench import (
        _progress,
        format_table,
        import_torch,
        plot,
        sgemm_rate,
        spread_line,
        write_results,
    )
    from .models import MODELS

    ap = argparse.ArgumentParser(
        prog="fastconv bench model",
        description="A model of fastconv.models, forward (eval mode, no graph) and "
        "forward+backward (training mode, cross-entropy on random labels), next to "
        "its torch.nn twin (fastconv._torch_models) with the same weights where "
        "there is one: resnet18/34/50/101/152, se_resnet50, alexnet, vgg11-19(_bn), "
        "lenet5, inception_v3/v4, inception_resnet_v2, zfnet, nin_cifar/imagenet.",
    )
    ap.add_argument(
        "name", metavar="NAME", choices=list(MODELS), help=f"one of {', '.join(MODELS)}"
    )
    ap.add_argument("--batch", type=int_at_least(1), default=1, help="batch size (default 1)")
    ap.add_argument(
        "--size",
        type=int_at_least(1),
        default=None,
        help="input height and width (default: the model's native size: 224 for "
        "the ImageNet models, 231 for OverFeat, 32 for LeNet-5)",
    )
    add_run_options(ap, ("torch",), "torch", "the rows", "bar charts of the same", BEST_OF_ROUNDS)
    args = ap.parse_args(argv)
    spec = model_input(args.name)
    size = args.size or spec.native
    if not spec.fits(size):
        ap.error(f"argument --size: {args.name} takes {spec.describe()}, got {size}")
    n_threads = args.threads or F.get_num_threads()
    libs = ["fastconv"] + list(args.compare)
    with thread_block(n_threads):
        torch = import_torch(n_threads) if "torch" in args.compare else None
        peak = sgemm_rate(n_threads)
        bar = _progress(2 * len(libs), not args.no_progress)
        try:
            rows, skipped = bench_model(
                args.name, args.batch, size, libs, torch, args.repeat, bar.update
            )
        finally:
            bar.close()
    _header(
        "fastconv bench model",
        n_threads,
        f"{args.name} batch {args.batch} at {spec.channels}x{size}x{size}",
        args.repeat,
        torch,
    )
    for lib, why in skipped.items():
        print(f"{lib}: skipped ({why})")
    print(f"SGEMM rate (NumPy OpenBLAS, float32 2048^3, {n_threads} threads): {peak:.1f} GFLOP/s")
    sys.stdout.write(format_table(rows, peak))
    sys.stdout.write(spread_line(rows, args.repeat))
    meta = {
        "isa": F.isa(),
        "hardware": F.hardware(),
        "threads": n_threads,
        "model": args.name,
        "batch": args.batch,
        "input": [spec.channels, size, size],
        "repeat": args.repeat,
        "sgemm_gflops": peak,
        "skipped": skipped,
        "torch": getattr(torch, "__version__", None),
    }
    res = {"meta": meta, "rows": rows}
    write_results(
        "fastconv bench model", res, args.json, args.plot, lambda path: plot(rows, peak, path)
    )
    return 0

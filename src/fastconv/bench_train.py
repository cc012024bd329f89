"""Training steps of whole networks for ``fastconv bench nets``: one SGD-with-momentum step
(zero_grad, forward in training mode, cross-entropy, backward, update) of ResNet-18 and
ResNet-50 at 224x224 and Inception v3 at 299x299 (its auxiliary head on, its loss weighted 0.4
as torchvision's reference training does), fastconv (fastconv.models) next to PyTorch (the same
architecture from torch.nn, fastconv._torch_models, with the same weights), taking turns over
interleaved rounds the way every case of ``fastconv bench`` is timed (bench.timed_rows).

``fastconv bench breakdown`` (main_breakdown) splits one such step by where its time goes: each
kernel of fastconv._core is clocked while the step runs, grouped (convolutions, batch norm, the
optimizer...), and what is left is Python and NumPy."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import numpy as np

# The default training steps of `fastconv bench nets`; --train-nets takes any fastconv.models
# name, at the size its architecture was published for (_model_inputs.py's `native`).
TRAIN_NETS = ("resnet18", "resnet50", "inception_v3")
_RESNETS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet50": ("bottleneck", [3, 4, 6, 3])}
AUX_WEIGHT = 0.4  # an auxiliary head's share of the loss (Inception v3's)
CASE = "{} step"  # the row's case name


def _torch_net(name, **kw):
    from . import _torch_models

    if name in _RESNETS:
        return _torch_models.torch_resnet(*_RESNETS[name], **kw)
    return _torch_models.TWINS[name](**kw)


def train_kwargs(name, batch, size):
    """Keyword arguments for building ``name`` to train on ``batch`` images of ``size``: Inception
    v3 without its auxiliary head where that cannot run (it needs 299x299, 17x17 at Mixed_6e, and
    ends in a batch norm of 1x1 maps, which one image gives no batch statistics)."""
    if name == "inception_v3" and (batch < 2 or size < 299):
        return {"aux_logits": False}
    return {}


def train_loss(out, y, cross_entropy):
    """cross_entropy of the logits, plus AUX_WEIGHT x that of an auxiliary head's where the
    training-mode forward returns (logits, aux_logits), as Inception v3's does."""
    if isinstance(out, tuple):
        return cross_entropy(out[0], y) + AUX_WEIGHT * cross_entropy(out[1], y)
    return cross_entropy(out, y)


def step_flops(model, x):
    """3 x the forward FLOPs of the convolutions and linear layers (forward, data and weight
    gradients), counted on the model's graph (captured in eval mode, then back to training; an
    auxiliary head, which runs in training mode only, is not counted)."""
    from .bench_infer import net_flops
    from .inference._graph import capture

    model.eval()
    try:
        return 3.0 * net_flops(capture(model, x), x.shape)
    finally:
        model.train()


def step_setup(name, batch, size=None):
    """(model, x, y, kw) for timing ``name``'s training step: the fastconv.models network (seed 0,
    built with ``kw``, in training mode), ``batch`` random images of ``size`` (default: the size
    its architecture was published for) and random labels."""
    from . import autograd, models
    from ._model_inputs import model_input

    rng = np.random.default_rng(0)
    spec = model_input(name)
    size = size or spec.native
    x = rng.standard_normal((batch, spec.channels, size, size), dtype=np.float32)
    kw = train_kwargs(name, batch, size)
    autograd.manual_seed(0)
    model = models.get_model(name, **kw)
    model.eval()
    with autograd.no_grad():
        classes = model(autograd.Tensor(x[:1])).shape[1]
    model.train()
    return model, x, rng.integers(0, classes, batch), kw


def training_step(lib, name, x, y, kw, model=None, state=None, torch=None):
    """One SGD-with-momentum step (lr 0.01, momentum 0.9, weight decay 1e-4: zero_grad, forward
    in training mode, train_loss, backward, update) of ``lib``'s ``name`` on images ``x`` and
    labels ``y``, as a zero-argument callable. fastconv trains ``model`` (a fastconv.models
    network built with ``kw``); "torch" trains its torch.nn twin with the weights of ``state``
    (a fastconv state_dict; None: the twin's own initialisation)."""
    if lib == "fastconv":
        from . import autograd, optim
        from .nn import functional as F

        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        fx = autograd.Tensor(x)

        def step():
            opt.zero_grad()
            train_loss(model(fx), y, F.cross_entropy).backward()
            opt.step()

        return step
    tmodel = _torch_net(name, **kw)
    if state is not None:
        tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        topt.zero_grad()
        train_loss(tmodel(tx), ty, torch.nn.functional.cross_entropy).backward()
        topt.step()

    return step


def bench_train_step(name, batch, libs, torch, repeat, tick, timer=None):
    """Rows {"suite": "nets", "case": "<net> step", "lib", "dir": "train", "ms", "gflops",
    "spread"}: each library's best round and its slowest over best. `timer`: bench.time_rounds's
    stand-in (tests)."""
    from .bench import timed_rows

    model, x, y, kw = step_setup(name, batch)
    flops = step_flops(model, x)
    state = {k: np.array(v) for k, v in model.state_dict().items()}  # before any step
    steps = {}
    for lib in libs:
        if lib == "fastconv" or (lib == "torch" and torch is not None):
            steps[lib] = {"train": training_step(lib, name, x, y, kw, model, state, torch)}
    # (the libraries take turns, as in every suite of fastconv bench)
    return timed_rows(steps, {"train": flops}, repeat, tick, "nets", CASE.format(name), timer=timer)


# ---------------------------------------------------------------------------------------------
# fastconv bench breakdown: where a training step's time goes

# fastconv._core's kernels by what they do (a Linear layer runs on conv2d's 1x1 path and counts
# as a convolution); everything outside them is "python" (the autograd walk, module calls,
# NumPy's small arrays).
KERNEL_GROUPS = (
    ("convolutions", ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")),
    ("batch norm", ("batch_norm_forward", "batch_norm_backward")),
    ("optimizer", ("sgd_step", "adam_step")),
    (
        "pooling",
        (
            "max_pool2d_forward",
            "max_pool2d_backward",
            "avg_pool2d_forward",
            "avg_pool2d_backward",
            "adaptive_avg_pool2d_forward",
            "adaptive_avg_pool2d_backward",
        ),
    ),
    ("element-wise", ("relu_forward", "relu_backward", "relu_backward_rows", "add_inplace")),
    ("loss", ("softmax_cross_entropy_forward", "softmax_cross_entropy_backward")),
)
# Classes of fastconv._core whose construction and methods run kernels: a training step's
# Winograd or FFT filters prepared for both directions, and the GEMM forwards with a fused ReLU
# (fastconv.functional._forward).
KERNEL_CLASSES = (("convolutions", "Conv2dPrepared", ("forward", "backward_data")),)
REST = "python"  # the step's time outside every kernel above


def _clocked(fn, group, acc):
    """fn, adding the seconds of each call to acc[group]."""

    def clocked(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[group] = acc.get(group, 0.0) + time.perf_counter() - t0

    return clocked


def _clocked_class(cls, group, methods, acc):
    """A stand-in for cls whose construction and ``methods`` add their seconds to acc[group]."""
    make = _clocked(cls, group, acc)

    class Clocked:
        def __init__(self, *args, **kwargs):
            self._obj = make(*args, **kwargs)

    for m in methods:
        call = _clocked(getattr(cls, m), group, acc)  # (the method, called with the object)
        setattr(
            Clocked, m, lambda self, *args, _call=call, **kwargs: _call(self._obj, *args, **kwargs)
        )
    Clocked.__name__ = cls.__name__
    return Clocked


@contextlib.contextmanager
def kernel_clock(acc):
    """While inside, every kernel of KERNEL_GROUPS (and of KERNEL_CLASSES) adds its seconds to
    acc[group] (fastconv calls them as attributes of fastconv._core, so wrapping the attributes
    sees every call)."""
    from . import _core

    saved = {}
    try:
        for group, names in KERNEL_GROUPS:
            for name in names:
                saved[name] = getattr(_core, name)
                setattr(_core, name, _clocked(saved[name], group, acc))
        for group, name, methods in KERNEL_CLASSES:
            saved[name] = getattr(_core, name)
            setattr(_core, name, _clocked_class(saved[name], group, methods, acc))
        yield acc
    finally:
        for name, fn in saved.items():
            setattr(_core, name, fn)


def step_breakdown(name, batch, repeat, size=None, tick=lambda n=1: None):
    """The fastest of ``repeat`` fastconv training steps of ``name`` (after one untimed), split by
    KERNEL_GROUPS: {"net", "batch", "size", "step_ms", "ms": {group: ms, ..., REST: ms}}."""
    model, x, y, kw = step_setup(name, batch, size)
    step = training_step("fastconv", name, x, y, kw, model)
    step()
    best = None
    for _ in range(repeat):
        acc = {}
        with kernel_clock(acc):
            t0 = time.perf_counter()
            step()
            took = time.perf_counter() - t0
        if best is None or took < best[0]:
            best = (took, acc)
        tick()
    took, acc = best
    ms = {group: acc.get(group, 0.0) * 1e3 for group, _ in KERNEL_GROUPS}
    ms[REST] = max(0.0, took * 1e3 - sum(ms.values()))
    return {"net": name, "batch": batch, "size": size, "step_ms": took * 1e3, "ms": ms}


def format_breakdown(rows):
    groups = [g for g, _ in KERNEL_GROUPS] + [REST]
    out = [f"{'net':14s} {'batch':>5s} {'step ms':>9s}  " + "  ".join(f"{g:>13s}" for g in groups)]
    for r in rows:
        cells = "  ".join(
            f"{r['ms'][g]:6.1f} ({100 * r['ms'][g] / r['step_ms']:4.1f}%)" for g in groups
        )
        out.append(f"{r['net']:14s} {r['batch']:5d} {r['step_ms']:9.1f}  {cells}")
    return "\n".join(out) + "\n"


def main_breakdown(argv=None):
    """fastconv bench breakdown: where fastconv's training step spends its time."""
    from . import functional as F
    from . import models
    from ._cliargs import add_net_options, int_at_least, output_file, thread_count
    from .bench import _progress, cpu_line, write_results

    ap = argparse.ArgumentParser(
        prog="fastconv bench breakdown",
        description="where a fastconv training step (SGD with momentum, as fastconv bench nets "
        "times it) spends its time: each kernel group's share of the fastest step, and the "
        "rest (Python and NumPy)",
    )
    add_net_options(ap, models.MODELS, ["resnet50"], [8], size=True)
    ap.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="threads (default: fastconv.get_num_threads())",
    )
    ap.add_argument(
        "--repeat",
        type=int_at_least(1),
        default=3,
        help="timed steps after an untimed one; the fastest is split (default 3)",
    )
    ap.add_argument("--json", metavar="FILE", type=output_file, help="write the rows as JSON")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = ap.parse_args(argv)
    if not args.nets:
        ap.error("argument --nets: no network given")
    threads = args.threads or F.get_num_threads()
    F.set_num_threads(threads)
    cases = [(n, b) for n in args.nets for b in args.batches]
    bar = _progress(len(cases) * args.repeat, not args.no_progress)
    try:
        rows = []
        for net, batch in cases:
            bar.set_description(f"{net} b{batch}")
            rows.append(step_breakdown(net, batch, args.repeat, args.size, bar.update))
    finally:
        bar.close()
    meta = {"isa": F.isa(), "threads": threads, "repeat": args.repeat}
    print(
        f"fastconv bench breakdown | {cpu_line(F.hardware())} | ISA {meta['isa']} "
        f"| threads {threads} | fastest of {args.repeat} steps"
    )
    sys.stdout.write(format_breakdown(rows))
    write_results("fastconv bench breakdown", {"meta": meta, "rows": rows}, args.json, None, None)
    return 0

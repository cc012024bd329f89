"""Deconvnet visualisation (Zeiler & Fergus, 2013): project one feature map's activation back to
pixel space, and the ``fastconv visualize`` command that draws the projections of a small
digits network's strongest activations.

:func:`deconvnet` runs the model forward once (eval mode, no graph) recording every layer's input
and the max-pool switches, keeps one channel of the chosen layer's output, and walks back down
the layers: max-unpooling through the recorded switches, ReLU, and the transposed convolution
with the layer's own filters (``conv_transpose2d``; biases are not used, as in the paper).
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

from . import functional as _K
from . import nn
from .nn import _trace
from .nn._conv_transpose import conv_transpose2d_array

__all__ = ["deconvnet", "DigitsConvNet", "digits_convnet", "add_parser"]

# Layers the projection passes through unchanged: Dropout and Identity are identities in eval
# mode; the deconvnet does not invert local response/contrast normalisation (nor does the
# paper's); LeNet-5's tanh has no rectification to undo (the deconvnet rectifies only at ReLUs).
_PASS = ("Dropout", "Dropout2d", "Identity", "LocalResponseNorm", "Tanh")
_SUPPORTED = ("Conv2d", "ReLU", "MaxPool2d", "AvgPool2d") + _PASS


def _conv_weight(m):
    """The filters a Conv2d (or LeNet-5's masked C3) convolves with."""
    from .autograd import Tensor

    w = m.weight.data
    mask = getattr(m, "mask", None)
    if mask is None:
        return w
    return w * (mask.data if isinstance(mask, Tensor) else np.asarray(mask))


def _back_conv(m, r, x):
    """Transposed convolution of r with m's filters, to the size of m's input x."""
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise ValueError(f"deconvnet: Conv2d with padding_mode={m.padding_mode!r} is not supported")
    w = _conv_weight(m).astype(r.dtype, copy=False)
    pad = m.padding
    if pad == "valid":
        pad = (0, 0)
    elif pad == "same":  # (stride 1) the extra bottom/right row of an odd total is cropped below
        pad = tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
    out = []
    for i in range(2):
        natural = (
            (r.shape[2 + i] - 1) * m.stride[i]
            - 2 * pad[i]
            + m.dilation[i] * (m.kernel_size[i] - 1)
            + 1
        )
        out.append(max(0, min(x.shape[2 + i] - natural, m.stride[i] - 1)))
    y = conv_transpose2d_array(r, w, None, m.stride, pad, tuple(out), m.groups, m.dilation)
    return np.ascontiguousarray(y[:, :, : x.shape[2], : x.shape[3]])


def _unpool(m, r, x):
    """Max-unpool r into zeros of x's shape through the switches of m's forward on x."""
    _, idx = _K.max_pool2d(
        x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True
    )
    try:
        return _K.max_unpool2d(r, idx, m.kernel_size, m.stride, m.padding, output_size=x.shape[-2:])
    except ValueError:  # a dilated or ceil-mode pooling outside max_unpool2d's size rule
        out = np.zeros(x.shape, r.dtype).reshape(x.shape[0], x.shape[1], -1)
        np.put_along_axis(out, idx.reshape(*idx.shape[:2], -1), r.reshape(*r.shape[:2], -1), axis=2)
        return out.reshape(x.shape)


def _back(call, r):
    m, x, kind = call.module, call.inputs[0], type(call.module).__name__
    if isinstance(m, nn.Conv2d):
        return _back_conv(m, r, x)
    if kind == "ReLU":
        return np.maximum(r, 0)
    if kind == "MaxPool2d":
        return _unpool(m, r, x)
    if kind == "AvgPool2d":  # its adjoint: each value spread evenly over its window
        return _K.avg_pool2d_backward(
            r,
            x.shape,
            m.kernel_size,
            m.stride,
            m.padding,
            m.ceil_mode,
            m.count_include_pad,
            m.divisor_override,
        )
    return r  # _PASS


def _find_layer(calls, layer):
    names = [c.name for c in calls]
    if isinstance(layer, nn.Module):
        hits = [i for i, c in enumerate(calls) if c.module is layer]
    elif isinstance(layer, str):
        hits = [i for i, n in enumerate(names) if n == layer]
    elif isinstance(layer, numbers.Integral) and not isinstance(layer, bool):
        hits = [layer % len(calls)] if -len(calls) <= layer < len(calls) else []
    else:
        raise TypeError(
            f"layer must be an int (position among the leaf modules in call order), a "
            f"module name or a module, got {layer!r}"
        )
    if not hits:
        raise ValueError(
            f"layer {layer!r} is not one of the model's {len(calls)} leaf modules "
            f"(by position 0..{len(calls) - 1}, or name: {', '.join(names)})"
        )
    return hits[0]


def deconvnet(model, x, layer, channel, keep="max") -> np.ndarray:
    """Project the activation of ``channel`` at ``layer`` back to pixel space (Zeiler & Fergus's
    deconvnet); returns an ndarray of x's shape, (N, C, H, W) or (C, H, W), one projection per
    image.

    ``layer``: the position among the model's leaf modules in call order (for an
    ``nn.Sequential``, its index; for LeNet-5, AlexNet and VGG the ``features`` indices), a name
    ("features.3") or the module. ``keep="max"`` (default) keeps only the channel's strongest
    activation in each image and zeros everything else, as the paper's figures do;
    ``keep="map"`` keeps the channel's whole map. Other channels never contribute.

    Back through the layers, from ``layer`` itself down to the input: MaxPool2d is undone by
    unpooling through the switches of the forward pass, ReLU rectifies the reconstruction, Conv2d
    becomes its transposed convolution with the same filters (no bias); AvgPool2d is undone by its
    adjoint (each value spread evenly over its window); Dropout, Identity, LocalResponseNorm and
    Tanh pass the signal through. The model must be a chain of such leaf modules up to ``layer``
    (Sequential-style); any other module there raises ValueError naming it. The model is run
    in eval mode and left in its mode.
    """
    from .autograd import Tensor

    if keep not in ("max", "map"):
        raise ValueError(f"keep must be 'max' or 'map', got {keep!r}")
    arr = x.data if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim not in (3, 4):
        raise ValueError(f"deconvnet: x must be (N, C, H, W) or (C, H, W), got shape {arr.shape}")
    x4 = arr[None] if arr.ndim == 3 else arr
    calls, _ = _trace.trace(model, x4)
    idx = _find_layer(calls, layer)
    bad = [
        f"{c.name} ({type(c.module).__name__})"
        for c in calls[: idx + 1]
        if not isinstance(c.module, nn.Conv2d) and type(c.module).__name__ not in _SUPPORTED
    ]
    if bad:
        raise ValueError(
            f"deconvnet cannot project back through {', '.join(bad)}: supported layers "
            f"are Conv2d, ReLU, MaxPool2d, AvgPool2d, Dropout, Identity, "
            f"LocalResponseNorm and Tanh"
        )
    _trace.check_chain(calls, x4, upto=idx, what="deconvnet")
    act = calls[idx].output
    if act.ndim != 4:
        raise ValueError(
            f"deconvnet: layer {calls[idx].name} gives a {act.ndim}-D output {act.shape}; "
            f"it needs a feature map (N, C, H, W)"
        )
    if (
        isinstance(channel, bool)
        or not isinstance(channel, numbers.Integral)
        or not 0 <= channel < act.shape[1]
    ):
        raise ValueError(
            f"channel must be an int from 0 to {act.shape[1] - 1} (the channels of "
            f"{calls[idx].name}), got {channel!r}"
        )
    r = np.zeros_like(act)
    if keep == "map":
        r[:, channel] = act[:, channel]
    else:
        best = act[:, channel].reshape(len(act), -1).argmax(axis=1)
        rows, (hh, ww) = np.arange(len(act)), np.divmod(best, act.shape[3])
        r[rows, channel, hh, ww] = act[rows, channel, hh, ww]
    for call in reversed(calls[: idx + 1]):
        r = _back(call, r)
    return r.reshape(arr.shape)


# ----------------------------------------------------------------------------------------------
# the network `fastconv visualize` trains


class DigitsConvNet(nn.Module):
    """LeNet-5's shape with ReLU and max-pooling (what the deconvnet unpools): conv 8@5x5, ReLU,
    max-pool 2/2, conv 16@5x5, ReLU, max-pool 2/2, FC 120, ReLU, FC ``num_classes``; 32x32
    grey input (the enlarged digits)."""

    def __init__(self, num_classes=10, in_channels=1, dtype=np.float32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 5, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(8, 16, 5, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 10 -> 5
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120, dtype=dtype),
            nn.ReLU(),
            nn.Linear(120, num_classes, dtype=dtype),
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def digits_convnet(num_classes=10, **kwargs):
    """A :class:`DigitsConvNet`."""
    return DigitsConvNet(num_classes=num_classes, **kwargs)


# ----------------------------------------------------------------------------------------------
# fastconv visualize


def add_parser(subparsers):
    """Register ``fastconv visualize`` in the command's subparsers."""
    from ._cliargs import input_file, int_at_least, output_file, plot_file, thread_count

    p = subparsers.add_parser(
        "visualize",
        help="deconvnet projections of a digits network's strongest activations (PNG)",
        description="Train a small network on scikit-learn's bundled digits (or load its weights), "
        "find the held-out images that activate each chosen channel of a layer the "
        "most, project each of those activations back to pixel space with a deconvnet "
        "(Zeiler & Fergus: unpool through the max-pool switches, ReLU, transposed "
        "convolution with the layer's filters) and draw them in a grid: one row per "
        "channel, the top-k projections and then the images themselves.",
    )
    p.add_argument(
        "--model",
        choices=["convnet", "lenet5"],
        default="convnet",
        help="convnet: LeNet-5's shape with ReLU and max-pooling (default); lenet5: "
        "fastconv.models.lenet5 (tanh, average pooling)",
    )
    p.add_argument(
        "--layer",
        default=None,
        help="the layer: its name (features.3) or position among the leaf modules "
        "(default: the last convolution)",
    )
    p.add_argument(
        "--channels",
        type=int_at_least(1),
        default=8,
        help="how many channels (rows), the layer's first N (default 8)",
    )
    p.add_argument(
        "--top-k",
        type=int_at_least(1),
        default=4,
        help="projections per channel: its k strongest activations (default 4)",
    )
    p.add_argument(
        "--images",
        type=int_at_least(1),
        default=300,
        help="held-out images searched for the strongest activations (default 300)",
    )
    p.add_argument(
        "--train-images",
        type=int_at_least(1),
        default=None,
        help="train on the first N training digits only (default: all 1,437)",
    )
    p.add_argument("--epochs", type=int_at_least(0), default=3)
    p.add_argument("--batch-size", type=int_at_least(1), default=32)
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument(
        "--load",
        metavar="PATH",
        type=input_file,
        help="use these weights (.npz of the model's state_dict) instead of training",
    )
    p.add_argument("--save", metavar="PATH", type=output_file, help="write the trained weights")
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE.png",
        type=plot_file,
        default="deconvnet.png",
        help="the grid image (default deconvnet.png; format from the extension)",
    )
    p.add_argument("--threads", type=thread_count, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
    return p


def _run(args):
    if args.threads is not None:
        from ._threads import threads

        with threads(args.threads):
            return _visualize(args)
    return _visualize(args)


def _layer_arg(calls, text):
    if text is None:  # the last convolution
        convs = [c.name for c in calls if isinstance(c.module, nn.Conv2d)]
        return convs[-1]
    return int(text) if text.lstrip("-").isdigit() else text


def _visualize(args):
    from . import autograd, data, models, optim
    from ._cliargs import fail
    from .cli import _progress_bars
    from .train import evaluate, fit, load_weights, save_weights

    prog = "fastconv visualize"
    autograd.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = digits_convnet() if args.model == "convnet" else models.lenet5()
    if args.load:
        try:
            load_weights(model, args.load)
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(prog, "--load", args.load, e)
    try:
        x, y, x_val, y_val = data.load_digits()
    except ImportError as e:
        sys.exit(f"{prog}: error: {e}")
    if args.train_images is not None:
        x, y = x[: args.train_images], y[: args.train_images]
    if not args.load and args.epochs:
        opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
        fit(
            model,
            opt,
            (x, y, x_val, y_val),
            args.epochs,
            args.batch_size,
            rng,
            None,
            _progress_bars(args.no_progress),
            log=lambda s: print(s, flush=True),
        )
    print(f"{args.model}: test accuracy {evaluate(model, x_val, y_val):.4f}", flush=True)
    if args.save:
        try:
            save_weights(model, args.save)
        except OSError as e:
            fail(prog, "--save", args.save, e)
    pool = x_val[: args.images]
    calls, _ = _trace.trace(model, pool)
    try:
        layer = _layer_arg(calls, args.layer)
        idx = _find_layer(calls, layer)
    except (ValueError, TypeError) as e:
        sys.exit(f"{prog}: error: argument --layer: {e}")
    act = calls[idx].output
    if act.ndim != 4:
        sys.exit(f"{prog}: error: argument --layer: {calls[idx].name} is not a feature map")
    channels = list(range(min(args.channels, act.shape[1])))
    k = min(args.top_k, len(pool))
    scores = act.reshape(act.shape[0], act.shape[1], -1).max(axis=2)
    rows = []
    for c in channels:
        top = np.argsort(-scores[:, c], kind="stable")[:k]
        rows.append((c, top, deconvnet(model, pool[top], idx, c)))
    _draw(
        rows,
        pool,
        args.output,
        f"deconvnet projections: {args.model}, {calls[idx].name} "
        f"({type(calls[idx].module).__name__}), top {k} of "
        f"{len(pool)} held-out digits",
    )
    print(f"wrote {args.output}: {len(channels)} channels x top {k} of layer {calls[idx].name}")
    return 0


def _draw(rows, images, path, title):
    """The grid, written whole or not at all (a temporary file beside path, then os.replace)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._io import save_figure

    k = len(rows[0][1])
    fig, axes = plt.subplots(
        len(rows), 2 * k, figsize=(1.3 * 2 * k, 1.4 * len(rows) + 0.6), squeeze=False
    )
    for r, (c, top, proj) in enumerate(rows):
        for j in range(k):
            axes[r, j].imshow(proj[j, 0], cmap="gray")  # each scaled to its own range, as ZF
            axes[r, k + j].imshow(images[top[j], 0], cmap="gray")
        axes[r, 0].set_ylabel(f"ch {c}")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("projections", loc="left", fontsize=9)
    axes[0, k].set_title("images", loc="left", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)

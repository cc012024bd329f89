"""``fastconv.nn.summary``: a model's layers with output shapes, activations, parameters and
FLOPs, and an estimate of the memory one training step needs (the course notes' "computational
considerations").

Conventions (the notes' VGG-16 table is reproduced row for row under them):

- One row per call of a leaf module (a module without children), in call order, after an
  ``input`` row; taken with forward hooks on one forward of zeros of one image under no_grad in
  eval mode. Counts that grow with the batch are scaled to ``batch_size``.
- **Activations** are the elements a layer's output adds to memory: the input once, and each
  convolution, pooling, normalisation, fully-connected (and any other) layer's output. Element-
  wise activation functions (ReLU, tanh, ...) and Dropout count as in place, Flatten and Identity
  as views, and an adaptive pooling that keeps its input's size (torchvision's VGG/AlexNet
  ``avgpool`` at the native input size) as an identity: 0 each. Work done in a ``forward`` outside
  modules (ResNet's residual additions, concatenations) is not seen. (fastconv itself computes
  ReLU out of place, so its real footprint is larger than the notes' convention.)
- **Parameters** include biases (the notes' table lists weights only: 1,728 for VGG's first conv,
  whose 64 biases make 1,792 here).
- **MACs** are multiply-adds of convolutions (K*(C/groups)*kh*kw per output element; a transposed
  convolution likewise per input element) and fully-connected layers (in_features per output);
  **FLOPs = 2 x MACs**, DESIGN's count. Bias additions, pooling comparisons, normalisations and
  activation functions count 0.
- **Training memory** for a batch: activations and their gradients (2 x the activations), the
  parameters, their gradients (trainable ones) and the optimizer's state (SGD with momentum: 1
  buffer per parameter, Adam: 2, RMSprop: 1 + momentum + centered, Adagrad: 1, plain SGD: 0),
  each of ``dtype``'s size. MB in the text is 2**20 bytes. The activation gradients are counted
  as if all were alive at once (the notes' "x2 for the backward"); a backward that frees each as
  it goes peaks lower: for ResNet-50 at batch 16 with SGD momentum the estimate is 3.2 GB, a
  fastconv training step's measured peak RSS 2.1 GB.

The notes' table itself: its rows add up to 15.2M activations for VGG-16 (58 MB of float32),
though its total line says "24M"; the rows are what :func:`summary` reproduces.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from . import _trace

__all__ = ["summary", "ModelSummary", "SummaryRow"]

_IN_PLACE = (
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "Tanh",
    "Sigmoid",
    "Hardtanh",
    "Hardsigmoid",
    "Hardswish",
    "SiLU",
    "GELU",
    "Dropout",
    "Dropout2d",
    "AlphaDropout",
)
_VIEWS = ("Flatten", "Identity", "Unflatten")
_ADAPTIVE = ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d")
_MB = float(1 << 20)


@dataclass
class SummaryRow:
    """One layer: ``activations`` are the elements it adds to memory for the batch (0 for an
    in-place or view layer), ``params`` its parameters (biases included), ``macs`` its
    multiply-adds for the batch (``flops`` = 2 x macs)."""

    name: str
    type: str
    output_shape: tuple
    activations: int
    params: int
    macs: int

    @property
    def flops(self) -> int:
        """2 x macs."""
        return 2 * self.macs


@dataclass
class ModelSummary:
    """What :func:`summary` returns: ``rows`` (:class:`SummaryRow`), the totals, and the training
    memory estimate in bytes (``memory``: activations, activation_gradients, parameters,
    parameter_gradients, optimizer_state, total); ``str()`` is the printed table."""

    rows: list
    batch_size: int
    dtype: np.dtype
    optimizer: str
    optimizer_buffers: float
    total_params: int
    trainable_params: int
    memory: dict = field(default_factory=dict)

    @property
    def total_activations(self) -> int:
        """Activation elements for the batch (input included)."""
        return sum(r.activations for r in self.rows)

    @property
    def total_macs(self) -> int:
        """Multiply-adds of one forward of the batch."""
        return sum(r.macs for r in self.rows)

    @property
    def total_flops(self) -> int:
        """2 x total_macs."""
        return 2 * self.total_macs

    @property
    def forward_bytes(self) -> int:
        """Bytes of the activations of one forward of the batch (the notes' "memory")."""
        return self.total_activations * self.dtype.itemsize

    @property
    def memory_mb(self) -> dict:
        """``memory`` in MB (2**20 bytes)."""
        return {k: v / _MB for k, v in self.memory.items()}

    def __str__(self):
        head = ("Layer (type)", "Output shape", "Activations", "Params", "MACs")
        body = [
            (
                f"{r.name} ({r.type})",
                str(r.output_shape),
                f"{r.activations:,}",
                f"{r.params:,}",
                f"{r.macs:,}",
            )
            for r in self.rows
        ]
        widths = [max(len(t[i]) for t in [head] + body) for i in range(5)]

        def line(t):
            return "  ".join(
                t[0].ljust(widths[0])
                if i == 0
                else (t[i].ljust(widths[i]) if i == 1 else t[i].rjust(widths[i]))
                for i in range(5)
            )

        rule = "-" * len(line(head))
        n = self.batch_size
        out = [rule, line(head), rule] + [line(t) for t in body] + [rule]
        out.append(f"Total params: {self.total_params:,} ({self.trainable_params:,} trainable)")
        out.append(
            f"Total activations: {self.total_activations:,} for a batch of {n} "
            f"({self.forward_bytes / _MB:,.1f} MB of {self.dtype.name} forward)"
        )
        out.append(
            f"Total MACs: {self.total_macs:,} (FLOPs = 2 x MACs = {self.total_flops / 1e9:,.2f} G)"
        )
        out.append(
            f"Training memory estimate (batch {n}, {self.dtype.name}, optimizer "
            f"{self.optimizer}: {self.optimizer_buffers:g} buffer(s) per parameter):"
        )
        labels = (
            ("activations", "activations"),
            ("activation_gradients", "activation gradients"),
            ("parameters", "parameters"),
            ("parameter_gradients", "parameter gradients"),
            ("optimizer_state", "optimizer state"),
            ("total", "total"),
        )
        for key, label in labels:
            out.append(
                f"  {label:<22}{self.memory[key]:>16,} bytes {self.memory[key] / _MB:>12,.1f} MB"
            )
        out.append(rule)
        return "\n".join(out)


_NAMED_BUFFERS = {
    "sgd": 0,
    "sgd_momentum": 1,
    "momentum": 1,
    "nesterov": 1,
    "adam": 2,
    "adamw": 2,
    "rmsprop": 1,
    "adagrad": 1,
    "none": 0,
}


def _buffers_of_group(opt, group):
    kind = type(opt).__name__
    if kind == "SGD":
        return 1 if group.get("momentum", 0) else 0
    keys = getattr(opt, "_state_keys", lambda g: ())(group)
    return len([k for k in keys if k != "step"])


def _optimizer_state(optimizer, trainable, itemsize):
    """(description, buffers per parameter, bytes) of the optimizer's state."""
    if optimizer is None:
        return "none", 0, 0
    if isinstance(optimizer, str):
        key = optimizer.lower().replace("-", "_").replace(" ", "_")
        if key not in _NAMED_BUFFERS:
            raise ValueError(
                f"optimizer must be None, an optimizer of fastconv.optim, a number of "
                f"state buffers per parameter or one of {sorted(_NAMED_BUFFERS)}, got "
                f"{optimizer!r}"
            )
        nbuf = _NAMED_BUFFERS[key]
        return optimizer, nbuf, nbuf * trainable * itemsize
    if isinstance(optimizer, numbers.Real) and not isinstance(optimizer, bool):
        if optimizer < 0:
            raise ValueError(f"optimizer: a number of state buffers must be >= 0, got {optimizer}")
        return f"{optimizer:g} buffer(s)", optimizer, int(optimizer * trainable * itemsize)
    groups = getattr(optimizer, "param_groups", None)
    if groups is None:
        raise TypeError(
            f"optimizer must be None, a name, a number or an optimizer with "
            f"param_groups, got {type(optimizer).__name__}"
        )
    total_bytes, total_elems = 0, 0
    for group in groups:
        nbuf = _buffers_of_group(optimizer, group)
        elems = sum(int(np.asarray(p.data).size) for p in group["params"])
        total_bytes += nbuf * elems * itemsize
        total_elems += elems
    per = total_bytes / (total_elems * itemsize) if total_elems else 0
    return type(optimizer).__name__, per, total_bytes


def _macs(module, inputs, output):
    kind = type(module).__name__
    if hasattr(module, "kernel_size") and hasattr(module, "groups") and hasattr(module, "weight"):
        w = module.weight.data
        if kind.startswith("ConvTranspose"):  # weight (C_in, C_out/groups, k...): per input element
            return int(inputs[0].size) * int(np.prod(w.shape[1:]))
        return int(output.size) * int(np.prod(w.shape[1:]))  # (K, C/groups, k...): per output
    if kind == "Linear":
        return int(output.size) * int(module.in_features)
    return 0


def _stores(call):
    """Whether the call's output is new memory under the notes' convention."""
    kind = type(call.module).__name__
    if kind in _IN_PLACE or kind in _VIEWS:
        return False
    x = call.inputs[0] if call.inputs else None
    if x is not None and call.output is not None:
        if call.output is x or np.may_share_memory(call.output, x):
            return False
        if kind in _ADAPTIVE and call.output.shape == x.shape:
            return False  # an adaptive pool at its input's size is an identity
    return True


def _int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def summary(
    model, input_shape, batch_size=1, dtype=np.float32, optimizer=None, verbose=True
) -> ModelSummary:
    """Print (``verbose``) and return the layers of ``model`` on inputs of ``input_shape`` (one
    sample, without the batch: (C, H, W)): per layer its name, type, output shape, activations,
    parameters and MACs (FLOPs = 2 x MACs), the totals, and the memory of one training step for
    ``batch_size`` (activations and their gradients, parameters, their gradients and the state
    of ``optimizer``: None, a fastconv.optim optimizer, a name such as "sgd", "sgd_momentum",
    "adam", or a number of buffers per parameter). The module docstring states what counts.
    """
    shape = tuple(
        _int(v, "input_shape", 1)
        for v in (input_shape if isinstance(input_shape, (tuple, list)) else (input_shape,))
    )
    batch_size = _int(batch_size, "batch_size", 1)
    dtype = np.dtype(dtype)
    calls, _ = _trace.trace(model, np.zeros((1,) + shape, dtype))
    rows = [
        SummaryRow("input", "Input", (batch_size,) + shape, batch_size * int(np.prod(shape)), 0, 0)
    ]
    for call in calls:
        out = call.output
        out_shape = () if out is None else (batch_size,) + tuple(out.shape[1:])
        params = sum(int(p.size) for p in call.module.parameters())
        rows.append(
            SummaryRow(
                call.name,
                type(call.module).__name__,
                out_shape,
                batch_size * int(out.size) if out is not None and _stores(call) else 0,
                params,
                batch_size * _macs(call.module, call.inputs, out),
            )
        )
    params = list(model.parameters())
    total = sum(int(p.size) for p in params)
    trainable = sum(int(p.size) for p in params if p.requires_grad)
    item = dtype.itemsize
    name, nbuf, opt_bytes = _optimizer_state(optimizer, trainable, item)
    result = ModelSummary(rows, batch_size, dtype, name, nbuf, total, trainable)
    acts = result.total_activations * item
    result.memory = {
        "activations": acts,
        "activation_gradients": acts,
        "parameters": total * item,
        "parameter_gradients": trainable * item,
        "optimizer_state": int(opt_bytes),
    }
    result.memory["total"] = sum(result.memory.values())
    if verbose:
        print(result)
    return result

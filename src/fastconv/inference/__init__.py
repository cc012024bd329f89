"""Inference plans: a model's forward compiled once, then run as one native call.

``plan = fastconv.inference.compile(model, example_input)`` traces ``model`` (a
``fastconv.nn.Module`` in eval mode) on the example, folds BatchNorm into the preceding
convolution or linear layer, fuses residual adds and activations into the op before them,
turns reshapes into views and (at batch 1) concatenations into writes to channel slices, chooses
each convolution's algorithm (measured by the autotuner when ``tune`` is on) and plans one arena
for the activations. ``plan(x)`` then runs every step in C++, the GIL released once.

The trace freezes Python control flow to the path the example took (as ``torch.jit.trace``):
a model whose forward branches on its input's values needs a plan per branch. Another input
shape (another batch size) is planned on first use and kept.
"""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import atomic_write
from .._typing import ArrayLike, PathLike, Shape
from . import _graph, _lower
from ._graph import UnsupportedOp

if TYPE_CHECKING:
    import torch

    from ..autograd import Tensor
    from ..nn.module import Module

__all__ = ["compile", "compile_torch", "load", "Plan", "TorchPlan", "UnsupportedOp"]

_FORMAT = "fastconv-plan 1"


def _as_input(x, dtype, what="x"):
    from ..autograd import Tensor

    if isinstance(x, Tensor):
        x = x.data
    elif hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):  # a torch tensor
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{what} is {x.dtype} but the plan was compiled for {dtype}")
    if x.ndim != 4:
        raise ValueError(f"{what} must be 4-D (N, C, H, W), got shape {x.shape}")
    return np.ascontiguousarray(x)


class Plan:
    """A compiled forward. Call it on an ndarray; see :func:`compile`."""

    def __init__(
        self, graph: _graph.Graph, tune: bool | None, algos: dict[Any, Any] | None = None
    ) -> None:
        self._graph, self._tune = graph, tune
        self._dtype = np.dtype(graph.dtype)
        self._lowered = {}
        self._saved_algos = dict(algos or {})
        # one native plan has one arena and scratch: calls from several threads take turns
        # (the GIL is released while a plan runs)
        self._lock = threading.Lock()

    def _for(self, shape):
        with self._lock:
            return self._lower_locked(shape)

    def _lower_locked(self, shape):
        shape = tuple(int(v) for v in shape)
        low = self._lowered.get(shape)
        if low is None:
            low = _lower.lower(self._graph, shape, self._tune, self._saved_algos.get(shape))
            # one run on zeros sizes the workspace scratch: from the first call on, a run makes
            # no heap allocation (run(x, out=...) none at all)
            low.native.run(
                np.zeros(shape, self._dtype).reshape(-1),
                np.empty(low.out_shape, self._dtype).reshape(-1),
            )
            self._lowered[shape] = low
        return low

    def workspace(self, shape: Shape | None = None) -> dict[str, int]:
        """{"scratch_bytes", "arena_bytes", "allocations"} of the plan for inputs of shape (the
        example's by default): the algorithms' workspace, the activations' arena, and the heap
        allocations the last run made for workspaces (0 in steady state)."""
        low = self._for(shape or self._graph.example_shape)
        scratch, allocs = low.native.workspace()
        return {"scratch_bytes": scratch, "arena_bytes": low.arena_bytes, "allocations": allocs}

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def run(self, x: ArrayLike | Tensor, out: np.ndarray | None = None) -> np.ndarray:
        """The model's output for x (N, C, H, W); written into ``out`` when given."""
        x = _as_input(x, self._dtype)
        low = self._for(x.shape)
        if out is None:
            out = np.empty(low.out_shape, self._dtype)
        elif (
            not isinstance(out, np.ndarray)
            or out.shape != low.out_shape
            or out.dtype != self._dtype
        ):
            raise ValueError(
                f"out must be a {self._dtype} ndarray of shape {low.out_shape}, got "
                f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
            )
        elif not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be C-contiguous and writeable")
        elif np.shares_memory(out, x):
            raise ValueError("out must not overlap x")
        with self._lock:
            low.native.run(x.reshape(-1), out.reshape(-1))
        return out

    __call__ = run

    def profile(self, x: ArrayLike | Tensor, repeat: int = 1) -> list[float]:
        """Seconds per native step (the best of ``repeat`` runs) for input x."""
        x = _as_input(x, self._dtype)
        low = self._for(x.shape)
        out = np.empty(low.out_shape, self._dtype)
        best = None
        for _ in range(max(1, int(repeat))):
            with self._lock:
                secs = low.native.run(x.reshape(-1), out.reshape(-1), True)
            best = secs if best is None else [min(a, b) for a, b in zip(best, secs)]
        return best

    def summary(
        self, x: ArrayLike | Tensor | None = None, profile: bool = False, repeat: int = 3
    ) -> str:
        """One line per step: op, input -> output shape, algorithm, what was fused; with
        ``profile=True``, each step's time (best of ``repeat``) on x (zeros of the example's
        shape if x is None)."""
        if x is None:
            x = np.zeros(self._graph.example_shape, self._dtype)
        x = _as_input(x, self._dtype)
        low = self._for(x.shape)
        secs = self.profile(x, repeat) if profile else None
        lines = [
            f"fastconv inference plan: {len(low.steps)} steps, input {x.shape} -> "
            f"{low.out_shape}, {self._dtype}, arena {low.arena_bytes / 2**20:.1f} MiB"
        ]
        head = f"{'#':>3}  {'op':<13}{'input':<22}{'output':<22}{'algo':<10}fused"
        lines.append(head + ("      ms" if secs else ""))
        for i, s in enumerate(low.steps):
            line = (
                f"{i:>3}  {s.op:<13}{str(s.in_shape):<22}{str(s.out_shape):<22}{s.algo:<10}"
                f"{'+'.join(s.fused) or '-':<12}"
            )
            if secs:
                line += f"{secs[i] * 1e3:8.3f}"
            lines.append(line.rstrip())
        if secs:
            lines.append(f"total {sum(secs) * 1e3:.3f} ms")
        return "\n".join(lines)

    def save(self, path: PathLike) -> None:
        """Write the plan (graph, folded weights, the algorithms chosen for every planned
        shape) to path, atomically; :func:`load` reads it back without tracing or tuning."""
        g = self._graph
        arrays, nodes = {}, []
        for i, n in enumerate(g.nodes):
            for k, a in n.consts.items():
                arrays[f"c{i}_{k}"] = np.asarray(a)
            nodes.append(
                {
                    "op": n.op,
                    "inputs": n.inputs,
                    "out": n.out,
                    "attrs": n.attrs,
                    "consts": sorted(n.consts),
                    "act": n.act,
                    "alpha": n.alpha,
                    "residual": n.residual,
                    "fused": n.fused,
                }
            )
        algos = {
            **{str(list(k)): v for k, v in self._saved_algos.items()},
            **{str(list(k)): low.algos for k, low in self._lowered.items()},
        }
        meta = {
            "format": _FORMAT,
            "dtype": g.dtype,
            "output": g.output,
            "example_shape": list(g.example_shape),
            "nodes": nodes,
            "algos": algos,
        }
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        with atomic_write(os.fspath(path)) as f:
            f.write(buf.getvalue())


def compile(model: Module, example_input: np.ndarray | Tensor, tune: bool | None = None) -> Plan:
    """Compile ``model``'s forward (eval mode) for inputs like ``example_input`` (N, C, H, W).

    tune: True measures each convolution's algorithms (the autotuner; its table, and with
    ``set_autotune("persist")`` its file, keeps the result for the next compile); False uses
    the deterministic heuristic; None (default) follows ``fastconv.get_autotune()``.
    """
    from .._autotune import get_autotune
    from ..autograd import Tensor

    x = example_input.data if isinstance(example_input, Tensor) else example_input
    if not isinstance(x, np.ndarray):
        raise TypeError(f"example_input must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"example_input must be float32 or float64, got {x.dtype}")
    x = _as_input(x, x.dtype, "example_input")
    # traced on the first image only (the graph does not depend on the batch; at batch 8 the
    # eager forward would cost half of a tuned compile), then planned for the whole example
    graph = _graph.optimize(_graph.capture(model, x[:1]))
    graph.example_shape = tuple(x.shape)
    if tune is None:
        tune = get_autotune() != "off"
    plan = Plan(graph, bool(tune))
    plan._for(x.shape)
    return plan


def load(path: PathLike) -> Plan:
    """A plan written by :meth:`Plan.save`."""
    try:
        z = np.load(os.fspath(path), allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a fastconv plan ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a fastconv plan (an .npy array, not a plan archive)")
    with z:
        if "__meta__" not in z:
            raise ValueError(f"{path}: not a fastconv plan (no metadata)")
        try:
            meta = json.loads(bytes(z["__meta__"]).decode())
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: corrupt plan metadata ({e})") from None
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: format {meta.get('format')!r}, expected {_FORMAT!r}")
        nodes = []
        try:
            for i, d in enumerate(meta["nodes"]):
                consts = {k: z[f"c{i}_{k}"] for k in d["consts"]}
                nodes.append(
                    _graph.Node(
                        d["op"],
                        d["inputs"],
                        d["out"],
                        d["attrs"],
                        consts,
                        d["act"],
                        d["alpha"],
                        d["residual"],
                        d["fused"],
                    )
                )
            output, dtype, example = meta["output"], meta["dtype"], tuple(meta["example_shape"])
            algos = {tuple(json.loads(k)): v for k, v in meta["algos"].items()}
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: corrupt plan ({type(e).__name__}: {e})") from None
    return Plan(_graph.Graph(nodes, output, dtype, example), False, algos)


class TorchPlan:
    """A plan compiled from a ``torch.nn.Module`` (``fastconv.torch.compile``): called on CPU
    tensors of the example's dtype, it returns tensors (the plan's output arrays, not copied)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def __call__(self, x):
        import torch

        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.device.type != "cpu":
            raise ValueError(f"x must be on the CPU, got device {x.device}")
        return torch.from_numpy(self.plan(x.detach().contiguous().numpy()))

    def summary(self, *args: Any, **kwargs: Any) -> str:
        return self.plan.summary(*args, **kwargs)

    def save(self, path: PathLike) -> None:
        self.plan.save(path)


def compile_torch(
    module: torch.nn.Module, example_input: torch.Tensor, tune: bool | None = None
) -> TorchPlan:
    """``fastconv.torch.compile``: trace ``module`` (eval mode) with torch.fx, build the same
    graph :func:`compile` builds from a fastconv model, and return a :class:`TorchPlan`. A node
    fastconv has no layer for is an :class:`UnsupportedOp` naming it."""
    import torch

    from .._autotune import get_autotune
    from ._fx import graph_from_torch

    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    if example_input.dtype not in (torch.float32, torch.float64) or example_input.dim() != 4:
        raise ValueError(
            f"example_input must be a 4-D float32/float64 tensor, got "
            f"{example_input.dtype} of shape {tuple(example_input.shape)}"
        )
    graph = _graph.optimize(graph_from_torch(module, example_input.detach().cpu()))
    if tune is None:
        tune = get_autotune() != "off"
    plan = Plan(graph, bool(tune))
    plan._for(tuple(example_input.shape))
    return TorchPlan(plan)

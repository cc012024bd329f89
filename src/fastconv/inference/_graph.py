"""Capture of a fastconv.nn model's forward as a graph of ops, and the passes that fold and fuse it.

Capture runs the model once on the example input with an op recorder installed in
``Function.apply`` (the same hook every op of the autograd goes through): each op with an input
computed from the model's input becomes a node; ops on constants alone (a masked weight, say)
are folded to constants. Python control flow is frozen to the path the example took.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import autograd as _ag
from .. import functional as _K
from ..nn import functional as _NF

_ACTS = {
    _ag.Relu: "relu",
    _ag.Sigmoid: "sigmoid",
    _ag.Tanh: "tanh",
    _ag.LeakyRelu: "leaky_relu",
    _ag.Elu: "elu",
}
# ops whose output an activation (and, for conv, a residual add) can be fused into
EPILOGUE_OPS = (
    "conv",
    "linear",
    "affine",
    "add",
    "channel_mul",
    "max_pool",
    "avg_pool",
    "adaptive_avg",
)


@dataclasses.dataclass
class Node:
    op: str  # conv, affine, act, add, channel_mul, max_pool, avg_pool, adaptive_avg,
    #                      linear, reshape, concat, lrn
    inputs: list  # value ids (0 is the model's input)
    out: int  # the value it defines
    attrs: dict  # the op's parameters (JSON-able)
    consts: dict  # name -> ndarray (weight, bias, scale, shift)
    act: str | None = None
    alpha: float = 0.0
    residual: int | None = None  # conv: a value added before the activation
    fused: list = dataclasses.field(default_factory=list)  # what was folded or fused in
    # consts in the plan's dtype, contiguous, made once: every lowered shape's native plan
    # reads these very arrays (no copy per shape)
    native: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def reads(self):
        return self.inputs + ([self.residual] if self.residual is not None else [])


@dataclasses.dataclass
class Graph:
    nodes: list
    output: int
    dtype: str
    example_shape: tuple


class UnsupportedOp(ValueError):
    pass


def _per_channel(c, x_shape):
    """A constant operand of an element-wise op with x as a per-channel vector, or None."""
    c = np.asarray(c, dtype=np.float64)
    channels = x_shape[1] if len(x_shape) >= 2 else 1
    if c.size == 1:
        return np.full(channels, float(c.reshape(-1)[0]))
    lead = c.ndim - len(x_shape)
    shape = (1,) * max(0, -lead) + c.shape
    if (
        len(shape) == len(x_shape)
        and shape[1] == channels
        and all(s == 1 for i, s in enumerate(shape) if i != 1)
    ):
        return c.reshape(-1).copy()
    return None


def conv_node(v, x_shape, w, b, stride, padding, dilation, groups):
    """A conv node on value v (shape x_shape) with weight w and bias b (ndarrays or None)."""
    cv = _K._Conv(
        np.empty((1,) + tuple(x_shape[1:]), w.dtype), w, stride, padding, dilation, groups, 2
    )
    if any(cv.extra):
        raise UnsupportedOp("conv2d: padding='same' with an even kernel (asymmetric padding)")
    d = cv.desc
    attrs = dict(
        k=d[4],
        kh=d[5],
        kw=d[6],
        stride=[d[7], d[8]],
        padding=[d[9], d[10]],
        dilation=[d[11], d[12]],
        groups=d[13],
    )
    consts = {"weight": np.array(w)}  # copies: the plan does not follow later changes
    if b is not None:
        consts["bias"] = np.array(b)
    return Node("conv", [v], -1, attrs, consts)


def bn_node(v, mean, var, w, b, eps):
    """BatchNorm with running statistics as a per-channel affine node (scale, shift in float64;
    the statistics kept too, for twins in other frameworks)."""
    var, mean = np.array(var, np.float64), np.array(mean, np.float64)  # (copies)
    scale = 1.0 / np.sqrt(var + float(eps))
    if w is not None:
        scale = scale * np.asarray(w, np.float64)
    shift = (np.asarray(b, np.float64) if b is not None else 0.0) - mean * scale
    consts = {
        "scale": scale,
        "shift": np.broadcast_to(shift, scale.shape).copy(),
        "mean": mean,
        "var": var,
    }
    if w is not None:
        consts["bn_weight"] = np.array(w, np.float64)
    if b is not None:
        consts["bn_bias"] = np.array(b, np.float64)
    return Node("affine", [v], -1, {"what": "batch_norm", "eps": float(eps)}, consts)


_PREV = object()  # in a chain of nodes _translate makes for one op: the previous node's output


def _translate(cls, ins, kw, shapes, out_shape):
    """The node for one recorded op: ins are ("v", value id) / ("c", ndarray) / ("s", scalar)."""
    kinds = [k for k, _ in ins]
    vals = [v for _, v in ins]

    def need_value(i, what):
        if kinds[i] != "v":
            raise UnsupportedOp(f"{cls.__name__}: {what} must be computed from the input")

    def const(i, what):
        if kinds[i] == "v":
            raise UnsupportedOp(
                f"{cls.__name__}: a {what} computed from the input is not supported"
            )
        return None if vals[i] is None else np.asarray(vals[i])

    if cls is _NF.Conv2d:
        need_value(0, "x")
        return conv_node(
            vals[0],
            shapes[vals[0]],
            const(1, "weight"),
            const(2, "bias"),
            kw.get("stride", 1),
            kw.get("padding", 0),
            kw.get("dilation", 1),
            kw.get("groups", 1),
        )
    if cls is _NF.BatchNorm:
        need_value(0, "x")
        if kw.get("use_batch_stats", True):
            raise UnsupportedOp(
                "batch_norm uses batch statistics: the model is in training mode "
                "(call model.eval() before compiling)"
            )
        nodes = [
            bn_node(
                vals[0],
                kw["running_mean"],
                kw["running_var"],
                const(1, "weight"),
                const(2, "bias"),
                kw.get("eps", 1e-5),
            )
        ]
        if len(vals) > 3 and vals[3] is not None:  # fused residual (then activation)
            need_value(3, "residual")
            nodes.append(Node("add", [_PREV, vals[3]], -1, {}, {}))
        if kw.get("activation"):
            nodes.append(Node("act", [_PREV], -1, {}, {}, act=kw["activation"], alpha=0.0))
        return nodes if len(nodes) > 1 else nodes[0]
    if cls in _ACTS:
        need_value(0, "x")
        alpha = kw.get("negative_slope", kw.get("alpha", 0.0))
        return Node("act", [vals[0]], -1, {}, {}, act=_ACTS[cls], alpha=float(alpha))
    if cls in (_ag.Add, _ag.Sub, _ag.Mul):
        name = {_ag.Add: "add", _ag.Sub: "sub", _ag.Mul: "mul"}[cls]
        if kinds == ["v", "v"]:
            sa, sb = shapes[vals[0]], shapes[vals[1]]
            if name == "add" and sa == sb:
                return Node("add", [vals[0], vals[1]], -1, {}, {})
            if name == "mul" and len(sa) == 4 and len(sb) == 4:
                for big, small in ((0, 1), (1, 0)):
                    if shapes[vals[small]] == shapes[vals[big]][:2] + (1, 1):
                        return Node("channel_mul", [vals[big], vals[small]], -1, {}, {})
            raise UnsupportedOp(f"{name} of two computed values of shapes {sa} and {sb}")
        vi = kinds.index("v")
        x_shape = shapes[vals[vi]]
        c = _per_channel(vals[1 - vi], x_shape)
        if c is None:
            raise UnsupportedOp(
                f"{name} with a constant that is not per channel (shape "
                f"{np.shape(vals[1 - vi])}, input {x_shape})"
            )
        ones = np.ones_like(c)
        if name == "mul":
            scale, shift = c, np.zeros_like(c)
        elif name == "add":
            scale, shift = ones, c
        else:  # sub: x - c, or c - x
            scale, shift = (ones, -c) if vi == 0 else (-ones, c)
        return Node("affine", [vals[vi]], -1, {"what": name}, {"scale": scale, "shift": shift})
    if cls is _NF.MaxPool2d:
        need_value(0, "x")
        if kw.get("return_indices"):
            raise UnsupportedOp("max_pool2d with return_indices")
        attrs = {
            k: kw.get(k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
        }
        return Node("max_pool", [vals[0]], -1, attrs, {})
    if cls is _NF.AvgPool2d:
        need_value(0, "x")
        attrs = {
            k: kw.get(k)
            for k in ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
        }
        return Node("avg_pool", [vals[0]], -1, attrs, {})
    if cls is _NF.AdaptiveAvgPool2d:
        need_value(0, "x")
        return Node("adaptive_avg", [vals[0]], -1, {"out_hw": list(out_shape[-2:])}, {})
    if cls is _NF.Linear:
        need_value(0, "x")
        w, b = const(1, "weight"), const(2, "bias")
        consts = (
            {"weight": np.array(w)} if b is None else {"weight": np.array(w), "bias": np.array(b)}
        )
        return Node("linear", [vals[0]], -1, {"nout": int(w.shape[0])}, consts)
    if cls is _ag.Reshape:
        need_value(0, "x")
        in_shape = shapes[vals[0]]
        batch = bool(out_shape) and bool(in_shape) and out_shape[0] == in_shape[0]
        return Node(
            "reshape",
            [vals[0]],
            -1,
            {"shape": list(out_shape[1:] if batch else out_shape), "batch": batch},
            {},
        )
    if cls is _ag.Concat:
        if any(k != "v" for k in kinds):
            raise UnsupportedOp("concat of a constant")
        axis = kw.get("axis", 0)
        nd = len(shapes[vals[0]])
        if axis % nd != 1:
            raise UnsupportedOp(f"concat along axis {axis} (only channels, axis 1)")
        return Node("concat", list(vals), -1, {}, {})
    if cls is _NF.LocalResponseNorm:
        need_value(0, "x")
        return Node(
            "lrn", [vals[0]], -1, {k: kw.get(k) for k in ("size", "alpha", "beta", "k")}, {}
        )
    if cls is _NF.Dropout:
        raise UnsupportedOp("dropout in training mode (call model.eval() before compiling)")
    raise UnsupportedOp(f"{cls.__name__} is not supported in an inference plan")


def capture(model, example):
    """The graph of model's forward on example (a 4-D float32/float64 ndarray)."""
    from ..nn.module import Module

    if not isinstance(model, Module):
        raise TypeError(f"model must be a fastconv.nn.Module, got {type(model).__name__}")
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"model is in training mode ({', '.join(training[:3])}"
            f"{', ...' if len(training) > 3 else ''}): call model.eval() before compiling"
        )
    values, keep, nodes, shapes = {}, [], [], {0: tuple(example.shape)}
    x = _ag.Tensor(example)
    values[id(x)] = 0
    keep.append(x)

    def record(cls, args, kwargs, result, extra):
        ins = []
        for a in args:
            if isinstance(a, _ag.Tensor) and id(a) in values:
                ins.append(("v", values[id(a)]))
            elif isinstance(a, _ag.Tensor):
                ins.append(("c", a.data))
            elif isinstance(a, np.ndarray):
                ins.append(("c", a))
            else:
                ins.append(("s", a))
        if not any(k == "v" for k, _ in ins):
            return  # an op on constants only: its result is a constant where it is used
        try:
            made = _translate(cls, ins, kwargs, shapes, tuple(result.shape))
        except UnsupportedOp as e:
            raise UnsupportedOp(f"cannot compile op #{len(nodes)} ({cls.__name__}): {e}") from None
        for node in made if isinstance(made, list) else [made]:  # a fused op: a chain, in order
            node.inputs = [nodes[-1].out if v is _PREV else v for v in node.inputs]
            node.out = len(shapes)
            shapes[node.out] = tuple(result.shape)
            nodes.append(node)
        values[id(result)] = node.out
        keep.append(result)

    if _ag._tracer.record is not None:
        raise RuntimeError("fastconv.inference.compile: already capturing on this thread")
    from .. import _core

    _ag._tracer.record = record
    tuning = _core.get_autotune()
    _core.set_autotune(0)  # (the traced forward only records ops: nothing to measure there)
    try:
        with _ag.no_grad():
            out = model(x)
    finally:
        _ag._tracer.record = None
        _core.set_autotune(tuning)
    if not isinstance(out, _ag.Tensor) or id(out) not in values:
        raise UnsupportedOp(
            "the model's forward must return one Tensor computed from its input "
            f"(got {type(out).__name__})"
        )
    return Graph(nodes, values[id(out)], str(example.dtype), tuple(example.shape))


# ----------------------------------------------------------------------------------------------
# passes


def _consumers(g):
    users = {}
    for n in g.nodes:
        for v in n.reads():
            users.setdefault(v, []).append(n)
    return users


def _producers(g):
    return {n.out: n for n in g.nodes}


def fold_batch_norm(g):
    """affine (BatchNorm, a per-channel scale/shift) right after a conv or linear, used only
    there: folded into that op's weight and bias (in float64, then the model's dtype)."""
    users, prod = _consumers(g), _producers(g)
    for a in list(g.nodes):
        if a.op != "affine":
            continue
        p = prod.get(a.inputs[0])
        if (
            p is None
            or p.op not in ("conv", "linear")
            or p.act
            or p.residual is not None
            or len(users.get(p.out, [])) != 1
            or p.out == g.output
        ):
            continue
        scale, shift = a.consts["scale"], a.consts["shift"]
        w = np.asarray(p.consts["weight"], np.float64)
        p.consts["weight"] = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(
            p.consts["weight"].dtype
        )
        b = np.asarray(p.consts.get("bias", 0.0), np.float64)
        p.consts["bias"] = (b * scale + shift).astype(p.consts["weight"].dtype)
        p.fused.append(a.attrs.get("what", "affine"))
        g.nodes.remove(a)
        _rename(g, a.out, p.out)
        users, prod = _consumers(g), _producers(g)


def _rename(g, old, new):
    for n in g.nodes:
        n.inputs = [new if v == old else v for v in n.inputs]
        if n.residual == old:
            n.residual = new
    if g.output == old:
        g.output = new


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def commute_avg_pool(g):
    """avg_pool -> 1x1 conv with fewer outputs than inputs becomes conv -> avg_pool: pooling,
    then a per-pixel product over channels, is the product, then pooling (both are linear and
    a padded tap is 0 either way), and pooled after the product it pools k channels instead of
    c (Inception v3's pool branches: 288 -> 64, 768 -> 192, 2048 -> 192). Only a pool with
    unit stride that keeps the plane's size (kernel 2 * padding + 1), nothing fused, read by
    that conv alone; the conv (unit stride, no padding, one group, nothing fused after it yet)
    then runs without its bias, which the pool adds to its result. Run after fold_batch_norm
    (the conv's folded bias moves with it) and before fuse_activation (which then fuses the
    conv's activation into the pool)."""
    users, prod = _consumers(g), _producers(g)
    fresh = max([0] + [n.out for n in g.nodes]) + 1
    for c in list(g.nodes):
        p = prod.get(c.inputs[0]) if c.op == "conv" else None
        if p is None or p.op != "avg_pool" or p.act or len(users.get(p.out, [])) != 1:
            continue
        a, pa, w = c.attrs, p.attrs, c.consts["weight"]
        k, pad = _pair(pa["kernel_size"]), _pair(pa["padding"])
        s = _pair(pa["stride"] or pa["kernel_size"])
        if (
            c.act
            or c.residual is not None
            or (a["kh"], a["kw"], a["groups"]) != (1, 1, 1)
            or tuple(a["stride"]) != (1, 1)
            or tuple(a["padding"]) != (0, 0)
            or w.shape[0] >= w.shape[1]
            or s != (1, 1)
            or k != (2 * pad[0] + 1, 2 * pad[1] + 1)
        ):
            continue
        c.inputs, p.inputs = [p.inputs[0]], [fresh]
        c.out, p.out = fresh, c.out
        fresh += 1
        if "bias" in c.consts:
            p.consts["bias"] = c.consts.pop("bias")
            p.fused.append("bias")
        c.fused.append("ahead of avg_pool")
        g.nodes.remove(p)
        g.nodes.insert(g.nodes.index(c) + 1, p)
        users, prod = _consumers(g), _producers(g)


def fuse_residual_add(g):
    """add(conv(...), r) where the conv's output is used only there: r becomes the conv's
    residual, added in its epilogue (ResNet's out + identity); the same for a channel_mul
    (an SE block's scaled output + identity)."""
    users, prod = _consumers(g), _producers(g)
    order = {n.out: i for i, n in enumerate(g.nodes)}
    for a in list(g.nodes):
        if a.op != "add":
            continue
        cands = [
            v
            for v in a.inputs
            if (p := prod.get(v)) is not None
            and p.op in ("conv", "channel_mul")
            and not p.act
            and p.residual is None
            and len(users.get(v, [])) == 1
            and v != g.output
        ]
        if not cands or a.inputs[0] == a.inputs[1]:
            continue
        v = max(cands, key=order.get)  # the later one: the other is ready before it runs
        p = prod[v]
        p.residual = a.inputs[1] if a.inputs[0] == v else a.inputs[0]
        p.fused.append("add")
        g.nodes.remove(a)
        _rename(g, a.out, p.out)
        users, prod = _consumers(g), _producers(g)


def fuse_activation(g):
    """An activation right after an op with an epilogue, used only there: applied in it."""
    users, prod = _consumers(g), _producers(g)
    for a in list(g.nodes):
        if a.op != "act":
            continue
        p = prod.get(a.inputs[0])
        if (
            p is None
            or p.op not in EPILOGUE_OPS
            or p.act
            or len(users.get(p.out, [])) != 1
            or p.out == g.output
        ):
            continue
        p.act, p.alpha = a.act, a.alpha
        p.fused.append(a.act)
        g.nodes.remove(a)
        _rename(g, a.out, p.out)
        users, prod = _consumers(g), _producers(g)


def _toposort(g):
    """Nodes in an order where each runs after what it reads (stable: the traced order where
    it already is one; a fused residual may move a node later)."""
    prod, done, order = _producers(g), {0}, []
    pending = list(g.nodes)
    while pending:
        for i, n in enumerate(pending):
            if all(v in done or v not in prod for v in n.reads()):
                order.append(n)
                done.add(n.out)
                del pending[i]
                break
        else:
            raise RuntimeError("inference graph has a cycle")
    g.nodes = order


def optimize(g):
    fold_batch_norm(g)
    commute_avg_pool(g)
    fuse_residual_add(g)
    fuse_activation(g)
    _toposort(g)
    return g

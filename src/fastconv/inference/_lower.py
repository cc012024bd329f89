"""Lowering an optimised graph for one input shape: shapes, algorithms, storage, native steps.

Storage: a reshape is a view of its input, and so is an adaptive average pool onto the size it
is given (AlexNet's 6x6 onto 6x6 at 224x224); at batch 1 each branch of a channel concat is written
straight into its slice of the concat's buffer (elsewhere a copy step puts it there). Buffers that
are not the caller's input or output share one arena: each gets an offset, first fit by size
among the buffers whose lifetimes (first write to last read, in step order) overlap.

Sibling 1x1 convolutions at batch 1: the unit-stride 1x1 convolutions (gemm1x1 or direct) of
one input with the same activation and no residual (an Inception module's first 1x1 of each
branch) run as one product over their stacked filters, which reads the input once instead of
once each and multiplies taller tiles, on the algorithm the heuristic picks for the stacked
shape (_stacked_algo); each one's output is then a channel slice of the stacked output, a view
(a concat that wanted it in its own slice copies it there).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import _core
from ..pooling import _adaptive_size, _Window

_OPS = {
    "conv": 0,
    "max_pool": 1,
    "avg_pool": 2,
    "adaptive_avg": 3,
    "linear": 4,
    "eltwise": 5,
    "channel_mul": 6,
    "affine": 7,
    "lrn": 8,
    "copy": 9,
}
_ACT = {None: 0, "relu": 1, "sigmoid": 2, "tanh": 3, "leaky_relu": 4, "elu": 5}
_INPUT, _OUTPUT, _ARENA = 0, 1, 2
_ALIGN = 16  # elements: every arena buffer starts on a 64-byte line (float32)


@dataclasses.dataclass
class Step:
    """One native step, as summary() shows it."""

    op: str
    in_shape: tuple
    out_shape: tuple
    algo: str = ""
    fused: tuple = ()


@dataclasses.dataclass
class Lowered:
    native: object  # _core.Plan
    steps: list  # Step per native step
    out_shape: tuple
    algos: list  # algorithm per conv node, in node order
    arena_bytes: int


def _shape_of(n, shapes):
    x = shapes[n.inputs[0]]
    a = n.attrs
    if n.op == "conv":
        ho, wo = _core.conv2d_output_size(_conv_desc(n, x))
        return (x[0], a["k"], ho, wo)
    if n.op in ("max_pool", "avg_pool"):
        return _window(n, x).out_shape
    if n.op == "adaptive_avg":
        return tuple(x[:2]) + tuple(_adaptive_size(a["out_hw"], x[2:]))
    if n.op == "linear":
        return tuple(x[:-1]) + (a["nout"],)
    if n.op == "reshape":
        target = ([x[0]] if a["batch"] else []) + list(a["shape"])
        if int(np.prod(target)) != int(np.prod(x)):
            raise ValueError(
                f"a reshape traced as {tuple(target)} does not fit an input of shape "
                f"{x}: compile the model again for this shape"
            )
        return tuple(target)
    if n.op == "concat":
        parts = [shapes[v] for v in n.inputs]
        return (x[0], sum(p[1] for p in parts)) + tuple(x[2:])
    return x  # element-wise and per-channel ops


def _conv_desc(n, x):
    a = n.attrs
    if len(x) != 4 or x[1] != n.consts["weight"].shape[1] * a["groups"]:
        raise ValueError(
            f"conv2d step: input shape {x} does not fit weight "
            f"{n.consts['weight'].shape} (groups={a['groups']})"
        )
    return (
        x[0],
        x[1],
        x[2],
        x[3],
        a["k"],
        a["kh"],
        a["kw"],
        *a["stride"],
        *a["padding"],
        *a["dilation"],
        a["groups"],
    )


def _window(n, x):
    a = n.attrs
    op = "max_pool2d" if n.op == "max_pool" else "avg_pool2d"
    return _Window(
        op, x, x, a["kernel_size"], a["stride"], a["padding"], a.get("dilation", 1), a["ceil_mode"]
    )


def _choose(desc, f64, tune):
    """The conv's algorithm: measured (the autotuner, its table kept; it times plain forwards,
    which repack direct's blocked filters per call) or the heuristic's for filters prepared
    once (``conv2d_choose_prepared``)."""
    if tune:
        name = _core.conv2d_tuned(desc, 0, f64)
        if name is None:
            prev = _core.get_autotune()
            _core.set_autotune(1)
            try:
                dt = np.float64 if f64 else np.float32
                x = np.zeros(desc[:4], dt)
                w = np.zeros((desc[4], desc[1] // desc[13], desc[5], desc[6]), dt)
                y = np.empty((desc[0], desc[4]) + tuple(_core.conv2d_output_size(desc)), dt)
                _core.conv2d_forward(desc, 0, x, w, None, y.reshape(-1))  # tunes this key
            finally:
                _core.set_autotune(prev)
            name = _core.conv2d_tuned(desc, 0, f64)
        if name is not None:
            return name
    return _core.ALGO_NAMES[_core.conv2d_choose_prepared(desc)]


def _is_view(n, shapes):
    """Whether node n's output is its input as it is: a reshape, or an adaptive average pool
    onto the input's own size with nothing fused."""
    if n.op == "reshape":
        return True
    return (
        n.op == "adaptive_avg"
        and shapes[n.out] == shapes[n.inputs[0]]
        and not n.act
        and n.residual is None
    )


_STACK_ALGOS = ("gemm1x1", "direct")  # the algorithms a stack of sibling 1x1s may run on


def _stackable(n, name, g):
    """Whether conv node n (running algorithm `name`) may share one product with its siblings."""
    a = n.attrs
    return (
        name in _STACK_ALGOS
        and n.residual is None
        and n.out != g.output
        and (a["kh"], a["kw"], a["groups"]) == (1, 1, 1)
        and tuple(a["stride"]) == (1, 1)
        and tuple(a["padding"]) == (0, 0)
        and tuple(a["dilation"]) == (1, 1)
    )


def _stacked_algo(desc):
    """The stacked product's algorithm: the heuristic's for prepared filters on the stacked
    shape (its own, not its members': GoogLeNet's 480>192, >96 and >16 at 14x14 stack into a
    480>304 that direct's blocked tiles run in 0.75x gemm1x1's time), gemm1x1 where that is
    neither. Not measured: a saved plan loads with the same choice on the same machine."""
    name = _core.ALGO_NAMES[_core.conv2d_choose_prepared(desc)]
    return name if name in _STACK_ALGOS else "gemm1x1"


def _sibling_groups(g, algo_of, n_images, viewed):
    """Lists of 2+ conv nodes to run as one product (batch 1 only: there a channel slice of an
    NCHW buffer is one contiguous run), in node order. An output that a view reads (a reshape,
    maybe the model's output) stays its own buffer."""
    if n_images != 1:
        return []
    by_key = {}
    for n in g.nodes:
        if n.op == "conv" and n.out not in viewed and _stackable(n, algo_of[id(n)], g):
            by_key.setdefault((n.inputs[0], n.act, n.alpha), []).append(n)
    return [grp for grp in by_key.values() if len(grp) >= 2]


def _stacked(grp, dt):
    """The stacked filters and biases of a sibling group (zeros for a member without bias),
    kept on its first node so that the plan's borrowed constants stay alive."""
    key = ("stacked",) + tuple(n.out for n in grp)
    first = grp[0]
    if key not in first.native:
        w = np.concatenate([np.asarray(n.consts["weight"]) for n in grp])
        b = np.concatenate(
            [
                np.asarray(n.consts["bias"]) if "bias" in n.consts else np.zeros(n.attrs["k"])
                for n in grp
            ]
        )
        first.native[key] = (np.ascontiguousarray(w, dt), np.ascontiguousarray(b, dt))
    return first.native[key]


def lower(g, x_shape, tune, algos=None):
    """The native plan of graph g for inputs of x_shape. algos: a saved plan's choices."""
    f64 = g.dtype == "float64"
    shapes = {0: tuple(x_shape)}
    for n in g.nodes:
        shapes[n.out] = _shape_of(n, shapes)
    n_images = x_shape[0]

    # each conv's algorithm, in node order (a saved plan's, measured, or the heuristic's)
    chosen, algo_of, desc_of = [], {}, {}
    for n in g.nodes:
        if n.op == "conv":
            desc = desc_of[id(n)] = _conv_desc(n, shapes[n.inputs[0]])
            name = algos[len(chosen)] if algos is not None else _choose(desc, f64, tune)
            chosen.append(name)
            algo_of[id(n)] = name
    view_nodes = [n for n in g.nodes if _is_view(n, shapes)]
    views = {n.out for n in view_nodes}
    viewed = {n.inputs[0] for n in view_nodes}
    groups = _sibling_groups(g, algo_of, n_images, viewed)
    stacked_out = {}  # first member's id -> the stacked output's value
    for grp in groups:
        v = max(shapes) + 1
        x = shapes[grp[0].inputs[0]]
        shapes[v] = (x[0], sum(n.attrs["k"] for n in grp)) + tuple(x[2:])
        stacked_out[id(grp[0])] = v
    in_group = {id(n): grp for grp in groups for n in grp}

    # storage: each value lives in its parent's buffer at an element offset (its own buffer
    # when it is its own parent); chains resolve below (a concat inside a concat, a view of a
    # value that then went into a concat's slice)
    parent = {v: (v, 0) for v in shapes}
    for grp in groups:
        v = stacked_out[id(grp[0])]
        plane, c0 = int(np.prod(shapes[v][2:])), 0
        for n in grp:  # each member's output: its channels of the stacked output
            parent[n.out] = (v, c0 * plane)
            c0 += n.attrs["k"]
    readers = {}
    for n in g.nodes:
        for v in n.reads():
            readers.setdefault(v, []).append(n)
    copies = {}  # concat node out -> [(value, channel offset)] to copy in
    for n in g.nodes:
        if n.out in views:
            parent[n.out] = (n.inputs[0], 0)
        elif n.op == "concat":
            plane = int(np.prod(shapes[n.out][2:]))
            c0, todo = 0, []
            for v in n.inputs:
                ok = (
                    n_images == 1
                    and v != 0
                    and parent[v] == (v, 0)
                    and v != g.output
                    and len(readers.get(v, [])) == 1
                    and n.inputs.count(v) == 1
                    and v not in viewed
                )
                if ok:
                    parent[v] = (n.out, c0 * plane)
                else:
                    todo.append((v, c0))
                c0 += shapes[v][1]
            copies[n.out] = todo

    def resolve(v):
        off = 0
        while parent[v][0] != v:
            v, o = parent[v]
            off += o
        return v, off

    where = {v: resolve(v) for v in shapes}
    size = {v: int(np.prod(s)) for v, s in shapes.items()}
    out_root, in_root = where[g.output][0], 0
    copy_out = out_root == in_root  # the output is the input (or a view of it): copy it
    # lifetimes per root, in node positions (-1: before the first step)
    first, last = {0: -1}, {}
    for i, n in enumerate(g.nodes):
        r = where[n.out][0]
        first[r] = min(first.get(r, i), i)
        for v in n.reads():
            last[where[v][0]] = max(last.get(where[v][0], -1), i)
    offset, placed, arena = {}, [], 0
    roots = sorted(
        {r for r, _ in where.values() if r not in (in_root, out_root)}, key=lambda r: (-size[r], r)
    )
    for r in roots:
        lo, hi = first.get(r, -1), last.get(r, first.get(r, -1))
        busy = sorted((o, o + s) for o, s, a, b in placed if not (b < lo or hi < a))
        at = 0
        for a, b in busy:
            if at + size[r] <= a:
                break
            at = max(at, -(-b // _ALIGN) * _ALIGN)
        offset[r] = at
        placed.append((at, size[r], lo, hi))
        arena = max(arena, at + size[r])

    out_elems = size[g.output]
    plan = _core.Plan(f64, size[0], out_elems, arena)
    dt = np.float64 if f64 else np.float32
    vids = {}

    def value(v):
        if v not in vids:
            r, off = where[v]
            if r == in_root:
                kind, base = _INPUT, 0
            elif r == out_root and not copy_out:
                kind, base = _OUTPUT, 0
            else:
                kind, base = _ARENA, offset[r]
            vids[v] = plan.add_value(kind, base + off, size[v])
        return vids[v]

    def const(n, name):
        if name not in n.native:
            n.native[name] = np.ascontiguousarray(n.consts[name], dtype=dt)
        return plan.add_constant(n.native[name], copy=False)

    steps = []
    for n in g.nodes:
        x = shapes[n.inputs[0]]
        st = {
            "op": _OPS.get(n.op, -1),
            "act": _ACT[n.act],
            "alpha": n.alpha,
            "in0": value(n.inputs[0]),
            "out": value(n.out),
        }
        info = Step(n.op, x, shapes[n.out], fused=tuple(n.fused))
        hw = int(np.prod(x[2:])) if len(x) > 2 else 1
        if n.out in views:
            continue
        if n.op == "conv" and id(n) in in_group:
            grp = in_group[id(n)]
            if n is not grp[0]:
                continue  # (run by the group's first member)
            v = stacked_out[id(n)]
            w, b = _stacked(grp, np.float64 if f64 else np.float32)
            desc = list(desc_of[id(n)])
            desc[4] = shapes[v][1]
            fused = []
            for m in grp:
                fused += [f for f in m.fused if f not in fused]
            sname = _stacked_algo(desc)
            st.update(
                conv=desc,
                algo=_core.ALGO_NAMES.index(sname),
                weight=plan.add_constant(w, copy=False),
                bias=plan.add_constant(b, copy=False),
                out=value(v),
            )
            info = Step(
                "conv",
                x,
                shapes[v],
                algo=sname,
                fused=tuple(fused) + ("+".join(str(m.attrs["k"]) for m in grp),),
            )
        elif n.op == "conv":
            desc = desc_of[id(n)]
            name = algo_of[id(n)]
            st.update(conv=list(desc), algo=_core.ALGO_NAMES.index(name), weight=const(n, "weight"))
            if "bias" in n.consts:
                st["bias"] = const(n, "bias")
            if n.residual is not None:
                st["in1"] = value(n.residual)
            info.algo = name
        elif n.op in ("max_pool", "avg_pool"):
            st["pool"] = list(_window(n, x).desc)
            st["count_include_pad"] = int(bool(n.attrs.get("count_include_pad", True)))
            if "bias" in n.consts:  # (commute_avg_pool: the 1x1 conv's bias, added after)
                st["bias"] = const(n, "bias")
        elif n.op == "adaptive_avg":
            st.update(dims=list(x), extra=list(shapes[n.out][2:]))
        elif n.op == "linear":
            m = int(np.prod(x[:-1]))
            st.update(dims=[m, x[-1], n.attrs["nout"], 0], weight=const(n, "weight"))
            if "bias" in n.consts:
                st["bias"] = const(n, "bias")
        elif n.op in ("act", "add"):
            st.update(op=_OPS["eltwise"], dims=[size[n.out], 0, 0, 0])
            if n.op == "add":
                st["in1"] = value(n.inputs[1])
        elif n.op == "channel_mul":
            st.update(dims=[x[0], x[1], hw, 0], in1=value(n.inputs[1]))
            if n.residual is not None:  # SE: x * scale + identity, in the same pass
                st["in2"] = value(n.residual)
        elif n.op == "affine":
            st.update(
                dims=[x[0], x[1] if len(x) > 1 else 1, hw, 0],
                weight=const(n, "scale"),
                bias=const(n, "shift"),
            )
        elif n.op == "lrn":
            a = n.attrs
            st.update(
                dims=[x[0], x[1], hw, 0], extra=[a["size"], 0], lrn=[a["alpha"], a["beta"], a["k"]]
            )
        elif n.op == "concat":
            total = shapes[n.out][1]
            for v, c0 in copies[n.out]:
                sv = shapes[v]
                plan.add_step(
                    {
                        "op": _OPS["copy"],
                        "in0": value(v),
                        "out": value(n.out),
                        "dims": [sv[0], sv[1], int(np.prod(sv[2:])), 0],
                        "extra": [total, c0],
                    }
                )
                steps.append(Step("copy", sv, shapes[n.out]))
            continue
        else:
            raise ValueError(f"inference plan: no native step for op {n.op!r}")
        plan.add_step(st)
        steps.append(info)
    if copy_out:
        out_v = plan.add_value(_OUTPUT, 0, out_elems)
        plan.add_step(
            {
                "op": _OPS["eltwise"],
                "in0": value(g.output),
                "out": out_v,
                "dims": [out_elems, 0, 0, 0],
            }
        )
        steps.append(Step("copy", shapes[g.output], shapes[g.output]))
    itemsize = 8 if f64 else 4
    return Lowered(plan, steps, shapes[g.output], chosen, arena * itemsize)

"""The PyTorch front end of inference plans: a ``torch.nn.Module`` traced by torch.fx (shapes
from its ShapeProp on the example input) into the same graph ``fastconv.inference`` compiles.
Only the layers fastconv has are taken; any other node is an UnsupportedOp naming it."""

from __future__ import annotations

import operator

import numpy as np

from ._graph import Graph, Node, UnsupportedOp, bn_node, conv_node


def _np(t, dtype):
    return t.detach().cpu().numpy().astype(dtype)


def graph_from_torch(module, example):
    import torch
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    tnn, TF = torch.nn, torch.nn.functional
    if not isinstance(module, tnn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    training = [n or type(module).__name__ for n, m in module.named_modules() if m.training]
    if training:
        raise ValueError(
            f"module is in training mode ({', '.join(training[:3])}"
            f"{', ...' if len(training) > 3 else ''}): call module.eval() before compiling"
        )
    dtype = np.float64 if example.dtype == torch.float64 else np.float32
    gm = torch.fx.symbolic_trace(module)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    vid, const, nodes, shapes = {}, {}, [], {}

    def shape(n):
        return tuple(n.meta["tensor_meta"].shape)

    def arg(a):
        """("v", id) for a traced tensor, ("c", ndarray) for a constant, ("s", x) for a scalar."""
        if isinstance(a, torch.fx.Node):
            if a in vid:
                return "v", vid[a]
            if a in const:
                return "c", const[a]
            raise UnsupportedOp(
                f"node {a.name} ({a.op} {a.target}) is not a tensor fastconv computes"
            )
        if isinstance(a, torch.Tensor):
            return "c", _np(a, dtype)
        return "s", a

    def add(node, n):
        n.out = max(shapes) + 1
        shapes[n.out] = shape(node)
        vid[node] = n.out
        nodes.append(n)

    def act_node(v, name, alpha=0.0):
        return Node("act", [v], -1, {}, {}, act=name, alpha=float(alpha))

    def elementwise(node, name, a, b):
        (ka, va), (kb, vb) = arg(a), arg(b)
        if ka == kb == "v":
            if name == "add" and shapes[va] == shapes[vb]:
                return Node("add", [va, vb], -1, {}, {})
            if name == "mul":
                for big, small in ((va, vb), (vb, va)):
                    if shapes[small] == shapes[big][:2] + (1, 1):
                        return Node("channel_mul", [big, small], -1, {}, {})
            raise UnsupportedOp(f"{node.name}: {name} of shapes {shapes[va]} and {shapes[vb]}")
        v, c = (va, vb) if ka == "v" else (vb, va)
        c = np.asarray(c, np.float64)
        x_shape = shapes[v]
        if c.size == 1:
            c = np.full(x_shape[1], float(c.reshape(-1)[0]))
        elif c.size == x_shape[1] and c.reshape(-1).shape[0] == x_shape[1]:
            c = c.reshape(-1)
        else:
            raise UnsupportedOp(f"{node.name}: {name} by a constant of shape {c.shape}")
        one, zero = np.ones_like(c), np.zeros_like(c)
        scale, shift = (c, zero) if name == "mul" else (one, c)
        return Node("affine", [v], -1, {"what": name}, {"scale": scale, "shift": shift})

    acts = {
        tnn.ReLU: "relu",
        tnn.Sigmoid: "sigmoid",
        tnn.Tanh: "tanh",
        tnn.LeakyReLU: "leaky_relu",
        tnn.ELU: "elu",
    }
    fn_acts = {
        TF.relu: "relu",
        torch.relu: "relu",
        torch.sigmoid: "sigmoid",
        torch.tanh: "tanh",
        "relu": "relu",
        "sigmoid": "sigmoid",
        "tanh": "tanh",
    }
    for node in gm.graph.nodes:
        where = f"node {node.name} ({node.op} {getattr(node.target, '__name__', node.target)})"
        try:
            if node.op == "placeholder":
                if 0 in vid.values():
                    raise UnsupportedOp("a module with more than one input")
                vid[node], shapes[0] = 0, shape(node)
                continue
            if node.op == "get_attr":
                obj = gm
                for part in node.target.split("."):
                    obj = getattr(obj, part)
                const[node] = _np(obj, dtype)
                continue
            if node.op == "output":
                out = node.args[0]
                if not isinstance(out, torch.fx.Node) or out not in vid:
                    raise UnsupportedOp(
                        "the forward must return one tensor computed from its input"
                    )
                return Graph(nodes, vid[out], np.dtype(dtype).name, shapes[0])
            kind, v = (
                arg(node.args[0])
                if node.args and not isinstance(node.args[0], (list, tuple))
                else (None, None)
            )
            if node.op == "call_module":
                m = gm.get_submodule(node.target)
                if isinstance(m, (tnn.Dropout, tnn.Identity)):
                    vid[node] = v
                    continue
                if isinstance(m, tnn.Conv2d):
                    if m.padding_mode != "zeros":
                        raise UnsupportedOp(f"Conv2d padding_mode={m.padding_mode!r}")
                    n = conv_node(
                        v,
                        shapes[v],
                        _np(m.weight, dtype),
                        None if m.bias is None else _np(m.bias, dtype),
                        m.stride,
                        m.padding,
                        m.dilation,
                        m.groups,
                    )
                elif isinstance(m, tnn.BatchNorm2d):
                    if m.running_mean is None:
                        raise UnsupportedOp("BatchNorm2d without running statistics")
                    n = bn_node(
                        v,
                        _np(m.running_mean, np.float64),
                        _np(m.running_var, np.float64),
                        None if m.weight is None else _np(m.weight, np.float64),
                        None if m.bias is None else _np(m.bias, np.float64),
                        m.eps,
                    )
                elif type(m) in acts:
                    n = act_node(
                        v, acts[type(m)], getattr(m, "negative_slope", getattr(m, "alpha", 0.0))
                    )
                elif isinstance(m, tnn.MaxPool2d):
                    if m.return_indices:
                        raise UnsupportedOp("MaxPool2d with return_indices")
                    n = Node(
                        "max_pool",
                        [v],
                        -1,
                        dict(
                            kernel_size=m.kernel_size,
                            stride=m.stride,
                            padding=m.padding,
                            dilation=m.dilation,
                            ceil_mode=m.ceil_mode,
                        ),
                        {},
                    )
                elif isinstance(m, tnn.AvgPool2d):
                    if m.divisor_override:
                        raise UnsupportedOp("AvgPool2d with divisor_override")
                    n = Node(
                        "avg_pool",
                        [v],
                        -1,
                        dict(
                            kernel_size=m.kernel_size,
                            stride=m.stride,
                            padding=m.padding,
                            ceil_mode=m.ceil_mode,
                            count_include_pad=m.count_include_pad,
                        ),
                        {},
                    )
                elif isinstance(m, tnn.AdaptiveAvgPool2d):
                    n = Node("adaptive_avg", [v], -1, {"out_hw": list(shape(node)[-2:])}, {})
                elif isinstance(m, tnn.Linear):
                    consts = {"weight": _np(m.weight, dtype)}
                    if m.bias is not None:
                        consts["bias"] = _np(m.bias, dtype)
                    n = Node("linear", [v], -1, {"nout": m.out_features}, consts)
                elif isinstance(m, tnn.Flatten):
                    n = _reshape(v, shapes[v], shape(node))
                elif isinstance(m, tnn.LocalResponseNorm):
                    n = Node(
                        "lrn", [v], -1, dict(size=m.size, alpha=m.alpha, beta=m.beta, k=m.k), {}
                    )
                else:
                    raise UnsupportedOp(f"module {type(m).__name__} is not supported in a plan")
            elif node.op in ("call_function", "call_method"):
                t = node.target
                if t in fn_acts:
                    n = act_node(v, fn_acts[t])
                elif t in (operator.add, torch.add, "add", operator.mul, torch.mul, "mul"):
                    name = "add" if t in (operator.add, torch.add, "add") else "mul"
                    n = elementwise(node, name, node.args[0], node.args[1])
                elif t in (torch.flatten, "flatten", "view", "reshape"):
                    n = _reshape(v, shapes[v], shape(node))
                elif t == "contiguous":
                    vid[node] = v
                    continue
                elif t is torch.cat:
                    parts = [arg(a) for a in node.args[0]]
                    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
                    if any(k != "v" for k, _ in parts) or dim % len(shape(node)) != 1:
                        raise UnsupportedOp("torch.cat other than of computed tensors along dim 1")
                    n = Node("concat", [p for _, p in parts], -1, {}, {})
                elif t in (TF.adaptive_avg_pool2d,):
                    n = Node("adaptive_avg", [v], -1, {"out_hw": list(shape(node)[-2:])}, {})
                elif t in _functional_ops(TF):
                    n = _functional(node, t, TF, v, shapes, lambda a: arg(a), dtype)
                elif t == "size":
                    continue  # an int feeding a view: the view's shape is taken from ShapeProp
                else:
                    raise UnsupportedOp(
                        f"{node.op} {getattr(t, '__name__', t)} is not supported in a plan"
                    )
            else:
                raise UnsupportedOp(f"fx node kind {node.op}")
            if kind != "v" and n.inputs and n.op not in ("concat", "add", "channel_mul", "affine"):
                raise UnsupportedOp("its input is not computed from the module's input")
        except UnsupportedOp as e:
            raise UnsupportedOp(f"cannot compile {where}: {e}") from None
        add(node, n)
    raise UnsupportedOp("the traced graph has no output")


def _reshape(v, in_shape, out_shape):
    batch = bool(out_shape) and bool(in_shape) and out_shape[0] == in_shape[0]
    return Node(
        "reshape",
        [v],
        -1,
        {"shape": list(out_shape[1:] if batch else out_shape), "batch": batch},
        {},
    )


def _params(node, names, defaults):
    """node's arguments by name: positional ones first, then keywords, then the defaults."""
    out = dict(defaults)
    out.update(zip(names, node.args))
    out.update(node.kwargs)
    return out


def _functional_ops(TF):
    return (
        TF.conv2d,
        TF.batch_norm,
        TF.linear,
        TF.max_pool2d,
        TF.avg_pool2d,
        TF.local_response_norm,
        TF.leaky_relu,
        TF.elu,
    )


def _functional(node, t, TF, v, shapes, arg, dtype):
    """A torch.nn.functional call whose weights are constants (get_attr nodes or tensors)."""

    def const(a):
        if a is None:
            return None
        k, c = arg(a)
        if k != "c":
            raise UnsupportedOp("a weight computed from the input is not supported")
        return np.asarray(c)

    if t is TF.conv2d:
        p = _params(
            node,
            ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
            dict(bias=None, stride=1, padding=0, dilation=1, groups=1),
        )
        return conv_node(
            v,
            shapes[v],
            const(p["weight"]).astype(dtype),
            None if p["bias"] is None else const(p["bias"]).astype(dtype),
            p["stride"],
            p["padding"],
            p["dilation"],
            p["groups"],
        )
    if t is TF.batch_norm:
        p = _params(
            node,
            (
                "input",
                "running_mean",
                "running_var",
                "weight",
                "bias",
                "training",
                "momentum",
                "eps",
            ),
            dict(weight=None, bias=None, training=False, eps=1e-5),
        )
        if p["training"]:
            raise UnsupportedOp("batch_norm with training=True")
        return bn_node(
            v,
            const(p["running_mean"]),
            const(p["running_var"]),
            const(p["weight"]),
            const(p["bias"]),
            p["eps"],
        )
    if t is TF.linear:
        p = _params(node, ("input", "weight", "bias"), dict(bias=None))
        w = const(p["weight"]).astype(dtype)
        consts = (
            {"weight": w}
            if p["bias"] is None
            else {"weight": w, "bias": const(p["bias"]).astype(dtype)}
        )
        return Node("linear", [v], -1, {"nout": int(w.shape[0])}, consts)
    if t is TF.max_pool2d:
        p = _params(
            node,
            (
                "input",
                "kernel_size",
                "stride",
                "padding",
                "dilation",
                "ceil_mode",
                "return_indices",
            ),
            dict(stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False),
        )
        if p["return_indices"]:
            raise UnsupportedOp("max_pool2d with return_indices")
        return Node(
            "max_pool",
            [v],
            -1,
            {k: p[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")},
            {},
        )
    if t is TF.avg_pool2d:
        p = _params(
            node,
            (
                "input",
                "kernel_size",
                "stride",
                "padding",
                "ceil_mode",
                "count_include_pad",
                "divisor_override",
            ),
            dict(
                stride=None,
                padding=0,
                ceil_mode=False,
                count_include_pad=True,
                divisor_override=None,
            ),
        )
        if p["divisor_override"]:
            raise UnsupportedOp("avg_pool2d with divisor_override")
        return Node(
            "avg_pool",
            [v],
            -1,
            {
                k: p[k]
                for k in ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
            },
            {},
        )
    if t is TF.local_response_norm:
        p = _params(
            node, ("input", "size", "alpha", "beta", "k"), dict(alpha=1e-4, beta=0.75, k=1.0)
        )
        return Node("lrn", [v], -1, {k: p[k] for k in ("size", "alpha", "beta", "k")}, {})
    if t is TF.leaky_relu:
        p = _params(node, ("input", "negative_slope"), dict(negative_slope=0.01))
        return Node("act", [v], -1, {}, {}, act="leaky_relu", alpha=float(p["negative_slope"]))
    p = _params(node, ("input", "alpha"), dict(alpha=1.0))  # elu
    return Node("act", [v], -1, {}, {}, act="elu", alpha=float(p["alpha"]))

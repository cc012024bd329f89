"""A PyTorch module running a captured graph op for op (torch.nn.functional, the same weights):
the peer ``fastconv bench infer`` times as PyTorch eager and exports to ONNX for ONNX Runtime
and OpenVINO, so every runtime gets the very same network. Needs torch (imported here only)."""

from __future__ import annotations

import numpy as np


def torch_twin(graph):
    """torch.nn.Module for an unoptimised graph (fastconv.inference._graph.capture)."""
    import torch

    F = torch.nn.functional
    dtype = torch.float64 if graph.dtype == "float64" else torch.float32

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for i, n in enumerate(graph.nodes):
                for k, a in n.consts.items():
                    self.register_buffer(
                        f"c{i}_{k}", torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
                    )

        def forward(self, x):
            env = {0: x}
            for i, n in enumerate(graph.nodes):
                c = {k: getattr(self, f"c{i}_{k}") for k in n.consts}
                a, v = n.attrs, env[n.inputs[0]]
                if n.op == "conv":
                    y = F.conv2d(
                        v,
                        c["weight"],
                        c.get("bias"),
                        a["stride"],
                        a["padding"],
                        a["dilation"],
                        a["groups"],
                    )
                elif n.op == "affine" and a.get("what") == "batch_norm":
                    y = F.batch_norm(
                        v,
                        c["mean"],
                        c["var"],
                        c.get("bn_weight"),
                        c.get("bn_bias"),
                        False,
                        0.0,
                        a["eps"],
                    )
                elif n.op == "affine":
                    shape = (1, -1) + (1,) * (v.dim() - 2)
                    y = v * c["scale"].reshape(shape) + c["shift"].reshape(shape)
                elif n.op == "act":
                    y = {
                        "relu": F.relu,
                        "sigmoid": torch.sigmoid,
                        "tanh": torch.tanh,
                        "leaky_relu": lambda t: F.leaky_relu(t, n.alpha),
                        "elu": lambda t: F.elu(t, n.alpha),
                    }[n.act](v)
                elif n.op == "add":
                    y = v + env[n.inputs[1]]
                elif n.op == "channel_mul":
                    y = v * env[n.inputs[1]]
                elif n.op == "max_pool":
                    y = F.max_pool2d(
                        v,
                        a["kernel_size"],
                        a["stride"] or a["kernel_size"],
                        a["padding"],
                        a["dilation"],
                        bool(a["ceil_mode"]),
                    )
                elif n.op == "avg_pool":
                    y = F.avg_pool2d(
                        v,
                        a["kernel_size"],
                        a["stride"] or a["kernel_size"],
                        a["padding"],
                        bool(a["ceil_mode"]),
                        bool(a["count_include_pad"]),
                    )
                elif n.op == "adaptive_avg":
                    y = F.adaptive_avg_pool2d(v, a["out_hw"])
                elif n.op == "linear":
                    y = F.linear(v, c["weight"], c.get("bias"))
                elif n.op == "reshape":
                    y = v.reshape(((v.shape[0],) if a["batch"] else ()) + tuple(a["shape"]))
                elif n.op == "concat":
                    y = torch.cat([env[u] for u in n.inputs], 1)
                elif n.op == "lrn":
                    y = F.local_response_norm(v, a["size"], a["alpha"], a["beta"], a["k"])
                else:
                    raise ValueError(f"no PyTorch twin for op {n.op!r}")
                env[n.out] = y
            return env[graph.output]

    return Twin().eval()

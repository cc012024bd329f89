"""Training steps of whole networks for ``fastconv bench nets``: one SGD-with-momentum step
(zero_grad, forward in training mode, cross-entropy, backward, update) of ResNet-18 and
ResNet-50 at 224x224, fastconv (fastconv.models) next to PyTorch (the same architecture from
torch.nn, fastconv._torch_models, with the same weights), timed the way bench.timeit times
every case."""
from __future__ import annotations

import numpy as np

TRAIN_NETS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet50": ("bottleneck", [3, 4, 6, 3])}
CASE = "{} step"  # the row's case name


def step_flops(model, x):
    """3 x the forward FLOPs of the convolutions and linear layers (forward, data and weight
    gradients), counted on the model's graph (captured in eval mode, then back to training)."""
    from .bench_infer import net_flops
    from .inference._graph import capture
    model.eval()
    try:
        return 3.0 * net_flops(capture(model, x), x.shape)
    finally:
        model.train()


def bench_train_step(name, batch, libs, torch, repeat, tick, timeit):
    """Rows {"suite": "nets", "case": "<net> step", "lib", "dir": "train", "ms", "gflops"}."""
    from . import autograd, models, optim
    from .nn import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
    y = rng.integers(0, 1000, batch)
    autograd.manual_seed(0)
    model = models.get_model(name)
    flops = step_flops(model, x)
    state = {k: np.array(v) for k, v in model.state_dict().items()}  # before any step
    rows = []
    for lib in libs:
        if lib == "fastconv":
            opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
            xt = autograd.Tensor(x)

            def step():
                opt.zero_grad()
                F.cross_entropy(model(xt), y).backward()
                opt.step()
        elif lib == "torch" and torch is not None:
            from ._torch_models import torch_resnet
            tmodel = torch_resnet(*TRAIN_NETS[name])
            tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            def step():
                topt.zero_grad()
                torch.nn.functional.cross_entropy(tmodel(xt), yt).backward()
                topt.step()
        else:
            continue
        t = timeit(step, repeat)
        rows.append({"suite": "nets", "case": CASE.format(name), "lib": lib, "dir": "train",
                     "ms": t * 1e3, "gflops": flops / t / 1e9})
        tick()
    return rows

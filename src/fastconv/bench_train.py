"""Training steps of whole networks for ``fastconv bench nets``: one SGD-with-momentum step
(zero_grad, forward in training mode, cross-entropy, backward, update) of ResNet-18 and
ResNet-50 at 224x224 and Inception v3 at 299x299 (its auxiliary head on, its loss weighted 0.4
as torchvision's reference training does), fastconv (fastconv.models) next to PyTorch (the same
architecture from torch.nn, fastconv._torch_models, with the same weights), taking turns over
interleaved rounds the way every case of ``fastconv bench`` is timed (bench.timed_rows)."""

from __future__ import annotations

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

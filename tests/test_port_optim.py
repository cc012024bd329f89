"""Code ported from PyTorch runs unchanged: RMSprop, Adagrad, add_param_group, step(closure), the
schedules and gradient clipping, each step for step against torch's (float64), and their
state_dicts round-tripping mid-run (ours and torch's, both ways)."""

import copy
import inspect
import json
import math

import numpy as np
import pytest

from fastconv import autograd, optim
from fastconv.nn import Parameter, utils

torch = pytest.importorskip("torch")
lr_scheduler = torch.optim.lr_scheduler

RTOL = 1e-12
SHAPES = ((3, 4), (5,), (2, 2))


def close(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, what
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-15, err_msg=what)


def tensors(x):
    """A state_dict's arrays as torch tensors (ours, for torch's load_state_dict)."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x.copy())
    if isinstance(x, dict):
        return {k: tensors(v) for k, v in x.items()}
    return x


def two_groups(ps):
    return [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.03}]


class Pair:
    """The same parameters, optimizer and gradients in fastconv and in torch."""

    def __init__(self, name, kw, seed=0, groups=two_groups):
        rng = np.random.default_rng(seed)
        start = [rng.standard_normal(s) for s in SHAPES]
        self.ours = [Parameter(a.copy()) for a in start]
        self.theirs = [torch.tensor(a.copy(), requires_grad=True) for a in start]
        self.opt_o = getattr(optim, name)(groups(self.ours), **kw)
        self.opt_t = getattr(torch.optim, name)(groups(self.theirs), **kw)

    def steps(self, n, seed, check=True):
        rng = np.random.default_rng(seed)
        for step in range(n):
            for p, q in zip(self.ours, self.theirs):
                g = rng.standard_normal(p.data.shape)
                p.grad, q.grad = g.copy(), torch.from_numpy(g.copy())
            self.opt_o.step()
            self.opt_t.step()
            if check:
                self.check(f"step {step}")

    def check(self, what=""):
        for i, (p, q) in enumerate(zip(self.ours, self.theirs)):
            close(p.data, q.detach().numpy(), f"param {i} {what}")


# ----------------------------------------------------------------------------------------------
# RMSprop and Adagrad

RMSPROP = [
    dict(lr=1e-2),
    dict(lr=1e-2, alpha=0.9, eps=1e-6, weight_decay=0.1),
    dict(lr=1e-2, momentum=0.9),
    dict(lr=1e-2, centered=True),
    dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=1e-2, maximize=True),
    dict(lr=1e-2, alpha=0.3),
]  # alpha < 0.5: the other side of lerp
ADAGRAD = [
    dict(lr=1e-1),
    dict(lr=1e-1, lr_decay=0.1, weight_decay=0.05),
    dict(lr=1e-1, initial_accumulator_value=0.5, eps=1e-6),
    dict(lr=1e-1, maximize=True, lr_decay=1e-2),
]
NEW = [("RMSprop", kw) for kw in RMSPROP] + [("Adagrad", kw) for kw in ADAGRAD]


@pytest.mark.parametrize("name,kw", NEW, ids=str)
def test_new_optimizers_match_torch(name, kw):
    Pair(name, kw).steps(6, seed=1)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True)),
        ("Adagrad", dict(lr=1e-1, lr_decay=0.1)),
    ],
    ids=str,
)
def test_new_optimizers_float32(name, kw):
    rng = np.random.default_rng(0)
    p64 = Parameter(rng.standard_normal((4, 5)))
    p32 = Parameter(p64.data.astype(np.float32))
    o64, o32 = getattr(optim, name)([p64], **kw), getattr(optim, name)([p32], **kw)
    for _ in range(4):
        g = rng.standard_normal((4, 5))
        p64.grad, p32.grad = g, g.astype(np.float32)
        o64.step(), o32.step()
    assert p32.data.dtype == np.float32
    assert all(
        v.dtype == np.float32
        for s in o32.state.values()
        for v in s.values()
        if isinstance(v, np.ndarray)
    )
    np.testing.assert_allclose(p32.data, p64.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True)),
        ("RMSprop", dict(lr=1e-2)),
        ("Adagrad", dict(lr=1e-1, lr_decay=0.1, initial_accumulator_value=0.1)),
    ],
    ids=str,
)
def test_new_optimizers_state_dict_both_ways(name, kw):
    a = Pair(name, kw)
    if name == "Adagrad":  # PyTorch's Adagrad has every parameter's state from the start
        so, st = a.opt_o.state_dict(), a.opt_t.state_dict()
        assert sorted(so["state"]) == sorted(st["state"]) == [0, 1, 2]
        assert so["state"][0]["step"] == 0
        close(so["state"][0]["sum"], st["state"][0]["sum"].numpy())
    a.steps(3, seed=1)
    so, st = a.opt_o.state_dict(), a.opt_t.state_dict()
    assert sorted(so["state"]) == sorted(st["state"])
    for i in so["state"]:
        assert sorted(so["state"][i]) == sorted(st["state"][i])
        for k, v in so["state"][i].items():
            if k == "step":
                assert v == int(st["state"][i][k]) == 3
            else:
                close(v, st["state"][i][k].numpy(), f"state[{i}][{k}]")
    for go, gt in zip(so["param_groups"], st["param_groups"]):
        for k in go.keys() & gt.keys():
            assert go[k] == gt[k], k

    # torch's dict into ours, ours into torch's, ours into ours; all go on as the original
    b, c, d = Pair(name, kw, seed=7), Pair(name, kw, seed=8), Pair(name, kw, seed=9)
    for other in (b, c, d):
        for p, q, src in zip(other.ours, other.theirs, a.ours):
            p.data[...] = src.data
            with torch.no_grad():
                q.copy_(torch.from_numpy(src.data.copy()))
    b.opt_o.load_state_dict(st)
    c.opt_t.load_state_dict({"state": tensors(so["state"]), "param_groups": so["param_groups"]})
    d.opt_o.load_state_dict(so)
    for pair in (a, b, c, d):
        pair.steps(3, seed=2, check=False)
    for i in range(len(SHAPES)):
        want = a.theirs[i].detach().numpy()
        close(b.ours[i].data, want, "torch -> ours")
        close(c.theirs[i].detach().numpy(), want, "ours -> torch")
        assert np.array_equal(d.ours[i].data, a.ours[i].data)  # ours -> ours: bitwise


def test_new_optimizers_check_hyper_parameters_and_state():
    p = [Parameter(np.ones(2))]
    for bad in (dict(lr=-1), dict(alpha=-0.1), dict(eps=-1), dict(momentum=-1)):
        with pytest.raises(ValueError):
            optim.RMSprop(p, **bad)
    for bad in (dict(lr_decay=-1), dict(initial_accumulator_value=-1), dict(weight_decay=-1)):
        with pytest.raises(ValueError):
            optim.Adagrad(p, **bad)
    opt = optim.RMSprop(p, momentum=0.9, centered=True)
    p[0].grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    del sd["state"][0]["grad_avg"]
    with pytest.raises(ValueError, match="grad_avg"):
        optim.RMSprop(p, momentum=0.9, centered=True).load_state_dict(sd)


# ----------------------------------------------------------------------------------------------
# add_param_group and step(closure)


def test_add_param_group_matches_torch():
    a = Pair("SGD", dict(lr=0.1, momentum=0.9), groups=lambda ps: ps[:1])
    a.steps(2, seed=1, check=False)
    a.opt_o.add_param_group({"params": a.ours[1:], "lr": 0.01})
    a.opt_t.add_param_group({"params": a.theirs[1:], "lr": 0.01})
    a.steps(3, seed=2)
    go, gt = a.opt_o.param_groups[1], a.opt_t.param_groups[1]
    assert go["momentum"] == 0.9 and go["lr"] == 0.01  # defaults filled in
    for k in go.keys() & gt.keys() - {"params"}:
        assert go[k] == gt[k], k
    assert len(a.opt_o.state_dict()["param_groups"]) == 2


def test_add_param_group_rules():
    a, b, c = (Parameter(np.ones(2)) for _ in range(3))
    group = {"params": [b], "lr": 0.5}
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group(group)
    assert group == {"params": [b], "lr": 0.5}  # the caller's dict is left alone
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    opt.add_param_group({"params": c})  # one parameter alone
    assert opt.param_groups[2]["params"] == [c] and opt.param_groups[2]["lr"] == 0.1
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [Parameter(np.ones(1)), a]})
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [a]}, {"params": [a, b]}], lr=0.1)
    with pytest.raises(TypeError, match="set"):
        opt.add_param_group({"params": {Parameter(np.ones(1))}})
    with pytest.raises(TypeError):
        opt.add_param_group([Parameter(np.ones(1))])
    with pytest.raises(TypeError):
        optim.SGD(a, lr=0.1)  # a single parameter, not an iterable of them
    with pytest.raises(TypeError, match="ndarray"):
        optim.SGD([np.ones(2)], lr=0.1)
    assert len(opt.param_groups) == 3  # nothing added by the failures


def test_named_parameters():
    ps = [Parameter(np.ones(2)), Parameter(np.ones(3))]
    opt = optim.SGD([("w", ps[0]), ("b", ps[1])], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.param_groups[0]["params"] == ps
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]
    with pytest.raises(ValueError, match="with names or all without"):
        opt.add_param_group({"params": [Parameter(np.ones(1))]})


OPTIMIZERS = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", dict(lr=0.1)),
    ("AdamW", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("Adagrad", dict(lr=0.1)),
]


@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[n for n, _ in OPTIMIZERS])
def test_step_with_closure(name, kw):
    rng = np.random.default_rng(0)
    x, w0 = rng.standard_normal((8, 3)), rng.standard_normal((3, 1))
    w, tw = Parameter(w0.copy()), torch.tensor(w0.copy(), requires_grad=True)
    opt, topt = getattr(optim, name)([w], **kw), getattr(torch.optim, name)([tw], **kw)
    calls = []

    def closure():
        calls.append(autograd.is_grad_enabled())
        opt.zero_grad()
        loss = ((autograd.Tensor(x) @ w) ** 2).sum()
        loss.backward()
        return loss

    def tclosure():
        topt.zero_grad()
        loss = ((torch.from_numpy(x) @ tw) ** 2).sum()
        loss.backward()
        return loss

    for _ in range(3):
        with autograd.no_grad():  # the closure records a graph all the same
            loss = opt.step(closure)
        tloss = topt.step(tclosure)
        assert isinstance(loss, autograd.Tensor)
        assert loss.item() == pytest.approx(tloss.item(), rel=RTOL)
        close(w.data, tw.detach().numpy())
    assert calls == [True] * 3
    assert opt.step() is None


# ----------------------------------------------------------------------------------------------
# schedules, against torch's on dummy parameters, two groups of different learning rates


class Warmup:
    """A callable object: LambdaLR's state_dict keeps its __dict__."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.steps)


def seq(o, m, kind):
    if kind == "warmup_cosine":
        return m.SequentialLR(
            o,
            [
                m.LinearLR(o, start_factor=0.1, total_iters=4),
                m.CosineAnnealingLR(o, T_max=12, eta_min=1e-4),
            ],
            milestones=[5],
        )
    return m.SequentialLR(
        o,
        [
            m.ExponentialLR(o, gamma=0.9),
            m.StepLR(o, step_size=3, gamma=0.5),
            m.MultiStepLR(o, [3, 6], gamma=0.3),
        ],
        milestones=[4, 11],
    )


SCHEDULES = {
    "multistep": ("SGD", lambda o, m: m.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.5)),
    "exponential": ("SGD", lambda o, m: m.ExponentialLR(o, gamma=0.9)),
    "lambda": ("SGD", lambda o, m: m.LambdaLR(o, lambda e: 0.95**e)),
    "lambda_list": ("SGD", lambda o, m: m.LambdaLR(o, [Warmup(5), lambda e: 1 / (1 + e)])),
    "linear": ("SGD", lambda o, m: m.LinearLR(o)),
    "linear_down": (
        "SGD",
        lambda o, m: m.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=10),
    ),
    "cosine": ("SGD", lambda o, m: m.CosineAnnealingLR(o, T_max=7, eta_min=1e-3)),
    "onecycle_sgd": ("SGD", lambda o, m: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=30)),
    "onecycle_adam_linear": (
        "Adam",
        lambda o, m: m.OneCycleLR(
            o,
            max_lr=0.1,
            epochs=3,
            steps_per_epoch=10,
            anneal_strategy="linear",
            pct_start=0.25,
            div_factor=10.0,
            final_div_factor=100.0,
        ),
    ),
    "onecycle_three_phase": (
        "RMSprop",
        lambda o, m: m.OneCycleLR(
            o, max_lr=0.1, total_steps=31, three_phase=True, base_momentum=[0.8, 0.7]
        ),
    ),
    "onecycle_no_momentum": (
        "Adagrad",
        lambda o, m: m.OneCycleLR(o, max_lr=0.1, total_steps=30, cycle_momentum=False),
    ),
    "sequential_warmup_cosine": ("SGD", lambda o, m: seq(o, m, "warmup_cosine")),
    "sequential_three": ("SGD", lambda o, m: seq(o, m, "three")),
    "plateau_min_rel": ("SGD", lambda o, m: m.ReduceLROnPlateau(o, patience=2, factor=0.5)),
    "plateau_max_abs": (
        "Adam",
        lambda o, m: m.ReduceLROnPlateau(
            o,
            mode="max",
            threshold=0.05,
            threshold_mode="abs",
            patience=1,
            cooldown=2,
            min_lr=[1e-3, 2e-3],
        ),
    ),
    "plateau_min_lr_eps": (
        "SGD",
        lambda o, m: m.ReduceLROnPlateau(o, patience=0, factor=0.5, min_lr=0.01, eps=1e-3),
    ),
}
METRICS = [
    1.0,
    0.9,
    0.95,
    0.97,
    0.96,
    0.8,
    0.85,
    0.9,
    0.7,
    0.71,
    0.72,
    0.73,
    0.74,
    0.69,
    0.75,
    0.76,
    0.8,
    0.9,
    1.0,
    0.65,
] * 2  # falling, then stuck: reductions and cooldowns


def groups_of(ps):
    return [{"params": ps[:1], "lr": 0.1}, {"params": ps[1:], "lr": 0.04}]


def sched_pair(key, torch_side=False):
    name, make = SCHEDULES[key]
    if torch_side:
        ps = [torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in range(2)]
        opt = getattr(torch.optim, name)(groups_of(ps), lr=0.1)
        return ps, opt, make(opt, lr_scheduler)
    ps = [Parameter(np.zeros(2)) for _ in range(2)]
    opt = getattr(optim, name)(groups_of(ps), lr=0.1)
    return ps, opt, make(opt, optim)


def advance(run, start, stop):
    ps, opt, sched = run
    for i in range(start, stop):
        for p in ps:
            p.grad = (
                torch.ones(2, dtype=torch.float64) if isinstance(p, torch.Tensor) else np.ones(2)
            )
        opt.step()
        if isinstance(sched, (optim.ReduceLROnPlateau, lr_scheduler.ReduceLROnPlateau)):
            sched.step(METRICS[i])
        else:
            sched.step()


def observed(run):
    """The learning rates and momenta the optimizer's groups hold now."""
    out = list(run[2].get_last_lr())
    for g in run[1].param_groups:
        out += [g["lr"], g.get("momentum", 0.0), g.get("betas", (0.0,))[0]]
    return out


def assert_rates(a, b, what):
    assert len(a) == len(b), what
    for x, y in zip(a, b):
        assert float(x) == pytest.approx(float(y), rel=RTOL, abs=1e-15), what


STEPS = 29  # OneCycleLR's 30 steps: the constructor's and 29 more


@pytest.mark.parametrize("key", SCHEDULES)
def test_schedule_matches_torch(key):
    ours, theirs = sched_pair(key), sched_pair(key, torch_side=True)
    assert_rates(observed(ours), observed(theirs), "after the constructor")
    for i in range(STEPS):
        advance(ours, i, i + 1)
        advance(theirs, i, i + 1)
        assert_rates(observed(ours), observed(theirs), f"after step {i + 1}")


@pytest.mark.parametrize("key", SCHEDULES)
def test_schedule_state_dict_round_trip_mid_run(key):
    whole = sched_pair(key)
    advance(whole, 0, 11)
    saved_sched, saved_opt = whole[2].state_dict(), whole[1].state_dict()
    saved_copy = copy.deepcopy(saved_sched)
    advance(whole, 11, STEPS)
    assert str(whole[2].state_dict()) != str(saved_copy) or key.startswith("plateau")
    assert str(saved_sched) == str(saved_copy)  # a copy: later steps leave it alone

    # resume from the dict (and from its JSON text, as a checkpoint holds it)
    for state in (saved_sched, json.loads(json.dumps(saved_sched))):
        resumed = sched_pair(key)
        resumed[1].load_state_dict(saved_opt)
        resumed[2].load_state_dict(state)
        advance(resumed, 11, STEPS)
        assert resumed[2].get_last_lr() == whole[2].get_last_lr()
        assert observed(resumed) == observed(whole)
        assert str(resumed[2].state_dict()) == str(whole[2].state_dict())


@pytest.mark.parametrize(
    "key",
    [
        "multistep",
        "exponential",
        "linear",
        "onecycle_sgd",
        "sequential_three",
        "plateau_max_abs",
        "lambda_list",
    ],
)
def test_schedule_loads_torch_state_dict(key):
    theirs = sched_pair(key, torch_side=True)
    advance(theirs, 0, 9)
    ours = sched_pair(key)
    ours[1].load_state_dict({"state": {}, "param_groups": theirs[1].state_dict()["param_groups"]})
    ours[2].load_state_dict(theirs[2].state_dict())
    for i in range(9, STEPS):
        advance(ours, i, i + 1)
        advance(theirs, i, i + 1)
        assert_rates(observed(ours), observed(theirs), f"step {i + 1}")


@pytest.mark.parametrize(
    "name,make",
    [
        ("RMSprop", lambda o: seq(o, optim, "three")),
        ("Adagrad", lambda o: optim.ReduceLROnPlateau(o, patience=1, factor=0.5)),
        ("Adam", lambda o: optim.OneCycleLR(o, max_lr=0.1, total_steps=20, three_phase=True)),
        ("SGD", lambda o: optim.MultiStepLR(o, [2, 4, 4], gamma=0.5)),
    ],
    ids=["rmsprop_sequential", "adagrad_plateau", "adam_onecycle", "sgd_multistep"],
)
def test_checkpoint_file_resumes_new_optimizers_and_schedules(name, make, tmp_path):
    from fastconv import nn
    from fastconv.train import load_checkpoint, save_checkpoint

    def setup():
        autograd.manual_seed(0)
        model = nn.Linear(3, 2).double()
        opt = getattr(optim, name)(model.parameters(), lr=0.05)
        return model, opt, make(opt)

    def run(model, opt, sched, start, stop):
        rng = np.random.default_rng(start)
        for i in range(start, stop):
            opt.zero_grad()
            ((model(autograd.Tensor(rng.standard_normal((4, 3)))) ** 2).sum()).backward()
            opt.step()
            if isinstance(sched, optim.ReduceLROnPlateau):
                sched.step(METRICS[i])
            else:
                sched.step()

    whole = setup()
    run(*whole, 0, 6)
    save_checkpoint(tmp_path / "ck.npz", *whole, epoch=6, step=0, rng=np.random.default_rng(0))
    run(*whole, 6, 12)
    resumed = setup()
    load_checkpoint(tmp_path / "ck.npz", *resumed)
    run(*resumed, 6, 12)
    assert resumed[2].get_last_lr() == whole[2].get_last_lr()
    for (k, a), b in zip(whole[0].state_dict().items(), resumed[0].state_dict().values()):
        assert np.array_equal(a, b), k


def test_lambda_state_dict_keeps_callable_objects_only():
    opt = optim.SGD(groups_of([Parameter(np.zeros(2)) for _ in range(2)]), lr=0.1)
    warm = Warmup(5)
    sched = optim.LambdaLR(opt, [warm, lambda e: 1.0])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"steps": 5}, None] and "optimizer" not in sd
    sd["lr_lambdas"][0]["steps"] = 10
    assert warm.steps == 5  # a copy
    sched.load_state_dict(sd)
    assert warm.steps == 10 and sched.lr_lambdas[0] is warm
    with pytest.raises(ValueError, match="lr_lambdas"):
        sched.load_state_dict({**sd, "lr_lambdas": [None]})


def test_schedule_errors():
    ps = [Parameter(np.zeros(2)) for _ in range(2)]
    opt = optim.SGD(groups_of(ps), lr=0.1)
    with pytest.raises(TypeError):
        optim.ExponentialLR("not an optimizer", gamma=0.5)
    with pytest.raises(ValueError, match="total_steps"):
        optim.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        optim.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="one value per parameter group"):
        optim.OneCycleLR(opt, max_lr=[0.1], total_steps=10)
    with pytest.raises(ValueError, match="momentum"):
        optim.OneCycleLR(optim.Adagrad(ps), max_lr=0.1, total_steps=10)
    one = optim.OneCycleLR(optim.SGD(ps, lr=0.1), max_lr=0.1, total_steps=2)
    one.step(), one.step()
    with pytest.raises(ValueError, match="total_steps"):
        one.step()
    with pytest.raises(ValueError, match="factor"):
        optim.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        optim.ReduceLROnPlateau(opt, mode="up")
    plateau = optim.ReduceLROnPlateau(opt)
    with pytest.raises(ValueError, match="mode"):
        plateau.load_state_dict({**plateau.state_dict(), "mode": "up"})
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        optim.SequentialLR(opt, [optim.ExponentialLR(opt, 0.9), plateau], milestones=[2])
    with pytest.raises(ValueError, match="milestones"):
        optim.SequentialLR(opt, [optim.ExponentialLR(opt, 0.9)], milestones=[2])
    other = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="another optimizer"):
        optim.SequentialLR(opt, [optim.ExponentialLR(other, 0.9)], milestones=[])
    sequential = seq(opt, optim, "three")
    with pytest.raises(ValueError, match="_schedulers"):
        sequential.load_state_dict({**sequential.state_dict(), "_schedulers": []})
    with pytest.raises(ValueError, match="base_lrs"):
        state = sequential.state_dict()
        state["_schedulers"][1]["base_lrs"] = [0.1]
        sequential.load_state_dict(state)
    with pytest.raises(ValueError, match="milestones"):
        optim.MultiStepLR(opt, [2]).load_state_dict({"milestones": {"x": 1}})
    with pytest.raises(KeyError, match="initial_lr"):
        optim.StepLR(optim.SGD([Parameter(np.zeros(1))], lr=0.1), step_size=2, last_epoch=3)


def test_plateau_takes_tensors_and_numpy_metrics():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=1.0)
    sched = optim.ReduceLROnPlateau(opt, patience=0)
    sched.step(autograd.Tensor(np.array(1.0)))
    sched.step(np.float64(2.0))
    sched.step(torch.tensor(3.0))
    assert sched.get_last_lr() == pytest.approx([0.01])


def test_step_with_epoch_uses_closed_form():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=1.0)
    sched = optim.MultiStepLR(opt, [2, 4], gamma=0.5)
    with pytest.warns(UserWarning, match="deprecated"):
        sched.step(5)
    assert sched.get_last_lr() == [0.25] and sched.last_epoch == 5


# ----------------------------------------------------------------------------------------------
# gradient clipping, against torch.nn.utils


def grads_pair(dtypes=(np.float64,) * 3, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    ours, theirs = [], []
    for shape, dtype in zip(SHAPES, dtypes):
        g = (scale * rng.standard_normal(shape)).astype(dtype)
        p, q = (
            Parameter(np.zeros(shape, dtype)),
            torch.zeros(shape, dtype=torch.from_numpy(g).dtype, requires_grad=True),
        )
        p.grad, q.grad = g.copy(), torch.from_numpy(g.copy())
        ours.append(p), theirs.append(q)
    ours.append(Parameter(np.zeros(2)))  # no gradient: skipped
    theirs.append(torch.zeros(2, dtype=torch.float64, requires_grad=True))
    return ours, theirs


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf, "inf", -math.inf, 0])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    ours, theirs = grads_pair()
    total = utils.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, np.float64)
    assert total.item() == pytest.approx(want.item(), rel=RTOL)
    for p, q in zip(ours, theirs):
        if q.grad is None:
            assert p.grad is None
        else:
            close(p.grad, q.grad.numpy())


def test_clip_grad_norm_single_parameter_generator_and_dtypes():
    ours, theirs = grads_pair(dtypes=(np.float32, np.float64, np.float32))
    total = utils.clip_grad_norm_((p for p in ours), 1.0)
    want = torch.nn.utils.clip_grad_norm_((q for q in theirs), 1.0)
    assert total.dtype == np.float64  # the common dtype, as torch
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    for p, q in zip(ours[:3], theirs[:3]):
        assert p.grad.dtype == q.grad.numpy().dtype
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-6)
    one, tone = grads_pair(seed=1)
    grad = one[0].grad
    total = utils.clip_grad_norm_(one[0], 0.1)
    assert total.item() == pytest.approx(
        torch.nn.utils.clip_grad_norm_(tone[0], 0.1).item(), rel=RTOL
    )
    assert one[0].grad is grad  # scaled in place
    close(one[0].grad, tone[0].grad.numpy())
    assert np.array_equal(one[1].grad, tone[1].grad.numpy())  # not passed: untouched
    with pytest.warns(UserWarning, match="empty generator"):
        assert utils.clip_grad_norm_((p for p in []), 1.0) == 0
    assert utils.clip_grad_norm_([], 1.0).dtype == np.float32  # torch.tensor(0.0)


def test_clip_grad_norm_nonfinite():
    ours, theirs = grads_pair()
    ours[0].grad[0, 0] = theirs[0].grad[0, 0] = math.inf
    with pytest.raises(RuntimeError, match="non-?finite|error_if_nonfinite"):
        utils.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    assert utils.clip_grad_norm_(ours, 1.0).item() == math.inf
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    for p, q in zip(ours[:3], theirs[:3]):
        np.testing.assert_array_equal(p.grad, q.grad.numpy())  # inf * 0: nan, as torch


@pytest.mark.parametrize("clip_value", [0.5, 2, 100.0])
def test_clip_grad_value_matches_torch(clip_value):
    ours, theirs = grads_pair()
    ours[1].grad[0] = theirs[1].grad[0] = math.nan
    assert utils.clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for p, q in zip(ours[:3], theirs[:3]):
        np.testing.assert_array_equal(p.grad, q.grad.numpy())
    single, tsingle = grads_pair(seed=2)
    utils.clip_grad_value_(single[2], clip_value)
    torch.nn.utils.clip_grad_value_(tsingle[2], clip_value)
    np.testing.assert_array_equal(single[2].grad, tsingle[2].grad.numpy())


def test_get_total_norm_and_clip_grads_with_norm():
    ours, theirs = grads_pair()
    total = utils.get_total_norm([p.grad for p in ours[:3]], 2.0)
    want = torch.nn.utils.get_total_norm([q.grad for q in theirs[:3]], 2.0)
    assert total.item() == pytest.approx(want.item(), rel=RTOL)
    utils.clip_grads_with_norm_(ours, 1.0, total)
    torch.nn.utils.clip_grads_with_norm_(theirs, 1.0, want)
    for p, q in zip(ours[:3], theirs[:3]):
        close(p.grad, q.grad.numpy())


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [optim, utils], ids=["optim", "nn.utils"])
def test_public_names_have_docstrings(module):
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member) and not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert not missing

"""Resuming training exactly: optimizer and schedule state_dicts (PyTorch's format, checked against
torch where installed), checkpoints of a whole run, and ``fastconv train --checkpoint/--resume``.
An interrupted run that resumes from its checkpoint must end bitwise equal to an uninterrupted
one."""

import copy
import itertools

import numpy as np
import pytest

from fastconv import autograd, nn, optim
from fastconv.cli import main
from fastconv.data import batches
from fastconv.nn import Parameter
from fastconv.train import CheckpointError, fit, load_checkpoint, save_checkpoint, train_epoch


def assert_same(a, b, where="state"):
    """a == b exactly, through dicts, lists and arrays (dtype and bits)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, list(a), list(b))
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b and type(a) is type(b), (where, a, b)


# ----------------------------------------------------------------------------------------------
# optimizer and schedule state_dicts

SHAPES = ((3, 4), (5,), (2, 2))
OPTIMIZERS = {
    "sgd": lambda groups: optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": lambda groups: optim.Adam(groups, lr=1e-2, amsgrad=True, weight_decay=1e-3),
    "adamw": lambda groups: optim.AdamW(groups, lr=1e-2, betas=(0.8, 0.99)),
}


def params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def two_groups(ps):
    return [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.05}]


def run(opt, ps, steps, seed, scheduler=None):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        for p in ps:
            p.grad = rng.standard_normal(p.data.shape).astype(p.data.dtype)
        opt.step()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_layout_and_copies(name):
    ps = params()
    opt = OPTIMIZERS[name](two_groups(ps))
    assert opt.state_dict()["state"] == {}  # no step yet, no state
    ps[1].grad = None
    for p in (ps[0], ps[2]):
        p.grad = np.ones_like(p.data)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]  # numbered across groups
    assert sorted(sd["state"]) == [0, 2]  # a parameter without a gradient has no state
    assert sd["param_groups"][1]["lr"] == 0.05 and "params" not in opt.defaults
    saved = copy.deepcopy(sd)
    run(opt, ps, 2, seed=1)
    opt.param_groups[0]["lr"] = 123.0
    assert_same(sd, saved)  # later steps change nothing in a saved dict
    for entries in sd["state"].values():
        for key, value in entries.items():
            if isinstance(value, np.ndarray):
                assert not any(
                    np.shares_memory(value, v)
                    for s in opt.state.values()
                    for v in s.values()
                    if isinstance(v, np.ndarray)
                ), key


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_load_state_dict_then_continue_is_bitwise_uninterrupted(name):
    ps = params()
    opt = OPTIMIZERS[name](two_groups(ps))
    run(opt, ps, 3, seed=1)
    sd = opt.state_dict()
    saved = copy.deepcopy(sd)
    weights = [p.data.copy() for p in ps]
    run(opt, ps, 4, seed=2)  # uninterrupted

    other = params(seed=9)  # fresh parameters and optimizer, other hyper-parameters
    for p, w in zip(other, weights):
        p.data[...] = w
    fresh = OPTIMIZERS[name]([{"params": other[:2], "lr": 7.0}, {"params": other[2:]}])
    fresh.load_state_dict(sd)
    assert_same(sd, saved)  # the dict is not modified ...
    assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]  # hyper-parameters from it
    assert fresh.param_groups[0]["params"][0] is other[0]
    run(fresh, other, 4, seed=2)
    assert_same(sd, saved)  # ... nor shared with the optimizer that loaded it
    for p, q in zip(ps, other):
        assert np.array_equal(p.data, q.data)
    assert_same(fresh.state_dict(), opt.state_dict())


def test_loaded_arrays_take_each_parameter_dtype():
    ps64, ps32 = params(), params(np.float32)
    opt64 = optim.Adam(ps64, lr=1e-2)
    run(opt64, ps64, 2, seed=1)
    opt32 = optim.Adam(ps32, lr=1e-2)
    opt32.load_state_dict(opt64.state_dict())
    state = opt32.state_dict()["state"]
    assert state[0]["exp_avg"].dtype == np.float32 and state[0]["step"] == 2
    np.testing.assert_array_equal(
        state[0]["exp_avg"], opt64.state_dict()["state"][0]["exp_avg"].astype(np.float32)
    )


def test_json_round_trip_restores_tuples():
    ps = params()
    opt = optim.Adam(ps, betas=(0.8, 0.99))
    sd = opt.state_dict()
    sd["param_groups"][0]["betas"] = list(sd["param_groups"][0]["betas"])  # as JSON gives it back
    optim.Adam(params()).load_state_dict(sd)
    fresh = optim.Adam(ps)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["betas"] == (0.8, 0.99)


def mutated(sd, change):
    sd = copy.deepcopy(sd)
    change(sd)
    return sd


BAD_OPTIMIZER_DICTS = [
    (lambda sd: sd.pop("state"), "must be a dict with 'state' and 'param_groups'"),
    (lambda sd: sd["param_groups"].pop(), "the state_dict has 1 parameter groups, the optimizer 2"),
    (
        lambda sd: sd["param_groups"][1]["params"].append(3),
        r"param_groups\[1\] has 2 parameters in the state_dict, 1 in the optimizer",
    ),
    (
        lambda sd: sd["param_groups"][0].pop("amsgrad"),
        r"param_groups\[0\] lacks the hyper-parameters \['amsgrad'\] of Adam",
    ),
    (
        lambda sd: sd["state"][0].update(exp_avg=np.zeros((4, 3))),
        r"state\[0\]\['exp_avg'\] has shape \(4, 3\), its parameter shape \(3, 4\)",
    ),
    (lambda sd: sd["state"][2].pop("max_exp_avg_sq"), r"state\[2\] lacks \['max_exp_avg_sq'\]"),
    (lambda sd: sd["state"].update({7: {}}), "state has an entry for parameter 7, which no"),
    (lambda sd: sd["state"][1].update(step=2.5), r"state\[1\]\['step'\] must be a count of steps"),
    (lambda sd: sd["state"][1].update(step="2"), r"state\[1\]\['step'\] must be a count of steps"),
    (lambda sd: sd["param_groups"][0].update(params=[0, 0]), "must be distinct int indices"),
]


@pytest.mark.parametrize(
    "change,message", BAD_OPTIMIZER_DICTS, ids=[m for _, m in BAD_OPTIMIZER_DICTS]
)
def test_load_state_dict_rejects_what_does_not_fit(change, message):
    ps = params()
    opt = OPTIMIZERS["adam"](two_groups(ps))
    run(opt, ps, 2, seed=1)
    before = opt.state_dict()
    target = OPTIMIZERS["adam"](two_groups(params()))
    target_before = target.state_dict()
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(mutated(before, change))
    assert_same(target.state_dict(), target_before)  # nothing was loaded


def test_sgd_state_does_not_load_into_adam():
    ps = params()
    sgd = OPTIMIZERS["sgd"](ps)
    run(sgd, ps, 1, seed=1)
    with pytest.raises(ValueError, match="lacks the hyper-parameters"):
        optim.Adam(params()).load_state_dict(sgd.state_dict())


SCHEDULES = {
    "step": lambda o: optim.StepLR(o, step_size=2, gamma=0.5),
    "cosine": lambda o: optim.CosineAnnealingLR(o, T_max=5, eta_min=1e-3),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_state_dict_round_trip(name):
    ps = params()
    opt = optim.SGD(two_groups(ps), lr=0.1, momentum=0.9)
    sched = SCHEDULES[name](opt)
    run(opt, ps, 3, seed=1, scheduler=sched)
    sd, osd = sched.state_dict(), opt.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 3
    saved = copy.deepcopy(sd)
    run(opt, ps, 6, seed=2, scheduler=sched)
    assert_same(sd, saved)  # a copy
    lrs = sched.get_last_lr()

    fresh_ps = params(seed=5)
    fresh_opt = optim.SGD(two_groups(fresh_ps), lr=0.3, momentum=0.9)
    fresh = SCHEDULES[name](fresh_opt)
    fresh_opt.load_state_dict(osd)
    fresh.load_state_dict(sd)
    for p, w in zip(fresh_ps, params()):  # the same start: replay the first 3 steps' weights
        p.data[...] = w.data
    replay = optim.SGD(two_groups(fresh_ps), lr=0.1, momentum=0.9)
    run(replay, fresh_ps, 3, seed=1, scheduler=SCHEDULES[name](replay))
    run(fresh_opt, fresh_ps, 6, seed=2, scheduler=fresh)
    assert fresh.get_last_lr() == lrs
    assert_same(fresh.state_dict(), sched.state_dict())
    for p, q in zip(ps, fresh_ps):
        assert np.array_equal(p.data, q.data)


def test_schedule_load_state_dict_errors():
    opt = optim.SGD(two_groups(params()), lr=0.1)
    sched = optim.StepLR(opt, step_size=2)
    sd = sched.state_dict()
    with pytest.raises(
        ValueError,
        match=r"base_lrs must be a list of one learning rate per "
        r"parameter group \(2\)",
    ):
        sched.load_state_dict({**sd, "base_lrs": [0.1]})
    with pytest.raises(ValueError, match="holds no 'optimizer'"):
        sched.load_state_dict({**sd, "optimizer": opt})
    with pytest.raises(ValueError, match="last_epoch must be an int"):
        sched.load_state_dict({**sd, "last_epoch": "3"})
    with pytest.raises(ValueError, match="must be a dict"):
        sched.load_state_dict([1])
    assert_same(sched.state_dict(), sd)


# ----------------------------------------------------------------------------------------------
# against PyTorch, in float64. Not bit for bit: PyTorch fuses a + alpha*b (p -= lr*d, the weight
# decay and dampening terms) into one rounding where NumPy rounds twice, so SGD's parameters
# differ from step 1 by an ulp or two; Adam's formula order differs too.

TORCH_CASES = {
    "sgd": (dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2), "SGD"),
    "sgd_dampening": (dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=1e-2), "SGD"),
    "adam": (dict(lr=1e-2, amsgrad=True, weight_decay=1e-3), "Adam"),
    "adamw": (dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1), "AdamW"),
}
RTOL = 1e-12


def close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("case", TORCH_CASES)
def test_state_dict_matches_torch_and_loads_both_ways(case):
    torch = pytest.importorskip("torch")
    kw, name = TORCH_CASES[case]
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(8)]

    def ours(weights):
        ps = [Parameter(w.copy()) for w in weights]
        opt = getattr(optim, name)(two_groups(ps), **kw)
        return ps, opt, optim.StepLR(opt, step_size=2, gamma=0.5)

    def theirs(weights):
        ps = [torch.tensor(w.copy(), requires_grad=True) for w in weights]
        opt = getattr(torch.optim, name)(two_groups(ps), **kw)
        return ps, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    def steps(ps, opt, sched, gs):
        for g in gs:
            for p, gi in zip(ps, g):
                p.grad = gi.copy() if isinstance(p, Parameter) else torch.from_numpy(gi.copy())
            opt.step()
            sched.step()

    def value(v):
        return v.detach().numpy() if hasattr(v, "detach") else v

    o, t = ours(start), theirs(start)
    steps(*o, grads[:4])
    steps(*t, grads[:4])
    so, st = o[1].state_dict(), t[1].state_dict()
    assert sorted(so["state"]) == sorted(st["state"])
    for i in so["state"]:
        assert sorted(so["state"][i]) == sorted(st["state"][i])
        for k, v in so["state"][i].items():
            if k == "step":
                assert v == int(st["state"][i][k]) == 4
            else:
                close(v, value(st["state"][i][k]))
    for go, gt in zip(so["param_groups"], st["param_groups"]):
        common = go.keys() & gt.keys()
        assert {"lr", "initial_lr", "weight_decay", "params"} <= common
        for k in common:
            assert go[k] == gt[k], k
    sched_o, sched_t = o[2].state_dict(), t[2].state_dict()
    for k in sched_o:
        assert sched_o[k] == sched_t[k], k

    # torch's dict into a fresh fastconv optimizer, ours into a fresh torch one, then go on
    weights = [value(p).copy() for p in t[0]]
    o2, t2 = ours(weights), theirs(weights)
    o2[1].load_state_dict(st)
    o2[2].load_state_dict(sched_t)
    t2[1].load_state_dict(
        {
            "state": {
                i: {
                    k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in s.items()
                }
                for i, s in so["state"].items()
            },
            "param_groups": so["param_groups"],
        }
    )
    t2[2].load_state_dict({**sched_t, **sched_o})
    for run_ in (o, t, o2, t2):
        steps(*run_, grads[4:])
    for p, q, p2, q2 in zip(o[0], t[0], o2[0], t2[0]):
        close(p2.data, value(q))
        close(value(q2), value(q))
        close(p.data, value(q))
    assert o2[1].param_groups[0]["lr"] == t[1].param_groups[0]["lr"]


# ----------------------------------------------------------------------------------------------
# a whole run: interrupted, resumed from its checkpoint, bitwise equal to the uninterrupted one


def small_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(4 * 4 * 4, 3),
    )


RUNS = {
    "sgd_step": lambda m: (lambda o: (o, optim.StepLR(o, step_size=1, gamma=0.7)))(
        optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    ),
    "adam_cosine": lambda m: (lambda o: (o, optim.CosineAnnealingLR(o, T_max=3)))(
        optim.Adam(m.parameters(), lr=1e-2)
    ),
    # stepped per minibatch by fit (15 steps in all)
    "sgd_onecycle": lambda m: (lambda o: (o, optim.OneCycleLR(o, max_lr=0.1, total_steps=15)))(
        optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    ),
    # stepped with the epoch's training loss (DATA has no validation pair)
    "adam_plateau": lambda m: (lambda o: (o, optim.ReduceLROnPlateau(o, patience=0, factor=0.5)))(
        optim.Adam(m.parameters(), lr=1e-2)
    ),
}
EPOCHS, BATCH = 3, 7
DATA = (
    np.random.default_rng(1).standard_normal((30, 1, 8, 8)).astype(np.float32),
    np.arange(30) % 3,
    None,
    None,
)  # 5 minibatches an epoch, the last of 2


def setup(run_name, seed):
    autograd.manual_seed(seed)
    model = small_net()
    opt, sched = RUNS[run_name](model)
    return model, opt, sched, np.random.default_rng(seed)


class Crash(Exception):
    pass


def crash_at(opt, n):
    """Make opt's n-th step raise, as if the process died there."""
    calls, real = itertools.count(1), opt.step

    def step():
        if next(calls) == n:
            raise Crash
        real()

    opt.step = step


def snapshot(model, opt, sched, rng):
    return {
        "model": {k: v.copy() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": rng.bit_generator.state,
        "autograd_rng": autograd.default_generator().bit_generator.state,
    }


@pytest.mark.parametrize("run_name", RUNS)
@pytest.mark.parametrize(
    "every,crash,where",
    [
        (3, 8, (1, 1)),  # checkpoint at step 6: epoch 2, after its first minibatch
        (2, 5, (0, 4)),  # step 4: the first epoch, just before its short last minibatch
        (None, 12, (2, 0)),  # epoch ends only: after epoch 2
        (5, 14, (2, 0)),  # step 10 is also an epoch end
    ],
)
def test_interrupted_run_resumes_bitwise(run_name, every, crash, where, tmp_path):
    log = []
    model, opt, sched, rng = setup(run_name, seed=0)
    losses = fit(model, opt, DATA, EPOCHS, BATCH, rng, sched, log=log.append)
    assert len(losses) == EPOCHS and log[-1].startswith(f"epoch {EPOCHS}/{EPOCHS}")
    done = snapshot(model, opt, sched, rng)

    path = tmp_path / "ck.npz"
    model, opt, sched, rng = setup(run_name, seed=0)
    crash_at(opt, crash)
    with pytest.raises(Crash):
        fit(
            model,
            opt,
            DATA,
            EPOCHS,
            BATCH,
            rng,
            sched,
            log=log.append,
            checkpoint=path,
            checkpoint_every=every,
        )

    model, opt, sched, rng = setup(run_name, seed=42)  # everything else is the checkpoint's
    rest = fit(model, opt, DATA, EPOCHS, BATCH, rng, sched, log=log.append, resume=path)
    assert (
        log[-len(rest) - 1] == f"resumed from {path}: epoch {where[0] + 1}, {where[1]} of 5 "
        f"steps done"
    )
    assert rest == losses[where[0] :]  # the resumed epoch's loss counts its first part too
    assert_same(snapshot(model, opt, sched, rng), done)


def test_checkpoint_functions_with_train_epoch(tmp_path):
    path = tmp_path / "ck.npz"
    x, y = DATA[:2]
    model, opt, sched, rng = setup("adam_cosine", seed=0)
    for _ in range(2):
        train_epoch(model, opt, x, y, BATCH, rng)
        sched.step()
    done = snapshot(model, opt, sched, rng)

    model, opt, sched, rng = setup("adam_cosine", seed=0)
    train_epoch(model, opt, x, y, BATCH, rng)
    sched.step()
    save_checkpoint(path, model, opt, sched, 1, 0, rng)
    model, opt, sched, _ = setup("adam_cosine", seed=7)
    epoch, step, rng = load_checkpoint(path, model, opt, sched)
    assert (epoch, step) == (1, 0)
    train_epoch(model, opt, x, y, BATCH, rng, start_step=step)
    sched.step()
    assert_same(snapshot(model, opt, sched, rng), done)


@pytest.mark.parametrize("bit_generator", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_checkpoint_keeps_any_numpy_generator(bit_generator, tmp_path):
    model, opt, sched, _ = setup("sgd_step", seed=0)
    rng = np.random.Generator(getattr(np.random, bit_generator)(5))
    rng.random(3)
    autograd.default_generator().random(5)
    ours = autograd.default_generator().bit_generator.state
    save_checkpoint(tmp_path / "ck.npz", model, opt, sched, 4, 2, rng)
    autograd.manual_seed(1)
    epoch, step, again = load_checkpoint(tmp_path / "ck.npz", model, opt, sched)
    assert (epoch, step) == (4, 2) and type(again.bit_generator) is type(rng.bit_generator)
    assert np.array_equal(again.random(4), rng.random(4))
    assert autograd.default_generator().bit_generator.state == ours


def test_batches_skip_and_start_step():
    x, y = np.arange(10), np.arange(10) * 2
    whole = list(batches(x, y, 3, shuffle=True, rng=np.random.default_rng(0)))
    rest = list(batches(x, y, 3, shuffle=True, rng=np.random.default_rng(0), skip=2))
    assert len(rest) == 2 and all(np.array_equal(a[0], b[0]) for a, b in zip(whole[2:], rest))
    model, opt, _, rng = setup("sgd_step", seed=0)
    with pytest.raises(
        ValueError,
        match=r"start_step must be an int from 0 to 4 \(the epoch has "
        r"5 minibatches of 7\), got 5",
    ):
        train_epoch(model, opt, *DATA[:2], BATCH, rng, start_step=5)


def test_fit_checkpoint_arguments(tmp_path):
    model, opt, sched, rng = setup("sgd_step", seed=0)
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 1 and needs "):
        fit(model, opt, DATA, 1, BATCH, rng, sched, checkpoint_every=2)
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 1"):
        fit(model, opt, DATA, 1, BATCH, rng, sched, checkpoint=tmp_path / "c", checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint and resume need rng"):
        fit(model, opt, DATA, 1, BATCH, None, sched, checkpoint=tmp_path / "c")
    path = tmp_path / "ck.npz"
    fit(model, opt, DATA, 1, BATCH, rng, sched, log=lambda s: None, checkpoint=path)
    model, opt, sched, rng = setup("sgd_step", seed=0)
    before = snapshot(model, opt, sched, rng)
    with pytest.raises(
        CheckpointError,
        match=f"{path}: written by a run of batch_size 7 on 30 "
        f"samples; resuming with batch_size 8 on 30",
    ):
        fit(model, opt, DATA, 2, 8, rng, sched, resume=path)
    assert_same(snapshot(model, opt, sched, rng), before)  # nothing loaded


# ----------------------------------------------------------------------------------------------
# fit's schedules: per step, per epoch, and ReduceLROnPlateau's metric


def test_fit_steps_one_cycle_per_minibatch_as_a_hand_loop():
    model, opt, sched, rng = setup("sgd_onecycle", seed=0)
    fit(model, opt, DATA, EPOCHS, BATCH, rng, sched, log=lambda s: None)
    ours = snapshot(model, opt, sched, rng)

    model, opt, sched, rng = setup("sgd_onecycle", seed=0)
    x, y = DATA[:2]
    for _ in range(EPOCHS):
        model.train()
        for xb, yb in batches(x, y, BATCH, shuffle=True, rng=rng):
            opt.zero_grad()
            nn.functional.cross_entropy(model(autograd.Tensor(xb)), yb).backward()
            opt.step()
            sched.step()
    assert sched.last_epoch == EPOCHS * 5
    assert_same(ours, snapshot(model, opt, sched, rng))


@pytest.mark.parametrize(
    "run_name,interval,steps",
    [
        ("sgd_onecycle", "epoch", EPOCHS),
        ("sgd_step", "step", EPOCHS * 5),
        ("sgd_step", None, EPOCHS),
    ],
)
def test_fit_scheduler_interval(run_name, interval, steps):
    model, opt, sched, rng = setup(run_name, seed=0)
    fit(
        model, opt, DATA, EPOCHS, BATCH, rng, sched, log=lambda s: None, scheduler_interval=interval
    )
    assert sched.last_epoch == steps


class RecordingPlateau(optim.ReduceLROnPlateau):
    def step(self, metrics, epoch=None):
        self.seen = getattr(self, "seen", []) + [metrics]
        super().step(metrics, epoch)


def test_fit_gives_reduce_lr_on_plateau_the_validation_loss():
    x, y = DATA[:2]
    data = (x[:24], y[:24], x[24:], y[24:])
    model, opt, _, rng = setup("sgd_step", seed=0)
    # a threshold no epoch meets after the first: every later epoch is a plateau
    sched = RecordingPlateau(opt, patience=0, threshold=0.99)
    val, log = [], []

    def on_epoch_end(epoch, loss):
        model.eval()
        with autograd.no_grad():
            val.append(nn.functional.cross_entropy(model(autograd.Tensor(data[2])), data[3]).item())

    losses = fit(
        model, opt, data, EPOCHS, BATCH, rng, sched, log=log.append, on_epoch_end=on_epoch_end
    )
    assert sched.seen == pytest.approx(val, rel=1e-6) and sched.seen != losses
    assert log[-1] == f"epoch 3/3: loss {losses[-1]:.4f}, val_loss {val[-1]:.4f}"
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.1 ** (EPOCHS - 1))


def test_fit_gives_reduce_lr_on_plateau_the_training_loss_without_validation_data():
    model, opt, _, rng = setup("sgd_step", seed=0)
    sched = RecordingPlateau(opt, patience=0, threshold=0.99)
    losses = fit(model, opt, DATA, EPOCHS, BATCH, rng, sched, log=lambda s: None)
    assert sched.seen == losses and opt.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_plateau_with_validation_data_resumes_bitwise(tmp_path):
    x, y = DATA[:2]
    data = (x[:24], y[:24], x[24:], y[24:])  # 4 minibatches an epoch, the last of 3

    def start(seed):
        model, opt, _, rng = setup("adam_cosine", seed=seed)
        return model, opt, optim.ReduceLROnPlateau(opt, patience=0, factor=0.5), rng

    model, opt, sched, rng = start(0)
    losses = fit(model, opt, data, EPOCHS, BATCH, rng, sched, log=lambda s: None)
    done = snapshot(model, opt, sched, rng)
    model, opt, sched, rng = start(0)
    crash_at(opt, 7)
    with pytest.raises(Crash):
        fit(
            model,
            opt,
            data,
            EPOCHS,
            BATCH,
            rng,
            sched,
            log=lambda s: None,
            checkpoint=tmp_path / "ck",
            checkpoint_every=3,
        )
    model, opt, sched, rng = start(5)
    assert (
        fit(model, opt, data, EPOCHS, BATCH, rng, sched, log=lambda s: None, resume=tmp_path / "ck")
        == losses[1:]
    )
    assert_same(snapshot(model, opt, sched, rng), done)


def test_fit_scheduler_interval_errors():
    model, opt, sched, rng = setup("sgd_step", seed=0)
    with pytest.raises(ValueError, match="must be 'epoch' or 'step', got 'batch'"):
        fit(model, opt, DATA, 1, BATCH, rng, sched, scheduler_interval="batch")
    with pytest.raises(ValueError, match="does not fit ReduceLROnPlateau"):
        fit(
            model, opt, DATA, 1, BATCH, rng, optim.ReduceLROnPlateau(opt), scheduler_interval="step"
        )


# ----------------------------------------------------------------------------------------------
# bad checkpoint files


def written_checkpoint(path):
    model, opt, sched, rng = setup("adam_cosine", seed=0)
    fit(model, opt, DATA, 1, BATCH, rng, sched, log=lambda s: None, checkpoint=path)
    return path


def rewritten(path, change):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def json_entry(text):
    return np.frombuffer(text.encode(), np.uint8)


UNREADABLE = r"is not a readable checkpoint \(truncated or corrupt\?\)"
BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), UNREADABLE),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), UNREADABLE),
    "garbage": (lambda p: p.write_bytes(b"no checkpoint here " * 50), UNREADABLE),
    "npy": (lambda p: np.save(open(p, "wb"), np.ones(3)), "a single .npy array"),
    "weights": (lambda p: np.savez(open(p, "wb"), w=np.ones(3)), "is not a fastconv checkpoint"),
    "bad_json": (
        lambda p: rewritten(p, lambda a: a.update({"checkpoint.json": json_entry("{")})),
        "is not a well-formed fastconv checkpoint",
    ),
    "foreign_json": (
        lambda p: rewritten(
            p, lambda a: a.update({"checkpoint.json": json_entry('{"format": "other"}')})
        ),
        "its format is not",
    ),
    "extra_entry": (
        lambda p: rewritten(p, lambda a: a.update(junk=np.ones(1))),
        "unexpected entry 'junk'",
    ),
    "model_shape": (
        lambda p: rewritten(p, lambda a: a.update({"model/6.bias": np.ones(4)})),
        r"the model does not match the checkpoint's: 6.bias: checkpoint \(4,\)",
    ),
    "optimizer_shape": (
        lambda p: rewritten(p, lambda a: a.update({"optimizer/0/exp_avg": np.ones(2)})),
        r"the optimizer does not match the checkpoint's: .*state\[0\]\['exp_avg'\] has shape",
    ),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_checkpoint_raises_naming_the_file(name, tmp_path):
    path = written_checkpoint(tmp_path / "ck.npz")
    BAD_FILES[name][0](path)
    model, opt, sched, rng = setup("adam_cosine", seed=3)
    before = snapshot(model, opt, sched, rng)
    with pytest.raises(CheckpointError, match=BAD_FILES[name][1]) as e:
        load_checkpoint(path, model, opt, sched)
    assert str(path) in str(e.value) and isinstance(e.value, ValueError)
    assert_same(snapshot(model, opt, sched, rng), before)  # nothing changed


def test_checkpoint_of_another_setup(tmp_path):
    path = written_checkpoint(tmp_path / "ck.npz")
    model, opt, sched, _ = setup("sgd_step", seed=0)
    with pytest.raises(CheckpointError, match="holds a Adam optimizer, given SGD"):
        load_checkpoint(path, model, opt, sched)
    model, opt, _, _ = setup("adam_cosine", seed=0)
    with pytest.raises(
        CheckpointError, match="holds CosineAnnealingLR as the schedule, given None"
    ):
        load_checkpoint(path, model, opt, None)
    other = nn.Sequential(nn.Linear(2, 2), nn.Identity(), nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(
        CheckpointError,
        match=r"missing keys \['2.weight', '2.bias', '3.weight', "
        r"'3.bias'\], unexpected "
        r"keys \['1.weight', '1.bias', '1.running_mean'",
    ):
        load_checkpoint(path, other, optim.Adam(other.parameters()), None)


# ----------------------------------------------------------------------------------------------
# fastconv train --checkpoint / --resume


def cli_run(args, capsys):
    assert main(["train", "--threads", "2", "--no-progress", "--seed", "5"] + args) == 0
    return capsys.readouterr().out.splitlines()


def saved(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow  # two whole `fastconv train` runs per case
@pytest.mark.parametrize(
    "every,crash,position",
    [
        (None, 100, "epoch 2, 0 of 90 steps done"),  # the checkpoint written after epoch 1
        ("40", 130, "epoch 2, 30 of 90 steps done"),  # step 120: 30 minibatches into epoch 2
    ],
)
def test_cli_resume_equals_uninterrupted(every, crash, position, tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn", reason="the digits data comes with scikit-learn")
    pytest.importorskip("tqdm")
    whole = cli_run(["--epochs", "2", "--save", str(tmp_path / "a.npz")], capsys)

    ck = tmp_path / "ck.npz"
    calls, real = itertools.count(1), optim.SGD.step

    def step(self):  # 90 minibatches of 16 an epoch: the crash comes in epoch 2
        if next(calls) == crash:
            raise Crash
        real(self)

    with monkeypatch.context() as m:
        m.setattr(optim.SGD, "step", step)
        with pytest.raises(Crash):
            main(
                [
                    "train",
                    "--threads",
                    "2",
                    "--no-progress",
                    "--seed",
                    "5",
                    "--epochs",
                    "2",
                    "--checkpoint",
                    str(ck),
                ]
                + (["--checkpoint-every", every] if every else [])
            )
    capsys.readouterr()

    resumed = cli_run(
        ["--epochs", "2", "--resume", str(ck), "--save", str(tmp_path / "b.npz")], capsys
    )
    assert resumed[1] == f"resumed from {ck}: {position}"
    assert resumed[2] == whole[2] and resumed[2].startswith("epoch 2/2: loss ")
    assert resumed[-1] == whole[-1]  # test accuracy
    a, b = saved(tmp_path / "a.npz"), saved(tmp_path / "b.npz")
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_cli_resume_errors(tmp_path, capsys, monkeypatch):
    from fastconv import data

    def forbidden(*a, **k):
        raise AssertionError("loaded the data before checking --resume")

    monkeypatch.setattr(data, "load_digits", forbidden)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume", str(bad)])
    assert e.value.code.startswith(
        f"fastconv train: error: argument --resume: {bad} is not a "
        f"readable checkpoint (truncated or corrupt?)"
    )
    assert "\n" not in e.value.code and "Traceback" not in capsys.readouterr().err

    ck = tmp_path / "ck.npz"
    model, opt, sched, rng = setup("adam_cosine", seed=0)
    save_checkpoint(ck, model, opt, sched, 0, 0, rng)
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume", str(ck)])
    assert e.value.code.startswith(
        f"fastconv train: error: argument --resume: {ck}: the model does not match the checkpoint's"
    )

    for args, message in [
        (["--resume", str(tmp_path / "missing.npz")], "argument --resume: "),
        (["--checkpoint", str(tmp_path / "nodir" / "c.npz")], "argument --checkpoint: "),
        (["--checkpoint-every", "0"], "argument --checkpoint-every: must be an integer >= 1"),
        (
            ["--load", str(ck), "--resume", str(ck)],
            "argument --resume: not allowed with argument --load",
        ),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["train"] + args)
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--checkpoint-every", "5"])
    assert e.value.code == (
        "fastconv train: error: argument --checkpoint-every: needs --checkpoint PATH"
    )

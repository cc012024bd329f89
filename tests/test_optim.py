"""fastconv.optim: each optimizer and schedule step for step against PyTorch's (float64)."""

import math

import numpy as np
import pytest

from _autograd_ref import assert_close, torch
from fastconv import optim
from fastconv.nn import Parameter

pytestmark = pytest.mark.skipif(torch is None, reason="torch not installed")


def run_both(make_ours, make_theirs, steps=6, shapes=((3, 4), (5,))):
    """Same start, same gradient sequence; returns the (ours, theirs) parameters after each step."""
    rng = np.random.default_rng(0)
    start = [rng.standard_normal(s) for s in shapes]
    ours = [Parameter(a.copy()) for a in start]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in start]
    opt_o, opt_t = make_ours(ours), make_theirs(theirs)
    for step in range(steps):
        grads = [rng.standard_normal(s) for s in shapes]
        for p, q, g in zip(ours, theirs, grads):
            p.grad = g.copy()
            q.grad = torch.from_numpy(g.copy())
        opt_o.step()
        opt_t.step()
        for i, (p, q) in enumerate(zip(ours, theirs)):
            assert_close(p.data, q.detach().numpy(), 1e-12, f"param {i} after step {step}")
    return ours, theirs


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=1e-2),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    dict(lr=0.1, maximize=True),
]


@pytest.mark.parametrize("kw", SGD_CASES, ids=str)
def test_sgd(kw):
    run_both(lambda p: optim.SGD(p, **kw), lambda p: torch.optim.SGD(p, **kw))


ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=1e-2, weight_decay=0.1),
    dict(lr=1e-2, amsgrad=True, weight_decay=1e-3),
    dict(lr=1e-2, maximize=True),
]


@pytest.mark.parametrize("kw", ADAM_CASES, ids=str)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam(name, kw):
    run_both(lambda p: getattr(optim, name)(p, **kw), lambda p: getattr(torch.optim, name)(p, **kw))


def test_adamw_default_weight_decay():
    assert optim.AdamW([Parameter(np.ones(1))]).defaults["weight_decay"] == 1e-2


def test_param_groups_and_zero_grad():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1, momentum=0.5)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 1.0
    a.grad, b.grad = np.ones(2), np.ones(2)
    data_a = a.data
    opt.step()
    assert a.data is data_a  # updated in place: a model's state_dict arrays stay valid
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.0)
    opt.zero_grad(set_to_none=False)
    assert not a.grad.any()
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    opt.step()  # parameters without a gradient are skipped
    np.testing.assert_allclose(a.data, 0.9)
    assert "Parameter Group 1" in repr(opt)


def test_bad_hyper_parameters():
    p = [Parameter(np.ones(1))]
    with pytest.raises(ValueError):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.Adam(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)


@pytest.mark.parametrize(
    "make",
    [
        (lambda o, m: m.StepLR(o, step_size=3, gamma=0.5)),
        (lambda o, m: m.CosineAnnealingLR(o, T_max=5)),
        (lambda o, m: m.CosineAnnealingLR(o, T_max=4, eta_min=0.01)),
    ],
    ids=["step", "cosine", "cosine_eta_min"],
)
def test_schedules_match_torch(make):
    p, q = Parameter(np.ones(1)), torch.ones(1, requires_grad=True)
    o, t = optim.SGD([p], lr=0.1), torch.optim.SGD([q], lr=0.1)
    so, st = make(o, optim), make(t, torch.optim.lr_scheduler)
    for epoch in range(13):  # past T_max: the cosine comes back up, as PyTorch's does
        assert so.get_last_lr()[0] == pytest.approx(st.get_last_lr()[0], rel=1e-12, abs=1e-15), (
            epoch
        )
        o.step(), t.step()
        so.step(), st.step()


def test_cosine_closed_form():
    opt = optim.SGD([Parameter(np.ones(1))], lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    for epoch in range(1, 11):
        sched.step()
        expected = 0.1 + 0.9 * (1 + math.cos(math.pi * epoch / 10)) / 2
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)

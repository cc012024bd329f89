"""Losses with PyTorch's signatures, checked against torch in float64 (values and input gradients
to 1e-12): cross_entropy and nll_loss with class weights, ignore_index, label smoothing and
spatial targets, binary cross-entropy (with logits and pos_weight), the loss modules, PyTorch's
positional order, and the errors for bad arguments."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastconv import Tensor, nn  # noqa: E402
from fastconv.nn import functional as F  # noqa: E402

TF = torch.nn.functional
TOL = dict(rtol=1e-12, atol=1e-12)
REDUCTIONS = ["mean", "sum", "none"]


def compare(ours, theirs, *inputs, seed=0):
    """ours(*Tensors) against theirs(*torch tensors): the value, and the inputs' gradients for a
    random upstream gradient."""
    xs = [Tensor(a.copy(), requires_grad=True) for a in inputs]
    ts = [torch.tensor(a, requires_grad=True) for a in inputs]
    out, want = ours(*xs), theirs(*ts)
    assert out.shape == tuple(want.shape) and out.dtype == np.float64
    np.testing.assert_allclose(out.data, want.detach().numpy(), **TOL)
    g = np.random.default_rng(seed).standard_normal(out.shape)
    (out * g).sum().backward()
    (want * torch.tensor(g)).sum().backward()
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad, t.grad.numpy(), **TOL)
    return out


def class_problem(shape, ignore, seed=1):
    """Logits of ``shape`` (N, C, ...), class indices, some set to ``ignore`` (None: none)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, shape)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    if ignore is not None:
        target.flat[::3] = ignore
    weight = rng.uniform(0.2, 2.0, shape[1])
    return x, target, weight


# ----------------------------------------------------------------------------------------------
# cross_entropy and nll_loss


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 2, 3)], ids=["2d", "spatial"])
@pytest.mark.parametrize("ignore", [None, -100, 2], ids=["all", "ignore-100", "ignore2"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_as_torch(shape, ignore, weighted, smoothing, reduction):
    x, target, weight = class_problem(shape, ignore)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    if ignore is not None:
        kw["ignore_index"] = ignore
    w = weight if weighted else None
    compare(
        lambda a: F.cross_entropy(a, target, w, **kw),
        lambda a: TF.cross_entropy(
            a, torch.from_numpy(target), None if w is None else torch.from_numpy(w), **kw
        ),
        x,
    )


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 2, 3)], ids=["2d", "spatial"])
@pytest.mark.parametrize("ignore", [None, -100, 2], ids=["all", "ignore-100", "ignore2"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_as_torch(shape, ignore, weighted, reduction):
    x, target, weight = class_problem(shape, ignore)
    kw = (
        dict(reduction=reduction)
        if ignore is None
        else dict(reduction=reduction, ignore_index=ignore)
    )
    w = weight if weighted else None
    compare(
        lambda a: F.nll_loss(F.log_softmax(a, 1), target, w, **kw),
        lambda a: TF.nll_loss(
            TF.log_softmax(a, 1),
            torch.from_numpy(target),
            None if w is None else torch.from_numpy(w),
            **kw,
        ),
        x,
    )


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probability_targets(shape, weighted, smoothing, reduction):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, shape)
    probs = np.moveaxis(rng.dirichlet(np.ones(shape[1]), (shape[0],) + shape[2:]), -1, 1)
    w = rng.uniform(0.2, 2, shape[1]) if weighted else None
    compare(
        lambda a: F.cross_entropy(a, probs, w, reduction=reduction, label_smoothing=smoothing),
        lambda a: TF.cross_entropy(
            a,
            torch.from_numpy(probs),
            None if w is None else torch.from_numpy(w),
            reduction=reduction,
            label_smoothing=smoothing,
        ),
        x,
    )


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_unbatched_input(loss, reduction):
    x = np.random.default_rng(4).normal(size=5)
    target = np.array(3)
    weight = np.arange(1.0, 6.0)
    compare(
        lambda a: getattr(F, loss)(a, target, weight, reduction=reduction),
        lambda a: getattr(TF, loss)(
            a, torch.tensor(3), torch.from_numpy(weight), reduction=reduction
        ),
        x,
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_every_target_ignored_is_nan_with_zero_gradient(smoothing):
    x = np.random.default_rng(5).normal(size=(3, 4))
    target = np.full(3, -100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compare(
            lambda a: F.cross_entropy(a, target, label_smoothing=smoothing),
            lambda a: TF.cross_entropy(a, torch.from_numpy(target), label_smoothing=smoothing),
            x,
        )
    assert np.isnan(out.data)


def test_fused_kernel_runs_every_class_index_case():
    x, target, weight = class_problem((5, 4), -100)
    for w in (None, weight):
        out = F.cross_entropy(Tensor(x, requires_grad=True), target, w, reduction="none")
        assert out._ctx.fn is F.SoftmaxCrossEntropy
    assert F.nll_loss(Tensor(x, requires_grad=True), target, reduction="none")._ctx.fn is F.NllLoss


def test_nll_loss_ignores_minus_infinity_elsewhere():
    """Only the target's log-probability is read (as PyTorch's gather): -inf elsewhere is fine."""
    logp = np.array([[0.0, -np.inf], [-np.inf, 0.0], [np.log(0.5), np.log(0.5)]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare(
            lambda a: F.nll_loss(a, np.array([0, 1, -100])),
            lambda a: TF.nll_loss(a, torch.tensor([0, 1, -100])),
            logp,
        )
        compare(
            lambda a: F.cross_entropy(a, np.array([0, 1, 1]), reduction="sum"),
            lambda a: TF.cross_entropy(a, torch.tensor([0, 1, 1]), reduction="sum"),
            logp,
        )


# ----------------------------------------------------------------------------------------------
# binary cross-entropy, mse


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_with_logits_as_torch(weighted, pos_weighted, reduction):
    rng = np.random.default_rng(6)
    x = rng.normal(0, 3, (5, 4))
    x[0] = [-800.0, -40.0, 40.0, 800.0]  # far out: no overflow, no nan
    target = rng.uniform(0, 1, (5, 4))
    w = rng.uniform(0.5, 2, (1, 4)) if weighted else None
    pw = rng.uniform(0.5, 3, 4) if pos_weighted else None

    def theirs(a, t):
        return TF.binary_cross_entropy_with_logits(
            a,
            t,
            None if w is None else torch.from_numpy(w),
            reduction=reduction,
            pos_weight=None if pw is None else torch.from_numpy(pw),
        )

    out = compare(
        lambda a, t: F.binary_cross_entropy_with_logits(
            a, t, w, reduction=reduction, pos_weight=pw
        ),
        theirs,
        x,
        target,
    )  # the target's gradient too
    assert np.isfinite(out.data).all()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_as_torch(weighted, reduction):
    rng = np.random.default_rng(7)
    p = rng.uniform(0.01, 0.99, (4, 3))
    p[0] = [0.0, 1.0, 1e-60]  # the logs clamp at -100, the gradient's denominator at 1e-12
    target = rng.uniform(0, 1, (4, 3))
    w = rng.uniform(0.5, 2, (4, 3)) if weighted else None
    compare(
        lambda a, t: F.binary_cross_entropy(a, t, w, reduction=reduction),
        lambda a, t: TF.binary_cross_entropy(
            a, t, None if w is None else torch.from_numpy(w), reduction=reduction
        ),
        p,
        target,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_mse_loss_as_torch(reduction):
    rng = np.random.default_rng(8)
    x, target, w = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.uniform(0, 2, (3, 4))
    compare(
        lambda a: F.mse_loss(a, target, reduction=reduction, weight=w),
        lambda a: TF.mse_loss(
            a, torch.from_numpy(target), reduction=reduction, weight=torch.from_numpy(w)
        ),
        x,
    )


# ----------------------------------------------------------------------------------------------
# modules and PyTorch's positional order


def test_loss_modules_as_torch():
    x, target, weight = class_problem((6, 4), 1)
    tw = torch.from_numpy(weight)
    compare(
        lambda a: nn.CrossEntropyLoss(weight, ignore_index=1, label_smoothing=0.1)(a, target),
        lambda a: torch.nn.CrossEntropyLoss(tw, ignore_index=1, label_smoothing=0.1)(
            a, torch.from_numpy(target)
        ),
        x,
    )
    compare(
        lambda a: nn.NLLLoss(weight, reduction="sum", ignore_index=1)(a, target),
        lambda a: torch.nn.NLLLoss(tw, reduction="sum", ignore_index=1)(
            a, torch.from_numpy(target)
        ),
        x,
    )
    probs = np.random.default_rng(9).uniform(size=(6, 4))
    pw = np.array([1.0, 2.0, 0.5, 3.0])
    compare(
        lambda a: nn.BCEWithLogitsLoss(pos_weight=pw)(a, probs),
        lambda a: torch.nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(pw))(
            a, torch.from_numpy(probs)
        ),
        x,
    )
    compare(
        lambda a: nn.BCELoss(reduction="none")(a.sigmoid(), probs),
        lambda a: torch.nn.BCELoss(reduction="none")(a.sigmoid(), torch.from_numpy(probs)),
        x,
    )
    # weights are buffers, in the state_dict under PyTorch's names
    for ours, theirs in (
        (nn.CrossEntropyLoss(weight), torch.nn.CrossEntropyLoss(tw)),
        (nn.NLLLoss(), torch.nn.NLLLoss()),
        (
            nn.BCEWithLogitsLoss(weight, pos_weight=pw),
            torch.nn.BCEWithLogitsLoss(tw, pos_weight=torch.from_numpy(pw)),
        ),
    ):
        assert list(ours.state_dict()) == list(theirs.state_dict())


def test_cross_entropy_module_takes_positional_arguments():
    """CrossEntropyLoss(x, y) with (input, target) positional, as torch's."""
    x, target, _ = class_problem((4, 3), None)
    out = nn.CrossEntropyLoss()(Tensor(x), target)
    assert out.item() == pytest.approx(
        TF.cross_entropy(torch.from_numpy(x), torch.from_numpy(target)).item(), rel=1e-12
    )


def test_positional_order_and_legacy_reduction_as_torch():
    """weight is third, then size_average, ignore_index, reduce, reduction: PyTorch's order; the
    deprecated size_average/reduce give the reduction they stand for, with PyTorch's warning."""
    x, target, weight = class_problem((6, 4), 3)
    tx, tt, tw = torch.from_numpy(x), torch.from_numpy(target), torch.from_numpy(weight)
    ours = F.cross_entropy(Tensor(x), target, weight, None, 3, None, "none", 0.1)
    np.testing.assert_allclose(
        ours.data, TF.cross_entropy(tx, tt, tw, None, 3, None, "none", 0.1), **TOL
    )
    for size_average, reduce in ((False, None), (None, False), (True, True)):
        with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
            ours = F.nll_loss(Tensor(x), target, weight, size_average, 3, reduce)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = TF.nll_loss(tx, tt, tw, size_average, 3, reduce)
        np.testing.assert_allclose(ours.data, want.numpy(), **TOL)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert nn.MSELoss(False).reduction == "sum"


# ----------------------------------------------------------------------------------------------
# errors name the argument

X = Tensor(np.zeros((3, 4)))


@pytest.mark.parametrize(
    "call,error,message",
    [
        (
            lambda: F.cross_entropy(X, np.array([0, 1])),
            ValueError,
            r"target of shape \(2,\) does not fit input of shape \(3, 4\)",
        ),
        (
            lambda: F.nll_loss(Tensor(np.zeros((2, 4, 5))), np.zeros((2, 4), np.int64)),
            ValueError,
            r"class indices of shape \(2, 5\) expected",
        ),
        (lambda: F.cross_entropy(X, np.array([0, 1, 4])), IndexError, "target 4 is out of bounds"),
        (
            lambda: F.nll_loss(X, np.array([0, -1, 2])),
            IndexError,
            r"must be in \[0, 4\) or equal ignore_index=-100",
        ),
        (
            lambda: F.cross_entropy(X, np.array([0.0, 1.0, 2.0])),
            TypeError,
            "target must hold integer class indices",
        ),
        (
            lambda: F.cross_entropy(X, np.array([True, False, True])),
            TypeError,
            "target must hold integer",
        ),
        (
            lambda: F.cross_entropy(X, np.array([0, 1, 2]), np.ones(3)),
            ValueError,
            r"weight must hold one value per class, shape \(4,\)",
        ),
        (
            lambda: F.nll_loss(X, np.array([0, 1, 2]), np.ones((1, 4))),
            ValueError,
            "weight must hold one value per class",
        ),
        (
            lambda: F.cross_entropy(X, np.array([0, 1, 2]), reduction="avg"),
            ValueError,
            "'avg' is not a valid value for reduction",
        ),
        (
            lambda: nn.CrossEntropyLoss(reduction="elementwise"),
            ValueError,
            "not a valid value for reduction",
        ),
        (
            lambda: F.cross_entropy(X, np.array([0, 1, 2]), label_smoothing=1.5),
            ValueError,
            r"label_smoothing must be in \[0, 1\]",
        ),
        (
            lambda: F.cross_entropy(X, np.full((3, 4), 0.25), ignore_index=1),
            ValueError,
            "ignore_index .* not supported for a class-probability target",
        ),
        (
            lambda: F.cross_entropy(Tensor(np.zeros((3, 4), np.int64)), np.array([0, 1, 2])),
            TypeError,
            "input must be float32 or float64",
        ),
        (
            lambda: F.binary_cross_entropy_with_logits(X, np.zeros((3, 3))),
            ValueError,
            r"target size \(3, 3\) must be the same as input size \(3, 4\)",
        ),
        (
            lambda: F.binary_cross_entropy_with_logits(X, np.zeros((3, 4)), pos_weight=np.ones(3)),
            ValueError,
            r"pos_weight of shape \(3,\) does not broadcast",
        ),
        (
            lambda: F.binary_cross_entropy_with_logits(X, np.zeros((3, 4)), np.ones((2, 1))),
            ValueError,
            "weight of shape",
        ),
        (
            lambda: F.binary_cross_entropy(X + 2, np.zeros((3, 4))),
            ValueError,
            "all elements of input should be between 0 and 1",
        ),
        (
            lambda: F.binary_cross_entropy(X, np.full((3, 4), 2.0)),
            ValueError,
            "all elements of target should be between 0 and 1",
        ),
        (lambda: F.mse_loss(X, np.zeros((3, 4)), weight=np.ones(4)), ValueError, "weight of shape"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_out_of_range_target_is_also_a_value_error():
    """IndexError as PyTorch's, and still the ValueError fastconv raised before."""
    with pytest.raises(ValueError, match="class indices"):
        F.cross_entropy(X, np.array([0, 1, 9]))

"""Tensor ops that forwards ported from PyTorch use (size, view, reductions with dim/keepdim,
max/argmax, comparisons, clamp, abs, squeeze, clone, cat, flatten) and the grad-mode switches:
float64 values and gradients against PyTorch (1e-12) and finite differences."""

import numpy as np
import pytest

from _autograd_ref import check_op, torch
from fastconv import autograd
from fastconv.autograd import Tensor

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
RTOL = 1e-12


def _t(f):
    """f for check_op's torch side, or None without torch."""
    return f if torch is not None else None


# --- size, shape, view ------------------------------------------------------------------------


def test_size_is_torchs_call_and_numpys_count():
    x = Tensor(np.zeros((2, 3, 4)))
    assert x.size() == (2, 3, 4) and x.shape == (2, 3, 4)
    assert x.size(0) == 2 and x.size(-1) == 4 and x.size(-3) == 2
    assert x.size == 24 and x.numel() == 24 and x.dim() == 3 and x.size + 1 == 25  # NumPy's int
    for bad in (3, -4):
        with pytest.raises(IndexError, match=r"dimension out of range.*\[-3, 2\]"):
            x.size(bad)
    with pytest.raises(TypeError, match="dim must be an int"):
        x.size(1.0)
    with pytest.raises(IndexError, match="no dimensions"):
        Tensor(np.float64(1.0)).size(0)
    if torch is not None:
        assert x.size() == tuple(torch.zeros(2, 3, 4).size())


@pytest.mark.parametrize("shape", [(-1,), (4, -1), (-1, 2, 3), (3, 8), ((6, 4),), ((-1, 12),)])
def test_view_and_reshape_infer_minus_one(shape):
    def ours(x):
        return x.view(*shape) * 2 + x.reshape(*shape)

    def theirs(x):
        return x.view(*shape) * 2 + x.reshape(*shape)

    check_op([(2, 3, 4)], ours, _t(theirs), rtol=RTOL)


def test_view_batch_idiom_and_bad_shapes():
    x = Tensor(np.zeros((5, 2, 3)))
    assert x.view(x.size(0), -1).shape == (5, 6)
    for bad in [(4, -1), (-1, -1), (7,), (-2, 15)]:
        with pytest.raises(
            ValueError, match=r"shape .* is invalid for a tensor of shape \(5, 2, 3\)"
        ):
            x.view(*bad)
    with pytest.raises(ValueError, match="invalid"):
        Tensor(np.zeros((0, 3))).reshape(-1, 0)  # ambiguous, as PyTorch says


# --- reductions -------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["sum", "mean"])
@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2), [1, -1]])
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_mean_with_dim_and_keepdim(op, dim, keepdim):
    def ours(x):
        return getattr(x, op)() if dim is None else getattr(x, op)(dim=dim, keepdim=keepdim)

    def theirs(x):
        return getattr(x, op)() if dim is None else getattr(x, op)(dim=dim, keepdim=keepdim)

    check_op([(2, 3, 4)], ours, _t(theirs), rtol=RTOL)


def test_numpy_names_still_work_and_errors():
    x = Tensor(np.arange(6.0).reshape(2, 3))
    assert x.sum(axis=1, keepdims=True).shape == (2, 1) and x.mean(1).shape == (2,)
    with pytest.raises(TypeError, match="not both"):
        x.sum(dim=0, axis=0)
    with pytest.raises(IndexError, match="out of range"):
        x.sum(2)
    with pytest.raises(ValueError, match="twice"):
        x.mean((1, -1))


@pytest.mark.parametrize("which", ["max", "min"])
@pytest.mark.parametrize("dim,keepdim", [(0, False), (-1, True), (1, False)])
def test_max_min_along_dim_return_values_and_indices(which, dim, keepdim):
    check_op(
        [(3, 4, 5)],
        lambda x: getattr(x, which)(dim, keepdim).values,
        _t(lambda x: getattr(x, which)(dim, keepdim).values),
        rtol=RTOL,
    )
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    out = getattr(Tensor(x), which)(dim=dim, keepdim=keepdim)
    values, indices = out  # a (values, indices) pair, as torch.return_types
    assert indices.dtype == np.int64 and not indices.requires_grad
    assert out.values is values and out.indices is indices
    if torch is not None:
        ref = getattr(torch.tensor(x), which)(dim=dim, keepdim=keepdim)
        np.testing.assert_array_equal(indices.data, ref.indices.numpy())


def test_full_max_min_amax_amin_share_ties_as_torch():
    x = np.array([[1.0, 3.0, 3.0], [-2.0, 3.0, -2.0]])

    for name, kw in [
        ("max", {}),
        ("min", {}),
        ("amax", {}),
        ("amin", {}),
        ("amax", {"dim": 1}),
        ("amin", {"dim": (0, 1), "keepdim": True}),
        ("amax", {"dim": 0, "keepdim": True}),
    ]:
        out = check_op(
            None,
            lambda t: getattr(t, name)(**kw),
            _t(lambda t: getattr(t, name)(**kw)),
            arrays=[x],
            fd=False,
            rtol=RTOL,
        )[0]
        if name in ("max", "min"):
            assert out.shape == ()  # a scalar tensor, as torch's x.max()
    check_op(
        [(3, 4)],
        lambda t: t.amax(dim=-1) + t.max(),
        _t(lambda t: t.amax(dim=-1) + t.max()),
        rtol=RTOL,
    )  # no ties: finite differences too


@pytest.mark.parametrize("which", ["argmax", "argmin"])
def test_argmax_argmin(which):
    x = np.random.default_rng(2).standard_normal((3, 4, 5))
    t = Tensor(x, requires_grad=True)
    for kw in [{}, {"dim": 1}, {"dim": -1, "keepdim": True}]:
        got = getattr(t, which)(**kw)
        assert got.dtype == np.int64 and not got.requires_grad
        if torch is not None:
            np.testing.assert_array_equal(got.data, getattr(torch.tensor(x), which)(**kw).numpy())
    assert getattr(t, which)().shape == ()


# --- comparisons, clamp, abs ------------------------------------------------------------------


@pytest.mark.parametrize("op", ["__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"])
def test_comparisons_are_boolean_constants(op):
    rng = np.random.default_rng(3)
    a = np.round(rng.standard_normal((3, 4)))
    b = np.round(rng.standard_normal((3, 4)))
    ta = Tensor(a, requires_grad=True)
    for other in (Tensor(b, requires_grad=True), b, 0.0, b[0]):
        got = getattr(ta, op)(other)
        assert isinstance(got, Tensor) and got.dtype == np.bool_ and not got.requires_grad
        raw = other.data if isinstance(other, Tensor) else np.asarray(other)
        np.testing.assert_array_equal(got.data, getattr(a, op)(raw))
        if torch is not None:
            o = (
                torch.tensor(other.data)
                if isinstance(other, Tensor)
                else (torch.tensor(other) if isinstance(other, np.ndarray) else other)
            )
            np.testing.assert_array_equal(got.data, getattr(torch.tensor(a), op)(o).numpy())


def test_comparison_with_an_ndarray_on_the_left_and_as_a_mask():
    a = np.array([[-1.0, 2.0], [3.0, -4.0]])
    got = np.zeros((2, 2)) < Tensor(a)
    assert isinstance(got, Tensor) and got.data.tolist() == [[False, True], [True, False]]
    check_op(
        [(4, 5)],
        lambda x: x * (x > 0) + x[x < 0.5].sum(),
        _t(lambda x: x * (x > 0) + x[x < 0.5].sum()),
        rtol=RTOL,
    )


def test_tensors_still_hash_and_compare_with_none():
    a, b = Tensor(np.ones(3)), Tensor(np.ones(3))
    assert len({a, b}) == 2 and {a: 1}[a] == 1
    assert (a == None) is False and (a != None) is True  # noqa: E711 (as torch)
    assert bool(Tensor(np.array([2.0])) > 1) and float(Tensor(np.array(2.5))) == 2.5
    with pytest.raises(ValueError):
        bool(a == b)  # several elements: ambiguous, as in NumPy and PyTorch


@pytest.mark.parametrize("lo,hi", [(-0.3, 0.4), (-0.2, None), (None, 0.1), (0.5, -0.5)])
def test_clamp(lo, hi):
    check_op([(4, 5)], lambda x: x.clamp(lo, hi), _t(lambda x: x.clamp(lo, hi)), rtol=RTOL)
    check_op(
        [(4, 5)], lambda x: x.clamp(min=lo, max=hi), _t(lambda x: x.clip(min=lo, max=hi)), rtol=RTOL
    )


def test_clamp_at_its_bounds_and_errors():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, np.nan])
    check_op(
        None,
        lambda t: t.clamp(-0.5, 0.5),
        _t(lambda t: t.clamp(-0.5, 0.5)),
        arrays=[x[:5]],
        fd=False,
        rtol=RTOL,
    )  # the gradient passes at the bounds (inclusive), as torch
    assert np.isnan(Tensor(x).clamp(0, 1).data[-1])
    with pytest.raises(ValueError, match="'min' or 'max'"):
        Tensor(x).clamp()
    with pytest.raises(TypeError, match="min must be a number"):
        Tensor(x).clamp(min="0")


def test_abs():
    check_op([(3, 4)], lambda x: x.abs(), _t(lambda x: x.abs()), rtol=RTOL)
    check_op(
        None,
        lambda x: x.abs(),
        _t(lambda x: x.abs()),
        arrays=[np.array([-1.0, 0.0, 2.0])],
        fd=False,
        rtol=RTOL,
    )  # 0 at 0


# --- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [None, 0, 1, -1, 3, (0, 2), (1, 3)])
def test_squeeze(dim):
    def ours(x):
        return (x.squeeze() if dim is None else x.squeeze(dim)) * 3

    def theirs(x):
        return (x.squeeze() if dim is None else x.squeeze(dim)) * 3

    check_op([(1, 3, 1, 2)], ours, _t(theirs), rtol=RTOL)  # a dim of size 3: left, as torch


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_unsqueeze(dim):
    check_op(
        [(3, 2)], lambda x: x.unsqueeze(dim) * 2, _t(lambda x: x.unsqueeze(dim) * 2), rtol=RTOL
    )


def test_squeeze_unsqueeze_errors():
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(IndexError, match=r"squeeze: dimension out of range.*\[-2, 1\]"):
        x.squeeze(2)
    with pytest.raises(IndexError, match=r"unsqueeze: dimension out of range.*\[-3, 2\]"):
        x.unsqueeze(3)


def test_clone_and_detach():
    x = Tensor(np.arange(4.0), requires_grad=True)
    c = x.clone()
    assert c.requires_grad and not np.shares_memory(c.data, x.data)
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.data, x.data)
    check_op([(2, 3)], lambda t: t.clone() * t, _t(lambda t: t.clone() * t), rtol=RTOL)


def test_cat_and_flatten_functions():
    def ours(a, b):
        return autograd.flatten(autograd.cat([a, b * 2], dim=1), 1) + autograd.flatten(a).sum()

    def theirs(a, b):
        return torch.flatten(torch.cat([a, b * 2], dim=1), 1) + torch.flatten(a).sum()

    check_op([(2, 3, 2), (2, 1, 2)], ours, _t(theirs), rtol=RTOL)
    check_op(
        [(2, 3)], lambda a: autograd.cat((a, a), -1), _t(lambda a: torch.cat((a, a), -1)), rtol=RTOL
    )
    with pytest.raises(ValueError, match="non-empty"):
        autograd.cat([])
    with pytest.raises(ValueError, match="start_dim .* after end_dim"):
        autograd.flatten(np.zeros((2, 3, 4)), 2, 1)
    assert autograd.flatten(np.zeros((2, 3))).shape == (6,) and Tensor(
        np.float64(1)
    ).flatten().shape == (1,)


# --- grad mode --------------------------------------------------------------------------------


def test_set_grad_enabled_inference_mode_and_bare_decorators():
    x = Tensor(np.ones(2), requires_grad=True)
    with autograd.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with autograd.inference_mode():
        assert not autograd.is_grad_enabled() and not (x * 2).requires_grad
    with autograd.inference_mode(False):
        assert autograd.is_grad_enabled()
    assert autograd.is_grad_enabled()

    @autograd.no_grad
    def bare():
        return autograd.is_grad_enabled()

    @autograd.inference_mode
    def bare_inference():
        return autograd.is_grad_enabled()

    @autograd.inference_mode()
    def called_inference():
        return autograd.is_grad_enabled()

    assert not bare() and not bare_inference() and not called_inference()
    assert autograd.is_grad_enabled()
    autograd.set_grad_enabled(False)
    try:
        assert not autograd.is_grad_enabled()
    finally:
        autograd.set_grad_enabled(True)
    with pytest.raises(TypeError, match="mode must be a bool"):
        autograd.set_grad_enabled(None)
    with pytest.raises(TypeError, match="mode must be a bool"):
        autograd.inference_mode("yes")

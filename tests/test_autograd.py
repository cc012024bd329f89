"""fastconv.autograd: the tape, and every element-wise, reduction and shape op, each checked in
float64 against PyTorch and central finite differences."""

import threading

import numpy as np
import pytest

from _autograd_ref import check_op, torch
from fastconv.autograd import (
    Function,
    Tensor,
    cat,
    concat,
    enable_grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from fastconv.nn import functional as F

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
TF = torch.nn.functional if torch is not None else None


# --- element-wise with broadcasting -----------------------------------------------------------

BROADCAST = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((2, 1, 3), (4, 1)),
    ((1,), (2, 3)),
    ((2, 3, 1), (1, 1, 5)),
]


@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_binary_broadcast(name, shapes):
    ops = {
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
    }
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, shapes[0])
    b = rng.uniform(0.5, 2, shapes[1]) * rng.choice([-1, 1], shapes[1])  # away from 0 for div
    check_op(None, ops[name], ops[name], arrays=[a, b])


@pytest.mark.parametrize("name", ["radd", "rsub", "rmul", "rdiv", "neg", "pow"])
def test_with_constants(name):
    const = np.linspace(0.5, 2, 4)
    ops = {
        "radd": lambda a: 2.0 + a * const,
        "rsub": lambda a: const - a,
        "rmul": lambda a: const * a * 3.0,
        "rdiv": lambda a: 1.5 / a,
        "neg": lambda a: -a,
        "pow": lambda a: a**3 + a**0.5,
    }
    torch_ops = {
        "radd": lambda a: 2.0 + a * torch.tensor(const),
        "rsub": lambda a: torch.tensor(const) - a,
        "rmul": lambda a: torch.tensor(const) * a * 3.0,
        "rdiv": lambda a: 1.5 / a,
        "neg": lambda a: -a,
        "pow": lambda a: a**3 + a**0.5,
    }
    check_op([(3, 4)], ops[name], torch_ops[name] if torch is not None else None, low=0.5, high=2)


def test_ndarray_on_the_left_gives_a_tensor():
    a = Tensor(np.ones(3), requires_grad=True)
    out = np.arange(3.0) * a + np.ones(3)
    assert isinstance(out, Tensor)
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, np.arange(3.0))


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "relu", "tanh", "sigmoid"])
def test_unary(name):
    low = 0.1 if name in ("log", "sqrt") else -3
    ours = {
        "exp": Tensor.exp,
        "log": Tensor.log,
        "sqrt": Tensor.sqrt,
        "relu": F.relu,
        "tanh": F.tanh,
        "sigmoid": F.sigmoid,
    }[name]
    theirs = getattr(torch, name) if torch is not None else None
    check_op([(4, 5)], ours, theirs, low=low, high=3)


@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_leaky_relu(slope):
    check_op(
        [(3, 7)],
        lambda a: F.leaky_relu(a, slope),
        TF and (lambda a: TF.leaky_relu(a, slope)),
        low=-2,
        high=2,
    )


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu(alpha):
    check_op(
        [(3, 7)], lambda a: F.elu(a, alpha), TF and (lambda a: TF.elu(a, alpha)), low=-2, high=2
    )


def test_sigmoid_and_softmax_do_not_overflow():
    x = Tensor(np.array([[-1000.0, 0.0, 1000.0]]), requires_grad=True)
    s = F.sigmoid(x)
    np.testing.assert_allclose(s.data, [[0.0, 0.5, 1.0]])
    ls = F.log_softmax(x, dim=1)
    assert np.isfinite(ls.data).all() and abs(ls.data[0, 2]) < 1e-12
    (s.sum() + ls.sum()).backward()
    assert np.isfinite(x.grad).all()


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(name, dim):
    ours = getattr(F, name)
    check_op(
        [(3, 4, 5)],
        lambda a: ours(a, dim),
        TF and (lambda a: getattr(TF, name)(a, dim=dim)),
        low=-3,
        high=3,
    )


# --- matmul, reductions, shapes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (3, 4, 2))], ids=str
)
def test_matmul(shapes):
    check_op(shapes, lambda a, b: a @ b, lambda a, b: a @ b)


@pytest.mark.parametrize(
    "axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)]
)
@pytest.mark.parametrize("name", ["sum", "mean"])
def test_reductions(name, axis, keepdims):
    dim = axis if axis is not None else tuple(range(3))
    check_op(
        [(2, 3, 4)],
        lambda a: getattr(a, name)(axis, keepdims),
        lambda a: getattr(a, name)(dim=dim, keepdim=keepdims),
    )


def test_reshape_flatten_transpose():
    check_op([(2, 3, 4)], lambda a: a.reshape(4, -1).T * 2, lambda a: a.reshape(4, -1).T * 2)
    check_op([(2, 3, 4, 5)], lambda a: F.flatten(a) ** 2, lambda a: torch.flatten(a, 1) ** 2)
    w = np.arange(3.0)
    check_op(
        [(2, 3, 4)],
        lambda a: a.transpose(2, 0, 1) * w,
        lambda a: a.permute(2, 0, 1) * torch.from_numpy(w),
    )


@pytest.mark.parametrize(
    "index",
    [(slice(1, 3),), (Ellipsis, 0), (slice(None), [0, 2, 0]), ([1, 1, 0], slice(1, None, 2))],
    ids=str,
)
def test_getitem(index):
    check_op([(3, 4)], lambda a: a[index], lambda a: a[index])


def test_concat():
    shapes = [(2, 3, 4), (2, 1, 4), (2, 5, 4)]
    check_op(shapes, lambda *t: concat(t, axis=1) ** 2, lambda *t: torch.cat(t, dim=1) ** 2)
    check_op([(2, 3), (4, 3)], lambda *t: cat(t) * 3, lambda *t: torch.cat(t) * 3)


def test_concat_of_a_constant_and_a_tensor():
    a = Tensor(np.ones((2, 2)), requires_grad=True)
    out = concat([Tensor(np.zeros((2, 1))), a], axis=1)
    (out * np.arange(3.0)).sum().backward()
    np.testing.assert_array_equal(a.grad, [[1, 2], [1, 2]])


# --- the tape ---------------------------------------------------------------------------------


def test_gradients_accumulate_over_uses_and_calls():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * x + x  # x used three times
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 5.0])
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 7.0])


def test_diamond_graph_visits_each_node_once():
    x = Tensor(np.array([3.0]), requires_grad=True)
    a = x * 2
    b = a + a  # a's gradient must be summed before it flows to x
    c = b * a
    c.backward()  # c = 8 x^2
    np.testing.assert_allclose(x.grad, [48.0])


def test_deep_chain_needs_no_recursion():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1e-3
    y.backward()
    np.testing.assert_array_equal(x.grad, [1.0])


def test_leaf_grads_are_not_aliased():
    a = Tensor(np.ones(2), requires_grad=True)
    b = Tensor(np.ones(2), requires_grad=True)
    (a + b).sum().backward()
    a.grad += 1
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_leaf_grad_never_shares_memory_with_graph_arrays():
    """Leaves adopt freshly computed gradients without a copy; whatever else a backward might
    hand back (the incoming gradient, a view of it, a saved input, one array for two inputs)
    must still be copied."""

    class Passthrough(Function):  # returns its incoming gradient, and a view of a saved input
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(b)
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g, ctx.saved[0].reshape(ctx.saved[0].shape)

    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = Tensor(np.full((2, 3), 2.0), requires_grad=True)
    up = np.ones((2, 3))
    Passthrough.apply(a, b).backward(up)
    arrays = [up, a.data, b.data]
    for leaf in (a, b):
        for other in arrays:
            assert not np.shares_memory(leaf.grad, other)
    assert not np.shares_memory(a.grad, b.grad)
    b.grad[...] = 7
    np.testing.assert_array_equal(b.data, 2.0)

    # a Linear layer's weight gradient (a reshape of a fresh array) is adopted, and correct
    w = Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    x = Tensor(np.ones((4, 2)))
    from fastconv.nn import functional as NF

    NF.linear(x, w).sum().backward()
    np.testing.assert_array_equal(w.grad, np.full((3, 2), 4.0))
    assert not np.shares_memory(w.grad, w.data) and not np.shares_memory(w.grad, x.data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_gradients_of_one_tensor_are_summed_in_place(dtype, monkeypatch):
    """A tensor used twice (a residual block's input) gets the second gradient added into the
    first in place (threaded, no new array) when the first is an array a built-in backward made:
    the sum is NumPy's, bitwise; an array a user's Function returns (it may keep it) is never
    written, nor the upstream gradient."""
    from fastconv import _core, autograd

    calls = []
    real = _core.add_inplace
    monkeypatch.setattr(_core, "add_inplace", lambda a, b: (calls.append(a.shape), real(a, b)))
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 40_000)).astype(dtype)
    w = rng.standard_normal((3, 40_000)).astype(dtype)
    up = rng.standard_normal((3, 40_000)).astype(dtype)
    pristine = up.copy()
    x = Tensor(a, requires_grad=True)
    h = x * 2.0  # h feeds two branches: its two gradients are fresh arrays of its full size
    out = h * Tensor(w) + F.relu(h)
    out.backward(up)
    g_h = up * w + np.where(2.0 * a > 0, up, 0)
    np.testing.assert_array_equal(x.grad, (g_h * 2.0).astype(dtype))
    np.testing.assert_array_equal(up, pristine)
    assert calls == [(3, 40_000)]

    kept = np.ones((4, 5), dtype)

    class Keeps(Function):  # returns an array it holds on to, every call
        @staticmethod
        def forward(ctx, t):
            return t * 1

        @staticmethod
        def backward(ctx, g):
            return kept

    calls.clear()
    y = Tensor(np.zeros((4, 5), dtype), requires_grad=True)
    m = y * 3.0
    (Keeps.apply(m) + m * 2.0).backward(np.ones((4, 5), dtype))
    np.testing.assert_array_equal(kept, 1.0)
    np.testing.assert_array_equal(y.grad, np.full((4, 5), 9.0))
    assert autograd._add_into(np.ones(3), np.ones(3)) is True
    assert autograd._add_into(np.ones(4)[::2], np.ones(2)) is False  # not contiguous
    assert autograd._add_into(np.ones(2, np.float32), np.ones(2)) is False  # dtypes differ
    b = np.ones(4)
    assert autograd._add_into(b[:2], b[1:3]) is False  # overlapping


def test_no_grad_records_nothing():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2
        with enable_grad():
            z = x * 2
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad

    @no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad


def _in_thread(fn):
    """Run fn in a new thread; return its result (re-raising what it raised)."""
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def _joined(t, out):
    t.join(timeout=60)
    assert not t.is_alive()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_grad_mode_is_per_thread_training_beside_no_grad_evaluation():
    """One thread evaluates under no_grad while another trains: every training step records
    its graph (the steps run while the other thread is inside no_grad, in lock-step)."""
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    x = Tensor(rng.standard_normal((5, 4)))
    inside, stepped = threading.Event(), threading.Event()

    def evaluate():
        for _ in range(20):
            with no_grad():
                inside.set()
                assert stepped.wait(timeout=30)
                stepped.clear()
                y = F.linear(x, w)
                assert not y.requires_grad and not is_grad_enabled()
        return True

    t, out = _in_thread(evaluate)
    for _ in range(20):
        assert inside.wait(timeout=30)
        inside.clear()
        assert is_grad_enabled()
        w.grad = None
        F.linear(x, w).sum().backward()  # raised "does not require grad" with a global mode
        np.testing.assert_allclose(w.grad, np.broadcast_to(x.data.sum(0), (3, 4)))
        stepped.set()
    assert _joined(t, out)
    # and free-running, without lock-step
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            with no_grad():
                F.linear(x, w)

    t, out = _in_thread(loop)
    try:
        for _ in range(200):
            F.linear(x, w).sum().backward()
    finally:
        stop.set()
    _joined(t, out)


def test_overlapping_no_grad_in_two_threads_leaves_grad_on_everywhere():
    """A enters, B enters, A leaves, B leaves: with one global mode B restored A's "off"."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with no_grad():
            a_in.set()
            assert b_in.wait(timeout=30)
        a_out.set()
        return is_grad_enabled()

    def b():
        assert a_in.wait(timeout=30)
        with no_grad():
            b_in.set()
            assert a_out.wait(timeout=30)
        return is_grad_enabled()

    ta, oa = _in_thread(a)
    tb, ob = _in_thread(b)
    assert _joined(ta, oa) and _joined(tb, ob)
    assert is_grad_enabled()


def test_new_threads_start_with_grad_on_and_decorators_nest():
    with no_grad():
        t, out = _in_thread(is_grad_enabled)
        assert _joined(t, out)  # as PyTorch: each thread starts with grad enabled

    @no_grad()
    def depth(n):  # one decorator instance, re-entered by recursion
        assert not is_grad_enabled()
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(3) == 3
    assert is_grad_enabled()


def test_set_grad_enabled_as_torch():
    x = Tensor(np.ones(2), requires_grad=True)
    set_grad_enabled(False)
    try:
        assert not is_grad_enabled() and not (x * 2).requires_grad
    finally:
        set_grad_enabled(True)
    assert is_grad_enabled()
    with set_grad_enabled(False):
        assert not is_grad_enabled()
        with set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not is_grad_enabled()
    assert is_grad_enabled()

    @set_grad_enabled(False)
    def f(t):
        return t * 3

    assert is_grad_enabled()  # decorating does not switch the mode
    assert not f(x).requires_grad and is_grad_enabled()


def test_second_backward_needs_retain_graph():
    x = Tensor(np.ones(2), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 4.0])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()
    with pytest.raises(RuntimeError, match="single element"):
        (Tensor(np.ones(2), requires_grad=True) * 2).backward()
    with pytest.raises(TypeError, match="floating"):
        Tensor(np.arange(3), requires_grad=True)


def test_detach_numpy_item_retain_grad_and_dtype():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    h = (x * 2).retain_grad()
    out = (h * h).sum()
    assert out.dtype == np.float32 and h.dtype == np.float32
    out.backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(h.grad, [4, 4, 4])
    d = h.detach()
    assert not d.requires_grad and d.numpy() is h.data
    assert out.item() == pytest.approx(12.0)
    assert "requires_grad=True" in repr(x)


def test_custom_function():
    class Cube(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a**3

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved
            return 3 * a * a * g

    check_op([(5,)], Cube.apply, lambda a: a**3)


def test_wrong_gradient_shape_is_reported():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 1

        @staticmethod
        def backward(ctx, g):
            return g.sum()

    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="Bad.backward"):
        Bad.apply(x).sum().backward()


@needs_torch
def test_composite_expression_matches_torch():
    def ours(a, b, c):
        h = F.tanh(a @ b) * F.sigmoid(c) + (a @ b).exp() / 10
        return F.log_softmax(h - h.mean(axis=1, keepdims=True), dim=1)

    def theirs(a, b, c):
        h = torch.tanh(a @ b) * torch.sigmoid(c) + (a @ b).exp() / 10
        return torch.log_softmax(h - h.mean(dim=1, keepdim=True), dim=1)

    check_op([(4, 3), (3, 5), (5,)], ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_relu_kernels_match_numpy(dtype, layout):
    """The threaded ReLU kernels (several parallel chunks here) against NumPy, NaN included."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 70_001)).astype(dtype)
    a[0, :5] = [np.nan, -0.0, 0.0, np.inf, -np.inf]
    if layout == "strided":
        a = a[:, ::2]
    pristine = a.copy()
    x = Tensor(a, requires_grad=True)
    y = F.relu(x)
    np.testing.assert_array_equal(y.data, np.maximum(pristine, 0))
    assert y.dtype == dtype
    g = rng.standard_normal(a.shape).astype(dtype)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, np.where(np.maximum(pristine, 0) > 0, g, 0))
    np.testing.assert_array_equal(a, pristine)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_of_a_strided_gradient(dtype):
    """ReLUs feeding a concat get their gradients as strided slices of the concat's: the
    threaded kernel still masks them (PyTorch's threshold_backward: 0 where y <= 0, whatever
    the gradient there), and the upstream gradient is left as it was."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3, 5, 40, 41)).astype(dtype)
    b = rng.standard_normal((3, 2, 40, 41)).astype(dtype)
    a[0, 0, 0, :3] = [0.0, -0.0, np.nan]
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = concat([F.relu(ta), F.relu(tb)], axis=1)
    g = rng.standard_normal(out.shape).astype(dtype)
    g[0, 1, 0, 0] = np.inf  # where y <= 0: still 0
    pristine = g.copy()
    out.backward(g)
    np.testing.assert_array_equal(ta.grad, np.where(np.maximum(a, 0) > 0, g[:, :5], 0))
    np.testing.assert_array_equal(tb.grad, np.where(b > 0, g[:, 5:], 0))
    assert ta.grad.dtype == dtype
    np.testing.assert_array_equal(g, pristine)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_reads_row_slices_in_place(dtype):
    """A gradient laid out as rows a uniform stride apart (a concat's slice, a strided plane)
    is masked where it lies; any other layout is gathered first; both are np.where's."""
    from fastconv import _core

    rng = np.random.default_rng(9)
    G = rng.standard_normal((4, 10, 60, 61)).astype(dtype)
    for g, rows in ((G[:, 3:7], True), (G[:, :, ::2], True), (G[:, ::2, :, ::2], False)):
        y = np.maximum(rng.standard_normal(g.shape), 0).astype(dtype)
        dx = np.full(g.shape, np.nan, dtype)
        assert _core.relu_backward_rows(g, y, dx) is rows
        if rows:
            np.testing.assert_array_equal(dx, np.where(y > 0, g, 0))
        else:
            assert np.isnan(dx).all()  # nothing written
        x = Tensor(y, requires_grad=True)  # y's own positives mask as ReLU's output would
        F.relu(x).backward(g)
        np.testing.assert_array_equal(x.grad, np.where(y > 0, g, 0))


def test_row_kernel_rejects_bad_buffers():
    from fastconv import _core

    y, dx = np.ones((2, 4), np.float32), np.empty((2, 4), np.float32)
    with pytest.raises(ValueError, match="shape"):
        _core.relu_backward_rows(np.ones((2, 8), np.float32)[:, :3], y, dx)
    with pytest.raises(TypeError, match="dtype"):
        _core.relu_backward_rows(np.ones((2, 4)), y, dx)
    with pytest.raises(TypeError, match="grad_x"):
        _core.relu_backward_rows(y, y, np.empty((2, 4)))


def test_relu_kernel_rejects_mismatched_buffers():
    from fastconv import _core

    x = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="out"):
        _core.relu_forward(x, np.empty(9, np.float32))
    with pytest.raises(TypeError, match="grad_x"):
        _core.relu_backward(x, x, np.empty(10, np.float64))
    with pytest.raises(ValueError, match="writeable"):
        ro = np.empty(10, np.float32)
        ro.flags.writeable = False
        _core.relu_forward(x, ro)


def test_backward_frees_what_it_no_longer_needs():
    """Each intermediate's array and gradient are released as soon as backward is past them
    (a network's peak memory during backward is then its activations, not activations plus
    every gradient); what the caller still holds stays valid."""
    import weakref

    from fastconv.autograd import Function

    alive_at_first_op, refs = [], {}

    class First(Function):  # the graph's first op: its backward runs last
        @staticmethod
        def forward(ctx, a):
            return a * 2.0

        @staticmethod
        def backward(ctx, g):
            alive_at_first_op.append((refs["h"]() is not None, refs["grad_h"]() is not None))
            return g * 2.0

    class Times3(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 3.0

        @staticmethod
        def backward(ctx, g):
            out = g * 3.0
            refs["grad_h"] = weakref.ref(out)  # h's gradient
            return out

    x = Tensor(np.random.default_rng(0).standard_normal((4, 5)), requires_grad=True)
    h = First.apply(x).relu()
    kept = Times3.apply(h).relu()  # the caller's reference: must stay valid
    loss = kept.sum()
    refs["h"] = weakref.ref(h.data)
    del h
    loss.backward()
    assert alive_at_first_op == [(False, False)]
    assert kept.data.shape == (4, 5)
    np.testing.assert_allclose(x.grad, 6.0 * (x.data > 0))

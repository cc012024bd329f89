"""The training kernels' C ABI (fc_batch_norm_*, fc_softmax_cross_entropy_*, fc_sgd_step,
fc_adam_step) through ctypes: bad arguments return status codes (never a crash), and the
results match NumPy references."""

import ctypes

import numpy as np
import pytest

from test_c_abi import FC_EINVAL, FC_EOVERFLOW, FC_OK, LIB_PATH

pytestmark = pytest.mark.skipif(LIB_PATH is None, reason="libfastconv shared library not found")
P, Int, L, D = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
F32, F64 = 0, 1


class OptimTensor(ctypes.Structure):
    _fields_ = [
        ("param", P),
        ("grad", P),
        ("state", P * 3),
        ("n", L),
        ("step_size", D),
        ("bias2_sqrt", D),
        ("init", Int),
    ]


class SgdArgs(ctypes.Structure):
    _fields_ = [
        ("lr", D),
        ("momentum", D),
        ("dampening", D),
        ("weight_decay", D),
        ("nesterov", Int),
        ("maximize", Int),
    ]


class AdamArgs(ctypes.Structure):
    _fields_ = [
        ("lr", D),
        ("beta1", D),
        ("beta2", D),
        ("eps", D),
        ("weight_decay", D),
        ("amsgrad", Int),
        ("maximize", Int),
        ("decoupled", Int),
    ]


@pytest.fixture(scope="module")
def lib():
    lib = ctypes.CDLL(LIB_PATH)
    lib.fc_batch_norm_forward.argtypes = [Int, L, L, L, P, P, P, P, Int, Int, D, P, P, P, P]
    lib.fc_batch_norm_backward.argtypes = [Int, L, L, L, P, P, P, P, P, P, Int, P, P, P, P]
    lib.fc_batch_norm_forward_masked.argtypes = [Int, L, L, L, P, P, P, P, Int, D, P, P, P, P, P]
    lib.fc_batch_norm_backward_masked.argtypes = lib.fc_batch_norm_backward.argtypes
    lib.fc_batch_norm_update_running.argtypes = [Int, L, L, D, P, P, P, P]
    lib.fc_softmax_cross_entropy_forward.argtypes = [Int, L, L, L, P, P, P, P]
    lib.fc_softmax_cross_entropy_backward.argtypes = [Int, L, L, L, P, P, P, P, P]
    lib.fc_sgd_step.argtypes = [Int, L, ctypes.POINTER(OptimTensor), ctypes.POINTER(SgdArgs)]
    lib.fc_adam_step.argtypes = [Int, L, ctypes.POINTER(OptimTensor), ctypes.POINTER(AdamArgs)]
    lib.fc_add_inplace.argtypes = [Int, L, P, P]
    lib.fc_relu_backward_rows.argtypes = [Int, L, L, P, L, P, P]
    for f in (
        "fc_add_inplace",
        "fc_relu_backward_rows",
        "fc_batch_norm_forward",
        "fc_batch_norm_backward",
        "fc_batch_norm_forward_masked",
        "fc_batch_norm_backward_masked",
        "fc_batch_norm_update_running",
        "fc_softmax_cross_entropy_forward",
        "fc_softmax_cross_entropy_backward",
        "fc_sgd_step",
        "fc_adam_step",
    ):
        getattr(lib, f).restype = Int
    return lib


def ptr(a):
    return None if a is None else a.ctypes.data


def test_batch_norm_forward_and_backward(lib):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5))
    m, v, i, y = np.empty(4), np.empty(4), np.empty(4), np.empty_like(x)
    assert (
        lib.fc_batch_norm_forward(
            F64, 3, 4, 5, ptr(x), None, None, None, 1, 1, 1e-5, ptr(m), ptr(v), ptr(i), ptr(y)
        )
        == FC_OK
    )
    np.testing.assert_allclose(m, x.mean((0, 2)), rtol=1e-13)
    np.testing.assert_allclose(v, x.var((0, 2)), rtol=1e-12)
    ref = np.maximum((x - m[None, :, None]) / np.sqrt(v[None, :, None] + 1e-5), 0)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-14)
    dy, dx, dr = rng.standard_normal(x.shape), np.empty_like(x), np.empty_like(x)
    assert (
        lib.fc_batch_norm_backward(
            F64,
            3,
            4,
            5,
            ptr(dy),
            ptr(x),
            ptr(y),
            ptr(m),
            ptr(i),
            None,
            1,
            ptr(dx),
            ptr(dr),
            None,
            None,
        )
        == FC_OK
    )
    np.testing.assert_array_equal(dr, np.where(y > 0, dy, 0))


@pytest.mark.parametrize("t,dtype", [(F32, np.float32), (F64, np.float64)])
def test_add_inplace(lib, t, dtype):
    """acc += x over several parallel chunks, bitwise NumPy's sum; x itself may be acc."""
    rng = np.random.default_rng(1)
    acc = rng.standard_normal(200_003).astype(dtype)
    x = rng.standard_normal(acc.size).astype(dtype)
    ref, x0 = acc + x, x.copy()
    assert lib.fc_add_inplace(t, acc.size, ptr(acc), ptr(x)) == FC_OK
    np.testing.assert_array_equal(acc, ref)
    np.testing.assert_array_equal(x, x0)
    assert lib.fc_add_inplace(t, acc.size, ptr(acc), ptr(acc)) == FC_OK
    np.testing.assert_array_equal(acc, ref + ref)
    assert lib.fc_add_inplace(t, 0, None, None) == FC_OK


def test_add_inplace_bad_arguments(lib):
    a = np.zeros(4)
    assert lib.fc_add_inplace(7, 4, ptr(a), ptr(a)) == FC_EINVAL
    assert lib.fc_add_inplace(F64, -1, ptr(a), ptr(a)) == FC_EINVAL
    assert lib.fc_add_inplace(F64, 4, None, ptr(a)) == FC_EINVAL
    assert lib.fc_add_inplace(F64, 4, ptr(a), None) == FC_EINVAL
    assert lib.fc_add_inplace(F64, 2**62, ptr(a), ptr(a)) == FC_EOVERFLOW


@pytest.mark.parametrize("t, dtype", [(F32, np.float32), (F64, np.float64)])
def test_batch_norm_update_running(lib, t, dtype):
    # PyTorch's update, in double: momentum * batch + (1 - momentum) * running, the batch's
    # variance unbiased (count / (count - 1))
    rng = np.random.default_rng(8)
    mean, var = rng.standard_normal(5).astype(dtype), rng.random(5).astype(dtype)
    rm, rv = rng.standard_normal(5).astype(dtype), rng.random(5).astype(dtype) + 0.5
    count, m = 12, 0.3
    want_m = (m * mean.astype(np.float64) + (1 - m) * rm.astype(np.float64)).astype(dtype)
    want_v = (
        m * (var.astype(np.float64) * (count / (count - 1))) + (1 - m) * rv.astype(np.float64)
    ).astype(dtype)
    got_m, got_v = rm.copy(), rv.copy()
    assert (
        lib.fc_batch_norm_update_running(
            t, 5, count, m, ptr(mean), ptr(var), ptr(got_m), ptr(got_v)
        )
        == FC_OK
    )
    np.testing.assert_array_equal(got_m, want_m)
    np.testing.assert_array_equal(got_v, want_v)
    # either one alone; an empty batch changes nothing
    only_v = rv.copy()
    assert lib.fc_batch_norm_update_running(t, 5, count, m, None, ptr(var), None, ptr(only_v)) == 0
    np.testing.assert_array_equal(only_v, want_v)
    same = rm.copy()
    assert lib.fc_batch_norm_update_running(t, 5, 0, m, ptr(mean), ptr(var), ptr(same), None) == 0
    np.testing.assert_array_equal(same, rm)
    # bad arguments: a dtype, negative sizes, one value per channel, missing statistics
    for args in (
        (7, 5, count, m, ptr(mean), ptr(var), ptr(same), None),
        (t, -1, count, m, ptr(mean), ptr(var), ptr(same), None),
        (t, 5, -2, m, ptr(mean), ptr(var), ptr(same), None),
        (t, 5, 1, m, ptr(mean), ptr(var), ptr(same), None),
        (t, 5, count, m, None, ptr(var), ptr(same), None),
        (t, 5, count, m, ptr(mean), None, None, ptr(same)),
    ):
        assert lib.fc_batch_norm_update_running(*args) == FC_EINVAL
    np.testing.assert_array_equal(same, rm)


def test_batch_norm_bad_arguments(lib):
    x, c = np.zeros((2, 3, 4)), np.zeros(3)
    out = x.copy()

    def fwd(t=F64, n=2, c_=3, hw=4, act=0, eps=1e-5, x_=x, mean=c, inv=c, y=out):
        return lib.fc_batch_norm_forward(
            t, n, c_, hw, ptr(x_), None, None, None, act, 1, eps, ptr(mean), None, ptr(inv), ptr(y)
        )

    assert fwd() == FC_OK
    assert fwd(t=7) == FC_EINVAL
    assert fwd(n=-1) == FC_EINVAL
    assert fwd(act=2) == FC_EINVAL  # only none or relu
    assert fwd(eps=-1.0) == FC_EINVAL
    assert fwd(eps=float("nan")) == FC_EINVAL
    assert fwd(mean=None) == FC_EINVAL
    assert fwd(y=None) == FC_EINVAL
    assert fwd(n=2**40, c_=2**20, hw=2**10) == FC_EOVERFLOW
    assert (
        lib.fc_batch_norm_backward(
            F64,
            2,
            3,
            4,
            ptr(x),
            ptr(x),
            None,
            ptr(c),
            ptr(c),
            None,
            1,
            None,
            ptr(x.copy()),
            None,
            None,
        )
        == FC_EINVAL
    )  # dres needs y
    assert (
        lib.fc_batch_norm_backward(
            F64, 2, 3, 4, None, ptr(x), None, ptr(c), ptr(c), None, 1, None, None, None, None
        )
        == FC_EINVAL
    )


@pytest.mark.parametrize("t,dtype", [(F32, np.float32), (F64, np.float64)])
def test_batch_norm_masked(lib, t, dtype):
    # the fused ReLU's mask: y > 0, one bit per output, (hw + 7) // 8 bytes per plane; the
    # backward reads it in place of y and gives the same gradients, bit for bit
    rng = np.random.default_rng(3)
    n, c, hw = 3, 4, 11
    x, r = (
        rng.standard_normal((n, c, hw)).astype(dtype),
        rng.standard_normal((n, c, hw)).astype(dtype),
    )
    stats = [np.empty(c, dtype) for _ in range(3)]
    y, ym = np.empty_like(x), np.empty_like(x)
    mask = np.empty(n * c * 2, np.uint8)
    m, v, i = (ptr(a) for a in stats)
    assert (
        lib.fc_batch_norm_forward(
            t, n, c, hw, ptr(x), None, None, ptr(r), 1, 1, 1e-5, m, v, i, ptr(y)
        )
        == FC_OK
    )
    assert (
        lib.fc_batch_norm_forward_masked(
            t, n, c, hw, ptr(x), None, None, ptr(r), 1, 1e-5, m, v, i, ptr(ym), ptr(mask)
        )
        == FC_OK
    )
    assert np.array_equal(y, ym)
    bits = np.packbits((y > 0).reshape(n * c, hw).astype(np.uint8), axis=1, bitorder="little")
    assert np.array_equal(mask, bits.reshape(-1))
    dy = rng.standard_normal(x.shape).astype(dtype)
    got = []
    for masked in (False, True):
        dx, dr = np.empty_like(x), np.empty_like(x)
        fn = lib.fc_batch_norm_backward_masked if masked else lib.fc_batch_norm_backward
        relu = ptr(mask if masked else y)
        args = (t, n, c, hw, ptr(dy), ptr(x), relu, m, i, None, 1, ptr(dx), ptr(dr), None, None)
        assert fn(*args) == FC_OK
        got.append((dx, dr))
    assert np.array_equal(got[0][0], got[1][0]) and np.array_equal(got[0][1], got[1][1])
    # no mask: an error, never a write through NULL
    assert (
        lib.fc_batch_norm_forward_masked(
            t, n, c, hw, ptr(x), None, None, None, 1, 1e-5, m, v, i, ptr(ym), None
        )
        == FC_EINVAL
    )
    assert (
        lib.fc_batch_norm_backward_masked(
            t, n, c, hw, ptr(dy), ptr(x), None, m, i, None, 1, ptr(dx), ptr(dr), None, None
        )
        == FC_EINVAL
    )
    # an empty batch needs none
    assert (
        lib.fc_batch_norm_forward_masked(
            t, 0, c, hw, None, None, None, None, 1, 1e-5, m, v, i, None, None
        )
        == FC_OK
    )


def test_cross_entropy(lib):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 2))
    q = np.zeros_like(x)
    q[np.arange(3), rng.integers(0, 5, 3), :] = 1
    loss, lse = np.empty((3, 2)), np.empty((3, 2))
    assert (
        lib.fc_softmax_cross_entropy_forward(F64, 3, 5, 2, ptr(x), ptr(q), ptr(loss), ptr(lse))
        == FC_OK
    )
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    np.testing.assert_allclose(loss, -(q * logp).sum(1), rtol=1e-13)
    dl, dx = np.ones((3, 2)), np.empty_like(x)
    assert (
        lib.fc_softmax_cross_entropy_backward(
            F64, 3, 5, 2, ptr(x), ptr(q), ptr(lse), ptr(dl), ptr(dx)
        )
        == FC_OK
    )
    np.testing.assert_allclose(dx, np.exp(logp) - q, rtol=1e-12, atol=1e-15)
    assert (
        lib.fc_softmax_cross_entropy_forward(F64, -3, 5, 2, ptr(x), ptr(q), ptr(loss), ptr(lse))
        == FC_EINVAL
    )
    assert (
        lib.fc_softmax_cross_entropy_forward(F64, 3, 5, 2, ptr(x), None, ptr(loss), ptr(lse))
        == FC_EINVAL
    )
    assert (
        lib.fc_softmax_cross_entropy_backward(
            9, 3, 5, 2, ptr(x), ptr(q), ptr(lse), ptr(dl), ptr(dx)
        )
        == FC_EINVAL
    )


def test_optimizer_steps(lib):
    p, g, buf = np.ones(5), np.full(5, 2.0), np.zeros(5)
    t = OptimTensor(ptr(p), ptr(g), (P * 3)(ptr(buf), None, None), 5, 0.0, 0.0, 1)
    sgd = SgdArgs(0.1, 0.9, 0.0, 0.0, 0, 0)
    assert lib.fc_sgd_step(F64, 1, ctypes.byref(t), ctypes.byref(sgd)) == FC_OK
    np.testing.assert_array_equal(p, 1 - 0.1 * 2.0)
    np.testing.assert_array_equal(buf, 2.0)
    assert lib.fc_sgd_step(F64, 1, ctypes.byref(t), None) == FC_EINVAL
    assert lib.fc_sgd_step(F64, -1, ctypes.byref(t), ctypes.byref(sgd)) == FC_EINVAL
    assert lib.fc_sgd_step(F64, 1, None, ctypes.byref(sgd)) == FC_EINVAL
    nobuf = OptimTensor(ptr(p), ptr(g), (P * 3)(None, None, None), 5, 0.0, 0.0, 1)
    assert lib.fc_sgd_step(F64, 1, ctypes.byref(nobuf), ctypes.byref(sgd)) == FC_EINVAL  # momentum
    bad = OptimTensor(ptr(p), ptr(g), (P * 3)(ptr(buf), None, None), -5, 0.0, 0.0, 0)
    assert lib.fc_sgd_step(F64, 1, ctypes.byref(bad), ctypes.byref(sgd)) == FC_EINVAL
    adam = AdamArgs(0.1, 0.9, 0.999, 1e-8, 0.0, 1, 0, 0)
    m, v = np.zeros(5), np.zeros(5)
    two = OptimTensor(ptr(p), ptr(g), (P * 3)(ptr(m), ptr(v), None), 5, 0.1, 1.0, 0)
    assert (
        lib.fc_adam_step(F64, 1, ctypes.byref(two), ctypes.byref(adam)) == FC_EINVAL
    )  # amsgrad: 3
    assert lib.fc_adam_step(7, 1, ctypes.byref(two), ctypes.byref(adam)) == FC_EINVAL


@pytest.mark.parametrize("t,dtype", [(F32, np.float32), (F64, np.float64)])
def test_relu_backward_rows(lib, t, dtype):
    """Rows a stride apart, over several parallel jobs, jobs that span rows, and one row."""
    rng = np.random.default_rng(2)
    for rows, cols, ld in ((7, 30_001, 40_000), (3000, 50, 97), (1, 100_000, 100_000)):
        big = rng.standard_normal((rows, ld)).astype(dtype)
        y = np.maximum(rng.standard_normal((rows, cols)), 0).astype(dtype)
        dx = np.empty_like(y)
        assert lib.fc_relu_backward_rows(t, rows, cols, ptr(big), ld, ptr(y), ptr(dx)) == FC_OK
        np.testing.assert_array_equal(dx, np.where(y > 0, big[:, :cols], 0))
    assert lib.fc_relu_backward_rows(t, 0, 5, None, 5, None, None) == FC_OK
    assert lib.fc_relu_backward_rows(t, 3, 0, None, 0, None, None) == FC_OK


def test_relu_backward_rows_bad_arguments(lib):
    a = np.zeros(16)
    assert lib.fc_relu_backward_rows(7, 2, 4, ptr(a), 4, ptr(a), ptr(a)) == FC_EINVAL
    assert lib.fc_relu_backward_rows(F64, -1, 4, ptr(a), 4, ptr(a), ptr(a)) == FC_EINVAL
    assert lib.fc_relu_backward_rows(F64, 2, 4, ptr(a), 3, ptr(a), ptr(a)) == FC_EINVAL
    assert lib.fc_relu_backward_rows(F64, 2, 4, None, 4, ptr(a), ptr(a)) == FC_EINVAL
    assert lib.fc_relu_backward_rows(F64, 2**40, 4, ptr(a), 2**40, ptr(a), ptr(a)) == FC_EOVERFLOW

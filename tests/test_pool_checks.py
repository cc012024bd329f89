"""Pooling: bad arguments and bad switches (PyTorch's rules, messages naming the argument), the
C ABI through ctypes (descriptor checks; a bad switch leaves the output untouched), and the
same results on 1 and 2 threads and under every forced instruction set."""

import ctypes
import os
import sys
import textwrap

import numpy as np
import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

import fastconv  # noqa: E402
from _isa import AVAILABLE_ISAS, run_isa  # noqa: E402
from pool_reference import max_pool2d_ref  # noqa: E402
from test_pool import assert_max_equal, special_values  # noqa: E402

BAD_SWITCHES = {
    "negative": (ValueError, lambda i: i.__setitem__((0, 1, 1, 0), -1)),
    "beyond-plane": (ValueError, lambda i: i.__setitem__((1, 0, 0, 2), 8 * 10)),
    "huge": (ValueError, lambda i: i.__setitem__((1, 2, 3, 4), 2**62)),
    "int64-min": (ValueError, lambda i: i.__setitem__((0, 0, 0, 0), -(2**63))),
}


def _switch_ops(x, y, idx):
    g = np.ones(x.shape)
    return {
        "max_pool2d_backward": lambda i: fastconv.max_pool2d_backward(np.ones_like(y), i, x.shape),
        "max_unpool2d": lambda i: fastconv.max_unpool2d(y, i, 2, output_size=x.shape[2:]),
        "max_unpool2d_backward": lambda i: fastconv.max_unpool2d_backward(g, i),
    }


@pytest.mark.parametrize("op", ["max_pool2d_backward", "max_unpool2d", "max_unpool2d_backward"])
@pytest.mark.parametrize("kind", list(BAD_SWITCHES) + ["shape", "int32", "float64"])
def test_bad_switches_raise(op, kind, rng):
    x = rng.standard_normal((2, 3, 8, 10))
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    call = _switch_ops(x, y, idx)[op]
    bad = idx.copy()
    if kind in BAD_SWITCHES:
        err, spoil = BAD_SWITCHES[kind]
        spoil(bad)
        with pytest.raises(err, match=r"indices.*outside its 8x10 plane"):
            call(bad)
    elif kind == "shape":
        with pytest.raises(ValueError, match="indices"):
            call(bad[:, :2])
    else:
        with pytest.raises(TypeError, match="indices must be int64"):
            call(bad.astype(kind))
    call(idx)  # the good switches still work


# ---------------------------------------------------------------------------------------------
# threads and instruction sets


def _all_ops(x, rng):
    """Every pooling op on x: a dict of results (max pooling on 3/2 with padding and ceil mode)."""
    y, idx = fastconv.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    g = rng.standard_normal(y.shape).astype(x.dtype)
    a = fastconv.avg_pool2d(x, 3, 2, 1, True, False)
    ga = rng.standard_normal(a.shape).astype(x.dtype)
    ad = fastconv.adaptive_avg_pool2d(x, (5, 3))
    gd = rng.standard_normal(ad.shape).astype(x.dtype)
    y2, i2 = fastconv.max_pool2d(x, (2, 3), (1, 3), (1, 0), (2, 1), return_indices=True)  # gathers
    y3, i3 = fastconv.max_pool2d(x, 3, 1, 1, return_indices=True)  # stride 1: plain loads
    # without switches: separable maxima (rows, then columns) at strides 2, 3 (gathers) and 1,
    # and the 3x3/1 window's flat passes over the plane
    sep = {
        f"sep{j}": fastconv.max_pool2d(x, *args)
        for j, args in enumerate(
            [(3, 2, 1, 1, True), ((2, 3), (1, 3), (1, 0)), (3, 1, 0), (2, 2, 0, 1, True), (3, 1, 1)]
        )
    }
    return {
        **sep,
        "y": y,
        "idx": idx,
        "y2": y2,
        "idx2": i2,
        "y3": y3,
        "idx3": i3,
        "avg1": fastconv.avg_pool2d(x, (3, 2), 1, 1, False, True),
        "gx": fastconv.max_pool2d_backward(g, idx, x.shape),
        "unpool": fastconv.max_unpool2d(y, idx, 3, 2, 1, x.shape[2:]),
        "avg": a,
        "avg_gx": fastconv.avg_pool2d_backward(ga, x.shape, 3, 2, 1, True, False),
        "adaptive": ad,
        "adaptive_gx": fastconv.adaptive_avg_pool2d_backward(gd, x.shape),
    }


@pytest.mark.usefixtures("restore_threads")
def test_one_and_two_threads_agree(rng):
    x = rng.standard_normal((4, 16, 33, 35)).astype(np.float32)  # large enough to use the team
    fastconv.set_num_threads(1)
    one = _all_ops(x, np.random.default_rng(1))
    fastconv.set_num_threads(2)
    two = _all_ops(x, np.random.default_rng(1))
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    y_ref, i_ref = max_pool2d_ref(x[:1, :4], 3, 2, 1, ceil_mode=True)
    assert_max_equal(two["y"][:1, :4], two["idx"][:1, :4], y_ref, i_ref)


ISA_SCRIPT = textwrap.dedent(r"""
    import sys
    import numpy as np
    import fastconv
    sys.path.insert(0, sys.argv[1])
    from test_pool_checks import _all_ops, special_values
    out = {"isa": np.array(fastconv.isa())}
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        for k, x in enumerate((rng.standard_normal((2, 3, 19, 41)).astype(dtype),
                               special_values(rng, (2, 3, 19, 41), dtype))):
            for name, v in _all_ops(x, np.random.default_rng(1)).items():
                out[f"{np.dtype(dtype).name}-{k}-{name}"] = v
    np.savez(sys.argv[2], **out)
""")


@pytest.mark.slow  # a subprocess per ISA
@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_forced_isa_gives_identical_results(isa, tmp_path):
    """Every micro-kernel set (FASTCONV_ISA forces the lower ones) computes the same bits."""
    path = str(tmp_path / "out.npz")
    run_isa(isa, ISA_SCRIPT, path, timeout=120)
    got = np.load(path)
    assert str(got["isa"]) == isa
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        for k, x in enumerate(
            (
                rng.standard_normal((2, 3, 19, 41)).astype(dtype),
                special_values(rng, (2, 3, 19, 41), dtype),
            )
        ):
            y_ref, i_ref = max_pool2d_ref(x, 3, 2, 1, ceil_mode=True)
            key = f"{np.dtype(dtype).name}-{k}"
            assert_max_equal(got[f"{key}-y"], got[f"{key}-idx"], y_ref, i_ref)
            for name, v in _all_ops(x, np.random.default_rng(1)).items():
                np.testing.assert_array_equal(got[f"{key}-{name}"], v, err_msg=f"{key}-{name}")


# ---------------------------------------------------------------------------------------------
# argument checking (PyTorch's rules; every message names the argument)

X = np.zeros((2, 3, 8, 8), np.float32)
Y, IDX = fastconv.max_pool2d(X, 2, return_indices=True)
ARG_ERRORS = [
    (lambda: fastconv.max_pool2d(X, 0), ValueError, "kernel_size must be >= 1"),
    (lambda: fastconv.max_pool2d(X, (2, 2, 2)), TypeError, "kernel_size"),
    (lambda: fastconv.max_pool2d(X, 2, 0), ValueError, "stride must be >= 1"),
    (lambda: fastconv.max_pool2d(X, 2, padding=-1), ValueError, "padding must be >= 0"),
    (
        lambda: fastconv.max_pool2d(X, 3, padding=2),
        ValueError,
        "pad should be at most half of effective kernel size.*padding=2",
    ),
    (
        lambda: fastconv.max_pool2d(X, 2, padding=2, dilation=3),
        ValueError,
        "pad should be smaller than or equal to half of kernel size.*padding=2",
    ),
    (lambda: fastconv.max_pool2d(X, 2, dilation=0), ValueError, "dilation must be >= 1"),
    (lambda: fastconv.max_pool2d(X, 10), ValueError, r"x of shape \(2, 3, 8, 8\).*too small"),
    (lambda: fastconv.max_pool2d(X, 2, ceil_mode="yes"), TypeError, "ceil_mode"),
    (lambda: fastconv.max_pool2d(X, 2, return_indices=2), TypeError, "return_indices"),
    (lambda: fastconv.max_pool2d(X[0, 0], 2), ValueError, "x must be 3-D .* or 4-D"),
    (lambda: fastconv.max_pool2d(np.zeros((2, 0, 8, 8)), 2), ValueError, "x must have non-zero"),
    (lambda: fastconv.max_pool2d(X.astype(np.int32), 2), TypeError, "x: dtype int32"),
    (lambda: fastconv.max_pool2d_backward(Y, IDX, (2, 3, 8)), ValueError, "grad_out must be 3-D"),
    (
        lambda: fastconv.max_pool2d_backward(Y, IDX, (2, 4, 8, 8)),
        ValueError,
        "batch and channel dimensions",
    ),
    (lambda: fastconv.max_pool2d_backward(Y, IDX, (2, 3, -8, 8)), ValueError, "input_shape"),
    (lambda: fastconv.max_pool2d_backward(Y, IDX, "abc"), TypeError, "input_shape"),
    (lambda: fastconv.max_unpool2d(Y, IDX[:1], 2), ValueError, "indices must have the shape of x"),
    (
        lambda: fastconv.max_unpool2d(Y, IDX, 2, output_size=(5, 5)),
        ValueError,
        r'invalid output_size "\(5, 5\)" \(dim 0 must be between 6 and 10\)',
    ),
    (
        lambda: fastconv.max_unpool2d(Y, IDX, 2, output_size=(8,)),
        ValueError,
        "output_size should be a sequence containing 2 or 4 elements",
    ),
    (
        lambda: fastconv.avg_pool2d(X, 2, divisor_override=0),
        ValueError,
        "divisor_override: divisor must be not zero",
    ),
    (lambda: fastconv.avg_pool2d(X, 2, divisor_override=1.5), TypeError, "divisor_override"),
    (lambda: fastconv.avg_pool2d(X, 3, padding=2), ValueError, "pad should be at most half"),
    (lambda: fastconv.avg_pool2d(X, 2, count_include_pad=None), TypeError, "count_include_pad"),
    (
        lambda: fastconv.avg_pool2d_backward(Y, X.shape, 3),
        ValueError,
        r"grad_out must have the forward output's shape \(2, 3, 2, 2\)",
    ),
    (
        lambda: fastconv.adaptive_avg_pool2d(X, (-1, 3)),
        ValueError,
        "elements of output_size must be greater than or equal to 0",
    ),
    (lambda: fastconv.adaptive_avg_pool2d(X, 2.5), TypeError, "output_size"),
    (
        lambda: fastconv.adaptive_avg_pool2d_backward(Y, (2, 3, 8)),
        ValueError,
        "grad_out must be 3-D",
    ),
]


@pytest.mark.parametrize(
    "call,err,match", ARG_ERRORS, ids=[f"err{i}" for i in range(len(ARG_ERRORS))]
)
def test_argument_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# the C ABI (ctypes): descriptor checks and "no write on a bad switch"


class PoolDesc(ctypes.Structure):
    _fields_ = [
        (f, ctypes.c_int64)
        for f in (
            "n",
            "c",
            "h",
            "w",
            "kh",
            "kw",
            "stride_h",
            "stride_w",
            "pad_h",
            "pad_w",
            "dil_h",
            "dil_w",
            "ceil_mode",
        )
    ]


class PlanesDesc(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in ("n", "c", "h", "w", "ho", "wo")]


@pytest.fixture(scope="module")
def lib():
    path = None
    with open("/proc/self/maps") as f:
        for line in f:
            name = line.split()[-1]
            if os.path.basename(name).startswith("libfastconv") and ".so" in name:
                path = name
    if path is None:
        pytest.skip("libfastconv is not loaded from a shared library")
    lib = ctypes.CDLL(path)
    lib.fc_last_error.restype = ctypes.c_char_p
    P = ctypes.c_void_p
    lib.fc_pool2d_output_size.argtypes = [
        ctypes.POINTER(PoolDesc),
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int64),
    ]
    lib.fc_max_pool2d_forward.argtypes = [ctypes.POINTER(PoolDesc), ctypes.c_int, P, P, P]
    lib.fc_avg_pool2d_forward.argtypes = [
        ctypes.POINTER(PoolDesc),
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int64,
        P,
        P,
    ]
    for fn in ("fc_max_pool2d_backward", "fc_max_unpool2d_forward", "fc_max_unpool2d_backward"):
        getattr(lib, fn).argtypes = [ctypes.POINTER(PlanesDesc), ctypes.c_int, P, P, P]
    return lib


def _p(a):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


def test_c_abi_switch_entries_write_nothing_on_a_bad_switch(lib):
    d = PlanesDesc(2, 3, 8, 10, 4, 5)
    dy = np.ones((2, 3, 4, 5), np.float32)
    idx = np.zeros((2, 3, 4, 5), np.int64)
    idx[1, 2, 3, 4] = 80  # one past the plane
    dx = np.full((2, 3, 8, 10), 7.0, np.float32)
    small = np.full((2, 3, 4, 5), 7.0, np.float32)
    for fn, a, out in (
        ("fc_max_pool2d_backward", dy, dx),
        ("fc_max_unpool2d_forward", dy, dx),
        ("fc_max_unpool2d_backward", dx.copy(), small),
    ):
        before = out.copy()
        assert getattr(lib, fn)(ctypes.byref(d), 0, _p(a), _p(idx), _p(out)) == 1  # FC_EINVAL
        assert b"switches[119] = 80" in lib.fc_last_error()
        np.testing.assert_array_equal(out, before)
    idx[1, 2, 3, 4] = 79
    assert lib.fc_max_pool2d_backward(ctypes.byref(d), 0, _p(dy), _p(idx), _p(dx)) == 0
    assert dx.sum() == dy.sum() and lib.fc_last_error() == b""


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("kh", 0, b"kh must be >= 1, got 0"),
        ("stride_w", -2, b"stride_w must be >= 1"),
        ("pad_h", 2, b"pad should be at most half of effective kernel size, but got pad_h=2"),
        ("ceil_mode", 2, b"ceil_mode must be 0 or 1"),
        ("h", 1, b"Output size is too small"),
        ("dil_w", 1 << 62, b"overflows int64"),
        ("n", 1 << 62, b"overflows int64"),
    ],
)
def test_c_abi_pool_desc_checks(lib, field, value, match):
    d = PoolDesc(2, 3, 8, 8, 3, 3, 2, 2, 0, 0, 1, 1, 0)
    ho, wo = ctypes.c_int64(), ctypes.c_int64()
    assert lib.fc_pool2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) == 0
    assert (ho.value, wo.value) == (3, 3)
    setattr(d, field, value)
    assert lib.fc_pool2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) in (1, 4)
    assert match in lib.fc_last_error()


def test_c_abi_pool_window_ends_fit_int64(lib):
    """The kernels' window ends reach in + pad + stride - 1 (ceil mode's last window overhangs
    the padding): a descriptor where that overflows is refused (the sanitizer driver found a
    dilated ceil-mode window whose end index overflowed)."""
    w = 1 << 59
    d = PoolDesc(1, 1, 1, w, 1, 2, 1, (1 << 63) - w, 0, 1, 1, w, 1)  # w + 2 + stride > max
    ho, wo = ctypes.c_int64(), ctypes.c_int64()
    assert lib.fc_pool2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) == 4
    assert b"overflows int64" in lib.fc_last_error()
    d.stride_w = w  # w + 2*pad + stride now fits
    assert lib.fc_pool2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) == 0
    assert (ho.value, wo.value) == (1, 2)


def test_c_abi_null_pointers_bad_dtype_and_avg_dilation(lib):
    d = PoolDesc(1, 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1, 0)
    x, y = np.zeros(16, np.float32), np.zeros(4, np.float32)
    assert lib.fc_max_pool2d_forward(ctypes.byref(d), 0, None, _p(y), None) == 1
    assert b"NULL" in lib.fc_last_error()
    assert lib.fc_max_pool2d_forward(ctypes.byref(d), 7, _p(x), _p(y), None) == 1
    assert b"dtype 7" in lib.fc_last_error()
    d.dil_h = 2
    assert lib.fc_avg_pool2d_forward(ctypes.byref(d), 0, 1, 0, _p(x), _p(y)) == 1
    assert b"dil_h and dil_w must be 1" in lib.fc_last_error()

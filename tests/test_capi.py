"""The C ABI called straight through ctypes, as a C program would: descriptors are validated and
every bad one gets a status code (never a crash); good calls match the reference."""
import ctypes
import os

import numpy as np
import pytest

import fastconv
from reference import conv2d_ref

FC_OK, FC_EINVAL, FC_ENOMEM, FC_EUNSUPPORTED, FC_EOVERFLOW = range(5)
FC_F32, FC_F64 = 0, 1
AUTO, IM2COL, DIRECT, GEMM1X1, DEPTHWISE, REFERENCE = range(6)


class Desc(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in (
        "n", "c", "h", "w", "k", "kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w",
        "dil_h", "dil_w", "groups")]


@pytest.fixture(scope="module")
def lib():
    path = os.path.join(os.path.dirname(fastconv._core.__file__), "lib", "libfastconv.so")
    lib = ctypes.CDLL(path)
    vp, dp = ctypes.c_void_p, ctypes.POINTER(Desc)
    lib.fc_conv2d_forward.argtypes = [dp, ctypes.c_int, ctypes.c_int, vp, vp, vp, vp]
    lib.fc_conv2d_backward_data.argtypes = [dp, ctypes.c_int, ctypes.c_int, vp, vp, vp]
    lib.fc_conv2d_backward_weight.argtypes = [dp, ctypes.c_int, ctypes.c_int, vp, vp, vp, vp]
    lib.fc_conv2d_output_size.argtypes = [dp, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]
    lib.fc_conv2d_supports.argtypes = [dp, ctypes.c_int]
    for f in ("fc_conv2d_forward", "fc_conv2d_backward_data", "fc_conv2d_backward_weight",
              "fc_conv2d_output_size", "fc_conv2d_supports"):
        getattr(lib, f).restype = ctypes.c_int
    lib.fc_status_string.restype = ctypes.c_char_p
    lib.fc_status_string.argtypes = [ctypes.c_int]
    lib.fc_last_error.restype = ctypes.c_char_p
    lib.fc_isa.restype = ctypes.c_char_p
    lib.fc_algo_name.restype = ctypes.c_char_p
    lib.fc_algo_name.argtypes = [ctypes.c_int]
    return lib


def good(**kw):
    base = dict(n=2, c=4, h=9, w=8, k=6, kh=3, kw=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1,
                dil_h=1, dil_w=1, groups=2)
    base.update(kw)
    return Desc(**base)


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p) if a is not None else None


def test_forward_and_backward_through_c(lib):
    d = good()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 3))
    b = rng.standard_normal(6)
    ho, wo = ctypes.c_int64(), ctypes.c_int64()
    assert lib.fc_conv2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) == FC_OK
    assert (ho.value, wo.value) == (9, 8)
    y = np.empty((2, 6, 9, 8))
    for algo in (AUTO, IM2COL, DIRECT, REFERENCE):
        assert lib.fc_conv2d_forward(ctypes.byref(d), FC_F64, algo, ptr(x), ptr(w), ptr(b), ptr(y)) == FC_OK
        np.testing.assert_allclose(y, conv2d_ref(x, w, b, (1, 1), (1, 1), (1, 1), 2), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
    assert lib.fc_conv2d_backward_data(ctypes.byref(d), FC_F64, AUTO, ptr(dy), ptr(w), ptr(dx)) == FC_OK
    assert lib.fc_conv2d_backward_weight(ctypes.byref(d), FC_F64, AUTO, ptr(dy), ptr(x), ptr(dw), ptr(db)) == FC_OK
    np.testing.assert_allclose(db, dy.sum((0, 2, 3)), rtol=1e-12)
    # only the bias gradient: dw may be NULL
    db2 = np.empty_like(b)
    assert lib.fc_conv2d_backward_weight(ctypes.byref(d), FC_F64, AUTO, ptr(dy), ptr(x), None, ptr(db2)) == FC_OK
    np.testing.assert_array_equal(db, db2)


BAD = [
    (dict(n=0), "n"), (dict(c=-1), "c"), (dict(h=0), "h"), (dict(w=-5), "w"), (dict(k=0), "k"),
    (dict(kh=0), "kh"), (dict(kw=-1), "kw"), (dict(stride_h=0), "stride_h"),
    (dict(stride_w=-2), "stride_w"), (dict(pad_h=-1), "pad_h"), (dict(pad_w=-1), "pad_w"),
    (dict(dil_h=0), "dil_h"), (dict(dil_w=0), "dil_w"), (dict(groups=0), "groups"),
    (dict(groups=3), "groups"), (dict(k=5), "groups"),
    (dict(kh=12), "kernel"), (dict(kw=3, dil_w=5), "kernel"),
]


@pytest.mark.parametrize("change,word", BAD)
def test_bad_descriptor_returns_einval(lib, change, word):
    d = good(**change)
    buf = np.zeros(4096)
    for call in (
        lambda: lib.fc_conv2d_forward(ctypes.byref(d), FC_F64, AUTO, ptr(buf), ptr(buf), None, ptr(buf)),
        lambda: lib.fc_conv2d_backward_data(ctypes.byref(d), FC_F64, AUTO, ptr(buf), ptr(buf), ptr(buf)),
        lambda: lib.fc_conv2d_backward_weight(ctypes.byref(d), FC_F64, AUTO, ptr(buf), ptr(buf), ptr(buf), None),
    ):
        assert call() == FC_EINVAL
        assert word in lib.fc_last_error().decode()


def test_overflowing_sizes_return_eoverflow(lib):
    huge = 1 << 40
    for d in (good(n=huge, c=huge, groups=1), good(h=huge, w=huge, k=huge, groups=1),
              good(kh=1, kw=1, pad_h=1 << 62, groups=1)):
        assert lib.fc_conv2d_forward(ctypes.byref(d), FC_F32, AUTO, None, None, None, None) in (FC_EOVERFLOW, FC_EINVAL)
        assert lib.fc_conv2d_output_size(ctypes.byref(d), None, None) == FC_EOVERFLOW


def test_null_pointers_bad_enums_and_unsupported(lib):
    d = good()
    x = np.zeros((2, 4, 9, 8), np.float32)
    assert lib.fc_conv2d_forward(None, FC_F32, AUTO, ptr(x), ptr(x), None, ptr(x)) == FC_EINVAL
    assert lib.fc_conv2d_forward(ctypes.byref(d), FC_F32, AUTO, None, ptr(x), None, ptr(x)) == FC_EINVAL
    assert lib.fc_conv2d_forward(ctypes.byref(d), 7, AUTO, ptr(x), ptr(x), None, ptr(x)) == FC_EINVAL
    assert lib.fc_conv2d_forward(ctypes.byref(d), FC_F32, 99, ptr(x), ptr(x), None, ptr(x)) == FC_EINVAL
    assert lib.fc_conv2d_backward_weight(ctypes.byref(d), FC_F32, AUTO, ptr(x), ptr(x), None, None) == FC_EINVAL
    # 3x3 kernel: gemm1x1 cannot run it; groups=2 of 4 channels: not depthwise
    assert lib.fc_conv2d_supports(ctypes.byref(d), GEMM1X1) == FC_EUNSUPPORTED
    assert lib.fc_conv2d_supports(ctypes.byref(d), DEPTHWISE) == FC_EUNSUPPORTED
    assert lib.fc_conv2d_forward(ctypes.byref(d), FC_F32, GEMM1X1, ptr(x), ptr(x), None, ptr(x)) == FC_EUNSUPPORTED
    assert b"gemm1x1" in lib.fc_last_error()


def test_strings_and_isa(lib):
    assert lib.fc_status_string(FC_OK) == b"ok"
    assert lib.fc_status_string(FC_EINVAL) == b"invalid argument"
    assert lib.fc_status_string(123) == b"unknown status"
    assert lib.fc_algo_name(IM2COL) == b"im2col"
    assert lib.fc_algo_name(42) is None
    assert lib.fc_isa().decode() == fastconv.isa()

"""Bad input: the right exception type, and a message that names the offending argument.

Each case runs through conv2d, and (where it makes sense) conv2d_backward as well: the
backward validates the same arguments before it looks at grad_out.
"""

import numpy as np
import pytest

import fastconv


def f32(*shape):
    return np.zeros(shape, np.float32)


X = f32(2, 4, 9, 9)
W = f32(6, 4, 3, 3)
DY = f32(2, 6, 7, 7)


def name(arg):
    return rf"\b{arg}\b"


# (id, exception, message regex, x, weight, keyword arguments)
CONV2D_CASES = [
    ("x-2d", ValueError, name("x"), f32(9, 9), W, {}),
    ("x-5d", ValueError, name("x"), f32(1, 2, 4, 9, 9), W, {}),
    ("x-1d", ValueError, name("x"), f32(9), W, {}),
    ("weight-3d", ValueError, name("weight"), X, f32(6, 4, 3), {}),
    ("weight-5d", ValueError, name("weight"), X, f32(6, 4, 3, 3, 1), {}),
    ("channel-mismatch", ValueError, name("weight"), X, f32(6, 3, 3, 3), {}),
    ("channel-mismatch-grouped", ValueError, name("weight"), X, f32(6, 4, 3, 3), dict(groups=2)),
    (
        "groups-not-dividing-c",
        ValueError,
        name("groups"),
        f32(2, 3, 9, 9),
        f32(6, 1, 3, 3),
        dict(groups=2),
    ),
    ("groups-not-dividing-k", ValueError, name("groups"), X, f32(5, 2, 3, 3), dict(groups=2)),
    ("groups-0", ValueError, name("groups"), X, W, dict(groups=0)),
    ("groups-negative", ValueError, name("groups"), X, W, dict(groups=-2)),
    ("stride-0", ValueError, name("stride"), X, W, dict(stride=0)),
    ("stride-negative", ValueError, name("stride"), X, W, dict(stride=-1)),
    ("stride-pair-0", ValueError, name("stride"), X, W, dict(stride=(1, 0))),
    ("dilation-0", ValueError, name("dilation"), X, W, dict(dilation=0)),
    ("dilation-pair-negative", ValueError, name("dilation"), X, W, dict(dilation=(-1, 1))),
    ("padding-negative", ValueError, name("padding"), X, W, dict(padding=-1)),
    ("padding-pair-negative", ValueError, name("padding"), X, W, dict(padding=(0, -2))),
    ("padding-unknown-string", ValueError, name("padding"), X, W, dict(padding="full")),
    ("padding-same-strided", ValueError, name("padding"), X, W, dict(padding="same", stride=2)),
    (
        "kernel-larger-than-input",
        ValueError,
        r"kernel|weight",
        f32(1, 4, 5, 5),
        f32(6, 4, 7, 7),
        {},
    ),
    ("kernel-larger-one-dim", ValueError, r"kernel|weight", f32(1, 4, 9, 2), W, {}),
    ("dilated-kernel-larger", ValueError, r"kernel|weight", f32(1, 4, 6, 6), W, dict(dilation=3)),
    (
        "kernel-larger-than-padded",
        ValueError,
        r"kernel|weight",
        f32(1, 4, 3, 3),
        f32(6, 4, 6, 6),
        dict(padding=1),
    ),
    ("algo-unknown", ValueError, name("algo"), X, W, dict(algo="fourier")),
    ("algo-not-string", (ValueError, TypeError), name("algo"), X, W, dict(algo=3)),
    ("algo-gemm1x1-on-3x3", ValueError, name("algo"), X, W, dict(algo="gemm1x1")),
    ("algo-depthwise-on-dense", ValueError, name("algo"), X, W, dict(algo="depthwise")),
    (
        "algo-depthwise-on-grouped",
        ValueError,
        name("algo"),
        X,
        f32(6, 2, 3, 3),
        dict(algo="depthwise", groups=2),
    ),
]

TYPE_CASES = [
    ("x-float16", TypeError, name("x"), X.astype(np.float16), W.astype(np.float16), {}),
    ("x-int32", TypeError, name("x"), X.astype(np.int32), W.astype(np.int32), {}),
    ("x-int64", TypeError, name("x"), X.astype(np.int64), W.astype(np.int64), {}),
    ("x-bool", TypeError, name("x"), X.astype(bool), W.astype(bool), {}),
    ("x-complex", TypeError, name("x"), X.astype(np.complex64), W.astype(np.complex64), {}),
    ("x-object", TypeError, name("x"), X.astype(object), W, {}),
    ("weight-float16", TypeError, name("weight"), X, W.astype(np.float16), {}),
    ("weight-int", TypeError, name("weight"), X, W.astype(np.int32), {}),
    ("dtype-mismatch-f32-f64", TypeError, r"\bx\b|\bweight\b", X, W.astype(np.float64), {}),
    ("dtype-mismatch-f64-f32", TypeError, r"\bx\b|\bweight\b", X.astype(np.float64), W, {}),
]

BIAS_CASES = [
    ("bias-short", ValueError, name("bias"), np.zeros(5, np.float32)),
    ("bias-long", ValueError, name("bias"), np.zeros(7, np.float32)),
    ("bias-2d", ValueError, name("bias"), np.zeros((6, 1), np.float32)),
    ("bias-scalar", ValueError, name("bias"), np.float32(0)),
    ("bias-int", TypeError, name("bias"), np.zeros(6, np.int64)),
    ("bias-float16", TypeError, name("bias"), np.zeros(6, np.float16)),
]


def params(case):
    return pytest.param(*case[1:], id=case[0])


@pytest.mark.parametrize("exc, match, x, w, kwargs", [params(c) for c in CONV2D_CASES + TYPE_CASES])
def test_conv2d_rejects(exc, match, x, w, kwargs):
    before = (x.copy(), w.copy())
    with pytest.raises(exc, match=match):
        fastconv.conv2d(x, w, **kwargs)
    assert np.array_equal(before[0], x) and np.array_equal(before[1], w)


@pytest.mark.parametrize("exc, match, x, w, kwargs", [params(c) for c in CONV2D_CASES + TYPE_CASES])
def test_conv2d_backward_rejects(exc, match, x, w, kwargs):
    # a grad_out that is at least plausible (the error under test must win)
    dy = np.zeros((2, 6, 7, 7), x.dtype if x.dtype in (np.float32, np.float64) else np.float32)
    with pytest.raises(exc, match=match):
        fastconv.conv2d_backward(dy, x, w, **kwargs)


@pytest.mark.parametrize("exc, match, bias", [params(c) for c in BIAS_CASES])
def test_conv2d_rejects_bias(exc, match, bias):
    with pytest.raises(exc, match=match):
        fastconv.conv2d(X, W, bias)


@pytest.mark.parametrize(
    "dy",
    [
        pytest.param(f32(2, 6, 7, 6), id="wrong-width"),
        pytest.param(f32(2, 5, 7, 7), id="wrong-channels"),
        pytest.param(f32(1, 6, 7, 7), id="wrong-batch"),
        pytest.param(f32(6, 7, 7), id="3d-for-batched"),
        pytest.param(f32(1, 2, 6, 7, 7), id="5d"),
        pytest.param(f32(2, 6, 9, 9), id="input-shape"),
    ],
)
def test_conv2d_backward_rejects_grad_out_shape(dy):
    with pytest.raises(ValueError, match=name("grad_out")):
        fastconv.conv2d_backward(dy, X, W)


def test_conv2d_backward_rejects_grad_out_shape_unbatched():
    with pytest.raises(ValueError, match=name("grad_out")):
        fastconv.conv2d_backward(f32(2, 6, 7, 7), X[0], W)


def test_conv2d_backward_rejects_grad_out_dtype():
    with pytest.raises(TypeError, match=name("grad_out")):
        fastconv.conv2d_backward(DY.astype(np.float16), X, W)
    with pytest.raises(TypeError, match=name("grad_out")):
        fastconv.conv2d_backward(DY.astype(np.int32), X, W)


@pytest.mark.parametrize(
    "needs",
    [
        pytest.param((True, True), id="too-short"),
        pytest.param((True, True, True, True), id="too-long"),
        pytest.param("xwb", id="string"),
        pytest.param(None, id="none"),
    ],
)
def test_conv2d_backward_rejects_needs(needs):
    with pytest.raises((ValueError, TypeError), match=name("needs")):
        fastconv.conv2d_backward(DY, X, W, needs=needs)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(stride=1.5), id="stride-float"),
        pytest.param(dict(stride=(1, 2, 3)), id="stride-triple"),
        pytest.param(dict(stride="2"), id="stride-string"),
        pytest.param(dict(padding=(1,)), id="padding-single"),
        pytest.param(dict(padding=0.5), id="padding-float"),
        pytest.param(dict(dilation=(1, 1, 1)), id="dilation-triple"),
        pytest.param(dict(groups=1.5), id="groups-float"),
    ],
)
def test_conv2d_rejects_malformed_parameters(kwargs):
    (key,) = kwargs
    with pytest.raises((ValueError, TypeError), match=name(key)):
        fastconv.conv2d(X, W, **kwargs)


# --- impossibly large outputs: refused up front, nothing allocated -------------------------


def huge_views():
    """Zero-stride views whose logical size is far beyond any memory (they use none)."""
    x_big = np.broadcast_to(np.float32(0), (2**20, 2**10, 2**12, 2**12))  # 2**56 bytes
    w_big_c = np.broadcast_to(np.float32(0), (2**12, 2**10, 1, 1))  # 16 MiB if copied
    x_small = f32(1, 1, 2**10, 2**10)
    w_many = np.broadcast_to(np.float32(0), (2**40, 1, 1, 1))  # 4 TiB if copied
    return [
        pytest.param(x_big, w_big_c, id="huge-batch-and-plane"),
        pytest.param(x_small, w_many, id="huge-out-channels"),
    ]


@pytest.mark.parametrize("x, w", huge_views())
def test_impossibly_large_output_is_refused(x, w):
    with pytest.raises(ValueError, match=r"output|too large"):
        fastconv.conv2d(x, w)


@pytest.mark.parametrize("x, w", huge_views())
def test_impossibly_large_backward_is_refused(x, w):
    dy = np.broadcast_to(np.float32(0), (x.shape[0], w.shape[0]) + x.shape[2:])
    with pytest.raises(ValueError, match=r"output|too large|grad_out|\bx\b|weight"):
        fastconv.conv2d_backward(dy, x, w)


def test_impossibly_large_conv1d_is_refused():
    x = np.broadcast_to(np.float32(0), (2**24, 2**10, 2**24))
    w = np.broadcast_to(np.float32(0), (2**10, 2**10, 1))
    with pytest.raises(ValueError, match=r"output|too large"):
        fastconv.conv1d(x, w)


# --- conv1d --------------------------------------------------------------------------------

X1 = f32(2, 4, 11)
W1 = f32(6, 4, 3)

CONV1D_CASES = [
    ("x-4d", ValueError, name("x"), f32(2, 4, 1, 11), W1, {}),
    ("x-1d", ValueError, name("x"), f32(11), W1, {}),
    ("weight-4d", ValueError, name("weight"), X1, f32(6, 4, 1, 3), {}),
    ("weight-2d", ValueError, name("weight"), X1, f32(6, 4), {}),
    ("channel-mismatch", ValueError, name("weight"), X1, f32(6, 3, 3), {}),
    ("groups-not-dividing", ValueError, name("groups"), X1, f32(6, 1, 3), dict(groups=3)),
    ("stride-0", ValueError, name("stride"), X1, W1, dict(stride=0)),
    ("dilation-0", ValueError, name("dilation"), X1, W1, dict(dilation=0)),
    ("padding-negative", ValueError, name("padding"), X1, W1, dict(padding=-1)),
    ("padding-same-strided", ValueError, name("padding"), X1, W1, dict(padding="same", stride=2)),
    ("kernel-larger", ValueError, r"kernel|weight", f32(1, 4, 2), W1, {}),
    ("algo-gemm1x1", ValueError, name("algo"), X1, W1, dict(algo="gemm1x1")),
    ("algo-unknown", ValueError, name("algo"), X1, W1, dict(algo="winograd")),
    ("x-float16", TypeError, name("x"), X1.astype(np.float16), W1.astype(np.float16), {}),
    ("x-int", TypeError, name("x"), X1.astype(np.int16), W1.astype(np.int16), {}),
    ("dtype-mismatch", TypeError, r"\bx\b|\bweight\b", X1, W1.astype(np.float64), {}),
]


@pytest.mark.parametrize("exc, match, x, w, kwargs", [params(c) for c in CONV1D_CASES])
def test_conv1d_rejects(exc, match, x, w, kwargs):
    with pytest.raises(exc, match=match):
        fastconv.conv1d(x, w, **kwargs)
    dy = f32(2, 6, 9)
    with pytest.raises(exc, match=match):
        fastconv.conv1d_backward(dy, x, w, **kwargs)


def test_conv1d_backward_rejects_grad_out_shape():
    with pytest.raises(ValueError, match=name("grad_out")):
        fastconv.conv1d_backward(f32(2, 6, 8), X1, W1)
    with pytest.raises(ValueError, match=name("needs")):
        fastconv.conv1d_backward(f32(2, 6, 9), X1, W1, needs=(True,))


def test_conv1d_rejects_bias():
    with pytest.raises(ValueError, match=name("bias")):
        fastconv.conv1d(X1, W1, np.zeros(4, np.float32))


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(x_shape=(2, 4, 9, 9), w_shape=(6, 3, 3, 3)), id="channel-mismatch"),
        pytest.param(dict(x_shape=(2, 4, 9, 9), w_shape=(6, 4, 3, 3), stride=0), id="stride-0"),
        pytest.param(dict(x_shape=(2, 4, 9, 9), w_shape=(6, 4, 3, 3), groups=3), id="groups"),
    ],
)
def test_algorithms_on_bad_shapes(kwargs):
    """Nothing can run an invalid convolution: an empty list or a ValueError, never a crash."""
    try:
        offered = fastconv.algorithms(**kwargs)
    except ValueError:
        return
    assert offered == []


def test_failed_calls_leave_the_library_usable():
    for bad in (dict(stride=0), dict(algo="gemm1x1"), dict(groups=3)):
        with pytest.raises(ValueError):
            fastconv.conv2d(X, W, **bad)
    x = np.arange(2 * 4 * 9 * 9, dtype=np.float32).reshape(X.shape) / 100
    y = fastconv.conv2d(x, np.ones_like(W))
    assert y.shape == (2, 6, 7, 7) and np.isfinite(y).all()


def test_validated_descriptors_are_cached_but_never_skip_a_check(monkeypatch):
    """functional._conv keeps each valid convolution's _Conv by its arguments (exact types
    only): a bool groups or a float stride equal to a cached int one still fails, and the
    cache stays within its bound."""
    from fastconv import functional as F

    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((4, 2, 3, 3), np.float32)
    F._CONV_CACHE.clear()
    y = fastconv.conv2d(x, w, stride=1, padding=1, groups=1)
    assert len(F._CONV_CACHE) == 1
    cv = F._conv(x, w, 1, 1, 1, 1, 2)
    assert F._conv(x, w, 1, 1, 1, 1, 2) is cv  # (the one made by the call above)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, stride=1, padding=1, groups=1), y)
    with pytest.raises(TypeError, match="groups"):
        fastconv.conv2d(x, w, padding=1, groups=True)
    with pytest.raises((TypeError, ValueError), match="stride"):
        fastconv.conv2d(x, w, stride=1.0, padding=1)
    with pytest.raises(ValueError, match="algo"):
        fastconv.conv2d(x, w, padding=1, algo="no_such_algo")
    assert len(F._CONV_CACHE) == 1  # (nothing invalid was stored)
    monkeypatch.setattr(F, "_CONV_CACHE_MAX", 3)
    for p in range(5):
        fastconv.conv2d(x, w, padding=p)
    assert 1 <= len(F._CONV_CACHE) <= 3

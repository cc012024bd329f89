"""Property-based tests (hypothesis): random convolution and pooling configurations against the
independent references (tests/reference.py, tests/pool_reference.py, PyTorch for validity).

Every configuration is tiny, so each op gets >= 1,000 examples in CI at a few seconds each:
random shapes biased to the edges (1x1 images, kernels as large as the padded input, strides
larger than the input, groups and depthwise, dilation, channel counts off the SIMD widths),
float32 and float64, every algorithm fastconv.algorithms() lists (and a ValueError from every
one it does not), forward and both backwards. Configurations drawn from a wider, partly invalid
space must either raise ValueError/TypeError or agree with the reference.

Reproducible: derandomized (the seed is derived from each test), no example database.
FASTCONV_PROPERTY_EXAMPLES=N changes the example count (e.g. 20000 for a long local run).
"""

import os
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
import pool_reference as pr
from conftest import TOLERANCE, assert_close, check_backward, expected_backward, expected_forward
from reference import conv1d_backward_ref, conv1d_ref, conv2d_backward_ref, conv2d_ref

EXAMPLES = int(os.environ.get("FASTCONV_PROPERTY_EXAMPLES", "1000"))
settings.register_profile(
    "fastconv-properties",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
PROPERTIES = settings.get_profile("fastconv-properties")

pytestmark = pytest.mark.slow  # 1,000 examples per property: seconds each

DTYPES = st.sampled_from([np.float32, np.float64])
CHANNELS = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17]
STRIDES = st.sampled_from([1, 1, 1, 2, 3, 5, 11])
BAD = (ValueError, TypeError)


def spell(draw, pair, allow_int=True):
    """A (h, w) parameter as the user may write it: an int when both agree, else a tuple/list."""
    if allow_int and pair[0] == pair[1] and draw(st.booleans()):
        return pair[0]
    return draw(st.sampled_from([tuple, list]))(pair)


# --------------------------------------------------------------------------------------------
# convolution: valid configurations


class Conv(NamedTuple):
    x_shape: tuple
    w_shape: tuple
    params: dict  # stride, padding, dilation, groups as passed to fastconv
    dtype: type
    bias: bool
    unbatched: bool
    seed: int


@st.composite
def conv_configs(draw, max_elems=1600):
    kind = draw(st.sampled_from(["plain", "plain", "grouped", "depthwise", "1x1"]))
    if kind == "depthwise":
        groups = c = draw(st.integers(1, 6))
        k = c * draw(st.integers(1, 3))
    else:
        groups = draw(st.integers(2, 3)) if kind == "grouped" else 1
        c = groups * draw(st.sampled_from(CHANNELS))
        k = groups * draw(st.sampled_from(CHANNELS))
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    stride = (draw(STRIDES), draw(STRIDES))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    kh, kw = (1, 1) if kind == "1x1" else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    # A kernel that does not fit shrinks, often to exactly the padded input.
    kh = min(kh, (h + 2 * pad[0] - 1) // dil[0] + 1)
    kw = min(kw, (w + 2 * pad[1] - 1) // dil[1] + 1)
    while n * c * h * w > max_elems:
        n, h, w = max(1, n - 1), max(1, h // 2), max(1, w // 2)
        kh, kw = (
            min(kh, (h + 2 * pad[0] - 1) // dil[0] + 1),
            min(kw, (w + 2 * pad[1] - 1) // dil[1] + 1),
        )
    padding = spell(draw, pad)
    if stride == (1, 1) and draw(st.integers(0, 5)) == 0:
        padding = "same"
    elif pad == (0, 0) and draw(st.integers(0, 5)) == 0:
        padding = "valid"
    params = dict(
        stride=spell(draw, stride), padding=padding, dilation=spell(draw, dil), groups=groups
    )
    return Conv(
        (n, c, h, w),
        (k, c // groups, kh, kw),
        params,
        draw(DTYPES),
        draw(st.booleans()),
        n == 1 and draw(st.integers(0, 4)) == 0,
        draw(st.integers(0, 2**32 - 1)),
    )


def conv_inputs(cfg):
    rng = np.random.default_rng(cfg.seed)
    x = rng.standard_normal(cfg.x_shape).astype(cfg.dtype)
    w = rng.standard_normal(cfg.w_shape).astype(cfg.dtype)
    b = rng.standard_normal(cfg.w_shape[0]).astype(cfg.dtype) if cfg.bias else None
    return (x[0] if cfg.unbatched else x), w, b, rng


def algos_for(cfg):
    algos = fastconv.algorithms(cfg.x_shape, cfg.w_shape, **cfg.params)
    assert algos and len(set(algos)) == len(algos) and set(algos) <= set(fastconv.ALGORITHMS), algos
    assert "reference" in algos and "direct" in algos, f"direct and reference run anything: {algos}"
    return algos


@PROPERTIES
@given(cfg=conv_configs())
def test_conv2d_forward_property(cfg):
    x, w, b, _ = conv_inputs(cfg)
    expected, scale = expected_forward(x, w, b, **cfg.params)
    algos = algos_for(cfg)
    for algo in ["auto", *algos]:
        y = fastconv.conv2d(x, w, b, algo=algo, **cfg.params)
        assert_close(y, expected, cfg.dtype, scale, f"conv2d(algo={algo!r}) {cfg}")
    for algo in sorted(set(fastconv.ALGORITHMS) - set(algos)):
        with pytest.raises(ValueError, match="algo"):
            fastconv.conv2d(x, w, b, algo=algo, **cfg.params)


@PROPERTIES
@given(cfg=conv_configs(), needs=st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_conv2d_backward_property(cfg, needs):
    x, w, _, rng = conv_inputs(cfg)
    y_shape = fastconv.conv2d(x, w, **cfg.params).shape
    dy = rng.standard_normal(y_shape).astype(cfg.dtype)
    expected, scales = expected_backward(dy, x, w, **cfg.params)
    algos = algos_for(cfg)
    for algo in ["auto", *algos]:
        grads = fastconv.conv2d_backward(dy, x, w, needs=needs, algo=algo, **cfg.params)
        check_backward(grads, expected, scales, cfg.dtype, needs)
    for algo in sorted(set(fastconv.ALGORITHMS) - set(algos)):
        with pytest.raises(ValueError, match="algo"):
            fastconv.conv2d_backward(dy, x, w, algo=algo, **cfg.params)


@st.composite
def conv1d_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c, k = groups * draw(st.sampled_from(CHANNELS)), groups * draw(st.sampled_from(CHANNELS))
    n, length = draw(st.integers(1, 3)), draw(st.integers(1, 17))
    s, d, p = draw(STRIDES), draw(st.integers(1, 3)), draw(st.integers(0, 3))
    kl = min(draw(st.integers(1, 6)), (length + 2 * p - 1) // d + 1)
    return (
        (n, c, length),
        (k, c // groups, kl),
        dict(stride=s, padding=p, dilation=d, groups=groups),
        draw(DTYPES),
        draw(st.integers(0, 2**32 - 1)),
    )


@PROPERTIES
@given(cfg=conv1d_configs())
def test_conv1d_forward_and_backward_property(cfg):
    x_shape, w_shape, params, dtype, seed = cfg
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    expected = conv1d_ref(x, w, b, **params)
    scale = conv1d_ref(np.abs(x), np.abs(w), np.abs(b), **params)
    dy = rng.standard_normal(expected.shape).astype(dtype)
    grads = conv1d_backward_ref(dy, x, w, **params)
    gscales = conv1d_backward_ref(np.abs(dy), np.abs(x), np.abs(w), **params)
    x4, w4 = x_shape[:2] + (1, x_shape[2]), w_shape[:2] + (1, w_shape[2])
    params2 = dict(
        params,
        stride=(1, params["stride"]),
        padding=(0, params["padding"]),
        dilation=(1, params["dilation"]),
    )
    for algo in ["auto", *fastconv.algorithms(x4, w4, **params2)]:
        assert_close(
            fastconv.conv1d(x, w, b, algo=algo, **params),
            expected,
            dtype,
            scale,
            f"conv1d(algo={algo!r})",
        )
        check_backward(
            fastconv.conv1d_backward(dy, x, w, algo=algo, **params), grads, gscales, dtype
        )


# --------------------------------------------------------------------------------------------
# convolution: a wider space, partly invalid


def conv_valid(x_shape, w_shape, stride, padding, dilation, groups):
    """fastconv's (PyTorch's) rules, written out independently: (valid, output shape)."""
    n, c, h, w = x_shape
    k, wc, kh, kw = w_shape
    if (
        n < 0
        or min(c, h, w, k, wc, kh, kw) < 1
        or groups < 1
        or min(stride) < 1
        or min(dilation) < 1
        or min(padding) < 0
    ):
        return False, None
    if c % groups or k % groups or wc * groups != c:
        return False, None
    out = []
    for size, kk, s, p, d in zip((h, w), (kh, kw), stride, padding, dilation):
        extent = d * (kk - 1) + 1
        if extent > size + 2 * p:
            return False, None
        out.append((size + 2 * p - extent) // s + 1)
    return True, (n, k, *out)


@PROPERTIES
@given(
    n=st.integers(0, 2),
    c=st.integers(0, 4),
    h=st.integers(0, 5),
    w=st.integers(0, 5),
    k=st.integers(0, 4),
    wc=st.integers(0, 4),
    kh=st.integers(0, 4),
    kw=st.integers(0, 4),
    stride=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
    padding=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
    dilation=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
    groups=st.integers(-1, 4),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
def test_conv2d_any_configuration_raises_or_agrees(
    n, c, h, w, k, wc, kh, kw, stride, padding, dilation, groups, dtype, seed
):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((k, wc, kh, kw)).astype(dtype)
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ok, out_shape = conv_valid(x.shape, wt.shape, stride, padding, dilation, groups)
    if not ok:
        with pytest.raises(BAD):
            fastconv.conv2d(x, wt, **params)
        with pytest.raises(BAD):
            fastconv.conv2d_backward(np.zeros((1, 1, 1, 1), dtype), x, wt, **params)
        with pytest.raises(BAD):
            fastconv.algorithms(x.shape, wt.shape, **params)
        return
    y = fastconv.conv2d(x, wt, **params)
    assert y.shape == out_shape and y.dtype == dtype
    dy = rng.standard_normal(out_shape).astype(dtype)
    gx, gw, gb = fastconv.conv2d_backward(dy, x, wt, **params)
    if n == 0:  # an empty batch: empty output, zero gradients (PyTorch)
        assert gx.shape == x.shape and not gw.any() and not gb.any() and gw.shape == wt.shape
        return
    args = (stride, padding, dilation, groups)
    scale = conv2d_ref(np.abs(x), np.abs(wt), None, *args)
    assert_close(y, conv2d_ref(x, wt, None, *args), dtype, scale, "conv2d")
    expected = conv2d_backward_ref(dy, x, wt, *args)
    scales = conv2d_backward_ref(np.abs(dy), np.abs(x), np.abs(wt), *args)
    check_backward((gx, gw, gb), expected, scales, dtype)
    # a grad_out of any other shape is refused
    with pytest.raises(ValueError, match="grad_out"):
        fastconv.conv2d_backward(
            dy[..., :-1] if dy.shape[-1] > 1 else np.concatenate([dy, dy], -1), x, wt, **params
        )


HOSTILE_PARAMS = [
    0,
    -1,
    1.0,
    2.5,
    True,
    None,
    "1",
    (1,),
    (1, 2, 3),
    (1.0, 1),
    [],
    2**63,
    np.float32(1),
    (1, -1),
    ("1", 1),
]


@PROPERTIES
@given(
    name=st.sampled_from(["stride", "padding", "dilation", "groups"]),
    value=st.sampled_from(HOSTILE_PARAMS + [np.int64(1), (np.int32(1), 1), 1, (1, True)]),
)
def test_conv2d_parameter_types(name, value):
    """A bare bool or float is refused; inside a pair, PyTorch takes bools as ints, and so do we."""
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((2, 2, 3, 3), np.float32)
    low = 0 if name == "padding" else 1
    fine = (
        isinstance(value, (int, np.integer))
        and not isinstance(value, bool)
        and low <= value < 2**62
    ) or (
        name != "groups"
        and isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and v >= low for v in value)
    )
    if value == 2**63 and name == "padding":
        fine = False  # valid type, but the output would be astronomically large
    if fine:
        y = fastconv.conv2d(x, w, **{name: value})
        assert y.ndim == 4
    else:
        with pytest.raises(BAD):
            fastconv.conv2d(x, w, **{name: value})


# --------------------------------------------------------------------------------------------
# pooling

needs_pool = pytest.mark.skipif(
    not hasattr(fastconv, "max_pool2d"), reason="fastconv.max_pool2d is not there yet"
)


@st.composite
def pool_configs(draw, dilation=True):
    n, c = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 3, 5, 17]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    p = tuple(draw(st.integers(0, min(kk // 2, (dd * (kk - 1) + 1) // 2))) for kk, dd in zip(k, d))
    s = draw(st.one_of(st.none(), st.tuples(STRIDES, STRIDES)))
    ceil = draw(st.booleans())
    ss = s or k
    # Shrink the kernel until one window fits (PyTorch needs an output of at least 1x1).
    size = [h, w]
    for i in range(2):
        while pr.pool_out(size[i], k[i], ss[i], p[i], d[i], ceil) < 1:
            size[i] += 1
    h, w = size
    while n * c * h * w > 2500:
        n, c = max(1, n - 1), max(1, c // 2)
    return dict(
        shape=(n, c, h, w),
        kernel_size=spell(draw, k),
        stride=None if s is None else spell(draw, s),
        padding=spell(draw, p),
        dilation=spell(draw, d),
        ceil_mode=ceil,
        dtype=draw(DTYPES),
        seed=draw(st.integers(0, 2**32 - 1)),
        values=draw(st.sampled_from(["normal", "normal", "ties", "nan"])),
    )


def pool_input(cfg):
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal(cfg["shape"])
    if cfg["values"] == "ties":  # few distinct values: the first maximum must win
        x = np.round(x)
    elif cfg["values"] == "nan":
        x.flat[rng.integers(0, x.size, 2)] = np.nan
    return x.astype(cfg["dtype"]), rng


def pool_tol(dtype, scale):
    return TOLERANCE[np.dtype(dtype)] * (scale + np.finfo(np.float64).tiny)


@needs_pool
@PROPERTIES
@given(cfg=pool_configs())
def test_max_pool2d_property(cfg):
    x, rng = pool_input(cfg)
    kw = {k: cfg[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
    want_y, want_idx = pr.max_pool2d_ref(x, **kw)
    y, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    assert y.dtype == x.dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, want_y, err_msg=f"max_pool2d {cfg}")
    nonempty = np.isfinite(want_y) | np.isnan(want_y)  # -inf: a window with no element
    np.testing.assert_array_equal(idx[nonempty], want_idx[nonempty], err_msg=f"switches {cfg}")
    np.testing.assert_array_equal(fastconv.max_pool2d(x, **kw), y)
    if not nonempty.all():
        return  # switches outside the planes: covered by the hostile-switch tests
    g = rng.standard_normal(y.shape).astype(x.dtype)
    gx = fastconv.max_pool2d_backward(g, idx, x.shape)
    want_gx = pr.max_pool2d_backward_ref(g.astype(np.float64), idx, x.shape)
    scale = pr.max_pool2d_backward_ref(np.abs(g).astype(np.float64), idx, x.shape)
    assert gx.dtype == x.dtype and gx.shape == x.shape
    assert np.all(np.abs(gx - want_gx) <= pool_tol(x.dtype, scale)), f"max_pool2d_backward {cfg}"
    # Unpooling onto the input's own planes (when PyTorch's output_size rule allows it).
    k, p = pr.pair(cfg["kernel_size"]), pr.pair(cfg["padding"])
    s = k if cfg["stride"] is None else pr.pair(cfg["stride"])
    default = [(y.shape[2 + i] - 1) * s[i] + k[i] - 2 * p[i] for i in range(2)]
    if all(default[i] - s[i] < x.shape[2 + i] < default[i] + s[i] for i in range(2)):
        up = fastconv.max_unpool2d(
            y, idx, cfg["kernel_size"], cfg["stride"], cfg["padding"], output_size=x.shape[2:]
        )
        np.testing.assert_array_equal(up, pr.max_unpool2d_ref(y, idx, x.shape[2:]))
        gu = rng.standard_normal(up.shape).astype(x.dtype)
        want = np.take_along_axis(gu.reshape(*gu.shape[:2], -1), idx.reshape(*idx.shape[:2], -1), 2)
        np.testing.assert_array_equal(
            fastconv.max_unpool2d_backward(gu, idx), want.reshape(idx.shape)
        )


@needs_pool
@PROPERTIES
@given(
    cfg=pool_configs(dilation=False),
    count_include_pad=st.booleans(),
    divisor_override=st.one_of(st.none(), st.integers(-5, 9).filter(bool)),
)
def test_avg_pool2d_property(cfg, count_include_pad, divisor_override):
    x, rng = pool_input(dict(cfg, values="normal"))
    kw = {k: cfg[k] for k in ("kernel_size", "stride", "padding", "ceil_mode")}
    kw.update(count_include_pad=count_include_pad, divisor_override=divisor_override)
    want = pr.avg_pool2d_ref(x, **kw)
    scale = np.abs(pr.avg_pool2d_ref(np.abs(x), **kw))
    y = fastconv.avg_pool2d(x, **kw)
    assert y.dtype == x.dtype and y.shape == want.shape
    assert np.all(np.abs(y - want) <= pool_tol(x.dtype, scale)), f"avg_pool2d {cfg} {kw}"
    g = rng.standard_normal(y.shape).astype(x.dtype)
    gx = fastconv.avg_pool2d_backward(g, x.shape, **kw)
    want_gx = pr.avg_pool2d_backward_ref(g, x.shape, **kw)
    scale = np.abs(pr.avg_pool2d_backward_ref(np.abs(g), x.shape, **kw))
    assert gx.dtype == x.dtype and gx.shape == x.shape
    assert np.all(np.abs(gx - want_gx) <= pool_tol(x.dtype, scale)), (
        f"avg_pool2d_backward {cfg} {kw}"
    )


@needs_pool
@PROPERTIES
@given(
    n=st.integers(1, 3),
    c=st.sampled_from([1, 2, 3, 17]),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    out=st.tuples(
        st.one_of(st.none(), st.integers(1, 14)), st.one_of(st.none(), st.integers(1, 14))
    ),
    as_int=st.booleans(),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
def test_adaptive_avg_pool2d_property(n, c, h, w, out, as_int, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    size = out[0] if as_int and out[0] is not None else out
    ho, wo = (size, size) if isinstance(size, int) else (out[0] or h, out[1] or w)
    want = pr.adaptive_avg_pool2d_ref(x, (ho, wo))
    y = fastconv.adaptive_avg_pool2d(x, size)
    scale = pr.adaptive_avg_pool2d_ref(np.abs(x), (ho, wo))
    assert y.dtype == x.dtype and y.shape == (n, c, ho, wo)
    assert np.all(np.abs(y - want) <= pool_tol(dtype, scale))
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = fastconv.adaptive_avg_pool2d_backward(g, x.shape)
    want_gx = pr.adaptive_avg_pool2d_backward_ref(g, x.shape)
    scale = pr.adaptive_avg_pool2d_backward_ref(np.abs(g), x.shape)
    assert gx.dtype == x.dtype and np.all(np.abs(gx - want_gx) <= pool_tol(dtype, scale))


# pooling over a wider, partly invalid space: PyTorch decides what is valid


@needs_pool
@PROPERTIES
@given(
    shape=st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 6), st.integers(0, 6)),
    kernel=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    stride=st.one_of(st.none(), st.tuples(st.integers(-1, 4), st.integers(-1, 4))),
    padding=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
    dilation=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
    ceil_mode=st.booleans(),
    op=st.sampled_from(["max", "avg"]),
    divisor=st.one_of(st.none(), st.integers(-2, 3)),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
def test_pool_any_configuration_raises_or_agrees(
    shape, kernel, stride, padding, dilation, ceil_mode, op, divisor, dtype, seed
):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    xt = torch.from_numpy(x)
    st_ = stride if stride is not None else None

    def fc():
        if op == "max":
            return fastconv.max_pool2d(
                x, kernel, st_, padding, dilation, ceil_mode, return_indices=True
            )
        return fastconv.avg_pool2d(x, kernel, st_, padding, ceil_mode, True, divisor)

    def th():
        if op == "max":
            return F.max_pool2d(xt, kernel, st_, padding, dilation, ceil_mode, return_indices=True)
        return F.avg_pool2d(xt, kernel, st_, padding, ceil_mode, True, divisor)

    try:
        want = th()
    except (RuntimeError, ValueError, TypeError):
        with pytest.raises(BAD):
            fc()
        return
    got = fc()
    if op == "max":
        (y, idx), (ty, tidx) = got, want
        np.testing.assert_array_equal(y, ty.numpy())
        finite = np.isfinite(y)
        np.testing.assert_array_equal(idx[finite], tidx.numpy()[finite])
    else:
        ty = want.numpy()
        assert got.shape == ty.shape and got.dtype == ty.dtype
        np.testing.assert_allclose(
            got,
            ty,
            rtol=1e-5 if dtype == np.float32 else 1e-12,
            atol=1e-6 if dtype == np.float32 else 1e-14,
        )

"""conv1d and conv1d_backward against the reference (conv1d = conv2d with H = 1).

Every algorithm x {kernel length, stride, padding incl. "same"/"valid", dilation, groups,
batch, odd lengths} x {float32, float64}, from a pairwise-covering case list.
"""

import functools
import itertools
import zlib
from typing import NamedTuple

import numpy as np
import pytest

import fastconv
from conftest import (
    DTYPE_IDS,
    DTYPES,
    assert_close,
    assert_unchanged,
    check_backward,
    pairwise,
    snapshot,
)
from reference import conv1d_backward_ref, conv1d_ref, same_padding


class Case1d(NamedTuple):
    n: int
    c: int
    length: int
    k: int
    kl: int
    stride: int = 1
    padding: object = 0  # int, "same" or "valid"
    dilation: int = 1
    groups: int = 1
    bias: bool = True

    @property
    def x_shape(self):
        return (self.n, self.c, self.length)

    @property
    def w_shape(self):
        return (self.k, self.c // self.groups, self.kl)

    @property
    def params(self):
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )

    @property
    def params2d(self):
        """The same convolution as conv2d parameters (H = 1)."""
        pad = self.padding if isinstance(self.padding, str) else (0, self.padding)
        return dict(
            stride=(1, self.stride), padding=pad, dilation=(1, self.dilation), groups=self.groups
        )

    @property
    def ref_padding(self):
        if self.padding == "valid":
            return 0
        if self.padding == "same":
            return same_padding((self.kl,), (self.dilation,))[0]
        return self.padding

    @property
    def id(self):
        return (
            f"{self.n}x{self.c}x{self.length}-w{self.k}x{self.c // self.groups}x{self.kl}"
            f"-s{self.stride}-p{self.padding}-d{self.dilation}-g{self.groups}"
            + ("" if self.bias else "-nobias")
        )


# The algorithms the API promises for 1-D convolutions (at their shapes); the tests run every
# registered algorithm, skipping those that do not apply.
SPEC_ALGORITHMS = ("im2col", "direct", "gemm1x1", "depthwise", "reference")


def spec_algorithms(case):
    algos = {"im2col", "direct", "reference"}
    if case.kl == 1:
        algos.add("gemm1x1")
    if case.groups == case.c:
        algos.add("depthwise")
    return algos


CHANNELS = {
    "g1": {"small": (3, 5, 1), "wide": (16, 20, 1)},
    "g2": {"small": (4, 6, 2), "wide": (10, 18, 2)},
    "dw": {"small": (3, 3, 3), "wide": (17, 17, 17)},
    "dw2": {"small": (3, 6, 3), "wide": (9, 18, 9)},
}


def build(kl, stride, padding, dilation, groups, batch, length, chan, bias):
    c, k, g = CHANNELS[groups][chan]
    if padding == "same":
        stride = 1  # "same" is defined for stride 1 only
    pad = padding if isinstance(padding, int) else 0
    eff = dilation * (kl - 1) + 1
    if length + 2 * pad < eff:
        length = eff - 2 * pad + 2 * stride
        length += 1 - length % 2
    return Case1d(batch, c, length, k, kl, stride, padding, dilation, g, bias)


AXES = dict(
    kl=[1, 3, 5, 7, 11],
    stride=[1, 2, 3],
    padding=[0, 1, 2, "same", "valid"],
    dilation=[1, 2, 3],
    groups=list(CHANNELS),
    batch=[1, 3],
    length=[13, 7, 25],
    chan=["small", "wide"],
    bias=[True, False],
)
CASES = list(
    dict.fromkeys(
        [build(**r) for r in pairwise(AXES, seed=11)]
        + [
            build(kl=1, **r)
            for r in pairwise({a: v for a, v in AXES.items() if a != "kl"}, seed=12)
        ]
        + [build(**r) for r in pairwise(dict(AXES, groups=["dw", "dw2"]), seed=13)]
    )
)


def combos():
    out = []
    for case in CASES:
        for algo in fastconv.ALGORITHMS:
            if algo in spec_algorithms(case) or algo not in SPEC_ALGORITHMS:
                for dtype, dname in zip(DTYPES, DTYPE_IDS):
                    out.append(pytest.param(case, algo, dtype, id=f"{case.id}-{algo}-{dname}"))
    return out


def expected(x, w, b, dy, case):
    """Reference results and scales for conv1d; x, dy may be unbatched (C, L)."""
    unbatched = x.ndim == 2
    if unbatched:
        x, dy = x[None], None if dy is None else dy[None]
    args = (case.stride, case.ref_padding, case.dilation, case.groups)
    y = conv1d_ref(x, w, b, *args)
    sy = conv1d_ref(np.abs(x), np.abs(w), None if b is None else np.abs(b), *args)
    if dy is None:
        return (y[0], sy[0]) if unbatched else (y, sy)
    grads = list(conv1d_backward_ref(dy, x, w, *args))
    scales = list(conv1d_backward_ref(np.abs(dy), np.abs(x), np.abs(w), *args))
    if unbatched:
        y, sy, grads[0], scales[0] = y[0], sy[0], grads[0][0], scales[0][0]
    return y, sy, tuple(grads), tuple(scales)


@functools.cache
def reference_data(case, dtype_name):
    dtype = np.dtype(dtype_name)
    rng = np.random.default_rng(zlib.crc32(f"{case.id}-{dtype_name}".encode()))
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.k).astype(dtype) if case.bias else None
    y0 = conv1d_ref(x, w, None, case.stride, case.ref_padding, case.dilation, case.groups)
    dy = rng.standard_normal(y0.shape).astype(dtype)
    y, sy, grads, scales = expected(x, w, b, dy, case)
    return x, w, b, dy, y, sy, grads, scales, snapshot(x, w, b, dy)


def offered(case):
    n, c, length = case.x_shape
    k, cg, kl = case.w_shape
    return fastconv.algorithms((n, c, 1, length), (k, cg, 1, kl), **case.params2d)


def test_case_list_covers_every_value_with_every_algorithm():
    for algo in SPEC_ALGORITHMS:
        mine = [c for c in CASES if algo in spec_algorithms(c)]
        for axis, values in AXES.items():
            if axis in ("groups", "chan", "length", "batch"):
                continue
            if algo == "gemm1x1" and axis == "kl":
                values = [1]
            seen = {getattr(c, axis) for c in mine}
            assert set(values) <= seen, (algo, axis, set(values) - seen)
        assert {1, 3} <= {c.n for c in mine}
        assert any(c.length % 2 for c in mine)
        kinds = {
            ("dw2" if c.k == 2 * c.c else "dw") if c.groups == c.c else f"g{c.groups}" for c in mine
        }
        assert kinds >= ({"dw", "dw2"} if algo == "depthwise" else set(CHANNELS)), (algo, kinds)


@pytest.mark.parametrize("case, algo, dtype", combos())
def test_conv1d_forward(case, algo, dtype):
    x, w, b, dy, y, sy, grads, scales, pristine = reference_data(case, np.dtype(dtype).name)
    if algo not in offered(case):
        if algo in spec_algorithms(case):
            pytest.fail(f"fastconv.algorithms leaves out {algo!r} for {case}")
        pytest.skip(f"{algo} does not apply")
    out = fastconv.conv1d(x, w, b, algo=algo, **case.params)
    assert_unchanged(pristine, (x, w, b), ("x", "weight", "bias"))
    assert_close(out, y, dtype, sy, "y")


@pytest.mark.parametrize("case, algo, dtype", combos())
def test_conv1d_backward(case, algo, dtype):
    x, w, b, dy, y, sy, grads, scales, pristine = reference_data(case, np.dtype(dtype).name)
    if algo not in offered(case):
        if algo in spec_algorithms(case):
            pytest.fail(f"fastconv.algorithms leaves out {algo!r} for {case}")
        pytest.skip(f"{algo} does not apply")
    got = fastconv.conv1d_backward(dy, x, w, algo=algo, **case.params)
    assert_unchanged(pristine, (x, w, b, dy), ("x", "weight", "bias", "grad_out"))
    check_backward(got, grads, scales, dtype)


@pytest.mark.parametrize("algo", ["gemm1x1", "depthwise"])
def test_conv1d_inapplicable_algo_raises(algo):
    for case in [c for c in CASES if algo not in spec_algorithms(c)][:10]:
        x = np.zeros(case.x_shape, np.float32)
        w = np.zeros(case.w_shape, np.float32)
        with pytest.raises(ValueError, match=r"\balgo\b"):
            fastconv.conv1d(x, w, algo=algo, **case.params)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_conv1d_unbatched(dtype, rng):
    for case in [
        Case1d(1, 4, 15, 6, 3, stride=2, padding=1, groups=2),
        Case1d(1, 4, 9, 8, 1, groups=4),
        Case1d(1, 3, 10, 4, 4, padding="same", dilation=2),
    ]:
        x = rng.standard_normal(case.x_shape[1:]).astype(dtype)
        w = rng.standard_normal(case.w_shape).astype(dtype)
        b = rng.standard_normal(case.k).astype(dtype)
        y_ref, sy = expected(x, w, b, None, case)
        dy = rng.standard_normal(y_ref.shape).astype(dtype)
        _, _, grads, scales = expected(x, w, b, dy, case)
        for algo in offered(case):
            y = fastconv.conv1d(x, w, b, algo=algo, **case.params)
            assert y.ndim == 2
            assert_close(y, y_ref, dtype, sy, f"y ({algo})")
            check_backward(
                fastconv.conv1d_backward(dy, x, w, algo=algo, **case.params), grads, scales, dtype
            )


@pytest.mark.parametrize(
    "needs",
    list(itertools.product([True, False], repeat=3)),
    ids=lambda n: "".join("xwb"[i] if v else "-" for i, v in enumerate(n)),
)
def test_conv1d_needs(needs):
    case = Case1d(2, 6, 17, 9, 5, stride=2, padding=2, dilation=2, groups=3)
    for dtype in DTYPES:
        x, w, b, dy, y, sy, grads, scales, _ = reference_data(case, np.dtype(dtype).name)
        got = fastconv.conv1d_backward(dy, x, w, needs=needs, **case.params)
        check_backward(got, grads, scales, dtype, needs=needs)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_conv1d_is_conv2d_with_height_1(dtype, rng):
    case = Case1d(2, 6, 21, 4, 3, stride=2, padding=1, dilation=2, groups=2)
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.k).astype(dtype)
    y_ref, sy = expected(x, w, b, None, case)
    for algo in offered(case):
        y1 = fastconv.conv1d(x, w, b, algo=algo, **case.params)
        y2 = fastconv.conv2d(x[:, :, None], w[:, :, None], b, algo=algo, **case.params2d)
        assert_close(y1, y_ref, dtype, sy, f"conv1d y ({algo})")
        assert_close(y2[:, :, 0], y_ref, dtype, sy, f"conv2d y ({algo})")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_conv1d_views_and_read_only(dtype, rng):
    case = Case1d(3, 4, 19, 6, 3, stride=2, padding=2, groups=2)
    x0 = rng.standard_normal((case.n, case.c, 2 * case.length)).astype(dtype)
    x = x0[:, :, ::2]  # step slice
    w = np.ascontiguousarray(rng.standard_normal(case.w_shape).astype(dtype)[::-1])[::-1]
    b = rng.standard_normal(case.k).astype(dtype)
    b.setflags(write=False)
    y_ref, sy = expected(x, w, b, None, case)
    dy = np.asfortranarray(rng.standard_normal(y_ref.shape).astype(dtype))
    dy.setflags(write=False)
    _, _, grads, scales = expected(x, w, b, dy, case)
    before = snapshot(x, w, b, dy)
    for algo in offered(case):
        assert_close(fastconv.conv1d(x, w, b, algo=algo, **case.params), y_ref, dtype, sy, "y")
        check_backward(
            fastconv.conv1d_backward(dy, x, w, algo=algo, **case.params), grads, scales, dtype
        )
    assert_unchanged(before, (x, w, b, dy), ("x", "weight", "bias", "grad_out"))

"""Parity with torch.nn.functional.conv2d / conv1d, forward and autograd backward.

Same inputs to both, in the same dtype; |fastconv - torch| <= tol * scale with the tolerance
rule of the README's accuracy contract (float32 1e-4, float64 1e-10, relative to the sum of
|terms|).
"""

import numpy as np
import pytest

import fastconv
from conftest import DTYPE_IDS, DTYPES, assert_close, expected_backward, expected_forward

torch = pytest.importorskip("torch")
F = torch.nn.functional

CASES_2D = {
    "plain": ((2, 3, 13, 11), (5, 3, 3, 3), dict()),
    "stride2-pad1": ((2, 4, 13, 11), (6, 4, 3, 3), dict(stride=2, padding=1)),
    "stride3-asym-pad": ((1, 3, 15, 14), (4, 3, 5, 5), dict(stride=3, padding=(0, 2))),
    "stride-pair": ((2, 3, 9, 16), (4, 3, 3, 5), dict(stride=(2, 3), padding=(2, 1))),
    "dilation2": ((2, 3, 13, 11), (4, 3, 3, 3), dict(dilation=2, padding=2)),
    "dilation3-pair": ((1, 2, 17, 19), (3, 2, 3, 5), dict(dilation=(3, 2), padding=1)),
    "groups2": ((2, 6, 9, 7), (8, 3, 3, 3), dict(groups=2, padding=1)),
    "groups3-stride2-dil2": (
        (2, 6, 13, 11),
        (9, 2, 3, 3),
        dict(groups=3, stride=2, dilation=2, padding=(1, 2)),
    ),
    "depthwise": ((2, 8, 9, 9), (8, 1, 3, 3), dict(groups=8, padding=1)),
    "depthwise-mult2-s2": ((2, 5, 11, 13), (10, 1, 5, 5), dict(groups=5, stride=2, padding=2)),
    "1x1": ((2, 16, 7, 9), (8, 16, 1, 1), dict()),
    "1x1-stride2-pad1": ((2, 8, 7, 9), (4, 8, 1, 1), dict(stride=2, padding=1)),
    "1x7": ((1, 4, 9, 17), (6, 4, 1, 7), dict(padding=(0, 3))),
    "7x1": ((1, 4, 17, 9), (6, 4, 7, 1), dict(padding=(3, 0))),
    "11x11-s4-p2": ((1, 3, 35, 35), (16, 3, 11, 11), dict(stride=4, padding=2)),
    "same-3x3": ((2, 3, 9, 8), (4, 3, 3, 3), dict(padding="same")),
    "same-even": ((2, 3, 9, 8), (4, 3, 4, 2), dict(padding="same")),
    "same-dilated-even": (
        (1, 4, 12, 11),
        (4, 2, 2, 4),
        dict(padding="same", dilation=(3, 2), groups=2),
    ),
    "valid": ((2, 3, 9, 8), (4, 3, 4, 2), dict(padding="valid")),
    "unbatched": ((3, 11, 9), (4, 3, 3, 3), dict(stride=2, padding=1)),
    "no-bias": ((2, 3, 9, 8), (4, 3, 3, 3), dict(bias=False)),
}


def split(params):
    params = dict(params)
    bias = params.pop("bias", True)
    return bias, dict(dict(stride=1, padding=0, dilation=1, groups=1), **params)


def x4(shape):
    return shape if len(shape) == 4 else (1,) + shape


def torch_conv(fn, x, w, b, dy, params):
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = fn(tx, tw, tb, **params)
    ty.backward(torch.tensor(dy))
    return (
        ty.detach().numpy(),
        tx.grad.numpy(),
        tw.grad.numpy(),
        None if tb is None else tb.grad.numpy(),
    )


def combos(cases, nd):
    out = []
    for name, (xs, ws, params) in cases.items():
        bias, p = split(params)
        if nd == 1:
            xs, ws = xs[:-1] + (1, xs[-1]), ws[:-1] + (1, ws[-1])
            p = dict(
                stride=(1, p["stride"]),
                dilation=(1, p["dilation"]),
                groups=p["groups"],
                padding=p["padding"] if isinstance(p["padding"], str) else (0, p["padding"]),
            )
        for algo in fastconv.algorithms(x4(xs), ws, **p):
            # the reference twin's naive loops are slow; test_reference_matches_torch keeps it
            # against PyTorch in the fast loop
            marks = [pytest.mark.slow] if algo == "reference" else []
            for dtype, dname in zip(DTYPES, DTYPE_IDS):
                out.append(
                    pytest.param(name, algo, dtype, id=f"{name}-{algo}-{dname}", marks=marks)
                )
    return out


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name, algo, dtype", combos(CASES_2D, 2))
def test_conv2d_matches_torch(name, algo, dtype, rng):
    x_shape, w_shape, params = CASES_2D[name]
    bias, params = split(params)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    _, sy = expected_forward(x, w, b, **params)
    dy = rng.standard_normal(sy.shape).astype(dtype)
    _, (sdx, sdw, sdb) = expected_backward(dy, x, w, **params)
    ty, tdx, tdw, tdb = torch_conv(F.conv2d, x, w, b, dy, params)

    y = fastconv.conv2d(x, w, b, algo=algo, **params)
    assert_close(y, ty, dtype, sy, "y vs torch")
    dx, dw, db = fastconv.conv2d_backward(dy, x, w, algo=algo, **params)
    assert_close(dx, tdx, dtype, sdx, "grad_x vs torch")
    assert_close(dw, tdw, dtype, sdw, "grad_w vs torch")
    if tdb is None:  # no bias in the forward: grad_b is still grad_out summed
        tdb = dy.astype(np.float64).sum(axis=(0, 2, 3) if dy.ndim == 4 else (1, 2))
    assert_close(db, tdb, dtype, sdb, "grad_b vs torch")


CASES_1D = {
    "plain": ((2, 3, 13), (5, 3, 3), dict()),
    "stride2-pad1": ((2, 4, 15), (6, 4, 3), dict(stride=2, padding=1)),
    "stride3-k5-pad2": ((1, 3, 17), (4, 3, 5), dict(stride=3, padding=2)),
    "dilation3": ((2, 3, 19), (4, 3, 3), dict(dilation=3, padding=1)),
    "groups2": ((2, 6, 11), (8, 3, 3), dict(groups=2)),
    "depthwise-mult2": ((2, 5, 13), (10, 1, 5), dict(groups=5, stride=2, padding=2)),
    "k1": ((2, 16, 9), (8, 16, 1), dict()),
    "k11": ((1, 4, 31), (6, 4, 11), dict(stride=2, padding=3)),
    "same-even": ((2, 3, 9), (4, 3, 4), dict(padding="same", dilation=2)),
    "valid": ((2, 3, 9), (4, 3, 4), dict(padding="valid")),
    "unbatched": ((3, 11), (4, 3, 3), dict(stride=2, padding=1)),
    "no-bias": ((2, 3, 9), (4, 3, 3), dict(bias=False)),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name, algo, dtype", combos(CASES_1D, 1))
def test_conv1d_matches_torch(name, algo, dtype, rng):
    x_shape, w_shape, params = CASES_1D[name]
    bias, params = split(params)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    y_shape = tuple(F.conv1d(torch.tensor(x), torch.tensor(w), None, **params).shape)
    dy = rng.standard_normal(y_shape).astype(dtype)
    ty, tdx, tdw, tdb = torch_conv(F.conv1d, x, w, b, dy, params)
    # scales from the 2-D reference on the H = 1 equivalent
    xa, wa, dya = np.abs(x)[..., None, :], np.abs(w)[..., None, :], np.abs(dy)[..., None, :]
    pad = params["padding"]
    p2 = dict(
        stride=(1, params["stride"]),
        dilation=(1, params["dilation"]),
        groups=params["groups"],
        padding=pad if isinstance(pad, str) else (0, pad),
    )
    _, sy = expected_forward(xa, wa, None if b is None else np.abs(b), **p2)
    _, (sdx, sdw, sdb) = expected_backward(dya, xa, wa, **p2)

    y = fastconv.conv1d(x, w, b, algo=algo, **params)
    assert_close(y, ty, dtype, sy[..., 0, :], "y vs torch")
    dx, dw, db = fastconv.conv1d_backward(dy, x, w, algo=algo, **params)
    assert_close(dx, tdx, dtype, sdx[..., 0, :], "grad_x vs torch")
    assert_close(dw, tdw, dtype, sdw[..., 0, :], "grad_w vs torch")
    if tdb is None:
        tdb = dy.astype(np.float64).sum(axis=(0, 2) if dy.ndim == 3 else 1)
    assert_close(db, tdb, dtype, sdb, "grad_b vs torch")


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", list(CASES_2D))
def test_reference_matches_torch(name, rng):
    """The test suite's own reference agrees with PyTorch (float64, to rounding)."""
    x_shape, w_shape, params = CASES_2D[name]
    _, params = split(params)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    ye, sy = expected_forward(x, w, b, **params)
    dy = rng.standard_normal(ye.shape)
    (dx, dw, db), (sdx, sdw, sdb) = expected_backward(dy, x, w, **params)
    ty, tdx, tdw, tdb = torch_conv(F.conv2d, x, w, b, dy, params)
    for name_, a, t, s in (
        ("y", ye, ty, sy),
        ("grad_x", dx, tdx, sdx),
        ("grad_w", dw, tdw, sdw),
        ("grad_b", db, tdb, sdb),
    ):
        assert_close(t, a, np.float64, s, f"torch {name_} vs reference")

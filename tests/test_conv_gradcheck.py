"""Finite-difference checks of conv2d_backward / conv1d_backward, in float64.

f(x, w, b) = sum(conv(x, w, b) * R) for a fixed random R; its gradients are exactly what
conv*_backward(R, x, w) returns. Central differences of f, evaluated with fastconv's own
forward, at ~10 random coordinates of each argument and along a few random directions.
The reference is used only for the magnitude of the summed terms (the tolerance scale).
"""

import numpy as np
import pytest

import fastconv
from conftest import expected_backward

EPS = 1e-4  # f is linear in each argument, so only rounding limits the step
RTOL = 1e-6
COORDS = 10
DIRECTIONS = 3

CASES = {
    "plain-3x3": ((2, 3, 7, 6), (4, 3, 3, 3), dict()),
    "stride2-pad1": ((2, 3, 8, 7), (5, 3, 3, 3), dict(stride=2, padding=1)),
    "stride3-5x5-pad2": ((1, 2, 11, 10), (3, 2, 5, 5), dict(stride=3, padding=2)),
    "dilation2-asym-pad": ((2, 3, 9, 8), (4, 3, 3, 3), dict(dilation=2, padding=(2, 1))),
    "groups2-mixed": (
        (2, 4, 9, 10),
        (6, 2, 3, 2),
        dict(stride=(2, 1), padding=(1, 0), dilation=(1, 3), groups=2),
    ),
    "depthwise": ((2, 4, 8, 8), (4, 1, 3, 3), dict(padding=1, groups=4)),
    "depthwise-mult2-s3": ((1, 3, 11, 9), (6, 1, 5, 5), dict(stride=3, padding=2, groups=3)),
    "1x1-stride2-pad1": ((2, 5, 7, 6), (3, 5, 1, 1), dict(stride=2, padding=1)),
    "1x7-pad-0-3": ((1, 3, 5, 9), (4, 3, 1, 7), dict(padding=(0, 3))),
    "7x1-dil3": ((1, 2, 21, 4), (3, 2, 7, 1), dict(dilation=(3, 1), padding=(1, 0))),
    "11x11-s4-p2": ((1, 2, 19, 19), (3, 2, 11, 11), dict(stride=4, padding=2)),
    "same-even-kernel": ((2, 2, 6, 7), (3, 2, 4, 2), dict(padding="same", dilation=(1, 2))),
    "valid": ((1, 2, 6, 7), (3, 2, 3, 2), dict(padding="valid")),
    "unbatched": ((3, 7, 6), (4, 3, 3, 3), dict(padding=1, stride=2)),
}


def full(params):
    return dict(dict(stride=1, padding=0, dilation=1, groups=1), **params)


def x4(shape):
    return shape if len(shape) == 4 else (1,) + shape


def check_fd(f, args, grads, scales, rng, label):
    """Central differences of f in each argument vs the analytic gradient.

    |fd - analytic| <= RTOL * (|analytic| + scale): scale is the sum of |terms| of that
    gradient element (or, for a direction v, of sum(grad * v)).
    """
    failures = []
    for i, (name, grad, scale) in enumerate(zip(("x", "weight", "bias"), grads, scales)):
        a = args[i]
        flat = a.reshape(-1)

        def fd(direction):
            plus = [arg.copy() for arg in args]
            minus = [arg.copy() for arg in args]
            plus[i] += EPS * direction
            minus[i] -= EPS * direction
            return (f(*plus) - f(*minus)) / (2 * EPS)

        picks = rng.choice(flat.size, size=min(COORDS, flat.size), replace=False)
        for p in picks:
            e = np.zeros(flat.size)
            e[p] = 1.0
            got = fd(e.reshape(a.shape))
            an, sc = grad.reshape(-1)[p], scale.reshape(-1)[p]
            if not abs(got - an) <= RTOL * (abs(an) + sc) + 1e-300:
                idx = np.unravel_index(p, a.shape)
                failures.append(
                    f"{label}: d/d{name}{idx}: finite difference {got!r}, "
                    f"backward {an!r} (scale {sc!r})"
                )
        for _ in range(DIRECTIONS):
            v = rng.standard_normal(a.shape)
            got = fd(v)
            an = float(np.sum(grad * v))
            sc = float(np.sum(scale * np.abs(v)))
            if not abs(got - an) <= RTOL * (abs(an) + sc):
                failures.append(
                    f"{label}: d/d{name} along a random direction: finite "
                    f"difference {got!r}, backward {an!r} (scale {sc!r})"
                )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", list(CASES))
def test_conv2d_gradients_match_finite_differences(name, rng):
    x_shape, w_shape, params = CASES[name]
    params = full(params)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    y = fastconv.conv2d(x, w, b, **params)
    r = rng.standard_normal(y.shape)
    _, scales = expected_backward(r, x, w, **params)
    sdb = np.abs(r).sum(axis=(0, 2, 3)) if r.ndim == 4 else np.abs(r).sum(axis=(1, 2))
    scales = (scales[0], scales[1], sdb)
    algos = fastconv.algorithms(x4(x_shape), w_shape, **params)
    assert algos
    for algo in algos:

        def f(x_, w_, b_):
            return float(np.sum(fastconv.conv2d(x_, w_, b_, algo=algo, **params) * r))

        grads = fastconv.conv2d_backward(r, x, w, algo=algo, **params)
        check_fd(f, (x, w, b), grads, scales, rng, f"{name}/{algo}")


CASES_1D = {
    "plain": ((2, 3, 11), (4, 3, 3), dict()),
    "stride2-pad2-dil2": ((2, 3, 13), (5, 3, 3), dict(stride=2, padding=2, dilation=2)),
    "groups-depthwise-mult2": ((1, 4, 12), (8, 1, 5), dict(groups=4, padding=1, stride=3)),
    "same-even": ((2, 2, 9), (3, 2, 4), dict(padding="same")),
    "k1": ((2, 4, 7), (3, 4, 1), dict(stride=2)),
}


@pytest.mark.parametrize("name", list(CASES_1D))
def test_conv1d_gradients_match_finite_differences(name, rng):
    x_shape, w_shape, params = CASES_1D[name]
    params = full(params)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    y = fastconv.conv1d(x, w, b, **params)
    r = rng.standard_normal(y.shape)
    pad2d = params["padding"] if isinstance(params["padding"], str) else (0, params["padding"])
    p2d = dict(
        stride=(1, params["stride"]),
        padding=pad2d,
        dilation=(1, params["dilation"]),
        groups=params["groups"],
    )
    _, (sdx, sdw, _) = expected_backward(r[:, :, None], x[:, :, None], w[:, :, None], **p2d)
    scales = (sdx[:, :, 0], sdw[:, :, 0], np.abs(r).sum(axis=(0, 2)))
    algos = fastconv.algorithms(
        (x_shape[0], x_shape[1], 1, x_shape[2]), (w_shape[0], w_shape[1], 1, w_shape[2]), **p2d
    )
    for algo in algos:

        def f(x_, w_, b_):
            return float(np.sum(fastconv.conv1d(x_, w_, b_, algo=algo, **params) * r))

        grads = fastconv.conv1d_backward(r, x, w, algo=algo, **params)
        check_fd(f, (x, w, b), grads, scales, rng, f"conv1d {name}/{algo}")

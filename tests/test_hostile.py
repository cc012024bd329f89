"""Hostile input at the Python level.

- Non-contiguous (strided, transposed, reversed, channel-sliced, zero-stride broadcast),
  read-only and misaligned arrays give exactly the results of their contiguous copies.
- An empty batch gives an empty result (and zero gradients) of PyTorch's shapes.
- NaN and Inf propagate as in PyTorch, through every algorithm.
- Inputs are never modified, through every algorithm and op.
- Shapes whose buffers could never exist (broadcast views of one scalar) raise ValueError or
  MemoryError before any work, never crash (checked in a child process, so a crash fails the
  test instead of ending the run).
- Gradients, switches and input shapes that do not match raise ValueError (TypeError for dtypes).
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]
BAD = (ValueError, TypeError)


def same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    if a is None:
        return b is None
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def misaligned(a):
    """A C-contiguous copy of a whose data pointer is one byte off its dtype's alignment."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = buf[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    return m


def read_only(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


def from_bytes(a):
    """A read-only array backed by an immutable bytes object."""
    return np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape)


def layouts(a, rng):
    """Views with a's values: (name, view)."""
    big = np.zeros(a.shape[:-2] + (2 * a.shape[-2], 3 * a.shape[-1]), a.dtype)
    big[..., ::2, ::3] = a
    wide = np.zeros((a.shape[0], a.shape[1] + 3) + a.shape[2:], a.dtype)
    wide[:, 2 : 2 + a.shape[1]] = a
    rev = np.ascontiguousarray(a[..., ::-1])
    return [
        ("strided", big[..., ::2, ::3]),
        ("fortran", np.asfortranarray(a)),
        ("reversed", rev[..., ::-1]),
        ("channel slice", wide[:, 2 : 2 + a.shape[1]]),
        ("read-only", read_only(a)),
        ("bytes-backed", from_bytes(a)),
        ("misaligned", misaligned(a)),
        ("broadcast", np.broadcast_to(a[:1], a.shape) if a.shape[0] == 1 else read_only(a)),
    ]


# --------------------------------------------------------------------------------------------
# layouts

CONV_CASES = [
    ((2, 6, 9, 11), (8, 6, 3, 3), dict(padding=1)),
    ((1, 8, 7, 7), (8, 1, 3, 3), dict(groups=8, stride=2, padding=1)),
    ((2, 16, 5, 6), (12, 16, 1, 1), {}),
    ((1, 4, 12, 10), (6, 2, 2, 3), dict(groups=2, dilation=2)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_any_layout_gives_the_contiguous_result(case, dtype):
    xs, ws, params = CONV_CASES[case]
    rng = np.random.default_rng(case)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    for algo in fastconv.algorithms(xs, ws, **params):
        y = fastconv.conv2d(x, w, b, algo=algo, **params)
        dy = rng.standard_normal(y.shape).astype(dtype)
        grads = fastconv.conv2d_backward(dy, x, w, algo=algo, **params)
        views = zip(
            layouts(x, rng), layouts(w, rng), layouts(dy, rng), layouts(b[None, None, None], rng)
        )
        for (name, xv), (_, wv), (_, dyv), (_, bv) in views:
            assert same(fastconv.conv2d(xv, wv, bv.reshape(-1), algo=algo, **params), y), (
                f"{algo}: {name}"
            )
            assert same(fastconv.conv2d_backward(dyv, xv, wv, algo=algo, **params), grads), (
                f"{algo}: {name}"
            )


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_conv1d_any_layout_gives_the_contiguous_result(dtype):
    rng = np.random.default_rng(1)
    x, w = (
        rng.standard_normal((2, 4, 1, 19)).astype(dtype),
        rng.standard_normal((5, 4, 1, 3)).astype(dtype),
    )
    y = fastconv.conv1d(x[:, :, 0], w[:, :, 0], padding=2, dilation=2)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = fastconv.conv1d_backward(dy, x[:, :, 0], w[:, :, 0], padding=2, dilation=2)
    for (name, xv), (_, wv) in zip(layouts(x, rng), layouts(w, rng)):
        assert same(fastconv.conv1d(xv[:, :, 0], wv[:, :, 0], padding=2, dilation=2), y), name
        assert same(
            fastconv.conv1d_backward(dy, xv[:, :, 0], wv[:, :, 0], padding=2, dilation=2), grads
        ), name


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_pooling_any_layout_gives_the_contiguous_result(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 11, 13)).astype(dtype)

    def ops(x):
        y, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
        g = np.ones_like(y)
        return (
            y,
            idx,
            fastconv.max_pool2d_backward(g, idx, x.shape),
            fastconv.avg_pool2d(x, (3, 2), 2, (1, 0), ceil_mode=True),
            fastconv.avg_pool2d_backward(x[..., :6, :7], x.shape, 3, 2, 1),
            fastconv.adaptive_avg_pool2d(x, (4, 5)),
            fastconv.adaptive_avg_pool2d_backward(x[..., :4, :5], x.shape),
            fastconv.max_unpool2d(y, idx, 3, 2, 1, output_size=x.shape[2:]),
        )

    want = ops(x)
    for name, xv in layouts(x, rng):
        assert same(ops(xv), want), name
    # switches in any layout too
    y, idx = want[0], want[1]
    for name, iv in layouts(idx, rng):
        assert same(fastconv.max_pool2d_backward(np.ones_like(y), iv, x.shape), want[2]), name


@pytest.mark.parametrize(
    "dtype", [">f4", ">f8", np.float16, np.int32, np.int64, np.bool_, np.complex64, object]
)
def test_unsupported_dtypes_are_refused(dtype):
    x = np.ones((1, 2, 4, 4)).astype(dtype)
    w = np.ones((2, 2, 3, 3)).astype(dtype)
    with pytest.raises(TypeError):
        fastconv.conv2d(x, w)
    with pytest.raises(TypeError):
        fastconv.max_pool2d(x, 2)
    with pytest.raises(TypeError):
        fastconv.avg_pool2d(x, 2)
    with pytest.raises(TypeError):
        fastconv.conv2d(np.ones((1, 2, 4, 4), F32), np.ones((2, 2, 3, 3), F64))


# --------------------------------------------------------------------------------------------
# empty batches


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_empty_batch_gives_empty_results(dtype):
    x = np.zeros((0, 4, 9, 9), dtype)
    w = np.ones((6, 2, 3, 3), dtype)
    for algo in fastconv.algorithms(x.shape, w.shape, padding=1, groups=2, stride=2):
        y = fastconv.conv2d(x, w, np.ones(6, dtype), padding=1, groups=2, stride=2, algo=algo)
        assert y.shape == (0, 6, 5, 5) and y.dtype == dtype
        gx, gw, gb = fastconv.conv2d_backward(y, x, w, padding=1, groups=2, stride=2, algo=algo)
        assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (6,)
        assert not gw.any() and not gb.any()
    assert fastconv.conv1d(np.zeros((0, 2, 7), dtype), np.ones((3, 2, 2), dtype)).shape == (0, 3, 6)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    assert y.shape == idx.shape == (0, 4, 4, 4)
    assert fastconv.max_pool2d_backward(y, idx, x.shape).shape == x.shape
    assert fastconv.max_unpool2d(y, idx, 2, output_size=(9, 9)).shape == (0, 4, 9, 9)
    assert fastconv.avg_pool2d(x, 3, ceil_mode=True).shape == (0, 4, 3, 3)
    assert fastconv.avg_pool2d_backward(np.zeros((0, 4, 3, 3), dtype), x.shape, 3).shape == x.shape
    assert fastconv.adaptive_avg_pool2d(x, 2).shape == (0, 4, 2, 2)
    assert (
        fastconv.adaptive_avg_pool2d_backward(np.zeros((0, 4, 2, 2), dtype), x.shape).shape
        == x.shape
    )


def test_empty_batch_shapes_match_torch(torch):
    F = torch.nn.functional
    x = np.zeros((0, 4, 9, 9), F32)
    w = np.ones((6, 2, 3, 3), F32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    assert fastconv.conv2d(x, w, padding=1, groups=2, stride=2).shape == tuple(
        F.conv2d(xt, wt, padding=1, groups=2, stride=2).shape
    )
    assert fastconv.max_pool2d(x, 3, 2, 1, ceil_mode=True).shape == tuple(
        F.max_pool2d(xt, 3, 2, 1, ceil_mode=True).shape
    )
    assert fastconv.avg_pool2d(x, 2).shape == tuple(F.avg_pool2d(xt, 2).shape)
    assert fastconv.adaptive_avg_pool2d(x, (3, 2)).shape == tuple(
        F.adaptive_avg_pool2d(xt, (3, 2)).shape
    )


# --------------------------------------------------------------------------------------------
# NaN and Inf


def poison(a, rng, values=(np.nan, np.inf, -np.inf), count=3):
    a = a.copy()
    a.flat[rng.choice(a.size, count, replace=False)] = rng.choice(values, count)
    return a


def assert_like_torch(got, want, what):
    """Same NaN positions, same infinities (with sign), finite values close."""
    want = want.detach().numpy() if hasattr(want, "detach") else want
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{what}: +inf")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{what}: -inf")
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-4, atol=1e-4, err_msg=what)


# Padding makes NaN/Inf semantics depend on the implementation only for the weight gradient
# (0 * inf where a tap falls in the padding); its cases are unpadded.
NAN_CASES = [
    ((2, 5, 8, 9), (6, 5, 3, 3), dict(padding=1), True),
    ((1, 6, 7, 7), (6, 1, 3, 3), dict(groups=6, padding=1, stride=2), True),
    ((2, 8, 6, 6), (4, 8, 1, 1), {}, False),
    ((1, 4, 9, 9), (4, 2, 3, 2), dict(groups=2, dilation=2), False),
]


@pytest.mark.parametrize("case", range(len(NAN_CASES)))
def test_nan_and_inf_propagate_like_torch(case, torch):
    F = torch.nn.functional
    xs, ws, params, padded = NAN_CASES[case]
    rng = np.random.default_rng(10 + case)
    x = poison(rng.standard_normal(xs), rng)
    w = rng.standard_normal(ws)
    tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    ty = F.conv2d(tx, tw, **params)
    dy = poison(rng.standard_normal(tuple(ty.shape)), rng)
    ty.backward(torch.from_numpy(dy))
    # the weight gradient from finite grad_out (x holds the NaN/Inf) when padded
    dy_w = rng.standard_normal(dy.shape) if padded else dy
    tx2, tw2 = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    F.conv2d(tx2, tw2, **params).backward(torch.from_numpy(dy_w))
    x_before, dy_before = x.copy(), dy.copy()
    for algo in fastconv.algorithms(xs, ws, **params):
        assert_like_torch(fastconv.conv2d(x, w, algo=algo, **params), ty, f"{algo} forward")
        gx, _, gb = fastconv.conv2d_backward(dy, x, w, algo=algo, **params)
        assert_like_torch(gx, tx.grad, f"{algo} grad_x")
        assert_like_torch(gb, torch.from_numpy(dy).sum((0, 2, 3)), f"{algo} grad_b")
        _, gw, _ = fastconv.conv2d_backward(dy_w, x, w, algo=algo, **params)
        assert_like_torch(gw, tw2.grad, f"{algo} grad_w")
        for dt in (F32,):  # float32 as well, forward only (torch on float32 copies)
            got = fastconv.conv2d(x.astype(dt), w.astype(dt), algo=algo, **params)
            assert_like_torch(
                got,
                F.conv2d(tx.detach().float(), tw.detach().float(), **params),
                f"{algo} forward f32",
            )
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dy, dy_before)


def test_nan_and_inf_in_pooling_like_torch(torch):
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        x = poison(rng.standard_normal((2, 3, 9, 10)), rng, count=6).astype(dtype)
        tx = torch.from_numpy(x)
        y, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
        ty, tidx = F.max_pool2d(tx, 3, 2, 1, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
        assert_like_torch(
            fastconv.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
            F.avg_pool2d(tx, 3, 2, 1, count_include_pad=False),
            "avg_pool2d",
        )
        assert_like_torch(
            fastconv.adaptive_avg_pool2d(x, (4, 3)),
            F.adaptive_avg_pool2d(tx, (4, 3)),
            "adaptive_avg_pool2d",
        )
        g = poison(rng.standard_normal(y.shape), rng).astype(dtype)
        assert_like_torch(
            fastconv.max_pool2d_backward(g, idx, x.shape),
            torch.zeros(x.shape, dtype=tx.dtype)
            .view(6, -1)
            .scatter_add(1, tidx.view(6, -1), torch.from_numpy(g).view(6, -1))
            .view(x.shape),
            "max_pool2d_backward",
        )


# --------------------------------------------------------------------------------------------
# inputs never modified


def test_inputs_are_never_modified():
    rng = np.random.default_rng(4)
    for xs, ws, params in [c[:3] for c in CONV_CASES]:
        for dtype in DTYPES:
            x = poison(rng.standard_normal(xs), rng, values=(np.nan,), count=1).astype(dtype)
            w, b = rng.standard_normal(ws).astype(dtype), rng.standard_normal(ws[0]).astype(dtype)
            for algo in fastconv.algorithms(xs, ws, **params):
                dy = np.ones(fastconv.conv2d(x, w, algo=algo, **params).shape, dtype)
                before = [a.copy() for a in (x, w, b, dy)]
                fastconv.conv2d(x, w, b, algo=algo, **params)
                fastconv.conv2d_backward(dy, x, w, algo=algo, **params)
                for a, c in zip((x, w, b, dy), before):
                    assert a.tobytes() == c.tobytes(), f"{algo} modified an input"
    x = rng.standard_normal((2, 3, 8, 8)).astype(F32)
    x0 = x.copy()
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    y0, idx0 = y.copy(), idx.copy()
    fastconv.max_pool2d_backward(y, idx, x.shape)
    fastconv.max_unpool2d(y, idx, 2)
    fastconv.max_unpool2d_backward(x, idx)
    fastconv.avg_pool2d(x, 3, 1, 1)
    fastconv.avg_pool2d_backward(y, x.shape, 2)
    fastconv.adaptive_avg_pool2d(x, 3)
    fastconv.adaptive_avg_pool2d_backward(y, x.shape)
    assert (
        x.tobytes() == x0.tobytes()
        and y.tobytes() == y0.tobytes()
        and idx.tobytes() == idx0.tobytes()
    )


# --------------------------------------------------------------------------------------------
# shapes no buffer could have

HUGE_CASES = {
    # name: Python expression; z/i are broadcast scalars (float32 0, int64 0)
    "conv2d output > 256 TiB": (
        "fastconv.conv2d(bt(z, (2**20, 1, 1, 2**20)), bt(z, (2**10, 1, 1, 1)))"
    ),
    "conv2d output elements overflow int64": (
        "fastconv.conv2d(bt(z, (2**30, 1, 1, 2**30)), bt(z, (2**10, 1, 1, 2)), padding=(0, 2**40))"
    ),
    "conv2d x copy > 256 TiB": "fastconv.conv2d(bt(z, (1, 2**47, 1, 1)), bt(z, (1, 2**47, 1, 1)))",
    "conv2d x copy > address space": (
        "fastconv.conv2d(bt(z, (1, 3 * 2**44, 1, 1)), bt(z, (1, 3 * 2**44, 1, 1)))"
    ),
    "conv2d huge padding": (
        "fastconv.conv2d(bt(z, (1, 1, 4, 4)), bt(z, (1, 1, 1, 1)), padding=2**40)"
    ),
    "conv2d_backward grad > 256 TiB": (
        "fastconv.conv2d_backward(bt(z, (2**24, 1, 2**24, 1)), "
        "bt(z, (2**24, 1, 2**24, 1)), bt(z, (1, 1, 1, 1)))"
    ),
    "conv1d output > 256 TiB": "fastconv.conv1d(bt(z, (2**30, 1, 2**30)), bt(z, (4, 1, 1)))",
    "max_pool2d output > 256 TiB": "fastconv.max_pool2d(bt(z, (2**24, 1, 2**24, 1)), 1)",
    "max_pool2d huge kernel": "fastconv.max_pool2d(bt(z, (1, 1, 4, 4)), 2**62, padding=2**60)",
    "adaptive output > 256 TiB": "fastconv.adaptive_avg_pool2d(bt(z, (1, 1, 2, 2)), 2**40)",
    "max_unpool2d output > 256 TiB": (
        "fastconv.max_unpool2d(bt(z, (1, 1, 1, 1)), bt(i, (1, 1, 1, 1)), 2**40)"
    ),
    "max_pool2d_backward input_shape": (
        "fastconv.max_pool2d_backward(bt(z, (2**23, 2**23, 1, 1)), "
        "bt(i, (2**23, 2**23, 1, 1)), (2**23, 2**23, 2, 2))"
    ),
    "avg_pool2d_backward input_shape": (
        "fastconv.avg_pool2d_backward(bt(z, (2**23, 2**23, 1, 1)), (2**23, 2**23, 2, 2), 2)"
    ),
    "adaptive backward input_shape": (
        "fastconv.adaptive_avg_pool2d_backward(bt(z, (2**23, 2**23, 1, 1)), (2**23, 2**23, 2, 2))"
    ),
    "input_shape overflows int64": (
        "fastconv.avg_pool2d_backward(bt(z, (1, 1, 1, 1)), (2**40, 2**40, 2**40, 2**40), 2)"
    ),
}


def test_impossible_shapes_raise_before_any_work():
    """Each case in a child process: it must raise ValueError or MemoryError (a result would
    be wrong too: every case is beyond any machine), and the process must not die."""
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        import fastconv
        bt, z, i = np.broadcast_to, np.float32(0), np.int64(0)
        out = {}
        for name, expr in json.loads(sys.argv[1]).items():
            try:
                r = eval(expr)
                out[name] = "returned " + repr(getattr(r, "shape", type(r)))
            except (ValueError, MemoryError, OverflowError) as e:
                out[name] = "ok " + type(e).__name__
            except BaseException as e:
                out[name] = "raised " + type(e).__name__ + ": " + str(e)[:200]
        print(json.dumps(out))
    """)
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps(HUGE_CASES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"the child process died (exit {r.returncode}):\n{r.stderr[-3000:]}"
    results = json.loads(r.stdout.strip().splitlines()[-1])
    bad = {k: v for k, v in results.items() if not v.startswith("ok")}
    assert set(results) == set(HUGE_CASES) and not bad, bad


# Valid calls whose padding is astronomically large and whose stride makes the output small
# again: every output window lies in the padding (or holds one pixel). No algorithm may size a
# buffer from the padded input (that once tried to allocate (h + 2*pad) * w elements, and
# overflowed int64 for the larger paddings).
SMALL_BUT_HOSTILE = {
    "conv2d pad 2**24 stride 2**25": (
        "fastconv.conv2d(x44, w1, b1, padding=(2**24, 0), stride=(2**25, 1), algo=algo)",
        "np.ones((1, 1, 2, 4), np.float32)",
    ),
    "conv2d pad 2**26 stride 2**27": (
        "fastconv.conv2d(x1k, w1, b1, padding=(2**26, 0), stride=(2**27, 1), algo=algo)",
        "np.ones((1, 1, 2, 1024), np.float32)",
    ),
    "conv2d pad 2**53 stride 2**54": (
        "fastconv.conv2d(x1k, w1, b1, padding=(2**53, 0), stride=(2**54, 1), algo=algo)",
        "np.ones((1, 1, 2, 1024), np.float32)",
    ),
    "conv2d pad 2**61 stride 2**62": (
        "fastconv.conv2d(x44, w1, b1, padding=2**61, stride=2**62, algo=algo)",
        "np.ones((1, 1, 2, 2), np.float32)",
    ),
    "conv2d_backward pad 2**40": (
        "fastconv.conv2d_backward(np.ones((1, 1, 2, 2), np.float32), x44, w1, padding=2**40,"
        " stride=2**41, algo=algo)[0]",
        "np.zeros((1, 1, 4, 4), np.float32)",
    ),
    "avg_pool2d stride 2**62": (
        "fastconv.avg_pool2d(x44, 2, stride=2**62)",
        "x44[:, :, :2, :2].mean((2, 3), keepdims=True)",
    ),
    "max_pool2d stride 2**62": (
        "fastconv.max_pool2d(x44, 3, stride=2**62, padding=1)",
        "x44[:, :, :2, :2].max((2, 3), keepdims=True)",
    ),
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_huge_padding_with_huge_stride_is_cheap_and_right():
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        import fastconv
        x1k = np.arange(1024, dtype=np.float32).reshape(1, 1, 1, 1024)
        x44 = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        w1, b1 = np.full((1, 1, 1, 1), 3, np.float32), np.ones(1, np.float32)
        out = {}
        for name, (expr, want) in json.loads(sys.argv[1]).items():
            algos = fastconv.ALGORITHMS if "algo=algo" in expr else ["auto"]
            for algo in algos:
                try:
                    got, exp = eval(expr), eval(want)
                    ok = got.shape == exp.shape and np.array_equal(got, exp)
                    bad = f"wrong: {got.ravel()[:4]} vs {exp.ravel()[:4]}"
                    out[f"{name} {algo}"] = "ok" if ok else bad
                except ValueError as e:
                    out[f"{name} {algo}"] = "ok" if "cannot run" in str(e) else f"raised {e}"
        # VmHWM: this process image's peak (ru_maxrss can carry the parent's over exec)
        with open("/proc/self/status") as f:
            out["maxrss_mb"] = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) // 1024
        print(json.dumps(out))
    """)
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps(SMALL_BUT_HOSTILE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"the child process died (exit {r.returncode}):\n{r.stderr[-3000:]}"
    results = json.loads(r.stdout.strip().splitlines()[-1])
    maxrss = results.pop("maxrss_mb")
    bad = {k: v for k, v in results.items() if v != "ok"}
    assert not bad, bad
    assert maxrss < 400, f"peak RSS {maxrss} MB: something was sized from the padding"


# --------------------------------------------------------------------------------------------
# mismatched gradients, switches and shapes


def test_wrong_gradient_shapes_are_refused():
    x, w = np.ones((2, 4, 6, 6), F32), np.ones((6, 2, 3, 3), F32)
    y = fastconv.conv2d(x, w, groups=2)  # (2, 6, 4, 4)
    for dy in [y[:1], y[:, :5], y[..., :3], y[0], y[None], np.ones((2, 6, 4, 5), F32), y.ravel()]:
        with pytest.raises(ValueError, match="grad_out"):
            fastconv.conv2d_backward(dy, x, w, groups=2)
    with pytest.raises(TypeError):
        fastconv.conv2d_backward(y.astype(F64), x, w, groups=2)
    with pytest.raises(ValueError, match="grad_out"):
        fastconv.conv1d_backward(
            np.ones((2, 3, 5), F32), np.ones((2, 4, 6), F32), np.ones((3, 4, 3), F32)
        )

    xp = np.ones((2, 3, 8, 8), F32)
    yp, idx = fastconv.max_pool2d(xp, 2, return_indices=True)  # (2, 3, 4, 4)
    for g, i, shape in [
        (yp[:, :2], idx[:, :2], (2, 3, 8, 8)),  # channels disagree
        (yp, idx[..., :3], xp.shape),  # indices' shape
        (yp[0], idx[0], xp.shape),  # rank
        (yp, idx, (2, 3, 8)),  # input_shape rank
        (yp, idx, (2, 3, 0, 8)),  # empty plane
        (yp, idx, (-2, 3, 8, 8)),
    ]:
        with pytest.raises(ValueError):
            fastconv.max_pool2d_backward(g, i, shape)
    with pytest.raises(TypeError):
        fastconv.max_pool2d_backward(yp, idx.astype(np.int32), xp.shape)
    for bad in (-1, 64, 2**62, -(2**63)):  # a switch outside its plane
        i = idx.copy()
        i[1, 2, 3, 0] = bad
        with pytest.raises(ValueError):
            fastconv.max_pool2d_backward(yp, i, xp.shape)
        with pytest.raises(ValueError):
            fastconv.max_unpool2d(yp, i, 2)
        with pytest.raises(ValueError):
            fastconv.max_unpool2d_backward(xp, i)
    with pytest.raises(ValueError):
        fastconv.avg_pool2d_backward(yp[..., :3], xp.shape, 2)
    with pytest.raises(ValueError):
        fastconv.avg_pool2d_backward(yp, (2, 3, 9, 9), 3)
    with pytest.raises(ValueError):
        fastconv.adaptive_avg_pool2d_backward(yp[:1], xp.shape)
    with pytest.raises(BAD):
        fastconv.adaptive_avg_pool2d_backward(yp, "abc")

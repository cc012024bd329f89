"""Unit-stride 1x1 products on the short product's register tile (conv/im2col.cpp, rows_product;
float on the full-rate AVX-512 tables): the forward onto planes of 28x28 or more with up to 512
input channels (at one or two images, or where the layer has no more outputs than inputs), and
the data gradient (dx = W^T dy, the weights packed transposed) onto planes of 35x35 or more with
up to 512 channels of dy (at 3+ images where dx has no more channels than dy). The weights are
packed into the tile's blocks (once, in a prepared forward), each block of positions copied into
the thread's own buffer, every output one chain of multiply-adds. conftest pins the half-rate
table, so the runs here are in subprocesses with FASTCONV_FULL_AVX512=1 (and =0 for the GEMM it
replaces). Against the float64 reference within the accuracy contract, on shapes that leave a
part block of outputs (6 a block) and of positions (64 a block), two to four images (items of
several blocks), groups, 512 channels summed; the same bits at 1, 2 and 3 threads, twice in a
row, and with the output blocks cut in parts (FASTCONV_WORK_ITEMS); a one-step plan (weights
packed once, bias, residual and ReLU on the rows) bit for bit the ordinary forward followed by
the same operations; the path ran (its packed weights' workspace) and not on the half-rate
table; inputs untouched; a NaN and an infinity land where the reference puts them."""

import json
import textwrap

import numpy as np
import pytest

from _isa import AVAILABLE_ISAS, run_isa_json
from conftest import assert_close, expected_backward, expected_forward

pytestmark = pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="needs an AVX-512 CPU")

# (n, c, h, w, k, groups)
FORWARD = [
    (1, 64, 28, 28, 70, 1),  # 70 outputs: 11 blocks and one of 4; 784 positions: 12 blocks + 16
    (2, 64, 30, 30, 256, 1),  # widening at two images; 900 positions: a last block of 4
    (4, 64, 56, 56, 40, 1),  # four images: items of 4 blocks (256 positions), the last of 64
    (1, 128, 29, 29, 66, 2),  # two groups of 64 > 33; 841 positions
    (3, 512, 28, 28, 96, 1),  # 512 channels (the columns past the L1), three images
]
DATA = [  # (dx has c channels: the product's outputs; dy's k are summed)
    (1, 70, 36, 36, 64, 1),  # 70 outputs: a part block; 1296 positions: 20 blocks + 16
    (2, 256, 35, 35, 64, 1),  # two images of 1225 positions (a last block of 9)
    (4, 40, 56, 56, 64, 1),  # four images: items of 4 blocks
    (1, 132, 37, 37, 128, 2),  # two groups of 64 > 66; 1369 positions
    (1, 96, 36, 36, 512, 1),  # 512 channels of dy summed
]
CASES = [("fwd", c) for c in FORWARD] + [("data", c) for c in DATA]
IDS = [d + "-" + "x".join(map(str, c)) for d, c in CASES]

RUNS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import fastconv
    from fastconv import _core
    from fastconv import functional as F
    from test_inference_native import _conv_plan
    direction, case = json.loads(sys.argv[2])
    n, c, h, w, k, g = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c // g, 1, 1)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    dy = rng.standard_normal((n, k, h, w)).astype(np.float32)
    if sys.argv[4] == "nonfinite":
        (x if direction == "fwd" else dy)[0, 3, 1, 2] = np.nan
        wt[5, 7, 0, 0] = np.inf
    saved = [a.copy() for a in (x, wt, b, dy)]

    def run():
        if direction == "fwd":
            return F.conv2d(x, wt, b, groups=g, algo="gemm1x1")
        return F.conv2d_backward(dy, x, wt, groups=g, needs=(True, False, False),
                                 algo="gemm1x1")[0]

    out = {}
    for threads in (1, 2, 3, 2):
        fastconv.set_num_threads(threads)
        out[f"y{threads}" if f"y{threads}" not in out else "again"] = run()
    fused = True
    if direction == "fwd" and g == 1:  # (a one-step plan: the prepared forward's epilogue)
        res = rng.standard_normal(out["y2"].shape).astype(np.float32)
        p, shape = _conv_plan(x, wt, b, _core.ALGO_NAMES.index("gemm1x1"), 0, residual=res, act=1)
        y = np.empty(shape, np.float32)
        p.run(np.concatenate([x.reshape(-1), res.reshape(-1)]), y.reshape(-1))
        want = out["y2"] + res
        relu = np.where((want > 0) | np.isnan(want), want, np.float32(0))  # (NaN stays NaN)
        fused = bool(np.array_equal(y, relu, equal_nan=True))
    np.savez(sys.argv[3], x=x, w=wt, b=b, dy=dy, **out)
    untouched = all(np.array_equal(a, s, equal_nan=True) for a, s in zip((x, wt, b, dy), saved))
    print(json.dumps([fastconv.isa(), fastconv.hardware()["full_avx512"], untouched, fused]))
    """
)

# A call's workspaces of 1 MiB or more go back to the library's cache, whose size
# memory_cache_stats() reports: the path packs the weights (here 600 x 512 floats, 1.2 MB) into
# a workspace of their size; the GEMM (in place) takes none.
WORKSPACE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import fastconv
    from fastconv import functional as F
    direction = sys.argv[2]
    rng = np.random.default_rng(0)
    if direction == "fwd":  # 512 > 600 at 28x28
        x = rng.standard_normal((1, 512, 28, 28)).astype(np.float32)
        w = rng.standard_normal((600, 512, 1, 1)).astype(np.float32)
    else:  # dx of 600 channels from dy's 512 at 36x36
        x = rng.standard_normal((1, 600, 36, 36)).astype(np.float32)
        w = rng.standard_normal((512, 600, 1, 1)).astype(np.float32)
    dy = rng.standard_normal((1, 512) + x.shape[2:]).astype(np.float32)
    fastconv.empty_cache()
    if direction == "fwd":
        F.conv2d(x, w, algo="gemm1x1")
    else:
        F.conv2d_backward(dy, x, w, needs=(True, False, False), algo="gemm1x1")
    print(json.dumps(fastconv.memory_cache_stats()["workspace_held_bytes"]))
    """
)


def _runs(tmp_path, case, full, mode="finite", **env):
    path = tmp_path / f"full{full}-{mode}-{len(env)}.npz"
    got = run_isa_json(
        "avx512", RUNS, json.dumps(case), path, mode, FASTCONV_FULL_AVX512=full, **env
    )
    # (the table asked for; inputs untouched; the plan's epilogue on the rows, bit for bit)
    assert got == ["avx512", full == "1", True, True]
    with np.load(path) as f:
        return dict(f)


def _expected(direction, r, groups):
    if direction == "fwd":
        return expected_forward(r["x"], r["w"], r["b"], 1, 0, 1, groups)
    (dx, _, _), (sdx, _, _) = expected_backward(r["dy"], r["x"], r["w"], 1, 0, 1, groups)
    return dx, sdx


@pytest.mark.parametrize("direction,case", CASES, ids=IDS)
def test_rows_product_against_the_reference(direction, case, tmp_path):
    r = _runs(tmp_path, [direction, case], "1")
    want, scale = _expected(direction, r, case[5])
    assert_close(r["y1"], want, np.float32, scale, "y" if direction == "fwd" else "grad_x")
    for key in ("y2", "y3", "again"):
        assert np.array_equal(r[key], r["y1"]), key  # the bits follow the shape only
    # the output blocks cut in parts among more items: the same bits
    cut = _runs(tmp_path, [direction, case], "1", FASTCONV_WORK_ITEMS="64")
    assert np.array_equal(cut["y2"], r["y2"])


@pytest.mark.parametrize("direction", ["fwd", "data"])
def test_the_path_ran_on_the_full_rate_table_only(direction):
    packed = 600 * 512 * 4  # (600 outputs: 100 whole blocks of 6; a multiple of 64 bytes)
    held = {f: run_isa_json("avx512", WORKSPACE, direction, FASTCONV_FULL_AVX512=f) for f in "10"}
    assert held == {"1": packed, "0": 0}


@pytest.mark.parametrize("direction,case", [CASES[0], CASES[3], CASES[5], CASES[8]])
def test_non_finite_inputs_land_where_the_reference_puts_them(direction, case, tmp_path):
    r = _runs(tmp_path, [direction, case], "1", "nonfinite")
    n, c, h, w, k, g = case
    ws = r["w"].reshape(g, k // g, c // g).astype(np.float64)
    with np.errstate(invalid="ignore"):
        if direction == "fwd":
            xs = r["x"].reshape(n, g, c // g, h * w).astype(np.float64)
            want = np.einsum("gkc,ngcp->ngkp", ws, xs).reshape(n, k, h, w)
            want += r["b"].astype(np.float64)[None, :, None, None]
        else:
            dys = r["dy"].reshape(n, g, k // g, h * w).astype(np.float64)
            want = np.einsum("gkc,ngkp->ngcp", ws, dys).reshape(n, c, h, w)
    got = r["y2"]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got).any() and np.isinf(got).any()
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-4, atol=1e-3)

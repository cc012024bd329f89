"""Unit-stride 1x1 forwards on the short product's register tile (conv/im2col.cpp,
forward_1x1_rows; float on the full-rate AVX-512 tables, onto planes of 28x28 or more with up to
512 input channels, at one or two images or where the layer has no more outputs than inputs):
the weights packed into the tile's blocks (once, in a prepared forward), each block of positions
copied into the thread's own buffer, every output one chain of multiply-adds. conftest pins the
half-rate table, so the runs here are in subprocesses with FASTCONV_FULL_AVX512=1 (and =0 for
the GEMM it replaces). Against the float64 reference within the accuracy contract, on shapes
that leave a part block of outputs (6 a block) and of positions (64 a block), two and four
images (items of several blocks), groups; the same bits at 1, 2 and 3 threads, twice in a row,
and with the output blocks cut in parts (FASTCONV_WORK_ITEMS); a one-step plan (weights packed
once, bias, residual and ReLU on the rows) bit for bit the ordinary forward followed by the
same operations; inputs untouched; a NaN and an infinity land where the reference puts them."""

import json
import textwrap

import numpy as np
import pytest

from _isa import AVAILABLE_ISAS, run_isa_json
from conftest import assert_close, expected_forward

pytestmark = pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="needs an AVX-512 CPU")

# (n, c, h, w, k, groups)
CASES = [
    (1, 64, 28, 28, 70, 1),  # 70 outputs: 11 blocks and one of 4; 784 positions: 12 blocks + 16
    (2, 64, 30, 30, 256, 1),  # widening at two images; 900 positions: a last block of 4
    (4, 64, 56, 56, 40, 1),  # four images: items of 4 blocks (256 positions), the last of 64
    (1, 128, 29, 29, 66, 2),  # two groups of 64 > 33; 841 positions
    (3, 512, 28, 28, 96, 1),  # 512 channels (the columns past the L1), three images
]
IDS = ["x".join(map(str, c)) for c in CASES]

RUNS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import fastconv
    from fastconv import _core
    from fastconv import functional as F
    from test_inference_native import _conv_plan
    case = json.loads(sys.argv[2])
    n, c, h, w, k, g = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c // g, 1, 1)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    if sys.argv[4] == "nonfinite":
        x[0, 3, 1, 2] = np.nan
        wt[5, 7, 0, 0] = np.inf
    x0, w0, b0 = x.copy(), wt.copy(), b.copy()
    out = {}
    for threads in (1, 2, 3, 2):
        fastconv.set_num_threads(threads)
        key = f"y{threads}" if f"y{threads}" not in out else "again"
        out[key] = F.conv2d(x, wt, b, groups=g, algo="gemm1x1")
    fused, scratch = True, None
    if g == 1:  # (a one-step plan: the prepared forward with its epilogue)
        res = rng.standard_normal(out["y2"].shape).astype(np.float32)
        p, shape = _conv_plan(x, wt, b, _core.ALGO_NAMES.index("gemm1x1"), 0, residual=res, act=1)
        y = np.empty(shape, np.float32)
        p.run(np.concatenate([x.reshape(-1), res.reshape(-1)]), y.reshape(-1))
        want = out["y2"] + res
        relu = np.where((want > 0) | np.isnan(want), want, np.float32(0))  # (NaN stays NaN)
        fused = bool(np.array_equal(y, relu, equal_nan=True))
        scratch = p.workspace()[0]
    np.savez(sys.argv[3], x=x, w=wt, b=b, **out)
    untouched = all(np.array_equal(a, a0, equal_nan=True) for a, a0 in ((x, x0), (wt, w0), (b, b0)))
    print(json.dumps([fastconv.isa(), fastconv.hardware()["full_avx512"], untouched, fused,
                      scratch]))
    """
)


def _runs(tmp_path, case, full, mode="finite", **env):
    path = tmp_path / f"full{full}-{mode}-{len(env)}.npz"  # (the plan's scratch bytes: "scratch")
    got = run_isa_json(
        "avx512", RUNS, json.dumps(case), path, mode, FASTCONV_FULL_AVX512=full, **env
    )
    # (the table asked for; inputs untouched; the plan's epilogue on the rows, bit for bit)
    assert got[:4] == ["avx512", full == "1", True, True]
    with np.load(path) as f:
        return dict(f, scratch=got[4])


def _copies_columns(r, case):
    """Whether the plan's run took a workspace for the copied columns (64 positions of every
    input channel of a group, a thread): the rows path ran (the GEMM's in place takes none)."""
    return r["scratch"] >= case[1] // case[5] * 64 * 4


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rows_forward_against_the_reference(case, tmp_path):
    r = _runs(tmp_path, case, "1")
    want, scale = expected_forward(r["x"], r["w"], r["b"], 1, 0, 1, case[5])
    assert_close(r["y1"], want, np.float32, scale, "y")
    for key in ("y2", "y3", "again"):
        assert np.array_equal(r[key], r["y1"]), key  # the bits follow the shape only
    # the output blocks cut in parts among more items: the same bits
    assert np.array_equal(_runs(tmp_path, case, "1", FASTCONV_WORK_ITEMS="64")["y2"], r["y2"])
    if case[5] == 1:  # (the path ran, and not with the half-rate table: the GEMM)
        assert _copies_columns(r, case)
        assert not _copies_columns(_runs(tmp_path, case, "0"), case)


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=[IDS[0], IDS[3]])
def test_non_finite_inputs_land_where_the_reference_puts_them(case, tmp_path):
    r = _runs(tmp_path, case, "1", "nonfinite")
    n, c, h, w, k, g = case
    xs = r["x"].reshape(n, g, c // g, h * w).astype(np.float64)
    ws = r["w"].reshape(g, k // g, c // g).astype(np.float64)
    with np.errstate(invalid="ignore"):
        want = np.einsum("gkc,ngcp->ngkp", ws, xs).reshape(n, k, h, w)
        want += r["b"].astype(np.float64)[None, :, None, None]
    got = r["y2"]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got).any() and np.isinf(got).any()
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-4, atol=1e-3)

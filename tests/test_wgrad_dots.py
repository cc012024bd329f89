"""gemm1x1's weight gradient as dot products along the planes (conv/gemm1x1.cpp,
weight_grad_dots; the float tile dots_tile, 3x8 rows on AVX-512, 3x4 on AVX2): on full-rate
AVX-512 cores, with either table, one or two images onto 28x28-35x35 output planes with 64+
channels each way. conftest pins the half-rate table, so the runs here are in subprocesses with
FASTCONV_FULL_AVX512=1 (and =0 for the GEMM they replace), with each table. Against the float64
reference within the accuracy contract, on shapes that leave part tiles both ways (rows of the
larger operand in threes, of the smaller in eights or fours),
with either operand the larger (dW's values stored across its rows or down its columns), two
images, planes cut into pieces (35x35: two chunks), strided 1x1s (x gathered into the aligned
copy); the same bits at 1, 2 and 3 threads and twice in a row; inputs untouched; a NaN and an
infinity land where the reference puts them."""

import json
import textwrap

import numpy as np
import pytest

from _isa import AVAILABLE_ISAS, run_isa_json
from conftest import assert_close, expected_backward

pytestmark = pytest.mark.skipif("avx512" not in AVAILABLE_ISAS, reason="needs an AVX-512 CPU")

# (n, c, h, w, k, stride)
CASES = [
    (1, 64, 28, 28, 70, 1),  # dy the larger (70 rows: a last tile of one), x in whole eights
    (2, 100, 30, 30, 64, 1),  # x the larger: dW stored down its columns; two images
    (1, 67, 35, 35, 64, 1),  # 1225 positions: two pieces of the plane
    (1, 70, 28, 28, 128, 1),  # x in eights with a part tile (70 = 8 x 8 + 6)
    (2, 64, 56, 56, 66, 2),  # strided: x gathered onto 28x28, two images
    (1, 64, 57, 57, 72, 2),  # strided onto 29x29 from an odd width
]
IDS = ["x".join(map(str, c)) for c in CASES]

RUNS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import fastconv
    from fastconv import functional as F
    case = json.loads(sys.argv[2])
    n, c, h, w, k, st = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, 1, 1)).astype(np.float32)
    ho, wo = (h - 1) // st + 1, (w - 1) // st + 1
    dy = rng.standard_normal((n, k, ho, wo)).astype(np.float32)
    if sys.argv[4] == "nonfinite":
        x[0, 3, st, 2 * st] = np.nan  # (a position the stride reads)
        dy[-1, 5, -1, -1] = np.inf
    x0, dy0 = x.copy(), dy.copy()
    out = {}
    for threads in (1, 2, 3, 2):
        fastconv.set_num_threads(threads)
        key = f"dw{threads}" if f"dw{threads}" not in out else "again"
        out[key] = F.conv2d_backward(dy, x, wt, stride=st, needs=(False, True, False),
                                     algo="gemm1x1")[1]
    np.savez(sys.argv[3], x=x, dy=dy, **out)
    untouched = bool(np.array_equal(x, x0, equal_nan=True) and np.array_equal(dy, dy0))
    print(json.dumps([fastconv.isa(), fastconv.hardware()["full_avx512"], untouched]))
    """
)


ISAS = ["avx512", "avx2"]  # (the file needs an AVX-512 CPU, which runs both)


def _runs(tmp_path, case, isa, full, mode="finite"):
    path = tmp_path / f"{isa}-full{full}-{mode}.npz"
    got = run_isa_json(isa, RUNS, json.dumps(case), path, mode, FASTCONV_FULL_AVX512=full)
    assert got == [isa, full == "1", True]  # (the table asked for; inputs untouched)
    with np.load(path) as f:
        return dict(f)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dot_products_against_the_reference(case, isa, tmp_path):
    r = _runs(tmp_path, case, isa, "1")
    st = case[5]
    w = np.zeros((case[4], case[1], 1, 1), np.float32)
    (_, want, _), (_, scale, _) = expected_backward(r["dy"], r["x"], w, st, 0, 1, 1)
    assert_close(r["dw1"], want, np.float32, scale, "grad_w")
    for key in ("dw2", "dw3", "again"):
        assert np.array_equal(r[key], r["dw1"]), key  # the bits follow the shape only
    # (and they are the tile's own: the GEMM's order of the sums gives other bits)
    assert not np.array_equal(_runs(tmp_path, case, isa, "0")["dw1"], r["dw1"])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=[IDS[1], IDS[4]])
def test_non_finite_inputs_land_where_the_reference_puts_them(case, isa, tmp_path):
    r = _runs(tmp_path, case, isa, "1", "nonfinite")
    st = case[5]
    xs = r["x"][:, :, ::st, ::st].reshape(case[0], case[1], -1).astype(np.float64)
    dys = r["dy"].reshape(case[0], case[4], -1).astype(np.float64)
    with np.errstate(invalid="ignore"):
        want = np.einsum("nkp,ncp->kc", dys, xs)
    got = r["dw1"][:, :, 0, 0]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got).any() and np.isinf(got).any()
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-4, atol=1e-3)

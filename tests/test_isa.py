"""Every micro-kernel set runs on this machine's tests: FASTCONV_ISA forces the lower ones, so the
AVX2 and generic paths are checked on an AVX-512 machine too (in a subprocess: the choice is
made once, at load time)."""

import textwrap

import pytest

from _isa import AVAILABLE_ISAS, run_isa_json

pytestmark = pytest.mark.slow  # every test here is a forced-ISA subprocess

SCRIPT = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import fastconv
    sys.path.insert(0, sys.argv[1])
    from reference import conv2d_ref, conv2d_backward_ref
    rng = np.random.default_rng(0)
    cases = [  # x shape, w shape, stride, padding, dilation, groups: channel/width remainders
        ((2, 5, 11, 13), (9, 5, 3, 3), (1, 1), (1, 1), (1, 1), 1),
        ((1, 6, 17, 19), (10, 3, 5, 3), (2, 3), (2, 1), (1, 2), 2),
        ((2, 4, 9, 33), (8, 1, 3, 3), (1, 2), (1, 1), (2, 1), 4),
        ((1, 3, 15, 15), (5, 3, 1, 7), (1, 1), (0, 3), (1, 1), 1),
        # rows wide enough for the register tiles: full tiles, a short tile, an overlapping
        # tail vector, border columns in the padding, channel blocks with a remainder
        ((1, 7, 6, 71), (13, 7, 3, 3), (1, 1), (1, 1), (1, 1), 1),
        ((2, 4, 7, 40), (14, 2, 5, 5), (2, 1), (2, 2), (1, 2), 2),
        ((1, 3, 4, 100), (6, 3, 2, 9), (1, 1), (0, 0), (2, 3), 1),
        ((1, 2, 3, 17), (5, 2, 3, 1), (1, 1), (0, 0), (1, 1), 1),
        # enough output channels for two k-tiles and a remainder; narrow and strided rows
        ((2, 6, 9, 7), (37, 6, 3, 3), (1, 1), (1, 1), (1, 1), 1),
        ((1, 8, 11, 10), (40, 4, 3, 2), (3, 1), (2, 0), (2, 1), 2),
        # channel blocks (the blocked direct tiles): 30-wide rows, strided onto 5x5 and 4x4
        ((1, 24, 5, 30), (20, 24, 3, 3), (1, 1), (1, 1), (1, 1), 1),
        ((2, 24, 9, 8), (17, 24, 3, 3), (2, 2), (1, 1), (1, 1), 1),
        # a weight gradient of 27 columns over 1,600 positions: the NT dot-product tiles
        ((1, 3, 40, 45), (13, 3, 3, 3), (1, 1), (0, 0), (1, 1), 1),
    ]
    worst = 0.0
    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        for xs, ws, s, p, d, g in cases:
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            y_ref = conv2d_ref(x, w, None, s, p, d, g)
            dy = rng.standard_normal(y_ref.shape).astype(dtype)
            dx_ref, dw_ref, _ = conv2d_backward_ref(dy, x, w, s, p, d, g)
            scale_y = conv2d_ref(abs(x), abs(w), None, s, p, d, g) + 1e-30
            sx, sw, _ = conv2d_backward_ref(abs(dy), abs(x), abs(w), s, p, d, g)
            for algo in fastconv.algorithms(xs, ws, stride=s, padding=p, dilation=d, groups=g):
                kw = dict(stride=s, padding=p, dilation=d, groups=g, algo=algo)
                y = fastconv.conv2d(x, w, **kw)
                dx, dw, _ = fastconv.conv2d_backward(dy, x, w, **kw)
                for got, ref, sc in ((y, y_ref, scale_y), (dx, dx_ref, sx + 1e-30),
                                     (dw, dw_ref, sw + 1e-30)):
                    worst = max(worst, float(np.max(np.abs(got - ref) / sc)) / tol)
    print(json.dumps({"isa": fastconv.isa(), "worst": worst}))
""")


@pytest.mark.parametrize("tile", ["pos", "k"])
@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_isa_forced_matches_reference(isa, tile):
    # FASTCONV_DIRECT_TILE forces the direct forward's register tile: vectors over positions
    # ("pos") or over output channels ("k"); both must match on every ISA.
    res = run_isa_json(isa, SCRIPT, FASTCONV_DIRECT_TILE=tile)
    assert res["isa"] == isa
    assert res["worst"] <= 1.0, res  # error / tolerance, worst case over every algorithm

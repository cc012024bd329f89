"""pytest-benchmark regression tracking for the convolution kernels (not part of the tests:
bench/ is outside testpaths). Run: python -m pytest bench/test_bench_conv.py --benchmark-only
Compare runs with --benchmark-autosave / --benchmark-compare."""

import numpy as np
import pytest

import fastconv
from fastconv.bench import layer_cases

BATCH = 2
CASES = [c[:5] for c in layer_cases(BATCH)] + [
    ("resnet 1x1 256->64", (BATCH, 256, 56, 56), (64, 256, 1, 1), 1, 0),
    ("resnet 1x1 1024->256", (BATCH, 1024, 14, 14), (256, 1024, 1, 1), 1, 0),
    ("dilated 3x3 d2", (BATCH, 256, 64, 64), (256, 256, 3, 3), 1, 2),
    ("depthwise 3x3", (BATCH, 256, 56, 56), (256, 1, 3, 3), 1, 1),
]


def _params(case):
    name, xs, ws, s, p = case
    groups = xs[1] if ws[1] == 1 and xs[1] > 1 else 1
    dilation = 2 if name.startswith("dilated") else 1
    return name, xs, ws, dict(stride=s, padding=p, dilation=dilation, groups=groups)


@pytest.fixture(scope="module", autouse=True)
def threads():
    with fastconv.threads(2):
        yield


@pytest.mark.parametrize("direction", ["fwd", "bwd_data", "bwd_weight"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conv(benchmark, case, direction):
    name, xs, ws, kw = _params(case)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    y = fastconv.conv2d(x, w, **kw)
    if direction == "fwd":
        benchmark(fastconv.conv2d, x, w, **kw)
    else:
        needs = (True, False, False) if direction == "bwd_data" else (False, True, False)
        benchmark(fastconv.conv2d_backward, y, x, w, needs=needs, **kw)

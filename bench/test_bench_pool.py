"""pytest-benchmark regression tracking for the pooling kernels (not part of the tests: bench/ is
outside testpaths). Run: python -m pytest bench/test_bench_pool.py --benchmark-only
Compare runs with --benchmark-autosave / --benchmark-compare. The side-by-side table against
PyTorch and memcpy is bench/bench_pool.py."""

import numpy as np
import pytest

import fastconv

BATCH = 8
LAYERS = [  # name, x shape, kernel, stride, padding
    ("alexnet 3/2", (BATCH, 64, 55, 55), 3, 2, 0),
    ("vgg 2/2", (BATCH, 64, 112, 112), 2, 2, 0),
    ("googlenet 3/2 p1", (BATCH, 192, 56, 56), 3, 2, 1),
    ("resnet stem 3/2 p1", (BATCH, 64, 112, 112), 3, 2, 1),
]


@pytest.fixture(scope="module", autouse=True)
def threads():
    with fastconv.threads(2):
        yield


@pytest.mark.parametrize(
    "op", ["max_fwd_switches", "max_fwd", "max_bwd", "unpool", "avg_fwd", "avg_bwd"]
)
@pytest.mark.parametrize("layer", LAYERS, ids=[c[0] for c in LAYERS])
def test_pool(benchmark, layer, op):
    _, shape, k, s, p = layer
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    y, idx = fastconv.max_pool2d(x, k, s, p, return_indices=True)
    calls = {
        "max_fwd_switches": lambda: fastconv.max_pool2d(x, k, s, p, return_indices=True),
        "max_fwd": lambda: fastconv.max_pool2d(x, k, s, p),
        "max_bwd": lambda: fastconv.max_pool2d_backward(y, idx, shape),
        "unpool": lambda: fastconv.max_unpool2d(y, idx, k, s, p, shape[2:]),
        "avg_fwd": lambda: fastconv.avg_pool2d(x, k, s, p),
        "avg_bwd": lambda: fastconv.avg_pool2d_backward(y, shape, k, s, p),
    }
    benchmark(calls[op])


@pytest.mark.parametrize("shape", [(BATCH, 2048, 7, 7), (BATCH, 512, 14, 14)], ids=["7x7", "14x14"])
def test_global_avg_pool(benchmark, shape):
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    benchmark(fastconv.adaptive_avg_pool2d, x, 1)

"""Python ints beyond the C integer an argument becomes in _core: an OverflowError naming the
argument, raised in Python (pybind11 said only "incompatible function arguments")."""

import numpy as np
import pytest

import fastconv
from fastconv import functional as F

BIG = 2**63  # one past int64
X = np.ones((1, 2, 6, 6))
W = np.ones((3, 2, 3, 3))
G = np.ones((1, 2, 3, 3))
IDX = np.zeros((1, 2, 3, 3), np.int64)

CASES = [
    ("stride", lambda: F.conv2d(X, W, stride=BIG)),
    ("stride", lambda: F.conv2d(X, W, stride=(1, BIG))),
    ("padding", lambda: F.conv2d(X, W, padding=(BIG, 1))),
    ("groups", lambda: F.conv2d(X, W, groups=BIG)),
    ("stride", lambda: F.conv2d_backward(np.ones((1, 3, 1, 1)), X, W, stride=BIG)),
    ("stride", lambda: F.conv1d(np.ones((1, 2, 6)), np.ones((3, 2, 3)), stride=BIG)),
    ("stride", lambda: F.algorithms(X.shape, W.shape, stride=BIG)),
    ("stride", lambda: F.max_pool2d(X, 2, stride=BIG)),
    ("stride", lambda: F.avg_pool2d(X, 2, stride=BIG)),
    ("divisor_override", lambda: F.avg_pool2d(X, 2, divisor_override=BIG)),
    ("divisor_override", lambda: F.avg_pool2d(X, 2, divisor_override=-BIG - 1)),
    ("divisor_override", lambda: F.avg_pool2d_backward(G, X.shape, 2, divisor_override=BIG)),
    ("output_size", lambda: F.adaptive_avg_pool2d(np.ones((0, 2, 6, 6)), (BIG, 1))),
    ("input_shape", lambda: F.max_pool2d_backward(G, IDX, (1, 2, BIG, 6))),
    ("limit_bytes", lambda: fastconv.set_memory_cache(2**64)),
]


@pytest.mark.parametrize("name,call", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_out_of_range_int_names_the_argument(name, call):
    with pytest.raises(OverflowError, match=rf"^{name}=-?\d+ does not fit in u?int64"):
        call()


def test_largest_c_values_still_pass_the_check():
    limit = fastconv.memory_cache_stats()["limit_bytes"]
    try:
        fastconv.set_memory_cache(2**64 - 1)  # size_t's largest
        assert fastconv.memory_cache_stats()["limit_bytes"] == 2**64 - 1
    finally:
        fastconv.set_memory_cache(limit)
    y = F.avg_pool2d(X, 2, divisor_override=2**63 - 1)  # int64's largest: a tiny average
    assert y.shape == (1, 2, 3, 3) and np.all((y >= 0) & (y < 1e-15))


def test_torch_dropin_names_the_argument():
    torch = pytest.importorskip("torch")
    import fastconv.torch as fct

    with pytest.raises(OverflowError, match="divisor_override"):
        fct.avg_pool2d(torch.ones(1, 2, 6, 6, dtype=torch.float64), 2, divisor_override=BIG)

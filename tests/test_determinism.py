"""Bitwise reproducibility (issue 12, item 3; README, "Determinism").

- Every algorithm that supports a shape, in every direction (forward with bias, data, weight and
  bias gradients), float32 and float64, gives the same bits on repeated calls, and the same bits
  at 1, 2, 3 and 4 threads.
- Every pooling op (max with switches and its backward, unpooling both ways, average, adaptive
  average) and the ReLU kernels likewise.
- A short training run (a conv net with a Winograd 3x3 layer, 5 SGD steps) repeated with the same
  seed gives the same parameters, in one process and at 1 against 2 threads.
Comparisons are on the bytes (`tobytes()`), never with a tolerance.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from conftest import DTYPE_IDS, DTYPES, Case
from fastconv import nn, optim
from fastconv.autograd import Tensor, manual_seed
from fastconv.nn import functional as F

THREADS = [1, 2, 3, 4]

# Thread-count dependent (run-to-run deterministic) exceptions, documented in README.md,
# "Determinism": (algorithm, direction) pairs. None today.
THREAD_EXCEPTIONS = set()

PROBE = Case(8, 16, 64, 64, 16, 3, 3, padding=1)  # the probe
CASES = [
    Case(1, 16, 19, 23, 24, 3, 3, padding=1),  # batch 1: blocks split
    Case(2, 8, 17, 17, 16, 3, 3, stride=2, padding=1),  # strided
    Case(2, 8, 16, 16, 8, 3, 3, padding=2, dilation=2),  # dilated
    Case(2, 12, 14, 14, 18, 3, 3, padding=1, groups=3),  # grouped
    Case(2, 16, 15, 15, 16, 3, 3, padding=1, groups=16),  # depthwise
    Case(
        3, 8, 16, 16, 16, 3, 3, stride=2, padding=1, groups=8
    ),  # depthwise, 2 per channel, strided
    Case(2, 32, 9, 9, 24, 1, 1),  # 1x1 in place
    Case(1, 64, 1, 37, 48, 1, 1),  # a linear layer as a 1x1
    Case(2, 4, 24, 24, 6, 9, 9, padding=4),  # large kernel (FFT)
    Case(2, 24, 30, 30, 40, 3, 3, padding=1),  # Winograd, several tile blocks
]
# The last case, Winograd over several tile blocks, takes seconds per check: slow (the fast loop
# keeps test_winograd_shared_z_same_bits_at_every_thread_count for Winograd's threading).
CASE_PARAMS = [
    pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c is CASES[-1] else []) for c in CASES
]
# Winograd's weight gradient with one shared Z (large Z: many channels, few tiles).
WINOGRAD_LARGE = Case(2, 256, 6, 6, 256, 3, 3, padding=1)


def run_case(case, dtype, algo, seed=0):
    """(y, dx, dw, db) of one algorithm on one case."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.k).astype(dtype)
    y = fastconv.conv2d(x, w, b, algo=algo, **case.params)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return (y,) + tuple(fastconv.conv2d_backward(dy, x, w, algo=algo, **case.params))


def bits(arrays):
    return tuple(None if a is None else (a.dtype.str, a.shape, a.tobytes()) for a in arrays)


DIRECTIONS = ["forward", "backward_data", "backward_weight", "bias"]


def differing(a, b):
    return [d for d, u, v in zip(DIRECTIONS, a, b) if u != v]


def algos(case):
    return fastconv.algorithms(case.x_shape, case.w_shape, **case.params)


def check_repeats(case, dtype, repeats, threads, slow=()):
    for algo in algos(case):
        with fastconv.threads(threads):
            first = bits(run_case(case, dtype, algo))
            for i in range(2 if algo in slow else repeats):
                diff = differing(first, bits(run_case(case, dtype, algo)))
                assert not diff, (
                    f"{algo} {case.id} at {threads} threads: call {i + 2} differs in {diff}"
                )


def check_threads(case, dtype, skip=()):
    for algo in algos(case):
        if algo in skip:
            continue
        with fastconv.threads(1):
            one = bits(run_case(case, dtype, algo))
        for t in THREADS[1:]:
            with fastconv.threads(t):
                other = bits(run_case(case, dtype, algo))
                again = bits(run_case(case, dtype, algo))
            diff = differing(other, again)
            assert not diff, f"{algo} {case.id} at {t} threads differs run to run in {diff}"
            diff = [d for d in differing(one, other) if (algo, d) not in THREAD_EXCEPTIONS]
            assert not diff, f"{algo} {case.id}: {t} threads differ from 1 thread in {diff}"


# --------------------------------------------------------------------------------------------
# convolution


@pytest.mark.slow  # the probe is 8x16x64x64: seconds per algorithm and direction
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_probe_repeats_give_identical_bits(dtype):
    # the probe: 20 calls gave 4 different weight gradients at 2 threads
    assert "winograd" in algos(PROBE)
    check_repeats(PROBE, dtype, repeats=10, threads=2, slow=("reference", "fft"))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_probe_same_bits_at_every_thread_count(dtype):
    check_threads(PROBE, dtype, skip=("reference",))  # (slow here; checked on the other cases)


@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_repeats_give_identical_bits(case, dtype):
    check_repeats(case, dtype, repeats=3, threads=2)


@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_same_bits_at_every_thread_count(case, dtype):
    check_threads(case, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_winograd_shared_z_same_bits_at_every_thread_count(dtype):
    # Z of 256x256 channels: the weight gradient's shared-Z path, whichever the thread count
    with fastconv.threads(1):
        one = bits(run_case(WINOGRAD_LARGE, dtype, "winograd"))
    for t in THREADS[1:]:
        with fastconv.threads(t):
            other = bits(run_case(WINOGRAD_LARGE, dtype, "winograd"))
            diff = differing(other, bits(run_case(WINOGRAD_LARGE, dtype, "winograd")))
        assert not diff, f"{t} threads differ run to run in {diff}"
        diff = differing(one, other)
        assert not diff, f"{t} threads differ from 1 thread in {diff}"


# --------------------------------------------------------------------------------------------
# pooling and ReLU


def pool_ops(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 16, 37, 41)).astype(dtype)
    x[:, :, ::5, ::7] = 1.5  # ties: the switch must be the same one every time
    out = []
    y, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
    out += [
        y,
        idx,
        fastconv.max_pool2d_backward(rng.standard_normal(y.shape).astype(dtype), idx, x.shape),
    ]
    y2, idx2 = fastconv.max_pool2d(
        x, 3, 1, 1, dilation=2, return_indices=True
    )  # overlapping windows
    out += [
        y2,
        idx2,
        fastconv.max_pool2d_backward(rng.standard_normal(y2.shape).astype(dtype), idx2, x.shape),
    ]
    u = fastconv.max_unpool2d(
        y, idx, 3, 2, 1, output_size=x.shape[2:]
    )  # overlaps: duplicate switches
    out += [u, fastconv.max_unpool2d_backward(rng.standard_normal(u.shape).astype(dtype), idx)]
    for incl, ceil in [(True, False), (False, True)]:
        a = fastconv.avg_pool2d(x, 3, 2, 1, ceil_mode=ceil, count_include_pad=incl)
        ga = fastconv.avg_pool2d_backward(
            rng.standard_normal(a.shape).astype(dtype),
            x.shape,
            3,
            2,
            1,
            ceil_mode=ceil,
            count_include_pad=incl,
        )
        out += [a, ga]
    for size in [(3, 5), 1, (37, 41)]:
        g = fastconv.adaptive_avg_pool2d(x, size)
        out += [
            g,
            fastconv.adaptive_avg_pool2d_backward(
                rng.standard_normal(g.shape).astype(dtype), x.shape
            ),
        ]
    return out


def relu_ops(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(300_001).astype(dtype)  # several 64 Ki-element jobs
    t = Tensor(x, requires_grad=True)
    y = F.relu(t)
    y.backward(Tensor(rng.standard_normal(x.shape).astype(dtype)))
    return [y.data, t.grad.data if isinstance(t.grad, Tensor) else t.grad]


@pytest.mark.parametrize("ops", [pool_ops, relu_ops], ids=["pool", "relu"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_pool_and_relu_same_bits_run_to_run_and_at_every_thread_count(ops, dtype):
    with fastconv.threads(1):
        one = bits(ops(dtype))
    for t in THREADS:
        with fastconv.threads(t):
            for _ in range(2):
                assert bits(ops(dtype)) == one, f"{ops.__name__} at {t} threads"


# --------------------------------------------------------------------------------------------
# training


class WinogradConv2d(nn.Conv2d):
    """A Conv2d pinned to Winograd both ways (the issue's nondeterministic weight gradient)."""

    def forward(self, x):
        return F.conv2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            algo="winograd",
        )


def train(steps=5, seed=3):
    manual_seed(seed)
    model = nn.Sequential(
        WinogradConv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),  # auto's choice
        WinogradConv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32),
        nn.ReLU(),  # depthwise, strided
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = Tensor(rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
        target = rng.integers(0, 10, 8)
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
    return [p.data.tobytes() for p in model.parameters()]


@pytest.mark.slow  # (the fast loop keeps the 1-against-2-threads training run below)
def test_training_repeated_gives_identical_parameters():
    with fastconv.threads(2):
        first, second = train(), train()
    assert first == second, "two identical trainings at 2 threads differ"


def test_training_same_parameters_at_one_and_two_threads():
    with fastconv.threads(1):
        one = train()
    with fastconv.threads(2):
        two = train()
    assert one == two, "the training at 1 thread differs from the one at 2 threads"


# --------------------------------------------------------------------------------------------
# more work items (fastconv.hardware()["work_items"]: 8 here, up to 64 on machines of more CPUs)

# The modules whose tests exercise every partition that follows the work items: the GEMM paths'
# column blocks, run tiles and weight-gradient slots, Winograd's slots and staged blocks, the
# blocked direct forward's runs, linear's tiles; their thread and reference checks.
WORK_ITEMS_MODULES = [
    "tests/test_determinism.py",
    "tests/test_im2col_paths.py",
    "tests/test_winograd.py",
    "tests/test_direct_blocked.py",
    "tests/test_linear_algo.py",
]


@pytest.mark.slow  # a pytest subprocess over five modules: about 20 s
@pytest.mark.parametrize("items", ["32"])
def test_partitions_of_more_work_items_keep_bits_and_accuracy(items):
    """A machine of more CPUs cuts its partitions into more work items (fixed at load); its
    results must stay within the accuracy contract and the same at every thread count."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, FASTCONV_WORK_ITEMS=items)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
    cmd += ["-k", "not work_items", *WORK_ITEMS_MODULES]
    done = subprocess.run(
        cmd, cwd=root, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "no tests ran" not in done.stdout


def test_work_items_follow_the_machine_not_the_threads():
    with fastconv.threads(1):
        one = fastconv.hardware()["work_items"]
    with fastconv.threads(3):
        three = fastconv.hardware()["work_items"]
    assert one == three >= 8

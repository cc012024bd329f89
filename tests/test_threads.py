"""Thread safety, the GIL, determinism and leaks.

- Many Python threads calling at once (mixed shapes, ops, algorithms, failing calls) get exactly
  the results of the same calls made one after another, and each failing call its own message.
- The GIL is released inside the kernels: a Python thread keeps counting while a long kernel runs.
- Same input and same thread count give bitwise-identical outputs, for every algorithm, forward
  and backward, at 1 and 2 threads.
- Resident memory stays flat over 10,000 mixed small calls.
No assertion is about speed.
"""

import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastconv

F32, F64 = np.float32, np.float64


def arr(rng, shape, dtype=F32):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------------------------
# a mixed workload: every task is a deterministic function of its seed


def conv_task(seed, algo, x_shape, w_shape, dtype, **params):
    def run():
        rng = np.random.default_rng(seed)
        x, w = arr(rng, x_shape, dtype), arr(rng, w_shape, dtype)
        b = arr(rng, w_shape[0], dtype)
        y = fastconv.conv2d(x, w, b, algo=algo, **params)
        dy = arr(rng, y.shape, dtype)
        return (y,) + fastconv.conv2d_backward(dy, x, w, algo=algo, **params)

    return run


def pool_task(seed, shape, dtype):
    def run():
        rng = np.random.default_rng(seed)
        x = arr(rng, shape, dtype)
        y, idx = fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)
        gx = fastconv.max_pool2d_backward(arr(rng, y.shape, dtype), idx, x.shape)
        a = fastconv.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        ga = fastconv.avg_pool2d_backward(
            arr(rng, a.shape, dtype), x.shape, 3, 2, 1, ceil_mode=True, count_include_pad=False
        )
        g = fastconv.adaptive_avg_pool2d(x, (3, 5))
        return y, idx, gx, a, ga, g, fastconv.max_unpool2d(y, idx, 3, 2, 1, output_size=x.shape[2:])

    return run


def failing_task(marker):
    """A call the C library refuses with a message naming this task's own switch value."""

    def run():
        x = np.ones((1, 2, 6, 6), F32)
        y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
        idx = idx.copy()
        idx[0, 1, 2, 1] = marker
        with pytest.raises(ValueError) as e:
            fastconv.max_pool2d_backward(y, idx, x.shape)
        return str(marker) in str(e.value)

    return run


def workload():
    tasks = []
    shapes = [
        ("im2col", (2, 8, 13, 11), (16, 8, 3, 3), dict(padding=1)),
        ("direct", (1, 5, 9, 17), (7, 5, 3, 2), dict(stride=(2, 1), dilation=(1, 2))),
        ("gemm1x1", (3, 17, 7, 7), (9, 17, 1, 1), {}),
        ("gemm1x1", (2, 16, 8, 8), (8, 16, 1, 1), dict(stride=2, padding=1)),
        ("depthwise", (2, 12, 10, 10), (24, 1, 3, 3), dict(padding=1, groups=12)),
        ("reference", (1, 4, 6, 6), (6, 2, 3, 3), dict(groups=2)),
        ("auto", (4, 32, 14, 14), (32, 32, 3, 3), dict(padding=1)),
        ("im2col", (1, 3, 32, 32), (8, 3, 5, 5), dict(stride=2, padding=2)),
    ]
    for i, (algo, xs, ws, params) in enumerate(shapes):
        for dtype in (F32, F64):
            tasks.append(conv_task(100 + i, algo, xs, ws, dtype, **params))
    for i, shape in enumerate([(2, 3, 17, 19), (1, 16, 32, 32), (4, 5, 8, 9)]):
        for dtype in (F32, F64):
            tasks.append(pool_task(200 + i, shape, dtype))
    return tasks


def same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    if a is None or isinstance(a, bool):
        return a == b
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_concurrent_calls_equal_sequential_calls(restore_threads):
    fastconv.set_num_threads(2)  # one fixed count: results are then bitwise reproducible
    tasks = workload()
    expected = [t() for t in tasks]
    order = [i for i in range(len(tasks)) for _ in range(4)]
    random.Random(7).shuffle(order)
    markers = {i: 10_000 + i for i in range(len(order)) if i % 5 == 0}
    with ThreadPoolExecutor(max_workers=8) as ex:
        futures = [(i, ex.submit(tasks[t])) for i, t in enumerate(order)]
        fails = {i: ex.submit(failing_task(m)) for i, m in markers.items()}
        results = [(order[i], f.result()) for i, f in futures]
        messages = {i: f.result() for i, f in fails.items()}
    bad = [t for t, r in results if not same(r, expected[t])]
    assert not bad, f"tasks {sorted(set(bad))} gave different results when run concurrently"
    crossed = [m for m, ok in messages.items() if not ok]
    assert all(messages.values()), f"failing calls saw another thread's error message: {crossed}"


# --------------------------------------------------------------------------------------------
# the GIL


class Counter(threading.Thread):
    """Stamps perf_counter() every 1000 increments until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stamps = []
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            if n % 1000 == 0:
                self.stamps.append(time.perf_counter())


def long_calls():
    """Calls that each spend most of their time inside one kernel, grown by `scale`."""

    def conv(scale):
        x, w = np.ones((scale, 16, 48, 48), F32), np.ones((16, 16, 5, 5), F32)
        return lambda: fastconv.conv2d(x, w, padding=2, algo="reference")

    def conv_data(scale):
        x, w = np.ones((scale, 16, 48, 48), F32), np.ones((16, 16, 5, 5), F32)
        dy = np.ones((scale, 16, 48, 48), F32)
        return lambda: fastconv.conv2d_backward(
            dy, x, w, padding=2, algo="reference", needs=(True, False, False)
        )

    def conv_weight(scale):
        x, w = np.ones((scale, 16, 48, 48), F32), np.ones((16, 16, 5, 5), F32)
        dy = np.ones((scale, 16, 48, 48), F32)
        return lambda: fastconv.conv2d_backward(
            dy, x, w, padding=2, algo="reference", needs=(False, True, False)
        )

    def max_pool(scale):
        x = np.ones((scale, 4, 160, 160), F32)
        return lambda: fastconv.max_pool2d(x, 31, 1, 15, return_indices=True)

    def avg_pool(scale):
        x = np.ones((scale, 4, 160, 160), F32)
        return lambda: fastconv.avg_pool2d(x, 31, 1, 15)

    def avg_pool_backward(scale):
        dy = np.ones((scale, 4, 160, 160), F32)
        return lambda: fastconv.avg_pool2d_backward(dy, dy.shape, 31, 1, 15)

    return {
        "conv2d": conv,
        "conv2d_backward(data)": conv_data,
        "conv2d_backward(weight)": conv_weight,
        "max_pool2d": max_pool,
        "avg_pool2d": avg_pool,
        "avg_pool2d_backward": avg_pool_backward,
    }


def long_enough(make):
    """make(scale) grown (doubling scale) until one call takes >= 0.1 s; returns the call."""
    scale, call = 1, make(1)
    t0 = time.perf_counter()
    call()
    while time.perf_counter() - t0 < 0.1 and scale < 64:
        scale *= 2
        call = make(scale)
        t0 = time.perf_counter()
        call()
    return call


def progress_during(call):
    """(stamps of a counting Python thread in the middle half of call(), call's duration).

    The Python around a kernel takes microseconds, the call a tenth of a second or more, so
    the middle half lies inside the kernel: a kernel holding the GIL leaves it empty."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    counter = Counter()
    counter.start()
    try:
        while len(counter.stamps) < 3:  # the counter is up and running
            time.sleep(0.001)
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
    finally:
        counter.stop.set()
        counter.join()
        sys.setswitchinterval(old)
    lo, hi = t0 + 0.25 * (t1 - t0), t0 + 0.75 * (t1 - t0)
    return sum(lo <= s <= hi for s in counter.stamps), t1 - t0


@pytest.mark.parametrize("name", list(long_calls()))
def test_gil_is_released_inside_kernels(name, restore_threads):
    """While one long kernel runs, another Python thread keeps running."""
    fastconv.set_num_threads(1)
    inside, took = progress_during(long_enough(long_calls()[name]))
    assert inside > 0, (
        f"{name}: no Python progress during the middle of a {took:.3f} s call; "
        f"the kernel holds the GIL"
    )


def test_gil_check_sees_a_call_that_holds_the_gil():
    """The control: builtin sum() over a range runs in C without releasing the GIL, and the
    same check finds no progress during it."""
    inside, took = progress_during(long_enough(lambda scale: lambda: sum(range(scale * 10**6))))
    assert inside == 0, f"{inside} stamps during a {took:.3f} s call that holds the GIL"


# --------------------------------------------------------------------------------------------
# determinism

DETERMINISM_CASES = [
    ((1, 16, 19, 23), (24, 16, 3, 3), dict(padding=1)),  # batch 1: blocks split
    ((3, 8, 12, 12), (16, 8, 3, 3), dict(stride=2, dilation=2, padding=2)),
    ((2, 32, 9, 9), (16, 32, 1, 1), {}),  # 1x1 in place
    ((1, 12, 15, 15), (12, 1, 5, 5), dict(groups=12, padding=2)),  # depthwise
    ((2, 6, 11, 11), (9, 2, 3, 3), dict(groups=3)),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "dtype", [F32, pytest.param(F64, marks=pytest.mark.slow)], ids=["f32", "f64"]
)
def test_same_input_same_threads_gives_identical_bits(threads, dtype, restore_threads):
    fastconv.set_num_threads(threads)
    rng = np.random.default_rng(threads)
    checked = 0
    for xs, ws, params in DETERMINISM_CASES:
        x, w = arr(rng, xs, dtype), arr(rng, ws, dtype)
        b = arr(rng, ws[0], dtype)
        for algo in fastconv.algorithms(xs, ws, **params):
            y = fastconv.conv2d(x, w, b, algo=algo, **params)
            dy = arr(rng, y.shape, dtype)
            first = (y,) + fastconv.conv2d_backward(dy, x, w, algo=algo, **params)
            for _ in range(3):
                again = (fastconv.conv2d(x, w, b, algo=algo, **params),) + fastconv.conv2d_backward(
                    dy, x, w, algo=algo, **params
                )
                assert same(first, again), f"{algo} {xs} {ws} {params}: results differ run to run"
            checked += 1
    x = arr(rng, (2, 8, 37, 41), dtype)
    first = pool_task(5, x.shape, dtype)()
    for _ in range(3):
        assert same(first, pool_task(5, x.shape, dtype)()), "pooling results differ run to run"
    assert checked >= 3 * len(DETERMINISM_CASES)


# --------------------------------------------------------------------------------------------
# leaks


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_rss_stays_flat_over_10000_calls(restore_threads):
    """Mixed small calls, failing ones included; most outputs are 2-5 KB, so a leak of one
    output (or workspace) per call would add 20 MB or more."""
    fastconv.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = arr(rng, (2, 8, 12, 12))
    w3, w1, wd = arr(rng, (8, 8, 3, 3)), arr(rng, (16, 8, 1, 1)), arr(rng, (8, 1, 3, 3))
    dy = arr(rng, (2, 8, 12, 12))
    xd = x.astype(F64)
    bad_idx = np.full((2, 8, 6, 6), 10**6, np.int64)

    def refused(fn):
        try:
            fn()
        except ValueError:
            return
        raise AssertionError("expected ValueError")

    calls = [
        lambda: fastconv.conv2d(x, w3, padding=1, algo="im2col"),
        lambda: fastconv.conv2d(x, w3, padding=1, algo="direct"),
        lambda: fastconv.conv2d(x, w1, algo="gemm1x1"),
        lambda: fastconv.conv2d(x, wd, padding=1, groups=8, algo="depthwise"),
        lambda: fastconv.conv2d_backward(dy, x, w3, padding=1, algo="im2col"),
        lambda: fastconv.conv2d_backward(dy, x, w3, padding=1, algo="direct"),
        lambda: fastconv.conv2d(xd, w3.astype(F64), padding=1),
        lambda: fastconv.conv2d(x[:, :, ::2, ::2], w3, padding=1),  # non-contiguous: a copy
        lambda: fastconv.max_pool2d(x, 2, return_indices=True),
        lambda: fastconv.avg_pool2d_backward(dy[:, :, :6, :6], x.shape, 2),
        lambda: fastconv.adaptive_avg_pool2d(xd, 3),
        lambda: refused(lambda: fastconv.max_pool2d_backward(dy[:, :, :6, :6], bad_idx, x.shape)),
        lambda: refused(lambda: fastconv.conv2d(x, w3, padding=1, algo="gemm1x1")),
        lambda: refused(lambda: fastconv.conv2d(x, w3, stride=0)),
    ]
    for i in range(1000):  # warm-up: allocator pools, OpenMP threads, caches
        calls[i % len(calls)]()
    before = rss_bytes()
    for i in range(10_000):
        calls[i % len(calls)]()
    grown = rss_bytes() - before
    assert grown < 4 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 10,000 calls"

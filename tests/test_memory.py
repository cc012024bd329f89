"""The array cache behind fastconv.nn (src/fastconv/_memory.py, python/_core_memory.cpp)."""

import subprocess
import sys
import threading

import numpy as np
import pytest

import fastconv
from fastconv import _memory, nn
from fastconv.autograd import Tensor

BIG = (512, 1024)  # 2 MiB of float32: above the 1 MiB caching threshold


def handler(a):
    while a.base is not None:
        a = a.base
    core = getattr(np, "_core", None) or np.core
    return core.multiarray.get_handler_name(a)


@pytest.fixture
def cache_on():
    was = _memory.enter()
    yield
    _memory.leave(was)


@pytest.fixture
def restore_limit():
    before = fastconv.memory_cache_stats()["limit_bytes"]
    yield
    fastconv.set_memory_cache(before)


def test_only_arrays_made_inside_nn_calls_and_backward_use_the_cache():
    x = np.ones((2, 3, 8, 8), np.float32)
    assert handler(x) != "fastconv_cache"
    conv = nn.Conv2d(3, 4, 3)
    y = conv(Tensor(x, requires_grad=True))
    assert handler(y.data) == "fastconv_cache"
    y.sum().backward()
    assert handler(conv.weight.grad) == "fastconv_cache"
    assert handler(np.empty(BIG)) != "fastconv_cache"  # switched off again afterwards


def test_reused_blocks_give_zeros_where_zeros_are_asked_for(cache_on):
    a = np.empty(BIG, np.float32)
    a.fill(np.nan)
    del a
    hits = fastconv.memory_cache_stats()["hits"]
    z = np.zeros(BIG, np.float32)
    assert fastconv.memory_cache_stats()["hits"] == hits + 1
    assert not z.any()


def test_small_and_large_blocks_round_trip_through_resize(cache_on):
    for n in (10, 300_000, 1_000_000):  # plain malloc, cached, and growing across the threshold
        a = np.arange(n, dtype=np.float64)
        a.resize(n * 3, refcheck=False)
        np.testing.assert_array_equal(a[:n], np.arange(n))
        assert not a[n:].any()
        a.resize(n // 2, refcheck=False)
        np.testing.assert_array_equal(a, np.arange(n // 2))


def test_the_limit_caps_held_bytes_and_zero_turns_it_off(restore_limit):
    fastconv.set_memory_cache(3 << 20)
    was = _memory.enter()
    try:
        arrays = [np.empty(BIG, np.float32) for _ in range(4)]
        del arrays
    finally:
        _memory.leave(was)
    assert fastconv.memory_cache_stats()["held_bytes"] <= 3 << 20
    fastconv.empty_cache()
    assert fastconv.memory_cache_stats()["held_bytes"] == 0
    fastconv.set_memory_cache(0)
    arrays = [np.empty(BIG, np.float32) for _ in range(2)]
    del arrays
    assert fastconv.memory_cache_stats()["held_bytes"] == 0
    conv = nn.Conv2d(3, 4, 3)
    assert handler(conv(Tensor(np.ones((64, 3, 32, 32), np.float32))).data) != "fastconv_cache"


@pytest.mark.parametrize("bad", [-1, 1.5, "1G", True, None])
def test_bad_limits_are_rejected(bad):
    with pytest.raises(ValueError, match="limit_bytes"):
        fastconv.set_memory_cache(bad)


def test_bad_environment_value_is_named():
    r = subprocess.run(
        [sys.executable, "-c", "import fastconv"],
        capture_output=True,
        text=True,
        env={"FASTCONV_MEMORY_CACHE": "lots", "PATH": ""},
    )
    assert r.returncode != 0 and "FASTCONV_MEMORY_CACHE" in r.stderr


def test_blocks_freed_on_other_threads(cache_on):
    made = [np.ones(BIG, np.float32) * i for i in range(8)]
    errors = []

    def work(chunk):
        try:
            for a in chunk:
                assert a.sum() == a.size * a.flat[0]
            chunk.clear()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    halves = [made[:4], made[4:]]
    del made
    threads = [threading.Thread(target=work, args=(h,)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    again = [np.zeros(BIG, np.float32) for _ in range(8)]
    assert not any(a.any() for a in again)


def test_a_training_step_reuses_its_arrays():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32 * 32, 10)
    )
    x = Tensor(np.random.default_rng(0).standard_normal((32, 3, 32, 32), dtype=np.float32))
    for _ in range(2):
        model.zero_grad()
        model(x).sum().backward()
    before = fastconv.memory_cache_stats()
    model.zero_grad()
    model(x).sum().backward()
    after = fastconv.memory_cache_stats()
    assert after["hits"] > before["hits"]
    assert after["misses"] == before["misses"]


def test_a_new_working_set_displaces_the_old_one(restore_limit):
    """At the limit, the least recently cached blocks are freed to keep the newest (one
    network's arrays must not lock the next one's out of the cache)."""
    fastconv.empty_cache()
    fastconv.set_memory_cache(7 << 20)
    was = _memory.enter()
    try:
        old = [np.empty((512, 1024), np.float32) for _ in range(3)]  # 3 x 2 MiB
        del old
        new = [np.empty((768, 1024), np.float32) for _ in range(2)]  # 2 x 3 MiB
        del new
        assert fastconv.memory_cache_stats()["held_bytes"] <= 7 << 20
        hits = fastconv.memory_cache_stats()["hits"]
        again = [np.empty((768, 1024), np.float32) for _ in range(2)]
        assert fastconv.memory_cache_stats()["hits"] == hits + 2
        del again
    finally:
        _memory.leave(was)
        fastconv.empty_cache()

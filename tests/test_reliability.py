"""Regression tests for the defects of "Reliability II": dtypes compared by value, per-thread
thread counts, allocation failures (ours, OpenBLAS's, the array cache's), forked processes and
the C ABI's size and pointer checks.

Tests that change process-wide limits (RLIMIT_AS, fork, OMP_NUM_THREADS) run in a child process
with a timeout, so a crash or a hang fails the test instead of the test run.
"""

import ctypes
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastconv
from conftest import TESTS_DIR
from fastconv import _core

MiB = 1 << 20


def run_child(script, timeout=120, env=None, prelude=""):
    """Runs `prelude` then `script` in a fresh interpreter; returns (returncode, output)."""
    full_env = dict(os.environ, **(env or {}))
    code = textwrap.dedent(prelude) + textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=TESTS_DIR,
    )
    return proc.returncode, proc.stdout + proc.stderr


# --- 1. dtypes by value ----------------------------------------------------------------------


def _roundtrip(a):
    return pickle.loads(pickle.dumps(a))


def test_unpickled_arrays_are_accepted_everywhere():
    # An unpickled array's dtype is equal to np.float32 but is another object; pybind11's
    # dtype::is() compared identity and refused it ("dtype must be float32 ..., got float32").
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    xp, wp = _roundtrip(x), _roundtrip(w)
    y = fastconv.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(fastconv.conv2d(xp, wp, padding=1), y)
    np.testing.assert_array_equal(fastconv.conv2d(xp + 0, wp * 1, padding=1), y)
    dy = np.ones_like(y)
    for got, want in zip(
        fastconv.conv2d_backward(_roundtrip(dy), xp, wp, padding=1),
        fastconv.conv2d_backward(dy, x, w, padding=1),
    ):
        np.testing.assert_array_equal(got, want)
    out, idx = fastconv.max_pool2d(xp, 2, return_indices=True)
    np.testing.assert_array_equal(out, fastconv.max_pool2d(x, 2))
    # np.longlong is int64 by value ('q' beside 'l'): "indices: dtype must be int64, got int64"
    for indices in (idx.astype(np.longlong), _roundtrip(idx)):
        np.testing.assert_array_equal(
            fastconv.max_pool2d_backward(np.ones_like(out), indices, x.shape),
            fastconv.max_pool2d_backward(np.ones_like(out), idx, x.shape),
        )
        np.testing.assert_array_equal(
            fastconv.max_unpool2d(out, indices, 2), fastconv.max_unpool2d(out, idx, 2)
        )
    np.testing.assert_array_equal(
        fastconv.avg_pool2d(_roundtrip(x.astype(np.float64)), 2),
        fastconv.avg_pool2d(x.astype(np.float64), 2),
    )


def test_unpickled_model_and_cs231n_calls():
    from fastconv import nn
    from fastconv.cs231n import conv_forward_fast, max_pool_forward_fast

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = model(fastconv.Tensor(x)).data
    clone = _roundtrip(model)
    np.testing.assert_array_equal(clone(fastconv.Tensor(_roundtrip(x))).data, want)
    x64 = _roundtrip(x.astype(np.float64))
    w64 = _roundtrip(np.ones((4, 3, 3, 3)))
    out, _ = conv_forward_fast(x64, w64, _roundtrip(np.zeros(4)), {"stride": 1, "pad": 1})
    assert out.shape == (2, 4, 8, 8)
    out, _ = max_pool_forward_fast(out, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert out.shape == (2, 4, 4, 4)


def _spawned_arrays(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, 2, 6, 6)).astype(np.float32), np.ones((3, 2, 3, 3), np.float32)


def test_arrays_from_a_spawn_pool():
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        x, w = pool.apply(_spawned_arrays, (0,))
    np.testing.assert_array_equal(fastconv.conv2d(x, w), fastconv.conv2d(x.copy(), w.copy()))


def test_byte_swapped_arrays_are_refused_by_name():
    x = np.ones((1, 1, 5, 5), ">f4")
    with pytest.raises(TypeError, match="x"):
        fastconv.conv2d(x, np.ones((1, 1, 3, 3), np.float32))
    y = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        _core.relu_forward(y.astype(">f4"), np.empty(4, np.float32))


# --- 2. thread counts per thread -------------------------------------------------------------


def test_threads_block_belongs_to_its_thread(restore_threads):
    fastconv.set_num_threads(2)
    inside, release, seen = threading.Event(), threading.Event(), {}

    def worker():
        with fastconv.threads(1):
            seen["worker inside"] = fastconv.get_num_threads()
            inside.set()
            release.wait(10)
        seen["worker after"] = fastconv.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(10)
    seen["main meanwhile"] = fastconv.get_num_threads()
    release.set()
    t.join(10)
    assert seen == {"worker inside": 1, "main meanwhile": 2, "worker after": 2}


def test_overlapping_threads_blocks_restore_each_thread(restore_threads):
    # Before: the blocks saved and restored one process-wide count, so the block that ended
    # last restored what the other had set.
    fastconv.set_num_threads(2)
    barrier = threading.Barrier(2, timeout=10)
    seen, errors = {}, []
    x = np.random.default_rng(2).standard_normal((2, 4, 16, 16)).astype(np.float32)
    w = np.ones((4, 4, 3, 3), np.float32)
    want = fastconv.conv2d(x, w, padding=1, algo="reference")

    def worker(n):
        try:
            with fastconv.threads(n):
                barrier.wait()
                for _ in range(20):
                    assert fastconv.get_num_threads() == n
                    np.testing.assert_allclose(
                        fastconv.conv2d(x, w, padding=1), want, rtol=1e-5, atol=1e-4
                    )
                barrier.wait()
            seen[n] = fastconv.get_num_threads()
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(n,)) for n in (1, 3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    assert seen == {1: 2, 3: 2} and fastconv.get_num_threads() == 2


def test_set_num_threads_is_process_wide_outside_blocks(restore_threads):
    fastconv.set_num_threads(1)
    seen = []
    t = threading.Thread(target=lambda: seen.append(fastconv.get_num_threads()))
    t.start()
    t.join(10)
    assert seen == [1]
    with pytest.raises(ValueError, match="n must be"):
        with fastconv.threads(0):
            pass
    assert fastconv.get_num_threads() == 1


def test_omp_num_threads_beyond_the_maximum_is_clamped():
    # OMP_NUM_THREADS=100000 was used as given: get_num_threads() said 100000 and every
    # convolution failed with std::bad_alloc sizing per-thread workspaces.
    code, out = run_child(
        """
        import numpy as np, fastconv
        print("threads", fastconv.get_num_threads())
        x = np.random.default_rng(0).standard_normal((2, 8, 16, 16)).astype(np.float32)
        w = np.random.default_rng(1).standard_normal((8, 8, 3, 3)).astype(np.float32)
        want = fastconv.conv2d(x, w, padding=1, algo="reference")
        for algo in fastconv.algorithms(x.shape, w.shape, padding=1):
            np.testing.assert_allclose(fastconv.conv2d(x, w, padding=1, algo=algo), want,
                                       rtol=1e-4, atol=1e-3)
        print("ok")
    """,
        env={"OMP_NUM_THREADS": "100000"},
    )
    assert code == 0, out
    assert "threads 1024" in out and "ok" in out


# --- 4 and 5. allocation failures ------------------------------------------------------------

# Fills the address space under RLIMIT_AS with mappings, then hands back `leave` MiB of it.
_BALLAST = """
    import mmap, resource
    MiB = 1 << 20

    def vm_bytes():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))

    def limit_and_fill(headroom_mib, leave_mib):
        resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + headroom_mib * MiB,
                                                resource.RLIM_INFINITY))
        ballast = []
        try:
            while True:
                ballast.append(mmap.mmap(-1, MiB))
        except (OSError, MemoryError):
            pass
        for _ in range(leave_mib):
            ballast.pop().close()
        return ballast
"""


def test_openblas_buffer_failure_is_a_memory_error():
    # OpenBLAS maps a 32 MiB buffer at its first GEMM; when that failed it printed "Memory
    # allocation still failed after 10 retries" and exit(1)ed from an OpenMP worker.
    code, out = run_child(
        prelude=_BALLAST,
        script="""
        import numpy as np, fastconv
        rng = np.random.default_rng(0)
        # (32 input channels: im2col's GEMM, not its implicit columns)
        x = rng.standard_normal((2, 32, 64, 64)).astype(np.float32)
        w = rng.standard_normal((16, 32, 3, 3)).astype(np.float32)
        fastconv.conv2d(x, w, padding=1, algo="direct")   # the OpenMP team exists; no GEMM yet
        want = fastconv.conv2d(x, w, padding=1, algo="reference")
        ballast = limit_and_fill(256, 12)  # about 12 MiB left: less than one GEMM buffer
        outcome = []
        try:
            fastconv.conv2d(x, w, padding=1, algo="im2col")
            outcome.append("ran")
        except MemoryError as e:
            outcome.append("MemoryError " + str(e))
        finally:
            outcome.append("finally")
        for b in ballast:
            b.close()
        got = fastconv.conv2d(x, w, padding=1, algo="im2col")   # the process is intact
        print(outcome, np.allclose(got, want, rtol=1e-4, atol=1e-3))
    """,
    )
    assert code == 0, out
    assert "MemoryError out of memory: not enough memory for OpenBLAS" in out, out
    assert "'finally'] True" in out, out


# Winograd twice: two groups take its unfused path (U, and V and M per block of tiles), 128
# channels in one group its fused path in blocks (every filter panel, and V per thread; warmed
# up on a small plane, whose freed workspace would otherwise be reused)
@pytest.mark.parametrize(
    "algo, c, g, warm",
    [
        ("im2col", 64, 1, "x[:1]"),
        ("winograd", 64, 2, "x[:1]"),
        ("winograd", 128, 1, "x[:1, :, :12, :12]"),
        ("fft", 64, 1, "x[:1]"),
        ("direct", 64, 1, "x[:1]"),
    ],
    ids=["im2col", "winograd-unfused", "winograd-blocks", "fft", "direct"],
)
def test_workspace_failure_is_a_memory_error(algo, c, g, warm):
    code, out = run_child(
        prelude=_BALLAST,
        script=f"""
        import numpy as np, fastconv
        algo = {algo!r}
        c, g = {c}, {g}
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8, c, 48, 48)).astype(np.float32)
        k = 3 if algo == "winograd" else 5
        w = rng.standard_normal((64, c // g, k, k)).astype(np.float32)
        y = fastconv.conv2d({warm}, w, padding=k // 2, groups=g, algo=algo)   # team, GEMM buffers
        ballast = limit_and_fill(512, 6)   # room for the 4.5 MiB output, not the workspace
        try:
            fastconv.conv2d(x, w, padding=k // 2, groups=g, algo=algo)
            print("ran")
        except MemoryError as e:
            print("MemoryError", e)
        for b in ballast:
            b.close()
        print("after", fastconv.conv2d(x, w, padding=k // 2, groups=g, algo=algo).shape)
    """,
    )
    assert code == 0, out
    assert "MemoryError out of memory: " in out and "after (8, 64, 48, 48)" in out, out


def test_array_cache_is_released_when_an_allocation_fails():
    # The cache kept its unused blocks while a new allocation failed for want of that memory.
    code, out = run_child(
        prelude=_BALLAST,
        script="""
        import numpy as np, fastconv
        from fastconv import _memory
        fastconv.set_memory_cache(1 << 30)
        was = _memory.enter()
        blocks = [np.empty(8 * MiB // 8) for _ in range(24)]
        del blocks                                      # 192 MiB now held by the cache
        _memory.leave(was)
        held = fastconv.memory_cache_stats()["held_bytes"]
        ballast = limit_and_fill(16, 0)
        was = _memory.enter()
        try:
            a = np.ones(100 * MiB // 8 + 3)             # a size the cache has no block of
            result = "allocated %d" % a.size
        except MemoryError:
            result = "MemoryError"
        finally:
            _memory.leave(was)
        print(held >= 192 * MiB, result, fastconv.memory_cache_stats()["held_bytes"])
    """,
    )
    assert code == 0, out
    assert f"True allocated {100 * MiB // 8 + 3} 0" in out, out


def test_kernel_workspace_retried_after_the_cache_is_released():
    code, out = run_child(
        prelude=_BALLAST,
        script="""
        import numpy as np, fastconv
        from fastconv import _memory
        rng = np.random.default_rng(0)
        x = rng.standard_normal((3, 512, 14, 14)).astype(np.float32)
        w = rng.standard_normal((512, 512, 3, 3)).astype(np.float32)
        # 48 tiles, unfused (FASTCONV_WINOGRAD_FUSED=0; by its rule it runs fused by
        # elements): U 36*512*512 floats, 36 MiB
        y = fastconv.conv2d(x, w, padding=1, algo="winograd")
        fastconv.set_memory_cache(1 << 30)
        was = _memory.enter()
        blocks = [np.empty(8 * MiB // 8) for _ in range(24)]
        del blocks
        _memory.leave(was)
        ballast = limit_and_fill(16, 2)   # room for the output array, not for U
        try:
            got = fastconv.conv2d(x, w, padding=1, algo="winograd")
            print("ran", np.array_equal(got, y), fastconv.memory_cache_stats()["held_bytes"])
        except MemoryError as e:
            print("MemoryError", e)
    """,
        env={"FASTCONV_WINOGRAD_FUSED": "0"},
    )
    assert code == 0, out
    assert "ran True 0" in out, out


# --- 6. fork ---------------------------------------------------------------------------------

_FORK = """
    import os, sys, multiprocessing as mp
    import numpy as np, fastconv
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    want = fastconv.conv2d(x, w, padding=1)   # the parent's OpenMP team exists now

    def work(_=None):
        ok = all(np.array_equal(fastconv.conv2d(x, w, padding=1), want) for _ in range(3))
        dx, dw, db = fastconv.conv2d_backward(np.ones_like(want), x, w, padding=1)
        return ok and dw.shape == w.shape, fastconv.get_num_threads()
"""


def test_os_fork_child_runs_convolutions():
    code, out = run_child(
        prelude=_FORK,
        script="""
        pid = os.fork()
        if pid == 0:
            ok, n = work()
            pid2 = os.fork()                      # a grandchild, forked after the relay ran
            if pid2 == 0:
                os._exit(0 if work()[0] else 3)
            _, st = os.waitpid(pid2, 0)
            os._exit(0 if ok and n == 2 and os.waitstatus_to_exitcode(st) == 0 else 3)
        _, st = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(st), "parent", work()[0])
    """,
        timeout=90,
        env={"OMP_NUM_THREADS": "2"},
    )
    assert code == 0, out
    assert "child 0 parent True" in out, out


def test_multiprocessing_fork_pool_runs_convolutions():
    code, out = run_child(
        prelude=_FORK,
        script="""
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(work, range(4))
        print("pool", results)
    """,
        timeout=90,
        env={"OMP_NUM_THREADS": "2"},
    )
    assert code == 0, out
    assert "pool [(True, 2), (True, 2), (True, 2), (True, 2)]" in out, out


# --- 11 and the C ABI's checks ---------------------------------------------------------------


def _lib():
    from test_c_abi import LIB_PATH, load

    if LIB_PATH is None:
        pytest.skip("libfastconv shared library not found")
    lib = load(LIB_PATH)
    for fn in ("fc_relu_forward", "fc_relu_backward"):
        getattr(lib, fn).restype = ctypes.c_int
    lib.fc_relu_forward.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.fc_relu_backward.argtypes = [ctypes.c_int, ctypes.c_int64] + [ctypes.c_void_p] * 3
    lib.fc_set_local_num_threads.argtypes = [ctypes.c_int]
    lib.fc_set_local_num_threads.restype = ctypes.c_int
    return lib


FC_OK, FC_EINVAL, FC_ENOMEM, FC_EUNSUPPORTED, FC_EOVERFLOW = range(5)


@pytest.mark.parametrize("n", [1 << 61, (1 << 62) + 1, 2**63 - 1])
def test_relu_entries_refuse_overflowing_counts(n):
    # n * 8 wrapped around: fc_relu_forward(n = 2^61) ran off the end of 1-element buffers.
    lib = _lib()
    one = np.ones(1)
    out = np.zeros(1)
    p = one.ctypes.data_as(ctypes.c_void_p)
    q = out.ctypes.data_as(ctypes.c_void_p)
    assert lib.fc_relu_forward(1, n, p, q) == FC_EOVERFLOW
    assert lib.fc_relu_backward(1, n, p, p, q) == FC_EOVERFLOW
    assert b"overflow" in lib.fc_last_error()
    assert out[0] == 0


def test_output_size_refuses_null_outputs():
    from test_c_abi import desc

    lib = _lib()
    d = desc((1, 1, 5, 5), (1, 1, 3, 3))
    assert lib.fc_conv2d_output_size(ctypes.byref(d), None, None) == FC_EINVAL
    assert b"NULL" in lib.fc_last_error()


def test_local_thread_count_in_the_c_abi(restore_threads):
    lib = _lib()
    fastconv.set_num_threads(2)
    assert lib.fc_set_local_num_threads(1) == 0
    assert lib.fc_get_num_threads() == 1
    assert lib.fc_set_local_num_threads(0) == 1
    assert lib.fc_get_num_threads() == 2


def test_fft_refusal_names_the_real_reason():
    # A batch too large for the FFT path's 1 GiB chunk cap was refused with "it needs stride 1
    # and dilation 1" although both were 1. (Checked on the descriptor alone: no arrays.)
    desc = [200000, 1, 60, 60, 1, 5, 5, 1, 1, 2, 2, 1, 1, 1]
    why = _core.conv2d_why_not(desc, fastconv.functional._ALGO_IDS["fft"])
    assert "1 GiB" in why and "stride" not in why, why
    assert _core.conv2d_why_not(desc, fastconv.functional._ALGO_IDS["direct"]) == ""
    x = np.ones((1, 1, 9, 9), np.float32)
    with pytest.raises(ValueError, match="it needs stride 1$"):
        fastconv.conv2d(x, np.ones((1, 1, 3, 3), np.float32), stride=2, algo="fft")
    with pytest.raises(ValueError, match="it needs a 3x3 kernel"):
        fastconv.conv2d(x, np.ones((1, 1, 5, 5), np.float32), algo="winograd")

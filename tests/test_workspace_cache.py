"""The kernels' workspace cache (csrc/runtime.cpp): workspaces of 1 MiB and more are kept after a
call and handed to the next call of the same size, up to FASTCONV_WORKSPACE_CACHE_MB;
fastconv.empty_cache() gives them back. A reused workspace holds the previous call's data, so
every algorithm must give the same bits whether its workspaces are fresh (zeroed) pages or
reused ones."""

import os
import subprocess
import sys
import textwrap

import numpy as np

import fastconv
import fastconv.functional as F


def _held():
    return fastconv.memory_cache_stats()["workspace_held_bytes"]


def test_workspaces_are_kept_reused_and_released():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64, 28, 28), dtype=np.float32)
    w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
    fastconv.empty_cache()
    assert _held() == 0
    y = F.conv2d(x, w, padding=1, algo="winograd")
    held = _held()
    assert held >= 1 << 20, "a Winograd call of this size has MiBs of workspace to keep"
    for _ in range(3):  # the same sizes again: taken from the cache and given back, not added
        assert np.array_equal(F.conv2d(x, w, padding=1, algo="winograd"), y)
        assert _held() == held
    stats = fastconv.memory_cache_stats()
    assert stats["workspace_limit_bytes"] == 256 << 20
    fastconv.empty_cache()
    assert _held() == 0


SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np, fastconv
    import fastconv.functional as F
    fastconv.set_num_threads(2)
    # (x shape, w shape, padding, groups, algo): each needs workspaces of 1 MiB or more
    cases = [
        ((2, 32, 40, 40), (48, 32, 3, 3), 1, 1, "im2col"),
        ((2, 32, 40, 40), (48, 32, 3, 3), 1, 1, "direct"),
        ((2, 32, 40, 40), (48, 32, 3, 3), 1, 1, "winograd"),
        ((2, 16, 40, 40), (24, 16, 9, 9), 4, 1, "fft"),
        ((2, 256, 20, 20), (128, 256, 1, 1), 0, 1, "gemm1x1"),
        ((64, 128, 2, 2), (128, 128, 3, 3), 1, 1, "linear"),
        ((20, 64, 40, 40), (64, 1, 3, 3), 1, 64, "depthwise"),
        ((16, 32, 6, 6), (48, 32, 3, 3), 1, 1, "im2col"),
    ]
    digest = hashlib.sha256()
    for xs, ws, pad, groups, algo in cases:
        for seed in (1, 2):  # the second call meets the first one's workspaces (when cached)
            rng = np.random.default_rng(seed)
            x = rng.standard_normal(xs, dtype=np.float32)
            w = rng.standard_normal(ws, dtype=np.float32)
            y = F.conv2d(x, w, padding=pad, groups=groups, algo=algo)
            dy = rng.standard_normal(y.shape, dtype=np.float32)
            dx, dw, _ = F.conv2d_backward(dy, x, w, padding=pad, groups=groups, algo=algo)
        for a in (y, dx, dw):
            digest.update(a.tobytes())
    print(json.dumps({"digest": digest.hexdigest(),
                      "held": fastconv.memory_cache_stats()["workspace_held_bytes"],
                      "limit": fastconv.memory_cache_stats()["workspace_limit_bytes"]}))
    """
)


def _run(limit_mb):
    import json

    env = {**os.environ, "FASTCONV_WORKSPACE_CACHE_MB": str(limit_mb)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_reused_workspaces_give_the_same_bits_as_fresh_ones():
    """Cache off (every workspace fresh, zeroed pages), a 3 MiB cache (evicting as it goes) and
    the default (everything reused): the same bits from every algorithm."""
    off, small, default = _run(0), _run(3), _run(256)
    assert off["held"] == 0 and off["limit"] == 0
    assert 0 < small["held"] <= 3 << 20 and small["limit"] == 3 << 20
    assert default["held"] > small["held"]
    assert off["digest"] == small["digest"] == default["digest"]

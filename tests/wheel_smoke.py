"""Smoke test of an installed fastconv: run as a script from a venv holding only the wheel.

    python tests/wheel_smoke.py            # exits 0 and prints "wheel smoke: ok"

It checks what a user of the wheel needs and a source build would hide: the package imports
from site-packages (not from a source tree), libfastconv finds OpenBLAS and OpenMP where the
wheel put them, the headers, the CMake package and the typing files were installed, and a few
kernels give right answers (a convolution against a naive NumPy loop, a small network's
forward and backward against finite differences). Used by .ci/build_wheel.sh, by
cibuildwheel's test-command and by tests/test_wheel.py. Not collected by pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np


def naive_conv2d(x, w, b, stride, pad, groups):
    """PyTorch's conv2d as loops (float64 accumulation)."""
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad : pad + h, pad : pad + wd] = x
    y = np.zeros((n, k, ho, wo))
    kg = k // groups
    for g in range(groups):
        for oc in range(g * kg, (g + 1) * kg):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[
                        :,
                        g * cg : (g + 1) * cg,
                        i * stride : i * stride + kh,
                        j * stride : j * stride + kw,
                    ]
                    y[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3)) + b[oc]
    return y


def check_install(fastconv):
    pkg = os.path.dirname(os.path.abspath(fastconv.__file__))
    assert "site-packages" in pkg, f"fastconv imported from {pkg}, not from an installed wheel"
    for rel in ("py.typed", "_core.pyi", "kernels.pxd", "_version.py"):
        assert os.path.isfile(os.path.join(pkg, rel)), f"{rel} missing from {pkg}"
    inc = fastconv.get_include()
    for h in ("fastconv.h", "version.h"):
        assert os.path.isfile(os.path.join(inc, "fastconv", h)), f"{h} missing from {inc}"
    assert os.path.isfile(os.path.join(fastconv.get_cmake_dir(), "fastconvConfig.cmake"))
    lib = os.path.join(fastconv.get_lib_dir(), "libfastconv.so")
    assert os.path.isfile(lib), lib
    from importlib.metadata import version

    assert fastconv.__version__ == version("fastconv"), (fastconv.__version__, version("fastconv"))
    return lib


def check_c_library(lib):
    """libfastconv loads on its own, as a C program would load it: no Python import of
    scipy_openblas32 first, so its RPATH must find OpenBLAS and the bundled libgomp."""
    code = (
        "import ctypes, sys; l = ctypes.CDLL(sys.argv[1]); l.fc_isa.restype = ctypes.c_char_p;"
        " print(l.fc_isa().decode())"
    )
    r = subprocess.run([sys.executable, "-c", code, lib], capture_output=True, text=True)
    assert r.returncode == 0, f"loading {lib} alone failed:\n{r.stderr}"
    return r.stdout.strip()


def loaded_libraries():
    """Paths of the OpenBLAS and OpenMP libraries this process mapped."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if "openblas" in p or "gomp" in p or "libomp" in p)


def check_conv(fastconv):
    rng = np.random.default_rng(0)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        for stride, pad, groups in ((1, 1, 1), (2, 0, 1), (1, 1, 2)):
            x = rng.standard_normal((2, 4, 7, 6)).astype(dtype)
            w = rng.standard_normal((6, 4 // groups, 3, 3)).astype(dtype)
            b = rng.standard_normal(6).astype(dtype)
            want = naive_conv2d(x, w, b, stride, pad, groups)
            for algo in ["auto"] + fastconv.algorithms(
                x.shape, w.shape, stride=stride, padding=pad, groups=groups
            ):
                y = fastconv.conv2d(x, w, b, stride=stride, padding=pad, groups=groups, algo=algo)
                assert y.dtype == dtype and y.shape == want.shape, (algo, y.dtype, y.shape)
                err = np.abs(y - want).max() / max(1.0, np.abs(want).max())
                assert err < tol, (
                    f"conv2d {algo} {np.dtype(dtype).name} s{stride} p{pad} "
                    f"g{groups}: relative error {err:.2e}"
                )


def check_network(fastconv):
    """A tiny network's forward and backward in float64; one weight against finite differences."""
    from fastconv import nn

    rng = np.random.default_rng(1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3, dtype=np.float64),
    )
    x = fastconv.Tensor(rng.standard_normal((2, 3, 5, 5)))
    labels = np.array([0, 2])

    def loss_value():
        return nn.functional.cross_entropy(model(x), labels)

    loss = loss_value()
    loss.backward()
    conv = model[0]
    grad = conv.weight.grad[1, 2, 0, 1]
    eps, w = 1e-6, conv.weight.data
    w[1, 2, 0, 1] += eps
    up = float(loss_value().data)
    w[1, 2, 0, 1] -= 2 * eps
    down = float(loss_value().data)
    w[1, 2, 0, 1] += eps
    numeric = (up - down) / (2 * eps)
    assert abs(grad - numeric) < 1e-6 * max(1.0, abs(numeric)), (grad, numeric)
    assert all(np.isfinite(p.grad).all() for p in model.parameters())
    return float(loss.data)


def main():
    import fastconv

    lib = check_install(fastconv)
    hw = fastconv.hardware()
    assert fastconv.isa() in ("avx512", "avx2", "generic"), fastconv.isa()
    assert hw["isa"] == fastconv.isa() and hw["cores"] >= 1, hw
    c_isa = check_c_library(lib)
    assert c_isa == fastconv.isa(), (c_isa, fastconv.isa())
    check_conv(fastconv)
    loss = check_network(fastconv)
    print(f"fastconv {fastconv.__version__} from {os.path.dirname(fastconv.__file__)}")
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, isa {fastconv.isa()} "
        f"(best {hw['best_isa']}), {hw['cores']} cores, {hw['model'] or 'unknown CPU'}"
    )
    for path in loaded_libraries():
        print(f"loaded {path}")
    print(f"network loss {loss:.4f}, gradients match finite differences")
    print("wheel smoke: ok")


if __name__ == "__main__":
    main()

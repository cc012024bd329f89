"""Other projects using the installed kernels: a C program, a CMake project (C++) and a Cython
extension, each built in a temporary directory against fastconv.get_include()/get_lib_dir()/
get_cmake_dir() and run. Each skips with the reason when its tool is missing."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import fastconv
from fastconv import _paths

# One convolution every consumer runs: float64, stride 2, padding 1, groups 2, dilation (1, 2).
N, C, H, W, K, KH, KW = 2, 4, 7, 6, 6, 3, 2
STRIDE, PAD, DIL, GROUPS = 2, 1, (1, 2), 2


def _inputs():
    """x[i] = ((i*7) % 11 - 5) / 4 and w[i] = ((i*5) % 9 - 4) / 8 (exact in binary),
    bias[k] = k/2."""
    x = ((np.arange(N * C * H * W) * 7) % 11 - 5).reshape(N, C, H, W) / 4.0
    w = ((np.arange(K * (C // GROUPS) * KH * KW) * 5) % 9 - 4).reshape(K, C // GROUPS, KH, KW) / 8.0
    b = np.arange(K) / 2.0
    return x, w, b


def _naive_conv(x, w, b):
    """Plain loops: the independent reference for every consumer's output."""
    ho = (H + 2 * PAD - DIL[0] * (KH - 1) - 1) // STRIDE + 1
    wo = (W + 2 * PAD - DIL[1] * (KW - 1) - 1) // STRIDE + 1
    xp = np.pad(x, [(0, 0), (0, 0), (PAD, PAD), (PAD, PAD)])
    cg, kg = C // GROUPS, K // GROUPS
    y = np.zeros((N, K, ho, wo))
    for k in range(K):
        g = k // kg
        for i in range(ho):
            for j in range(wo):
                patch = xp[
                    :,
                    g * cg : (g + 1) * cg,
                    i * STRIDE : i * STRIDE + DIL[0] * (KH - 1) + 1 : DIL[0],
                    j * STRIDE : j * STRIDE + DIL[1] * (KW - 1) + 1 : DIL[1],
                ]
                y[:, k, i, j] = (patch * w[k]).sum(axis=(1, 2, 3)) + b[k]
    return y


def _compiler():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    pytest.skip("no C compiler (cc, gcc or clang) on PATH")


def _run(cmd, cwd, env=None):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed with {r.returncode}\n"
        f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    )
    return r.stdout


def _openblas_dir():
    import scipy_openblas32

    return scipy_openblas32.get_lib_dir()


def _link_flags():
    lib = _paths.get_lib_dir()
    # -rpath: find libfastconv at run time; -rpath-link: let the linker resolve libfastconv's own
    # dependency on scipy_openblas32 (at run time libfastconv's RUNPATH finds it).
    return [f"-L{lib}", "-lfastconv", f"-Wl,-rpath,{lib}", f"-Wl,-rpath-link,{_openblas_dir()}"]


# The C program prints: status line, then every output value, then the checks of the error path.
C_PROGRAM = r"""
#include <fastconv/fastconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = %(N)d, C = %(C)d, H = %(H)d, W = %(W)d, K = %(K)d, KH = %(KH)d, KW = %(KW)d, G = %(G)d };

int main(void) {
  fc_conv2d_desc d = {N, C, H, W, K, KH, KW, %(S)d, %(S)d, %(P)d, %(P)d, %(DH)d, %(DW)d, G};
  static double x[N * C * H * W], w[K * (C / G) * KH * KW], b[K];
  for (int i = 0; i < N * C * H * W; ++i) x[i] = ((i * 7) %% 11 - 5) / 4.0;
  for (int i = 0; i < K * (C / G) * KH * KW; ++i) w[i] = ((i * 5) %% 9 - 4) / 8.0;
  for (int k = 0; k < K; ++k) b[k] = k / 2.0;
  int64_t ho, wo;
  if (fc_conv2d_output_size(&d, &ho, &wo) != FC_OK) {
    printf("size: %%s\n", fc_last_error());
    return 1;
  }
  double *y = (double *)malloc(sizeof(double) * N * K * ho * wo);
  fc_status s = fc_conv2d_forward(&d, FC_F64, FC_ALGO_AUTO, x, w, b, y);
  if (s != FC_OK) { printf("forward: %%s\n", fc_last_error()); return 1; }
  printf("%%lld %%lld %%d %%s\n", (long long)ho, (long long)wo, fc_get_num_threads(), fc_isa());
  for (int64_t i = 0; i < N * K * ho * wo; ++i) printf("%%.17g\n", y[i]);
  /* A bad descriptor: 3 groups do not divide 4 channels. Nothing is written, a message is set. */
  d.groups = 3;
  y[0] = -1234.5;
  s = fc_conv2d_forward(&d, FC_F64, FC_ALGO_AUTO, x, w, b, y);
  printf("%%d|%%s|%%d|%%g\n", (int)s, fc_status_string(s), (int)(strlen(fc_last_error()) > 0),
         y[0]);
  free(y);
  return 0;
}
""" % dict(  # noqa: UP031  (C source: %-formatting leaves its many braces literal)
    N=N, C=C, H=H, W=W, K=K, KH=KH, KW=KW, G=GROUPS, S=STRIDE, P=PAD, DH=DIL[0], DW=DIL[1]
)


def _check_program_output(out, threads=None):
    lines = out.strip().splitlines()
    ho, wo, nthreads, isa = lines[0].split()
    assert isa == fastconv.isa()
    if threads is not None:
        assert int(nthreads) == threads
    else:
        assert int(nthreads) >= 1
    x, w, b = _inputs()
    want = _naive_conv(x, w, b)
    assert (int(ho), int(wo)) == want.shape[2:]
    got = np.array([float(v) for v in lines[1 : 1 + want.size]]).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    status, text, has_message, y0 = lines[1 + want.size].split("|")
    assert int(status) == 1 and text.strip() and has_message == "1"  # FC_EINVAL
    assert float(y0) == -1234.5  # the output buffer was not touched


def test_public_names():
    # The package re-exports the path helpers and the threads context manager.
    from fastconv._threads import threads

    assert fastconv.get_include is _paths.get_include
    assert fastconv.get_lib_dir is _paths.get_lib_dir
    assert fastconv.get_cmake_dir is _paths.get_cmake_dir
    assert fastconv.threads is threads
    assert {"get_include", "get_lib_dir", "get_cmake_dir", "threads"} <= set(fastconv.__all__)


def test_paths_point_at_installed_files():
    assert os.path.isfile(os.path.join(_paths.get_include(), "fastconv", "fastconv.h"))
    lib = _paths.get_lib_dir()
    assert any(f.startswith("libfastconv") for f in os.listdir(lib))
    assert os.path.isfile(os.path.join(_paths.get_cmake_dir(), "fastconvConfig.cmake"))
    assert os.path.isfile(os.path.join(_paths.get_cmake_dir(), "fastconvConfigVersion.cmake"))
    pxd = os.path.join(os.path.dirname(fastconv.__file__), "kernels.pxd")
    assert os.path.isfile(pxd)


def test_naive_reference_matches_fastconv():
    # Guards the reference the consumers are checked against.
    x, w, b = _inputs()
    got = fastconv.conv2d(x, w, b, stride=STRIDE, padding=PAD, dilation=DIL, groups=GROUPS)
    np.testing.assert_allclose(got, _naive_conv(x, w, b), rtol=1e-12, atol=1e-12)


@pytest.mark.slow  # compiles and links a C program
def test_c_program(tmp_path):
    cc = _compiler()
    (tmp_path / "prog.c").write_text(C_PROGRAM)
    _run(
        [
            cc,
            "-std=c99",
            "-Wall",
            "-Werror",
            f"-I{_paths.get_include()}",
            "prog.c",
            "-o",
            "prog",
            *_link_flags(),
        ],
        tmp_path,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "OMP_NUM_THREADS")}
    _check_program_output(_run([str(tmp_path / "prog")], tmp_path, env))
    # OMP_NUM_THREADS is honoured by the C library as well.
    _check_program_output(
        _run([str(tmp_path / "prog")], tmp_path, dict(env, OMP_NUM_THREADS="3")), threads=3
    )


CMAKE_LISTS = """
cmake_minimum_required(VERSION 3.18)
project(fastconv_consumer LANGUAGES CXX)
find_package(fastconv @MAJOR_MINOR@ CONFIG REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE fastconv::fastconv)
"""


@pytest.mark.slow  # configures and builds a CMake project
@pytest.mark.parametrize("how", ["fastconv_DIR", "CMAKE_PREFIX_PATH"])
def test_cmake_project(tmp_path, how):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not on PATH")
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        pytest.skip("no C++ compiler (c++, g++ or clang++) on PATH")
    src = tmp_path / "src"
    src.mkdir()
    major_minor = ".".join(re.findall(r"\d+", fastconv.__version__)[:2])  # SameMinorVersion
    (src / "CMakeLists.txt").write_text(CMAKE_LISTS.replace("@MAJOR_MINOR@", major_minor))
    (src / "main.cpp").write_text(C_PROGRAM)  # the same program, compiled as C++
    cmake_dir = _paths.get_cmake_dir()
    if how == "fastconv_DIR":
        where = f"-Dfastconv_DIR={cmake_dir}"
    else:  # the package directory is the prefix: <prefix>/lib/cmake/fastconv
        where = f"-DCMAKE_PREFIX_PATH={os.path.dirname(_paths.get_lib_dir())}"
    gen = ["-G", "Ninja"] if shutil.which("ninja") and not shutil.which("make") else []
    build = tmp_path / "build"
    _run(
        [cmake, "-S", str(src), "-B", str(build), where, "-DCMAKE_BUILD_TYPE=Release", *gen],
        tmp_path,
    )
    _run([cmake, "--build", str(build)], tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    _check_program_output(_run([str(build / "consumer")], tmp_path, env))


CYTHON_MODULE = """
# cython: language_level=3, boundscheck=False, wraparound=False
cimport fastconv.kernels as fk
from libc.stdint cimport int64_t


def isa():
    return fk.fc_isa().decode()


def hardware():
    cdef fk.fc_hw_info h
    if fk.fc_hardware(&h) != fk.FC_OK:
        raise ValueError(fk.fc_last_error().decode())
    return {"isa": h.isa.decode(), "best_isa": h.best_isa.decode(), "l1d_bytes": h.l1d_bytes,
            "l2_bytes": h.l2_bytes, "l3_bytes": h.l3_bytes, "cores": h.cores,
            "work_items": fk.fc_work_items(), "model": h.model.decode(),
            "vendor": h.vendor.decode(), "full_avx512": h.full_avx512 != 0,
            "fma512_ratio": h.fma512_ratio}


def conv2d(const double[:, :, :, ::1] x, const double[:, :, :, ::1] w, const double[::1] b,
           int stride, int pad, int dil_h, int dil_w, int groups):
    cdef fk.fc_conv2d_desc d
    d.n, d.c, d.h, d.w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    d.k, d.kh, d.kw = w.shape[0], w.shape[2], w.shape[3]
    d.stride_h = d.stride_w = stride
    d.pad_h = d.pad_w = pad
    d.dil_h, d.dil_w, d.groups = dil_h, dil_w, groups
    cdef int64_t ho, wo
    cdef fk.fc_status st = fk.fc_conv2d_output_size(&d, &ho, &wo)
    if st != fk.FC_OK:
        raise ValueError(fk.fc_last_error().decode())
    out = bytearray(sizeof(double) * d.n * d.k * ho * wo)
    cdef double[::1] y = memoryview(out).cast("d")
    with nogil:  # the kernels never touch Python
        st = fk.fc_conv2d_forward(&d, fk.FC_F64, fk.FC_ALGO_AUTO, &x[0, 0, 0, 0],
                                  &w[0, 0, 0, 0], &b[0], &y[0])
    if st != fk.FC_OK:
        raise ValueError(fk.fc_status_string(st).decode() + ": " + fk.fc_last_error().decode())
    return out, (d.n, d.k, ho, wo)
"""


@pytest.mark.slow  # cythonizes and compiles an extension
def test_cython_extension(tmp_path, monkeypatch):
    cc = _compiler()
    try:
        import Cython  # noqa: F401
    except ImportError:
        pytest.skip("Cython is not installed (pip install cython)")
    py_include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(py_include, "Python.h")):
        pytest.skip(f"Python.h is missing from {py_include} (no Python development headers)")
    name = "fastconv_cython_consumer"
    (tmp_path / f"{name}.pyx").write_text(CYTHON_MODULE)
    # `cimport fastconv.kernels` is found on sys.path, beside the installed package.
    _run([sys.executable, "-m", "cython", "-3", f"{name}.pyx", "-o", f"{name}.c"], tmp_path)
    ext = name + sysconfig.get_config_var("EXT_SUFFIX")
    _run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-O0",
            f"-I{py_include}",
            f"-I{_paths.get_include()}",
            f"{name}.c",
            "-o",
            ext,
            *_link_flags(),
        ],
        tmp_path,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module(name)
    try:
        assert mod.isa() == fastconv.isa()
        assert mod.hardware() == fastconv.hardware()  # the pxd mirrors fc_hw_info
        x, w, b = _inputs()
        out, shape = mod.conv2d(x, w, b, STRIDE, PAD, DIL[0], DIL[1], GROUPS)
        want = _naive_conv(x, w, b)
        np.testing.assert_allclose(np.frombuffer(out).reshape(shape), want, rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match="groups|divide|channels"):
            mod.conv2d(x, w, b, STRIDE, PAD, DIL[0], DIL[1], 3)
    finally:
        sys.modules.pop(name, None)


# ---------------------------------------------------------------------------------------------
# threads: fastconv.threads(n) and OMP_NUM_THREADS, as seen from Python


def test_threads_context_manager():
    from fastconv._threads import threads

    before = fastconv.get_num_threads()
    other = 1 if before != 1 else 2
    with threads(other) as n:
        assert n == other and fastconv.get_num_threads() == other
        with threads(3):
            assert fastconv.get_num_threads() == 3
        assert fastconv.get_num_threads() == other
    assert fastconv.get_num_threads() == before
    with pytest.raises(ZeroDivisionError):
        with threads(other):
            raise ZeroDivisionError
    assert fastconv.get_num_threads() == before
    with pytest.raises(ValueError, match="n must be"):
        with threads(0):
            pass
    assert fastconv.get_num_threads() == before


def test_omp_num_threads_is_honoured():
    env = dict(os.environ, OMP_NUM_THREADS="3")
    code = "import fastconv; print(fastconv.get_num_threads())"
    assert _run([sys.executable, "-c", code], None, env).strip() == "3"

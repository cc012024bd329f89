"""Build the sanitizer driver: every csrc/ source plus tests/sanitize/*.cpp, compiled with
-fsanitize=address,undefined -fno-sanitize-recover=all -g -O1, linked against scipy-openblas32.

    python tests/sanitize/build.py OUTDIR      # prints the driver's path

Per-ISA files (names containing avx2 / avx512) get their instruction-set flags, and
fastconv/version.h is filled from pyproject.toml's version, as in CMakeLists.txt. Objects
compile in parallel (one job per core).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CSRC = os.path.join(ROOT, "csrc")

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
ISA_FLAGS = {
    "avx512": ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma"],
    "avx2": ["-mavx2", "-mfma"],
}


def compiler():
    """The C++ compiler to use ($CXX, else g++/c++), or None."""
    for cand in (os.environ.get("CXX"), "g++", "c++"):
        if cand and shutil.which(cand.split()[0]):
            return cand.split()
    return None


def sources():
    files = []
    for pattern in ("*.cpp", "conv/*.cpp", "pool/*.cpp", "cpu/*.cpp"):
        files += sorted(glob.glob(os.path.join(CSRC, pattern)))
    files += sorted(glob.glob(os.path.join(HERE, "*.cpp")))
    return files


def isa_flags(path):
    name = os.path.basename(path)
    for isa in ("avx512", "avx2"):  # avx512 first: its name does not contain "avx2"
        if isa in name:
            return ISA_FLAGS[isa]
    return []


def project_version():
    """pyproject.toml's project.version: the one place the version is written."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        text = f.read().decode()
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # the [project] table's own lines, up to the next table
        table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
        return re.search(r"""^version\s*=\s*["']([^"']+)["']""", table, re.M).group(1)
    return tomllib.loads(text)["project"]["version"]


def write_version_header(outdir):
    """outdir/include/fastconv/version.h, filled from csrc/include/fastconv/version.h.in as
    CMakeLists.txt fills it; returns outdir/include (to add to the include path)."""
    full = project_version()
    parts = [int(p) for p in re.match(r"\d+(?:\.\d+)*", full).group(0).split(".")]
    parts += [0] * (3 - len(parts))
    values = {"FC_VERSION_MAJOR": parts[0], "FC_VERSION_MINOR": parts[1],
              "FC_VERSION_PATCH": parts[2], "FC_VERSION_STRING": full}
    with open(os.path.join(CSRC, "include", "fastconv", "version.h.in")) as f:
        text = re.sub(r"@(\w+)@", lambda m: str(values[m.group(1)]), f.read())
    inc = os.path.join(outdir, "include")
    os.makedirs(os.path.join(inc, "fastconv"), exist_ok=True)
    with open(os.path.join(inc, "fastconv", "version.h"), "w") as f:
        f.write(text)
    return inc


def build(outdir, jobs=None):
    """Compile and link; returns the driver's path. Raises CalledProcessError with the output."""
    import scipy_openblas32 as sob

    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found ($CXX, g++, c++)")
    os.makedirs(outdir, exist_ok=True)
    inc, libdir = sob.get_include_dir(), sob.get_lib_dir()
    common = ["-std=c++17", "-fopenmp", "-g", "-O1", *SANITIZE, "-I", CSRC,
              "-I", os.path.join(CSRC, "include"), "-I", write_version_header(outdir),
              "-I", inc, "-DBLAS_SYMBOL_PREFIX=scipy_"]

    def compile_one(src):
        rel = os.path.relpath(src, ROOT).replace(os.sep, "_")
        obj = os.path.join(outdir, rel[:-4] + ".o")
        cmd = [*cxx, *common, *isa_flags(src), "-c", src, "-o", obj]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout, res.stderr)
        return obj

    with ThreadPoolExecutor(jobs or os.cpu_count() or 2) as ex:
        objs = list(ex.map(compile_one, sources()))
    exe = os.path.join(outdir, "fastconv_sanitize")
    cmd = [*cxx, *SANITIZE, "-fopenmp", *objs, "-o", exe, "-L", libdir,
           f"-l{sob.get_library()}", f"-Wl,-rpath,{libdir}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout, res.stderr)
    return exe


if __name__ == "__main__":
    try:
        print(build(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "sanitize")))
    except subprocess.CalledProcessError as e:
        sys.stderr.write(" ".join(e.cmd) + "\n" + (e.stdout or "") + (e.stderr or ""))
        sys.exit(1)

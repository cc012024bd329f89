"""Build the sanitizer driver: every csrc/ source plus tests/sanitize/*.cpp, compiled with
-fsanitize=address,undefined -fno-sanitize-recover=all -g -O1, linked against scipy-openblas32.

    python tests/sanitize/build.py OUTDIR      # prints the driver's path

Per-ISA files (names containing avx2 / avx512) get their instruction-set flags, and a few
sources flags of their own, read from cmake/source_flags.txt as CMakeLists.txt reads them;
fastconv/version.h is filled from pyproject.toml's version, as in CMakeLists.txt. Objects
compile in parallel (one job per core).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CSRC = os.path.join(ROOT, "csrc")

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
SOURCE_FLAGS = os.path.join(ROOT, "cmake", "source_flags.txt")


def source_flag_rules(path: str = SOURCE_FLAGS) -> dict[str, list[str]]:
    """cmake/source_flags.txt as {key: [flags]}: "isa:NAME" keys for the per-ISA files, paths
    relative to the repository root for single sources (the file's own comment says more)."""
    rules = {}
    with open(path) as f:
        for line in f:
            if not line.strip() or line[0] in "# \t":
                continue
            key, *flags = line.split(None, 1)
            if not flags:
                raise ValueError(f"{path}: a rule is a key and its flags, got {line.strip()!r}")
            rules[key] = shlex.split(flags[0])
    return rules


def compiler() -> list[str] | None:
    """The C++ compiler to use ($CXX, else g++/c++), or None."""
    for cand in (os.environ.get("CXX"), "g++", "c++"):
        if cand and shutil.which(cand.split()[0]):
            return cand.split()
    return None


def sources() -> list[str]:
    files = []
    for pattern in ("*.cpp", "conv/*.cpp", "pool/*.cpp", "cpu/*.cpp"):
        files += sorted(glob.glob(os.path.join(CSRC, pattern)))
    files += sorted(glob.glob(os.path.join(HERE, "*.cpp")))
    return files


def source_flags(path: str, rules: dict[str, list[str]] | None = None) -> list[str]:
    """The flags cmake/source_flags.txt gives the source at path: its ISA's for csrc/cpu/ files
    whose name contains an ISA's name (the longest such name: "avx512" before "avx2"), plus its
    own rule's."""
    rules = source_flag_rules() if rules is None else rules
    rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
    flags = []
    if rel.startswith("csrc/cpu/"):
        isas = sorted((k[4:] for k in rules if k.startswith("isa:")), key=len, reverse=True)
        name = os.path.basename(path)
        isa = next((i for i in isas if i in name), None)
        if isa:
            flags += rules["isa:" + isa]
    return flags + rules.get(rel, [])


def project_version() -> str:
    """pyproject.toml's project.version: the one place the version is written."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        text = f.read().decode()
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # the [project] table's own lines, up to the next table
        table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
        return re.search(r"""^version\s*=\s*["']([^"']+)["']""", table, re.M).group(1)
    return tomllib.loads(text)["project"]["version"]


def write_version_header(outdir: str) -> str:
    """outdir/include/fastconv/version.h, filled from csrc/include/fastconv/version.h.in as
    CMakeLists.txt fills it; returns outdir/include (to add to the include path)."""
    full = project_version()
    parts = [int(p) for p in re.match(r"\d+(?:\.\d+)*", full).group(0).split(".")]
    parts += [0] * (3 - len(parts))
    values = {
        "FC_VERSION_MAJOR": parts[0],
        "FC_VERSION_MINOR": parts[1],
        "FC_VERSION_PATCH": parts[2],
        "FC_VERSION_STRING": full,
    }
    with open(os.path.join(CSRC, "include", "fastconv", "version.h.in")) as f:
        text = re.sub(r"@(\w+)@", lambda m: str(values[m.group(1)]), f.read())
    inc = os.path.join(outdir, "include")
    os.makedirs(os.path.join(inc, "fastconv"), exist_ok=True)
    with open(os.path.join(inc, "fastconv", "version.h"), "w") as f:
        f.write(text)
    return inc


def build(outdir: str, jobs: int | None = None) -> str:
    """Compile and link; returns the driver's path. Raises CalledProcessError with the output."""
    import scipy_openblas32 as sob

    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found ($CXX, g++, c++)")
    os.makedirs(outdir, exist_ok=True)
    inc, libdir = sob.get_include_dir(), sob.get_lib_dir()
    common = [
        "-std=c++17",
        "-fopenmp",
        "-g",
        "-O1",
        *SANITIZE,
        "-I",
        CSRC,
        "-I",
        os.path.join(CSRC, "include"),
        "-I",
        write_version_header(outdir),
        "-I",
        inc,
        "-DBLAS_SYMBOL_PREFIX=scipy_",
    ]

    rules = source_flag_rules()

    def compile_one(src: str) -> str:
        rel = os.path.relpath(src, ROOT).replace(os.sep, "_")
        obj = os.path.join(outdir, rel[:-4] + ".o")
        cmd = [*cxx, *common, *source_flags(src, rules), "-c", src, "-o", obj]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout, res.stderr)
        return obj

    with ThreadPoolExecutor(jobs or os.cpu_count() or 2) as ex:
        objs = list(ex.map(compile_one, sources()))
    exe = os.path.join(outdir, "fastconv_sanitize")
    cmd = [
        *cxx,
        *SANITIZE,
        "-fopenmp",
        *objs,
        "-o",
        exe,
        "-L",
        libdir,
        f"-l{sob.get_library()}",
        f"-Wl,-rpath,{libdir}",
    ]
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

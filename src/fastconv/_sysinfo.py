"""``fastconv info``: what this process's fastconv runs on, for bug reports and for reading
benchmark numbers (version, micro-kernel ISA, threads, OpenMP runtime, BLAS, caches,
autotuning)."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import sys

__all__ = ["collect", "format_text"]

ISAS = ("generic", "avx2", "avx512")  # each includes the ones before it
_OPENMP = re.compile(r"lib(gomp|omp|iomp5)[.-]")  # libgomp.so.1, a wheel's libgomp-ab12cd.so.1
_OPENMP_NAMES = {"gomp": "GNU libgomp", "omp": "LLVM libomp", "iomp5": "Intel libiomp5"}


def _loaded_libraries():
    """Paths of the shared libraries mapped into this process (Linux's /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = [line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6]
    except OSError:
        return None
    return list(dict.fromkeys(p for p in paths if p.startswith("/") and ".so" in p))


def openmp_runtime():
    """{"name", "path"} of each OpenMP runtime loaded (fastconv links one), or None when the
    process's libraries cannot be listed (not Linux)."""
    libs = _loaded_libraries()
    if libs is None:
        return None
    found = []
    for path in libs:
        m = _OPENMP.match(os.path.basename(path))
        if m:
            found.append({"name": _OPENMP_NAMES[m.group(1)], "path": path})
    return found


def blas():
    """The OpenBLAS fastconv calls (scipy_openblas32): its build string, library, and threads."""
    try:
        import scipy_openblas32 as ob
    except ImportError:  # pragma: no cover - a dependency of fastconv
        return None
    out = {
        "package": "scipy_openblas32",
        "config": ob.get_openblas_config().strip(),
        "library": getattr(getattr(ob, "dll", None), "_name", None),
    }
    try:
        lib = ob.dll
        for field, symbol in (
            ("threads", "scipy_openblas_get_num_threads"),
            ("parallel", "scipy_openblas_get_parallel"),
        ):
            fn = getattr(lib, symbol)
            fn.restype = ctypes.c_int
            out[field] = fn()
        out["parallel"] = {0: "sequential", 1: "pthreads", 2: "OpenMP"}.get(
            out["parallel"], str(out["parallel"])
        )
    except (AttributeError, OSError):  # another build without these symbols
        pass
    return out


def collect():
    """Everything ``fastconv info`` prints, as a JSON-able dict."""
    import numpy as np

    import fastconv

    hw = fastconv.hardware()
    best = hw["best_isa"]
    available = list(ISAS[: ISAS.index(best) + 1]) if best in ISAS else [best]
    autotune = {"mode": fastconv.get_autotune(), "env": os.environ.get("FASTCONV_AUTOTUNE")}
    if autotune["mode"] == "persist":
        autotune["file"] = fastconv.autotune_cache_path()
    return {
        "fastconv": fastconv.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": {
            "model": hw["model"],
            "vendor": hw["vendor"],
            "cores": hw["cores"],
            "work_items": hw["work_items"],
            "work_items_env": os.environ.get("FASTCONV_WORK_ITEMS"),
        },
        "isa": {
            "in_use": fastconv.isa(),
            "best": best,
            "available": available,
            "env": os.environ.get("FASTCONV_ISA"),
        },
        "threads": {
            "fastconv": fastconv.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "openmp": openmp_runtime(),
        "blas": blas(),
        "caches": {
            "l1d_bytes": hw["l1d_bytes"],
            "l2_bytes": hw["l2_bytes"],
            "l3_bytes": hw["l3_bytes"],
        },
        "autotune": autotune,
        "memory_cache": fastconv.memory_cache_stats(),
    }


def _bytes(n):
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n >> 10} KiB"


def format_text(info):
    isa, threads, blas_, tune = info["isa"], info["threads"], info["blas"], info["autotune"]
    omp = info["openmp"]
    lines = [
        f"fastconv {info['fastconv']} (Python {info['python']}, NumPy {info['numpy']}, "
        f"{info['platform']})",
        f"CPU:         {info['cpu']['model'] or 'unknown'} ({info['cpu']['vendor'] or '?'}), "
        f"{info['cpu']['cores']} logical CPUs available, partitions of "
        f"{info['cpu']['work_items']} work items"
        + (
            f" (FASTCONV_WORK_ITEMS={info['cpu']['work_items_env']})"
            if info["cpu"]["work_items_env"]
            else ""
        ),
        f"ISA:         {isa['in_use']} in use; this CPU has {', '.join(isa['available'])}"
        + (f" (FASTCONV_ISA={isa['env']})" if isa["env"] else " (FASTCONV_ISA not set)"),
        f"threads:     {threads['fastconv']}"
        + (
            f" (OMP_NUM_THREADS={threads['OMP_NUM_THREADS']})"
            if threads["OMP_NUM_THREADS"]
            else " (OMP_NUM_THREADS not set)"
        ),
        "OpenMP:      "
        + (
            "unknown (no /proc/self/maps)"
            if omp is None
            else "; ".join(f"{o['name']} ({o['path']})" for o in omp) or "none loaded"
        ),
    ]
    if blas_ is None:
        lines.append("BLAS:        scipy_openblas32 not importable")
    else:
        lines.append(f"BLAS:        {blas_['config']} ({blas_['library']})")
        if "threads" in blas_:
            lines.append(
                f"             {blas_['parallel']} threading, {blas_['threads']} threads "
                f"now (fastconv sets 1 whenever it calls BLAS: its own OpenMP loops "
                f"supply the parallelism)"
            )
    c = info["caches"]
    lines.append(
        f"caches:      L1d {_bytes(c['l1d_bytes'])}, L2 {_bytes(c['l2_bytes'])} per core, "
        f"L3 {_bytes(c['l3_bytes'])}"
    )
    lines.append(
        f"autotune:    {tune['mode']}"
        + (f" (FASTCONV_AUTOTUNE={tune['env']})" if tune["env"] else "")
        + (f", file {tune['file']}" if tune.get("file") else "")
    )
    m = info["memory_cache"]
    lines.append(f"memory cache: {_bytes(m['held_bytes'])} held of {_bytes(m['limit_bytes'])}")
    return "\n".join(lines) + "\n"


def main(json_output=False):
    info = collect()
    if json_output:
        import json

        json.dump(info, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(info))
    return 0

"""fastconv.hardware(): the one description of the machine (csrc/hw.cpp) that the kernel tables
and the cache blocking follow. Its caches are checked against sysfs parsed here independently;
forcing (FASTCONV_ISA) and the sysfs parsing and fallbacks (FASTCONV_SYSFS_CACHE) in
subprocesses, as the description is made once, at load."""

import ctypes
import glob
import json
import os
import platform
import subprocess
import sys

import pytest

import fastconv
from _isa import AVAILABLE_ISAS, run_isa_json
from fastconv import _core

SYSFS = "/sys/devices/system/cpu/cpu0/cache"
ORDER = ["generic", "avx2", "avx512"]
FIELDS = {
    "isa": str,
    "best_isa": str,
    "l1d_bytes": int,
    "l2_bytes": int,
    "l3_bytes": int,
    "cores": int,
    "work_items": int,
    "model": str,
    "vendor": str,
    "full_avx512": bool,
    "fma512_ratio": float,
}
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _size(text):
    """sysfs's cache size ("32K", "1024K") in bytes."""
    text = text.strip()
    unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper())
    return int(text[:-1]) * unit if unit else int(text)


def _sysfs_caches(root=SYSFS):
    """{level: bytes} of the data/unified caches under root, the first of each level."""
    found = {}
    if not os.path.isdir(root):
        return found
    for entry in sorted(os.listdir(root), key=lambda e: (len(e), e)):
        if not entry.startswith("index"):
            continue
        try:
            read = lambda name: open(os.path.join(root, entry, name)).read().strip()  # noqa: E731
            level, kind, size = int(read("level")), read("type"), _size(read("size"))
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            found.setdefault(level, size)
    return found


def _without(hw, key):
    """hw less key and the multiply-add rate (a measurement, which each process makes anew)."""
    return {k: v for k, v in hw.items() if k not in (key, "fma512_ratio")}


HARDWARE_SCRIPT = "import json, fastconv; print(json.dumps(fastconv.hardware()))"


def _hardware_in_subprocess(**env):
    out = subprocess.run(
        [sys.executable, "-c", HARDWARE_SCRIPT],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fields_and_types():
    hw = fastconv.hardware()
    assert set(hw) == set(FIELDS)
    for name, kind in FIELDS.items():
        assert type(hw[name]) is kind, (name, hw[name])
    assert "hardware" in fastconv.__all__
    assert fastconv.hardware() == hw  # made once


def test_isa_agrees():
    hw = fastconv.hardware()
    assert hw["isa"] == fastconv.isa()
    assert hw["isa"] in ORDER and hw["best_isa"] in ORDER
    assert ORDER.index(hw["isa"]) <= ORDER.index(hw["best_isa"])


def test_cache_sizes_sane():
    hw = fastconv.hardware()
    assert 0 < hw["l1d_bytes"] < hw["l2_bytes"] <= hw["l3_bytes"]
    assert hw["l1d_bytes"] >= 1024 and hw["l3_bytes"] <= 4 << 30


def test_fma512_rate_measured_the_same_in_every_process():
    """full_avx512 (hw.h): on an AVX-512 CPU the 512-bit over the 256-bit multiply-add rate,
    about 1 (Zen 4's halves, one 512-bit pipe) or 2 (two 512-bit pipes), full from 1.5; every
    process classifies the CPU the same (auto's table follows it); FASTCONV_FULL_AVX512 pins it,
    FASTCONV_ISA does not change it. Without AVX-512: false, nothing measured."""
    runs = [_hardware_in_subprocess(FASTCONV_FULL_AVX512="") for _ in range(3)]
    hw = runs[0]
    if hw["best_isa"] != "avx512":
        assert all(not r["full_avx512"] and r["fma512_ratio"] == 0.0 for r in runs)
    else:
        for r in runs:
            assert 0.5 < r["fma512_ratio"] < 3.0, r
            assert r["full_avx512"] == (r["fma512_ratio"] >= 1.5)
        assert len({r["full_avx512"] for r in runs}) == 1
        lowered = _hardware_in_subprocess(FASTCONV_FULL_AVX512="", FASTCONV_ISA="avx2")
        assert lowered["full_avx512"] == hw["full_avx512"]
    avx512 = hw["best_isa"] == "avx512"
    assert _hardware_in_subprocess(FASTCONV_FULL_AVX512="1")["full_avx512"] == avx512
    assert _hardware_in_subprocess(FASTCONV_FULL_AVX512="0")["full_avx512"] is False


def test_cores():
    hw = fastconv.hardware()
    assert hw["cores"] >= 1
    allowed = {os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        allowed.add(len(os.sched_getaffinity(0)))
    assert hw["cores"] in allowed


def test_work_items_cover_the_cores():
    """8, or the power of two that covers the cores, at most 64 (fc_work_items)."""
    hw = fastconv.hardware()
    want = 8
    while want < hw["cores"] and want < 64:
        want *= 2
    if os.environ.get("FASTCONV_WORK_ITEMS") in ("8", "16", "32", "64"):
        want = int(os.environ["FASTCONV_WORK_ITEMS"])
    assert hw["work_items"] == want


@pytest.mark.parametrize(
    "value, pinned", [("16", 16), ("64", 64), ("8", 8), ("12", None), ("128", None), ("x", None)]
)
def test_work_items_env_pins_or_is_ignored(value, pinned):
    base = _hardware_in_subprocess(FASTCONV_WORK_ITEMS="")
    hw = _hardware_in_subprocess(FASTCONV_WORK_ITEMS=value)
    assert hw["work_items"] == (pinned if pinned else base["work_items"])
    assert _without(hw, "work_items") == _without(base, "work_items")


@pytest.mark.skipif(not X86, reason="the model and vendor come from CPUID")
def test_model_and_vendor_on_x86():
    hw = fastconv.hardware()
    assert hw["model"] and hw["model"] == hw["model"].strip()
    assert hw["vendor"] and len(hw["vendor"]) == 12


@pytest.mark.skipif(not _sysfs_caches(), reason="no readable sysfs cache description")
def test_caches_match_sysfs():
    want = _sysfs_caches()
    hw = fastconv.hardware()
    for level, key in ((1, "l1d_bytes"), (2, "l2_bytes"), (3, "l3_bytes")):
        if level in want:
            assert hw[key] == want[level], (key, hw[key], want)


@pytest.mark.slow  # a forced-ISA subprocess
def test_forced_generic_keeps_best_isa():
    hw = fastconv.hardware()
    forced = run_isa_json("generic", HARDWARE_SCRIPT)
    assert forced["isa"] == "generic"
    assert forced["best_isa"] == hw["best_isa"]
    assert _without(forced, "isa") == _without(hw, "isa")


@pytest.mark.slow  # a forced-ISA subprocess
def test_forcing_never_raises_the_isa():
    hw = fastconv.hardware()
    forced = run_isa_json("avx512", HARDWARE_SCRIPT)
    assert forced["isa"] == hw["best_isa"] and forced["best_isa"] == hw["best_isa"]


def _fake_sysfs(root, caches):
    for i, (level, kind, size) in enumerate(caches):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (d / name).write_text(f"{value}\n")


def test_sysfs_parsing(tmp_path):
    # instruction caches are skipped; "1024K" is 1 MiB
    _fake_sysfs(
        tmp_path,
        [
            (1, "Instruction", "64K"),
            (1, "Data", "48K"),
            (2, "Unified", "1024K"),
            (3, "Unified", "36864K"),
        ],
    )
    hw = _hardware_in_subprocess(FASTCONV_SYSFS_CACHE=str(tmp_path))
    assert (hw["l1d_bytes"], hw["l2_bytes"], hw["l3_bytes"]) == (48 << 10, 1 << 20, 36 << 20)


def test_without_sysfs_falls_back(tmp_path):
    # no sysfs: CPUID's cache leaves on x86, else the defaults; sane either way
    hw = _hardware_in_subprocess(FASTCONV_SYSFS_CACHE=str(tmp_path / "missing"))
    assert 0 < hw["l1d_bytes"] < hw["l2_bytes"] <= hw["l3_bytes"]
    if not X86:
        assert (hw["l1d_bytes"], hw["l2_bytes"], hw["l3_bytes"]) == (32 << 10, 1 << 20, 32 << 20)


def test_partial_sysfs_fills_the_rest(tmp_path):
    # sysfs with an L2 only: L1d and L3 come from CPUID (or the defaults), the L2 from sysfs
    _fake_sysfs(tmp_path, [(2, "Unified", "2048K")])
    hw = _hardware_in_subprocess(FASTCONV_SYSFS_CACHE=str(tmp_path))
    assert hw["l2_bytes"] == 2 << 20
    assert hw["l1d_bytes"] > 0 and hw["l3_bytes"] > 0


class HwInfo(ctypes.Structure):  # fc_hw_info, as fastconv.h lays it out
    _fields_ = [
        ("isa", ctypes.c_char_p),
        ("best_isa", ctypes.c_char_p),
        ("l1d_bytes", ctypes.c_int64),
        ("l2_bytes", ctypes.c_int64),
        ("l3_bytes", ctypes.c_int64),
        ("cores", ctypes.c_int32),
        ("model", ctypes.c_char * 64),
        ("vendor", ctypes.c_char * 16),
        ("full_avx512", ctypes.c_int32),
        ("fma512_ratio", ctypes.c_double),
    ]


def _libfastconv():
    hits = glob.glob(os.path.join(fastconv.get_lib_dir(), "libfastconv*.so*"))
    if not hits:
        pytest.skip("libfastconv shared library not found")
    lib = ctypes.CDLL(sorted(hits)[0])
    lib.fc_hardware.argtypes = [ctypes.POINTER(HwInfo)]
    lib.fc_hardware.restype = ctypes.c_int
    lib.fc_work_items.restype = ctypes.c_int32
    lib.fc_last_error.restype = ctypes.c_char_p
    return lib


def test_c_abi_struct_matches_python():
    lib = _libfastconv()
    info = HwInfo()
    assert lib.fc_hardware(ctypes.byref(info)) == 0
    got = {name: getattr(info, name) for name, _ in HwInfo._fields_}
    got = {k: v.decode() if isinstance(v, bytes) else v for k, v in got.items()}
    got["work_items"] = lib.fc_work_items()
    assert got == fastconv.hardware()


def test_c_abi_null_is_einval():
    lib = _libfastconv()
    assert lib.fc_hardware(None) == 1  # FC_EINVAL
    assert b"out" in lib.fc_last_error()


def _two_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    return cpus[:2]


def test_core_round_trip_measures_and_puts_the_affinity_back():
    """fc_core_round_trip: a positive figure in ns (a cache line's round trip is tens to
    hundreds of ns on any machine, never under 1 or over a millisecond), the calling thread
    back on every CPU it had."""
    a, b = _two_cpus()
    before = os.sched_getaffinity(0)
    ns = _core.core_round_trip(a, b, 0.01)
    assert 1 < ns < 1e6
    assert os.sched_getaffinity(0) == before
    assert 1 < _core.core_round_trip(b, a, 0.01) < 1e6  # either way round


@pytest.mark.parametrize(
    "args, words",
    [
        ((0, 0, 0.01), "cpu_a == cpu_b"),
        ((0, 1, 0.0), "seconds"),
        ((0, 1, 11.0), "seconds"),
        ((0, 1, float("nan")), "seconds"),
        ((-1, 1, 0.01), "CPU -1"),
        ((0, 1 << 20, 0.01), "CPU 1048576"),
    ],
)
def test_core_round_trip_bad_arguments_name_them(args, words):
    _two_cpus()
    before = os.sched_getaffinity(0)
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        _core.core_round_trip(*args)
    assert os.sched_getaffinity(0) == before


def test_core_round_trip_refuses_a_cpu_outside_the_affinity_mask():
    """A CPU the thread may not run on is refused before anything is pinned (a subprocess
    restricted to one CPU)."""
    a, b = _two_cpus()
    code = (
        "import os; from fastconv import _core\n"
        f"os.sched_setaffinity(0, {{{a}}})\n"
        "try:\n"
        f"    _core.core_round_trip({a}, {b}, 0.01)\n"
        "except ValueError as e:\n"
        "    print('refused', e)\n"
        "print(sorted(os.sched_getaffinity(0)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "refused" in out.stdout and f"CPU {b} is not one" in out.stdout
    assert out.stdout.strip().endswith(f"[{a}]")


def test_c_abi_core_round_trip_status_codes():
    lib = _libfastconv()
    lib.fc_core_round_trip.argtypes = [
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_double,
        ctypes.POINTER(ctypes.c_double),
    ]
    lib.fc_core_round_trip.restype = ctypes.c_int
    assert lib.fc_core_round_trip(0, 1, 0.01, None) == 1  # FC_EINVAL: ns is NULL
    assert b"ns is NULL" in lib.fc_last_error()
    a, b = _two_cpus()
    ns = ctypes.c_double(-1)
    assert lib.fc_core_round_trip(a, b, 0.01, ctypes.byref(ns)) == 0
    assert 1 < ns.value < 1e6


_CORENAME_SCRIPT = (
    "import glob, json, os, ctypes\n"
    "import fastconv, scipy_openblas32 as s\n"
    "lib = ctypes.CDLL(sorted(glob.glob(os.path.join(s.get_lib_dir(), '*.so*')))[0])\n"
    "f = lib.scipy_openblas_get_corename\n"
    "f.restype = ctypes.c_char_p\n"
    "print(json.dumps([f().decode(), os.environ.get('OPENBLAS_CORETYPE')]))"
)


@pytest.mark.skipif("avx2" not in AVAILABLE_ISAS, reason="needs an AVX2 CPU")
def test_forced_avx2_runs_openblas_haswell_kernels_too():
    """FASTCONV_ISA=avx2 is an AVX2 CPU for the whole library: OpenBLAS loads its Haswell
    kernels (OPENBLAS_CORETYPE, set before the library loads); a coretype the user set stays."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}

    def corename(**extra):
        out = subprocess.run(
            [sys.executable, "-c", _CORENAME_SCRIPT],
            env=dict(env, **extra),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert corename(FASTCONV_ISA="avx2") == ["Haswell", "Haswell"]
    assert corename()[1] is None  # (left alone otherwise)
    assert corename(FASTCONV_ISA="avx2", OPENBLAS_CORETYPE="Sandybridge") == [
        "Sandybridge",
        "Sandybridge",
    ]


def test_bench_peers_follow_forced_avx2():
    """The benchmarks' PyTorch runs AVX2 kernels with FASTCONV_ISA=avx2, unless told otherwise."""
    script = (
        "import json, os, fastconv.bench as b\n"
        "print(json.dumps([b.peers_follow_forced_isa(), os.environ.get('ONEDNN_MAX_CPU_ISA')]))"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    }
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(env, FASTCONV_ISA="avx2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == [{"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2"]

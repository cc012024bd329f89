"""bench/core_latency.c: the cache-line round trip between two pinned threads, the check for
the VM state that slows fastconv's plans (ARCHITECTURE.md, "How the benchmarks measure").
Built with the system's C compiler, where there is one."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "bench" / "core_latency.c"
CC = shutil.which("cc") or shutil.which("gcc")
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

pytestmark = pytest.mark.skipif(
    CC is None or len(CPUS) < 2, reason="needs a C compiler and two CPUs to pin"
)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    exe = tmp_path_factory.mktemp("core_latency") / "core_latency"
    subprocess.run([CC, "-O2", "-pthread", str(SRC), "-o", str(exe)], check=True, timeout=120)
    return exe


def test_prints_a_round_trip_per_half_second(probe):
    done = subprocess.run(
        [str(probe), "1.2", str(CPUS[0]), str(CPUS[1])], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    values = [float(v) for v in done.stdout.split()]
    assert 2 <= len(values) <= 4
    assert all(5 < v < 1e6 for v in values)  # ns: a cache line's round trip, not 0, not stuck


@pytest.mark.parametrize("args", [["0"], ["1", "0", "0"], ["1", "-1"], ["1", "0", "100000"]])
def test_bad_arguments_or_cpus_exit_2(probe, args):
    done = subprocess.run([str(probe), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr

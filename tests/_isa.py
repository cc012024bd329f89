"""Forced-ISA runs, shared by the tests: fastconv reads FASTCONV_ISA once, when it loads, so each
instruction set below the machine's best is checked in a Python subprocess of its own."""

import json
import os
import subprocess
import sys

import fastconv

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

ORDER = ("generic", "avx2", "avx512")
#: The instruction sets this CPU runs, lowest first: every one up to its best (whatever
#: FASTCONV_ISA this process itself was started with).
AVAILABLE_ISAS = list(ORDER[: ORDER.index(fastconv.hardware()["best_isa"]) + 1])


def run_isa(isa, script, *args, timeout=600, **env):
    """Run the Python source ``script`` in a fresh interpreter with ``FASTCONV_ISA=isa`` (and
    the other environment variables in ``env``); its arguments are this directory (for its
    ``sys.path``) and then ``args``. Fails the test, showing the output, unless it exits 0;
    returns the CompletedProcess (text stdout and stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", script, TESTS_DIR, *map(str, args)],
        env=dict(os.environ, FASTCONV_ISA=isa, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"FASTCONV_ISA={isa} {env}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def run_isa_json(isa, script, *args, timeout=600, **env):
    """:func:`run_isa`, then the JSON object that the script printed on its last line."""
    proc = run_isa(isa, script, *args, timeout=timeout, **env)
    return json.loads(proc.stdout.strip().splitlines()[-1])

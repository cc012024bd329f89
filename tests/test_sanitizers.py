"""The C++ sanitizer driver (tests/sanitize/): every csrc/ source built with
-fsanitize=address,undefined -fno-sanitize-recover=all, run once per instruction set.

Each run checks every convolution algorithm (forward, data and weight gradients, float and
double, explicit algorithms that must refuse) and every pooling entry at edge and random small
shapes against FC_ALGO_REFERENCE / naive loops, then fuzzes the C ABI with hostile descriptors.
Any mismatch, any status outside fc_status, any sanitizer report fails the run.
Skipped only when no C++ compiler is installed.
"""

import importlib.util
import os
import re
import subprocess

import pytest

import fastconv

HERE = os.path.dirname(os.path.abspath(__file__))
# tests/sanitize/build.py, loaded by path (a module named "build" may already be imported)
_spec = importlib.util.spec_from_file_location(
    "fastconv_sanitize_build", os.path.join(HERE, "sanitize", "build.py")
)
sanitize_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sanitize_build)

ISAS = ["generic", "avx2", "avx512"]
# Per ISA, on top of the hand-picked edge shapes: random conv configurations, random pool
# configurations. Fuzzed descriptors: 100,000 on the CPU's own ISA, 10,000 on the others
# (the descriptor checks do not depend on the ISA; the kernels the fuzzer reaches do).
CONV_CONFIGS, POOL_CONFIGS = 400, 250
FUZZ_FULL, FUZZ_OTHER = 100_000, 10_000
PLANS = 2000  # random inference plans (tests/sanitize/plan_fuzz.cpp)
TRAIN = 200  # random cases of the training kernels (tests/sanitize/train_check.cpp)

pytestmark = [
    pytest.mark.slow,  # a full build of csrc/ under the sanitizers, then minutes per ISA
    pytest.mark.skipif(
        sanitize_build.compiler() is None,
        reason="no C++ compiler ($CXX, g++ or c++) to build the sanitizer driver",
    ),
]


def sanitizer_env(**extra):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.update(
        # Leak checking stays on: the driver must exit with nothing leaked.
        ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
        # libgomp's idle threads spin by default; under the sanitizers on a loaded 2-core
        # machine that multiplies the run time by ~10. Sleeping changes no result.
        OMP_WAIT_POLICY="passive",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    out = tmp_path_factory.mktemp("sanitize")
    try:
        return sanitize_build.build(str(out))
    except subprocess.CalledProcessError as e:
        pytest.fail(
            f"building the sanitizer driver failed:\n{' '.join(e.cmd)}\n{e.stdout}{e.stderr}"
        )


def test_sanitizers_are_live(tmp_path):
    """The toolchain really instruments: a one-element overrun and a signed overflow abort."""
    cxx = sanitize_build.compiler()
    src = tmp_path / "oob.cpp"
    src.write_text(
        "#include <cstdint>\n#include <cstdlib>\n#include <vector>\n"
        "int main(int argc, char **) {\n"
        "  std::vector<float> v(5);\n"
        "  if (argc == 1) return (int)v[4];\n"
        "  if (argc == 2) return (int)v.data()[v.size()];\n"
        "  int64_t big = INT64_MAX - 3 + argc;  // argc == 3: INT64_MAX\n"
        "  return (int)((big + 1) & 1);\n}\n"
    )
    exe = str(tmp_path / "oob")
    subprocess.run(
        [*cxx, "-g", *sanitize_build.SANITIZE, str(src), "-o", exe], check=True, capture_output=True
    )
    env = sanitizer_env()
    assert subprocess.run([exe], env=env, capture_output=True).returncode == 0
    r = subprocess.run([exe, "x"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "heap-buffer-overflow" in r.stderr, r.stderr[-2000:]
    r = subprocess.run([exe, "x", "y"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "signed integer overflow" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("isa", ISAS)
def test_sanitizer_driver(driver, isa):
    best = fastconv.isa()
    if ISAS.index(isa) > ISAS.index(best):
        pytest.skip(f"this CPU runs at most {best}")
    conv, pool = CONV_CONFIGS, POOL_CONFIGS
    fuzz = FUZZ_FULL if isa == best else FUZZ_OTHER
    cmd = [
        driver,
        "--isa",
        isa,
        "--conv",
        str(conv),
        "--pool",
        str(pool),
        "--fuzz",
        str(fuzz),
        "--plans",
        str(PLANS),
        "--train",
        str(TRAIN),
        "--seed",
        str(1000 + ISAS.index(isa)),
    ]
    r = subprocess.run(
        cmd, env=sanitizer_env(FASTCONV_ISA=isa), capture_output=True, text=True, timeout=900
    )
    report = (
        f"$ FASTCONV_ISA={isa} {' '.join(cmd)}\nexit {r.returncode}\n{r.stdout}\n{r.stderr[-6000:]}"
    )
    assert r.returncode == 0, report
    m = re.search(
        r"conv_configs=(\d+) pool_configs=(\d+) fuzz_descriptors=(\d+) plans=(\d+) "
        r"train_cases=(\d+) checks=(\d+) failures=(\d+)",
        r.stdout,
    )
    assert m, report
    nconv, npool, nfuzz, nplans, ntrain, checks, failures = map(int, m.groups())
    assert failures == 0 and nconv > conv and npool > pool and nfuzz == fuzz and checks > 0, report
    assert ntrain == TRAIN, report
    # the plan fuzz target ran its plans, and enough of its steps were accepted (and run) to
    # matter: they are what reaches the executor
    steps = re.search(r"plan steps: (\d+) offered, (\d+) accepted", r.stderr)
    assert nplans == PLANS and steps and int(steps.group(2)) >= PLANS // 10, report
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, report

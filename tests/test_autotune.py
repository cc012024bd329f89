"""Measured algorithm choice: fastconv.set_autotune, the C table, its text form and the
per-machine file. What is chosen depends on timings; what is checked is that the choice is
one that can run the call, that it is remembered and used, and that results stay within the
accuracy contract."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from conftest import TESTS_DIR, assert_close, expected_backward, expected_forward
from fastconv import _core
from fastconv.functional import _ALGO_IDS

DESC = [2, 8, 12, 12, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1]  # x (2, 8, 12, 12), w (8, 8, 3, 3), pad 1


@pytest.fixture
def autotune():
    fastconv.clear_autotune()
    fastconv.set_autotune("on")
    yield
    fastconv.set_autotune("off")
    fastconv.clear_autotune()


def _inputs(dtype=np.float64):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8, 12, 12)).astype(dtype)
    w = rng.standard_normal((8, 8, 3, 3)).astype(dtype)
    return x, w


def test_off_by_default_and_modes_are_checked():
    assert fastconv.get_autotune() == "off" and _core.get_autotune() == 0
    with pytest.raises(ValueError, match="mode must be one of"):
        fastconv.set_autotune("fast")
    with pytest.raises(ValueError, match="mode must be"):
        _core.set_autotune(5)
    x, w = _inputs()
    fastconv.conv2d(x, w, padding=1)
    assert _core.conv2d_tuned(DESC, 0, True) is None  # nothing measured while off


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_tuned_choice_is_remembered_and_used(autotune, dtype):
    x, w = _inputs(dtype)
    b = np.linspace(-1, 1, 8).astype(dtype)
    y = fastconv.conv2d(x, w, b, padding=1)
    choice = _core.conv2d_tuned(DESC, 0, dtype == np.float64)
    assert choice in fastconv.algorithms(x.shape, w.shape, padding=1)
    assert choice != "reference"
    # the outputs are the chosen algorithm's, and later calls run the same one
    np.testing.assert_array_equal(y, fastconv.conv2d(x, w, b, padding=1, algo=choice))
    np.testing.assert_array_equal(y, fastconv.conv2d(x, w, b, padding=1))
    expected, scale = expected_forward(x, w, b, 1, 1, 1, 1)
    assert_close(y, expected, dtype, scale)
    assert _core.autotune_size() == 1


def test_every_direction_is_tuned(autotune):
    x, w = _inputs()
    y = fastconv.conv2d(x, w, padding=1)
    dy = np.random.default_rng(6).standard_normal(y.shape)
    dx, dw, db = fastconv.conv2d_backward(dy, x, w, padding=1)
    (ex, ew, eb), (sx, sw, sb) = expected_backward(dy, x, w, 1, 1, 1, 1)
    assert_close(dx, ex, np.float64, sx)
    assert_close(dw, ew, np.float64, sw)
    assert_close(db, eb, np.float64, sb)
    for direction in range(3):
        assert _core.conv2d_tuned(DESC, direction, True) in fastconv.ALGORITHMS
    # the bias gradient alone measures nothing
    fastconv.clear_autotune()
    fastconv.conv2d_backward(dy, x, w, padding=1, needs=(False, False, True))
    assert _core.conv2d_tuned(DESC, 2, True) is None


def test_export_import_round_trip_all_or_nothing(autotune):
    x, w = _inputs()
    fastconv.conv2d(x, w, padding=1)
    text = fastconv.export_autotune()
    assert text.startswith("# fastconv-autotune 1\t") and text.count("\n") == 2
    fastconv.clear_autotune()
    assert _core.autotune_size() == 0
    assert fastconv.import_autotune(text) == 1
    assert fastconv.export_autotune() == text
    fastconv.clear_autotune()
    bad = text + "1 2 3 not an entry\n"
    with pytest.raises(ValueError, match="line 3 is not an autotune entry"):
        fastconv.import_autotune(bad)
    assert _core.autotune_size() == 0  # nothing taken from a file with a bad line
    foreign = text.replace(_core.isa(), "elsewhere", 1)
    with pytest.raises(ValueError, match="measured elsewhere"):
        fastconv.import_autotune(foreign)


def test_an_imported_choice_that_cannot_run_falls_back_to_the_heuristic(autotune):
    x, w = _inputs()
    stride2 = DESC[:7] + [2, 2] + DESC[9:]
    line = (
        " ".join(map(str, stride2)) + f" 0 1 {fastconv.get_num_threads()} {_core.isa()} fft 0.001\n"
    )
    assert fastconv.import_autotune(line) == 1
    y = fastconv.conv2d(x, w, stride=2, padding=1)  # fft cannot run stride 2
    expected, scale = expected_forward(x, w, None, 2, 1, 1, 1)
    assert_close(y, expected, np.float64, scale)


_PERSIST = """
    import warnings, numpy as np, fastconv
    from fastconv import _core
    warnings.simplefilter("error")          # a warning fails the child unless expected
    fastconv.set_autotune("persist")
    print("loaded", _core.autotune_size())
    x = np.ones((2, 8, 12, 12)); w = np.ones((8, 8, 3, 3))
    fastconv.conv2d(x, w, padding=1)
    print("path", fastconv.autotune_cache_path())
"""


def _child(script, cache, expect_warning=False):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), FASTCONV_AUTOTUNE="")
    code = textwrap.dedent(script)
    if expect_warning:
        code = code.replace('warnings.simplefilter("error")', 'warnings.simplefilter("always")')
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=TESTS_DIR,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout, p.stderr


def test_persist_saves_at_exit_and_loads_next_time(tmp_path):
    out, _ = _child(_PERSIST, tmp_path)
    assert "loaded 0" in out
    path = out.split("path ", 1)[1].strip()
    assert path.startswith(str(tmp_path / "fastconv")) and os.path.exists(path)
    with open(path) as f:
        assert f.readline().startswith("# fastconv-autotune 1\t")
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]
    out, _ = _child(_PERSIST, tmp_path)
    assert "loaded 1" in out


@pytest.mark.parametrize(
    "content", ["\x00\xff garbage", "# fastconv-autotune 1\tother machine\n", None]
)
def test_corrupt_or_foreign_file_is_ignored_with_a_warning(tmp_path, content):
    out, _ = _child(_PERSIST, tmp_path)  # learn the path
    path = out.split("path ", 1)[1].strip()
    if content is None:  # the right header, a corrupt body
        with open(path) as f:
            content = f.readline() + "this is not an entry\n"
    with open(path, "w", encoding="latin-1") as f:
        f.write(content)
    out, err = _child(_PERSIST, tmp_path, expect_warning=True)
    assert "loaded 0" in out and "ignoring" in err and "autotune file" in err


def test_environment_variable_sets_the_mode(tmp_path):
    env = dict(os.environ, FASTCONV_AUTOTUNE="on", XDG_CACHE_HOME=str(tmp_path))
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fastconv; from fastconv import _core; "
            "print(fastconv.get_autotune(), _core.get_autotune())",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.stdout.split() == ["on", "1"], p.stdout + p.stderr
    env["FASTCONV_AUTOTUNE"] = "sometimes"
    p = subprocess.run(
        [sys.executable, "-c", "import fastconv; print(fastconv.get_autotune())"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.stdout.strip() == "off" and "FASTCONV_AUTOTUNE" in p.stderr


def test_algo_ids_cover_the_tuned_names():
    assert set(_ALGO_IDS) - {"auto"} == set(fastconv.ALGORITHMS)


def test_c_abi_export_sizes_and_import_errors(autotune):
    import ctypes

    from test_c_abi import LIB_PATH

    if LIB_PATH is None:
        pytest.skip("libfastconv shared library not found")
    lib = ctypes.CDLL(LIB_PATH)
    lib.fc_autotune_export.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64),
    ]
    lib.fc_autotune_import.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64)]
    lib.fc_last_error.restype = ctypes.c_char_p
    x, w = _inputs()
    fastconv.conv2d(x, w, padding=1)
    needed = ctypes.c_int64(-1)
    assert lib.fc_autotune_export(None, 0, ctypes.byref(needed)) == 0 and needed.value > 10
    small = ctypes.create_string_buffer(4)
    assert lib.fc_autotune_export(small, 4, ctypes.byref(needed)) == 1  # FC_EINVAL
    assert small.raw == b"\0" * 4  # nothing written
    buf = ctypes.create_string_buffer(needed.value)
    assert lib.fc_autotune_export(buf, needed.value, ctypes.byref(needed)) == 0
    assert buf.value.decode() == _core.autotune_export()
    n = ctypes.c_int64(-1)
    assert lib.fc_autotune_import(None, ctypes.byref(n)) == 1
    assert lib.fc_autotune_import(b"# only a comment\n\n", ctypes.byref(n)) == 0 and n.value == 0
    bad = buf.value.replace(b" 0 1 ", b" 0 7 ", 1)  # dtype 7
    assert lib.fc_autotune_import(bad, ctypes.byref(n)) == 1
    assert b"line 1" in lib.fc_last_error()


def test_a_1x1_is_never_tuned_to_im2col(autotune):
    # im2col on a 1x1 kernel runs gemm1x1's code: the tuner times it once, as gemm1x1
    x = np.random.default_rng(8).standard_normal((2, 16, 10, 10))
    for stride in (1, 2):
        w = np.random.default_rng(9).standard_normal((24, 16, 1, 1))
        y = fastconv.conv2d(x, w, stride=stride)
        desc = [2, 16, 10, 10, 24, 1, 1, stride, stride, 0, 0, 1, 1, 1]
        choice = _core.conv2d_tuned(desc, 0, True)
        assert choice in fastconv.algorithms(x.shape, w.shape, stride=stride) and choice != "im2col"
        np.testing.assert_array_equal(y, fastconv.conv2d(x, w, stride=stride, algo=choice))
        # and im2col's own result on it is gemm1x1's, bit for bit
        np.testing.assert_array_equal(
            fastconv.conv2d(x, w, stride=stride, algo="im2col"),
            fastconv.conv2d(x, w, stride=stride, algo="gemm1x1"),
        )

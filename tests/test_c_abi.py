"""The plain C ABI of libfastconv (csrc/include/fastconv/fastconv.h), called through ctypes.

Skipped when the shared library cannot be found. Invalid descriptors are tried in a child
process, so a crash shows up as a failed test instead of taking the test run down.
"""

import ctypes
import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from conftest import DTYPE_IDS, DTYPES, TESTS_DIR, assert_close, expected_backward, expected_forward

FC_OK, FC_EINVAL, FC_ENOMEM, FC_EUNSUPPORTED, FC_EOVERFLOW = range(5)
DESC_FIELDS = [
    "n",
    "c",
    "h",
    "w",
    "k",
    "kh",
    "kw",
    "stride_h",
    "stride_w",
    "pad_h",
    "pad_w",
    "dil_h",
    "dil_w",
    "groups",
]


class Desc(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int64) for f in DESC_FIELDS]


def find_library():
    """The libfastconv that fastconv._core has loaded (else one installed beside it)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if (
                    os.path.basename(path).startswith("libfastconv")
                    and ".so" in path
                    and os.path.exists(path)
                ):
                    return path
    except OSError:
        pass
    pkg = os.path.dirname(fastconv.__file__)
    hits = sorted(
        glob.glob(os.path.join(pkg, "**", "libfastconv*.so*"), recursive=True)
        + glob.glob(os.path.join(pkg, "**", "libfastconv*.dylib"), recursive=True)
    )
    return hits[0] if hits else None


LIB_PATH = find_library()
pytestmark = pytest.mark.skipif(LIB_PATH is None, reason="libfastconv shared library not found")


def load(path):
    lib = ctypes.CDLL(path)
    P, D, Int = ctypes.c_void_p, ctypes.POINTER(Desc), ctypes.c_int
    lib.fc_conv2d_forward.argtypes = [D, Int, Int, P, P, P, P]
    lib.fc_conv2d_backward_data.argtypes = [D, Int, Int, P, P, P]
    lib.fc_conv2d_backward_data_into.argtypes = [D, Int, Int, P, P, P]
    lib.fc_conv2d_backward_weight.argtypes = [D, Int, Int, P, P, P, P]
    lib.fc_conv2d_output_size.argtypes = [
        D,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int64),
    ]
    lib.fc_conv2d_supports.argtypes = [D, Int]
    lib.fc_conv2d_cost.argtypes = [D, Int, Int, ctypes.POINTER(ctypes.c_double)]
    lib.fc_conv2d_cost.restype = Int
    lib.fc_algo_count.restype = Int
    lib.fc_algo_flags.argtypes = [Int]
    lib.fc_algo_flags.restype = ctypes.c_uint
    lib.fc_algo_description.argtypes = [Int]
    lib.fc_algo_description.restype = ctypes.c_char_p
    for fn in (
        "fc_conv2d_forward",
        "fc_conv2d_backward_data",
        "fc_conv2d_backward_data_into",
        "fc_conv2d_backward_weight",
        "fc_conv2d_output_size",
        "fc_conv2d_supports",
    ):
        getattr(lib, fn).restype = Int
    lib.fc_status_string.argtypes = [Int]
    lib.fc_status_string.restype = ctypes.c_char_p
    lib.fc_set_num_threads.argtypes = [Int]
    lib.fc_get_num_threads.restype = Int
    for fn in ("fc_last_error", "fc_isa"):
        if hasattr(lib, fn):
            getattr(lib, fn).restype = ctypes.c_char_p
    if hasattr(lib, "fc_algo_name"):
        lib.fc_algo_name.argtypes = [Int]
        lib.fc_algo_name.restype = ctypes.c_char_p
    return lib


@pytest.fixture(scope="module")
def lib():
    return load(LIB_PATH)


def algo_ids(path):
    """{name: fc_algo} for every value the library registers, "auto" (0) included."""
    if path is None:
        return {"auto": 0}
    lib = load(path)
    return {lib.fc_algo_name(i).decode(): i for i in range(lib.fc_algo_count())}


ALGO_IDS = algo_ids(LIB_PATH)


def desc(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    def p(v):
        return (v, v) if isinstance(v, int) else v

    (sh, sw), (ph, pw), (dh, dw) = p(stride), p(padding), p(dilation)
    n, c, h, w = x_shape
    k, _, kh, kw = w_shape
    return Desc(n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, groups)


def ptr(a):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


CASES = [
    ((2, 4, 11, 9), (6, 4, 3, 3), dict(stride=1, padding=1, dilation=1, groups=1)),
    ((1, 6, 13, 11), (9, 2, 5, 3), dict(stride=(2, 1), padding=(2, 0), dilation=(1, 2), groups=3)),
    ((2, 5, 9, 9), (10, 1, 3, 3), dict(stride=2, padding=1, dilation=2, groups=5)),
    ((2, 8, 7, 9), (12, 8, 1, 1), dict(stride=2, padding=1, dilation=1, groups=1)),
    ((2, 4, 12, 10), (6, 2, 3, 3), dict(stride=1, padding=2, dilation=(2, 3), groups=2)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("algo", list(ALGO_IDS))
@pytest.mark.parametrize("case", CASES, ids=["dense", "grouped", "depthwise", "1x1", "dilated"])
def test_c_forward_and_backward(lib, case, algo, dtype, rng):
    x_shape, w_shape, params = case
    d = desc(x_shape, w_shape, **params)
    fdt = 0 if dtype == np.float32 else 1
    if algo != "auto":
        status = lib.fc_conv2d_supports(ctypes.byref(d), ALGO_IDS[algo])
        assert status in (FC_OK, FC_EUNSUPPORTED)
        if status == FC_EUNSUPPORTED:
            x = np.zeros(x_shape, dtype)
            w = np.zeros(w_shape, dtype)
            y = np.zeros((1,), dtype)
            assert (
                lib.fc_conv2d_forward(
                    ctypes.byref(d), fdt, ALGO_IDS[algo], ptr(x), ptr(w), None, ptr(y)
                )
                == FC_EUNSUPPORTED
            )
            return
    ho, wo = ctypes.c_int64(), ctypes.c_int64()
    assert lib.fc_conv2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) == FC_OK
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    ye, sy = expected_forward(x, w, b, **params)
    assert (ho.value, wo.value) == ye.shape[2:]
    y = np.full(ye.shape, np.nan, dtype)
    assert (
        lib.fc_conv2d_forward(ctypes.byref(d), fdt, ALGO_IDS[algo], ptr(x), ptr(w), ptr(b), ptr(y))
        == FC_OK
    )
    assert_close(y, ye, dtype, sy, f"y ({algo})")
    y0 = np.full(ye.shape, np.nan, dtype)
    assert (
        lib.fc_conv2d_forward(ctypes.byref(d), fdt, ALGO_IDS[algo], ptr(x), ptr(w), None, ptr(y0))
        == FC_OK
    )
    assert_close(y0, ye - b[:, None, None], dtype, sy, f"y without bias ({algo})")

    dy = rng.standard_normal(ye.shape).astype(dtype)
    (gx, gw, gb), (sx, sw, sb) = expected_backward(dy, x, w, **params)
    dx = np.full(x.shape, np.nan, dtype)  # overwritten, not accumulated into
    assert (
        lib.fc_conv2d_backward_data(ctypes.byref(d), fdt, ALGO_IDS[algo], ptr(dy), ptr(w), ptr(dx))
        == FC_OK
    )
    assert_close(dx, gx, dtype, sx, f"grad_x ({algo})")
    d0 = rng.standard_normal(x.shape).astype(dtype)  # added into, not overwritten
    dx_into = d0.copy()
    assert (
        lib.fc_conv2d_backward_data_into(
            ctypes.byref(d), fdt, ALGO_IDS[algo], ptr(dy), ptr(w), ptr(dx_into)
        )
        == FC_OK
    )
    assert_close(dx_into, d0 + gx, dtype, sx + np.abs(d0), f"grad_x added into ({algo})")
    dw = np.full(w.shape, np.nan, dtype)
    db = np.full(b.shape, np.nan, dtype)
    assert (
        lib.fc_conv2d_backward_weight(
            ctypes.byref(d), fdt, ALGO_IDS[algo], ptr(dy), ptr(x), ptr(dw), ptr(db)
        )
        == FC_OK
    )
    assert_close(dw, gw, dtype, sw, f"grad_w ({algo})")
    assert_close(db, gb, dtype, sb, f"grad_b ({algo})")
    dw2 = np.full(w.shape, np.nan, dtype)
    assert (
        lib.fc_conv2d_backward_weight(
            ctypes.byref(d), fdt, ALGO_IDS[algo], ptr(dy), ptr(x), ptr(dw2), None
        )
        == FC_OK
    )
    assert_close(dw2, gw, dtype, sw, f"grad_w without bias ({algo})")
    db2 = np.full(b.shape, np.nan, dtype)
    assert (
        lib.fc_conv2d_backward_weight(
            ctypes.byref(d), fdt, ALGO_IDS[algo], ptr(dy), ptr(x), None, ptr(db2)
        )
        == FC_OK
    )
    assert_close(db2, gb, dtype, sb, f"grad_b alone ({algo})")


def test_c_status_strings(lib):
    for s in (FC_OK, FC_EINVAL, FC_ENOMEM, FC_EUNSUPPORTED, FC_EOVERFLOW):
        text = lib.fc_status_string(s)
        assert text, s
    assert lib.fc_status_string(12345) is not None  # unknown values still give a string


def test_c_names_match_python(lib):
    if hasattr(lib, "fc_isa"):
        assert lib.fc_isa().decode() == fastconv.isa()
    assert tuple(ALGO_IDS) == ("auto",) + tuple(fastconv.ALGORITHMS)
    assert list(ALGO_IDS.values()) == list(range(lib.fc_algo_count()))
    assert lib.fc_algo_name(999) is None


def test_c_threads_are_the_python_threads(lib, restore_threads):
    lib.fc_set_num_threads(1)
    assert lib.fc_get_num_threads() == 1 and fastconv.get_num_threads() == 1
    fastconv.set_num_threads(2)
    assert lib.fc_get_num_threads() == 2


# --- invalid descriptors, in a child process -----------------------------------------------

INVALID_SCRIPT = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import fastconv  # loads libfastconv and OpenBLAS the normal way
    import test_c_abi as t
    lib = t.load(sys.argv[2])
    good = dict(n=2, c=4, h=9, w=9, k=6, kh=3, kw=3, stride_h=1, stride_w=1, pad_h=0, pad_w=0,
                dil_h=1, dil_w=1, groups=1)
    bad = {
        "n=0": dict(n=0), "c=0": dict(c=0), "h=0": dict(h=0), "k=0": dict(k=0),
        "kh=0": dict(kh=0), "w=-1": dict(w=-1), "n=-5": dict(n=-5),
        "stride_h=0": dict(stride_h=0), "stride_w=-1": dict(stride_w=-1),
        "dil_w=0": dict(dil_w=0), "pad_h=-1": dict(pad_h=-1),
        "groups=0": dict(groups=0), "groups=-2": dict(groups=-2),
        "groups not dividing c": dict(groups=3, k=6), "groups not dividing k": dict(groups=4, k=6),
        "kernel larger": dict(kh=11), "dilated kernel larger": dict(dil_w=5),
        "overflow n*c*h*w": dict(n=2**40, c=2**20, h=2**10, w=2**10),
        "overflow k*c*kh*kw": dict(k=2**62, c=4),
        "overflow output": dict(n=2**62, k=2**62),
        "huge padding": dict(pad_h=2**62),
        "huge dilation": dict(dil_h=2**62),
    }
    buf = np.zeros(1 << 16)
    p = buf.ctypes.data_as(ctypes.c_void_p)
    failures = []
    for name, change in bad.items():
        d = t.Desc(**dict(good, **change))
        for dtype in (0, 1):
            for algo in range(lib.fc_algo_count()):
                for fn, args in (("fc_conv2d_forward", (p, p, p, p)),
                                 ("fc_conv2d_backward_data", (p, p, p)),
                                 ("fc_conv2d_backward_data_into", (p, p, p)),
                                 ("fc_conv2d_backward_weight", (p, p, p, p))):
                    s = getattr(lib, fn)(ctypes.byref(d), dtype, algo, *args)
                    if s not in (t.FC_EINVAL, t.FC_EOVERFLOW, t.FC_EUNSUPPORTED):
                        failures.append(f"{fn} {name} dtype={dtype} algo={algo}: status {s}")
        ho, wo = ctypes.c_int64(), ctypes.c_int64()
        if lib.fc_conv2d_output_size(ctypes.byref(d), ctypes.byref(ho), ctypes.byref(wo)) == 0:
            failures.append(f"fc_conv2d_output_size accepted {name}")
        if lib.fc_conv2d_supports(ctypes.byref(d), 1) == 0:
            failures.append(f"fc_conv2d_supports accepted {name}")
        cost = ctypes.c_double(-1)
        for algo in range(lib.fc_algo_count()):
            s = lib.fc_conv2d_cost(ctypes.byref(d), algo, 0, ctypes.byref(cost))
            if s not in (t.FC_EINVAL, t.FC_EOVERFLOW) or cost.value != -1:
                failures.append(f"fc_conv2d_cost {name} algo={algo}: status {s}")
    # null pointers with a valid descriptor
    d = t.Desc(**good)
    for fn, args in (("fc_conv2d_forward", (None, p, None, p)),
                     ("fc_conv2d_forward", (p, None, None, p)),
                     ("fc_conv2d_forward", (p, p, None, None)),
                     ("fc_conv2d_backward_data", (None, p, p)),
                     ("fc_conv2d_backward_data", (p, p, None)),
                     ("fc_conv2d_backward_data_into", (None, p, p)),
                     ("fc_conv2d_backward_data_into", (p, None, p)),
                     ("fc_conv2d_backward_data_into", (p, p, None)),
                     ("fc_conv2d_backward_weight", (None, p, p, p)),
                     ("fc_conv2d_backward_weight", (p, None, p, p))):
        s = getattr(lib, fn)(ctypes.byref(d), 0, 0, *args)
        if s != t.FC_EINVAL:
            failures.append(f"{fn} with a null pointer: status {s}")
    # bad enum values
    for dtype, algo in ((7, 0), (-1, 0), (0, 99), (0, -3)):
        s = lib.fc_conv2d_forward(ctypes.byref(d), dtype, algo, p, p, None, p)
        if s != t.FC_EINVAL:
            failures.append(f"fc_conv2d_forward dtype={dtype} algo={algo}: status {s}")
    if hasattr(lib, "fc_last_error"):
        lib.fc_conv2d_forward(ctypes.byref(t.Desc(**dict(good, stride_h=0))), 0, 0, p, p, None, p)
        msg = lib.fc_last_error().decode()
        if "stride" not in msg:
            failures.append(f"fc_last_error after stride_h=0 does not name stride: {msg!r}")
    print("\\n".join(failures) if failures else "ok")
""")


def test_c_rejects_invalid_descriptors():
    r = subprocess.run(
        [sys.executable, "-c", INVALID_SCRIPT, TESTS_DIR, LIB_PATH],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"child crashed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert r.stdout.strip() == "ok", r.stdout + r.stderr


# Each descriptor field out of range: FC_EINVAL from every entry, and fc_last_error() names it.
BAD_FIELDS = [
    (dict(n=0), "n"),
    (dict(c=-1), "c"),
    (dict(h=0), "h"),
    (dict(w=-5), "w"),
    (dict(k=0), "k"),
    (dict(kh=0), "kh"),
    (dict(kw=-1), "kw"),
    (dict(stride_h=0), "stride_h"),
    (dict(stride_w=-2), "stride_w"),
    (dict(pad_h=-1), "pad_h"),
    (dict(pad_w=-1), "pad_w"),
    (dict(dil_h=0), "dil_h"),
    (dict(dil_w=0), "dil_w"),
    (dict(groups=0), "groups"),
    (dict(groups=3), "groups"),
    (dict(k=5), "groups"),
    (dict(kh=12), "kernel"),
    (dict(kw=3, dil_w=5), "kernel"),
]


@pytest.mark.parametrize(
    "change,word", BAD_FIELDS, ids=[w + str(i) for i, (_, w) in enumerate(BAD_FIELDS)]
)
def test_bad_field_is_named_by_every_entry(change, word):
    lib = load(LIB_PATH)
    fields = dict(
        n=2,
        c=4,
        h=9,
        w=8,
        k=6,
        kh=3,
        kw=3,
        stride_h=1,
        stride_w=1,
        pad_h=1,
        pad_w=1,
        dil_h=1,
        dil_w=1,
        groups=2,
    )
    fields.update(change)
    d = ctypes.byref(Desc(**fields))
    buf = np.zeros(4096)
    p = buf.ctypes.data_as(ctypes.c_void_p)
    for call in (
        lambda: lib.fc_conv2d_forward(d, 1, 0, p, p, None, p),
        lambda: lib.fc_conv2d_backward_data(d, 1, 0, p, p, p),
        lambda: lib.fc_conv2d_backward_weight(d, 1, 0, p, p, p, None),
    ):
        assert call() == FC_EINVAL
        assert word in lib.fc_last_error().decode()

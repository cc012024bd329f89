"""The public op API: validated, shape-computing wrappers around fastconv._core.

Semantics follow PyTorch's ``torch.nn.functional`` where it has the op. Arrays are NCHW;
float32 and float64 (results keep the input dtype). Inputs are never modified; non-contiguous
and read-only inputs work (a contiguous copy is made only when needed). Every bad argument
raises ValueError/TypeError naming the argument and the shapes involved.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _core
from . import pooling as _pooling
from ._checks import _MAX_BYTES, _array, _c_int, _contiguous, _thread_count, _tuple
from ._typing import ArrayLike, FloatArray, Grads, IntPair, Padding, Shape
from .pooling import *  # noqa: F403  (max/avg/adaptive pooling, unpooling)

__all__ = [
    "ALGORITHMS",
    "algorithm_info",
    "algorithms",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "get_num_threads",
    "set_num_threads",
    "isa",
    "hardware",
] + list(_pooling.__all__)

#: Every convolution algorithm by name; "auto" picks one of them by shape.
ALGORITHMS = tuple(_core.ALGO_NAMES[1:])
_ALGO_IDS = {name: i for i, name in enumerate(_core.ALGO_NAMES)}
# the algorithms whose filter transform a data gradient can reuse from the forward (_Conv.reuses)
_REUSABLE = (_ALGO_IDS["winograd"], _ALGO_IDS["fft"])
_ACT_RELU = 1  # fc_act's FC_ACT_RELU (fastconv.h)
_GEMM_ALGOS = (_ALGO_IDS["im2col"], _ALGO_IDS["gemm1x1"])


def _check_algo(algo):
    if not isinstance(algo, str) or algo not in _ALGO_IDS:
        raise ValueError(f"algo must be 'auto' or one of {ALGORITHMS}, got {algo!r}")
    return _ALGO_IDS[algo]


class _Conv:
    """A validated convolution: 2-D shapes and parameters, plus how to map 1-D/unbatched
    arrays onto them and the extra bottom/right padding of an odd padding='same'."""

    def __init__(self, x, weight, stride, padding, dilation, groups, nspatial):
        op = "conv1d" if nspatial == 1 else "conv2d"
        want = nspatial + 2
        if x.ndim not in (want - 1, want):
            raise ValueError(
                f"{op}: x must be {want}-D (batched) or {want - 1}-D (unbatched), "
                f"got shape {x.shape}"
            )
        if weight.ndim != want:
            raise ValueError(
                f"{op}: weight must be {want}-D (out_channels, in_channels/groups, "
                f"kernel...), got shape {weight.shape}"
            )
        if x.dtype != weight.dtype:
            raise TypeError(f"{op}: x is {x.dtype} but weight is {weight.dtype}; they must match")
        self.unbatched = x.ndim == want - 1
        self.f64 = x.dtype == np.float64
        xs = (1,) + x.shape if self.unbatched else x.shape
        if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral):
            raise TypeError(f"groups must be an int, got {groups!r}")
        groups = _c_int(groups, "groups")
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.stride = _tuple(stride, "stride", nspatial, 1)
        self.dilation = _tuple(dilation, "dilation", nspatial, 1)
        ksize = weight.shape[2:]
        n, c = xs[0], xs[1]
        k = weight.shape[0]
        if any(v == 0 for v in xs[1:]):
            raise ValueError(
                f"{op}: x must not have a zero-size channel or spatial dimension, "
                f"got shape {x.shape}"
            )
        if any(v == 0 for v in weight.shape):
            raise ValueError(
                f"{op}: weight must not have a zero-size dimension, got shape {weight.shape}"
            )
        if c % groups:
            raise ValueError(f"groups={groups} must divide the input channels of x {x.shape} ({c})")
        if k % groups:
            raise ValueError(
                f"groups={groups} must divide the output channels of weight {weight.shape} ({k})"
            )
        if weight.shape[1] * groups != c:
            raise ValueError(
                f"{op}: weight {weight.shape} expects {weight.shape[1] * groups} input "
                f"channels (weight.shape[1] * groups={groups}), x {x.shape} has {c}"
            )
        self.extra = (0,) * nspatial  # padding added at the bottom/right only ('same', odd total)
        if isinstance(padding, str):
            if padding == "valid":
                pad = (0,) * nspatial
            elif padding == "same":
                if any(s != 1 for s in self.stride):
                    raise ValueError(
                        "padding='same' is not supported for strided convolutions "
                        f"(stride={stride!r})"
                    )
                total = [d * (kk - 1) for d, kk in zip(self.dilation, ksize)]
                pad = tuple(t // 2 for t in total)
                self.extra = tuple(t - 2 * (t // 2) for t in total)
            else:
                raise ValueError(
                    f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}"
                )
        else:
            pad = _tuple(padding, "padding", nspatial, 0)
        self.padding = pad
        spatial = tuple(v + e for v, e in zip(xs[2:], self.extra))
        out = []
        for dim, (size, kk, s, p, d) in enumerate(
            zip(spatial, ksize, self.stride, pad, self.dilation)
        ):
            extent = d * (kk - 1) + 1
            if extent > size + 2 * p:
                raise ValueError(
                    f"{op}: kernel of weight {weight.shape} (dilated extent {extent}) is "
                    f"larger than the padded input of x {x.shape} ({size + 2 * p}) "
                    f"in spatial dimension {dim}"
                )
            out.append((size + 2 * p - extent) // s + 1)
        self.x_shape = tuple(xs[:2]) + spatial  # the (batched, 'same'-padded) shape
        self.out_shape = (n, k) + tuple(out)
        itemsize = x.dtype.itemsize
        if int(np.prod(self.out_shape, dtype=object)) * itemsize > _MAX_BYTES:
            raise ValueError(f"{op}: the output {self.out_shape} would be too large")
        if nspatial == 1:  # a 1-D convolution is a 2-D one of height 1
            h, w = (1, spatial[0])
            kh, kw = 1, ksize[0]
            sh, sw, ph, pw, dh, dw = 1, self.stride[0], 0, pad[0], 1, self.dilation[0]
        else:
            (h, w), (kh, kw) = spatial, ksize
            (sh, sw), (ph, pw), (dh, dw) = self.stride, pad, self.dilation
        self.desc = (n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, groups)
        # Which algorithms apply does not depend on the batch: an empty one asks as for one image.
        self.probe = (max(n, 1),) + self.desc[1:]
        self.nspatial = nspatial
        self.op = op
        self._idents = {}  # algo name -> its checked id (algo())
        self._reusable = {}  # fc_conv2d_prepared_reuse by algorithm (reuses())

    def input(self, x):
        """x as the contiguous batched array the kernels take (padded for odd 'same')."""
        x = _contiguous(x, "x")
        if self.unbatched:
            x = x[None]
        if any(self.extra):
            x = np.pad(x, [(0, 0), (0, 0)] + [(0, e) for e in self.extra])
        return x

    def weight(self, w):
        return _contiguous(w, "weight")

    def unpad_grad_x(self, gx, orig_shape):
        if any(self.extra):
            gx = gx[
                (slice(None), slice(None))
                + tuple(slice(0, s - e) for s, e in zip(gx.shape[2:], self.extra))
            ]
            gx = np.ascontiguousarray(gx)
        return gx.reshape(orig_shape)

    def concrete(self, ident):
        """The algorithm a forward with ``ident`` runs: ident itself, or auto's choice while
        autotuning is off; 0 when autotuning will choose inside the call."""
        if ident:
            return ident
        return 0 if _core.get_autotune() else _core.conv2d_choose(self.probe, 0)

    def reuses(self, ident):
        """The algorithm whose filter transform a training step's data gradient should reuse
        from the forward (a Conv2dPrepared), or 0: Winograd or FFT running both directions
        (algorithm ``ident``, or auto's choice for each direction while autotuning is off; tuned
        choices are left to each call), where the library says the reuse applies and pays."""
        chosen = self.concrete(ident)
        if chosen not in _REUSABLE or (ident == 0 and _core.conv2d_choose(self.probe, 1) != chosen):
            return 0
        if chosen not in self._reusable:
            self._reusable[chosen] = _core.conv2d_prepared_reuse(self.desc, chosen, self.f64)
        return chosen if self._reusable[chosen] else 0

    def algo(self, algo):
        ident = self._idents.get(algo) if type(algo) is str else None
        if ident is not None:
            return ident
        ident = _check_algo(algo)
        why = ident and _core.conv2d_why_not(self.probe, ident)
        if why:
            raise ValueError(
                f"algo={algo!r} cannot run this {self.op} (x {self.x_shape}, groups="
                f"{self.desc[13]}, kernel {self.desc[5]}x{self.desc[6]}): " + why.split(": ", 1)[-1]
            )
        self._idents[algo] = ident
        return ident


# Validated convolutions by their arguments: a training step or a loop of inference calls asks
# for the same few hundred shapes over and over, and validating one took about 50 us of the
# 90 us a call spends in Python (ResNet-50's step makes about 160 forward and 160 backward
# calls). Only arguments of exact types are keys (a bool or a float stride must still reach
# _Conv's checks and fail there, though it compares equal to an int); only valid convolutions
# are ever stored, as _Conv raises on anything else; bounded, so unusual loops cannot grow it.
_CONV_CACHE: dict = {}
_CONV_CACHE_MAX = 4096


def _key_part(v):
    t = type(v)
    if t is int or t is str:
        return (t, v)
    if t is tuple and all(type(e) is int for e in v):
        return (t, v)
    return None


def _conv(x, weight, stride, padding, dilation, groups, nspatial):
    """_Conv(...) for these arguments, from _CONV_CACHE where it was made before."""
    parts = tuple(_key_part(v) for v in (stride, padding, dilation, groups))
    if None in parts:
        return _Conv(x, weight, stride, padding, dilation, groups, nspatial)
    key = (x.shape, x.dtype, weight.shape, weight.dtype, nspatial) + parts
    cv = _CONV_CACHE.get(key)
    if cv is None:
        cv = _Conv(x, weight, stride, padding, dilation, groups, nspatial)
        if len(_CONV_CACHE) >= _CONV_CACHE_MAX:
            _CONV_CACHE.clear()
        _CONV_CACHE[key] = cv
    return cv


def _bias(bias, k, dtype):
    if bias is None:
        return None
    b = _array(bias, "bias")
    if b.dtype != dtype:
        raise TypeError(f"bias is {b.dtype} but x is {dtype}; they must match")
    if b.shape != (k,):
        raise ValueError(f"bias must have shape ({k},) (one per output channel), got {b.shape}")
    return _contiguous(b, "bias")


# ---------------------------------------------------------------------------------------------
# convolutions


def _forward(
    x, weight, bias, stride, padding, dilation, groups, algo, nspatial, keep=False, relu=False
):
    """conv{1,2}d; with ``keep`` (autograd's forward of a step that will want grad_x), returns
    (y, prepared): the filters prepared once (_core.Conv2dPrepared) where the data gradient
    reuses their transform (_Conv.reuses), else None. With ``relu`` (2-D only), y is the ReLU
    of the convolution, applied in the kernels' output stage (fc_conv2d_forward_prepared's
    epilogue: after each GEMM tile, output row or output transform; one pass after the others):
    the same values as conv2d then relu, without the pass over y in between."""
    x, weight = _array(x, "x"), _array(weight, "weight")
    cv = _conv(x, weight, stride, padding, dilation, groups, nspatial)
    ident = cv.algo(algo)
    b = _bias(bias, weight.shape[0], x.dtype)
    y = np.empty(cv.out_shape, dtype=x.dtype)
    prepared = None
    if y.size == 0:  # an empty batch gives an empty result, as in PyTorch
        return (y, None) if keep else y
    act = _ACT_RELU if relu else 0
    if keep and (kept := cv.reuses(ident)):
        prepared = _core.Conv2dPrepared(cv.desc, kept, cv.weight(weight))
        prepared.forward(cv.input(x), b, y.reshape(-1), act)
    elif relu and (gemm := cv.concrete(ident)) in _GEMM_ALGOS:
        # the GEMM forward with its epilogue after each output tile, as the ordinary call runs
        # it (borrowing the weights: nothing is copied)
        _core.Conv2dPrepared(cv.desc, gemm, cv.weight(weight)).forward(
            cv.input(x), b, y.reshape(-1), act
        )
    else:
        _core.conv2d_forward(cv.desc, ident, cv.input(x), cv.weight(weight), b, y.reshape(-1))
        if relu:
            # ReLU in place, one pass: a prepared Winograd forward (its filters transformed
            # whole, then the fused output transform) measured up to 1.2x slower than the
            # ordinary one at batch 1 and on 56x56 planes; direct's prepared filters would be
            # packed into fresh memory on every call; autotuning chooses inside the call
            _core.relu_forward(y, y)
    y = y[0] if cv.unbatched else y
    return (y, prepared) if keep else y


def _adds_into(into, cv, x, dy, w):
    """Whether the data gradient can be added into ``into`` in place: an array of x's dtype and
    (batched, unpadded) shape, C-contiguous, writable, sharing no memory with the operands."""
    return (
        isinstance(into, np.ndarray)
        and into.dtype == x.dtype
        and into.shape == x.shape == cv.x_shape
        and into.flags.c_contiguous
        and into.flags.writeable
        and not any(np.may_share_memory(into, a) for a in (x, dy, w))
    )


def _backward(
    grad_out,
    x,
    weight,
    stride,
    padding,
    dilation,
    groups,
    needs,
    algo,
    nspatial,
    into=None,
    prepared=None,
):
    """conv{1,2}d_backward; with ``into`` (autograd's pending gradient of x), grad_x is added
    into it where _adds_into allows, and ``into`` itself returned as grad_x; with ``prepared``
    (what _forward kept for these operands), grad_x comes from its filters."""
    x, weight = _array(x, "x"), _array(weight, "weight")
    cv = _conv(x, weight, stride, padding, dilation, groups, nspatial)
    ident = cv.algo(algo)
    if (
        not isinstance(needs, (tuple, list))
        or len(needs) != 3
        or not all(isinstance(v, (bool, np.bool_)) for v in needs)
    ):
        raise ValueError(
            f"needs must be a tuple of 3 bools (grad_x, grad_w, grad_b), got {needs!r}"
        )
    dy = _array(grad_out, "grad_out")
    if dy.dtype != x.dtype:
        raise TypeError(f"grad_out is {dy.dtype} but x is {x.dtype}; they must match")
    want = cv.out_shape[1:] if cv.unbatched else cv.out_shape
    if dy.shape != want:
        raise ValueError(f"grad_out must have the output's shape {want}, got {dy.shape}")
    dy = _contiguous(dy, "grad_out")
    w = cv.weight(weight)
    gx = gw = gb = None
    if dy.size == 0:  # empty batch: zero gradients of the right shapes
        return (
            np.zeros(x.shape, x.dtype) if needs[0] else None,
            np.zeros(weight.shape, x.dtype) if needs[1] else None,
            np.zeros(weight.shape[0], x.dtype) if needs[2] else None,
        )
    if needs[0] and into is not None and _adds_into(into, cv, x, dy, w):
        if prepared is not None:
            prepared.backward_data(dy, into.reshape(-1), accumulate=True)
        else:
            _core.conv2d_backward_data(cv.desc, ident, dy, w, into.reshape(-1), accumulate=True)
        gx = into
    elif needs[0]:
        gx = np.empty(cv.x_shape, dtype=x.dtype)
        if prepared is not None:
            prepared.backward_data(dy, gx.reshape(-1))
        else:
            _core.conv2d_backward_data(cv.desc, ident, dy, w, gx.reshape(-1))
        gx = cv.unpad_grad_x(gx, x.shape)
    if needs[1] or needs[2]:
        gw = np.empty(weight.shape, dtype=x.dtype) if needs[1] else None
        gb = np.empty(weight.shape[0], dtype=x.dtype) if needs[2] else None
        _core.conv2d_backward_weight(
            cv.desc, ident, dy, cv.input(x), None if gw is None else gw.reshape(-1), gb
        )
    return gx, gw, gb


def conv2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    algo: str = "auto",
) -> FloatArray:
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    x: (N, C, H, W) or unbatched (C, H, W); weight: (K, C/groups, kh, kw); bias: (K,) or None.
    stride, dilation: int or (h, w); padding: int, (h, w), 'valid' or 'same'.
    algo: 'auto' or one of ALGORITHMS. Returns (N, K, Ho, Wo) in x's dtype.
    """
    return _forward(x, weight, bias, stride, padding, dilation, groups, algo, 2)


def _conv2d_keeping(
    x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, algo="auto", relu=False
):
    """conv2d for autograd's forward of a step that will want grad_x: (y, prepared), as
    _forward with ``keep`` (and ``relu``: the ReLU of the convolution)."""
    return _forward(
        x, weight, bias, stride, padding, dilation, groups, algo, 2, keep=True, relu=relu
    )


def _conv2d_relu(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, algo="auto"):
    """relu(conv2d(...)) with the ReLU in the convolution's output stage (_forward's ``relu``)."""
    return _forward(x, weight, bias, stride, padding, dilation, groups, algo, 2, relu=True)


def conv2d_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    needs: tuple[bool, bool, bool] = (True, True, True),
    algo: str = "auto",
) -> Grads:
    """Gradients of conv2d: returns (grad_x, grad_w, grad_b), None where ``needs`` is False.

    grad_b is grad_out summed over batch and space (the bias gradient, whether or not the
    forward had a bias)."""
    return _backward(grad_out, x, weight, stride, padding, dilation, groups, needs, algo, 2)


def conv1d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] | str = 0,
    dilation: int | tuple[int] = 1,
    groups: int = 1,
    algo: str = "auto",
) -> FloatArray:
    """1-D convolution as ``torch.nn.functional.conv1d``.

    x (N, C, L) or (C, L), weight (K, C/groups, kl)."""
    return _forward(x, weight, bias, stride, padding, dilation, groups, algo, 1)


def conv1d_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] | str = 0,
    dilation: int | tuple[int] = 1,
    groups: int = 1,
    needs: tuple[bool, bool, bool] = (True, True, True),
    algo: str = "auto",
) -> Grads:
    """Gradients of conv1d: (grad_x, grad_w, grad_b), None where ``needs`` is False."""
    return _backward(grad_out, x, weight, stride, padding, dilation, groups, needs, algo, 1)


_DIRECTIONS = {"forward": 0, "backward_data": 1, "backward_weight": 2}


def algorithms(
    x_shape: Shape,
    w_shape: Shape,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    direction: str = "forward",
    costs: bool = False,
) -> list[str] | list[tuple[str, float]]:
    """The algorithms that can run this conv2d, in preference order: the first is what 'auto'
    picks for `direction` ('forward', 'backward_data' or 'backward_weight').

    costs=True gives (name, cost) pairs instead: the library's estimate of one call in units of
    one multiply-add at a good float32 GEMM's rate (fc_conv2d_cost), for ranking, not timing."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {tuple(_DIRECTIONS)}, got {direction!r}")
    x = np.broadcast_to(np.float32(0), tuple(x_shape))
    w = np.broadcast_to(np.float32(0), tuple(w_shape))
    nspatial = len(w.shape) - 2
    if nspatial not in (1, 2):
        raise ValueError(f"w_shape must have 3 (conv1d) or 4 (conv2d) dimensions, got {w.shape}")
    cv = _Conv(x, w, stride, padding, dilation, groups, nspatial)
    dir_id = _DIRECTIONS[direction]
    first = _core.ALGO_NAMES[_core.conv2d_choose(cv.probe, dir_id)]
    rest = [a for a in ALGORITHMS if a != first and _core.conv2d_supports(cv.probe, _ALGO_IDS[a])]
    names = [first] + rest
    if not costs:
        return names
    return [(a, _core.conv2d_cost(cv.probe, _ALGO_IDS[a], dir_id)) for a in names]


_DIRECTION_FLAGS = (
    ("forward", "ALGO_FLAG_FORWARD"),
    ("backward_data", "ALGO_FLAG_BACKWARD_DATA"),
    ("backward_weight", "ALGO_FLAG_BACKWARD_WEIGHT"),
)


def algorithm_info() -> dict[str, dict[str, Any]]:
    """The library's registry of convolution algorithms, by name (in ALGORITHMS order): for each
    a dict of name, description (one line), directions (those it has entry points for),
    phase_planes (dilated unit-stride convolutions run on the input's phase planes) and
    non_finite_fallback (a NaN or infinity in an input makes the call run on im2col instead)."""
    info = {}
    for name in ALGORITHMS:
        ident = _ALGO_IDS[name]
        flags = _core.algo_flags(ident)
        info[name] = {
            "name": name,
            "description": _core.algo_description(ident),
            "directions": tuple(d for d, bit in _DIRECTION_FLAGS if flags & getattr(_core, bit)),
            "phase_planes": bool(flags & _core.ALGO_FLAG_PHASE_PLANES),
            "non_finite_fallback": bool(flags & _core.ALGO_FLAG_NONFINITE_FALLBACK),
        }
    return info


# ---------------------------------------------------------------------------------------------
# threads and build facts


def set_num_threads(n: int) -> None:
    """Threads for every fastconv kernel, process-wide (one OpenMP pool; OpenBLAS stays
    single-threaded). A thread inside a ``with fastconv.threads(m)`` block keeps its m."""
    _core.set_num_threads(_thread_count(n))


def get_num_threads() -> int:
    """Threads fastconv's kernels use (default: OpenMP's, which honours OMP_NUM_THREADS)."""
    return _core.get_num_threads()


def isa() -> str:
    """The micro-kernel set chosen at load time: 'avx512', 'avx2' or 'generic'."""
    return _core.isa()


def hardware() -> dict[str, Any]:
    """The machine as fastconv described it at load (fc_hardware): ``isa`` (as :func:`isa`),
    ``best_isa`` (the CPU's best, before FASTCONV_ISA), ``l1d_bytes`` and ``l2_bytes`` (per
    core), ``l3_bytes`` (as the OS reports it: the chip's, or one CCX's), ``cores`` (logical
    CPUs in the process's affinity mask), ``work_items`` (the work items each parallel
    partition aims at: 8, or on more cores the power of two that covers them, up to 64;
    ``FASTCONV_WORK_ITEMS`` pins it; README, "Determinism"), ``model`` and ``vendor`` (CPUID's
    strings), ``full_avx512`` (512-bit multiply-adds at full rate: two 512-bit FMA pipes;
    measured at load as ``fma512_ratio``, the 512-bit over the 256-bit rate, full from 1.5;
    ``FASTCONV_FULL_AVX512=0|1`` pins it; auto's table follows it). Cache blocking derives from
    these sizes, partitions from ``work_items``."""
    return dict(_core.hardware())

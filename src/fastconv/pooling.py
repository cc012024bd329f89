"""Pooling ops (max with switches, unpool, average, adaptive average) — validated wrappers.

Semantics and argument rules follow ``torch.nn.functional``. x is (N, C, H, W) or unbatched
(C, H, W), float32 or float64 (results keep its dtype); an empty batch (N = 0) gives empty
results. Inputs are never modified; non-contiguous and read-only inputs work.

Switches ("indices") are int64 flat indices h*W + w into each input plane, exactly PyTorch's:
ties go to the first maximum in row-major scan order, and a NaN in a window wins. The backward
and unpooling ops check every switch against its plane before writing anything: a switch
outside its plane raises ValueError.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _core
from ._checks import _MAX_BYTES, _array, _c_int, _contiguous, _tuple
from ._typing import ArrayLike, FloatArray, IndexArray, IntPair, Shape

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
]


# ---------------------------------------------------------------------------------------------
# argument checks


def _flag(value, name):
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, numbers.Integral) and value in (0, 1)
    ):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


def _input(x, op, name="x"):
    """x as an array, its batched (N, C, H, W) shape, and whether it was unbatched."""
    x = _array(x, name)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{op}: {name} must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {x.shape}"
        )
    shape4 = x.shape if x.ndim == 4 else (1,) + x.shape
    if 0 in shape4[1:]:
        raise ValueError(
            f"{op}: {name} must have non-zero channels, height and width (only the "
            f"batch may be empty), got shape {x.shape}"
        )
    return x, shape4, x.ndim == 3


def _input_shape(shape, op):
    """input_shape (the forward's x.shape) as a tuple of 3 or 4 ints, C, H, W >= 1."""
    try:
        shape = tuple(_c_int(v, "input_shape") for v in shape)
    except TypeError:
        raise TypeError(
            f"{op}: input_shape must be a tuple of 3 or 4 ints, got {shape!r}"
        ) from None
    if len(shape) not in (3, 4) or any(v < 0 for v in shape) or 0 in shape[-3:]:
        raise ValueError(
            f"{op}: input_shape must be (C, H, W) or (N, C, H, W) with C, H, W >= 1, got {shape}"
        )
    _check_bytes(op, shape, np.float64)  # the gradient is allocated with this shape
    return shape


def _grad(grad_out, op, ndim):
    g = _array(grad_out, "grad_out")
    if g.ndim != ndim:
        raise ValueError(f"{op}: grad_out must be {ndim}-D like input_shape, got shape {g.shape}")
    return g


def _indices(indices, op, want_shape, against):
    """indices as an int64 array of want_shape (the shape of `against`, named in the message)."""
    idx = indices if isinstance(indices, np.ndarray) else np.asarray(indices)
    if idx.dtype != np.int64:
        raise TypeError(
            f"{op}: indices must be int64 (as max_pool2d(..., return_indices=True) "
            f"returns them), got dtype {idx.dtype}"
        )
    if idx.shape != tuple(want_shape):
        raise ValueError(
            f"{op}: indices must have the shape of {against} {tuple(want_shape)}, got {idx.shape}"
        )
    return idx


def _check_bytes(op, shape, dtype):
    # exact Python ints (no int64 overflow), about 8x faster than np.prod(..., dtype=object)
    if math.prod(int(v) for v in shape) * np.dtype(dtype).itemsize > _MAX_BYTES:
        raise ValueError(f"{op}: the output {shape} would be too large")


def _pool_out(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling_output_shape for one dimension."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the input or the left padding
    return out


class _Window:
    """Validated window parameters of max/avg pooling over an input of batched shape shape4."""

    def __init__(self, op, x_shape, shape4, kernel_size, stride, padding, dilation, ceil_mode):
        self.k = _tuple(kernel_size, "kernel_size", 2, 1)
        if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
            self.s = self.k  # PyTorch's default: stride = kernel_size
        else:
            self.s = _tuple(stride, "stride", 2, 1)
        self.p = _tuple(padding, "padding", 2, 0)
        self.d = _tuple(dilation, "dilation", 2, 1)
        self.ceil_mode = _flag(ceil_mode, "ceil_mode")
        for k, p, d in zip(self.k, self.p, self.d):
            if p > (d * (k - 1) + 1) // 2:
                raise ValueError(
                    f"{op}: pad should be at most half of effective kernel size, but got "
                    f"padding={padding!r}, kernel_size={kernel_size!r} and dilation={dilation!r}"
                )
            if p > k // 2:
                raise ValueError(
                    f"{op}: pad should be smaller than or equal to half of kernel size, but "
                    f"got padding={padding!r} and kernel_size={kernel_size!r}"
                )
        n, c, h, w = shape4
        ho, wo = (
            _pool_out(size, k, s, p, d, self.ceil_mode)
            for size, k, s, p, d in zip((h, w), self.k, self.s, self.p, self.d)
        )
        if ho < 1 or wo < 1:
            raise ValueError(
                f"{op}: given x of shape {tuple(x_shape)}, the calculated output size "
                f"({c}x{ho}x{wo}) is too small (kernel_size={kernel_size!r}, stride="
                f"{stride!r}, padding={padding!r}, dilation={dilation!r})"
            )
        self.out_shape = (n, c, ho, wo)
        self.desc = (n, c, h, w) + self.k + self.s + self.p + self.d + (int(self.ceil_mode),)


def _unbatch(arr, unbatched):
    return arr[0] if unbatched else arr


def _through_switches(fn, op, desc, a, idx, out):
    """Runs a switch kernel; a switch outside its plane becomes a ValueError naming indices."""
    try:
        fn(
            desc,
            _contiguous(a, "x" if op == "max_unpool2d" else "grad_out"),
            _contiguous(idx, "indices"),
            out.reshape(-1),
        )
    except ValueError as e:
        raise ValueError(
            f"{op}: indices of shape {idx.shape} do not fit the planes {desc[2]}x{desc[3]}: {e}"
        ) from None


# ---------------------------------------------------------------------------------------------
# max pooling, switches, unpooling


def max_pool2d(
    x: ArrayLike,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> FloatArray | tuple[FloatArray, IndexArray]:
    """2-D max pooling as ``torch.nn.functional.max_pool2d``.

    Returns y, or (y, indices) when return_indices: indices are the switches, int64 flat
    indices h*W + w of each output's winner in its input plane (PyTorch's convention)."""
    x, shape4, unbatched = _input(x, "max_pool2d")
    win = _Window("max_pool2d", x.shape, shape4, kernel_size, stride, padding, dilation, ceil_mode)
    return_indices = _flag(return_indices, "return_indices")
    _check_bytes("max_pool2d", win.out_shape, np.int64 if return_indices else x.dtype)
    y = np.empty(win.out_shape, dtype=x.dtype)
    idx = np.empty(win.out_shape, dtype=np.int64) if return_indices else None
    if shape4[0]:
        _core.max_pool2d_forward(
            win.desc, _contiguous(x, "x"), y.reshape(-1), None if idx is None else idx.reshape(-1)
        )
    if return_indices:
        return _unbatch(y, unbatched), _unbatch(idx, unbatched)
    return _unbatch(y, unbatched)


def max_pool2d_backward(grad_out: ArrayLike, indices: ArrayLike, input_shape: Shape) -> FloatArray:
    """Gradient of max_pool2d with respect to x: zeros of input_shape, with each grad_out element
    added at its switch (accumulating where windows overlap).

    grad_out and indices have the forward output's shape; input_shape is the forward's x.shape."""
    op = "max_pool2d_backward"
    shape = _input_shape(input_shape, op)
    g = _grad(grad_out, op, len(shape))
    idx = _indices(indices, op, g.shape, "grad_out")
    if g.shape[:-2] != shape[:-2]:
        raise ValueError(
            f"{op}: grad_out {g.shape} and input_shape {shape} must agree on the batch "
            f"and channel dimensions"
        )
    gx = np.empty(shape, dtype=g.dtype)
    if g.size == 0:
        gx.fill(0)
        return gx
    n, c, h, w = shape if len(shape) == 4 else (1,) + shape
    desc = (n, c, h, w) + g.shape[-2:]
    _through_switches(_core.max_pool2d_backward, op, desc, g, idx, gx)
    return gx


def _unpool_size(x_shape, k, s, p, output_size):
    """PyTorch's _unpool_output_size: the default (H-1)*stride + kernel - 2*pad, or a checked
    output_size (2 ints, or 4 of which the last 2 count)."""
    default = tuple((x_shape[-2 + i] - 1) * s[i] + k[i] - 2 * p[i] for i in range(2))
    if output_size is None:
        size = default
    else:
        try:
            size = tuple(_c_int(v, "output_size") for v in output_size)
        except TypeError:
            raise TypeError(
                f"output_size must be a sequence of 2 or 4 ints, got {output_size!r}"
            ) from None
        if len(size) == 4:
            size = size[2:]
        if len(size) != 2:
            raise ValueError(
                f"output_size should be a sequence containing 2 or 4 elements, but it "
                f"has a length of '{len(size)}'"
            )
        for i in range(2):
            lo, hi = default[i] - s[i], default[i] + s[i]
            if not lo < size[i] < hi:
                raise ValueError(
                    f'invalid output_size "{tuple(output_size)}" (dim {i} must be '
                    f"between {lo} and {hi})"
                )
    if any(v < 1 for v in size):
        raise ValueError(
            f"max_unpool2d: output_size must have positive spatial dimensions, got "
            f"{size} (kernel_size={k}, stride={s}, padding={p})"
        )
    return size


def max_unpool2d(
    x: ArrayLike,
    indices: ArrayLike,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    output_size: Shape | None = None,
) -> FloatArray:
    """Max unpooling as ``torch.nn.functional.max_unpool2d`` (the deconvnet's unpool): zeros of
    the output size, with each x element put at its switch."""
    op = "max_unpool2d"
    x, shape4, unbatched = _input(x, op)
    k = _tuple(kernel_size, "kernel_size", 2, 1)
    s = k if stride is None else _tuple(stride, "stride", 2, 1)
    p = _tuple(padding, "padding", 2, 0)
    idx = _indices(indices, op, x.shape, "x")
    oh, ow = _unpool_size(x.shape, k, s, p, output_size)
    out_shape = shape4[:2] + (oh, ow)
    _check_bytes(op, out_shape, x.dtype)
    y = np.zeros(out_shape, dtype=x.dtype) if shape4[0] == 0 else np.empty(out_shape, dtype=x.dtype)
    if shape4[0]:
        _through_switches(_core.max_unpool2d_forward, op, out_shape + shape4[2:], x, idx, y)
    return _unbatch(y, unbatched)


def max_unpool2d_backward(grad_out: ArrayLike, indices: ArrayLike) -> FloatArray:
    """Gradient of max_unpool2d with respect to x: grad_out gathered at the switches.

    grad_out has the unpooled output's shape; indices (the forward's) give the result's shape."""
    op = "max_unpool2d_backward"
    g = _array(grad_out, "grad_out")
    if g.ndim not in (3, 4):
        raise ValueError(f"{op}: grad_out must be 3-D or 4-D, got shape {g.shape}")
    idx = indices if isinstance(indices, np.ndarray) else np.asarray(indices)
    if idx.ndim != g.ndim or idx.shape[:-2] != g.shape[:-2]:
        raise ValueError(
            f"{op}: indices {idx.shape} and grad_out {g.shape} must have the same "
            f"number of dimensions and agree on the batch and channel dimensions"
        )
    idx = _indices(idx, op, idx.shape, "itself")  # the dtype check
    gx = np.empty(idx.shape, dtype=g.dtype)
    if idx.size == 0:
        return gx
    if 0 in g.shape[-2:]:
        raise ValueError(f"{op}: grad_out {g.shape} has empty planes that no switch can index")
    n, c, h, w = g.shape if g.ndim == 4 else (1,) + g.shape
    desc = (n, c, h, w) + idx.shape[-2:]
    _through_switches(_core.max_unpool2d_backward, op, desc, g, idx, gx)
    return gx


# ---------------------------------------------------------------------------------------------
# average pooling


def _divisor(divisor_override):
    if divisor_override is None:
        return 0
    if isinstance(divisor_override, (bool, np.bool_)) or not isinstance(
        divisor_override, numbers.Integral
    ):
        raise TypeError(f"divisor_override must be None or an int, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError("divisor_override: divisor must be not zero")
    return _c_int(divisor_override, "divisor_override")


def _avg_window(
    op,
    x_shape,
    shape4,
    kernel_size,
    stride,
    padding,
    ceil_mode,
    count_include_pad,
    divisor_override,
):
    win = _Window(op, x_shape, shape4, kernel_size, stride, padding, 1, ceil_mode)
    return win, _flag(count_include_pad, "count_include_pad"), _divisor(divisor_override)


def avg_pool2d(
    x: ArrayLike,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> FloatArray:
    """2-D average pooling as ``torch.nn.functional.avg_pool2d``."""
    x, shape4, unbatched = _input(x, "avg_pool2d")
    win, incl, div = _avg_window(
        "avg_pool2d",
        x.shape,
        shape4,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )
    y = np.empty(win.out_shape, dtype=x.dtype)
    if shape4[0]:
        _core.avg_pool2d_forward(win.desc, incl, div, _contiguous(x, "x"), y.reshape(-1))
    return _unbatch(y, unbatched)


def avg_pool2d_backward(
    grad_out: ArrayLike,
    input_shape: Shape,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> FloatArray:
    """Gradient of avg_pool2d with respect to x (input_shape is the forward's x.shape)."""
    op = "avg_pool2d_backward"
    shape = _input_shape(input_shape, op)
    shape4 = shape if len(shape) == 4 else (1,) + shape
    win, incl, div = _avg_window(
        op,
        shape,
        shape4,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )
    g = _grad(grad_out, op, len(shape))
    want = win.out_shape if len(shape) == 4 else win.out_shape[1:]
    if g.shape != want:
        raise ValueError(
            f"{op}: grad_out must have the forward output's shape {want}, got {g.shape}"
        )
    gx = np.empty(shape, dtype=g.dtype)
    if shape4[0]:
        _core.avg_pool2d_backward(win.desc, incl, div, _contiguous(g, "grad_out"), gx.reshape(-1))
    return gx


def _adaptive_size(output_size, hw):
    """output_size (an int, or a pair whose None entries keep that input dimension) -> (ho, wo)."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        items = output_size
    else:
        items = (output_size, output_size)
    size = []
    for v, keep in zip(items, hw):
        if v is None:
            size.append(keep)
        elif isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(
                f"output_size must be an int or a pair of ints/None, got {output_size!r}"
            )
        else:
            size.append(_c_int(v, "output_size"))
    if any(v < 0 for v in size):
        raise ValueError(
            f"adaptive_avg_pool2d: elements of output_size must be greater than or "
            f"equal to 0 but received {tuple(size)}"
        )
    return tuple(size)


def adaptive_avg_pool2d(
    x: ArrayLike, output_size: int | tuple[int | None, int | None]
) -> FloatArray:
    """Adaptive average pooling as ``torch.nn.functional.adaptive_avg_pool2d``: output (i, j)
    averages rows [floor(i*H/ho), ceil((i+1)*H/ho)) and the like columns. output_size 1 is
    global average pooling."""
    x, shape4, unbatched = _input(x, "adaptive_avg_pool2d")
    ho, wo = _adaptive_size(output_size, shape4[2:])
    out_shape = shape4[:2] + (ho, wo)
    _check_bytes("adaptive_avg_pool2d", out_shape, x.dtype)
    y = np.empty(out_shape, dtype=x.dtype)
    if y.size:
        _core.adaptive_avg_pool2d_forward(shape4 + (ho, wo), _contiguous(x, "x"), y.reshape(-1))
    return _unbatch(y, unbatched)


def adaptive_avg_pool2d_backward(grad_out: ArrayLike, input_shape: Shape) -> FloatArray:
    """Gradient of adaptive_avg_pool2d with respect to x (input_shape is the forward's x.shape;
    the output size is grad_out's)."""
    op = "adaptive_avg_pool2d_backward"
    shape = _input_shape(input_shape, op)
    g = _grad(grad_out, op, len(shape))
    if g.shape[:-2] != shape[:-2]:
        raise ValueError(
            f"{op}: grad_out {g.shape} and input_shape {shape} must agree on the batch "
            f"and channel dimensions"
        )
    gx = np.empty(shape, dtype=g.dtype)
    if g.size == 0:
        gx.fill(0)
        return gx
    shape4 = shape if len(shape) == 4 else (1,) + shape
    _core.adaptive_avg_pool2d_backward(
        shape4 + g.shape[-2:], _contiguous(g, "grad_out"), gx.reshape(-1)
    )
    return gx

"""Independent loop references for the pooling ops, written from PyTorch's definitions (no
fastconv code): loops over output positions and window taps in scan order; NumPy only
vectorises across the N*C planes. Sums accumulate in float64. Inputs are (N, C, H, W)."""

import numpy as np


def pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(u) for u in v)


def pool_out(size, k, s, p, d, ceil_mode):
    """Output length of one pooled dimension (PyTorch's pooling_output_shape)."""
    span = size + 2 * p - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + p:  # a last window starting in the right padding is dropped
        out -= 1
    return out


def _planes(x):
    n, c, h, w = x.shape
    return x.reshape(n * c, h * w)


def max_pool2d_ref(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices): running maximum from -inf, replaced by a greater tap or a NaN; the index
    starts at the window's first in-range position (ties keep the first maximum)."""
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride if stride is not None else kernel_size)
    ph, pw = pair(padding)
    dh, dw = pair(dilation)
    n, c, h, w = x.shape
    ho, wo = pool_out(h, kh, sh, ph, dh, ceil_mode), pool_out(w, kw, sw, pw, dw, ceil_mode)
    xp = _planes(x)
    y = np.empty((n * c, ho, wo), x.dtype)
    idx = np.empty((n * c, ho, wo), np.int64)
    for oh in range(ho):
        for ow in range(wo):
            h0, w0 = oh * sh - ph, ow * sw - pw
            first_h = h0 + dh * -(h0 // dh) if h0 < 0 else h0  # first row >= 0 of the window
            first_w = w0 + dw * -(w0 // dw) if w0 < 0 else w0
            best = np.full(n * c, -np.inf, x.dtype)
            at = np.full(n * c, first_h * w + first_w, np.int64)
            for i in range(kh):
                for j in range(kw):
                    ih, iw = h0 + i * dh, w0 + j * dw
                    if 0 <= ih < h and 0 <= iw < w:
                        v = xp[:, ih * w + iw]
                        take = (v > best) | np.isnan(v)
                        best = np.where(take, v, best)
                        at = np.where(take, ih * w + iw, at)
            y[:, oh, ow], idx[:, oh, ow] = best, at
    return y.reshape(n, c, ho, wo), idx.reshape(n, c, ho, wo)


def max_pool2d_backward_ref(grad_out, indices, input_shape):
    n, c, h, w = input_shape
    g = grad_out.reshape(n * c, -1).astype(np.float64)
    gx = np.zeros((n * c, h * w))
    rows = np.repeat(np.arange(n * c), g.shape[1])
    np.add.at(gx, (rows, indices.reshape(-1)), g.reshape(-1))
    return gx.reshape(input_shape).astype(grad_out.dtype)


def max_unpool2d_ref(x, indices, out_hw):
    """Zeros, then y[plane][indices[i]] = x[i] for i in order (the last write wins)."""
    n, c, h, w = x.shape
    xp, ip = x.reshape(n * c, h * w), indices.reshape(n * c, h * w)
    y = np.zeros((n * c, out_hw[0] * out_hw[1]), x.dtype)
    planes = np.arange(n * c)
    for i in range(h * w):
        y[planes, ip[:, i]] = xp[:, i]
    return y.reshape(n, c, *out_hw)


def avg_pool2d_ref(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """float64 result. The divisor is the window clipped to the padded input (count_include_pad)
    or to the input, or divisor_override; a window holding no input gives 0."""
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride if stride is not None else kernel_size)
    ph, pw = pair(padding)
    n, c, h, w = x.shape
    ho, wo = pool_out(h, kh, sh, ph, 1, ceil_mode), pool_out(w, kw, sw, pw, 1, ceil_mode)
    y = np.zeros((n, c, ho, wo))
    for oh in range(ho):
        for ow in range(wo):
            h0, w0 = oh * sh - ph, ow * sw - pw
            h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)
            padded = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            if h0 >= h1 or w0 >= w1:
                continue
            div = divisor_override or (padded if count_include_pad else (h1 - h0) * (w1 - w0))
            y[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].astype(np.float64).sum(axis=(2, 3)) / div
    return y


def avg_pool2d_backward_ref(
    grad_out,
    input_shape,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """The transpose of avg_pool2d_ref (float64): each output's gradient / divisor over its
    window."""
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride if stride is not None else kernel_size)
    ph, pw = pair(padding)
    n, c, h, w = input_shape
    gx = np.zeros(input_shape)
    for oh in range(grad_out.shape[2]):
        for ow in range(grad_out.shape[3]):
            h0, w0 = oh * sh - ph, ow * sw - pw
            h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)
            padded = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            if h0 >= h1 or w0 >= w1:
                continue
            div = divisor_override or (padded if count_include_pad else (h1 - h0) * (w1 - w0))
            gx[:, :, h0:h1, w0:w1] += grad_out[:, :, oh, ow, None, None].astype(np.float64) / div
    return gx


def adaptive_bounds(o, out, size):
    """[floor(o*size/out), ceil((o+1)*size/out))."""
    return (o * size) // out, -((-(o + 1) * size) // out)


def adaptive_avg_pool2d_ref(x, output_size):
    n, c, h, w = x.shape
    ho, wo = output_size
    y = np.zeros((n, c, ho, wo))
    for oh in range(ho):
        h0, h1 = adaptive_bounds(oh, ho, h)
        for ow in range(wo):
            w0, w1 = adaptive_bounds(ow, wo, w)
            y[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].astype(np.float64).mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward_ref(grad_out, input_shape):
    n, c, h, w = input_shape
    ho, wo = grad_out.shape[2:]
    gx = np.zeros(input_shape)
    for oh in range(ho):
        h0, h1 = adaptive_bounds(oh, ho, h)
        for ow in range(wo):
            w0, w1 = adaptive_bounds(ow, wo, w)
            gx[:, :, h0:h1, w0:w1] += grad_out[:, :, oh, ow, None, None].astype(np.float64) / (
                (h1 - h0) * (w1 - w0)
            )
    return gx

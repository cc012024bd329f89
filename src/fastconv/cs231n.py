"""The CS231n layer API on fastconv's kernels: ``from fastconv.cs231n import *`` replaces the
assignments' ``layers.py``, ``fast_layers.py`` and ``layer_utils.py`` functions.

Same names, signatures and return values as the course code::

    out, cache = conv_forward_fast(x, w, b, {'stride': 1, 'pad': 1})
    dx, dw, db = conv_backward_fast(dout, cache)
    out, cache = max_pool_forward_fast(x, {'pool_height': 2, 'pool_width': 2, 'stride': 2})
    dx = max_pool_backward_fast(dout, cache)

Shapes: x (N, C, H, W), w (F, C, HH, WW), b (F,); the conv output is
(N, F, 1 + (H + 2*pad - HH) // stride, 1 + (W + 2*pad - WW) // stride) and the pool output
(N, C, 1 + (H - pool_height) // stride, 1 + (W - pool_width) // stride).

dtypes: float64 in, float64 out (the gradient checks run in float64); all-float32 inputs stay
float32; anything else (ints, mixed) is computed in float64.

The ``_naive``, ``_fast``, ``_im2col``, ``_strides`` (conv) and ``_naive``, ``_fast``,
``_reshape``, ``_im2col`` (pool) variants are aliases of one implementation on fastconv's
kernels (``fastconv.conv2d``/``conv2d_backward``, ``max_pool2d``/``max_pool2d_backward``): they
exist so that code calling any of them runs unchanged. Unlike the course's im2col version,
no divisibility of the padded size by the stride is required (the output size is floored).

Caches are what the course's naive layers return and every backward accepts them in either
form: a conv cache is ``(x, w, b, conv_param)`` (the course's 5-tuple fast caches, which add
``x_cols``, are accepted too); a max-pool cache unpacks as ``(x, pool_param)`` and carries the
argmax switches of the forward along, so the backward scatters through them without searching
the windows again. Max-pool gradients go to the first maximum of each window (as the course's
im2col version); the course's reshape version splits them among tied maxima instead.

``spatial_batchnorm_forward`` takes ``bn_param`` with ``mode`` ('train' or 'test', required),
``eps`` (1e-5), ``momentum`` (0.9), ``running_mean`` and ``running_var`` (zeros of shape (C,));
in train mode it stores the updated running statistics back into ``bn_param`` as the course code
does: ``running = momentum * running + (1 - momentum) * batch_statistic`` (biased variance).
"""

from __future__ import annotations

import numpy as np

from . import functional as _F

__all__ = [
    # convolution
    "conv_forward_naive",
    "conv_backward_naive",
    "conv_forward_fast",
    "conv_backward_fast",
    "conv_forward_im2col",
    "conv_backward_im2col",
    "conv_forward_strides",
    "conv_backward_strides",
    # max pooling
    "max_pool_forward_naive",
    "max_pool_backward_naive",
    "max_pool_forward_fast",
    "max_pool_backward_fast",
    "max_pool_forward_reshape",
    "max_pool_backward_reshape",
    "max_pool_forward_im2col",
    "max_pool_backward_im2col",
    # sandwich layers
    "conv_relu_forward",
    "conv_relu_backward",
    "conv_relu_pool_forward",
    "conv_relu_pool_backward",
    "affine_relu_forward",
    "affine_relu_backward",
    # normalization
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
    # elementwise, affine, losses
    "relu_forward",
    "relu_backward",
    "affine_forward",
    "affine_backward",
    "softmax_loss",
    "svm_loss",
]


def _floats(*arrays):
    """The arrays as ndarrays of one float dtype: float32 if all are float32, else float64."""
    arrs = [np.asarray(a) for a in arrays]
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrs) else np.float64
    return [a if a.dtype == dtype else a.astype(dtype) for a in arrs]


def _param(params, key, name):
    try:
        return params[key]
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"{name} must be a dict with the key {key!r}, got {params!r}") from None


# ---------------------------------------------------------------------------------------------
# convolution


def conv_forward_naive(x, w, b, conv_param):
    """Convolution of x (N, C, H, W) with filters w (F, C, HH, WW) plus bias b (F,).

    conv_param: {'stride': int, 'pad': int} (zero padding on all four sides).
    Returns (out, cache): out (N, F, H', W'), cache (x, w, b, conv_param)."""
    stride = _param(conv_param, "stride", "conv_param")
    pad = _param(conv_param, "pad", "conv_param")
    xa, wa, ba = _floats(x, w, np.zeros(np.shape(w)[0]) if b is None else b)
    out = _F.conv2d(xa, wa, ba, stride=stride, padding=pad)
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    """Gradients of conv_forward_*: returns (dx, dw, db) for the cache of the forward."""
    x, w, b, conv_param = cache[:4]  # the course's fast caches append x_cols: ignored
    stride = _param(conv_param, "stride", "conv_param")
    pad = _param(conv_param, "pad", "conv_param")
    xa, wa, da = _floats(x, w, dout)
    return _F.conv2d_backward(da, xa, wa, stride=stride, padding=pad)


# The course's fast variants compute the same thing; here they are one kernel path.
conv_forward_fast = conv_forward_im2col = conv_forward_strides = conv_forward_naive
conv_backward_fast = conv_backward_im2col = conv_backward_strides = conv_backward_naive


# ---------------------------------------------------------------------------------------------
# max pooling


class _PoolCache(tuple):
    """(x, pool_param), plus the forward's argmax switches as .switches (None if unknown)."""

    switches = None


def _pool_sizes(pool_param):
    ph = _param(pool_param, "pool_height", "pool_param")
    pw = _param(pool_param, "pool_width", "pool_param")
    stride = _param(pool_param, "stride", "pool_param")
    return (ph, pw), stride


def max_pool_forward_naive(x, pool_param):
    """Max pooling of x (N, C, H, W) without padding.

    pool_param: {'pool_height': int, 'pool_width': int, 'stride': int}.
    Returns (out, cache): out (N, C, H', W'), cache unpacking as (x, pool_param)."""
    kernel, stride = _pool_sizes(pool_param)
    (xa,) = _floats(x)
    out, switches = _F.max_pool2d(xa, kernel, stride=stride, return_indices=True)
    cache = _PoolCache((x, pool_param))
    cache.switches = switches
    return out, cache


def max_pool_backward_naive(dout, cache):
    """Gradient of max_pool_forward_*: dx of x's shape, dout routed to each window's maximum."""
    x, pool_param = cache[0], cache[1]
    xa, da = _floats(x, dout)
    switches = getattr(cache, "switches", None)
    if switches is None:  # a cache made elsewhere (the course's naive layer): find the argmaxes
        kernel, stride = _pool_sizes(pool_param)
        _, switches = _F.max_pool2d(xa, kernel, stride=stride, return_indices=True)
    return _F.max_pool2d_backward(da, switches, xa.shape)


max_pool_forward_fast = max_pool_forward_reshape = max_pool_forward_im2col = max_pool_forward_naive
max_pool_backward_fast = max_pool_backward_reshape = max_pool_backward_im2col = (
    max_pool_backward_naive
)


# ---------------------------------------------------------------------------------------------
# elementwise and affine


def relu_forward(x):
    """max(0, x). Returns (out, cache=x)."""
    x = np.asarray(x)
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """Gradient of relu_forward: dout where x > 0, else 0."""
    x = cache
    return np.where(x > 0, dout, 0).astype(np.result_type(dout, x), copy=False)


def affine_forward(x, w, b):
    """x (N, d_1, ..., d_k) reshaped to (N, D) times w (D, M) plus b (M,).
    Returns (out, cache=(x, w, b))."""
    out = np.reshape(x, (np.shape(x)[0], -1)) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    """Gradients of affine_forward: (dx of x's shape, dw (D, M), db (M,))."""
    x, w, b = cache
    x = np.asarray(x)
    dx = (dout @ np.transpose(w)).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = np.sum(dout, axis=0)
    return dx, dw, db


# ---------------------------------------------------------------------------------------------
# sandwich layers (layer_utils.py)


def affine_relu_forward(x, w, b):
    """affine then ReLU. Returns (out, cache=(fc_cache, relu_cache))."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    """Gradients of affine_relu_forward: (dx, dw, db)."""
    fc_cache, relu_cache = cache
    return affine_backward(relu_backward(dout, relu_cache), fc_cache)


def conv_relu_forward(x, w, b, conv_param):
    """conv then ReLU. Returns (out, cache=(conv_cache, relu_cache))."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    """Gradients of conv_relu_forward: (dx, dw, db)."""
    conv_cache, relu_cache = cache
    return conv_backward_fast(relu_backward(dout, relu_cache), conv_cache)


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """conv, ReLU, max pool. Returns (out, cache=(conv_cache, relu_cache, pool_cache))."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    """Gradients of conv_relu_pool_forward: (dx, dw, db)."""
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_fast(dout, pool_cache)
    return conv_backward_fast(relu_backward(ds, relu_cache), conv_cache)


# ---------------------------------------------------------------------------------------------
# batch normalization


def _bn_forward(x, gamma, beta, bn_param, axes):
    """Batch norm over `axes` of x, per remaining (channel) index; gamma/beta broadcast."""
    mode = _param(bn_param, "mode", "bn_param")
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    x = np.asarray(x)
    shape = [1 if i in axes else s for i, s in enumerate(x.shape)]  # broadcast per channel
    nchan = int(np.prod([x.shape[i] for i in range(x.ndim) if i not in axes]))
    running_mean = bn_param.get("running_mean", np.zeros(nchan, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(nchan, dtype=x.dtype))
    g = np.reshape(gamma, shape)
    if mode == "train":
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        inv_std = 1.0 / np.sqrt(var + eps)
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        running_mean = momentum * running_mean + (1 - momentum) * mean
        running_var = momentum * running_var + (1 - momentum) * var
    elif mode == "test":
        inv_std = 1.0 / np.sqrt(running_var + eps)
        xhat = (x - np.reshape(running_mean, shape)) * np.reshape(inv_std, shape)
    else:
        raise ValueError(f'Invalid forward batchnorm mode "{mode}" (use "train" or "test")')
    out = g * xhat + np.reshape(beta, shape)
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, (mode, xhat, g, inv_std.reshape(shape), axes)


def _bn_backward(dout, cache):
    mode, xhat, g, inv_std, axes = cache
    dgamma = np.sum(dout * xhat, axis=axes)
    dbeta = np.sum(dout, axis=axes)
    dxhat = dout * g
    if mode == "test":  # statistics are constants: a per-channel affine map
        return dxhat * inv_std, dgamma, dbeta
    m = xhat.size // inv_std.size
    dx = (inv_std / m) * (
        m * dxhat
        - np.sum(dxhat, axis=axes, keepdims=True)
        - xhat * np.sum(dxhat * xhat, axis=axes, keepdims=True)
    )
    return dx, dgamma, dbeta


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of x (N, D) per feature. Returns (out, cache); updates bn_param's
    running_mean/running_var in train mode (see the module docstring)."""
    return _bn_forward(x, gamma, beta, bn_param, (0,))


def batchnorm_backward(dout, cache):
    """Gradients of batchnorm_forward: (dx, dgamma, dbeta)."""
    return _bn_backward(dout, cache)


batchnorm_backward_alt = batchnorm_backward  # the course's simplified-formula version


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of x (N, C, H, W) per channel, over N, H and W.
    gamma, beta: (C,). Returns (out, cache); updates bn_param as batchnorm_forward."""
    if np.ndim(x) != 4:
        raise ValueError(
            f"spatial_batchnorm_forward: x must be (N, C, H, W), got shape {np.shape(x)}"
        )
    return _bn_forward(x, gamma, beta, bn_param, (0, 2, 3))


def spatial_batchnorm_backward(dout, cache):
    """Gradients of spatial_batchnorm_forward: (dx (N, C, H, W), dgamma (C,), dbeta (C,))."""
    return _bn_backward(dout, cache)


# ---------------------------------------------------------------------------------------------
# losses


def softmax_loss(x, y):
    """Softmax cross-entropy of scores x (N, C) for labels y (N,), averaged over N.
    Returns (loss, dx)."""
    x = np.asarray(x)
    n = x.shape[0]
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -np.sum(log_probs[np.arange(n), y]) / n
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    return loss, dx / n


def svm_loss(x, y):
    """Multiclass hinge loss (margin 1) of scores x (N, C) for labels y (N,), averaged over N.
    Returns (loss, dx)."""
    x = np.asarray(x)
    n = x.shape[0]
    correct = x[np.arange(n), y][:, None]
    margins = np.maximum(0, x - correct + 1.0)
    margins[np.arange(n), y] = 0
    loss = np.sum(margins) / n
    dx = (margins > 0).astype(x.dtype)
    dx[np.arange(n), y] -= dx.sum(axis=1)
    return loss, dx / n

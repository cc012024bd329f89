"""Real data for demos: scikit-learn's bundled handwritten digits (1,797 8x8 grey images, no
download), enlarged to LeNet-5's 32x32 input, with a fixed train/test split; a user's images
from an .npz file (:func:`load_npz`); and fitting images to a model's input (:func:`resize`,
:func:`match_channels`)."""

from __future__ import annotations

import os

import numpy as np

from ._io import read_npz

__all__ = ["load_digits", "load_npz", "resize", "match_channels", "batches", "DataError"]


MAX_CLASSES = 100_000  # load_npz: a larger label is taken for a mistake (ImageNet-21k has 21,841)


class DataError(ValueError):
    """A data file that cannot be read, or whose arrays are not images and integer labels."""


def _bilinear_matrix(n_in, n_out):
    """(n_out, n_in) matrix of bilinear interpolation with half-pixel centres."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def load_digits(size=32, digit_size=20, test_fraction=0.2, dtype=np.float32):
    """Return ``(x_train, y_train, x_test, y_test)``: x of shape (N, 1, size, size), y int64.

    Each 8x8 image is resized bilinearly to ``digit_size`` and centred on a ``size`` canvas (as
    MNIST's 20x20 digits sit in LeNet-5's 32x32 field), then standardised with the training set's
    mean and standard deviation. The split is fixed (a permutation seeded with 0).
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits data comes with scikit-learn: pip install 'fastconv[train]'"
        ) from e
    if digit_size > size:
        raise ValueError(f"digit_size ({digit_size}) must not exceed size ({size})")
    digits = _sk_digits()
    images, labels = digits.images / 16.0, digits.target.astype(np.int64)
    r = _bilinear_matrix(8, digit_size)
    big = r @ images @ r.T  # [D, 8] x [N, 8, 8] x [8, D] -> [N, D, D]
    lo = (size - digit_size) // 2
    x = np.zeros((len(images), 1, size, size))
    x[:, 0, lo : lo + digit_size, lo : lo + digit_size] = big

    order = np.random.default_rng(0).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = ((x - mean) / std).astype(dtype)
    return x[train], labels[train], x[test], labels[test]


def load_npz(path, val_fraction=0.1, dtype=np.float32):
    """Return ``(x_train, y_train, x_val, y_val, classes)`` from an .npz file holding ``x``
    (N, C, H, W) or (N, H, W) images, ``y`` (N,) integer labels from 0, and optionally
    ``x_val`` and ``y_val`` likewise. Without them a fixed ``val_fraction`` of the samples (a
    permutation seeded with 0) is held out for validation. ``classes`` is the largest label + 1.

    The images are standardised per channel with the training samples' mean and standard
    deviation. Anything else (a corrupt file, a missing array, other shapes, labels that are
    not whole numbers >= 0, images that are not finite) raises :class:`DataError` naming it."""
    name = os.fspath(path)
    arrays = read_npz(path, ".npz file", DataError)
    missing = [k for k in ("x", "y") if k not in arrays]
    if not missing and ("x_val" in arrays) != ("y_val" in arrays):  # one without the other
        missing = [k for k in ("x_val", "y_val") if k not in arrays]
    if missing:
        raise DataError(
            f"{name}: no array {' or '.join(map(repr, missing))} (it has "
            f"{', '.join(map(repr, arrays)) or 'none'}; needed: x and y, optionally "
            f"x_val and y_val)"
        )
    x, y = _images(name, "x", arrays["x"]), _labels(name, "y", arrays["y"])
    if len(y) != len(x):
        raise DataError(f"{name}: x holds {len(x)} images but y {len(y)} labels")
    if "x_val" in arrays:
        x_val = _images(name, "x_val", arrays["x_val"])
        y_val = _labels(name, "y_val", arrays["y_val"])
        if x_val.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{name}: x_val's images are {'x'.join(map(str, x_val.shape[1:]))}, "
                f"x's {'x'.join(map(str, x.shape[1:]))}: they must be alike"
            )
        if len(y_val) != len(x_val):
            raise DataError(
                f"{name}: x_val holds {len(x_val)} images but y_val {len(y_val)} labels"
            )
    else:
        if len(x) < 2:
            raise DataError(
                f"{name}: {len(x)} sample cannot be split into training and "
                f"validation data (add x_val and y_val)"
            )
        order = np.random.default_rng(0).permutation(len(x))
        n_val = min(max(int(round(val_fraction * len(x))), 1), len(x) - 1)
        x, y, x_val, y_val = x[order[n_val:]], y[order[n_val:]], x[order[:n_val]], y[order[:n_val]]
    if len(np.unique(y)) < 2:
        raise DataError(
            f"{name}: the training labels are all {int(y[0])}: a classifier needs "
            f"at least two classes"
        )
    classes = int(max(y.max(), y_val.max())) + 1
    if classes > MAX_CLASSES:
        raise DataError(
            f"{name}: the largest label is {classes - 1}; classes count from 0 up to "
            f"it, and more than {MAX_CLASSES:,} is surely not meant (relabel them "
            f"0, 1, 2, ...)"
        )
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    std = x64.std(axis=(0, 2, 3), keepdims=True)
    std[std == 0] = 1.0

    def standardise(a):
        return ((a - mean) / std).astype(dtype)

    return standardise(x64), y, standardise(x_val), y_val, classes


def _images(name, key, a):
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or 0 in a.shape:
        raise DataError(
            f"{name}: {key} must hold images as (N, C, H, W) or (N, H, W), none "
            f"empty; its shape is {a.shape}"
        )
    if a.dtype.kind not in "buif":
        raise DataError(f"{name}: {key} must hold numbers, not {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DataError(
            f"{name}: {key} holds {int((~np.isfinite(a)).sum())} values that are "
            f"not finite (NaN or infinite)"
        )
    return a


def _labels(name, key, a):
    if a.ndim != 1:
        raise DataError(
            f"{name}: {key} must be a 1-D array of integer labels; its shape is {a.shape}"
        )
    if a.dtype.kind == "f":
        whole = np.isfinite(a) & (a == np.round(a))
        if not whole.all():
            raise DataError(
                f"{name}: {key} must hold integer class labels; it holds "
                f"{a.dtype} values such as {a[~whole][0].item()!r}"
            )
        a = a.astype(np.int64)  # 3.0 is label 3
    if a.dtype.kind not in "iu":
        raise DataError(f"{name}: {key} must hold integer class labels, not {a.dtype}")
    if len(a) and a.min() < 0:
        raise DataError(
            f"{name}: {key} holds the negative label {int(a.min())}: labels count from 0"
        )
    return a.astype(np.int64)


def resize(x, size):
    """Images (N, C, H, W) resized bilinearly (half-pixel centres) to ``size = (h, w)``; the
    same array when it has that size already."""
    h, w = size
    if x.shape[2:] == (h, w):
        return x
    rh, rw = _bilinear_matrix(x.shape[2], h), _bilinear_matrix(x.shape[3], w)
    out = np.empty(x.shape[:2] + (h, w), x.dtype)
    for start in range(0, len(x), 256):  # [h, H] x [n, C, H, W] x [W, w] -> [n, C, h, w]
        out[start : start + 256] = rh @ x[start : start + 256] @ rw.T
    return out


def match_channels(x, channels):
    """Images (N, C, H, W) with ``channels`` channels: grey images (C == 1) are repeated; any
    other mismatch raises ValueError."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return np.repeat(x, channels, axis=1)
    raise ValueError(f"the model takes {channels}-channel images and the data has {c} channels")


def batches(x, y, batch_size, shuffle=False, rng=None, skip=0):
    """Yield ``(x_batch, y_batch)``; shuffled with ``rng`` (a numpy Generator) if asked. ``skip``
    leaves out the first ``skip`` batches of that order (a resumed epoch: the shuffle draws the
    same permutation from ``rng`` either way)."""
    order = (rng or np.random.default_rng()).permutation(len(x)) if shuffle else np.arange(len(x))
    for start in range(skip * batch_size, len(x), batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]

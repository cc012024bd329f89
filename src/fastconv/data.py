"""Real data for demos: scikit-learn's bundled handwritten digits (1,797 8x8 grey images, no
download), enlarged to LeNet-5's 32x32 input, with a fixed train/test split."""
from __future__ import annotations

import numpy as np

__all__ = ["load_digits", "batches"]


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
        raise ImportError("the digits data comes with scikit-learn: pip install 'fastconv[train]'") from e
    if digit_size > size:
        raise ValueError(f"digit_size ({digit_size}) must not exceed size ({size})")
    digits = _sk_digits()
    images, labels = digits.images / 16.0, digits.target.astype(np.int64)
    r = _bilinear_matrix(8, digit_size)
    big = r @ images @ r.T  # [D, 8] x [N, 8, 8] x [8, D] -> [N, D, D]
    lo = (size - digit_size) // 2
    x = np.zeros((len(images), 1, size, size))
    x[:, 0, lo:lo + digit_size, lo:lo + digit_size] = big

    order = np.random.default_rng(0).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = ((x - mean) / std).astype(dtype)
    return x[train], labels[train], x[test], labels[test]


def batches(x, y, batch_size, shuffle=False, rng=None, skip=0):
    """Yield ``(x_batch, y_batch)``; shuffled with ``rng`` (a numpy Generator) if asked. ``skip``
    leaves out the first ``skip`` batches of that order (a resumed epoch: the shuffle draws the
    same permutation from ``rng`` either way)."""
    order = (rng or np.random.default_rng()).permutation(len(x)) if shuffle else np.arange(len(x))
    for start in range(skip * batch_size, len(x), batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]

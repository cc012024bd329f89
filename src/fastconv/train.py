"""A plain training loop for fastconv models: epochs of minibatch steps, evaluation, weights as .npz."""
from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from ._io import atomic_write
from .autograd import Tensor, no_grad
from .data import batches
from .nn import functional as F

__all__ = ["train_epoch", "evaluate", "fit", "save_weights", "load_weights"]


def train_epoch(model, optimizer, x, y, batch_size, rng, progress=None):
    """One pass over (x, y) in shuffled minibatches; returns the mean training loss.
    ``progress``, if given, wraps the batch iterator (a tqdm factory, for example)."""
    model.train()
    total, count = 0.0, 0
    steps = batches(x, y, batch_size, shuffle=True, rng=rng)
    if progress is not None:
        steps = progress(steps, total=-(-len(x) // batch_size))
    for xb, yb in steps:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(Tensor(xb)), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
        count += len(xb)
        if hasattr(steps, "set_postfix"):
            steps.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return total / count


def evaluate(model, x, y, batch_size=256):
    """Classification accuracy in eval mode, without recording a graph."""
    model.eval()
    correct = 0
    with no_grad():
        for xb, yb in batches(x, y, batch_size):
            correct += int((model(Tensor(xb)).data.argmax(axis=1) == yb).sum())
    return correct / len(x)


def fit(model, optimizer, data, epochs, batch_size, rng, scheduler=None, progress=None, log=print):
    """Train for ``epochs`` on ``data = (x_train, y_train, x_test, y_test)``; returns the list of
    per-epoch training losses."""
    x_train, y_train, _, _ = data
    losses = []
    for epoch in range(1, epochs + 1):
        bar = None if progress is None else (lambda it, total: progress(it, total=total,
                                                                         desc=f"epoch {epoch}/{epochs}"))
        loss = train_epoch(model, optimizer, x_train, y_train, batch_size, rng, bar)
        if scheduler is not None:
            scheduler.step()
        losses.append(loss)
        log(f"epoch {epoch}/{epochs}: loss {loss:.4f}")
    return losses


def save_weights(model, path):
    """Write the model's state_dict (keys as PyTorch's) in .npz format to exactly ``path`` (no
    suffix is added), atomically: a failure part-way (a full disk, say) raises and leaves any
    file that was at ``path`` as it was."""
    with atomic_write(path) as f:
        np.savez(f, **model.state_dict())


def load_weights(model, path, strict=True):
    """Load a file written by :func:`save_weights` (any .npz of the model's keys) into model.
    A file that is not a complete .npz raises ValueError naming it."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive of named arrays")
        with loaded as f:
            state = {k: f[k] for k in f.files}
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{os.fspath(path)} is not a readable .npz weights file (truncated or "
                         f"corrupt?): {e}") from e
    return model.load_state_dict(state, strict=strict)

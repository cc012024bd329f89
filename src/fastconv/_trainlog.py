"""``fastconv train --log`` and ``--plot``: the per-epoch record of a run (training loss,
held-out accuracy, learning rate, time) as JSON, rewritten whole after every epoch, and its
curves drawn by matplotlib."""

from __future__ import annotations

import json
import os

from ._io import atomic_write, save_figure

__all__ = ["MetricsLog", "plot_curves"]


class MetricsLog:
    """The run's facts (``info``) and one dict per epoch; :meth:`write` replaces the file at
    ``path`` (None: kept in memory only) atomically, so a crash leaves the epochs done."""

    def __init__(self, path, info):
        self.path, self.info, self.epochs = path, dict(info), []

    def keep_earlier(self, done):
        """On a resumed run: the epochs up to ``done`` from the file already at ``path``, when it
        is a log of this kind (anything else there is replaced)."""
        if self.path is None or not os.path.isfile(self.path):
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                old = json.load(f)
            earlier = [e for e in old["epochs"] if isinstance(e, dict) and e["epoch"] <= done]
        except (OSError, ValueError, KeyError, TypeError):
            return
        self.epochs = sorted(earlier, key=lambda e: e["epoch"])

    def add(self, **entry):
        self.epochs.append(entry)

    def as_dict(self):
        return dict(self.info, epochs=self.epochs)

    def write(self):
        if self.path is not None:
            with atomic_write(self.path, binary=False) as f:
                json.dump(self.as_dict(), f, indent=1)
                f.write("\n")


def plot_curves(log, path, title):
    """Training loss and held-out accuracy against the epoch, side by side, to ``path`` (the
    format from its extension), written whole or not at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in log.epochs]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [e["train_loss"] for e in log.epochs], marker="o")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (cross-entropy)")
    acc_ax.plot(epochs, [e["val_accuracy"] for e in log.epochs], marker="o", color="tab:green")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel(f"{log.info.get('heldout', 'validation')} accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)

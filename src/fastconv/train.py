"""A plain training loop for fastconv models: epochs of minibatch steps, evaluation, weights as
.npz, and checkpoints from which a run resumes bit for bit."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import autograd
from ._io import atomic_write, read_npz
from ._typing import PathLike
from .autograd import Tensor, no_grad
from .data import batches
from .nn import functional as F
from .nn.module import IncompatibleKeys, Module
from .optim import LRScheduler, OneCycleLR, Optimizer, ReduceLROnPlateau

if TYPE_CHECKING:
    from .distributed import DistributedDataParallel

__all__ = [
    "train_epoch",
    "evaluate",
    "fit",
    "save_weights",
    "load_weights",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
]


def _num_batches(n, batch_size):
    return -(-n // batch_size)


def train_epoch(
    model: Module,
    optimizer: Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    progress: Callable[..., Iterable[Any]] | None = None,
    start_step: int = 0,
) -> float:
    """One pass over (x, y) in shuffled minibatches; returns the mean training loss.
    ``progress``, if given, wraps the batch iterator (a tqdm factory, for example).

    ``start_step`` finishes an epoch that stopped part-way: with ``rng`` as it was when the epoch
    began, the same order is drawn and its first ``start_step`` minibatches are skipped without
    being run (the loss returned is then the mean over the minibatches run)."""
    return _run_epoch(model, optimizer, x, y, batch_size, rng, progress, start_step)


def _run_epoch(
    model,
    optimizer,
    x,
    y,
    batch_size,
    rng,
    progress,
    start_step=0,
    total=0.0,
    count=0,
    after_step=None,
    shard=None,
):
    """train_epoch, continuing a running (loss sum, sample count); ``after_step(step, total,
    count)`` is called after each optimizer step, ``step`` counting the epoch's minibatches.
    With ``shard`` (data-parallel), this rank runs its share of each minibatch and the running
    sums are this rank's until the epoch's total, summed over the ranks, is returned."""
    n = _num_batches(len(x), batch_size)
    if (
        isinstance(start_step, bool)
        or not isinstance(start_step, (int, np.integer))
        or not 0 <= start_step < max(n, 1)
    ):
        raise ValueError(
            f"start_step must be an int from 0 to {max(n - 1, 0)} (the epoch has {n} "
            f"minibatches of {batch_size}), got {start_step!r}"
        )
    model.train()
    steps = batches(x, y, batch_size, shuffle=True, rng=rng, skip=start_step)
    if progress is not None:
        steps = progress(steps, total=n - start_step)
    for step, (xb, yb) in enumerate(steps, start_step + 1):
        optimizer.zero_grad()
        if shard is None:
            loss = F.cross_entropy(model(Tensor(xb)), yb)
            part, part_count = loss.item() * len(xb), len(xb)
        else:  # this rank's rows of the global minibatch (distributed/_train.py)
            loss, part, part_count = shard.loss(xb, yb)
        loss.backward()
        optimizer.step()
        total += part
        count += part_count
        if hasattr(steps, "set_postfix"):
            steps.set_postfix(loss=f"{part / max(part_count, 1):.4f}", refresh=False)
        if after_step is not None:
            after_step(step, total, count)
    if shard is not None:
        total, count = shard.global_sums(total, count)
    return total / count


def evaluate(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Classification accuracy in eval mode, without recording a graph."""
    model.eval()
    correct = 0
    with no_grad():
        for xb, yb in batches(x, y, batch_size):
            correct += int((model(Tensor(xb)).data.argmax(axis=1) == yb).sum())
    return correct / len(x)


def _validation_loss(model, x, y, batch_size=256):
    """Mean cross-entropy over (x, y) in eval mode, without recording a graph."""
    model.eval()
    total = 0.0
    with no_grad():
        for xb, yb in batches(x, y, batch_size):
            total += F.cross_entropy(model(Tensor(xb)), yb, reduction="sum").item()
    return total / len(x)


def _scheduler_interval(scheduler, interval):
    """fit's ``scheduler_interval``, its default filled in and checked."""
    if interval is None:
        return "step" if isinstance(scheduler, OneCycleLR) else "epoch"
    if interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {interval!r}")
    if interval == "step" and isinstance(scheduler, ReduceLROnPlateau):
        raise ValueError(
            "scheduler_interval='step' does not fit ReduceLROnPlateau: it steps once "
            "an epoch, on the epoch's loss"
        )
    return interval


def fit(
    model: Module,
    optimizer: Optimizer,
    data: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None],
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    scheduler: LRScheduler | None = None,
    progress: Callable[..., Iterable[Any]] | None = None,
    log: Callable[[str], Any] = print,
    *,
    checkpoint: PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: PathLike | None = None,
    on_epoch_end: Callable[[int, float], Any] | None = None,
    scheduler_interval: str | None = None,
    data_parallel: DistributedDataParallel | None = None,
) -> list[float]:
    """Train for ``epochs`` on ``data = (x_train, y_train, x_val, y_val)`` (the validation pair
    may be None); returns the list of per-epoch training losses (of the epochs this call ran).

    ``scheduler`` (any of ``fastconv.optim``'s) is stepped after each optimizer step when
    ``scheduler_interval`` is "step" (the default for OneCycleLR, whose schedule counts batches)
    and at the end of each epoch when it is "epoch" (the default otherwise). ReduceLROnPlateau is
    stepped with a metric, ``scheduler.step(loss)``: the epoch's mean cross-entropy on
    (x_val, y_val), evaluated in eval mode, if there are validation data, else the epoch's mean
    training loss; it must step per epoch.

    fit reports through ``log`` only: a line per epoch, "epoch E/N: loss L" (with ", val_loss V"
    when it evaluated one for ReduceLROnPlateau), written with ``print`` (stdout) by default; it
    computes no accuracy itself. ``fastconv train`` passes an ``on_epoch_end`` that evaluates the
    held-out accuracy and prints it to stderr each epoch.

    ``checkpoint=PATH`` writes a checkpoint (:func:`save_checkpoint`) there at the end of each
    epoch and, with ``checkpoint_every=N``, after every N-th optimizer step of the run too; each
    write replaces the last one whole. ``resume=PATH`` first restores such a checkpoint (model,
    optimizer, schedule, fastconv's random generator, the position in the run, and ``rng``'s state,
    set in place) and carries on to ``epochs``: parameters, buffers, optimizer state and the epochs'
    losses come out bitwise equal to those of a run that was never interrupted. The data and
    ``batch_size`` must be the ones the checkpoint's run used; a different batch size or number of
    samples raises :class:`CheckpointError`.

    ``on_epoch_end(epoch, loss)``, if given, is called after each epoch (once it is logged and
    its checkpoint written): to evaluate on validation data, say. It must leave the random
    generators alone for a resumed run to stay equal to an uninterrupted one (evaluation in
    eval mode does).

    ``data_parallel``: a :class:`fastconv.distributed.DistributedDataParallel` wrapping ``model``,
    the same call made on every rank with the same data, ``rng`` seed and ``batch_size`` (the
    global batch). Each rank runs its share of every minibatch (``fastconv.distributed._train``);
    losses are over the global batch; ``log`` is called and checkpoints written on rank 0 only
    (every rank reads them to resume)."""
    x_train, y_train, x_val, y_val = data
    shard = None
    if data_parallel is not None:
        from .distributed._train import Shard

        if getattr(data_parallel, "module", None) is not model:
            raise ValueError("data_parallel must be a DistributedDataParallel wrapping model")
        shard = Shard(data_parallel)
        if shard.rank != 0:
            log = _quiet
    save = _save if shard is None else (lambda *a: shard.on_rank0(lambda: _save(*a)))
    n_steps = _num_batches(len(x_train), batch_size)
    interval = _scheduler_interval(scheduler, scheduler_interval)
    per_step = scheduler is not None and interval == "step"
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, (int, np.integer))
        or checkpoint_every < 1
        or checkpoint is None
    ):
        raise ValueError(
            f"checkpoint_every must be an int >= 1 and needs checkpoint=PATH, got "
            f"checkpoint_every={checkpoint_every!r}, checkpoint={checkpoint!r}"
        )
    if (checkpoint is not None or resume is not None) and not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"checkpoint and resume need rng, the numpy Generator that shuffles the "
            f"data (a checkpoint holds its state), got {type(rng).__name__}"
        )
    done, start_step, running = 0, 0, (0.0, 0)
    if resume is not None:
        done, start_step, running = _resume(
            resume, model, optimizer, scheduler, rng, batch_size, len(x_train)
        )
        if shard is not None:
            running = shard.resumed_running(running)
        log(
            f"resumed from {os.fspath(resume)}: epoch {done + 1}, {start_step} of {n_steps} steps "
            f"done"
        )

    losses = []
    for epoch in range(done + 1, epochs + 1):
        epoch_rng = rng.bit_generator.state if checkpoint_every else None  # the epoch's order

        def after_step(step, total, count, epoch=epoch, epoch_rng=epoch_rng):
            if per_step:  # before the checkpoint: it holds the schedule after this step
                scheduler.step()
            if (
                checkpoint_every
                and step < n_steps
                and ((epoch - 1) * n_steps + step) % checkpoint_every == 0
            ):
                if shard is not None:
                    total, count = shard.global_sums(total, count)
                save(
                    checkpoint,
                    model,
                    optimizer,
                    scheduler,
                    epoch - 1,
                    step,
                    epoch_rng,
                    _loop_info(batch_size, len(x_train), total, count),
                )

        bar = (
            None
            if progress is None
            else (lambda it, total: progress(it, total=total, desc=f"epoch {epoch}/{epochs}"))
        )
        loss = _run_epoch(
            model if shard is None else data_parallel,
            optimizer,
            x_train,
            y_train,
            batch_size,
            rng,
            bar,
            start_step,
            *running,
            after_step if checkpoint_every or per_step else None,
            shard,
        )
        start_step, running = 0, (0.0, 0)
        line = f"epoch {epoch}/{epochs}: loss {loss:.4f}"
        if isinstance(scheduler, ReduceLROnPlateau):
            metric = loss
            if x_val is not None and len(x_val):
                metric = _validation_loss(model, x_val, y_val)
                line += f", val_loss {metric:.4f}"
            scheduler.step(metric)
        elif scheduler is not None and not per_step:
            scheduler.step()
        losses.append(loss)
        log(line)
        if checkpoint is not None:
            save(
                checkpoint,
                model,
                optimizer,
                scheduler,
                epoch,
                0,
                rng.bit_generator.state,
                _loop_info(batch_size, len(x_train), 0.0, 0),
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, loss)
    return losses


def _quiet(*args, **kwargs):
    """fit's log on ranks other than 0."""


def save_weights(model: Module, path: PathLike) -> None:
    """Write the model's state_dict (keys as PyTorch's) in .npz format to exactly ``path`` (no
    suffix is added), atomically: a failure part-way (a full disk, say) raises and leaves any
    file that was at ``path`` as it was."""
    with atomic_write(path) as f:
        np.savez(f, **model.state_dict())


def load_weights(model: Module, path: PathLike, strict: bool = True) -> IncompatibleKeys:
    """Load a file written by :func:`save_weights` (any .npz of the model's keys) into model.
    A file that is not a complete .npz raises ValueError naming it."""
    return model.load_state_dict(read_npz(path, ".npz weights file"), strict=strict)


# ----------------------------------------------------------------------------------------------
# checkpoints: one .npz holding the model's state_dict arrays ("model/<key>"), the optimizer's
# state arrays ("optimizer/<index>/<name>") and everything else as JSON (_META, UTF-8 bytes)

_FORMAT, _VERSION, _META = "fastconv checkpoint", 1, "checkpoint.json"
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or that does not fit what it is loaded into."""


def save_checkpoint(
    path: PathLike,
    model: Module,
    optimizer: Optimizer,
    scheduler: LRScheduler | None,
    epoch: int,
    step: int,
    rng: np.random.Generator,
) -> None:
    """Write everything a run needs to continue exactly to one file at ``path`` (no suffix added),
    atomically: the model's state_dict (parameters and buffers), ``optimizer.state_dict()``,
    ``scheduler.state_dict()`` (``scheduler`` may be None), the position (``epoch`` epochs done and
    ``step`` minibatches of the next), the state of ``rng`` (the numpy Generator that shuffles the
    data: when ``step > 0``, as it was when that epoch began, so the epoch's order can be drawn
    again) and the state of fastconv's own generator (dropout, ``fastconv.nn.init``).

    The file is an .npz of plain arrays plus one JSON text entry (no pickled objects)."""
    for name, value in (("epoch", epoch), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    _save(path, model, optimizer, scheduler, int(epoch), int(step), rng.bit_generator.state, {})


def load_checkpoint(
    path: PathLike, model: Module, optimizer: Optimizer, scheduler: LRScheduler | None
) -> tuple[int, int, np.random.Generator]:
    """Restore a file written by :func:`save_checkpoint` (or by :func:`fit`) into ``model``,
    ``optimizer`` and ``scheduler`` (built as for the run that wrote it; their hyper-parameters
    and the schedule's position come from the file, as PyTorch's load_state_dict does) and
    fastconv's random generator. Returns ``(epoch, step, rng)``: continue with
    ``train_epoch(..., rng, start_step=step)`` for epoch ``epoch + 1``.

    A file that is truncated, corrupt or not a checkpoint, or one that does not fit the model,
    optimizer or schedule, raises :class:`CheckpointError` (a ValueError) naming it; nothing is
    changed then."""
    ck = _read(path)
    _restore(path, ck, model, optimizer, scheduler)
    return ck["epoch"], ck["step"], _generator(path, ck["rng"])


def _loop_info(batch_size, samples, loss_sum, loss_count):
    return {
        "batch_size": batch_size,
        "samples": samples,
        "loss_sum": loss_sum,
        "loss_count": loss_count,
    }


def _json_value(value):
    if isinstance(value, (np.generic, np.ndarray)):  # MT19937's and Philox's states hold arrays
        return value.tolist()
    raise TypeError(
        f"a checkpoint cannot hold a {type(value).__name__} ({value!r}) outside an array"
    )


def _save(path, model, optimizer, scheduler, epoch, step, rng_state, loop):
    arrays = {"model/" + k: v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    state = {}
    for i, entries in opt["state"].items():
        state[str(i)] = {}
        for name, value in entries.items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer/{i}/{name}"] = value
            else:
                state[str(i)][name] = value
    meta = {
        "format": _FORMAT,
        "version": _VERSION,
        "epoch": epoch,
        "step": step,
        "rng": rng_state,
        "autograd_rng": autograd.default_generator().bit_generator.state,
        "optimizer": {
            "type": type(optimizer).__name__,
            "param_groups": opt["param_groups"],
            "state": state,
        },
        "scheduler": None
        if scheduler is None
        else {"type": type(scheduler).__name__, "state": scheduler.state_dict()},
        "loop": loop,
    }
    arrays[_META] = np.frombuffer(json.dumps(meta, default=_json_value).encode("utf-8"), np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _read(path):
    """The checkpoint at path as {"model": arrays, "optimizer": state_dict, ...meta}; raises
    CheckpointError for anything but a complete, well-formed checkpoint."""
    name = os.fspath(path)
    arrays = read_npz(path, "checkpoint", CheckpointError)
    if _META not in arrays:
        raise CheckpointError(
            f"{name} is not a fastconv checkpoint (no {_META} entry; weights "
            f"written by save_weights load with load_weights)"
        )
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
        _check_meta(meta)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{name} is not a well-formed fastconv checkpoint: {e}") from e
    model, state = {}, {int(i): dict(v) for i, v in meta["optimizer"]["state"].items()}
    for key, value in arrays.items():
        kind, _, rest = key.partition("/")
        index, _, entry = rest.partition("/")
        if kind == "model" and rest:
            model[rest] = value
        elif kind == "optimizer" and index.isdigit() and entry:
            state.setdefault(int(index), {})[entry] = value
        else:
            raise CheckpointError(f"{name}: unexpected entry {key!r} in a fastconv checkpoint")
    meta["model"] = model
    meta["optimizer"] = {
        "type": meta["optimizer"]["type"],
        "state": state,
        "param_groups": meta["optimizer"]["param_groups"],
    }
    return meta


def _check_meta(meta):
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"its format is not {_FORMAT!r}")
    if meta.get("version") != _VERSION:
        raise ValueError(f"version {meta.get('version')!r}, this fastconv reads {_VERSION}")
    for key in ("epoch", "step"):
        if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 0:
            raise ValueError(f"{key} {meta[key]!r} is not an int >= 0")
    opt = meta["optimizer"]
    if not (
        isinstance(opt["type"], str)
        and isinstance(opt["param_groups"], list)
        and isinstance(opt["state"], dict)
        and all(k.isdigit() and isinstance(v, dict) for k, v in opt["state"].items())
    ):
        raise ValueError("malformed optimizer entry")
    sched = meta["scheduler"]
    if sched is not None and not (
        isinstance(sched["type"], str) and isinstance(sched["state"], dict)
    ):
        raise ValueError("malformed scheduler entry")
    if not isinstance(meta["rng"], dict) or not isinstance(meta["autograd_rng"], dict):
        raise ValueError("malformed random generator entry")
    loop = meta["loop"]
    if not isinstance(loop, dict) or not all(
        isinstance(loop.get(k, 0), t) and not isinstance(loop.get(k, 0), bool)
        for k, t in (
            ("batch_size", int),
            ("samples", int),
            ("loss_sum", (int, float)),
            ("loss_count", int),
        )
    ):
        raise ValueError(f"malformed loop entry {loop!r}")


def _generator(path, state):
    """A numpy Generator in the saved ``bit_generator.state``."""
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise CheckpointError(
            f"{os.fspath(path)}: unknown bit generator {name!r} for the "
            f"shuffling generator (numpy has {', '.join(_BIT_GENERATORS)})"
        )
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{os.fspath(path)}: malformed {name} state: {e}") from e
    return np.random.Generator(bit_generator)


def _restore(path, ck, model, optimizer, scheduler, rng=None):
    """Check that checkpoint ``ck`` fits everything, then load it (and set ``rng`` in place)."""

    def fail(what):
        raise CheckpointError(f"{os.fspath(path)}: {what}")

    ours = model.state_dict()
    missing = [k for k in ours if k not in ck["model"]]
    unexpected = [k for k in ck["model"] if k not in ours]
    if missing or unexpected:
        fail(
            f"the model does not match the checkpoint's: missing keys {missing}, unexpected "
            f"keys {unexpected}"
        )
    bad = [
        f"{k}: checkpoint {v.shape} {v.dtype}, model {ours[k].shape}"
        for k, v in ck["model"].items()
        if v.shape != ours[k].shape or v.dtype.kind not in "biufc"
    ]
    if bad:
        fail("the model does not match the checkpoint's: " + "; ".join(bad))
    saved_opt, saved_sched = ck["optimizer"], ck["scheduler"]
    if saved_opt["type"] != type(optimizer).__name__:
        fail(
            f"the checkpoint holds a {saved_opt['type']} optimizer, given "
            f"{type(optimizer).__name__}"
        )
    if (saved_sched is None) != (scheduler is None) or (
        scheduler is not None and saved_sched["type"] != type(scheduler).__name__
    ):
        fail(
            f"the checkpoint holds {saved_sched and saved_sched['type']} as the schedule, "
            f"given {scheduler and type(scheduler).__name__}"
        )
    for what, obj, state in (
        ("optimizer", optimizer, saved_opt),
        ("schedule", scheduler, saved_sched and saved_sched["state"]),
    ):
        try:
            if obj is not None:
                obj._checked_state_dict(state)
        except ValueError as e:
            fail(f"the {what} does not match the checkpoint's: {e}")
    autograd_gen = autograd.default_generator()
    _generator(path, ck["rng"])  # checks the state
    try:
        probe = type(autograd_gen.bit_generator)()
        probe.state = ck["autograd_rng"]
    except (ValueError, TypeError, KeyError) as e:
        fail(
            f"fastconv's random generator state does not fit its "
            f"{type(autograd_gen.bit_generator).__name__}: {e}"
        )
    if rng is not None and type(rng.bit_generator).__name__ != ck["rng"]["bit_generator"]:
        fail(
            f"the checkpoint's shuffling generator is a {ck['rng']['bit_generator']}, rng's a "
            f"{type(rng.bit_generator).__name__}"
        )

    model.load_state_dict(ck["model"])  # all checked above: none of these raises
    optimizer.load_state_dict(saved_opt)
    if scheduler is not None:
        scheduler.load_state_dict(saved_sched["state"])
    autograd_gen.bit_generator.state = ck["autograd_rng"]
    if rng is not None:
        rng.bit_generator.state = ck["rng"]


def _resume(path, model, optimizer, scheduler, rng, batch_size, samples):
    """fit's resume: load the checkpoint at path; returns (epochs done, step, running loss)."""
    ck = _read(path)
    loop, n_steps = ck["loop"], _num_batches(samples, batch_size)
    saved = {k: loop[k] for k in ("batch_size", "samples") if k in loop}
    if saved and saved != {"batch_size": batch_size, "samples": samples}:
        raise CheckpointError(
            f"{os.fspath(path)}: written by a run of batch_size "
            f"{saved.get('batch_size')} on {saved.get('samples')} samples; "
            f"resuming with batch_size {batch_size} on {samples} samples would "
            f"not continue it"
        )
    if ck["step"] >= max(n_steps, 1):
        raise CheckpointError(
            f"{os.fspath(path)}: step {ck['step']} is past the end of an epoch "
            f"of {n_steps} minibatches"
        )
    _restore(path, ck, model, optimizer, scheduler, rng)
    running = float(loop.get("loss_sum", 0.0)), int(loop.get("loss_count", 0))
    return ck["epoch"], ck["step"], running

"""The ``fastconv`` command. Subcommands register themselves in ``main``'s parser."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ._cliargs import (
    fail,
    float_at_least,
    input_file,
    int_at_least,
    output_file,
    plot_file,
    thread_count,
)

__all__ = ["main"]


def _add_train(subparsers):
    from .models import MODELS

    p = subparsers.add_parser(
        "train",
        help="train a model on scikit-learn's handwritten digits or your own images",
        description="Train a model of fastconv.models (LeNet-5 by default) on scikit-learn's "
        "bundled 8x8 digits (enlarged to 32x32, fixed train/test split) or on the "
        "images of an .npz file, report the held-out accuracy after every epoch (on "
        "stderr) and at the end. Images are resized (bilinear) to a size the model "
        "takes, and grey images repeated to 3 channels for the 3-channel models.",
    )
    p.add_argument(
        "--model",
        default="lenet5",
        choices=list(MODELS),
        metavar="NAME",
        help=f"model to train: {', '.join(MODELS)} (default lenet5)",
    )
    p.add_argument(
        "--data",
        metavar="FILE.npz",
        type=input_file,
        help="train on these images: arrays x (N,C,H,W or N,H,W) and y (integer labels "
        "from 0), optionally x_val and y_val (else 10%% of x is held out, always "
        "the same samples); classes: the largest label + 1 (default: the digits)",
    )
    p.add_argument(
        "--size",
        metavar="S",
        type=int_at_least(1),
        default=None,
        help="resize the images to SxS (default: their size when the model takes it, "
        "else the smallest size it takes, or its native size for a fixed-size one)",
    )
    p.add_argument(
        "--c3-table",
        action="store_true",
        help="connect LeNet-5's C3 by LeCun's partial table (1,516 parameters)",
    )
    p.add_argument("--epochs", type=int_at_least(0), default=10)
    p.add_argument("--batch-size", type=int_at_least(1), default=16)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument(
        "--lr",
        type=float_at_least(0),
        default=None,
        help="learning rate (default 0.05 for sgd, 0.002 for adam)",
    )
    p.add_argument("--momentum", type=float_at_least(0), default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float_at_least(0), default=5e-4)
    p.add_argument(
        "--schedule",
        choices=["cosine", "step", "none"],
        default="cosine",
        help="learning-rate schedule over the epochs",
    )
    p.add_argument(
        "--seed", type=int_at_least(0), default=0, help="seeds initialisation and shuffling"
    )
    p.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="kernel threads (fastconv.set_num_threads)",
    )
    p.add_argument(
        "--save",
        metavar="PATH",
        type=output_file,
        help="write the trained weights to PATH (.npz format, the name as given)",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--load", metavar="PATH", type=input_file, help="start from these weights (.npz)"
    )
    start.add_argument(
        "--resume",
        metavar="PATH",
        type=input_file,
        help="continue the run that wrote checkpoint PATH (weights, optimizer, "
        "schedule, position and random state) up to --epochs",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        type=output_file,
        help="write a checkpoint to PATH at each epoch's end (replaced each time)",
    )
    p.add_argument(
        "--checkpoint-every",
        metavar="N",
        type=int_at_least(1),
        default=None,
        help="also write the checkpoint every N optimizer steps (needs --checkpoint)",
    )
    p.add_argument(
        "--log",
        metavar="FILE.json",
        type=output_file,
        help="write each epoch's training loss, held-out accuracy, learning rate and "
        "time as JSON, rewritten after every epoch",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        type=plot_file,
        help="draw the loss and accuracy curves (matplotlib; format from the extension)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (there are none without tqdm either)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over the MPI ranks this runs on (mpiexec -n P fastconv "
        "train --distributed ...): --batch-size is the global batch, split over "
        "the ranks, --lr is for it, and losses and accuracies are over all ranks; "
        "rank 0 prints and writes every file (needs fastconv[mpi])",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="with --distributed: BatchNorm statistics over the global batch "
        "(SyncBatchNorm), so P ranks train as one process would",
    )
    p.set_defaults(func=_run_train)


def _run_train(args):
    if args.threads is not None:  # for this command only (main() may run inside a program)
        from ._threads import threads

        with threads(args.threads):
            return _train(args)
    return _train(args)


def _progress_bars(disabled):
    """A tqdm factory for fit's ``progress``, or None (asked for none, or tqdm not installed)."""
    if disabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return lambda it, total, desc: tqdm(it, total=total, desc=desc, leave=False, file=sys.stderr)


def _fit_to_model(prog, args, spec, x, x_val):
    """The images resized and given the channels the model takes; (x, x_val, note)."""
    from .data import match_channels, resize

    c, h, w = x.shape[1:]
    notes = []
    if args.model != "lenet5" and c != spec.channels:  # LeNet-5 is built for the data's channels
        try:
            x, x_val = (match_channels(a, spec.channels) for a in (x, x_val))
        except ValueError as e:
            fail(prog, "--data", args.data, e)
        notes.append(f"grey repeated to {spec.channels} channels")
    size = (args.size, args.size) if args.size else (spec.size_for(h), spec.size_for(w))
    if size != (h, w):
        x, x_val = resize(x, size), resize(x_val, size)
        notes.insert(0, f"resized from {h}x{w}, bilinear")
    return x, x_val, f" ({'; '.join(notes)})" if notes else ""


def _train(args):
    import numpy as np

    from . import __version__, autograd, data, models, optim
    from ._model_inputs import model_input
    from ._trainlog import MetricsLog, plot_curves
    from .train import CheckpointError, evaluate, fit, load_checkpoint, load_weights, save_weights

    prog = "fastconv train"
    ddp = None
    if args.sync_bn and not args.distributed:
        sys.exit(f"{prog}: error: argument --sync-bn: needs --distributed")
    if args.distributed:
        from . import distributed as dist

        try:
            dist.init()
        except ImportError as e:
            sys.exit(f"{prog}: error: argument --distributed: {e}")
        if args.batch_size % dist.world_size():
            sys.exit(
                f"{prog}: error: argument --batch-size: the global batch {args.batch_size} "
                f"does not split evenly over {dist.world_size()} ranks"
            )
    main_rank = not args.distributed or dist.rank() == 0
    say = print if main_rank else (lambda *a, **k: None)  # rank 0 speaks for the run
    if args.checkpoint_every is not None and args.checkpoint is None:
        sys.exit(f"{prog}: error: argument --checkpoint-every: needs --checkpoint PATH")
    if args.c3_table and args.model != "lenet5":
        sys.exit(f"{prog}: error: argument --c3-table: only LeNet-5 has it, not {args.model}")
    spec = model_input(args.model)
    if args.size is not None and not spec.fits(args.size):
        sys.exit(
            f"{prog}: error: argument --size: {args.model} takes {spec.describe()}, got {args.size}"
        )
    kwargs = {"c3_table": args.c3_table} if args.model == "lenet5" else {}
    if args.model == "inception_v3":  # its aux head needs 299x299 and makes the forward a pair
        kwargs["aux_logits"] = False
    if args.data:  # first: the classes (and LeNet-5's channels) come from the file
        try:
            x, y, x_val, y_val, classes = data.load_npz(args.data)
        except (OSError, data.DataError) as e:
            fail(prog, "--data", args.data, e)
        if args.model == "lenet5":
            kwargs["in_channels"] = x.shape[1]
        source, heldout = os.path.basename(args.data), "validation"
    else:
        classes, source, heldout = 10, "digits", "test"
    autograd.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = models.get_model(args.model, num_classes=classes, **kwargs)
    if args.load:  # before the digits are loaded: a bad file fails at once
        try:
            load_weights(model, args.load)
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(prog, "--load", args.load, e)
    lr = args.lr if args.lr is not None else {"sgd": 0.05, "adam": 2e-3}[args.optimizer]
    if args.optimizer == "sgd":
        opt = optim.SGD(
            model.parameters(), lr=lr, momentum=args.momentum, weight_decay=args.weight_decay
        )
    else:
        opt = optim.Adam(model.parameters(), lr=lr, weight_decay=args.weight_decay)
    scheduler = {
        "cosine": lambda: optim.CosineAnnealingLR(opt, T_max=max(args.epochs, 1)),
        "step": lambda: optim.StepLR(opt, step_size=max(args.epochs // 3, 1), gamma=0.3),
        "none": lambda: None,
    }[args.schedule]()
    done = 0
    if args.resume:  # likewise (fit loads it again, with the data, and goes on from there)
        try:
            done = load_checkpoint(args.resume, model, opt, scheduler)[0]
        except (OSError, ValueError) as e:
            fail(prog, "--resume", args.resume, e)
    if not args.data:
        try:
            x, y, x_val, y_val = data.load_digits()
        except ImportError as e:
            sys.exit(f"{prog}: error: {e} (or train on your own images: --data FILE.npz)")
    x, x_val, note = _fit_to_model(prog, args, spec, x, x_val)
    if args.distributed:  # after --load/--resume: every rank starts from rank 0's state anyway
        if args.sync_bn:
            model = dist.convert_sync_batchnorm(model)
        ddp = dist.DistributedDataParallel(model)
    c, h, w = x.shape[1:]
    eval_batch = max(args.batch_size, min(256, 256 * 32 * 32 // (h * w)))

    log = MetricsLog(
        args.log,
        {
            "fastconv": __version__,
            "model": args.model,
            "data": args.data or "digits",
            "input": [c, h, w],
            "classes": classes,
            "train_samples": len(x),
            "heldout": heldout,
            "heldout_samples": len(x_val),
            "planned_epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr": lr,
            "schedule": args.schedule,
            "seed": args.seed,
        },
    )
    if args.resume:
        log.keep_earlier(done)
    _write_log(prog, args, log, main_rank)  # an unwritable --log fails before any training
    say(
        f"{args.model}: {model.num_parameters():,} parameters; {source}: {len(x)} train, "
        f"{len(x_val)} {heldout} images of {h}x{w}"
        + (f", {c} channels" if c > 1 else "")
        + note
        + (f"; {dist.world_size()} ranks" if args.distributed else ""),
        flush=True,
    )
    clock = {"start": time.perf_counter(), "lr": opt.param_groups[0]["lr"], "acc": None}
    clock["last"] = clock["start"]

    def held_out_accuracy():
        """The held-out accuracy; with --distributed each rank counts its slice of the held-out
        images and the counts are summed (the same figure, computed once)."""
        if not args.distributed or dist.world_size() == 1:
            return evaluate(model, x_val, y_val, eval_batch)
        r, p = dist.rank(), dist.world_size()
        lo, hi = r * len(x_val) // p, (r + 1) * len(x_val) // p
        mine = evaluate(model, x_val[lo:hi], y_val[lo:hi], eval_batch) * (hi - lo) if hi > lo else 0
        correct = dist.all_reduce(np.array([round(mine)], np.float64))
        return int(correct[0]) / len(x_val)

    def epoch_end(epoch, loss):
        accuracy = held_out_accuracy()
        now = time.perf_counter()
        log.add(
            epoch=epoch,
            train_loss=loss,
            val_accuracy=accuracy,
            lr=clock["lr"],
            time_s=round(now - clock["last"], 3),
            elapsed_s=round(now - clock["start"], 3),
        )
        _write_log(prog, args, log, main_rank)
        say(
            f"epoch {epoch}/{args.epochs}: {heldout} accuracy {accuracy:.4f} (lr "
            f"{clock['lr']:.4g}, {now - clock['last']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        clock.update(last=time.perf_counter(), lr=opt.param_groups[0]["lr"], acc=accuracy)

    try:
        losses = fit(
            model,
            opt,
            (x, y, x_val, y_val),
            args.epochs,
            args.batch_size,
            rng,
            scheduler,
            _progress_bars(args.no_progress or not main_rank),
            log=lambda s: say(s, flush=True),
            checkpoint=args.checkpoint,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            on_epoch_end=epoch_end,
            data_parallel=ddp,
        )
    except CheckpointError as e:  # --resume from another batch size, say
        fail(prog, "--resume", args.resume, e)
    except OSError as e:  # writing the checkpoint (a full disk): the one there before is unchanged
        if args.checkpoint is None or getattr(e, "filename", None) == args.resume:
            raise
        fail(prog, "--checkpoint", args.checkpoint, e)
    if losses:
        say(f"trained in {time.perf_counter() - clock['start']:.1f} s", flush=True)
    if args.save and main_rank:
        try:
            save_weights(model, args.save)
        except OSError as e:  # a full disk, say: the file there before is unchanged
            fail(prog, "--save", args.save, e)
        say(f"saved weights to {args.save}")
    accuracy = clock["acc"] if losses else held_out_accuracy()
    log.info[f"{heldout}_accuracy"] = accuracy
    _write_log(prog, args, log, main_rank)
    if args.plot and main_rank:
        try:
            plot_curves(log, args.plot, f"fastconv train --model {args.model} ({source})")
        except OSError as e:
            fail(prog, "--plot", args.plot, e)
        say(f"plot written to {args.plot}")
    say(f"{heldout} accuracy: {accuracy:.4f}")
    return 0


def _write_log(prog, args, log, main_rank=True):
    if not main_rank:
        return
    try:
        log.write()
    except OSError as e:  # a full disk, say: the file there before is unchanged
        fail(prog, "--log", args.log, e)


def _add_bench(subparsers):
    # Listed for `fastconv --help` only: main() hands `fastconv bench ...` to bench.main, which
    # parses its own options.
    subparsers.add_parser(
        "bench",
        add_help=False,
        help="convnet-benchmarks layers, your own (bench shapes --shape) and whole models "
        "(bench model NAME) next to PyTorch CPU (fastconv bench --help)",
    )


def _add_info(subparsers):
    p = subparsers.add_parser(
        "info",
        help="what fastconv runs on here: ISA, threads, OpenMP, BLAS, caches, autotuning",
        description="Print fastconv's version and what it runs on in this process: the "
        "micro-kernel ISA in use and the ones the CPU has (FASTCONV_ISA), threads, "
        "the OpenMP runtime loaded, the BLAS library and its threading, cache sizes "
        "and the autotuning mode.",
    )
    p.add_argument("--json", action="store_true", help="print the same as one JSON object")
    p.set_defaults(func=_run_info)


def _run_info(args):
    from . import _sysinfo

    return _sysinfo.main(json_output=args.json)


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(prog="fastconv", description="fastconv command line")
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(subparsers)
    _add_bench(subparsers)
    _add_info(subparsers)
    from .visualize import add_parser as _add_visualize  # fastconv visualize (deconvnet grid)

    _add_visualize(subparsers)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # bench parses its own options (fastconv bench --help)
        from . import bench

        return bench.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

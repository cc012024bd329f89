"""The ``fastconv`` command. Subcommands register themselves in ``main``'s parser."""
from __future__ import annotations

import argparse
import sys
import time

from ._cliargs import fail, float_at_least, input_file, int_at_least, output_file, thread_count

__all__ = ["main"]


def _add_train(subparsers):
    p = subparsers.add_parser(
        "train", help="train a model on scikit-learn's handwritten digits",
        description="Train LeNet-5 on scikit-learn's bundled 8x8 digits (enlarged to 32x32, "
                    "fixed train/test split) and report the test accuracy.")
    p.add_argument("--model", default="lenet5", choices=["lenet5"], help="model to train")
    p.add_argument("--c3-table", action="store_true",
                   help="connect LeNet-5's C3 by LeCun's partial table (1,516 parameters)")
    p.add_argument("--epochs", type=int_at_least(0), default=10)
    p.add_argument("--batch-size", type=int_at_least(1), default=16)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float_at_least(0), default=None,
                   help="learning rate (default 0.05 for sgd, 0.002 for adam)")
    p.add_argument("--momentum", type=float_at_least(0), default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float_at_least(0), default=5e-4)
    p.add_argument("--schedule", choices=["cosine", "step", "none"], default="cosine",
                   help="learning-rate schedule over the epochs")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seeds initialisation and shuffling")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="kernel threads (fastconv.set_num_threads)")
    p.add_argument("--save", metavar="PATH", type=output_file,
                   help="write the trained weights to PATH (.npz format, the name as given)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--load", metavar="PATH", type=input_file,
                       help="start from these weights (.npz)")
    start.add_argument("--resume", metavar="PATH", type=input_file,
                       help="continue the run that wrote checkpoint PATH (weights, optimizer, "
                            "schedule, position and random state) up to --epochs")
    p.add_argument("--checkpoint", metavar="PATH", type=output_file,
                   help="write a checkpoint to PATH at each epoch's end (replaced each time)")
    p.add_argument("--checkpoint-every", metavar="N", type=int_at_least(1), default=None,
                   help="also write the checkpoint every N optimizer steps (needs --checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_train)


def _run_train(args):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - depends on the environment
        sys.exit("fastconv train needs tqdm and scikit-learn: pip install 'fastconv[train]'")
    if args.threads is not None:  # for this command only (main() may run inside a program)
        from ._threads import threads
        with threads(args.threads):
            return _train(args, tqdm)
    return _train(args, tqdm)


def _train(args, tqdm):
    import numpy as np

    from . import autograd, models, optim
    from .data import load_digits
    from .train import CheckpointError, evaluate, fit, load_checkpoint, load_weights, save_weights

    prog = "fastconv train"
    if args.checkpoint_every is not None and args.checkpoint is None:
        sys.exit(f"{prog}: error: argument --checkpoint-every: needs --checkpoint PATH")
    autograd.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = models.get_model(args.model, num_classes=10, c3_table=args.c3_table)
    if args.load:  # before the data: a bad file fails at once
        try:
            load_weights(model, args.load)
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(prog, "--load", args.load, e)
    lr = args.lr if args.lr is not None else {"sgd": 0.05, "adam": 2e-3}[args.optimizer]
    if args.optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=lr, momentum=args.momentum,
                        weight_decay=args.weight_decay)
    else:
        opt = optim.Adam(model.parameters(), lr=lr, weight_decay=args.weight_decay)
    scheduler = {"cosine": lambda: optim.CosineAnnealingLR(opt, T_max=max(args.epochs, 1)),
                 "step": lambda: optim.StepLR(opt, step_size=max(args.epochs // 3, 1), gamma=0.3),
                 "none": lambda: None}[args.schedule]()
    if args.resume:  # likewise (fit loads it again, with the data, and goes on from there)
        try:
            load_checkpoint(args.resume, model, opt, scheduler)
        except (OSError, ValueError) as e:
            fail(prog, "--resume", args.resume, e)
    data = load_digits()
    progress = None if args.no_progress else (
        lambda it, total, desc: tqdm(it, total=total, desc=desc, leave=False, file=sys.stderr))

    print(f"{args.model}: {model.num_parameters():,} parameters; digits: {len(data[0])} train, "
          f"{len(data[2])} test images of 32x32", flush=True)
    start = time.perf_counter()
    try:
        losses = fit(model, opt, data, args.epochs, args.batch_size, rng, scheduler, progress,
                     log=lambda s: print(s, flush=True), checkpoint=args.checkpoint,
                     checkpoint_every=args.checkpoint_every, resume=args.resume)
    except CheckpointError as e:  # --resume from another batch size, say
        fail(prog, "--resume", args.resume, e)
    except OSError as e:  # writing the checkpoint (a full disk): the one there before is unchanged
        if args.checkpoint is None or getattr(e, "filename", None) == args.resume:
            raise
        fail(prog, "--checkpoint", args.checkpoint, e)
    if losses:
        print(f"trained in {time.perf_counter() - start:.1f} s", flush=True)
    if args.save:
        try:
            save_weights(model, args.save)
        except OSError as e:  # a full disk, say: the file there before is unchanged
            fail(prog, "--save", args.save, e)
        print(f"saved weights to {args.save}")
    print(f"test accuracy: {evaluate(model, data[2], data[3]):.4f}")
    return 0


def _add_bench(subparsers):
    # Listed for `fastconv --help` only: main() hands `fastconv bench ...` to bench.main, which
    # parses its own options.
    subparsers.add_parser(
        "bench", add_help=False,
        help="convnet-benchmarks layers next to PyTorch CPU (fastconv bench --help)")


def build_parser():
    parser = argparse.ArgumentParser(prog="fastconv", description="fastconv command line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(subparsers)
    _add_bench(subparsers)
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

"""argparse ``type=`` checks shared by ``fastconv train`` and ``fastconv bench``.

Every option is checked while the command line is parsed, before any data is loaded or any
benchmark runs: a bad value exits with status 2 and argparse's one-line message naming the
option (``argument --lr: must be a finite number >= 0, got '-1'``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from ._checks import MAX_THREADS, _thread_count

__all__ = [
    "int_at_least",
    "int_list",
    "float_at_least",
    "thread_count",
    "comma_list",
    "input_file",
    "output_file",
    "plot_file",
    "add_run_options",
    "fail",
]


def int_at_least(minimum):
    """An int >= minimum (``int_at_least(1)`` for batch sizes, 0 for epochs)."""

    def check(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return check


def int_list(minimum):
    """A comma-separated list of ints >= minimum, at least one, repeats dropped ("1,8": [1, 8])."""

    def check(text):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(
                f"must be a comma list of integers >= {minimum}, got {text!r}"
            )
        return list(dict.fromkeys(values))

    return check


def float_at_least(minimum):
    """A finite float >= minimum (learning rates, momentum, weight decay)."""

    def check(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= minimum):
            raise argparse.ArgumentTypeError(
                f"must be a finite number >= {minimum:g}, got {text!r}"
            )
        return value

    return check


def thread_count(text):
    """Kernel threads, in the range fastconv.set_num_threads accepts (_checks._thread_count)."""
    try:
        return _thread_count(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 1 to {MAX_THREADS}, got {text!r}"
        ) from None


def comma_list(allowed):
    """A comma-separated list of names from `allowed` ('' for none) -> list of names."""

    def check(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, unknown))} (choose from {', '.join(allowed)})"
            )
        return names

    return check


def input_file(text):
    """An existing, readable regular file."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text}: not a regular file")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable")
    return text


def output_file(text):
    """A path that can be written: not a directory, in an existing, writable directory."""
    if not text:
        raise argparse.ArgumentTypeError("the file name is empty")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: is a directory")
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"{text}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: directory {directory} is not writable")
    return text


def plot_file(text):
    """An output_file whose format (its extension; none means png) matplotlib can write."""
    text = output_file(text)
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise argparse.ArgumentTypeError(
            "needs matplotlib: pip install 'fastconv[bench]'"
        ) from None
    ext = os.path.splitext(text)[1][1:].lower() or "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext not in formats:
        raise argparse.ArgumentTypeError(
            f"{text}: matplotlib cannot write .{ext} (formats: {', '.join(sorted(formats))})"
        )
    return text


BEST_OF_ROUNDS = "interleaved rounds; each contender's best is reported (default 3)"


def add_run_options(
    ap, compare, compare_default, json_what, plot_what, repeat_help="median of N runs (default 3)"
):
    """The options every ``fastconv bench`` command takes, declared once: --threads, --repeat
    (`repeat_help`), --compare (peers out of `compare`), --json (writes `json_what`), --plot
    (`plot_what`, drawn by matplotlib) and --no-progress."""
    ap.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        help="threads for fastconv and the peers (default: fastconv.get_num_threads())",
    )
    ap.add_argument("--repeat", type=int_at_least(1), default=3, help=repeat_help)
    ap.add_argument(
        "--compare",
        type=comma_list(compare),
        default=compare_default,
        help=f"comma list of {', '.join(compare)} (default {compare_default}; '' for none)",
    )
    ap.add_argument(
        "--json",
        metavar="FILE",
        type=output_file,
        help=f"write {json_what} and the run facts as JSON",
    )
    ap.add_argument(
        "--plot",
        metavar="FILE.png",
        type=plot_file,
        help=f"{plot_what} (matplotlib; the format from the extension)",
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def fail(prog, option, path, error):
    """Exit (status 1) with one line naming the option and the file, for a file that passed the
    checks above but could not be read or written after all (corrupt, or the disk full)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else error  # str() is a repr
    text = " ".join(str(text).split())
    sys.exit(f"{prog}: error: argument {option}: " + (text if path in text else f"{path}: {text}"))


def add_net_options(ap, models, nets, batches, size=False):
    """--nets (a comma list of `models`, default `nets`), --batches (default `batches`) and,
    with `size`, --size: the network options of the whole-network bench commands."""
    ap.add_argument(
        "--nets",
        type=comma_list(tuple(models)),
        default=list(nets),
        help=f"comma list of models (default {','.join(nets)})",
    )
    ap.add_argument(
        "--batches",
        type=int_list(1),
        default=list(batches),
        metavar="N[,N]",
        help=f"batch sizes (default {','.join(map(str, batches))})",
    )
    if size:
        ap.add_argument(
            "--size",
            type=int_at_least(1),
            default=None,
            help="image size (default: the size each network was published for)",
        )

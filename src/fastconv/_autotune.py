"""Measured algorithm choice: ``fastconv.set_autotune("off" | "on" | "persist")``.

With autotuning on, ``algo="auto"`` times the algorithms that can run a call the first time it
meets the call's key (shape, direction, dtype, thread count, ISA) and keeps the fastest for the
rest of the process, as cuDNN's benchmark mode does (the timing is done in the C library; see
``fc_set_autotune`` in ``fastconv/fastconv.h``). ``"persist"`` also keeps the choices between
processes, as FFTW's wisdom does: in ``$XDG_CACHE_HOME/fastconv/`` (``~/.cache/fastconv/``), one
file per machine (CPU model, ISA and fastconv version in its first line), read when persisting
starts and written, atomically, when the process exits or :func:`save_autotune` is called. A
file that is corrupt or was written for another machine is ignored with a warning.

Off by default: the heuristic picks the same algorithm in every process, so results are
bitwise reproducible; measured choices may differ between processes (timing noise) and with
them the rounding of results, and the first call of every shape pays for the measurement.
``FASTCONV_AUTOTUNE=off|on|persist`` sets the mode at import.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import warnings

from . import _core
from ._io import atomic_write
from ._typing import PathLike

__all__ = [
    "set_autotune",
    "get_autotune",
    "clear_autotune",
    "export_autotune",
    "import_autotune",
    "save_autotune",
    "autotune_cache_path",
]

_MODES = ("off", "on", "persist")
_FORMAT = "fastconv-autotune 1"
_mode = "off"
_exit_hook = False


def _cpu_model():
    from .functional import hardware

    hw = hardware()
    return hw["model"] or hw["vendor"] or "unknown CPU"


def _machine_line():
    from . import __version__

    return f"# {_FORMAT}\t{__version__}\t{_core.isa()}\t{_cpu_model()}"


def autotune_cache_path() -> str:
    """The file ``"persist"`` uses on this machine (CPU model, ISA and fastconv version)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha1(_machine_line().encode()).hexdigest()[:12]
    return os.path.join(base, "fastconv", f"autotune-{digest}.txt")


def set_autotune(mode: str) -> None:
    """``"off"`` (the default: the deterministic heuristic), ``"on"`` (measure each new shape
    once per process) or ``"persist"`` (also load and save the measured choices per machine)."""
    global _mode, _exit_hook
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    _core.set_autotune(0 if mode == "off" else 1)
    if mode == "persist":
        _load(autotune_cache_path())
        if not _exit_hook:
            atexit.register(_save_at_exit)
            _exit_hook = True
    _mode = mode


def get_autotune() -> str:
    """The current mode: ``"off"``, ``"on"`` or ``"persist"``."""
    return _mode


def clear_autotune() -> None:
    """Forget every measured choice in this process (the persisted file is left alone)."""
    _core.autotune_clear()


def export_autotune(path: PathLike | None = None) -> str:
    """The measured choices as text (a header naming this machine, then one line per key);
    written atomically to ``path`` when given."""
    text = _machine_line() + "\n" + _core.autotune_export()
    if path is not None:
        with atomic_write(path, binary=False) as f:
            f.write(text)
    return text


def import_autotune(source: str) -> int:
    """Add measured choices from a file path or from text written by :func:`export_autotune`;
    returns how many. Choices measured on another machine (header) raise ValueError."""
    text = source
    if "\n" not in source and os.path.exists(source):
        with open(source, encoding="utf-8") as f:
            text = f.read()
    first = text.split("\n", 1)[0]
    if first.startswith(f"# {_FORMAT}") and first != _machine_line():
        raise ValueError(
            f"these choices were measured elsewhere ({first[2:]!r}); this machine "
            f"is {_machine_line()[2:]!r}"
        )
    return _core.autotune_import(text)


def save_autotune(path: PathLike | None = None) -> PathLike:
    """Write the measured choices to ``path`` (default: :func:`autotune_cache_path`)."""
    path = path or autotune_cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    export_autotune(path)
    return path


def _load(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as e:
        warnings.warn(f"fastconv: ignoring the autotune file {path}: {e}", RuntimeWarning, 2)
        return
    if text.split("\n", 1)[0] != _machine_line():
        warnings.warn(
            f"fastconv: ignoring the autotune file {path}: written for another machine "
            f"or fastconv version",
            RuntimeWarning,
            2,
        )
        return
    try:
        _core.autotune_import(text)
    except ValueError as e:
        warnings.warn(
            f"fastconv: ignoring the corrupt autotune file {path}: {e}", RuntimeWarning, 2
        )


def _save_at_exit():
    if _mode != "persist" or not _core.autotune_size():
        return
    try:
        save_autotune()
    except OSError as e:  # a read-only home or a full disk must not fail the program's exit
        warnings.warn(
            f"fastconv: could not save the autotune file: {e}", RuntimeWarning, stacklevel=2
        )


def _from_env():
    raw = os.environ.get("FASTCONV_AUTOTUNE", "").strip().lower()
    if raw in ("", "0", "off"):
        return
    mode = "on" if raw == "1" else raw
    if mode not in _MODES:
        warnings.warn(
            f"FASTCONV_AUTOTUNE={raw!r} is not one of off, on, persist; autotuning stays off",
            RuntimeWarning,
            stacklevel=2,
        )
        _core.set_autotune(0)
        return
    set_autotune(mode)

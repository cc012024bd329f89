"""Files written whole or not at all (checkpoints, benchmark results and plots), and .npz
archives read back with one error for anything unreadable.

:func:`atomic_write` hands out a temporary file beside the target; only when everything was
written, flushed and synced does it take the target's name, in one ``os.replace``. A failure
part-way (a full disk, a file-size limit, an exception in the writer) removes the temporary file
and leaves whatever was at the target before untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import zipfile
import zlib

import numpy as np

__all__ = ["atomic_write", "read_npz"]


def _create_beside(path, binary):
    """A new, exclusively created file in path's directory; returns (file object, its name).
    Created with mode 0o666 like open(), so the umask applies as it would to path itself."""
    directory, base = os.path.split(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        return os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8"), tmp
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_write(path, binary=True):
    """``with atomic_write(path) as f: ...`` writes ``path`` exactly (no suffix added), all at
    once: readers see the old file or the complete new one, never a part. An existing file keeps
    its permission bits; a symbolic link is written through (its target is replaced)."""
    path = os.path.realpath(os.fspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    f, tmp = _create_beside(path, binary)
    try:
        with f:
            if mode is not None:
                os.chmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_figure(fig, path, dpi=100) -> None:
    """Write a matplotlib figure to exactly ``path`` with :func:`atomic_write`, in the format its
    extension names (PNG without one), and close the figure whatever happens."""
    import matplotlib.pyplot as plt

    fmt = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)


def read_npz(path, what, error=ValueError):
    """The arrays of the .npz archive at path as a dict (no pickles). A file that is not a
    complete .npz (truncated, corrupt, a single .npy) raises ``error`` naming the file and
    ``what`` it should have been; a missing or unreadable file raises the OSError as it is."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive of named arrays")
        with loaded as f:
            return {k: f[k] for k in f.files}
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise error(
            f"{os.fspath(path)} is not a readable {what} (truncated or corrupt?): {e}"
        ) from e

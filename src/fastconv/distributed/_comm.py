"""The communicator and its collectives: MPI through mpi4py, imported only by :func:`init`."""

from __future__ import annotations

import pickle
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = [
    "init",
    "is_initialized",
    "get_comm",
    "rank",
    "world_size",
    "barrier",
    "broadcast",
    "broadcast_object",
    "all_reduce",
    "is_main_process",
    "print0",
    "abort",
]

_global = {"comm": None, "MPI": None}


def _mpi():
    if _global["MPI"] is None:
        try:
            from mpi4py import MPI
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "fastconv.distributed needs mpi4py and an MPI library: "
                "pip install 'fastconv[mpi]' (README, Scaling out)"
            ) from e
        _global["MPI"] = MPI
    return _global["MPI"]


def init(comm: MPI.Comm | None = None, abort_on_error: bool = True) -> MPI.Comm:
    """Start data-parallel work on ``comm`` (an mpi4py communicator; MPI.COMM_WORLD by default).

    With ``abort_on_error`` (the default) an exception that reaches the top of any rank prints
    the rank and the traceback and calls ``MPI_Abort``, so the other ranks end too instead of
    waiting forever in a collective. Returns the communicator. Calling it again replaces it.
    """
    MPI = _mpi()
    if comm is None:
        comm = MPI.COMM_WORLD
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"comm must be an mpi4py communicator, got {type(comm).__name__}")
    _global["comm"] = comm
    if abort_on_error:
        _install_abort_hook()
    return comm


def is_initialized() -> bool:
    """True after :func:`init`."""
    return _global["comm"] is not None


def get_comm() -> MPI.Comm:
    """The communicator :func:`init` set; raises RuntimeError before it."""
    comm = _global["comm"]
    if comm is None:
        raise RuntimeError(
            "fastconv.distributed is not initialised: call fastconv.distributed.init()"
        )
    return comm


def rank() -> int:
    """This process's rank in the communicator (0 before :func:`init`)."""
    return 0 if _global["comm"] is None else _global["comm"].Get_rank()


def world_size() -> int:
    """The number of processes (1 before :func:`init`)."""
    return 1 if _global["comm"] is None else _global["comm"].Get_size()


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): the rank that logs and writes checkpoints."""
    return rank() == 0


def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only (every rank computes the same global figures)."""
    if is_main_process():
        print(*args, **kwargs)


def barrier() -> None:
    """Wait until every rank has called it."""
    get_comm().Barrier()


def _buffer(array, name):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(array).__name__}")
    if not (array.flags.c_contiguous and array.flags.writeable):
        raise ValueError(f"{name} must be C-contiguous and writeable (it is updated in place)")
    return array


def broadcast(array: np.ndarray, src: int = 0) -> np.ndarray:
    """Overwrite ``array`` on every rank with rank ``src``'s, in place; returns it."""
    comm = get_comm()
    _check_src(src, comm)
    comm.Bcast(_buffer(array, "array"), root=src)
    return array


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (any picklable object) on every rank."""
    comm = get_comm()
    _check_src(src, comm)
    data = pickle.dumps(obj) if comm.Get_rank() == src else None
    return pickle.loads(comm.bcast(data, root=src))


def all_reduce(array: np.ndarray, op: str = "sum") -> np.ndarray:
    """Reduce ``array`` over the ranks in place: ``op`` "sum", "mean", "max" or "min"."""
    MPI = _mpi()
    ops = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
    if op not in ops:
        raise ValueError(f"op must be one of {', '.join(map(repr, ops))}, got {op!r}")
    comm = get_comm()
    comm.Allreduce(MPI.IN_PLACE, _buffer(array, "array"), op=ops[op])
    if op == "mean":
        array /= comm.Get_size()
    return array


def on_rank0(fn, what="rank 0 failed", comm=None):
    """``fn()`` on rank 0 only (on the only process when not distributed); an error there is
    raised on every rank, rank 0's own exception there and a RuntimeError ``"{what}: ..."`` on
    the others, instead of leaving them waiting in the next collective."""
    comm = comm if comm is not None else _global["comm"]
    error = raised = None
    if comm is None or comm.Get_rank() == 0:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - handed to every rank below
            error, raised = f"{type(e).__name__}: {e}", e
    if comm is not None:
        error = comm.bcast(error, root=0)
    if raised is not None:
        raise raised
    if error is not None:
        raise RuntimeError(f"{what}: {error}")


def _check_src(src, comm):
    if not isinstance(src, (int, np.integer)) or not 0 <= src < comm.Get_size():
        raise ValueError(f"src must be a rank in [0, {comm.Get_size()}), got {src!r}")


def abort(code: int = 1) -> None:
    """End every rank of the job now (``MPI_Abort``)."""
    sys.stdout.flush()
    sys.stderr.flush()
    get_comm().Abort(code)


def _install_abort_hook():
    if getattr(sys.excepthook, "_fastconv_abort", False):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt) or _global["comm"] is None:
            return previous(kind, value, tb)
        r = _global["comm"].Get_rank()
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(
            f"fastconv.distributed: rank {r} failed; aborting all ranks\n"
            + "".join(f"[rank {r}] {line}\n" for line in text.splitlines())
        )
        sys.stderr.flush()
        # mpiexec forwards a rank's stderr on its own schedule and the abort ends the job at
        # once: in a run of the whole test suite on 2 cores the message was lost (exit status
        # non-zero, stderr empty). A moment for it to pass on; a failing job can spare it.
        time.sleep(0.5)
        _global["comm"].Abort(1)

    hook._fastconv_abort = True
    sys.excepthook = hook

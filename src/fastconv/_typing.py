"""Type aliases of fastconv's public signatures (for readers and type checkers; fastconv checks
its arguments itself, at run time, and raises ValueError/TypeError naming them)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

#: What the array arguments take: anything ``np.asarray`` takes (float32 and float64 are kept).
ArrayLike = npt.ArrayLike
#: What the ops return: a float32 or float64 array (the input's dtype).
FloatArray = npt.NDArray[np.floating[Any]]
#: Max pooling's switches: int64 flat indices h*W + w per plane.
IndexArray = npt.NDArray[np.int64]
#: A shape: a tuple (or any sequence) of ints.
Shape = Sequence[int]
#: One int for both spatial dimensions, or (h, w).
IntPair = Union[int, tuple[int, int]]
#: ``IntPair``, or ``"valid"`` / ``"same"``.
Padding = Union[int, tuple[int, int], str]
#: A backward's (grad_x, grad_w, grad_b): None where ``needs`` said False.
Grads = tuple[Optional[FloatArray], Optional[FloatArray], Optional[FloatArray]]
#: A file name.
PathLike = Union[str, os.PathLike[str]]
#: The dimensions a reduction runs over: one, several, or None for all.
Dims = Optional[Union[int, tuple[int, ...]]]

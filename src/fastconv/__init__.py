"""fastconv: fast CPU convolution kernels with a NumPy-first API."""
import scipy_openblas32 as _openblas  # noqa: F401  (preloads libscipy_openblas before _core)

from . import _core
from .functional import (
    ALGORITHMS,
    algorithms,
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    get_num_threads,
    isa,
    set_num_threads,
)

__version__ = "0.1.0"

"""fastconv: fast CPU convolution kernels with a NumPy-first API."""

import os as _os

# FASTCONV_ISA=avx2 runs the library as on an AVX2 CPU, its OpenBLAS too: OpenBLAS picks its
# kernels when it loads, from OPENBLAS_CORETYPE (Haswell's: AVX2 and FMA), unless that is set or
# the process has loaded the library already (README, "Install").
if _os.environ.get("FASTCONV_ISA") == "avx2":
    _os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

import scipy_openblas32 as _openblas  # noqa: E402, F401  (preloads libscipy_openblas before _core)

from . import _core as _core  # noqa: E402
from . import autograd, models, nn, optim
from . import functional as functional
from ._autotune import (
    autotune_cache_path,
    clear_autotune,
    export_autotune,
    get_autotune,
    import_autotune,
    save_autotune,
    set_autotune,
)
from ._memory import empty_cache, memory_cache_stats, set_memory_cache
from ._paths import get_cmake_dir, get_include, get_lib_dir
from ._threads import threads
from .autograd import (  # torch's top-level spellings
    Tensor,
    cat,
    enable_grad,
    flatten,
    inference_mode,
    no_grad,
    set_grad_enabled,
)
from .functional import *  # noqa: F403
from .functional import __all__ as _functional_all

try:
    from ._version import __version__  # written by the build from pyproject.toml's version
except ImportError:  # a source tree whose build predates _version.py: the installed metadata
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("fastconv")
    del _dist_version
__all__ = list(_functional_all) + [
    "get_include",
    "get_lib_dir",
    "get_cmake_dir",
    "threads",
    "set_memory_cache",
    "empty_cache",
    "memory_cache_stats",
    "set_autotune",
    "get_autotune",
    "clear_autotune",
    "export_autotune",
    "import_autotune",
    "save_autotune",
    "autotune_cache_path",
    "Tensor",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "inference_mode",
    "cat",
    "flatten",
    "autograd",
    "nn",
    "optim",
    "models",
]

from . import _autotune

_autotune._from_env()  # FASTCONV_AUTOTUNE (needs __version__ for the persisted file's header)

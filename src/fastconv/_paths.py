"""Where the installed kernels live, for C, C++ and Cython projects that link them.

The wheel installs, inside the ``fastconv`` package directory::

    include/fastconv/fastconv.h        the C ABI
    include/fastconv/version.h         FASTCONV_VERSION_* (fastconv.h includes it)
    lib/libfastconv.so                 the kernels (needs scipy_openblas32's library and libgomp,
                                       which a manylinux wheel bundles in ../fastconv.libs)
    lib/cmake/fastconv/                fastconvConfig.cmake: find_package(fastconv CONFIG)
    kernels.pxd                        Cython declarations: ``cimport fastconv.kernels``

The directories are found beside the compiled extension ``fastconv._core``, not beside this
file: in an editable install the Python sources stay in the source tree while the compiled
and installed files live in site-packages.
"""

from __future__ import annotations

import os

__all__ = ["get_include", "get_lib_dir", "get_cmake_dir"]


def _root():
    from . import _core  # the compiled extension sits beside include/ and lib/

    return os.path.dirname(os.path.abspath(_core.__file__))


def _existing(path, what):
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"fastconv's {what} directory {path} does not exist; "
            "is fastconv installed from a wheel or with pip install -e?"
        )
    return path


def get_include() -> str:
    """Directory to add to the include path so that ``#include <fastconv/fastconv.h>`` works."""
    return _existing(os.path.join(_root(), "include"), "include")


def get_lib_dir() -> str:
    """Directory holding libfastconv (link with ``-L<dir> -lfastconv -Wl,-rpath,<dir>``)."""
    return _existing(os.path.join(_root(), "lib"), "library")


def get_cmake_dir() -> str:
    """Directory holding fastconvConfig.cmake: pass it as ``-Dfastconv_DIR=<dir>``, then
    ``find_package(fastconv CONFIG REQUIRED)`` and link ``fastconv::fastconv``."""
    return _existing(os.path.join(_root(), "lib", "cmake", "fastconv"), "CMake package")

"""Types of fastconv._core, the pybind11 binding of the libfastconv C ABI (python/_core*.cpp).

Every entry converts, checks buffers against the descriptor (dtype, C-contiguity, writability,
element count), releases the GIL and calls the C ABI; it raises ValueError/TypeError (MemoryError
for FC_ENOMEM) on a bad argument. Output arrays are written in place. Shapes and the public API
live in fastconv.functional, fastconv.pooling and fastconv.inference; tests/test_core_stub.py
checks that this file names exactly what the module defines.
"""

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
from typing_extensions import TypeAlias  # typing's needs 3.10; stubs are never run

# Array arguments: float32 or float64 in native byte order, all of one call's dtype.
_Floats: TypeAlias = npt.NDArray[np.float32] | npt.NDArray[np.float64]
# Pooling switches (flat indices into each input plane).
_Indices: TypeAlias = npt.NDArray[np.int64]
# n c h w k kh kw stride_h stride_w pad_h pad_w dil_h dil_w groups (fc_conv2d_desc)
_ConvDesc: TypeAlias = Sequence[int]
# n c h w kh kw stride_h stride_w pad_h pad_w dil_h dil_w ceil_mode (fc_pool2d_desc)
_PoolDesc: TypeAlias = Sequence[int]
# n c h w ho wo (fc_planes2d_desc)
_PlanesDesc: TypeAlias = Sequence[int]

class _Hardware(TypedDict):
    isa: str
    best_isa: str
    l1d_bytes: int
    l2_bytes: int
    l3_bytes: int
    cores: int
    model: str
    vendor: str

class _CacheStats(TypedDict):
    held_bytes: int
    limit_bytes: int
    hits: int
    misses: int

# --- convolution (python/_core.cpp) ------------------------------------------------------------
def conv2d_output_size(desc: _ConvDesc) -> tuple[int, int]: ...
def conv2d_supports(desc: _ConvDesc, algo: int) -> bool: ...
def conv2d_why_not(desc: _ConvDesc, algo: int) -> str: ...
def conv2d_choose(desc: _ConvDesc, direction: int = 0) -> int: ...
def conv2d_choose_prepared(desc: _ConvDesc) -> int: ...
def conv2d_prepared_reuse(desc: _ConvDesc, algo: int, f64: bool = ...) -> bool: ...

class Conv2dPrepared:
    """fc_conv2d_prepare (the weights borrowed and kept alive) for a training step: forward
    (act: an fc_act applied in the output stage, 1 = ReLU), then a data gradient that reuses
    Winograd's transformed filters where it can."""

    def __init__(self, desc: _ConvDesc, algo: int, weight: _Floats) -> None: ...
    def forward(self, x: _Floats, bias: _Floats | None, out: _Floats, act: int = ...) -> None: ...
    def backward_data(self, grad_out: _Floats, grad_x: _Floats, accumulate: bool = ...) -> None: ...

def conv2d_forward(
    desc: _ConvDesc, algo: int, x: _Floats, weight: _Floats, bias: _Floats | None, out: _Floats
) -> None: ...
def conv2d_backward_data(
    desc: _ConvDesc,
    algo: int,
    grad_out: _Floats,
    weight: _Floats,
    grad_x: _Floats,
    accumulate: bool = False,
) -> None: ...
def conv2d_backward_weight(
    desc: _ConvDesc,
    algo: int,
    grad_out: _Floats,
    x: _Floats,
    grad_w: _Floats | None,
    grad_b: _Floats | None,
) -> None: ...
def conv2d_tuned(desc: _ConvDesc, direction: int, f64: bool) -> str | None: ...
def conv2d_cost(desc: _ConvDesc, algo: int, direction: int = 0) -> float | None: ...

# --- algorithms ----------------------------------------------------------------------------------
ALGO_NAMES: list[str]
ALGO_FLAG_FORWARD: int
ALGO_FLAG_BACKWARD_DATA: int
ALGO_FLAG_BACKWARD_WEIGHT: int
ALGO_FLAG_PHASE_PLANES: int
ALGO_FLAG_NONFINITE_FALLBACK: int

def algo_flags(algo: int) -> int: ...
def algo_description(algo: int) -> str: ...

# --- threads, hardware, autotuning ---------------------------------------------------------------
MAX_THREADS: int

def set_num_threads(n: int) -> None: ...
def set_local_num_threads(n: int) -> int: ...
def get_num_threads() -> int: ...
def hardware() -> _Hardware: ...
def core_round_trip(cpu_a: int, cpu_b: int, seconds: float) -> float: ...
def isa() -> str: ...
def set_autotune(mode: int) -> None: ...
def get_autotune() -> int: ...
def autotune_clear() -> None: ...
def autotune_size() -> int: ...
def autotune_export() -> str: ...
def autotune_import(text: str) -> int: ...

# --- element-wise, losses, normalization, optimizers ---------------------------------------------
def relu_forward(x: _Floats, out: _Floats) -> None: ...
def relu_backward(grad_out: _Floats, y: _Floats, grad_x: _Floats) -> None: ...
def add_inplace(acc: _Floats, x: _Floats) -> None: ...
def relu_backward_rows(grad_out: _Floats, y: _Floats, grad_x: _Floats) -> bool: ...
def softmax_cross_entropy_forward(
    x: _Floats, target: _Floats, outer: int, c: int, inner: int, loss: _Floats, lse: _Floats
) -> None: ...
def softmax_cross_entropy_backward(
    x: _Floats,
    target: _Floats,
    outer: int,
    c: int,
    inner: int,
    lse: _Floats,
    grad_out: _Floats,
    grad_x: _Floats,
) -> None: ...
def batch_norm_forward(
    x: _Floats,
    n: int,
    c: int,
    hw: int,
    weight: _Floats | None,
    bias: _Floats | None,
    residual: _Floats | None,
    act: int,
    batch_stats: bool,
    eps: float,
    mean: _Floats,
    var: _Floats | None,
    invstd: _Floats,
    out: _Floats,
    mask: npt.NDArray[np.uint8] | None = None,
    running_mean: _Floats | None = None,
    running_var: _Floats | None = None,
    momentum: float = 0.0,
) -> None: ...
def batch_norm_backward(
    grad_out: _Floats,
    x: _Floats,
    n: int,
    c: int,
    hw: int,
    y: _Floats | None,
    mean: _Floats,
    invstd: _Floats,
    weight: _Floats | None,
    batch_stats: bool,
    grad_x: _Floats | None,
    grad_residual: _Floats | None,
    grad_weight: _Floats | None,
    grad_bias: _Floats | None,
    mask: npt.NDArray[np.uint8] | None = None,
) -> None: ...
def sgd_step(
    params: list[_Floats],
    grads: list[_Floats],
    bufs: list[list[_Floats]],
    init: Sequence[int],
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None: ...
def adam_step(
    params: list[_Floats],
    grads: list[_Floats],
    states: list[list[_Floats]],
    step_size: Sequence[float],
    bias2_sqrt: Sequence[float],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
) -> None: ...

# --- pooling (python/_core_pool.cpp) -------------------------------------------------------------
def pool2d_output_size(desc: _PoolDesc) -> tuple[int, int]: ...
def max_pool2d_forward(
    desc: _PoolDesc, x: _Floats, out: _Floats, indices: _Indices | None
) -> None: ...
def max_pool2d_backward(
    desc: _PlanesDesc, grad_out: _Floats, indices: _Indices, grad_x: _Floats
) -> None: ...
def max_unpool2d_forward(
    desc: _PlanesDesc, x: _Floats, indices: _Indices, out: _Floats
) -> None: ...
def max_unpool2d_backward(
    desc: _PlanesDesc, grad_out: _Floats, indices: _Indices, grad_x: _Floats
) -> None: ...
def avg_pool2d_forward(
    desc: _PoolDesc, count_include_pad: bool, divisor_override: int, x: _Floats, out: _Floats
) -> None: ...
def avg_pool2d_backward(
    desc: _PoolDesc,
    count_include_pad: bool,
    divisor_override: int,
    grad_out: _Floats,
    grad_x: _Floats,
) -> None: ...
def adaptive_avg_pool2d_forward(desc: _PlanesDesc, x: _Floats, out: _Floats) -> None: ...
def adaptive_avg_pool2d_backward(desc: _PlanesDesc, grad_out: _Floats, grad_x: _Floats) -> None: ...

# --- the array cache, NumPy's memory handler (python/_core_memory.cpp) ----------------------------
def memory_handler_set(on: bool) -> bool: ...
def memory_cache_limit(limit_bytes: int) -> None: ...
def memory_cache_release() -> None: ...
def memory_cache_stats() -> _CacheStats: ...
def workspace_cache_info() -> tuple[int, int]: ...
def workspace_cache_release() -> int: ...

# --- inference plans (python/_core_plan.cpp) -----------------------------------------------------
class Plan:
    """A native inference plan (fastconv.inference builds and runs it)."""
    def __init__(self, f64: bool, in_elems: int, out_elems: int, arena_elems: int) -> None: ...
    def add_constant(self, array: _Floats, copy: bool = True) -> int: ...
    def add_value(self, kind: int, offset: int, elems: int) -> int: ...
    def add_step(self, step: dict[str, Any]) -> None: ...
    def run(self, x: _Floats, out: _Floats, profile: bool = False) -> list[float] | None: ...
    @property
    def steps(self) -> int: ...
    def workspace(self) -> tuple[int, int]: ...

"""A small reverse-mode autograd on NumPy arrays.

A :class:`Tensor` wraps an ndarray. Every primitive op is a :class:`Function`: ``forward(ctx, ...)``
computes the result on raw ndarrays and saves on ``ctx`` what ``backward(ctx, grad)`` needs;
``backward`` returns one gradient per positional argument of ``forward`` (None where there is
none). ``Tensor.backward`` walks the graph once in reverse topological order; gradients accumulate
(``+=``) and broadcasting is undone by :func:`unbroadcast`.

The element-wise, reduction and shape ops live here; the network ops built on fastconv's kernels
(conv2d, pooling, batch_norm, local_response_norm, dropout, losses, ...) are in
``fastconv.nn.functional``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core, _memory
from ._typing import ArrayLike, Dims

__all__ = [
    "Tensor",
    "Function",
    "Context",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
    "inference_mode",
    "manual_seed",
    "unbroadcast",
    "concat",
    "cat",
    "flatten",
]

# ----------------------------------------------------------------------------------------------
# state: grad mode (per thread) and the random generator used by dropout and initialisers

_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed the generator used by dropout and the initialisers in ``fastconv.nn.init``."""
    global _generator
    _generator = np.random.default_rng(seed)


def default_generator() -> np.random.Generator:
    """The generator dropout and the initialisers draw from (reseeded by :func:`manual_seed`)."""
    return _generator


class _ThreadGradMode(threading.local):
    """Grad mode of the calling thread: as in PyTorch, each thread starts with it on and a
    ``no_grad`` block in one thread does not change it in another."""

    enabled = True


_grad_mode = _ThreadGradMode()


class _Tracer(threading.local):
    """The op recorder of the calling thread (fastconv.inference's capture), or None."""

    record = None


_tracer = _Tracer()


def is_grad_enabled() -> bool:
    """Whether ops called in this thread record a graph."""
    return _grad_mode.enabled


class _GradMode(contextlib.ContextDecorator):
    """Grad mode set to ``enabled`` inside a with-block or a decorated call, then restored."""

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = None if enabled is None else bool(enabled)  # None: leave the mode as it is

    def __enter__(self):
        self.prev = _grad_mode.enabled
        if self.enabled is not None:
            _grad_mode.enabled = self.enabled

    def __exit__(self, *exc):
        _grad_mode.enabled = self.prev
        return False

    def _recreate_cm(self):
        # one instance decorates a function: each call saves its own previous mode
        return _GradMode(self.enabled)


class set_grad_enabled(_GradMode):
    """Turn graph recording on or off in this thread, at once (``set_grad_enabled(False)`` as a
    plain call); as a context manager the previous mode comes back on exit, as a decorator the
    mode applies inside each call only (as torch.set_grad_enabled)."""

    def __init__(self, mode: bool) -> None:
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"set_grad_enabled: mode must be a bool, got {mode!r}")
        super().__init__(mode)
        self.prev, _grad_mode.enabled = _grad_mode.enabled, self.enabled

    def __enter__(self):
        _grad_mode.enabled = self.enabled

    def __call__(self, func):
        _grad_mode.enabled = self.prev
        return super().__call__(func)


def no_grad(func: Callable[..., Any] | None = None) -> Any:
    """Context manager / decorator: ops inside (in this thread) record no graph. Works as
    ``with no_grad():``, ``@no_grad()`` and (as PyTorch) the bare ``@no_grad``."""
    return _GradMode(False) if func is None else _GradMode(False)(func)


def enable_grad(func: Callable[..., Any] | None = None) -> Any:
    """Context manager / decorator: ops inside (in this thread) record a graph again."""
    return _GradMode(True) if func is None else _GradMode(True)(func)


def inference_mode(mode: bool | Callable[..., Any] = True) -> Any:
    """PyTorch's ``inference_mode``: as ``no_grad`` when ``mode`` is true (fastconv has no
    separate inference tensors), a no-op context otherwise. Context manager or decorator
    (``@inference_mode()`` and the bare ``@inference_mode``)."""
    if callable(mode):
        return _GradMode(False)(mode)
    if isinstance(mode, bool):
        return _GradMode(False if mode else None)
    raise TypeError(f"inference_mode: mode must be a bool, got {mode!r}")


# ----------------------------------------------------------------------------------------------
# Function and Context


def _is_float(a) -> bool:
    """Whether a (an array, or what np.asarray makes of it) has a floating dtype (dtype.kind 'f':
    np.issubdtype's answer at a fraction of its cost, which every op paid twice)."""
    return (a if isinstance(a, np.ndarray) else np.asarray(a)).dtype.kind == "f"


class Context:
    """What a Function's forward leaves for its backward. During backward, a Function with
    ``sums_into`` finds in ``grad_into`` {input index: that input's pending gradient} for the
    inputs whose gradient so far is an array only the backward pass holds: it may add its own
    gradient into such an array in place and return the array itself."""

    grad_into = None

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Function:
    """A differentiable primitive: subclass and define ``forward`` and ``backward`` (static)."""

    sums_into = False  # whether backward reads ctx.grad_into (Context)

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run forward on the ndarrays behind ``args``; record the node when a grad is needed.

        Positional arguments may be Tensors (differentiated), ndarrays or scalars (constants);
        keyword arguments are non-differentiable parameters. If forward returns a tuple, its first
        element is the differentiable result and the rest are returned as constant Tensors (the
        max-pool switches, for example). A result that is not floating point (a comparison's
        booleans, argmax's indices) is a constant too.
        """
        ctx = Context()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = cls.forward(ctx, *raw, **kwargs)
        extra = ()
        if isinstance(out, tuple):
            out, extra = out[0], tuple(Tensor(e) for e in out[1:])
        track = _grad_mode.enabled and any(ctx.needs_input_grad) and _is_float(out)
        result = Tensor(out, requires_grad=track)
        if track:
            ctx.fn, ctx.inputs = cls, args
            result._ctx = ctx
        if _tracer.record is not None:  # fastconv.inference is capturing a forward
            _tracer.record(cls, args, kwargs, result, extra)
        return (result, *extra) if extra else result


class _HookHandle:
    """What ``register_post_accumulate_grad_hook`` returns."""

    def __init__(self, tensor, key):
        self._tensor, self._key = weakref.ref(tensor), key

    def remove(self):
        tensor = self._tensor()
        if tensor is not None and tensor._post_hooks:
            tensor._post_hooks.pop(self._key, None)


class _FinalCallbacks(threading.local):
    items: list = []

    def __init__(self):
        self.items = []


_final_callbacks = _FinalCallbacks()


def queue_callback(callback):
    """Run ``callback()`` once, when the backward now running on this thread has finished (as
    PyTorch's engine ``queue_callback``); called from a hook during backward."""
    _final_callbacks.items.append(callback)


def unbroadcast(grad: np.ndarray, shape) -> np.ndarray:
    """Sum ``grad`` down to ``shape``: the adjoint of NumPy broadcasting."""
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead:
        grad = grad.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def _root(a):
    """The object that owns the memory behind a (following NumPy's .base chain)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def _add_into(acc: np.ndarray, g: np.ndarray) -> bool:
    """acc += g in one threaded pass where both are C-contiguous float arrays of one dtype and
    shape that do not overlap (a residual block's input gets two gradients of its full size:
    NumPy's acc + g runs on one core and allocates the sum). False: nothing done."""
    if not (
        isinstance(acc, np.ndarray)
        and isinstance(g, np.ndarray)
        and acc.dtype == g.dtype
        and acc.dtype in (np.float32, np.float64)
        and acc.shape == g.shape
        and acc.flags.c_contiguous
        and acc.flags.writeable
        and g.flags.c_contiguous
        and not np.may_share_memory(acc, g)
    ):
        return False
    _core.add_inplace(acc, g)
    return True


def _topological_order(root):
    """Nodes reachable from root through tensors that require grad, inputs before outputs."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        ctx = node._ctx
        if ctx is not None:
            if getattr(ctx, "freed", False):
                raise RuntimeError(
                    "backward through a graph a second time: the saved arrays were "
                    "freed after the first backward; pass retain_graph=True"
                )
            for inp in ctx.inputs:
                if isinstance(inp, Tensor) and inp.requires_grad and id(inp) not in seen:
                    stack.append((inp, False))
    return order


# ----------------------------------------------------------------------------------------------
# Tensor


class Tensor:
    """An ndarray with a gradient. ``data`` keeps NumPy's dtype (no silent cast)."""

    __array_ufunc__ = None  # make ``ndarray + Tensor`` call Tensor.__radd__

    def __init__(
        self, data: ArrayLike, requires_grad: bool = False, dtype: npt.DTypeLike | None = None
    ) -> None:
        if isinstance(data, Tensor):
            data = data.data
        data = np.asarray(data, dtype=dtype)
        if requires_grad and not _is_float(data):
            raise TypeError(f"only floating-point tensors can require grad, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None
        self._retain = False
        self._post_hooks = None

    # --- properties ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> _Size:
        """The element count as NumPy's ``a.size``; called, PyTorch's ``x.size()`` (the shape)
        or ``x.size(dim)``."""
        return _Size(self.data.shape)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def dim(self) -> int:
        """The number of dimensions (PyTorch's name for ``ndim``)."""
        return self.data.ndim

    def numel(self) -> int:
        """The number of elements."""
        return self.data.size

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        return bool(self.data)  # one element; more raise, as in NumPy and PyTorch

    def __float__(self):
        return float(self.data)

    def __int__(self):
        return int(self.data)

    __hash__ = object.__hash__  # by identity, as torch.Tensor (== is element-wise)

    def __repr__(self):
        body = np.array2string(self.data, prefix="Tensor(", separator=", ")
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({body}, dtype={self.dtype}{grad})"

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def numpy(self) -> np.ndarray:
        """The ndarray behind this tensor (shared, not copied), as torch's ``.numpy()``."""
        return self.data

    def item(self) -> int | float | bool:
        """The value of a one-element tensor as a Python number."""
        return self.data.item()

    def detach(self) -> Tensor:
        """A Tensor on the same data, outside the graph."""
        return Tensor(self.data)

    def clone(self) -> Tensor:
        """A copy of the data that stays in the graph (its gradient flows back to self)."""
        return Clone.apply(self)

    def contiguous(self) -> Tensor:
        """Self (fastconv's ops take any layout)."""
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set whether ops on this tensor record a graph (floating-point dtypes only); returns
        self."""
        if requires_grad and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor after backward."""
        self._retain = True
        return self

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> _HookHandle:
        """PyTorch's hook on a leaf: ``hook(tensor)`` runs during backward right after this
        tensor's ``.grad`` is final for that backward (every gradient reaching it has been
        summed in). Returns a handle whose ``remove()`` unregisters it. (Data-parallel training
        starts a bucket's allreduce from these hooks while backward goes on.)"""
        if self._ctx is not None:
            raise RuntimeError("post-accumulate-grad hooks can only be registered on leaf tensors")
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {type(hook).__name__}")
        if self._post_hooks is None:
            self._post_hooks = {}
        key = object()
        self._post_hooks[key] = hook
        return _HookHandle(self, key)

    # --- backward -----------------------------------------------------------------------------
    def backward(self, grad: ArrayLike | None = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into each leaf's ``.grad`` (``grad``: the upstream gradient,
        needed unless self has one element); ``retain_graph`` keeps the graph for another call."""
        was_on = _memory.enter()  # gradients come from the array cache (_memory.py)
        try:
            self._backward(grad, retain_graph)
        finally:
            _memory.leave(was_on)
            callbacks, _final_callbacks.items = _final_callbacks.items, []
        for callback in callbacks:  # queued by hooks during this backward (queue_callback)
            callback()

    def _backward(self, grad, retain_graph):
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for a single element, "
                    f"got shape {self.shape}"
                )
            grad = np.ones_like(self.data)
        grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"grad has shape {grad.shape}, tensor has shape {self.shape}")
        grads = {id(self): grad}
        # A leaf adopts its gradient array without a copy when nothing else can see it: an array
        # a backward function allocated (it owns its data), handed to this one input only. The
        # weights of a big Linear layer would otherwise be copied every step (OverFeat's 450 MB).
        # `handed` remembers every array given out so far by a weak reference (an id alone could
        # be reused by a new array once the old one is freed), so neither the graph's arrays nor
        # the gradients are kept alive by it: each is freed as soon as backward is past it.
        # (A view counts when the array it views, its root, is such an array: Linear's weight
        # gradient is a reshape. Roots of the graph's own tensors never count.)
        order = _topological_order(self)
        handed = {}

        def hand(a):
            handed[id(a)] = weakref.ref(a) if isinstance(a, np.ndarray) else (lambda a=a: a)

        def was_handed(a):
            ref = handed.get(id(a))
            return ref is not None and ref() is a

        hand(grad)
        # A leaf's gradient is final once every node that uses it has run backward; it is
        # settled then (not when the walk reaches the leaf), so its post-accumulate-grad hooks
        # fire while the rest of backward goes on (data-parallel buckets start early).
        leaf_uses = {}
        for t in order:
            hand(_root(t.data))
            if t._ctx is not None:
                for inp in t._ctx.inputs:
                    if isinstance(inp, Tensor) and inp.requires_grad and inp._ctx is None:
                        leaf_uses[id(inp)] = leaf_uses.get(id(inp), 0) + 1
        fresh = set()
        summable = set()  # pending gradients a second one may be added into in place

        def settle(node, g):  # a leaf's (or retained tensor's) .grad; a leaf's hooks
            if (
                node._ctx is None
                and node.grad is None
                and id(node) in fresh
                and g.dtype == node.dtype
            ):
                node.grad = g
            elif node._ctx is None or node._retain:
                node.grad = g.astype(node.dtype, copy=True) if node.grad is None else node.grad + g
            if node._ctx is None and node._post_hooks:
                for hook in list(node._post_hooks.values()):
                    hook(node)

        while order:  # inputs before outputs: popped from the output end, and released
            node = order.pop()
            g = grads.pop(id(node), None)
            if g is None:
                continue
            settle(node, g)
            ctx = node._ctx
            if ctx is None:
                continue
            if ctx.fn.sums_into:  # (a convolution adds into a residual input's pending gradient)
                ctx.grad_into = {
                    i: grads[id(inp)]
                    for i, inp in enumerate(ctx.inputs)
                    if isinstance(inp, Tensor) and id(inp) in summable and id(inp) in grads
                }
            in_grads = ctx.fn.backward(ctx, g)
            ctx.grad_into = None
            del g
            # fastconv's own backward functions return arrays they made for this walk; a user's
            # Function may return one it keeps, so a sum never goes into that
            builtin = ctx.fn.__module__.startswith("fastconv.")
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            for inp, ig in zip(ctx.inputs, in_grads):
                if ig is None or not (isinstance(inp, Tensor) and inp.requires_grad):
                    continue
                if ig.shape != inp.shape:
                    raise RuntimeError(
                        f"{ctx.fn.__name__}.backward returned a gradient of shape "
                        f"{ig.shape} for an input of shape {inp.shape}"
                    )
                prev = grads.get(id(inp))
                if prev is None:
                    r = _root(ig)
                    own = isinstance(r, np.ndarray) and r.flags.owndata and not was_handed(r)
                    hand(r)
                    grads[id(inp)] = ig
                    if own and builtin:
                        summable.add(id(inp))
                    else:
                        summable.discard(id(inp))
                elif ig is prev:
                    own = True  # the backward added its gradient into prev itself (grad_into)
                elif id(inp) in summable and _add_into(prev, ig):
                    own = True  # summed into prev, an array only this walk holds
                    hand(_root(ig))  # (spent now)
                else:
                    own = True
                    grads[id(inp)] = prev + ig
                    hand(grads[id(inp)])
                    hand(_root(ig))  # ig itself may be a view of a fresh array: spent now
                    summable.add(id(inp))
                if own:
                    fresh.add(id(inp))
                else:
                    fresh.discard(id(inp))
            in_grads = ig = inp = None  # (nothing of this node's is held past it)
            for inp in ctx.inputs:
                if id(inp) in leaf_uses and isinstance(inp, Tensor) and inp._ctx is None:
                    leaf_uses[id(inp)] -= 1
                    if leaf_uses[id(inp)] == 0:
                        lg = grads.pop(id(inp), None)
                        if lg is not None:
                            settle(inp, lg)
                        lg = None
            inp = None
            if not retain_graph:
                fn = ctx.fn
                ctx.__dict__.clear()
                ctx.fn, ctx.freed = fn, True

    # --- arithmetic (broadcasting) ------------------------------------------------------------
    def __add__(self, other):
        return Add.apply(self, other)

    def __radd__(self, other):
        return Add.apply(other, self)

    def __sub__(self, other):
        return Sub.apply(self, other)

    def __rsub__(self, other):
        return Sub.apply(other, self)

    def __mul__(self, other):
        return Mul.apply(self, other)

    def __rmul__(self, other):
        return Mul.apply(other, self)

    def __truediv__(self, other):
        return Div.apply(self, other)

    def __rtruediv__(self, other):
        return Div.apply(other, self)

    def __neg__(self):
        return Neg.apply(self)

    def __pow__(self, exponent):
        return Pow.apply(self, exponent=exponent)

    def __matmul__(self, other):
        return MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return MatMul.apply(other, self)

    def __lt__(self, other):
        return Compare.apply(self, other, op=np.less)

    def __le__(self, other):
        return Compare.apply(self, other, op=np.less_equal)

    def __gt__(self, other):
        return Compare.apply(self, other, op=np.greater)

    def __ge__(self, other):
        return Compare.apply(self, other, op=np.greater_equal)

    def __eq__(self, other):
        return False if other is None else Compare.apply(self, other, op=np.equal)

    def __ne__(self, other):
        return True if other is None else Compare.apply(self, other, op=np.not_equal)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return GetItem.apply(self, index=index)

    # --- element-wise -------------------------------------------------------------------------
    def exp(self) -> Tensor:
        """e ** self, element-wise."""
        return Exp.apply(self)

    def log(self) -> Tensor:
        """The natural logarithm, element-wise."""
        return Log.apply(self)

    def sqrt(self) -> Tensor:
        """The square root, element-wise."""
        return Pow.apply(self, exponent=0.5)

    def relu(self) -> Tensor:
        """max(self, 0), element-wise."""
        return Relu.apply(self)

    def tanh(self) -> Tensor:
        """The hyperbolic tangent, element-wise."""
        return Tanh.apply(self)

    def sigmoid(self) -> Tensor:
        """1 / (1 + exp(-self)), element-wise."""
        return Sigmoid.apply(self)

    def abs(self) -> Tensor:
        """|self|, element-wise (the gradient at 0 is 0, as torch's)."""
        return Abs.apply(self)

    def clamp(self, min: float | None = None, max: float | None = None) -> Tensor:
        """Values limited to [min, max] (either may be None, not both); the gradient passes
        where min <= x <= max, as PyTorch's. The bounds are numbers (constants)."""
        if min is None and max is None:
            raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
        for name, v in (("min", min), ("max", max)):
            if v is not None and not isinstance(v, numbers.Real):
                raise TypeError(f"clamp: {name} must be a number or None, got {type(v).__name__}")
        return Clamp.apply(self, lo=min, hi=max)

    clip = clamp

    # --- reductions and shapes ----------------------------------------------------------------
    # dim/keepdim are PyTorch's names, axis/keepdims NumPy's: either works.
    def sum(
        self,
        dim: Dims = None,
        keepdim: bool = False,
        *,
        axis: Dims = None,
        keepdims: bool | None = None,
    ) -> Tensor:
        """The sum over ``dim`` (an int or tuple; None: every element), keeping the summed
        dimensions as size 1 with ``keepdim``."""
        axis, keepdims = _axes(self, dim, axis, "sum"), keepdim if keepdims is None else keepdims
        return Sum.apply(self, axis=axis, keepdims=bool(keepdims))

    def mean(
        self,
        dim: Dims = None,
        keepdim: bool = False,
        *,
        axis: Dims = None,
        keepdims: bool | None = None,
    ) -> Tensor:
        """The mean over ``dim`` (as :meth:`sum`); nan over no elements, as torch's."""
        axis, keepdims = _axes(self, dim, axis, "mean"), keepdim if keepdims is None else keepdims
        axes = range(self.ndim) if axis is None else np.atleast_1d(axis)
        count = math.prod(self.shape[a] for a in axes)
        scale = 1.0 / count if count else np.nan  # empty: nan, as torch
        return self.sum(axis=axis, keepdims=keepdims) * scale

    def max(self, dim: int | None = None, keepdim: bool = False) -> Tensor | ValuesIndices:
        """No ``dim``: the largest element (a 0-d Tensor; ties share the gradient evenly). With
        ``dim``: ``(values, indices)`` along it, the gradient going to the index, as torch.max."""
        return self._extreme(dim, keepdim, "max")

    def min(self, dim: int | None = None, keepdim: bool = False) -> Tensor | ValuesIndices:
        """As :meth:`max`, for the smallest elements."""
        return self._extreme(dim, keepdim, "min")

    def _extreme(self, dim, keepdim, which):
        if dim is None:
            return Extreme.apply(self, axis=None, keepdims=False, which=which)
        if isinstance(dim, (Tensor, np.ndarray)):
            raise TypeError(
                f"{which}: dim must be an int; for the element-wise {which}imum of "
                f"two tensors, use np.{which}imum on the data"
            )
        values, indices = ExtremeDim.apply(
            self, axis=_axis(self, dim, which), keepdims=bool(keepdim), which=which
        )
        return ValuesIndices(values, indices)

    def amax(self, dim: Dims = None, keepdim: bool = False) -> Tensor:
        """The largest elements over ``dim`` (an int, a tuple, or None/() for all); ties share
        the gradient evenly, as torch.amax."""
        return Extreme.apply(
            self,
            axis=_axes(self, _all_if_empty(dim), None, "amax"),
            keepdims=bool(keepdim),
            which="max",
        )

    def amin(self, dim: Dims = None, keepdim: bool = False) -> Tensor:
        """As :meth:`amax`, for the smallest elements."""
        return Extreme.apply(
            self,
            axis=_axes(self, _all_if_empty(dim), None, "amin"),
            keepdims=bool(keepdim),
            which="min",
        )

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index of the largest element (of the flattened tensor without ``dim``), int64."""
        axis = None if dim is None else _axis(self, dim, "argmax")
        return ArgExtreme.apply(self, axis=axis, keepdims=bool(keepdim), which="max")

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index of the smallest element (of the flattened tensor without ``dim``), int64."""
        axis = None if dim is None else _axis(self, dim, "argmin")
        return ArgExtreme.apply(self, axis=axis, keepdims=bool(keepdim), which="min")

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """The data in a new shape (one entry may be -1: inferred); ints or one tuple."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        shape = tuple(int(v) for v in shape)
        known = math.prod(v for v in shape if v != -1)
        if (
            sum(v == -1 for v in shape) > 1
            or any(v < -1 for v in shape)
            or (-1 in shape and (known == 0 or self.size % known))
            or (-1 not in shape and known != self.size)
        ):
            raise ValueError(
                f"reshape/view: shape {list(shape)} is invalid for a tensor of shape "
                f"{self.shape} ({self.size} elements)"
            )
        return Reshape.apply(self, shape=shape)

    view = reshape

    def squeeze(self, dim: Dims = None) -> Tensor:
        """Drop dimensions of size 1: all of them, or those of ``dim`` (an int or a tuple) that
        have size 1 (others stay, as in PyTorch)."""
        if dim is None:
            drop = {i for i, v in enumerate(self.shape) if v == 1}
        else:
            dims = dim if isinstance(dim, (tuple, list)) else (dim,)
            axes = [_axis(self, d, "squeeze") for d in dims]
            drop = {d for d in axes if self.ndim and self.shape[d] == 1}
        return Reshape.apply(
            self, shape=tuple(v for i, v in enumerate(self.shape) if i not in drop)
        )

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert a dimension of size 1 at ``dim`` (in [-ndim-1, ndim])."""
        d = _axis(self, dim, "unsqueeze", extra=1)
        return Reshape.apply(self, shape=self.shape[:d] + (1,) + self.shape[d:])

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Dimensions start_dim..end_dim merged into one (a 0-d tensor becomes 1-d)."""
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _axis(self, start_dim, "flatten"), _axis(self, end_dim, "flatten")
        if start > end:
            raise ValueError(
                f"flatten: start_dim ({start_dim}) comes after end_dim ({end_dim}) "
                f"for a tensor of shape {self.shape}"
            )
        middle = int(np.prod(self.shape[start : end + 1]))  # not -1: ambiguous for an empty tensor
        shape = self.shape[:start] + (middle,) + self.shape[end + 1 :]
        return self.reshape(shape)

    def transpose(self, *axes: int) -> Tensor:
        """The dimensions reordered as ``axes`` (a tuple or separate ints, NumPy's transpose;
        reversed when none are given). ``permute`` is the same method."""
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return Permute.apply(self, axes=tuple(axes) if axes else tuple(reversed(range(self.ndim))))

    permute = transpose

    def softmax(self, dim: int = -1) -> Tensor:
        """exp(self) normalised to sum to 1 along ``dim``."""
        return Softmax.apply(self, dim=dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        """log(softmax(self, dim)), computed stably from the log-sum-exp."""
        return LogSoftmax.apply(self, dim=dim)


class _Size(int):
    """``Tensor.size``: an int (the element count, as NumPy's ``a.size``) that can also be called
    as PyTorch's ``x.size()`` (the shape tuple) and ``x.size(dim)`` (negative dims count from
    the end)."""

    def __new__(cls, shape):
        self = super().__new__(cls, math.prod(shape))
        self.shape = tuple(shape)
        return self

    def __call__(self, dim=None):
        if dim is None:
            return self.shape
        if not self.shape:
            raise IndexError(f"size: dimension specified as {dim} but the tensor has no dimensions")
        return self.shape[_axis(self, dim, "size")]


ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])
ValuesIndices.__doc__ = (
    "What ``Tensor.max(dim)`` and ``Tensor.min(dim)`` return (as torch.return_types.max)."
)


def _axis(t, dim, op, extra=0):
    """dim as an index in [0, t's ndim + extra), PyTorch's IndexError otherwise."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    n = len(t.shape) + extra
    lo, hi = -max(n, 1), max(n, 1) - 1
    if not lo <= dim <= hi:
        raise IndexError(
            f"{op}: dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})"
        )
    return int(dim) % max(n, 1)


def _all_if_empty(dim):
    """amax/amin's dim: () or [] mean every dimension, as None."""
    return None if isinstance(dim, (tuple, list)) and not dim else dim


def _axes(t, dim, axis, op):
    """One reduction's dims from torch's ``dim`` or NumPy's ``axis`` (an int, a tuple or None)."""
    if dim is not None and axis is not None:
        raise TypeError(f"{op}: pass dim or axis, not both")
    dim = axis if dim is None else dim
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        axes = tuple(_axis(t, d, op) for d in dim)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{op}: dim {tuple(dim)} names a dimension twice")
        return axes
    return _axis(t, dim, op)


# ----------------------------------------------------------------------------------------------
# primitives: element-wise with broadcasting


def _shape(a):
    return np.shape(a)


class Add(Function):
    """a + b (broadcasting)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shape(a), _shape(b)
        return np.add(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad
        return unbroadcast(g, sa) if na else None, unbroadcast(g, sb) if nb else None


class Sub(Function):
    """a - b (broadcasting)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shape(a), _shape(b)
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        na, nb = ctx.needs_input_grad
        return unbroadcast(g, sa) if na else None, unbroadcast(-g, sb) if nb else None


class Mul(Function):
    """a * b (broadcasting)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(g * b, _shape(a)) if na else None,
            unbroadcast(g * a, _shape(b)) if nb else None,
        )


class Div(Function):
    """a / b (broadcasting)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.divide(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(g / b, _shape(a)) if na else None
        gb = unbroadcast(-g * a / (b * b), _shape(b)) if nb else None
        return ga, gb


class Neg(Function):
    """-a."""

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """a ** exponent for a constant exponent."""

    @staticmethod
    def forward(ctx, a, exponent):
        ctx.save_for_backward(a)
        ctx.exponent = exponent
        return np.power(a, exponent)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        p = ctx.exponent
        return g * (p * np.power(a, p - 1))


class Exp(Function):
    """exp(a)."""

    @staticmethod
    def forward(ctx, a):
        y = np.exp(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


class Log(Function):
    """Natural log of a."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        return g / ctx.saved[0]


class MatMul(Function):
    """a @ b for operands of two or more dimensions (batch dimensions broadcast)."""

    @staticmethod
    def forward(ctx, a, b):
        if np.ndim(a) < 2 or np.ndim(b) < 2:
            raise ValueError(
                f"matmul needs operands of 2+ dimensions, got {_shape(a)} and {_shape(b)}"
            )
        ctx.save_for_backward(a, b)
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(g @ np.swapaxes(b, -1, -2), a.shape) if na else None
        gb = unbroadcast(np.swapaxes(a, -1, -2) @ g, b.shape) if nb else None
        return ga, gb


# --- activations ------------------------------------------------------------------------------


def _native(*arrays):
    """True when fastconv's element-wise kernels can take these arrays as they are."""
    a = arrays[0]
    return a.dtype in (np.float32, np.float64) and all(
        b.dtype == a.dtype and b.shape == a.shape and b.flags.c_contiguous for b in arrays
    )


class Relu(Function):
    """max(a, 0), on fastconv's threaded one-pass kernels for C-contiguous float32/float64."""

    @staticmethod
    def forward(ctx, a):
        a = np.asarray(a)
        if _native(a):
            y = np.empty_like(a)
            _core.relu_forward(a, y)
        else:
            y = np.maximum(a, 0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        return _relu_grad(g, ctx.saved[0])


def _relu_grad(g, y):
    """ReLU's gradient: g where the output y > 0, else 0 (also the fused Conv2d + ReLU's)."""
    if _native(y) and g.dtype == y.dtype and g.shape == y.shape:
        # read in place by rows where g lies as rows (a contiguous g is one row; a concat's
        # slice, Inception's branches, many), else gathered into dx first, then masked there
        # (NumPy's g * (y > 0) takes three passes)
        dx = np.empty_like(y)
        if not _core.relu_backward_rows(g, y, dx):
            np.copyto(dx, g)
            _core.relu_backward(dx, y, dx)
        return dx
    return g * (y > 0)


class LeakyRelu(Function):
    """a where a > 0, negative_slope * a elsewhere."""

    @staticmethod
    def forward(ctx, a, negative_slope=0.01):
        pos = a > 0
        ctx.save_for_backward(pos)
        ctx.slope = negative_slope
        return np.where(pos, a, a * np.asarray(negative_slope, a.dtype))

    @staticmethod
    def backward(ctx, g):
        (pos,) = ctx.saved
        return np.where(pos, g, g * np.asarray(ctx.slope, g.dtype))


class Elu(Function):
    """a where a > 0, alpha * (exp(a) - 1) elsewhere."""

    @staticmethod
    def forward(ctx, a, alpha=1.0):
        alpha = np.asarray(alpha, a.dtype)
        y = np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0)))
        ctx.save_for_backward(a, y)
        ctx.alpha = alpha
        return y

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved
        return np.where(a > 0, g, g * (y + ctx.alpha))


class Tanh(Function):
    """tanh(a)."""

    @staticmethod
    def forward(ctx, a):
        y = np.tanh(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved[0]
        return g * (1 - y * y)


class Sigmoid(Function):
    """1 / (1 + exp(-a)), in an overflow-free form."""

    @staticmethod
    def forward(ctx, a):
        y = 0.5 * (1 + np.tanh(0.5 * a))  # overflow-free form of 1 / (1 + exp(-a))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved[0]
        return g * y * (1 - y)


class Softmax(Function):
    """Softmax along ``dim``."""

    @staticmethod
    def forward(ctx, a, dim=-1):
        e = np.exp(a - a.max(axis=dim, keepdims=True))
        y = e / e.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved[0]
        return y * (g - (g * y).sum(axis=ctx.dim, keepdims=True))


class LogSoftmax(Function):
    """Log-softmax along ``dim`` (shifted by the max: no overflow)."""

    @staticmethod
    def forward(ctx, a, dim=-1):
        shifted = a - a.max(axis=dim, keepdims=True)
        y = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved[0]
        return g - np.exp(y) * g.sum(axis=ctx.dim, keepdims=True)


class Abs(Function):
    """|a|; the gradient is sign(a) (0 at 0, as PyTorch)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        return g * np.sign(ctx.saved[0])  # 0 at 0, as PyTorch


class Clamp(Function):
    """a limited to [lo, hi]; the gradient passes where lo <= a <= hi (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, lo=None, hi=None):
        inside = np.ones(a.shape, bool)
        if lo is not None:
            inside &= a >= lo
        if hi is not None:
            inside &= a <= hi
        ctx.save_for_backward(inside)
        if lo is not None:
            a = np.maximum(a, np.asarray(lo, a.dtype))
        if hi is not None:
            a = np.minimum(a, np.asarray(hi, a.dtype))  # (min > max gives max everywhere, as torch)
        return a

    @staticmethod
    def backward(ctx, g):
        return g * ctx.saved[0]


class Compare(Function):
    """An element-wise comparison: a boolean result, outside the graph."""

    @staticmethod
    def forward(ctx, a, b, op):
        return op(a, b)

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("a comparison has no gradient")


class Clone(Function):
    """A copy of a; the gradient passes unchanged."""

    @staticmethod
    def forward(ctx, a):
        return np.array(a, copy=True)

    @staticmethod
    def backward(ctx, g):
        return g


# --- reductions and shapes --------------------------------------------------------------------


class Extreme(Function):
    """max or min over ``axis`` (None: all); tied elements share the gradient evenly (a NaN
    result goes to the NaNs), as PyTorch's max(), amax and amin."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False, which="max"):
        y = (np.max if which == "max" else np.min)(a, axis=axis, keepdims=True)
        hit = (a == y) | (np.isnan(a) & np.isnan(y))
        ctx.save_for_backward(hit, hit.sum(axis=axis, keepdims=True))
        ctx.axis, ctx.keepdims = axis, keepdims
        return y if keepdims else np.squeeze(y, axis=axis)

    @staticmethod
    def backward(ctx, g):
        hit, count = ctx.saved
        if ctx.axis is not None and not ctx.keepdims:
            g = np.expand_dims(g, ctx.axis)
        return g * hit / count.astype(g.dtype)


class ExtremeDim(Function):
    """(values, indices) of max or min along one axis; the gradient goes to the index."""

    @staticmethod
    def forward(ctx, a, axis, keepdims=False, which="max"):
        idx = (np.argmax if which == "max" else np.argmin)(a, axis=axis, keepdims=True)
        values = np.take_along_axis(a, idx, axis=axis)
        ctx.save_for_backward(idx)
        ctx.shape, ctx.dtype, ctx.axis, ctx.keepdims = a.shape, a.dtype, axis, keepdims
        if not keepdims:
            values, idx = np.squeeze(values, axis), np.squeeze(idx, axis)
        return values, idx.astype(np.int64, copy=False)

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved
        gx = np.zeros(ctx.shape, ctx.dtype)
        g = g if ctx.keepdims else np.expand_dims(g, ctx.axis)
        np.put_along_axis(gx, idx, g, axis=ctx.axis)
        return gx


class ArgExtreme(Function):
    """argmax or argmin (int64, outside the graph; ties: the first, as NumPy and PyTorch)."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False, which="max"):
        fn = np.argmax if which == "max" else np.argmin
        return np.asarray(fn(a, axis=axis, keepdims=keepdims), np.int64)

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("argmax/argmin have no gradient")


class Sum(Function):
    """Sum over ``axis`` (None: all)."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return np.asarray(a.sum(axis=axis, keepdims=keepdims))

    @staticmethod
    def backward(ctx, g):
        if ctx.axis is not None and not ctx.keepdims:
            g = np.expand_dims(g, ctx.axis)
        return np.broadcast_to(g, ctx.shape)


class Reshape(Function):
    """a in a new shape."""

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Permute(Function):
    """a with its axes permuted."""

    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(np.argsort(ctx.axes))


class GetItem(Function):
    """a[index] (basic or advanced indexing)."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, ctx.dtype)
        idx = ctx.index if isinstance(ctx.index, tuple) else (ctx.index,)
        if any(isinstance(i, (np.ndarray, list)) for i in idx):
            np.add.at(out, ctx.index, g)  # advanced indexing may repeat an element
        else:
            out[ctx.index] = g
        return out


class Concat(Function):
    """Concatenation along ``axis``."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        ctx.splits = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.splits, axis=ctx.axis))


def concat(tensors: Iterable[Tensor], axis: int = 0) -> Tensor:
    """Concatenate tensors along ``axis`` (Inception's channel concat is ``axis=1``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat/cat: tensors must be a non-empty sequence")
    return Concat.apply(*tensors, axis=axis)


def cat(tensors: Iterable[Tensor], dim: int = 0) -> Tensor:
    """PyTorch's spelling of :func:`concat` (``torch.cat(tensors, dim)``)."""
    return concat(tensors, axis=dim)


def flatten(x: Tensor | ArrayLike, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """PyTorch's ``torch.flatten``: dimensions start_dim..end_dim merged into one."""
    return (x if isinstance(x, Tensor) else Tensor(x)).flatten(start_dim, end_dim)

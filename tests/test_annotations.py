"""The public API is annotated: every function and method that the namespaces below export has
an annotation on each parameter (self, cls, *args and **kwargs aside) and a return annotation.

Classes are walked through their fastconv base classes too (``fastconv.distributed``'s
DistributedDataParallel brings ``fastconv.nn.Module``'s methods), properties by their getter.
The annotations are strings (``from __future__ import annotations``): only their presence is
checked here, not what they say."""

import importlib
import inspect
import types

import pytest

NAMESPACES = [
    "fastconv",
    "fastconv.nn.functional",
    "fastconv.optim",
    "fastconv.inference",
    "fastconv.distributed",
    "fastconv.train",
    "fastconv.nn.utils",
]


def _public_names(mod):
    names = getattr(mod, "__all__", None)
    if names is not None:
        return list(names)
    return [
        n
        for n, o in vars(mod).items()
        if not n.startswith("_") and getattr(o, "__module__", "").startswith("fastconv")
    ]


def _methods(cls):
    """(name, function) for each public method (and __init__) of cls and its fastconv bases."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("fastconv"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            elif isinstance(member, property):
                member = member.fget
            if inspect.isfunction(member):
                yield f"{klass.__module__}.{klass.__qualname__}.{name}", member


def _missing(fn):
    fn = inspect.unwrap(fn)  # contextlib.contextmanager, functools.wraps
    annotations = getattr(fn, "__annotations__", {})
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    missing = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name not in ("self", "cls") and p.kind not in skip and p.name not in annotations
    ]
    if "return" not in annotations:
        missing.append("return")
    return missing


def _public_functions(namespace):
    mod = importlib.import_module(namespace)
    for name in _public_names(mod):
        obj = getattr(mod, name)
        if isinstance(obj, types.ModuleType):
            continue  # a submodule (fastconv.nn, ...): walked on its own where listed
        if inspect.isclass(obj):
            yield from _methods(obj)
        elif inspect.isfunction(inspect.unwrap(obj)):
            yield f"{namespace}.{name}", obj


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_public_api_is_annotated(namespace):
    found = list(_public_functions(namespace))
    assert found, f"{namespace} exports no functions"
    problems = sorted(
        {f"{qual}: {', '.join(miss)}" for qual, fn in found if (miss := _missing(fn))}
    )
    assert not problems, (
        f"{len(problems)} public functions/methods in {namespace} lack annotations "
        "(parameter names, or 'return'):\n  " + "\n  ".join(problems)
    )

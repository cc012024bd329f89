"""src/fastconv/_core.pyi names exactly what the compiled fastconv._core defines, and py.typed
marks the package as typed (PEP 561)."""

import ast
import inspect
import os

import pytest

import fastconv
from fastconv import _core

PKG = os.path.dirname(os.path.abspath(fastconv.__file__))
STUB = os.path.join(PKG, "_core.pyi")


def stub_tree():
    with open(STUB) as f:
        return ast.parse(f.read(), STUB)


def stub_names():
    """Public top-level names the stub defines: functions, classes and annotated constants."""
    names = set()
    for node in stub_tree().body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


def module_names():
    return {n for n in dir(_core) if not n.startswith("_")}


def test_stub_and_marker_are_in_the_package():
    assert os.path.isfile(STUB), f"{STUB} is missing"
    assert os.path.isfile(os.path.join(PKG, "py.typed")), "py.typed is missing beside __init__.py"


def test_stub_names_match_the_module():
    stub, mod = stub_names(), module_names()
    assert not mod - stub, f"fastconv._core defines, _core.pyi lacks: {sorted(mod - stub)}"
    assert not stub - mod, f"_core.pyi has, fastconv._core does not define: {sorted(stub - mod)}"


def _stub_function_params(node):
    args = node.args
    return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]


def _pybind_params(obj):
    """Parameter names from pybind11's signature line, ``name(a: T, b: T = ...) -> R``."""
    doc = (obj.__doc__ or "").lstrip()
    head = doc.split("\n", 1)[0]
    inner = head[head.index("(") + 1 : head.rindex(")")]
    depth, params, cur = 0, [], ""
    for ch in inner:  # split on top-level commas only (types may hold "[a, b]")
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            params.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        params.append(cur)
    return [p.split(":")[0].split("=")[0].strip() for p in params]


def test_stub_parameters_match_the_bindings():
    """Each function's parameter names, in order, as pybind11 reports them."""
    checked = 0
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            obj = getattr(_core, node.name)
            assert _stub_function_params(node) == _pybind_params(obj), node.name
            checked += 1
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            cls = getattr(_core, node.name)
            for item in node.body:
                is_property = isinstance(item, ast.FunctionDef) and any(
                    isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                )
                if isinstance(item, ast.FunctionDef) and not is_property:
                    got = _pybind_params(getattr(cls, item.name))
                    assert _stub_function_params(item) == got, f"{node.name}.{item.name}"
                    checked += 1
    assert checked > len([n for n in module_names() if inspect.isroutine(getattr(_core, n))])


@pytest.mark.parametrize("name", ["ALGO_NAMES", "MAX_THREADS", "ALGO_FLAG_FORWARD"])
def test_stub_constants_have_the_module_types(name):
    annotation = {
        node.target.id: ast.unparse(node.annotation)
        for node in stub_tree().body
        if isinstance(node, ast.AnnAssign)
    }[name]
    value = getattr(_core, name)
    assert type(value).__name__ == annotation.split("[")[0], (name, annotation, type(value))
    assert not inspect.isroutine(value)

"""fastconv.torch's kernels as PyTorch custom operators: torch.compile(fullgraph=True),
torch.export and FX see one ``fastconv::`` node per call and give PyTorch's results, forward
and backward; torch.library's own checks (schema, fake implementation, autograd registration)
pass; unconvert() restores the torch.nn classes for TorchScript and ONNX."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import fastconv.torch as fct  # noqa: E402


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding="same", bias=False),
        nn.AvgPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d((3, 1)),
        nn.Flatten(),
        nn.Linear(24, 5),
    ).double()


def _x():
    return torch.randn(
        2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )


def _fastconv_ops(gm):
    return sorted({str(n.target) for n in gm.graph.nodes if "fastconv" in str(n.target)})


def test_torch_library_opcheck():
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    checks = [
        (torch.ops.fastconv.conv2d, (x, w, b, [1, 1], [1, 1], [1, 1], 1, "")),
        (torch.ops.fastconv.conv2d, (x, w, None, [2, 2], [0, 0], [1, 1], 1, "valid")),
        (torch.ops.fastconv.max_pool2d, (x, [3, 3], [2, 2], [1, 1], [1, 1], True)),
        (torch.ops.fastconv.avg_pool2d, (x, [2, 2], [2, 2], [0, 0], True, False, None)),
        (torch.ops.fastconv.adaptive_avg_pool2d, (x, [4, 2])),
    ]
    for op, args in checks:
        torch.library.opcheck(
            op, args, test_utils=("test_schema", "test_faketensor", "test_autograd_registration")
        )


@pytest.mark.slow  # torch.compile (Dynamo and Inductor) of a converted model, both ways
def test_compile_fullgraph_forward_and_backward():
    ref = _net()
    model = fct.convert(copy.deepcopy(ref))
    x = _x()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = compiled(xa), ref(xb)
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-12)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_export_records_fastconv_ops_and_runs():
    model = fct.convert(_net()).eval()
    x = _x()
    ep = torch.export.export(model, (x,))
    ops = _fastconv_ops(ep.graph_module)
    assert ops == [
        "fastconv.adaptive_avg_pool2d.default",
        "fastconv.avg_pool2d.default",
        "fastconv.conv2d.default",
        "fastconv.max_pool2d.default",
    ]
    torch.testing.assert_close(ep.module()(x), _net().eval()(x), rtol=1e-10, atol=1e-12)


def test_fx_symbolic_trace_and_conv1d():
    conv = fct.convert(nn.Sequential(nn.Conv1d(3, 4, 3, padding="same"))).double()
    x = torch.randn(2, 3, 10, dtype=torch.float64)
    gm = torch.fx.symbolic_trace(conv)
    torch.testing.assert_close(
        gm(x), torch.nn.functional.conv1d(x, conv[0].weight, conv[0].bias, padding="same")
    )
    ep = torch.export.export(conv, (x,))
    assert _fastconv_ops(ep.graph_module) == ["fastconv.conv2d.default"]


def test_unconvert_restores_torch_classes_for_torchscript_and_onnx(tmp_path):
    ref = _net().eval()
    model = fct.convert(copy.deepcopy(ref))
    assert type(model[0]) is fct.Conv2d
    params = [id(p) for p in model.parameters()]
    assert fct.unconvert(model) is model
    assert [type(m) for m in model.modules()] == [type(m) for m in ref.modules()]
    assert [id(p) for p in model.parameters()] == params  # the same objects
    scripted = torch.jit.script(model)
    x = _x()
    torch.testing.assert_close(scripted(x), ref(x))
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    torch.onnx.export(model.float(), (x.float(),), str(path), **kw)
    onnx.checker.check_model(onnx.load(str(path)))

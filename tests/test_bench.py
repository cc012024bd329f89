"""`fastconv bench` end to end on the smallest settings: it runs, its rows are complete and
consistent, and --json/--plot write their files. (Speed itself is never asserted.)"""

import json
from importlib import resources

import numpy as np
import pytest

from fastconv import bench, cli


@pytest.mark.slow  # the layers suite at batch 1, every library and direction
def test_bench_layers_json_and_plot(tmp_path, capsys):
    out = tmp_path / "b.json"
    png = tmp_path / "b.png"
    pytest.importorskip("matplotlib")
    rc = cli.main(
        [
            "bench",
            "layers",
            "--batch",
            "1",
            "--repeat",
            "1",
            "--compare",
            "numpy",
            "--no-progress",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "SGEMM rate" in text and "[layers]" in text
    res = json.loads(out.read_text())
    assert res["meta"]["sgemm_gflops"] > 0
    rows = res["rows"]
    cases = {r["case"] for r in rows}
    assert cases == {"L1", "L2", "L3", "L4", "L5"}
    for lib in ("fastconv", "numpy"):
        for d in bench.CONV_DIRS:
            assert len([r for r in rows if r["lib"] == lib and r["dir"] == d]) == 5
    assert all(r["ms"] > 0 and r["gflops"] > 0 for r in rows)
    assert png.stat().st_size > 1000


def test_numpy_baseline_matches_fastconv():
    import numpy as np

    import fastconv

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 11, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    for s, p in ((1, 0), (2, 1), (3, 2)):
        y = fastconv.conv2d(x, w, stride=s, padding=p)
        np.testing.assert_allclose(bench.np_conv2d(x, w, s, p), y, rtol=1e-10, atol=1e-10)
        dy = rng.standard_normal(y.shape)
        dx, dw, _ = fastconv.conv2d_backward(dy, x, w, stride=s, padding=p)
        np.testing.assert_allclose(
            bench.np_conv2d_backward_data(dy, x.shape, w, s, p), dx, rtol=1e-10, atol=1e-10
        )
        np.testing.assert_allclose(
            bench.np_conv2d_backward_weight(dy, x, w, s, p), dw, rtol=1e-10, atol=1e-10
        )


def test_net_flops_and_builder_agree_on_shapes():
    import numpy as np

    from fastconv import autograd, nn

    spec = bench.load_suite()["nets"]["googlenet_v1"]
    small = dict(spec, input=[1, 3, 224, 224])
    model = bench.build_net(small, nn, lambda ts: autograd.concat(ts, axis=1))
    with autograd.no_grad():
        out = model(autograd.Tensor(np.zeros((1, 3, 224, 224), np.float32)))
    assert out.shape == (1, 1000)
    assert 2.5e9 < bench.net_flops(small, 1) < 3.5e9  # GoogLeNet: ~1.5 G multiply-adds


def test_libraries_take_turns_and_report_their_best_round(monkeypatch):
    """bench_layer (the layers and shapes suites): per direction, one time_rounds call with every
    library as a contender ("fastconv:<algo>" on fastconv's threads, so no switch warm-up from
    "fastconv"); each row's ms is its library's best round and "spread" its slowest over best."""
    calls = []
    fake = {0: [0.004, 0.002, 0.003], 1: [0.010, 0.012, 0.011], 2: [0.006, 0.006, 0.009]}

    def timer(contenders, repeat):
        calls.append({name: lib for name, (fn, lib) in contenders.items()})
        for fn, _ in contenders.values():
            fn()  # (each contender really runs)
        return {name: fake[i] for i, name in enumerate(contenders)}

    monkeypatch.setattr(bench, "time_rounds", timer)
    ticks = []
    rows = bench.bench_layer(
        "tiny",
        (1, 3, 8, 8),
        (4, 3, 3, 3),
        1,
        1,
        1,
        1,
        ["fastconv", "fastconv:im2col", "numpy"],
        None,
        3,
        lambda: ticks.append(1),
    )
    assert calls == [{"fastconv": "fastconv", "fastconv:im2col": "fastconv", "numpy": "numpy"}] * 3
    assert len(ticks) == 9 and len(rows) == 9
    assert [(r["lib"], r["dir"]) for r in rows[:3]] == [("fastconv", d) for d in bench.CONV_DIRS]
    for r in rows:
        i = ["fastconv", "fastconv:im2col", "numpy"].index(r["lib"])
        assert r["ms"] == pytest.approx(min(fake[i]) * 1e3)
        assert r["spread"] == pytest.approx(max(fake[i]) / min(fake[i]))
    line = bench.spread_line(rows, 3)
    assert line.startswith("best of 3 interleaved rounds") and "fastconv 2.00x" in line
    assert "numpy 1.50x" in line


def test_unknown_suite_and_algo_are_rejected():
    with pytest.raises(SystemExit):
        cli.main(["bench", "nope"])
    with pytest.raises(SystemExit):
        cli.main(["bench", "layers", "--algos", "strassen"])


def test_training_step_flops_are_three_forwards():
    """bench_train.step_flops: 3x the forward's FLOPs, counted in eval mode, the model left in
    training mode (the fast loop's check of bench_train.py; the timed step is slow below)."""
    from fastconv import bench_train, models
    from fastconv.bench_infer import net_flops
    from fastconv.inference._graph import capture

    model = models.lenet5()
    x = np.zeros((2, 1, 32, 32), np.float32)
    flops = bench_train.step_flops(model, x)
    assert model.training
    model.eval()
    assert flops == 3 * net_flops(capture(model, x), x.shape) > 0


@pytest.mark.slow  # ResNet-18 training steps at 224x224, fastconv and torch
def test_training_step_rows_and_flops():
    """bench nets' training step: a row per library, FLOPs 3x ResNet-18's forward (1.82 G
    multiply-adds per 224x224 image, the figure torchvision documents)."""
    from fastconv import bench_train

    torch = bench.import_torch(2)
    libs = ["fastconv"] + (["torch"] if torch is not None else [])
    ticks = []
    rows = bench_train.bench_train_step(
        "resnet18",
        1,
        libs,
        torch,
        1,
        lambda: ticks.append(1),
        lambda contenders, repeat: bench.time_rounds(contenders, repeat, warm=0),
    )
    assert [r["lib"] for r in rows] == libs and len(ticks) == len(libs)
    for r in rows:
        assert r["case"] == "resnet18 step" and r["dir"] == "train" and r["ms"] > 0
        assert r["spread"] >= 1.0
        assert abs(r["gflops"] * 1e9 * r["ms"] / 1e3 / (3 * 2 * 1.814e9) - 1) < 0.01


@pytest.mark.slow  # a timed training step beside torch's; step_flops above is the fast check
def test_train_nets_takes_any_model_at_its_published_size():
    """--train-nets: NiN-CIFAR (10 classes, 32x32) steps next to its torch twin; a name that is
    not a model is refused."""
    from fastconv import bench_train

    torch = bench.import_torch(2)
    libs = ["fastconv"] + (["torch"] if torch is not None else [])
    rows = bench_train.bench_train_step(
        "nin_cifar",
        2,
        libs,
        torch,
        1,
        lambda: None,
        lambda contenders, repeat: bench.time_rounds(contenders, repeat, warm=0),
    )
    assert [r["lib"] for r in rows] == libs
    assert all(r["case"] == "nin_cifar step" and r["ms"] > 0 and r["gflops"] > 0 for r in rows)
    with pytest.raises(SystemExit):
        cli.main(["bench", "nets", "--train-nets", "resnet9000"])


def test_step_breakdown_splits_a_training_step(tmp_path, capsys):
    """fastconv bench breakdown: the kernels are clocked while the step runs and restored after;
    the groups and the rest add up to the step; --json writes the rows."""
    from fastconv import _core, bench_train

    before = {n: getattr(_core, n) for _, names in bench_train.KERNEL_GROUPS for n in names}
    row = bench_train.step_breakdown("resnet18", 2, 1, size=32)
    assert {n: getattr(_core, n) for n in before} == before  # (the originals are back)
    ms = row["ms"]
    assert set(ms) == {g for g, _ in bench_train.KERNEL_GROUPS} | {bench_train.REST}
    assert ms["convolutions"] > 0 and ms["batch norm"] > 0 and ms["optimizer"] > 0
    assert ms["loss"] > 0 and ms["pooling"] > 0
    assert sum(ms.values()) == pytest.approx(row["step_ms"], rel=1e-6)
    out = tmp_path / "b.json"
    argv = ["bench", "breakdown", "--nets", "resnet18", "--batches", "2", "--size", "32"]
    assert cli.main(argv + ["--repeat", "1", "--no-progress", "--json", str(out)]) == 0
    assert "convolutions" in capsys.readouterr().out
    (saved,) = json.loads(out.read_text())["rows"]
    assert (saved["net"], saved["batch"], saved["size"]) == ("resnet18", 2, 32)


def test_kernel_clock_times_prepared_convolutions():
    """A step's Winograd layers prepared for both directions (_core.Conv2dPrepared) count as
    convolutions, not as the rest, and the class is restored after."""
    from fastconv import _core, autograd, bench_train
    from fastconv.nn import functional as NF

    original = _core.Conv2dPrepared
    rng = np.random.default_rng(0)
    x = autograd.Tensor(rng.standard_normal((4, 64, 14, 14)), requires_grad=True)
    w = autograd.Tensor(rng.standard_normal((64, 64, 3, 3)), requires_grad=True)
    acc = {}
    with bench_train.kernel_clock(acc):
        y = NF.conv2d(x, w, padding=1, algo="winograd")
        assert isinstance(y._ctx.prepared._obj, original)
        after_forward = acc["convolutions"]
        y.backward(np.ones(y.shape))
    assert _core.Conv2dPrepared is original
    assert 0 < after_forward < acc["convolutions"]
    assert x.grad is not None and np.isfinite(x.grad).all()


# fastconv._core calls a training step makes that run no kernel (choices, settings)
BOOKKEEPING = {"conv2d_choose", "conv2d_prepared_reuse", "get_autotune", "memory_handler_set"}


def test_kernel_clock_misses_no_kernel_of_a_step(monkeypatch):
    """Every fastconv._core function a training step calls is clocked (KERNEL_GROUPS or
    KERNEL_CLASSES) or bookkeeping: a new kernel binding left out of the clock would be counted
    as Python (as relu_backward_rows was). A ResNet-18 step (batch norm, residual sums, the
    optimizer, the loss) and a GoogLeNet forward and backward (concatenated branches, ReLU on
    their rows, pooling, prepared Winograd layers)."""
    from fastconv import _core, autograd, bench_train, nn
    from fastconv.bench import build_net

    called = set()
    for name in dir(_core):
        fn = getattr(_core, name)
        if name.startswith("_") or not callable(fn) or isinstance(fn, type):
            continue

        def spy(*args, _name=name, _fn=fn, **kwargs):
            called.add(_name)
            return _fn(*args, **kwargs)

        monkeypatch.setattr(_core, name, spy)
    model, x, y, kw = bench_train.step_setup("resnet18", 2, 32)
    bench_train.training_step("fastconv", "resnet18", x, y, kw, model)()
    spec = json.loads((resources.files("fastconv.suites") / "convnet_benchmarks.json").read_text())[
        "nets"
    ]["googlenet_v1"]
    net = build_net(spec, nn, lambda ts: autograd.concat(ts, axis=1))
    net(autograd.Tensor(np.zeros((4, 3, 224, 224), np.float32))).sum().backward()
    clocked = {n for _, names in bench_train.KERNEL_GROUPS for n in names}
    assert "relu_backward_rows" in called and "max_pool2d_backward" in called
    assert called - clocked - BOOKKEEPING == set()


def test_kernel_clock_restores_after_an_error():
    from fastconv import _core, bench_train

    original = _core.conv2d_forward
    with pytest.raises(RuntimeError, match="inside"):
        with bench_train.kernel_clock({}):
            assert _core.conv2d_forward is not original
            raise RuntimeError("inside")
    assert _core.conv2d_forward is original

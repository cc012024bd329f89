"""bench/thread_scaling.py: ``fastconv bench infer`` at several thread counts, one process each,
merged into speed-ups over the fewest threads (LeNet-5, small)."""

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "thread_scaling.py"


def _module():
    spec = importlib.util.spec_from_file_location("thread_scaling", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(t, plan_ms, peer_ms, gflops, sgemm):
    row = {"net": "n", "batch": 1, "ms": {"plan": plan_ms}, "gflops": gflops}
    row["best_peer"] = "torch" if peer_ms else None
    row["vs_best_peer"] = peer_ms / plan_ms if peer_ms else None
    if peer_ms:
        row["ms"]["torch"] = peer_ms
    return {"meta": {"threads": t, "sgemm_gflops": sgemm}, "rows": [row]}


def test_scaling_rows_speedups_and_efficiency():
    ts = _module()
    runs = {1: _run(1, 40.0, 50.0, 10.0, 100.0), 4: _run(4, 16.0, 10.0, 25.0, 400.0)}
    (row,) = ts.scaling_rows(runs)
    one, four = row["threads"][1], row["threads"][4]
    assert one["speedup"] == 1.0 and one["efficiency"] == 1.0
    assert four["speedup"] == pytest.approx(2.5) and four["efficiency"] == pytest.approx(0.625)
    assert four["peer_speedup"] == pytest.approx(5.0)
    assert four["vs_best_peer"] == pytest.approx(10 / 16)
    text = ts.format_table([row], runs)
    assert "1t 100, 4t 400 GFLOP/s" in text
    assert "    2.50  0.62" in text and "6%" in text  # 25 of 400 GFLOP/s
    # the base is the fewest threads measured: from 2 threads, ideal at 4 is 4, not 2
    runs = {2: _run(2, 20.0, None, 10.0, 100.0), 4: _run(4, 10.0, None, 20.0, 200.0)}
    (row,) = ts.scaling_rows(runs)
    assert row["threads"][4]["speedup"] == pytest.approx(4.0)
    assert row["threads"][4]["peer_speedup"] is None
    assert " - " in ts.format_table([row], runs)


@pytest.mark.slow  # two bench infer processes
def test_thread_scaling_runs_each_count_and_writes_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    ts = _module()
    out, png, keep = tmp_path / "s.json", tmp_path / "s.png", tmp_path / "runs"
    args = ["--threads", "2,1", "--nets", "lenet5", "--batches", "1", "--repeat", "1"]
    args += ["--compare", "", "--json", str(out), "--plot", str(png), "--keep", str(keep)]
    assert ts.main(args) == 0
    text = capsys.readouterr().out
    assert "speed-up" in text and "lenet5" in text
    res = json.loads(out.read_text())
    assert set(res["meta"]) == {"1", "2"}
    assert res["meta"]["2"]["threads"] == 2
    (row,) = res["rows"]
    for t in ("1", "2"):
        kept = json.loads((keep / f"infer-{t}t.json").read_text())
        assert row["threads"][t]["plan_ms"] == kept["rows"][0]["ms"]["plan"]
    assert row["threads"]["1"]["speedup"] == 1.0
    assert png.stat().st_size > 1000


def test_thread_scaling_rejects_bad_threads(capsys):
    ts = _module()
    with pytest.raises(SystemExit):
        ts.main(["--threads", "0,2"])
    assert "--threads" in capsys.readouterr().err


def _steps(times, algos=("winograd", "gemm1x1", None)):
    ops = ("conv", "conv", "max_pool")
    return [
        {"op": op, "algo": a, "in": [1, 8, 4, 4], "out": [1, 8, 4, 4], "fused": [], "s": t}
        for op, a, t in zip(ops, algos, times)
    ]


def test_step_rows_sum_kinds_and_name_the_steps_that_scale_worst():
    ts = _module()
    per = {1: _steps([4e-3, 2e-3, 1e-3]), 4: _steps([1e-3, 1.6e-3, 0.25e-3])}
    kinds, steps = ts.step_rows(per)
    assert kinds["conv/winograd"] == {1: 4e-3, 4: 1e-3}
    assert kinds["conv/gemm1x1"] == {1: 2e-3, 4: 1.6e-3}
    assert kinds["max_pool"] == {1: 1e-3, 4: 0.25e-3}
    assert [s["index"] for s in steps] == [0, 1, 2]
    text = ts.format_steps("n batch 1", per, worst=1)
    lines = text.splitlines()
    # kinds by their time at the most threads: the 1x1 GEMM first, at 1.25x over one thread
    assert lines[2].startswith("conv/gemm1x1") and "( 1.2)" in lines[2]
    assert lines[5].startswith("all steps") and "( 2.5)" in lines[5]  # 7 ms -> 2.85 ms: 2.46
    # the one step with the most time over the ideal (1.6 - 2/4 = 1.1 ms) is the GEMM's
    assert "#1" in lines[-1] and "gemm1x1" in lines[-1] and "speed-up 1.2" in lines[-1]


def test_step_rows_refuse_plans_of_different_lengths():
    ts = _module()
    with pytest.raises(ValueError, match="steps"):
        ts.step_rows({1: _steps([1e-3, 1e-3, 1e-3]), 2: _steps([1e-3, 1e-3])})


def test_steps_cases_parse_and_reject():
    ts = _module()
    assert ts._cases("resnet50:8,googlenet") == [("resnet50", 8), ("googlenet", 1)]
    with pytest.raises(Exception, match="NET:BATCH"):
        ts._cases("resnet50:x")


@pytest.mark.slow  # two profiling processes
def test_thread_scaling_steps_only_profiles_each_count(tmp_path, capsys):
    ts = _module()
    out = tmp_path / "s.json"
    args = ["--threads", "1,2", "--steps", "lenet5:2", "--steps-repeat", "1", "--no-bench"]
    assert ts.main([*args, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lenet5 batch 2: step times summed by kind" in text and "all steps" in text
    res = json.loads(out.read_text())
    (prof,) = res["steps"]
    assert prof["net"] == "lenet5" and prof["batch"] == 2
    one, two = prof["threads"]["1"], prof["threads"]["2"]
    assert len(one) == len(two) > 3 and all(s["s"] > 0 for s in one + two)
    assert [s["op"] for s in one] == [s["op"] for s in two]
    assert "rows" not in res  # --no-bench: no bench infer runs


def test_thread_scaling_no_bench_needs_steps(capsys):
    ts = _module()
    with pytest.raises(SystemExit):
        ts.main(["--no-bench"])
    assert "--steps" in capsys.readouterr().err

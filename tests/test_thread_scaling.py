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

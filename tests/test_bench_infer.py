"""fastconv bench infer: the table, the JSON rows and the plot, on LeNet-5 (small), with PyTorch
as the peer where installed; peers that are missing are reported, not fatal."""

import json

import numpy as np
import pytest

from fastconv import bench_infer, inference, models


def test_net_flops_counts_convolutions_and_linear_layers():
    """LeNet-5's multiply-adds, counted by hand: C1 6x28x28x25, C3 16x10x10x150 (full table),
    C5 120x400, F6 84x120, output 10x84."""
    model = models.lenet5().eval()
    x = np.zeros((2, 1, 32, 32), np.float32)
    macs = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 120 * 400 + 84 * 120 + 10 * 84
    assert bench_infer.net_flops(inference._graph.capture(model, x), x.shape) == 2 * 2 * macs


@pytest.mark.slow  # compiles and times whole networks against their peers
def test_bench_infer_runs_and_writes_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "infer.json", tmp_path / "infer.png"
    rc = bench_infer.main(
        [
            "--nets",
            "lenet5",
            "--batches",
            "1,2",
            "--repeat",
            "2",
            "--threads",
            "1",
            "--no-progress",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "lenet5" in text and "plan ms" in text and "SGEMM rate" in text
    res = json.loads(out.read_text())
    assert [r["batch"] for r in res["rows"]] == [1, 2]
    for r in res["rows"]:
        assert r["ms"]["plan"] > 0 and r["ms"]["eager"] > 0
        assert r["ms"]["plan"] <= r["median_ms"]["plan"] <= r["max_ms"]["plan"]
        assert r["max_rel_err"]["eager"] < 1e-5  # the plan computes the eager model
        assert r["round_trip_ns"] is None  # (one thread: no probe between two CPUs)
        peers = [p for p in bench_infer.PEERS if p in r["ms"]]
        assert set(peers) | set(r["skipped"]) == set(bench_infer.PEERS)
        if peers:
            assert r["best_peer"] in peers and r["vs_best_peer"] > 0
            assert all(r["max_rel_err"][p] < 1e-4 for p in peers)
    assert png.stat().st_size > 1000


def test_bench_infer_rejects_bad_options(capsys):
    with pytest.raises(SystemExit) as e:
        bench_infer.main(["--nets", "nosuchnet"])
    assert e.value.code == 2 and "nosuchnet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench_infer.main(["--batches", "0"])
    assert e.value.code == 2


def _row(net, rt):
    return {
        "net": net,
        "batch": 1,
        "ms": {"plan": 10.0, "eager": 12.0, "torch": 11.0},
        "best_peer": "torch",
        "vs_best_peer": 1.1,
        "images_per_s": 100.0,
        "gflops": 50.0,
        "compile_s": 0.5,
        "skipped": {},
        "plan_round_trip_ns": rt,
    }


def test_table_gives_the_cores_round_trip_of_the_plans_best_round():
    text = bench_infer.format_table([_row("resnet18", 62.0), _row("resnet50", 318.4)], 100.0)
    lines = text.splitlines()
    assert lines[0].rstrip().endswith("cores ns")
    assert lines[1].split()[-1] == "62" and lines[2].split()[-1] == "318"
    assert "lowest in this run 62 ns" in text
    # without a probe (one thread, or no affinity masks): no column, no note
    text = bench_infer.format_table([_row("resnet18", None)], 100.0)
    assert "cores ns" not in text and "round trip" not in text

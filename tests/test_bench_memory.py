"""`fastconv bench memory` end to end on small settings: each library runs in a process of its
own, its row is complete and consistent, fastconv's process never imports torch, a failing
process is an error that says why, and --json/--plot write their files. (Neither memory nor
speed is asserted against the peer: the rows are measurements, the command reports them.)"""

import json

import pytest

from fastconv import bench_memory, cli


def test_fastconv_process_row():
    row = bench_memory.measure("fastconv", "resnet18", 2, 2, 2, size=32)
    assert (row["net"], row["batch"], row["size"], row["lib"], row["steps"]) == (
        "resnet18",
        2,
        32,
        "fastconv",
        2,
    )
    assert row["torch_imported"] is False  # (its peak must not count torch's import)
    assert 0 < row["rss_before_mib"] <= row["peak_mib"]
    assert 0 < row["step_ms"] and row["step_ms"] <= row["first_step_ms"]


def test_failing_process_says_why():
    with pytest.raises(
        RuntimeError, match=r"no_such_net b1: .*exit status [1-9]\): KeyError: 'no_such_net'"
    ):
        bench_memory.measure("fastconv", "no_such_net", 1, 1, 1, size=32)


def test_table_compares_peaks_per_case():
    rows = [
        {"net": "resnet50", "batch": 16, "lib": "fastconv", "rss_before_mib": 160.0,
         "peak_mib": 2100.0, "step_ms": 3000.0},
        {"net": "resnet50", "batch": 16, "lib": "torch", "rss_before_mib": 480.0,
         "peak_mib": 2400.0, "step_ms": 5000.0},
    ]  # fmt: skip
    lines = bench_memory.format_table(rows).splitlines()
    assert lines[1].split()[-1] == "0.88x"  # 2100 / 2400
    assert lines[2].split()[-1] == "5000.0"  # (no ratio on the peer's own row)


def test_bad_options_are_usage_errors(capsys):
    for argv in (["--nets", ""], ["--nets", "no_such_net"], ["--batches", "0"]):
        with pytest.raises(SystemExit) as e:
            bench_memory.main(argv)
        assert e.value.code == 2
    assert "--nets" in capsys.readouterr().err


@pytest.mark.slow  # two fresh processes, one of them importing torch
def test_bench_memory_json_and_plot(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "m.json", tmp_path / "m.png"
    argv = ["bench", "memory", "--nets", "resnet18", "--batches", "2", "--size", "32"]
    argv += ["--repeat", "1", "--no-progress", "--json", str(out), "--plot", str(png)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "peak RSS" in text and "resnet18" in text
    res = json.loads(out.read_text())
    assert res["meta"]["steps"] == 1
    rows = {r["lib"]: r for r in res["rows"]}
    assert set(rows) == {"fastconv", "torch"}
    assert rows["torch"]["torch_imported"] and not rows["fastconv"]["torch_imported"]
    for r in rows.values():
        assert 0 < r["rss_before_mib"] <= r["peak_mib"]
    assert png.stat().st_size > 0

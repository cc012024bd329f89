"""`fastconv bench auto` on tiny shapes: its case list, that every listed algorithm is timed in
every direction next to auto's and the tuned choice, the summary's arithmetic on hand-made rows,
that the user's autotune state survives, the JSON, and that bad options stop before any work.
(Speed itself is never asserted.)"""

import json
import math
import time

import numpy as np
import pytest

import fastconv
from fastconv import _core, bench, bench_auto, cli
from fastconv import functional as F
from fastconv.bench_auto import Case


@pytest.fixture
def quick(monkeypatch):
    """No warm-up time between libraries and no 2048^3 SGEMM: the tests check plumbing."""
    monkeypatch.setattr(bench, "SWITCH_WARM_S", 0)
    monkeypatch.setattr(bench_auto, "sgemm_rate", lambda threads: 1.0)


@pytest.fixture
def autotune_off():
    fastconv.set_autotune("off")
    fastconv.clear_autotune()
    yield
    fastconv.set_autotune("off")
    fastconv.clear_autotune()


TINY = [
    Case("t", "3x3 8>8 10", (1, 8, 10, 10), (8, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    Case("t", "dw3x3/2 16 9", (2, 16, 9, 9), (16, 1, 3, 3), (2, 2), (1, 1), (1, 1), 16),
    Case("t", "1x7 4>6 7", (1, 4, 7, 7), (6, 4, 1, 7), (1, 1), (0, 3), (1, 1), 1),
    Case("t", "1x1 8>12 6", (1, 8, 6, 6), (12, 8, 1, 1), (1, 1), (0, 0), (1, 1), 1),
]


def test_case_list_has_the_nets_at_both_batches_without_duplicates():
    cases = bench_auto.cases((1, 8))
    for batch in (1, 8):
        mine = [c for c in cases if c.x_shape[0] == batch]
        assert len({c.geometry for c in mine}) == len(mine)  # no shape twice
        by_name = {c.name: c for c in mine}
        named = set(by_name) | {a for c in mine for a in c.also}
        stem = by_name["r50 stem 7x7/2 3>64 224"]
        assert stem.geometry == ((batch, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3), (1, 1), 1)
        # torchvision v1.5: the stride-2 3x3 in the first block of stages 2-4
        for width, hw in ((128, 56), (256, 28), (512, 14)):
            c = by_name[f"r50 3x3/2 {width} {hw}"]
            assert c.stride == (2, 2) and c.x_shape[2:] == (hw, hw)
        assert {f"L{i}" for i in range(1, 6)} <= named
        assert {c[0] for c in bench.shape_cases(batch)} <= named
        vgg = [c for c in mine if c.suite == "vgg16"]
        assert {(c.x_shape[1], c.w_shape[0], c.x_shape[2]) for c in vgg} == {
            (3, 64, 224),
            (64, 64, 224),
            (64, 128, 112),
            (128, 128, 112),
            (128, 256, 56),
            (256, 256, 56),
            (256, 512, 28),
            (512, 512, 28),
            (512, 512, 14),
        }
        inc = [c for c in mine if c.suite == "inception_v3"]
        assert len(inc) >= 8
        assert {(1, 7), (7, 1)} <= {c.w_shape[2:] for c in inc}
        assert by_name["inc3 3x3/2 3>32 299"].stride == (2, 2)
        for c in mine:  # every case is a valid convolution with a positive output
            assert all(v > 0 for v in bench_auto.out_shape(c))
    assert len(cases) == 2 * len(bench_auto.cases((1,)))
    only = bench_auto.cases((1,), ["VGG16", "inc3 1x7"])
    assert len(only) == 10 and {c.suite for c in only} == {"vgg16", "inception_v3"}


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.name)
def test_every_listed_algorithm_is_timed_in_every_direction(quick, autotune_off, case):
    torch = bench.import_torch(F.get_num_threads())
    rows = bench_auto.bench_case(case, torch, repeat=1)
    assert [r["dir"] for r in rows] == ["fwd", "bwd_data", "bwd_weight"]
    geo = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    for r, (_, full) in zip(rows, bench_auto.DIRECTIONS):
        listed = F.algorithms(case.x_shape, case.w_shape, direction=full, **geo)
        # (im2col on a 1x1 kernel is gemm1x1's code, timed once)
        skipped = {"reference"} | ({"im2col"} if "gemm1x1" in listed else set())
        assert set(r["ms"]) == set(listed) - skipped and "errors" not in r
        assert all(ms > 0 for ms in r["ms"].values())
        assert r["auto"] == listed[0]
        assert r["tuned"] in listed and r["tuned"] != "reference"
        assert r["fastest"] == min(r["ms"], key=r["ms"].get)
        assert r["auto_ratio"] == pytest.approx(r["ms"][r["auto"]] / r["fastest_ms"])
        assert r["auto_ratio"] >= 1 and r["tuned_ratio"] >= 1
        assert r["auto_gflops"] > 0
        if torch is not None:
            assert r["auto_vs_torch"] == pytest.approx(r["torch_ms"] / r["auto_ms"])
    # autotuning was on only inside the run, and what it measured is gone
    assert fastconv.get_autotune() == "off" and _core.get_autotune() == 0
    assert _core.autotune_size() == 0


@pytest.mark.parametrize("mode", ["on", "persist"])
def test_the_users_autotune_mode_and_table_are_restored(
    quick, autotune_off, mode, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # ("persist" reads its file from here)
    fastconv.set_autotune(mode)
    # a choice of the user's own, measured before the benchmark
    F.conv2d(np.ones((1, 3, 6, 6), np.float32), np.ones((2, 3, 3, 3), np.float32))
    before = _core.autotune_export()
    assert before
    bench_auto.bench_case(TINY[0], None, repeat=1)
    assert fastconv.get_autotune() == mode and _core.get_autotune() == 1
    assert _core.autotune_export() == before
    assert not list(tmp_path.rglob("autotune-*"))  # the persisted file was not written


def _row(case, batch, direction, auto_ratio, tuned_ratio, vs, auto="im2col"):
    return {
        "case": case,
        "batch": batch,
        "dir": direction,
        "auto": auto,
        "fastest": "im2col",
        "auto_ratio": auto_ratio,
        "tuned_ratio": tuned_ratio,
        "auto_vs_torch": vs,
    }


def test_summary_of_hand_made_rows():
    rows = [
        _row("a", 1, "fwd", 1.0, 1.0, 2.0),
        _row("a", 1, "bwd_data", 1.1, 1.04, 0.5, auto="winograd"),  # 1.10 counts as within
        _row("a", 8, "fwd", 1.5, 1.2, 8.0, auto="direct"),
        _row("b", 1, "bwd_weight", 3.0, None, None, auto="fft"),
    ]
    s = bench_auto.summarize(rows)
    assert s["rows"] == 4 and s["cases"] == 3
    assert s["auto_fastest_pct"] == 25.0
    assert s["auto_within_10pct"] == 50.0
    assert s["auto_worst_ratio"] == 3.0 and s["auto_worst_case"] == "b b1 bwd_weight"
    assert s["tuned_measured"] == 3
    assert s["tuned_within_5pct"] == pytest.approx(200 / 3)
    assert s["auto_vs_torch_geomean"] == pytest.approx(2.0)  # (2 * 0.5 * 8) ** (1/3)
    assert s["auto_vs_torch_min"] == 0.5 and s["auto_vs_torch_min_case"] == "a b1 bwd_data"
    assert s["below_0.9x_torch"] == 1
    assert s["far_rows"] is None and s["lowest_round_trip_ns"] is None  # (no probe)
    empty = bench_auto.summarize([])
    assert empty["rows"] == 0 and empty["auto_within_10pct"] is None
    assert empty["auto_vs_torch_geomean"] is None


def test_summary_counts_the_rows_measured_with_the_threads_far_apart():
    """A row's auto best round counts as far where the cores' round trip before it was 2.5x
    the run's lowest or more; the summary line names both counts."""
    rows = [
        _row("a", 1, "fwd", 1.0, 1.0, 2.0),
        _row("a", 1, "bwd_data", 1.0, 1.0, 0.5),
        _row("a", 8, "fwd", 1.0, 1.0, 0.8),
        _row("b", 1, "fwd", 1.0, 1.0, 1.2),
    ]
    for r, rt in zip(rows, [60.0, 320.0, 149.0, 150.0]):
        r["auto_round_trip_ns"] = rt
    s = bench_auto.summarize(rows)
    assert s["lowest_round_trip_ns"] == 60.0
    assert s["far_rows"] == 2  # 320 and 150 (= 2.5 x 60); 149 is not
    assert s["below_0.9x_torch"] == 2 and s["far_rows_below_0.9x_torch"] == 1
    meta = {"repeat": 3, "threads": 2, "sgemm_gflops": 100.0}
    text = bench_auto.format_summary(s, meta)
    assert "rows below 0.9x PyTorch: 2" in text
    assert "(60 ns)" in text and ": 2, 1 of them below 0.9x PyTorch" in text


def test_make_row_ratios_from_times():
    case = TINY[0]
    r = bench_auto.make_row(
        case,
        "fwd",
        {"im2col": 2.0, "winograd": 2.2, "direct": 5.0},
        auto="winograd",
        tuned="direct",
        torch_ms=4.4,
    )
    assert r["fastest"] == "im2col" and r["fastest_ms"] == 2.0
    assert r["auto_ratio"] == pytest.approx(1.1) and r["tuned_ratio"] == 2.5
    assert r["auto_vs_torch"] == pytest.approx(2.0)
    flops = 2.0 * 1 * 8 * 8 * 9 * 10 * 10
    assert r["auto_gflops"] == pytest.approx(flops / 2.2e-3 / 1e9)
    assert bench_auto.summarize([r])["auto_within_10pct"] == 100.0  # 2.2/2.0 is 1.1000000000000001
    untuned = bench_auto.make_row(case, "fwd", {"im2col": 1.0}, "im2col", None, None)
    assert untuned["tuned_ratio"] is None and untuned["auto_vs_torch"] is None
    assert math.isclose(untuned["auto_ratio"], 1.0)


@pytest.mark.slow  # the command end to end, with its matplotlib plot
def test_cli_prints_the_table_and_writes_json_and_plot(quick, autotune_off, tmp_path, capsys):
    out, png = tmp_path / "auto.json", tmp_path / "auto.png"
    argv = [
        "bench",
        "auto",
        "--cases",
        "dw3x3 512 14",
        "--batches",
        "1",
        "--repeat",
        "1",
        "--compare",
        "",
        "--no-progress",
        "--json",
        str(out),
    ]
    pytest.importorskip("matplotlib")
    assert cli.main(argv + ["--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "fastconv bench auto" in text and "within 10% of the fastest" in text
    assert "dw3x3 512 14 s1" in text
    res = json.loads(out.read_text())
    assert res["meta"]["batches"] == [1] and res["meta"]["sgemm_gflops"] == 1.0
    assert [r["dir"] for r in res["rows"]] == ["fwd", "bwd_data", "bwd_weight"]
    assert res["summary"]["rows"] == 3 and res["summary"]["cases"] == 1
    assert all(r["auto_gflops"] > 0 and r["torch_ms"] is None for r in res["rows"])
    assert png.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batches", "0"], "argument --batches: must be a comma list of integers >= 1, got '0'"),
        (["--batches", "1,x"], "argument --batches: must be a comma list of integers >= 1"),
        (["--repeat", "0"], "argument --repeat: must be an integer >= 1, got '0'"),
        (
            ["--cases", "vgg16,nothing-like-this"],
            "argument --cases: 'nothing-like-this' matches no case",
        ),
        (["--compare", "tensorflow"], "argument --compare: unknown 'tensorflow'"),
        (["--json", "nodir/x.json"], "argument --json: nodir/x.json: directory "),
    ],
)
def test_bad_options_exit_2_before_any_work(monkeypatch, capsys, argv, message):
    def forbidden(*a, **k):
        raise AssertionError("ran past validation")

    monkeypatch.setattr(bench_auto, "run", forbidden)
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "auto"] + argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_time_rounds_interleaves_and_warms_longer_after_a_change_of_library():
    log = []
    contenders = {
        name: (lambda name=name: log.append(name), lib)
        for name, lib in (("a", "fastconv"), ("b", "fastconv"), ("torch", "torch"))
    }
    times = bench.time_rounds(contenders, repeat=2, warm=0)
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2, "torch": 2}
    assert all(t >= 0 for v in times.values() for t in v)
    # rounds in order, each timed call straight after an untimed one of the same contender
    assert log == ["a", "a", "b", "b", "torch", "torch"] * 2
    log.clear()
    bench.time_rounds(contenders, repeat=1, warm=0.05)
    # after a change of library: untimed calls for 50 ms (many here), then the timed one
    assert log.count("a") > 3 and log.count("torch") > 3 and log.count("b") == 2
    assert log == sorted(log, key=["a", "b", "torch"].index)


def test_time_rounds_drops_slow_contenders_after_the_first_round_but_keeps_the_named():
    log = []
    cost = {"fast": 0.0, "slow": 0.004, "kept": 0.004}

    def make(name):
        def fn():
            log.append(name)
            t_end = time.perf_counter() + cost[name]
            while time.perf_counter() < t_end:
                pass

        return fn

    contenders = {name: (make(name), "fastconv") for name in cost}
    times = bench.time_rounds(contenders, repeat=3, warm=0, keep={"kept"}, drop_beyond=3.0)
    assert {k: len(v) for k, v in times.items()} == {"fast": 3, "slow": 1, "kept": 3}
    assert log.count("slow") == 2  # (its untimed and timed call of the first round)


def test_time_rounds_probes_before_each_round_and_warms_up_after():
    """With a probe: its figure before every round, in order, and the first contender's warm-up
    after it (the probe pinned the timing thread for a moment)."""
    log, probes = [], []
    contenders = {name: (lambda name=name: log.append(name), "fastconv") for name in ("a", "b")}

    def probe():
        log.append("probe")
        return 100.0 * (1 + log.count("probe"))

    times = bench.time_rounds(contenders, repeat=3, warm=0.02, probe=probe, probes=probes)
    assert probes == [200.0, 300.0, 400.0]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    rounds = " ".join(log).split("probe")[1:]
    assert len(rounds) == 3
    for r in rounds:  # a's 20 ms of untimed calls again after each probe; b one untimed call
        calls = r.split()
        assert calls.count("a") > 3 and calls.count("b") == 2


def test_core_probe_reads_the_first_two_cpus():
    import os

    probe = bench.core_probe(seconds=0.005)
    if len(os.sched_getaffinity(0)) < 2:
        assert probe is None
    else:
        assert 1 < probe() < 1e6

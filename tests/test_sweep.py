"""The sweep harness: timer arithmetic, the budget guard, sharding, resume, rows, isolation.

The last test runs ``python -m benchmarks sweep`` for real, on a tiny shape, with torch
and deliberately broken backends (tests/sweep_backends.py): one hangs in native code holding
the GIL, one segfaults, one raises, one is too slow for the budget, two decline the problem.
Each must cost only its own case, leave a row saying what happened, and a rerun must measure
again only what did not measure for a reason that may not recur (the hang, the crash, the
failure), never what ran or was skipped by declaration.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from benchmarks import machine, records, sweep_plan, sweep_report, timer
from benchmarks.__main__ import main as sweep_main
from benchmarks.shapes import shape_set
from impls import registry
from impls.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[1]


# --- timer ---------------------------------------------------------------------------------

def test_rounds_stop_at_the_budget_but_not_before_the_minimum():
    assert timer.calls_per_round(1e-6) == 100 and timer.calls_per_round(0.01) == 1
    flushes = []
    rounds = timer.time_rounds(lambda: time.sleep(0.01), "cpu", budget=0.05, min_rounds=2,
                               before_round=lambda: flushes.append(1))
    assert 3 <= len(rounds) <= 7 and len(flushes) == len(rounds)
    assert all(r >= 0.01 for r in rounds)
    slow = timer.time_rounds(lambda: time.sleep(0.03), "cpu", budget=0.0, min_rounds=3)
    assert len(slow) == 3
    grouped = timer.time_rounds(lambda: None, "cpu", budget=0.0, iterations=50, min_rounds=1)
    assert len(grouped) == 1


def _drifting_rounds(monkeypatch, min_rounds, step=1.0):
    """time_interleaved over a: 1 unit a call, b: 3, on a machine that slows by ``step``
    units at every call; (the calls in order, a's rounds, b's rounds)."""
    calls, drift = [], iter(range(1, 10_000))
    clock = {"now": 0.0}

    def fake(name, cost):
        def call():
            calls.append(name)
            clock["now"] += cost * (1 + step * (next(drift) - 1))
        return call

    monkeypatch.setattr(timer.time, "perf_counter", lambda: clock["now"])
    mine, theirs = timer.time_interleaved([fake("a", 1.0), fake("b", 3.0)], "cpu",
                                          budget=0.0, iterations=[1, 2], min_rounds=min_rounds)
    monkeypatch.undo()
    return calls, mine, theirs


def test_interleaved_rounds_take_turns_and_their_ratio_cancels_a_shared_drift(monkeypatch):
    calls, mine, theirs = _drifting_rounds(monkeypatch, 4)
    assert calls == ["a", "b", "b", "b", "b", "a"] * 2 and len(mine) == len(theirs) == 4
    ratio, interval = timer.paired_ratio(mine, 1, theirs, 2)
    # Each call costs more than the last (a slowing machine): a's rounds grow from 1 to 12
    # units, and a pair's ratio is off by up to 2.5x, one way when a runs first and the
    # other way when b does: the median lands within 5% of the truth, 3. (With a always
    # first it read 3.9: every pair had favoured a.)
    assert ratio == pytest.approx(3.0, rel=0.05) and interval is None  # 4 rounds: < 95%
    assert timer.paired_ratio([1.0] * 9, 1, [2.0] * 9, 1) == (2.0, [2.0, 2.0])
    # An odd count would leave one order once more often, and the median on its side (5
    # rounds read 3.3): the rounds end on an even count, each order as often.
    for asked, got in ((3, 4), (5, 6), (7, 8)):
        _, mine, theirs = _drifting_rounds(monkeypatch, asked, step=0.05)
        assert len(mine) == len(theirs) == got
        assert timer.paired_ratio(mine, 1, theirs, 2)[0] == pytest.approx(3.0, rel=0.01)


def test_a_paired_ratio_s_interval_is_the_median_s_order_statistics():
    ratios = [float(i) for i in range(1, 101)]  # partner time i against own time 1
    median, (low, high) = timer.paired_ratio([1.0] * 100, 1, ratios, 1)
    assert median == 50.5 and (low, high) == (40.0, 61.0)  # ranks 40 and 61 of 100
    # Below 6 values no order statistics hold the median with 95% (5: 94%); 6: the range.
    assert timer.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    assert timer.median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == [1.0, 6.0]
    low, high = timer.median_interval([float(i) for i in range(20_000)])
    assert (low, high) == (9860.0, 10139.0)  # n/2 -+ 1.96 sqrt(n)/2, as the normal limit


def test_the_peak_gemm_grows_only_while_a_call_stays_short(monkeypatch):
    """A dtype the CPU computes slowly (float16 without FP16 units: 40 s per 2048 GEMM) is
    measured on the size it can afford, not for minutes on the largest."""
    from benchmarks import machine

    sizes = []
    monkeypatch.setattr(timer, "time_once", lambda fn, device: sizes.append(
        fn.args[0].shape[0]) or (2 * fn.args[0].shape[0] ** 3 / 1e9))  # 1 GFLOP/s
    gflops, n = machine.peak_gemm("cpu", torch.float32)
    assert gflops == pytest.approx(1.0) and n == 512
    # 256: 34 ms a call, 8x is 0.27 s, so 512 is tried; 512: 0.27 s, 8x over 0.5 s: kept.
    assert set(sizes) == {256, 512}


def test_noise_warning_uses_torch_utils_benchmark_thresholds():
    assert timer.noise_warning(1.0, 0.10) == ""
    assert timer.noise_warning(1.0, 0.2).startswith("noisy")
    assert timer.noise_warning(1.0, 0.3).startswith("unreliable")


def test_warm_up_runs_at_least_min_calls_and_returns_their_mean():
    calls = []
    mean = timer.warm_up(lambda: calls.append(time.sleep(0.01)), "cpu", seconds=0, min_calls=3)
    assert len(calls) == 3 and 0.01 <= mean < 0.5


@pytest.mark.parametrize("name", ["resnet50", "large-kernel", "grid", "edge"])
def test_crop_keeps_the_conv_and_shrinks_only_the_output(name):
    for e in shape_set(name):
        s = e.spec
        for side in (1, 2, 5):
            c = timer.crop(s, side, side)
            assert (c.oh, c.ow) == (min(side, s.oh), min(side, s.ow)) or c == s
            same = ("mb", "ic", "oc", "g", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw")
            assert all(getattr(c, k) == getattr(s, k) for k in same)
        assert timer.crop(s, s.oh, s.ow) == s  # else the probe would never reach the full size


def _per_position(seconds, overhead=0.0, calls=None):
    def run(s):
        if calls is not None:
            calls.append(s)
        return overhead + seconds * s.oh * s.ow
    return run


SPEC64 = ConvSpec.parse("mb1ic8ih64oc8oh64kh3ph1")


def test_guard_extrapolates_per_position_work_exactly():
    calls = []
    guess = timer.predict(_per_position(1e-3, calls=calls), SPEC64)  # naive-like
    assert guess.how.startswith("extrapolated")
    assert math.isclose(guess.seconds, 1e-3 * 64 * 64)
    assert max(c.oh for c in calls) == 16  # the first crop past PROBE_S (0.256 s)


def test_guard_measures_what_is_cheap_and_never_scales_up_overhead():
    cheap = timer.predict(lambda s: 1e-5, SPEC64)
    assert cheap.how == "measured" and cheap.seconds == 1e-5
    flat = timer.predict(lambda s: 0.3, SPEC64)  # slow but not growing: overhead or noise
    assert flat.how == "measured" and flat.seconds == 0.3
    times = iter([0.5] + [1e-5] * 20)  # lazy setup in the very first call only
    assert timer.predict(lambda s: next(times), SPEC64).how == "measured"


def test_guard_gives_up_on_a_crop_over_the_ceiling():
    calls = []
    guess = timer.predict(_per_position(0.0, overhead=5.0, calls=calls), SPEC64, ceiling=2.0)
    assert guess.seconds == 5.0 and guess.how.startswith("at least")
    assert len(calls) == 2  # the first crop, repeated once (one slow call could be a stall)


# --- plan and shards -----------------------------------------------------------------------

def test_shards_partition_the_cases_by_shape():
    cases = sweep_plan.plan(("resnet50", "grid-small"), ["torch", "unfold"])
    for n in (1, 2, 3, 7):
        shards = [sweep_plan.shard(cases, i, n) for i in range(1, n + 1)]
        keys = [c.key for s in shards for c in s]
        assert sorted(keys) == sorted(c.key for c in cases) and len(set(keys)) == len(keys)
        shapes = [{c.shape_key for c in s} for s in shards]
        assert sum(len(s) for s in shapes) == len(set().union(*shapes))  # never split a shape
    assert len({c.key for c in cases}) == len({c.id for c in cases}) == len(cases)


@pytest.mark.parametrize("bad", ["0/2", "3/2", "1", "a/b", ""])
def test_shard_syntax_is_one_based_i_of_n(bad):
    with pytest.raises(ValueError, match="shard"):
        sweep_plan.parse_shard(bad)


def test_plan_is_shape_major_then_direction_then_backend():
    cases = sweep_plan.plan(("resnet50",), ["torch", "unfold"])
    first = [(c.entry.spec.name, c.direction, c.backend) for c in cases[:6]]
    layer = first[0][0]
    assert first == [(layer, d, b) for d in ("forward", "backward-data", "backward-weights")
                     for b in ("torch", "unfold")]
    assert len({c.key for c in cases}) == len({c.id for c in cases}) == len(cases)
    assert {c.group for c in cases[:2]} == {f"resnet50 {cases[0].entry.descriptor} forward"}
    only = sweep_plan.plan(("resnet50",), ["torch"], directions="backward-weights")
    assert {c.direction for c in only} == {"backward-weights"}
    with pytest.raises(ValueError, match="direction 'sideways'"):
        sweep_plan.plan(("resnet50",), ["torch"], directions=["forward", "sideways"])


def test_tf32_is_another_number_with_its_own_keys_and_file():
    strict = sweep_plan.plan(("resnet50",), ["torch"], directions="forward", device="cuda")
    tf32 = sweep_plan.plan(("resnet50",), ["torch"], directions="forward", device="cuda",
                           tf32=True)
    # A strict run's rows must not make a TF32 run think it is done (resume), nor the reverse
    assert not {c.key for c in strict} & {c.key for c in tf32}
    assert all(c.key.endswith("|warm|tf32") and c.row_fields()["tf32"] for c in tf32)
    assert strict[0].key.endswith("|warm")  # unchanged: files written before still resume
    assert sweep_plan.results_path("cuda", "float32", 32, tf32=True).name == \
        "cuda-float32-tf32-mb32.jsonl"
    assert sweep_plan.results_path("cuda", "float32", 32).name == "cuda-float32-mb32.jsonl"
    with pytest.raises(ValueError, match="tf32.*bfloat16"):
        sweep_plan.plan(("resnet50",), ["torch"], dtype="bfloat16", tf32=True)
    with pytest.raises(ValueError, match="tf32.*device cpu has none"):
        sweep_plan.plan(("resnet50",), ["torch"], tf32=True)


def test_memory_format_is_another_number_with_its_own_keys_in_the_same_file(tmp_path):
    """--memory-format channels_last hands the backend NHWC input and weight, in forward
    and backward; its rows are keyed apart from NCHW ones (a resume of one must not count
    the other as done), so both can share a file and the summary tells them apart."""
    (tmp_path / "tiny").write_text(TINY)
    nchw = _sweep(tmp_path, "--backend", "sweep_backends:channels_last_only")
    assert nchw.returncode == 1, nchw.stdout + nchw.stderr
    nhwc = _sweep(tmp_path, "--backend", "sweep_backends:channels_last_only",
                  "--memory-format", "channels_last")
    assert nhwc.returncode == 0, nhwc.stdout + nhwc.stderr
    rows = list(records.ResultsFile(tmp_path / "out.jsonl").rows())
    assert len(rows) == 6 and len({r["key"] for r in rows}) == 6
    for r in rows:
        channels_last = r["memory_format"] == "channels_last"
        assert r["key"].endswith("|channels_last") == channels_last
        assert r["status"] == ("ok" if channels_last else "failed"), r
    assert "is not channels_last: strides" in rows[0]["reason"]
    assert sweep_plan.plan(("resnet50",), ["torch"])[0].key.endswith("|warm")  # unchanged
    with pytest.raises(ValueError, match="memory_format 'nhwc'"):
        sweep_plan.plan(("resnet50",), ["torch"], memory_format="nhwc")


def test_a_cuda_sweep_without_cuda_is_refused_before_anything_runs(monkeypatch, tmp_path,
                                                                   capsys):
    from impls import frontend

    monkeypatch.setattr(frontend, "_cuda_devices", lambda: 0)
    results = tmp_path / "r.jsonl"
    assert sweep_main(["sweep", "--device", "cuda", "--shape-set", "edge", "--backend",
                       "torch", "--results", str(results)]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not results.exists()
    monkeypatch.setattr(frontend, "_cuda_devices", lambda: 1)
    assert frontend.missing_device("cuda:1") == "torch sees 1 CUDA device(s) here (cuda:0 " \
        "to cuda:0)"
    assert frontend.missing_device("cuda:0") == frontend.missing_device("cuda") == ""
    assert frontend.missing_device("cpu") == ""


def test_rows_written_before_the_tf32_field_take_it_from_their_machine(tmp_path):
    results = records.ResultsFile(tmp_path / "old.jsonl")
    for machine_id, tf32 in (("m-tf32", True), ("m-strict", False)):
        results.append({"record": "machine", "id": machine_id, "gpu": {"tf32_cudnn": tf32}})
        key = f"torch|resnet50|d-{machine_id}|float32|cuda|forward|warm"
        results.append({"record": "case", "key": key, "backend": "torch", "dtype": "float32",
                        "device": "cuda", "machine_id": machine_id, "status": "ok"})
    rows = {r["machine_id"]: r for r in results.rows()}
    assert rows["m-tf32"]["tf32"] and rows["m-tf32"]["key"].endswith("|warm|tf32")
    assert not rows["m-strict"]["tf32"] and rows["m-strict"]["key"].endswith("|warm")
    assert results.done() == {rows["m-tf32"]["key"], rows["m-strict"]["key"]}


def test_sweep_cli_direction_flag():
    from benchmarks.sweep import _directions

    assert _directions(None) is None  # the plan's own default
    assert _directions(["backward-weights", "forward"]) == ("forward", "backward-weights")
    assert _directions(["forward", "all"]) == sweep_plan.DIRECTIONS


def test_a_case_above_the_peak_is_not_called_a_mismeasured_peak_when_its_method_saves_flops():
    """FFT and Winograd beat the GEMM peak in direct-convolution FLOPs by design: the warning
    names each backend (auto by the backend it ran) instead of blaming the peak alone."""
    def row(backend, fraction, **extra):
        return {"backend": backend, "fraction_of_peak": fraction, "status": "ok",
                **{"reason": "", **extra}}

    rows = [row("fft", 4.6), row("auto", 4.5, ran="fft"), row("torch", 1.0), row("fft", 1.5)]
    (text,) = sweep_report.doubts(rows, [])
    assert text.startswith("3 cases ran above the measured GEMM peak in direct-convolution "
                           "FLOPs (auto (ran fft): 1, fft: 2)")
    assert "fewer operations" in text and sweep_report.doubts([row("torch", 1.0)], []) == []
    noisy = [row("torch", 1.0, reason="noisy", noise=0.2),
             row("unfold", 0.5, reason="noisy", noise=0.3, paired_ci=[0.49, 0.51])]
    assert sweep_report.doubts(noisy, []) == [
        "2 of 2 timed cases have IQR > 10% of the median (1 of them paired: their ratios are "
        "judged by the 95% interval of the paired ratio, paired_ci, not by this spread)"]


def test_the_summary_doubts_rows_that_ran_on_a_busy_or_starved_machine():
    """The machine record's load average is the sweep's start; contention that begins later
    shows only in the rows. Steal time shows what no load average does: another guest of
    the hypervisor took the CPU (rounds then can be slow and steady, 32.0 +- 0.1 ms)."""
    def row(load, steal):
        return {"backend": "torch", "status": "ok", "reason": "", "noise": 0.01,
                "loadavg_1min": load, "steal": steal, "threads": 2}

    calm = {"loadavg_1min": 0.2, "cpus_usable": 2}
    # 2.5 is the sweep's own 2 threads and 0.5 more: not busy; 3.3 is 1.3 more.
    rows = [row(0.3, 0.0), row(3.3, 0.02), row(2.5, 0.4), row(3.6, 0.0)]
    load, steal = sweep_report.doubts(rows, [calm])
    assert load.startswith("load average up to 1.6 on 2 CPUs beyond the sweep's own threads "
                           "while 2 of 4 timed cases ran")
    assert steal.startswith("1 of 4 timed cases lost over 10% of the CPU (up to 40%)")
    assert steal.endswith(": their times are slower than this machine can do, however "
                          "steady their rounds look")
    (contended,) = sweep_report.doubts([{**row(0.3, 0.0), "others_cpu": 1.5}], [calm])
    assert contended == ("1 of 1 timed cases ran beside other processes that kept over 0.5 "
                         "CPUs busy (up to 1.5; others_cpu in their rows): their times are "
                         "slower than this machine can do, however steady their rounds look")
    assert sweep_report.doubts([row(2.0, 0.05), row(None, None)], [calm]) == []
    # Busy from the start: said once, by the machine record's warning.
    (busy, _) = sweep_report.doubts(rows, [{**calm, "loadavg_1min": 1.8}])
    assert busy.startswith("load average 1.8 on 2 CPUs")


def test_a_load_read_mid_measurement_is_judged_beyond_its_own_threads():
    """The gate reads the load average at its end, its 2 workers' threads still in it: a
    load of 2.3 on 2 CPUs is 0.3 of other processes, no warning; 3.3 is."""
    info = {"loadavg_1min": 2.3, "cpus_usable": 2}
    assert machine.busy_warning(info).startswith("load average 2.3 on 2 CPUs: other")
    assert machine.busy_warning(info, own_threads=2) == ""
    assert machine.busy_warning({**info, "loadavg_1min": 3.3}, own_threads=2).startswith(
        "load average 3.3 on 2 CPUs, 1.3 beyond its own 2 threads: other processes")


def test_steal_time_is_read_from_proc_stat(monkeypatch):
    ticks = machine.cpu_ticks()
    if ticks is None:
        pytest.skip("no /proc/stat here")
    assert 0 <= ticks[0] <= ticks[1]
    assert machine.stolen((10, 1000), (40, 1100)) == pytest.approx(0.3)
    # Idle time is left out: one busy CPU of two that lost a fifth reads a fifth, not 10%.
    proc = "cpu  {} 0 0 {} 0 0 0 {} 0 0\n"
    monkeypatch.setattr(machine, "_read", lambda path: proc.format(80, 100, 20))
    before = machine.cpu_ticks()
    monkeypatch.setattr(machine, "_read", lambda path: proc.format(160, 200, 40))
    assert machine.stolen(before, machine.cpu_ticks()) == pytest.approx(0.2)
    assert machine.stolen((10, 1000), (10, 1010)) is None  # 10 ticks: too short to tell
    assert machine.stolen(None, ticks) is None
    assert machine.steal_warning(0.05) == "" and machine.steal_warning(None) == ""
    assert machine.steal_warning(0.3).startswith("stolen: the hypervisor gave 30%")


def test_other_processes_busy_beside_a_case_are_measured(monkeypatch):
    """A process holding one of two cores made torch's 2-thread rounds a flat 32 ms (IQR
    0.3%) where 2.5 ms was right: what other processes ran meanwhile is the busy time of
    all CPUs less this process's own, and over half a CPU puts the row in doubt."""
    now = machine.cpu_use()
    if now is None:
        pytest.skip("no /proc/stat here")
    stat, own = "cpu  {} 0 {} 500 0 0 0 0 0 0\n", "1 (python 3) R " + "0 " * 10 + "{} {} 0 0\n"
    pages = {"/proc/stat": stat.format(1000, 200), "/proc/self/stat": own.format(300, 50)}
    monkeypatch.setattr(machine, "_read", lambda path: pages[path])
    monkeypatch.setattr(machine.time, "monotonic", lambda: 100.0)
    before = machine.cpu_use()
    assert before == (1200, 350, 100.0)
    pages = {"/proc/stat": stat.format(1300, 300), "/proc/self/stat": own.format(420, 80)}
    monkeypatch.setattr(machine.time, "monotonic", lambda: 102.0)  # 2 s, 100 ticks a s
    tick = machine.os.sysconf("SC_CLK_TCK")
    expected = (400 - 150) / tick / 2.0
    assert machine.others_cpu(before, machine.cpu_use()) == pytest.approx(expected)
    assert machine.others_cpu(before, (1300, 400, 100.05)) is None  # 50 ms: too short
    # A case timed in less than the window: the reading waits out the rest of it.
    slept = []
    monkeypatch.setattr(machine.time, "monotonic", lambda: 100.03 + sum(slept))
    monkeypatch.setattr(machine.time, "sleep", slept.append)
    assert machine.others_cpu_since(before) == pytest.approx((400 - 150) / tick / 0.101)
    assert slept == [pytest.approx(0.071)] and machine.others_cpu_since(None) is None
    assert machine.contention_warning(0.3) == "" and machine.contention_warning(None) == ""
    assert machine.contention_warning(0.9).startswith("contended: other processes kept 0.9")
    assert records.in_doubt({"others_cpu": 0.9}) and not records.in_doubt({"others_cpu": 0.1})


def test_summary_ratios_compare_within_one_direction():
    def row(backend, direction, seconds):
        return records.case_row(key=f"{backend}|{direction}", backend=backend, shape_set="s",
                                descriptor="d", direction=direction, status="ok",
                                median_s=seconds, count=1)

    lines = sweep_report.ratio_lines([row("torch", "forward", 1.0), row("unfold", "forward", 2.0),
                                      row("torch", "backward-data", 4.0),
                                      row("unfold", "backward-data", 1.0)])
    text = "\n".join(lines)
    assert "s forward (1 shapes)" in text and "s backward-data (1 shapes)" in text
    assert "speedup over torch: x0.5 " in lines[lines.index("s forward (1 shapes):") + 2]
    assert "speedup over torch: x4 " in lines[lines.index("s backward-data (1 shapes):") + 2]
    assert "noisy" not in text
    stolen = {**row("unfold", "forward", 2.0), "steal": 0.3}  # a noisy ratio says so
    lines = sweep_report.ratio_lines([row("torch", "forward", 1.0), stolen])
    assert "(geomean of 1, 1 of them in doubt (noise, steal, contention))" in lines[2], lines


def test_summary_ratios_compare_within_one_precision():
    """A float64 run appended to a float32 file: each precision's ratio, never a pooled one
    (nor the last precision's rows standing for both)."""
    def row(backend, dtype, seconds):
        return records.case_row(key=f"{backend}|{dtype}", backend=backend, shape_set="s",
                                descriptor="d", dtype=dtype, status="ok", median_s=seconds,
                                count=1)

    lines = sweep_report.ratio_lines([row("torch", "float32", 1.0), row("unfold", "float32", 2.0),
                                      row("torch", "float64", 1.0), row("unfold", "float64", 4.0)])
    assert "speedup over torch: x0.5 " in lines[lines.index("s forward float32 (1 shapes):") + 2]
    assert "speedup over torch: x0.25 " in lines[lines.index("s forward float64 (1 shapes):") + 2]


@pytest.mark.parametrize("name", ["r.json", "r.log", "r.running"])
def test_a_results_file_named_like_what_the_sweep_writes_beside_it_is_refused(
        tmp_path, capsys, name):
    """--results r.json was the report's own name: the report overwrote the results, and
    every case then failed reading it as JSON lines (a name pytest-benchmark's
    --benchmark-json and merge -o make natural)."""
    results = tmp_path / name
    assert sweep_main(["sweep", "--shape-set", "edge", "--backend", "torch", "--results",
                       str(results)]) == 2
    err = capsys.readouterr().err
    assert f"--results {results}" in err and "name the results file r.jsonl" in err, err
    assert not results.exists() and not (tmp_path / "r.jsonl").exists()

def test_plan_defaults_and_refusals():
    cases = sweep_plan.plan()
    sets = {c.shape_set for c in cases}
    assert sets == set(sweep_plan.DEFAULT_SETS)
    # bare: every direction of every backend on resnet50, the other sets forward only
    per_set = {name: {(c.direction, c.backend) for c in cases if c.shape_set == name}
               for name in sets}
    backends = {c.backend for c in cases}
    assert per_set["resnet50"] == {(d, b) for d in sweep_plan.DIRECTIONS for b in backends}
    assert {d for d, _ in per_set["grid-small"]} == {"forward"}
    named = sweep_plan.plan(["grid-small"], ["torch"])  # a set named: all three directions
    assert {c.direction for c in named} == set(sweep_plan.DIRECTIONS)
    assert {c.backend for c in cases} >= {"naive", "unfold", "fft", "torch", "triton"}
    grid = {e.descriptor for e in shape_set("grid", 1)}
    assert {c.entry.descriptor for c in cases if c.shape_set == "grid-small"} <= grid
    with pytest.raises(ValueError, match="unknown backend"):
        sweep_plan.plan(("resnet50",), ["no-such-backend"])


# --- records -------------------------------------------------------------------------------

def test_rows_have_every_field_and_refuse_unknown_ones():
    row = records.case_row(status="skipped", reason="why")
    assert list(row) == list(records.ROW_FIELDS) and row["record"] == "case"
    with pytest.raises(ValueError, match="status"):
        records.case_row(status="fine")
    with pytest.raises(ValueError, match="unknown row fields"):
        records.case_row(status="ok", speed=1)
    d = records.derived(flops=2e9, nbytes=1e6, median_s=0.01, peak_gflops=400,
                        bandwidth_gbps=10)
    assert d["gflops"] == 200 and d["fraction_of_peak"] == 0.5
    assert d["arithmetic_intensity"] == 2000 and d["fraction_of_roofline"] == 0.5


def test_results_file_survives_a_cut_line_and_merges(tmp_path):
    a, b = records.ResultsFile(tmp_path / "a.jsonl"), records.ResultsFile(tmp_path / "b.jsonl")
    a.append({"record": "machine", "id": "m1", "peak_gflops": 1})
    a.append(records.case_row(key="k1", status="ok"))
    with open(a.path, "a") as f:
        f.write('  "stray": [1, 2],\n')  # not JSON lines (a report's line): skipped
        f.write('"stray"\n')  # valid JSON, but no record
        f.write('{"record": "case", "key": "k2", "sta')  # killed mid-write
    b.append(records.case_row(key="k3", status="failed", reason="boom"))
    with pytest.warns(UserWarning, match="unreadable line"):
        assert a.done() == {"k1"}
        doc = records.report([a, b])
    assert [r["key"] for r in doc["convbench"]["rows"]] == ["k1", "k3"]
    assert set(doc["convbench"]["machines"]) == {"m1"}
    records.write_json(tmp_path / "r.json", doc)
    merged = records.ResultsFile(tmp_path / "r.json")
    assert {r["key"] for r in merged.rows()} == {"k1", "k3"}
    assert merged.done() == {"k1"}  # k3 failed: a rerun measures it again


def test_merge_writes_one_json_report_and_refuses_a_jsonl_name(tmp_path, capsys):
    """merge writes pytest-benchmark's JSON, which a .jsonl name would make every reader
    take for JSON lines (the report builder then read nothing but broken lines)."""
    a, b = records.ResultsFile(tmp_path / "a.jsonl"), records.ResultsFile(tmp_path / "b.jsonl")
    a.append(records.case_row(key="k1", status="ok", backend="torch", shape_set="s",
                              descriptor="d1", median_s=1e-3, count=1))
    b.append(records.case_row(key="k2", status="skipped", reason="why", backend="torch",
                              shape_set="s", descriptor="d2"))
    assert sweep_main(["merge", str(a.path), str(b.path), "-o", str(tmp_path / "m.jsonl")]) == 2
    assert "name it .json" in capsys.readouterr().err and not (tmp_path / "m.jsonl").exists()
    assert sweep_main(["merge", str(a.path), str(b.path), "-o", str(tmp_path / "m.json")]) == 0
    assert records.ResultsFile(tmp_path / "m.json").done() == {"k1", "k2"}
    (tmp_path / "typo.jsonl").write_text("not a results file\n")
    assert sweep_main(["merge", str(tmp_path / "typo.jsonl"), "-o",
                       str(tmp_path / "e.json")]) == 1
    err = capsys.readouterr().err  # the reader's warning, said as a line, not as code
    assert "warning: " in err and "unreadable line" in err and "warnings.warn" not in err
    assert "no result rows" in err and not (tmp_path / "e.json").exists()


# --- the real thing: a sweep with broken backends ------------------------------------------

TINY = 'mb1ic8ih14oc8oh14kh3ph1n"tiny:a"\n'


def _sweep(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                         env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "sweep", "--shape-set", str(tmp_path / "tiny"),
         "--results", str(tmp_path / "out.jsonl"), "--budget", "0.05", "--limit", "2",
         "--timeout", "4", "--threads", "1", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_batch_own_times_each_shape_at_the_batch_it_writes(tmp_path, capsys):
    """A benchdnn user's mb32 was timed at batch 1 without a word: the default --batch 1
    now says what it replaces, and --batch own keeps each shape's mb (rows and file name)."""
    shapes = tmp_path / "mine.txt"
    shapes.write_text('mb2ic8ih9iw7oc8oh9ow7kh3kw3ph1pw1n"rect"\nmb1ic8ih9oc8oh9kh3ph1n"sq"\n')
    listing = ["sweep", "--shape-set", str(shapes), "--backend", "torch", "--list"]
    assert sweep_main(listing) == 0
    assert capsys.readouterr().err == (
        "warning: --batch 1 (the default) replaces the batch that 1 of the 2 shapes write "
        "(mb2): --batch own times each at its own\n")
    assert sweep_main([*listing, "--batch", "1"]) == 0  # asked for: nothing to say
    assert capsys.readouterr().err == ""
    assert sweep_plan.results_path("cpu", "float32", sweep_plan.batch_of("own")).name == \
        "cpu-float32-mbown.jsonl"
    (tmp_path / "tiny").write_text(shapes.read_text())
    run = _sweep(tmp_path, "--backend", "torch", "--direction", "forward", "--batch", "own")
    assert run.returncode == 0, run.stderr
    rows = records.ResultsFile(tmp_path / "out.jsonl").rows()
    assert sorted((r["name"], r["batch"]) for r in rows) == [("rect", 2), ("sq", 1)]
    assert "replaces the batch" not in run.stderr


def test_paired_with_a_backend_not_swept_says_where_its_ratios_go(capsys):
    """--paired-with torch without --backend torch recorded paired ratios that no summary,
    report or targets table showed (they read them against torch's own rows): said up
    front. (A broken partner is still a partner: the case is then timed alone.)"""
    listing = ["sweep", "--shape-set", "edge", "--direction", "forward", "--list"]
    assert sweep_main([*listing, "--backend", "unfold", "--paired-with", "torch"]) == 0
    assert ("warning: --paired-with torch without --backend torch: the rows keep their "
            "paired ratios") in capsys.readouterr().err
    assert sweep_main([*listing, "--backend", "unfold", "--backend", "torch",
                       "--paired-with", "torch"]) == 0
    assert "--paired-with" not in capsys.readouterr().err


def test_a_resumed_sweep_measures_again_a_backend_whose_file_changed(tmp_path, monkeypatch):
    """"Fix my kernel, rerun": rows keep the digest of the file that defines their backend,
    and a resumed sweep measures a case again when that file has changed since, instead of
    showing the old kernel's times; an unchanged file's rows are kept."""
    (tmp_path / "tiny").write_text(TINY)
    mods = tmp_path / "mods"
    mods.mkdir()
    source = "import torch.nn.functional as F\n\n\ndef conv(*args):\n    return F.conv2d(*args)\n"
    (mods / "cb_edited.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", str(mods))
    sweep = ("--direction", "forward", "--backend", "cb_edited:conv", "--backend", "torch")
    assert _sweep(tmp_path, *sweep).returncode == 0
    first = {r["backend"]: r for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    assert first["cb_edited:conv"]["code_file"] == str((mods / "cb_edited.py").resolve())
    assert first["torch"]["code_file"] == "impls/builtin/torch_native.py"  # in the repo
    run = _sweep(tmp_path, *sweep)
    assert "resuming: 2 of 2" in run.stdout and "code changed" not in run.stdout, run.stdout
    (mods / "cb_edited.py").write_text(source + "# faster now\n")
    run = _sweep(tmp_path, *sweep)
    assert run.returncode == 0 and "resuming: 1 of 2" in run.stdout, run.stdout + run.stderr
    assert "whose code changed since their rows were timed: " + str(
        (mods / "cb_edited.py").resolve()) in run.stdout
    rows = records.ResultsFile(tmp_path / "out.jsonl").rows()
    edited = [r for r in rows if r["backend"] == "cb_edited:conv"]
    assert edited[-1]["code"] != first["cb_edited:conv"]["code"]
    assert not records.code_changed(edited[-1]) and records.code_changed(
        first["cb_edited:conv"])


def test_a_result_in_another_layout_is_timed_with_the_copy_a_caller_gets(tmp_path):
    """Returning a strided view must not be a free speedup: the sweep times the copy into
    F.conv2d's layout that impls.conv2d makes, and the row says so; torch's row does not."""
    (tmp_path / "tiny").write_text(TINY)
    run = _sweep(tmp_path, "--direction", "forward", "--backend", "sweep_backends:transposed_view",
                 "--backend", "torch")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {r["backend"]: r for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    assert rows["sweep_backends:transposed_view"]["status"] == "ok"
    assert "not laid out as F.conv2d's" in rows["sweep_backends:transposed_view"]["reason"]
    assert "laid out" not in (rows["torch"]["reason"] or "")


def test_a_backend_whose_result_is_no_conv2d_output_fails_instead_of_being_timed(tmp_path):
    """The sweep calls backends directly; the first call of each case is checked like
    impls.conv2d's (a Tensor of the right shape, dtype and device), or the case fails."""
    (tmp_path / "tiny").write_text(TINY)
    run = _sweep(tmp_path, "--direction", "forward", "--backend", "sweep_backends:numpy_out",
                 "--backend", "sweep_backends:wrong_dtype",
                 "--backend", "sweep_backends:drops_last_row")
    assert run.returncode == 1, run.stdout + run.stderr
    rows = {r["backend"].split(":")[-1]: r
            for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    assert rows["numpy_out"]["status"] == rows["wrong_dtype"]["status"] == "failed"
    assert "returned ndarray, not a Tensor" in rows["numpy_out"]["reason"]
    assert "returned torch.float64 on cpu, expected torch.float32" in rows["wrong_dtype"][
        "reason"]
    # Named on the case's own problem (1, 8, 14, 14), not on a crop the budget guard probed.
    assert "returned shape (1, 8, 13, 14), expected (1, 8, 14, 14)" in rows[
        "drops_last_row"]["reason"]


def _assert_predicted_about_4_s(reason):
    """The guard's prediction for a backend sleeping 20 ms per output position of a 14x14
    output (true cost 3.9 s): a loose band, because how far the crops' sleeps overran moves
    the extrapolation (a CI run read 4.03 s, earlier ones 3.x), and a test must not hinge on
    this machine's timing."""
    predicted = re.match(r"budget guard: predicted ([0-9.]+) s per call", reason)
    assert predicted and 2.5 < float(predicted[1]) < 12, reason


def test_sweep_isolates_hangs_and_crashes_records_everything_and_resumes(tmp_path):
    (tmp_path / "tiny").write_text(TINY)
    backends = ["torch"] + [f"sweep_backends:{name}" for name in (
        "hang", "crash", "fails", "slow", "only_1x1", "not_implemented")]
    first = _sweep(tmp_path, "--direction", "forward",
                   *(a for b in backends for a in ("--backend", b)))
    assert first.returncode == 1, first.stdout + first.stderr  # some cases failed: exit 1
    rows = {(r["backend"].split(":")[-1], r["name"]): r
            for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    assert len(rows) == 7
    for shape in ("tiny:a",):
        assert rows["hang", shape]["status"] == "timeout"
        assert rows["crash", shape]["status"] == "crashed"
        assert "SIGSEGV" in rows["crash", shape]["reason"]
        assert rows["fails", shape]["status"] == "failed"
        assert "deliberate failure" in rows["fails", shape]["reason"]
        assert rows["slow", shape]["status"] == "skipped"
        _assert_predicted_about_4_s(rows["slow", shape]["reason"])
        assert "extrapolated" in rows["slow", shape]["reason"]  # true cost: 196 x 20 ms
        assert rows["only_1x1", shape]["status"] == "skipped"
        assert rows["only_1x1", shape]["reason"].endswith("does not support kernels beyond 1x1")
        assert rows["not_implemented", shape]["status"] == "skipped"
        assert "no such kernel" in rows["not_implemented", shape]["reason"]
        ok = rows["torch", shape]
        assert ok["status"] == "ok" and ok["rounds"] >= 3 and ok["threads"] == 1
        assert math.isclose(ok["gflops"], ok["flops"] / ok["median_s"] / 1e9)
        assert math.isclose(ok["fraction_of_peak"], ok["gflops"] / ok["peak_gflops"])
        assert ok["bytes"] > 0 and ok["arithmetic_intensity"] > 0
        assert ok["direction"] == "forward" and ok["batch"] == 1 and ok["dtype"] == "float32"
        assert ok["graph_median_s"] is None and ok["graph_error"] is None  # CUDA only
    report = json.loads((tmp_path / "out.json").read_text())
    assert len(report["convbench"]["rows"]) == 7
    assert {b["extra_info"]["backend"] for b in report["benchmarks"]} == {"torch"}
    (machine,) = report["convbench"]["machines"].values()
    assert machine["peak_gflops"] > 0 and machine["env"]["MALLOC_MMAP_MAX_"] == "0"
    assert ok["machine_id"] == machine["id"]

    again = _sweep(tmp_path, "--direction", "forward",
                   *(a for b in backends for a in ("--backend", b)))
    assert again.returncode == 1, again.stdout + again.stderr
    # kept: torch's ok row and the three skips; measured again: the hang, crash and failure
    assert "resuming: 4 of 7 cases already have a row; measuring the other 3" in again.stdout
    assert "[3/3 " in again.stdout and "[4/" not in again.stdout
    rerun = {r["backend"].split(":")[-1]: r
             for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    assert len(rerun) == 7 and rerun["torch"] == ok  # not measured again
    assert rerun["slow"] == rows["slow", "tiny:a"]
    for name, status in (("hang", "timeout"), ("crash", "crashed"), ("fails", "failed")):
        # once each (a timeout in this sweep is not retried by its next child), newer row
        assert rerun[name]["status"] == status and rerun[name] != rows[name, "tiny:a"]
    report = json.loads((tmp_path / "out.json").read_text())
    assert {r["key"]: r for r in report["convbench"]["rows"]}[rerun["hang"]["key"]] == \
        rerun["hang"]


def test_a_crash_row_quotes_its_own_child_and_an_interrupt_is_a_failed_case(tmp_path):
    """A review's os._exit row quoted the segfault of the case before it (the log's last
    faulthandler report, another child's); and a backend raising KeyboardInterrupt ended
    the whole session, every resume running into it again with the cases after it never
    measured. Each is now its own case's row, and the sweep goes on."""
    (tmp_path / "tiny").write_text(TINY)
    backends = [f"sweep_backends:{name}" for name in ("crash", "exits", "interrupts")]
    run = _sweep(tmp_path, "--direction", "forward", "--backend", "torch",
                 *(a for b in backends for a in ("--backend", b)))
    assert run.returncode == 1, run.stdout + run.stderr  # failed and crashed rows: exit 1
    rows = {r["backend"].split(":")[-1]: r
            for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    assert rows["crash"]["status"] == "crashed" and "SIGSEGV" in rows["crash"]["reason"]
    assert rows["exits"]["status"] == "crashed"
    assert rows["exits"]["reason"].endswith("no output, no Python error: it exited from "
                                            "native code or os._exit")
    assert rows["interrupts"]["status"] == "failed"
    assert "raised KeyboardInterrupt with no Ctrl-C" in rows["interrupts"]["reason"]
    assert rows["torch"]["status"] == "ok"


def test_a_cuda_error_restarts_the_child_and_the_next_case_runs_fresh(tmp_path):
    """A CUDA error leaves the child's context unusable: its row is written, and a fresh
    child takes the next case instead of failing it (and every case after it) too."""
    (tmp_path / "tiny").write_text(TINY)
    run = _sweep(tmp_path, "--direction", "forward", "--backend", "sweep_backends:cuda_error",
                 "--backend", "sweep_backends:after_cuda_error")
    assert run.returncode == 1, run.stdout + run.stderr  # one case failed
    rows = {r["backend"].split(":")[-1]: r
            for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    assert rows["cuda_error"]["status"] == "failed"
    assert "illegal memory access" in rows["cuda_error"]["reason"]
    assert rows["after_cuda_error"]["status"] == "ok", rows["after_cuda_error"]["reason"]
    assert (tmp_path / "out.log").read_text().count("\n=== ") == 2  # a second child


def test_a_failed_graph_capture_keeps_the_wall_time_and_replaces_the_child(monkeypatch):
    """No GPU here, so timer.time_graph is stood in for: a capture that raises leaves the
    row's wall time alone, says why, and asks for a fresh child (torch < 2.12's allocator
    may be left mid-capture); backward directions are not captured at all."""
    from types import SimpleNamespace

    from benchmarks import bench_sweep, timer

    def broken(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(timer, "time_graph", broken)
    sweep = SimpleNamespace(restart=False)
    got = bench_sweep.graph_time(lambda: None, "cuda", 0.1, 1, sweep, "forward")
    assert got == {"graph_error": "RuntimeError: operation not permitted when stream is "
                                  "capturing"} and sweep.restart
    monkeypatch.setattr(timer, "time_graph", lambda fn, device, budget, n: [4e-3, 2e-3, 3e-3])
    sweep.restart = False
    assert bench_sweep.graph_time(lambda: None, "cuda", 0.1, 2, sweep, "forward") == {
        "graph_median_s": 1.5e-3, "graph_noise": pytest.approx(2 / 3)} and not sweep.restart
    got = bench_sweep.graph_time(lambda: None, "cuda", 0.1, 1, sweep, "backward-data")
    assert "not captured" in got["graph_error"] and not sweep.restart


def test_sweep_times_three_directions_and_skips_what_a_backend_declares(tmp_path):
    (tmp_path / "tiny").write_text(TINY)
    backends = ["torch", "sweep_backends:no_autograd", "sweep_backends:slow_backward"]
    run = _sweep(tmp_path, *(a for b in backends for a in ("--backend", b)))  # default: all
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {(r["backend"].split(":")[-1], r["direction"]): r
            for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    assert len(rows) == 9
    for direction in sweep_plan.DIRECTIONS:
        ok = rows["torch", direction]
        assert ok["status"] == "ok" and ok["rounds"] >= 3 and ok["peak_memory_bytes"] is not None
        assert ok["flops"] == rows["torch", "forward"]["flops"]  # backward counted as forward
        assert direction in ok["key"] and direction in run.stdout
    assert rows["no_autograd", "forward"]["status"] == "ok"
    assert rows["slow_backward", "forward"]["status"] == "ok"
    for direction in ("backward-data", "backward-weights"):
        skipped = rows["no_autograd", direction]
        assert skipped["status"] == "skipped"
        assert skipped["reason"] == "sweep_backends:no_autograd does not support autograd"
        slow = rows["slow_backward", direction]  # true cost: 196 x 20 ms per backward
        assert slow["status"] == "skipped" and "extrapolated" in slow["reason"]
        _assert_predicted_about_4_s(slow["reason"])
    assert "tiny backward-weights (1 shapes)" in run.stdout  # the summary, per direction


def test_a_paired_sweep_alternates_each_case_with_its_partner_and_says_why_not(tmp_path):
    (tmp_path / "tiny").write_text(TINY)
    run = _sweep(tmp_path, "--direction", "forward", "--backend", "torch", "--backend",
                 "unfold", "--backend", "auto", "--paired-with", "torch")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {r["backend"]: r for r in records.ResultsFile(tmp_path / "out.jsonl").rows()}
    # auto is paired with the backend it ran: its ratio is its own overhead
    assert rows["auto"]["paired_backend"] == rows["auto"]["ran"]
    paired = rows["unfold"]
    assert paired["paired_backend"] == "torch" and paired["paired_median_s"] > 0
    # The ratio is torch's time over unfold's, as the medians of the two rounds say.
    medians = paired["paired_median_s"] / paired["median_s"]
    assert 0.5 < paired["paired_ratio"] / medians < 2.0
    assert paired["rounds"] >= 6 and len(paired["paired_ci"]) == 2
    assert rows["torch"]["paired_backend"] is None and rows["torch"]["paired_error"] is None
    # A partner that refuses the case or fails in it leaves the case timed, unpaired; one
    # whose NotImplementedError comes only in the timed rounds must not skip the case.
    for partner, why in (("sweep_backends:only_1x1", "does not run this case"),
                         ("sweep_backends:fails", "failed: RuntimeError: deliberate failure"),
                         ("sweep_backends:gives_up_later",
                          "failed: NotImplementedError: gave up once timed")):
        run = _sweep(tmp_path, "--direction", "forward", "--backend", "unfold",
                     "--paired-with", partner, "--fresh")
        assert run.returncode == 0, run.stdout + run.stderr
        (row,) = records.ResultsFile(tmp_path / "out.jsonl").rows()
        assert row["status"] == "ok" and row["paired_backend"] is None
        assert why in row["paired_error"] and row["rounds"] >= 3
        assert "1 of 1 timed cases could not be paired" in run.stderr  # said, not only kept
    # Cold caches: one call a round, a flush between; still enough rounds for an interval.
    # (Two flushes a pair of rounds: under a loaded machine the case once took over the
    # 4 s the other runs allow.)
    run = _sweep(tmp_path, "--direction", "forward", "--backend", "unfold", "--cache", "cold",
                 "--paired-with", "torch", "--fresh", "--timeout", "30")
    assert run.returncode == 0, run.stdout + run.stderr
    (row,) = records.ResultsFile(tmp_path / "out.jsonl").rows()
    assert row["rounds"] >= 6 and row["iterations"] == 1 and row["paired_ci"] is not None
    run = _sweep(tmp_path, "--backend", "unfold", "--paired-with", "toarch")
    assert run.returncode == 2 and \
        "--paired-with: unknown backend 'toarch' (did you mean 'torch'?)" in run.stderr
    run = _sweep(tmp_path, "--backend", "unfold", "--paired-with", "sweep_backends:nope")
    assert run.returncode == 2 and "error: --paired-with: backend 'sweep_backends:nope'" \
        in run.stderr


# --- resume: what a rerun keeps, and what it measures again ---------------------------------

def test_a_rerun_measures_again_what_was_timed_under_another_pairing():
    alone = {"status": "ok", "backend": "unfold", "paired_with": None}
    with_torch = {**alone, "paired_with": "torch", "paired_backend": "torch"}
    unpairable = {**alone, "paired_with": "winograd-f4", "paired_error": "... does not run"}
    dispatched = {**with_torch, "backend": "auto", "ran": "fft", "paired_backend": "fft"}
    old = {"status": "ok", "backend": "unfold"}  # before rows said: unpaired
    skip = {"status": "skipped", "backend": "unfold", "reason": "unfold does not support x"}
    rows = (alone, with_torch, unpairable, dispatched, old, skip)
    assert [records.settled(r, partner="torch") for r in rows] == [
        False, True, False, True, False, True]
    assert [records.settled(r, partner=None) for r in rows] == [
        True, False, False, False, True, True]
    assert all(records.settled(r) for r in rows)  # by default, any pairing
    # Timed alone because the partner failed, or would have passed a lower --limit: the
    # next run with the partner tries again (by the guard's rule); a refusal is kept.
    refused = {**with_torch, "paired_error": "torch does not run this case: x"}
    failed = {**with_torch, "paired_error": "torch failed: RuntimeError: boom"}
    guarded = {**with_torch, "paired_error": "torch: budget guard: predicted 3.1 s per call "
                                             "(measured); 5 calls exceed --limit 10 s"}
    assert records.settled(refused, partner="torch")
    assert not records.settled(failed, partner="torch") and records.settled(failed)
    assert records.settled(guarded, 10.0, "torch") and records.settled(guarded, None, "torch")
    assert not records.settled(guarded, 20.0, "torch")



def _rows_for(tmp_path, backends=("torch",), threads=1, **by_direction):
    """A results file for the tiny shape's cases, one row per direction given, as
    ``direction=(status, reason, median_s)`` (``_`` for - in the names)."""
    (tmp_path / "tiny").write_text(TINY)
    cases = sweep_plan.plan([str(tmp_path / "tiny")], list(backends))
    results = records.ResultsFile(tmp_path / "out.jsonl")
    for c in cases:
        given = by_direction.get(c.direction.replace("-", "_"))
        if given:
            status, reason, median = given
            results.append(records.case_row(**c.row_fields(), status=status, reason=reason,
                                            median_s=median, threads=threads,
                                            gflops=median and c.entry.flops / median / 1e9))
    return cases, results


def test_settled_rows_are_kept_and_transient_ones_measured_again():
    def row(status, reason=""):
        return records.case_row(key="k", backend="mine:conv", status=status, reason=reason)

    keep = [row("ok"), row("skipped", "mine:conv does not support groups"),
            row("skipped", "mine:conv raised NotImplementedError: no kernel"),
            row("skipped", "unfold needs 9 GiB for its column buffer on this problem, over "
                           "the memory budget of 4 GiB (default); set X to change it"),
            row("skipped", "budget guard: predicted 3.1 s per call (measured); 5 calls "
                           "exceed --limit 10 s")]
    again = [row("failed", "RuntimeError: boom"), row("timeout", "still running"),
             row("crashed", "the process died"),
             row("skipped", "mine:conv unavailable: cannot load: ModuleNotFoundError: "
                            "No module named 'mine'"),
             row("skipped", "triton unavailable: no CUDA device"),
             row("skipped", "not timed (pytest-benchmark disabled?)")]
    assert all(records.settled(r, limit=10.0) for r in keep)
    assert not any(records.settled(r, limit=10.0) for r in again)
    guard = keep[-1]
    assert records.settled(guard, limit=5.0) and records.settled(guard)  # None: any limit
    assert not records.settled(guard, limit=20.0)  # a higher --limit asks for it again


def test_a_rerun_measures_again_what_timed_out_or_was_unavailable_and_the_new_row_wins(
        tmp_path):
    """A file from a sweep where one case timed out and a user's module did not import:
    the rerun keeps the ok row and measures the other two; their new rows are the ones the
    summary, the report and the file's reader take. A built-in backend that cannot run
    here (triton on the CPU) is a skipped row, exit 0, not a usage error."""
    cases, results = _rows_for(
        tmp_path, forward=("timeout", "still running after 4 s: killed", None),
        backward_data=("skipped", "torch unavailable: cannot load: ModuleNotFoundError: No "
                                  "module named 'mine'", None),
        backward_weights=("ok", "", 123.0))
    run = _sweep(tmp_path, "--backend", "torch", "--backend", "triton")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "resuming: 1 of 6 cases already have a row; measuring the other 5, 2 of them " \
           "again" in run.stdout
    assert "[5/5 " in run.stdout and "[6/" not in run.stdout
    rows = {(r["backend"], r["direction"]): r for r in results.rows()}
    assert rows["torch", "backward-weights"]["median_s"] == 123.0  # kept, not re-measured
    for direction in ("forward", "backward-data"):
        assert rows["torch", direction]["status"] == "ok" and rows["torch", direction]["rounds"]
    assert {rows["triton", d]["status"] for d in sweep_plan.DIRECTIONS} == {"skipped"}
    report = json.loads((tmp_path / "out.json").read_text())
    in_report = {r["key"]: r for r in report["convbench"]["rows"]}
    assert in_report[rows["torch", "forward"]["key"]]["status"] == "ok"
    assert len(in_report) == 6
    assert "\n3 ok, 3 skipped\n" in run.stdout  # the summary counts the newest rows


def test_a_user_backend_that_cannot_be_loaded_is_refused_up_front(tmp_path, capsys,
                                                                  monkeypatch):
    import types

    import torch.nn.functional as F

    from impls.registry import Backend

    results = tmp_path / "r.jsonl"
    assert sweep_main(["sweep", "--shape-set", "edge", "--backend", "torch", "--backend",
                       "no_such_module_here:conv", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "no_such_module_here:conv" in err and "ModuleNotFoundError" in err
    assert not results.exists()
    # Merely unavailable here (its own probe says so, as triton's does without CUDA): not
    # refused, its cases become skipped rows. Not a backend at all: refused.
    fake = types.ModuleType("fake_probed_backends")
    fake.gpu_only = Backend(name="fake_probed_backends:gpu_only", fn=F.conv2d,
                            probe=lambda: "needs a GPU")
    fake.text = "not a function"
    monkeypatch.setitem(sys.modules, "fake_probed_backends", fake)
    assert sweep_plan.unloadable(["torch", "triton", "fake_probed_backends:gpu_only"]) == []
    (refused,) = sweep_plan.unloadable(["fake_probed_backends:text"])
    assert "not a callable" in refused
    # An entry point's plain name that loads no backend is refused as well.
    monkeypatch.setitem(registry._REGISTRY, "broken_ep", registry._unloadable(
        "broken_ep", "bad convbench_capabilities: unknown keys ['device']"))
    (refused,) = sweep_plan.unloadable(["broken_ep", "no_such_name"])
    assert "'broken_ep' cannot be used: bad convbench_capabilities" in refused


def test_a_file_measured_with_other_threads_is_refused_not_resumed(tmp_path, capsys):
    """The thread count is not in the key: a rerun with another --threads must neither
    take the old rows for its own nor silently mix both counts in one file."""
    _, results = _rows_for(tmp_path, threads=2, forward=("ok", "", 1e-3),
                           backward_data=("timeout", "killed", None))
    before = results.path.read_bytes()
    args = ["sweep", "--shape-set", str(tmp_path / "tiny"), "--backend", "torch",
            "--direction", "forward", "--results", str(results.path)]
    assert sweep_main([*args, "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "1 with 2" in err and "pins 1" in err and "another --results" in err
    assert results.path.read_bytes() == before and not results.path.with_suffix(".log").exists()
    assert sweep_main([*args, "--threads", "2"]) == 0  # same conditions: resumed, nothing ran
    assert "resuming: 1 of 1" in capsys.readouterr().out
    assert not results.path.with_suffix(".log").exists()
    # rows that a rerun measures again, or that do not say, are no reason to refuse
    assert "(1 with 2;" in results.conditions_differ({r["key"] for r in results.rows()}, 3)
    old = records.ResultsFile(tmp_path / "old.jsonl")
    old.append(records.case_row(key="k", status="ok", threads=None))
    assert old.conditions_differ(["k"], 1) == ""


def test_a_file_from_another_machine_is_refused_and_other_settings_are_said(tmp_path,
                                                                          capsys):
    """A resume divided this machine's unfold by another box's torch, unremarked; and a
    rerun with a larger --budget kept every row timed under the smaller one, unremarked."""
    (tmp_path / "tiny").write_text(TINY)
    (case,) = sweep_plan.plan([str(tmp_path / "tiny")], ["torch"], directions="forward")
    results = records.ResultsFile(tmp_path / "out.jsonl")
    here = __import__("benchmarks.machine", fromlist=["describe"]).describe()
    results.append({"record": "machine", "id": "m", **here, "host": "otherbox",
                    "torch": "2.5.0"})
    results.append({"record": "run", "options": {"budget": 0.1, "min_rounds": 3}})
    results.append(records.case_row(**case.row_fields(), status="ok", median_s=1e-3,
                                    threads=1, machine_id="m"))
    args = ["sweep", "--shape-set", str(tmp_path / "tiny"), "--backend", "torch",
            "--direction", "forward", "--results", str(results.path), "--threads", "1"]
    assert sweep_main(args) == 2
    err = capsys.readouterr().err
    assert "measured on another machine (1 where host otherbox (here " in err, err
    assert "torch 2.5.0 (here " in err and "another --results" in err
    results.append({"record": "machine", "id": "m", **here})  # the same machine after all
    assert sweep_main([*args, "--budget", "0.3"]) == 0
    err = capsys.readouterr().err
    assert ("1 rows are kept from earlier runs into out.jsonl timed under other settings "
            "(1 with --budget 0.1; this run: --budget 0.3, --min-rounds 3)") in err, err


def test_progress_counts_only_this_runs_cases(tmp_path):
    """A resumed sweep's rows already in the file are neither read again nor counted: the
    counter ends at this run's total, and the time left is never negative."""
    import io

    cases = sweep_plan.plan(["grid-small"], ["torch", "unfold"], directions="forward")
    results = records.ResultsFile(tmp_path / "p.jsonl")

    def ok(case):
        return records.case_row(**case.row_fields(), status="ok", reason="", median_s=1e-3,
                                gflops=1.0)

    earlier = [c for c in cases if c.backend == "unfold"]
    for c in earlier:
        results.append(ok(c))
    out = io.StringIO()
    progress = sweep_report.Progress(cases, results.done(), results.size(), stream=out)
    now = [c for c in cases if c.backend == "torch"]
    for c in now + now[:2]:  # a case may get a second row (a kill racing its own write)
        results.append(ok(c))
        progress.update(results)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"resuming: {len(earlier)} of {len(cases)} cases already have a row"
    counters = [re.match(r"\[ *(\d+)/(\d+) \S+ (\S+) left\]", line).groups()
                for line in lines[1:]]
    assert [(int(i), int(n)) for i, n, _ in counters] == [(i, len(now))
                                                          for i in range(1, len(now) + 1)]
    assert not any(left.startswith("~-") for *_, left in counters)
    assert counters[-1][2] == "~0:00"


@pytest.mark.parametrize("option, value", [
    ("--threads", "-2"), ("--threads", "0"), ("--timeout", "0"),
    ("--timeout", "-1"), ("--timeout", "nan"), ("--budget", "-1"), ("--budget", "0"),
    ("--budget", "nan"), ("--budget", "inf"), ("--limit", "0"), ("--min-rounds", "0"),
    ("--batch", "0"), ("--batch", "x")])
def test_bad_option_values_are_usage_errors(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep_main(["sweep", "--shape-set", "edge", "--backend", "torch", option, value,
                    "--list"])
    assert exc.value.code == 2
    assert f"argument {option}: {value!r}" in capsys.readouterr().err


def test_the_pytest_side_refuses_bad_threads_as_a_usage_error(tmp_path):
    """Run by hand, bench_sweep.py's --threads -2 used to reach torch.set_num_threads (an
    INTERNALERROR)."""
    run = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benchmarks" /
                                                             "bench_sweep.py"),
                          "-p", "no:cacheprovider", "-q", "--threads", "-2", "--results",
                          str(tmp_path / "r.jsonl")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 4, run.stdout + run.stderr  # pytest's usage error
    assert "argument --threads: '-2'" in run.stderr and "INTERNALERROR" not in run.stdout


@pytest.mark.parametrize("device", ["gpu", "CPU", "cuda:x"])
def test_a_device_the_harness_cannot_name_is_a_usage_error_up_front(device, capsys):
    """Not a child's fixture traceback; and one spelling per device (cpu:0 would key rows
    apart from cpu's)."""
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--device", device, "--list"])
    assert exit_.value.code == 2
    assert f"argument --device: {device!r} is not cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["sweep", "torch"], "unrecognized arguments: torch"),  # meant --backend torch
    (["shapes", "resnet50", "--", "-x"], "shapes takes no arguments after --")])
def test_a_stray_word_is_a_usage_error_not_a_pytest_file(argv, message, capsys):
    """Only what follows "--" goes to pytest: "sweep torch" once started the sweep, wrote
    its plan, and ended on pytest's "file or directory not found: torch"."""
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--", "-k", "tiny"], "-k: cases are chosen with --backend"),
    (["--", "--deselect=x"], "--deselect=x: cases are chosen"),
    (["--shape-set", "EMPTY"], "no cases: the shape sets and backends given make none")])
def test_a_sweep_whose_cases_pytest_would_choose_or_that_has_none_is_refused(
        tmp_path, capsys, extra, message):
    """The supervisor accounts for every case it plans; a pytest selection would leave
    planned cases without rows (reported as a crash), and an empty shape file ran nothing
    and exited 0."""
    from benchmarks.__main__ import main

    (tmp_path / "empty").write_text("")
    extra = [str(tmp_path / "empty") if a == "EMPTY" else a for a in extra]
    args = ["sweep", "--backend", "torch", "--results", str(tmp_path / "r.jsonl"), *extra]
    if "EMPTY" not in message and "--shape-set" not in extra:
        args[1:1] = ["--shape-set", "grid-small"]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_a_sweep_that_timed_nothing_fails_and_says_why(tmp_path):
    """Every case skipped (here: naive takes no float16) is no result: exit 1, as impls
    check exits 1 when it compared nothing, with the skips' reasons."""
    (tmp_path / "tiny").write_text(TINY)
    run = _sweep(tmp_path, "--direction", "forward", "--backend", "naive", "--dtype",
                 "float16")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "error: nothing was timed: all 1 cases were skipped (naive does not support " \
           "float16" in run.stdout, run.stdout


def test_a_resumed_sweep_says_when_its_kept_rows_are_of_another_commit(tmp_path, monkeypatch):
    """'Fix my kernel and rerun' resumed the old kernel's times without a word: the rows a
    sweep keeps are judged by the run record before each (its commit, and whether that
    tree had uncommitted changes) and named, with --fresh as the way to measure again."""
    from benchmarks import sweep

    old, new = sweep_plan.plan(("edge",), ["torch"])[:2]
    results = records.ResultsFile(tmp_path / "r.jsonl")
    results.append({"record": "run", "commit_info": {"id": "0123456789abcdef", "dirty": False}})
    results.append({"record": "case", "key": old.key, "status": "ok", "median_s": 1e-3})
    results.append({"record": "run", "commit_info": {"id": "fedcba9876543210", "dirty": True}})
    results.append({"record": "case", "key": new.key, "status": "ok", "median_s": 1e-3})

    def kept(cases):
        return sweep._kept_runs(results, cases, None)

    def now(commit, dirty=False):
        monkeypatch.setattr("pytest_benchmark.utils.get_commit_info",
                            lambda: {"id": commit, "dirty": dirty})
        return sweep._kept_from_other_code(results, kept([old, new]))

    said = now("fedcba9876543210")
    assert said.startswith("2 rows are kept") and "--fresh" in said
    assert "1 measured at commit 0123456789, not this tree's fedcba9876" in said
    assert "1 measured with uncommitted changes" in said  # the second run's, same commit
    assert sweep._kept_from_other_code(results, kept([old])).count("measured") == 1
    assert now("0123456789abcdef") != ""  # the second row is of another commit
    monkeypatch.setattr("pytest_benchmark.utils.get_commit_info",
                        lambda: {"id": "0123456789abcdef", "dirty": False})
    assert sweep._kept_from_other_code(results, kept([old])) == ""  # same code: silent
    monkeypatch.setattr("pytest_benchmark.utils.get_commit_info",
                        lambda: {"id": "0123456789abcdef", "dirty": True})
    assert "this tree has uncommitted changes" in sweep._kept_from_other_code(
        results, kept([old]))
    assert sweep._kept_from_other_code(results, kept([])) == ""  # nothing kept: nothing said


def _scripted_children(tmp_path, results, cases, script):
    """A child command for sweep.supervise: run k appends the rows of the cases named by
    index in ``script[k][0]`` (each "ok"), sleeps ``script[k][2]`` s, then exits with
    status ``script[k][1]``."""
    rows = [[json.dumps(records.case_row(**cases[i].row_fields(), status="ok", median_s=1e-3,
                                         threads=1, gflops=cases[i].entry.flops / 1e6))
             for i in picks] for picks, _, _ in script]
    plan = tmp_path / "script.json"
    plan.write_text(json.dumps({"rows": rows, "exits": [s[1] for s in script],
                                "sleeps": [s[2] for s in script]}))
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent(f"""
        import json, pathlib, sys, time
        from benchmarks import records
        plan = json.loads(pathlib.Path({str(plan)!r}).read_text())
        count = pathlib.Path({str(tmp_path / "count")!r})
        k = int(count.read_text()) if count.exists() else 0
        count.write_text(str(k + 1))
        for line in plan["rows"][k]:
            records.ResultsFile(pathlib.Path({str(results.path)!r})).append(json.loads(line))
        time.sleep(plan["sleeps"][k])
        sys.exit(plan["exits"][k])
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return [sys.executable, str(child)], env


@pytest.mark.parametrize("script, status, says", [
    # Every row written, then an abort at interpreter exit: the sweep is complete.
    ([((0, 1), 134, 0)], 0, "every case has its row"),
    # Died between cases after measuring one: a fresh child measures the rest.
    ([((0,), 137, 0), ((1,), 0, 0)], 0, "1 cases left, a fresh process goes on"),
    # Died before measuring anything: nothing would change with another try.
    ([((), 3, 0)], 2, "exited with status 3 outside any case and measured nothing"),
    # Hung outside any case (no heartbeat, no row): killed, not waited on for ever.
    ([((), 0, 60)], 2, "did nothing for 1 s outside any case (killed)"),
])
def test_a_child_lost_outside_any_case_costs_only_what_it_had_left(
        tmp_path, capsys, monkeypatch, script, status, says):
    """A child that dies at exit after its last row (CUDA or OpenMP teardown) had failed a
    complete sweep with exit 2 and no report; one that died between cases had abandoned
    the cases left; one that hung outside a case (the machine's measurement, pytest's
    session end) was never killed."""
    from benchmarks import sweep

    monkeypatch.setattr(sweep, "IDLE_FLOOR_S", 1.0)
    (tmp_path / "tiny").write_text(TINY)
    cases = sweep_plan.plan([str(tmp_path / "tiny")], ["torch"], directions="forward")
    cases = cases + sweep_plan.plan([str(tmp_path / "tiny")], ["unfold"], directions="forward")
    results = records.ResultsFile(tmp_path / "out.jsonl")
    cmd, env = _scripted_children(tmp_path, results, cases, script)
    started = time.monotonic()
    assert sweep.supervise(cases, results, cmd, env, timeout=0.5) == status
    assert says in capsys.readouterr().err
    assert time.monotonic() - started < 30


def test_another_backend_cannot_join_rows_measured_with_other_threads(tmp_path):
    """The report divides each backend's time by torch's of the same problem in the file:
    a sweep of another backend with another thread count into a file holding torch's rows
    had been accepted (the check read only the sweep's own backend's rows), and its
    speedups divided a 2-thread time by a 1-thread one."""
    _, results = _rows_for(tmp_path, threads=1, forward=("ok", "", 1e-3))
    theirs = sweep_plan.plan([str(tmp_path / "tiny")], ["unfold"], directions="forward")
    keys = [c.key for c in theirs]
    assert not set(keys) & {r["key"] for r in results.rows()}  # no row of theirs yet
    assert "(1 with 1;" in results.conditions_differ(keys, 2)
    assert results.conditions_differ(keys, 1) == ""

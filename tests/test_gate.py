"""The regression gate's decisions, storage and plumbing (benchmarks/gate/).

No test here asserts anything about time: the statistics are fed synthetic samples, and the
worker tests check what comes back, not how fast. The gate's behaviour on real timings is
checked by its self-test in CI (`nox -s gate -- --self-test`) and measured by
``python -m benchmarks.gate.power`` (README).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# The gate prints with rich, a dependency nox and CI install; a GPU box's bare Python may
# lack it, and the GPU suite does not need the gate.
pytest.importorskip("rich", reason="the gate needs rich (a declared dependency)")

from benchmarks.gate import baseline, stats, verdicts
from benchmarks.gate import worker as gate_worker
from benchmarks.gate.cases import BACKEND_SHAPES, DEFAULT_THRESHOLD, SHAPES, gate_cases
from benchmarks.gate.measure import Samples, Worker, WorkerError, run_rounds
from benchmarks.gate.worker import parse_inject, slowed
from impls import registry


def noisy(n, factor=1.0, sigma=0.03, seed=0):
    return factor * np.exp(np.random.default_rng(seed).normal(0, sigma, n))


def test_paired_change_finds_a_ten_percent_slowdown_in_noise():
    base = noisy(40, seed=1)
    head = base * noisy(40, 1.10, seed=2)
    change = stats.paired_change(base, head)
    assert change.low > 1.05 and 1.05 < change.factor < 1.15
    assert change.verdict(0.05) == stats.SLOWER


def test_paired_change_of_unchanged_code_is_unchanged_not_slower():
    base = noisy(40, seed=3)
    change = stats.paired_change(base, base * noisy(40, seed=4, sigma=0.01))
    assert change.low < 1 < change.high
    assert change.verdict(0.05) == stats.UNCHANGED


def test_a_wide_interval_is_inconclusive_not_a_failure():
    base = noisy(6, seed=5, sigma=0.3)
    change = stats.paired_change(base, base * noisy(6, 1.1, seed=6, sigma=0.3))
    assert change.verdict(0.05) == stats.UNSURE


def test_improvements_are_reported_as_faster():
    base = noisy(30, seed=7)
    assert stats.paired_change(base, base * noisy(30, 0.7, seed=8)).verdict(0.05) == \
        stats.FASTER


def test_the_median_ignores_a_few_interrupted_samples():
    base = noisy(40, seed=9, sigma=0.01)
    head = base.copy()
    head[:5] *= 3.0  # five rounds where another process took the CPU
    assert stats.paired_change(base, head).verdict(0.05) == stats.UNCHANGED


def test_unpaired_change_against_stored_samples():
    stored, now = noisy(40, seed=10), noisy(40, 1.2, seed=11)
    assert stats.unpaired_change(stored, now).verdict(0.05) == stats.SLOWER
    assert stats.unpaired_change(stored, noisy(40, seed=12)).verdict(0.05) != stats.SLOWER


def test_too_few_samples_is_an_error_not_a_verdict():
    with pytest.raises(ValueError, match="same length >= 3"):
        stats.paired_change([1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=">= 3 samples"):
        stats.unpaired_change([1.0], [1.0, 1.0, 1.0])


def test_gate_cases_quick_mode_and_bands():
    full, quick = gate_cases(), gate_cases(quick=True)
    assert {c.backend for c in quick} == {c.backend for c in full}
    assert len(quick) == len({c.backend for c in quick}) < len(full)
    assert all(c.descriptor in SHAPES.values() for c in full)
    cases = gate_cases(["fft", "naive", "mine"], threshold=0.08, overrides={"fft": 0.2})
    bands = {c.backend: c.threshold for c in cases}
    assert bands == {"fft": 0.2, "naive": 0.10, "mine": 0.08}
    assert gate_cases(["torch"])[0].threshold == DEFAULT_THRESHOLD
    # Against a stored baseline: scaled bands, and FFT's own (its ratio follows the host).
    stored = {c.key: c.threshold for c in gate_cases(["torch", "fft", "auto", "naive"],
                                                       scale=2.0, stored=True)}
    assert stored["torch|" + SHAPES["3x3 256@14"]] == 2 * DEFAULT_THRESHOLD
    assert stored["fft|" + SHAPES["13x13 32@28"]] == 0.25
    assert stored["auto|" + SHAPES["17x17 32@32"]] == 0.25
    assert stored["naive|" + SHAPES["3x3 4@10"]] == 2 * 0.10
    assert stored["auto|" + SHAPES["3x3 256@14"]] == 2 * DEFAULT_THRESHOLD
    assert gate_cases(["fft"], threshold=0.08, stored=True)[0].threshold == 0.08
    assert gate_cases(["fft"], overrides={"fft": 0.3}, stored=True)[0].threshold == 0.3


def _rows(base: Samples | None, head: Samples, threshold=0.05):
    case = gate_cases(["torch"], quick=True)[0]
    if base is None:
        return verdicts.baseline_rows([case], {"cases": {}}, {case.key: {"head": head}}, "head")
    return verdicts.paired_rows([case], {case.key: {"base": base, "head": head}}, "base",
                                "head")


def test_rows_say_why_a_case_was_not_compared():
    ok = Samples(call=list(noisy(10)), ref=list(noisy(10, seed=1)))
    assert _rows(Samples(refusal="r"), Samples(refusal="r"))[0].verdict == verdicts.SKIPPED
    assert _rows(Samples(refusal="no such backend"), ok)[0].verdict == verdicts.NEW
    assert _rows(None, ok)[0].verdict == verdicts.NEW
    lost = _rows(ok, Samples(refusal="does not support groups"))[0]
    assert lost.verdict == verdicts.ERROR and "refuses what base ran" in lost.note
    crashed = _rows(ok, Samples(error="worker: it exited"))[0]
    assert crashed.verdict == verdicts.ERROR and verdicts.failed([crashed])
    # Broken in both trees: listed, not a regression (only what base ran can fail).
    both = _rows(Samples(error="RuntimeError: boom"), Samples(error="RuntimeError: boom"))[0]
    assert both.verdict == verdicts.NEW and not verdicts.failed([both])
    assert "neither tree runs it" in both.note


def test_paired_rows_compare_times_or_ratios_to_torch():
    base = Samples(call=[2.0] * 10, ref=[1.0] * 10)
    head = Samples(call=[4.0] * 10, ref=[2.0] * 10)  # the whole machine got 2x slower
    assert _rows(base, head)[0].verdict == stats.SLOWER  # plain times: paired in time
    case = gate_cases(["torch"], quick=True)[0]
    by_ratio = verdicts.paired_rows([case], {case.key: {"base": base, "head": head}}, "base",
                                    "head", statistic="ratio")
    assert by_ratio[0].verdict == stats.UNCHANGED


def test_against_a_baseline_a_moved_reference_makes_a_ratio_inconclusive():
    """FFT's ratio to torch 15% up: slower, unless torch itself moved beyond the band since
    the baseline (a machine in another state), which the row then says instead."""
    case = gate_cases(["fft"], quick=True)[0]
    stored = {"cases": {case.key: {"call_s": list(noisy(12, 1.0, 0.01)),
                                   "ref_s": list(noisy(12, 1.0, 0.01, seed=1))}}}

    def row(call_factor, ref_factor, other_kind=""):
        head = Samples(call=list(noisy(12, call_factor, 0.01, seed=2)),
                       ref=list(noisy(12, ref_factor, 0.01, seed=3)))
        return verdicts.baseline_rows([case], stored, {case.key: {"head": head}}, "head",
                                      other_kind=other_kind)[0]

    assert row(1.15, 1.0).verdict == stats.SLOWER  # the code got slower
    moved = row(1.15 * 1.2, 1.2)  # torch +20%, fft +38%: its ratio +15%
    assert moved.verdict == stats.UNSURE and "torch itself is +" in moved.note
    assert moved.drift == pytest.approx(1.2, rel=0.05)
    assert moved.not_comparable == moved.note  # what the self-test reads
    assert row(1.15, 1.0).drift is None and not row(1.15, 1.0).not_comparable
    assert row(1.2, 1.2).verdict == stats.UNCHANGED  # uniformly slower: the ratio holds
    # A baseline of another kind of machine judges nothing (how far ratios move between
    # kinds is not known): slower becomes inconclusive, saying why; unchanged stays.
    other = row(1.5, 1.0, other_kind="cpu_flags [amx] there, [avx512f] here")
    assert other.verdict == stats.UNSURE and other.not_comparable.startswith(
        "not comparable: the baseline is of another kind of machine (cpu_flags [amx]")
    assert row(1.0, 1.0, other_kind="x").verdict == stats.UNCHANGED
    assert row(1.5 * 1.2, 1.2).verdict == stats.SLOWER  # +50%: more than the machine moved
    # Torch faster and the ratio up: a faster clock moves a ratio at most as far as torch
    # (CI: the machine 27% faster, the injected +66% excused at twice that reach).
    faster = row(1.66 * 0.73, 0.73)
    assert faster.verdict == stats.SLOWER and not faster.not_comparable
    assert row(1.25 * 0.73, 0.73).verdict == stats.UNSURE  # within torch's own -27%
    assert verdicts.drift_reach(0.73, 1.66) == 1 and verdicts.drift_reach(1.2, 1.3) == 2
    # Faster verdicts by the same rule: torch faster and the ratio down is the same way.
    assert verdicts.drift_reach(0.8, 0.7) == 2 and verdicts.drift_reach(1.2, 0.8) == 1
    assert row(0.75 * 0.8, 0.8).verdict == stats.UNSURE  # ratio -25%, torch -20%: 2x reach
    assert row(0.75 * 1.2, 1.2).verdict == stats.FASTER  # ratio -25% while torch +20%


def test_baseline_round_trip(tmp_path):
    cases = gate_cases(["torch", "fft"], quick=True)
    results = {c.key: {"head": Samples(call=[1e-3] * 5, ref=[1e-3] * 5)} for c in cases}
    path = tmp_path / "baseline.json"
    baseline.save(path, results, "head", cases, {"commit": "abc"})
    data = baseline.load(path)
    assert data["commit"] == "abc" and set(data["cases"]) == {c.key for c in cases}
    rows = verdicts.baseline_rows(cases, data, results, "head")
    assert [r.verdict for r in rows] == [stats.UNCHANGED] * 2
    path.write_text(json.dumps({"cases": {}}))
    with pytest.raises(ValueError, match="not a gate baseline"):
        baseline.load(path)


def test_baselines_are_committed():
    assert list(baseline.DEFAULT.glob("*.json")), f"no baseline in {baseline.DEFAULT}"


#: Gate backends a committed baseline was recorded without, by file, with why it was not
#: re-recorded: the gate reads their cases as "new" on that kind of machine (not judged),
#: so each entry is a known blind spot, listed here rather than let through silently.
NOT_RECORDED = {
    "intel-xeon-processor-amx-2threads-torch2.13.0-5ee664.json": {
        "winograd-f4x1": "joined the gate on 2026-11-27, when no AMX host was at hand"},
}


def test_every_built_in_backend_is_in_the_gate_set():
    built_in = {b.name for b in registry.backends() if b.fn.__module__.startswith("impls.")}
    assert built_in - BACKEND_SHAPES.keys() == set()


@pytest.mark.parametrize("path", sorted(baseline.DEFAULT.glob("*.json")), ids=lambda p: p.name)
def test_each_committed_baseline_covers_the_quick_gate_set_and_is_named_for_its_kind(path):
    data = baseline.load(path)
    excused = NOT_RECORDED.get(path.name, {})
    missing = [c.key for c in gate_cases(quick=True)
               if c.key not in data["cases"] and c.backend not in excused]
    assert not missing, f"re-record {path}: {missing}"
    stale = [name for name in excused if any(k.startswith(name + "|") for k in data["cases"])]
    assert not stale, f"{path.name} has {stale} now: drop them from NOT_RECORDED"
    assert data["machine"]["cpu"] and data["commit"]
    assert path.name == baseline.kind_name(baseline.machine_of(data))


def _stored(tmp_path, name, created, **machine):
    here = {"cpu": "Xeon", "cpu_flags": ["avx2", "avx512f"], "torch_threads": 2,
            "torch": "2.13.0+cpu", "host": "a", **machine}
    path = tmp_path / name
    path.write_text(json.dumps({"format": baseline.FORMAT, "created": created,
                                "machine": here, "cases": {}}))
    return path


def test_a_baseline_directory_gives_the_file_of_this_kind_of_machine(tmp_path):
    """CI's hosts are of several kinds (AMX one day, not the next): each kind's ratios are
    compared with a baseline recorded on that kind; another kind's newest is the fallback,
    and the caller is told."""
    amx = _stored(tmp_path, "amx.json", "2026-11-25", cpu_flags=["avx2", "amx_tile"])
    _stored(tmp_path, "avx512-old.json", "2026-11-20")  # older, of this kind: not picked
    new = _stored(tmp_path, "avx512-new.json", "2026-11-26")
    here = {"device": "cpu", "cpu": "Xeon", "cpu_flags": ["avx2", "avx512f"],
            "torch_threads": 2, "torch": "2.13.0+cpu", "host": "b"}
    assert baseline.pick(tmp_path, here) == (new, "recorded on this kind of machine")
    assert baseline.pick(amx, here) == (amx, "")  # a file is taken as given
    path, why = baseline.pick(tmp_path, {**here, "torch_threads": 1})
    assert path == new and why.startswith("none of 3")
    # A CPU baseline is not one for the GPU of the same host.
    assert baseline.pick(tmp_path, {**here, "device": "cuda"})[1].startswith("none of 3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no baseline"):
        baseline.pick(tmp_path / "empty", here)


def test_record_into_a_directory_names_the_file_for_this_machine(tmp_path):
    from benchmarks.gate import cli

    assert cli._record_path(tmp_path, "cpu") == tmp_path / baseline.kind_name(
        cli._machine("cpu"))
    assert cli._record_path(tmp_path / "b.json", "cpu") == tmp_path / "b.json"
    fresh = tmp_path / "new" / "baselines"  # not there yet: made, and the kind's file in it
    assert cli._record_path(fresh, "cpu").parent == fresh and fresh.is_dir()


def test_a_baseline_directory_sorts_by_time_and_passes_over_a_broken_file(tmp_path):
    """The newest by the clock, not by the text of ``created`` (a file recorded in UTC-08
    at 20:00 is newer than one at 02:00 UTC the next day by its text); and one unreadable
    file does not stop the gate, it is named in the reason."""
    _stored(tmp_path, "a.json", "2026-11-26T02:00:00+0000")
    later = _stored(tmp_path, "b.json", "2026-11-25T20:00:00-0800")  # 04:00 UTC
    (tmp_path / "broken.json").write_text("{")
    here = {"device": "cpu", "cpu": "Xeon", "cpu_flags": ["avx2", "avx512f"],
            "torch_threads": 2, "torch": "2.13.0+cpu"}
    path, why = baseline.pick(tmp_path, here)
    assert path == later and "passed over" in why and "broken.json" in why
    for f in ("a.json", "b.json"):
        (tmp_path / f).unlink()
    with pytest.raises(ValueError, match="no baseline.*broken.json"):
        baseline.pick(tmp_path, here)


def test_kind_name():
    """Readable, and unique per kind: two hosts alike in the readable words (one with
    avx512_bf16, one without; torch +cpu and +cu121) get two files, not one overwritten."""
    machine = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_flags": ["avx2", "avx512f",
               "amx_tile"], "torch_threads": 2, "torch": "2.13.0+cpu", "device": "cpu"}
    name = baseline.kind_name(machine)
    assert re.fullmatch(r"intel-xeon-processor-amx-2threads-torch2\.13\.0-[0-9a-f]{6}\.json",
                        name), name
    assert baseline.kind_name(dict(machine)) == name
    gpu = {**machine, "cpu_flags": ["avx2"], "gpu": {"name": "NVIDIA H100 80GB HBM3"}}
    assert baseline.kind_name(gpu).startswith(
        "intel-xeon-processor-avx2-2threads-torch2.13.0-nvidia-h100-80gb-hbm3-")
    avx = {**machine, "cpu_flags": ["avx2", "avx512f"]}
    assert baseline.kind_name(avx) != baseline.kind_name({**avx, "cpu_flags": [
        "avx2", "avx512f", "avx512_bf16"]})
    assert baseline.kind_name(avx) != baseline.kind_name({**avx, "torch": "2.13.0+cu121"})


def test_parse_inject():
    assert parse_inject("unfold=1.5, fft=1.1") == {"unfold": 1.5, "fft": 1.1}
    assert parse_inject("") == {}
    with pytest.raises(ValueError, match="NAME=FACTOR"):
        parse_inject("unfold=0.5")


class FakeClock:
    """perf_counter for slowed(): a call advances it by its own duration, each reading by
    a microsecond (so the spin loop ends)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1e-6
        return self.now


def test_injected_slowdown_adds_a_fixed_share_of_the_median_call(monkeypatch):
    """The spin is (factor - 1) x the median of the recent calls: one slow call (a hiccup)
    neither lengthens its own spin nor the later ones."""
    clock = FakeClock()
    monkeypatch.setattr(gate_worker, "time", clock)
    durations = iter([1e-3, 1e-3, 50e-3, *[1e-3] * 40])

    def call():
        clock.now += next(durations)

    slow = slowed(call, 1.5)
    spent = []
    for _ in range(20):
        start = clock.now
        slow()
        spent.append(clock.now - start)
    assert spent[2] == pytest.approx(50e-3 + 0.5e-3, rel=0.02)  # not 75 ms
    assert all(s == pytest.approx(1.5e-3, rel=0.02) for s in spent[3:])


def test_worker_measures_this_tree_and_reports_refusals(tmp_path):
    """A real worker process on this tree: samples come back for torch; a backend this tree
    does not have, and one that refuses the problem, come back as refusals."""
    root = __import__("pathlib").Path(__file__).parents[1]
    cases = [*gate_cases(["torch", "no-such-backend"], quick=True),
             *[c for c in gate_cases(["winograd-f2"]) if "256" in c.shape]]
    worker = Worker("head", root)
    try:
        results = run_rounds(cases, [worker], budget_s=0.0, min_rounds=3)
        alone = run_rounds(cases[:1], [worker], budget_s=0.0, min_rounds=3, with_ref=False)
    finally:
        worker.close()
    torch_samples = results[cases[0].key]["head"]
    assert len(torch_samples.call) == 3 and all(t > 0 for t in torch_samples.ratio)
    assert len(alone[cases[0].key]["head"].call) == 3 and not alone[cases[0].key]["head"].ref
    assert "no backend 'no-such-backend'" in results[cases[1].key]["head"].refusal
    assert results[cases[2].key]["head"].call  # winograd runs 3x3 stride 1


def test_a_dead_worker_is_an_error_not_a_hang(tmp_path):
    (tmp_path / "impls").mkdir()
    (tmp_path / "impls" / "__init__.py").write_text("raise SystemExit('broken tree')\n")
    with pytest.raises(WorkerError, match="it exited"):
        Worker("base", tmp_path)


def test_cli_bad_baseline_exits_2(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    out = subprocess.run([sys.executable, "-m", "benchmarks", "gate", "--baseline", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "not a gate baseline" in out.stdout


@pytest.mark.parametrize("option, says", [
    (["--inject", "unfodl=1.5"], "--inject unfodl: not a backend or case the gate measures"),
    (["--band", "unfodl=0.1"], "--band unfodl: not a backend or case the gate measures"),
    (["--inject", "unfold=0.5"], "expected NAME=FACTOR with FACTOR >= 1"),
    (["--backend", "nosuch", "--budget", "0.5", "--baseline", "benchmarks/gate/baselines"],
     "--backend nosuch: no such backend in the working tree or the baseline"),
    (["--band", "fft=-0.5"], "'-0.5': need a number > 0"),
    (["--threshold", "-1"], "argument --threshold: '-1': need a number > 0"),
    (["--confidence", "2"], "argument --confidence: '2': need a number < 1"),
    (["--budget", "0"], "argument --budget: '0': need a number > 0"),
])
def test_cli_a_misspelt_band_or_injection_exits_2(option, says):
    """A typo in --inject used to inject nothing, and the self-check it was for "passed";
    a band of -1 failed unchanged code, a confidence of 2 passed on NaN intervals. A
    backend in neither tree is refused before any round, with no verdict printed."""
    out = subprocess.run([sys.executable, "-m", "benchmarks", "gate", "--quick", *option],
                         capture_output=True, text=True)
    said = out.stdout + out.stderr
    assert out.returncode == 2 and says in said, said
    assert "Traceback" not in said and "gate: pass" not in said and "round" not in said


def test_cli_a_gate_that_measured_or_compared_nothing_is_no_pass(tmp_path):
    """A record of a backend that cannot run wrote an empty baseline and exited 0; a
    comparison with a baseline that lacks the backend printed "gate: pass"."""
    gate = [sys.executable, "-m", "benchmarks", "gate", "--quick", "--budget", "0.5"]
    out = subprocess.run([*gate, "--record", str(tmp_path / "b.json"), "--backend",
                          "torch.nn.functional:conv22"], capture_output=True, text=True)
    said = out.stdout + out.stderr
    assert out.returncode == 2 and "nothing was measured, no baseline written" in said, said
    assert "has no attribute 'conv22'" in said and not (tmp_path / "b.json").exists()
    out = subprocess.run([*gate, "--baseline", "benchmarks/gate/baselines", "--backend",
                          "torch.nn.functional:conv2d"], capture_output=True, text=True)
    said = out.stdout + out.stderr
    assert out.returncode == 2 and "nothing was compared" in said, said
    assert "not in the baseline" in said and "gate: pass" not in said


def test_cli_refuses_up_front_what_would_fail_or_mislead_after_measuring(tmp_path):
    """A CUDA device torch does not see crashed at the end with exit 1; an unwritable
    --markdown raised after the whole run; a user's package outside the repository passed
    against itself in BASE mode (both trees load the same file)."""
    (tmp_path / "cb_gate_ext.py").write_text("from torch.nn.functional import conv2d\n")
    env = {**__import__("os").environ, "PYTHONPATH": f".:{tmp_path}"}
    for option, says in (
            (["--device", "cuda"], "--device cuda, but torch sees no CUDA device"),
            (["--markdown", str(tmp_path / "no" / "x.md")], "--markdown"),
            (["HEAD", "--backend", "cb_gate_ext:conv2d"], "compared with itself")):
        if option[0] == "--device" and __import__("torch").cuda.is_available():
            continue
        out = subprocess.run([sys.executable, "-m", "benchmarks", "gate", "--quick",
                              "--budget", "0.5", *option], capture_output=True, text=True,
                             env=env, cwd=Path(__file__).parents[1])
        said = out.stdout + out.stderr
        assert out.returncode == 2 and says in said and "Traceback" not in said, said


def test_cli_base_mode_refuses_code_base_does_not_have(tmp_path):
    """Two more ways a review's kernel passed BASE mode against itself: an installed
    package's entry point (a name without a colon went unchecked), and a module inside the
    repository that BASE does not have (untracked: BASE's worker loaded this tree's)."""
    (tmp_path / "cb_gate_pkg").mkdir()
    (tmp_path / "cb_gate_pkg" / "__init__.py").write_text("")
    (tmp_path / "cb_gate_pkg" / "kern.py").write_text("from torch.nn.functional import conv2d\n")
    dist = tmp_path / "cb_gate_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cb-gate-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[convbench.backends]\n"
                                           "cb_gate_ep = cb_gate_pkg.kern:conv2d\n")
    root = Path(__file__).parents[1]
    untracked = root / f"cb_gate_untracked_{os.getpid()}.py"
    untracked.write_text("from torch.nn.functional import conv2d\n")
    env = {**os.environ, "PYTHONPATH": f".:{tmp_path}"}
    try:
        for backend, says in (("cb_gate_ep", "compared with itself"),
                              (f"{untracked.stem}:conv2d",
                               f"{untracked.name} is not in BASE HEAD (untracked")):
            out = subprocess.run([sys.executable, "-m", "benchmarks", "gate", "HEAD",
                                  "--quick", "--budget", "0.5", "--backend", backend],
                                 capture_output=True, text=True, env=env, cwd=root)
            said = out.stdout + out.stderr
            assert out.returncode == 2 and says in said and "Traceback" not in said, said
    finally:
        untracked.unlink()


def test_written_reports_carry_the_verdict_and_each_note_whole(tmp_path):
    from benchmarks.gate import cli

    case = gate_cases(["triton"], quick=True)[0]
    note = "triton unavailable: " + "a long reason | " * 12 + "THE END"
    rows = [verdicts.Row(case, verdicts.SKIPPED, note=note)]
    opts = cli.Options(markdown=tmp_path / "g.md", json=tmp_path / "g.json")
    cli._publish(rows, "title", opts)
    text = (tmp_path / "g.md").read_text()
    assert "THE END" in text and "a long reason \\| a long" in text
    assert "**gate: nothing was compared (1 skipped)" in text
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["verdict"] == "nothing compared" and data["rows"][0]["note"] == note


def test_bands_are_wider_against_a_stored_baseline():
    bands = {c.backend: c.threshold for c in gate_cases(["torch", "naive"], scale=2.0)}
    assert bands == {"torch": 2 * DEFAULT_THRESHOLD, "naive": 0.20}
    given = gate_cases(["torch"], threshold=0.03, scale=2.0)[0].threshold
    assert given == 0.03  # what the user asks for is not scaled


def test_power_summary_counts_runs_and_each_victim_benchmark():
    from benchmarks.gate.cli import Options
    from benchmarks.gate.power import summarize

    def trial(factor, shapes, estimates, strict, loose, alarms=()):
        return {"factor": factor, "victim_shapes": shapes, "victim_estimates": estimates,
                "0.99": {"detected": bool(strict), "detected_shapes": strict,
                         "false_alarms": list(alarms)},
                "0.95": {"detected": bool(loose), "detected_shapes": loose,
                         "false_alarms": list(alarms)}}

    trials = [trial(1.1, ["a", "b"], [1.1, 1.3], ["b"], ["a", "b"]),
              trial(1.1, ["a", "b"], [1.08, 1.2], [], ["b"]),
              trial(None, ["a", "b"], [1.0, 0.99], [], [], alarms=["fft x"])]
    text = summarize(trials, Options(), "unfold", 60)
    assert "| 99% | +10% | 2 | 1/2 | 0/2 |" in text
    assert "| 95% | +10% | 2 | 2/2 | 0/2 |" in text
    assert "| 99% | none (unchanged code) | 1 | — | 1/1 |" in text
    assert "| +10% | a | 0/2 | 1/2 | +10.0% (+8.0% .. +10.0%) |" in text
    assert "| +10% | b | 1/2 | 2/2 | +30.0% (+20.0% .. +30.0%) |" in text


def test_table_prints_notes_as_text_not_markup():
    from rich.console import Console

    from benchmarks.gate.cases import GateCase

    case = GateCase("triton", "s", "mb1ic3ih8oc4oh8kh3ph1", DEFAULT_THRESHOLD)
    row = verdicts.Row(case, verdicts.SKIPPED, note="pip install 'convbench[triton]'")
    console = Console(width=200, record=True)
    console.print(verdicts.table([row], "t"))
    assert "convbench[triton]" in console.export_text()


def test_a_baseline_from_another_kind_of_machine_is_named():
    """Ratios carry across machines of one kind only: a baseline timed with 2 threads,
    compared on 1, moved naive's ratio 55% with no code change."""
    here = {"cpu": "Xeon", "torch_threads": 1, "torch": "2.13.0+cpu", "host": "b"}
    assert baseline.other_kind({**here, "host": "a"}, here) == ""
    assert baseline.other_kind({**here, "torch_threads": 2}, here) == \
        "torch_threads 2 there, 1 here"
    flags = {**here, "cpu_flags": ["avx2", "amx_tile"]}  # one name, two generations
    assert baseline.other_kind(flags, {**here, "cpu_flags": ["avx2"]}).startswith("cpu_flags")
    # A baseline without a field cannot be shown to be of this kind: it differs.
    assert baseline.other_kind(here, flags).startswith("cpu_flags None there")


def test_self_test_judges_a_stored_baseline_from_another_machine_state_as_unjudgeable():
    """Against a stored file, the injected slowdown may meet a host in another state (torch
    itself moved): the gate then says "not comparable", which the self-test reports as
    such instead of failing CI (also against the baseline it recorded minutes before);
    interleaved, it must flag."""
    from benchmarks.gate import cli
    from benchmarks.gate.cases import GateCase

    def rows(verdict, note="", drift=None):
        victim = GateCase(cli.SELF_TEST_VICTIM, "s", "mb1ic3ih8oc4oh8kh3ph1", 0.1)
        other = GateCase("torch", "s", "mb1ic3ih8oc4oh8kh3ph1", 0.1)
        return [verdicts.Row(victim, verdict, note=note, drift=drift,
                             not_comparable=note if drift else ""),
                verdicts.Row(other, stats.UNCHANGED)]

    drifted = rows(stats.UNSURE, "not comparable: torch itself is +28% on this shape", 1.28)
    assert cli._self_check("stored", drifted, True, drift_allowed=True) == cli.UNJUDGED
    assert cli._self_check("interleaved", drifted, True, drift_allowed=False) == cli.WRONG
    assert cli._self_check("stored", rows(stats.UNSURE, "too short"), True,
                           drift_allowed=True) == cli.WRONG
    assert cli._self_check("interleaved", rows(stats.SLOWER), True, drift_allowed=False) == "ok"
    assert cli._self_check("unchanged", rows(stats.SLOWER), False,
                           drift_allowed=False) == cli.WRONG
    assert cli._self_check("unchanged", rows(stats.UNCHANGED), False,
                           drift_allowed=False) == "ok"


def test_a_slower_verdict_fails_only_if_measured_again_in_fresh_processes(monkeypatch):
    """CI once failed on unchanged winograd-f2 read +42% against its baseline for a whole
    run (a neighbour's memory traffic): a "slower" row is measured again, in restarted
    workers and for that case alone, and fails only if that says slower too."""
    from benchmarks.gate import cli
    from benchmarks.gate.cases import GateCase

    victim = GateCase("unfold", "s", "mb1ic3ih8oc4oh8kh3ph1", 0.1)
    other = GateCase("torch", "s", "mb1ic3ih8oc4oh8kh3ph1", 0.1)
    slow, same = stats.Change(1.4, 1.3, 1.5, 40, 0.99), stats.Change(1.0, 0.97, 1.03, 40, 0.99)

    class FakeWorker:
        restarts = 0

        def restart(self):
            self.restarts += 1

    measured = []
    monkeypatch.setattr(cli, "run_rounds", lambda cases, workers, budget, with_ref: (
        measured.append([c.backend for c in cases]) or "again"))

    def judge_then(second):
        return lambda cases, results: [verdicts.Row(c, second.verdict(0.1), second)
                                       for c in cases]

    first = [verdicts.Row(victim, stats.SLOWER, slow), verdicts.Row(other, stats.UNCHANGED,
                                                                   same)]
    workers = [FakeWorker(), FakeWorker()]
    passing = cli._confirm(first, workers, 30.0, judge_then(same), with_ref=True)
    assert measured == [["unfold"]] and [w.restarts for w in workers] == [1, 1]
    assert [r.verdict for r in passing] == [stats.UNSURE, stats.UNCHANGED]
    assert not verdicts.failed(passing)
    assert "slower at first, +40.0% [+30.0%, +50.0%], but +0.0% [-3.0%, +3.0%] when measured" \
        in passing[0].note
    failing = cli._confirm(first, workers, 30.0, judge_then(slow), with_ref=True)
    assert failing[0].verdict == stats.SLOWER and verdicts.failed(failing)
    assert "measured again in fresh processes: +40.0%" in failing[0].note
    # A second interval above no change upholds it, though inside the band (+6% [+2%, +9%]
    # against 10%): a true slowdown just past the band reads so half the time.
    near = stats.Change(1.06, 1.02, 1.09, 40, 0.99)
    assert cli._confirm(first, workers, 30.0, judge_then(near), with_ref=True)[0].verdict \
        == stats.SLOWER
    # A worker that does not restart: the first verdict stands, and says so.
    def no_restart():
        raise cli.WorkerError("it exited")
    workers[0].restart = no_restart
    alone = cli._confirm(first, workers, 30.0, judge_then(same), with_ref=True)
    assert alone[0].verdict == stats.SLOWER and "a worker did not restart" in alone[0].note
    workers[0] = FakeWorker()
    # Nothing slower: nothing measured again, no restart.
    measured.clear()
    assert cli._confirm(first[1:], workers, 30.0, judge_then(slow), with_ref=True) == first[1:]
    assert measured == [] and [w.restarts for w in workers] == [0, 3]
    # A confirmation that could not run leaves the first verdict standing.
    lost = verdicts.confirmed(first[0], verdicts.Row(victim, verdicts.ERROR, note="it exited"))
    assert lost.verdict == stats.SLOWER and "not measured again: it exited" in lost.note
    # Against a stored baseline a fresh process alone moves unchanged code's ratio by up to
    # its unwidened band: +4.5% [+3.3%, +6.0%] against a 10% band (5% unwidened) does not
    # uphold; the same reading interleaved does, and +8% [+6%, +10%] stored does.
    offset = stats.Change(1.045, 1.033, 1.06, 40, 0.99)
    assert cli._confirm(first, workers, 30.0, judge_then(offset), with_ref=True,
                        stored=True)[0].verdict == stats.UNSURE
    assert cli._confirm(first, workers, 30.0, judge_then(offset), with_ref=True)[0].verdict \
        == stats.SLOWER
    past = stats.Change(1.08, 1.06, 1.10, 40, 0.99)
    assert cli._confirm(first, workers, 30.0, judge_then(past), with_ref=True,
                        stored=True)[0].verdict == stats.SLOWER
    # A second measurement that found torch itself moved (not comparable) upholds nothing,
    # and the row says why.
    moved = verdicts.Row(victim, stats.UNSURE, slow, not_comparable="not comparable: torch "
                         "itself is +19% on this shape since the baseline")
    excused = verdicts.confirmed(first[0], moved)
    assert excused.verdict == stats.UNSURE and "torch itself is +19%" in excused.note


def test_self_test_fails_when_no_stored_baseline_could_judge(monkeypatch, tmp_path):
    """"Cannot judge" is allowed against each stored baseline (the machine may be in another
    state), but a gate that excused every stored comparison is broken: the self-test fails
    then, and passes once one stored baseline judges."""
    from benchmarks.gate import cli
    from benchmarks.gate.cases import GateCase

    victim = GateCase(cli.SELF_TEST_VICTIM, "s", "mb1ic3ih8oc4oh8kh3ph1", 0.1)
    other = GateCase("torch", "s", "mb1ic3ih8oc4oh8kh3ph1", 0.1)
    given = tmp_path / "stored.json"
    judging = set()  # the stored baselines that judge (the others find torch moved)

    def fake_run(opts, same_tree):
        assert same_tree
        if not opts.inject:
            slow = verdicts.Row(victim, stats.UNCHANGED)
        elif opts.baseline is None or opts.baseline in judging:
            slow = verdicts.Row(victim, stats.SLOWER)
        else:
            slow = verdicts.Row(victim, stats.UNSURE, note="not comparable: torch itself",
                                not_comparable="not comparable: torch itself")
        return [slow, verdicts.Row(other, stats.UNCHANGED)], "title"

    monkeypatch.setattr(cli, "record", lambda opts: 0)
    monkeypatch.setattr(cli, "run", fake_run)
    assert cli.self_test(cli.Options(quick=True, baseline=given)) == 1
    judging.add(given)
    assert cli.self_test(cli.Options(quick=True, baseline=given)) == 0


def test_power_judges_each_level_with_the_second_measurement():
    """power.py's verdict at each level applies the re-measure, as the gate does: a row
    slower at first but not when measured again is inconclusive; without a re-measure (a
    worker that did not restart) the first verdict counts."""
    from benchmarks.gate import power
    from benchmarks.gate.cases import GateCase

    case = GateCase("unfold", "s", "mb1ic3ih8oc4oh8kh3ph1", 0.05)
    base = list(noisy(40, 1.0, 0.01, seed=1))
    first = (base, list(noisy(40, 1.2, 0.01, seed=2)))
    calm = verdicts.Row(case, stats.UNCHANGED, samples=(base, list(noisy(40, 1.0, 0.01,
                                                                         seed=3))))
    steady = verdicts.Row(case, stats.SLOWER, samples=first)
    for level in power.LEVELS:
        assert power._verdict(verdicts.Row(case, stats.SLOWER, samples=first, again=calm),
                              level) == stats.UNSURE
        assert power._verdict(verdicts.Row(case, stats.SLOWER, samples=first, again=steady),
                              level) == stats.SLOWER
        assert power._verdict(verdicts.Row(case, stats.SLOWER, samples=first),
                              level) == stats.SLOWER


def test_json_rows_carry_the_second_measurement():
    from benchmarks.gate import cli
    from benchmarks.gate.cases import GateCase

    case = GateCase("unfold", "s", "mb1ic3ih8oc4oh8kh3ph1", 0.05)
    first, second = stats.Change(1.4, 1.3, 1.5, 40, 0.99), stats.Change(1.3, 1.2, 1.4, 20, 0.99)
    row = verdicts.Row(case, stats.SLOWER, first, again=verdicts.Row(case, stats.SLOWER, second))
    out = cli._row_json(row)
    assert out["factor"] == 1.4 and out["measured_again"]["factor"] == 1.3
    assert "measured_again" not in cli._row_json(verdicts.Row(case, stats.SLOWER, first))

"""The targets table (reports/targets.py) from small results files written here, and the
runs benchmarks/targets.py derives from TARGETS. Nothing is timed."""

from __future__ import annotations

import math

import pytest

from benchmarks import records
from benchmarks.shapes import shape_set
from benchmarks.targets import TARGETS, runs, sweep_argv
from reports import targets
from reports.results import load


def _target(title):
    return next(t for t in TARGETS if t.title == title)


def _row(set_name, entry, backend, median_s=None, status="ok", reason="",
         direction="forward"):
    key = "|".join((backend, set_name, entry.descriptor, "float32", "cpu", direction, "warm"))
    return records.case_row(key=key, backend=backend, shape_set=set_name,
                            descriptor=entry.descriptor, name=entry.spec.name,
                            direction=direction, cache="warm",
                            batch=entry.spec.mb, status=status, reason=reason,
                            median_s=median_s if status == "ok" else None)


def _file(tmp_path, rows):
    results = records.ResultsFile(tmp_path / "targets.jsonl")
    results.append({"record": "machine", "id": "m1", "cpu": "test cpu", "torch_threads": 2,
                    "torch": "2.13.0", "loadavg_1min": 0.1})
    for r in rows:
        results.append(r)
    return load([results.path])


def _evaluate(tmp_path, title, rows):
    return targets.evaluate(_target(title), _file(tmp_path, rows).rows)


def _layers_3x3(batch):
    return [e for e in shape_set("resnet50", batch) if e.spec.kh == 3]


def test_met_target_lists_every_shape_with_its_ratio(tmp_path):
    rows = []
    for e, ratio in zip(_layers_3x3(1), (0.7, 0.8, 0.9, 1.0)):
        rows += [_row("resnet50", e, "torch", 1e-3), _row("resnet50", e, "unfold", 1e-3 / ratio),
                 _row("resnet50", e, "unfold", 1.0, direction="backward-data")]  # not a target
    result = _evaluate(tmp_path, "unfold, batch 1", rows)
    assert result["met"] == "yes"
    assert result["worst"] == pytest.approx(0.7)
    assert result["geomean"] == pytest.approx(math.prod((0.7, 0.8, 0.9, 1.0)) ** 0.25)
    cells = targets.table([result])[0]
    assert "res2a_branch2b 0.70x" in cells[1] and "res5a_branch2b 1.00x" in cells[1]
    assert "worst 0.70x" in cells[2] and cells[4] == "yes"


def test_missed_target_says_no(tmp_path):
    rows = []
    for e, ratio in zip(_layers_3x3(8), (0.4, 1.2, 1.1, 1.3)):
        rows += [_row("resnet50-3x3", e, "torch", 1e-2),
                 _row("resnet50-3x3", e, "winograd-f2", 1e-2 / ratio)]
    result = _evaluate(tmp_path, "winograd-f2, batch 8", rows)
    assert result["met"] == "no" and result["worst"] == pytest.approx(0.4)


def test_a_skipped_shape_is_named_and_the_target_is_incomplete(tmp_path):
    wanted = [e for e in shape_set("large-kernel", 1) if _target("fft, large kernels")
              .select(e.spec)]
    rows = [_row("large-kernel", e, "torch", 1e-2) for e in wanted]
    rows += [_row("large-kernel", e, "fft", 5e-3) for e in wanted[1:]]
    rows.append(_row("large-kernel", wanted[0], "fft", status="failed", reason="boom"))
    result = _evaluate(tmp_path, "fft, large kernels", rows)
    assert result["met"] == "incomplete"
    assert "fft failed: boom" in targets.table([result])[0][1]


def test_missing_backend_is_reported_as_not_registered(tmp_path):
    rows = [_row(s, e, b, 1e-3) for s in ("resnet50", "large-kernel")
            for e in shape_set(s, 1) for b in ("torch", "fft")]
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    assert result["met"] == "not registered"
    assert "auto" in targets.table([result])[0][2]


def test_auto_is_compared_with_the_fastest_other_backend(tmp_path):
    rows = []
    for s in ("resnet50", "large-kernel"):
        for e in shape_set(s, 1):
            rows += [_row(s, e, "torch", 2e-3), _row(s, e, "fft", 1e-3),
                     _row(s, e, "naive", status="skipped", reason="budget guard"),
                     _row(s, e, "auto", 1e-3 / 0.97)]
    rows[-1]["median_s"] = 1e-3 / 0.5  # one shape far off the best: the worst fails
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    assert result["geomean"] > 0.95 and result["worst"] == pytest.approx(0.5)
    assert result["met"] == "no"
    assert "fastest other there: fft" in targets.table([result])[0][1]


def test_a_file_without_the_targets_shapes(tmp_path):
    result = _evaluate(tmp_path, "unfold, batch 8", [])
    assert result["met"] == "not in this run"


def test_markdown_and_report_hook(tmp_path):
    rows = []
    for e in _layers_3x3(1):
        rows += [_row("resnet50", e, "torch", 1e-3), _row("resnet50", e, "unfold", 1.2e-3)]
    result_set = _file(tmp_path, rows)
    text = targets.markdown(result_set)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(TARGETS) and "test cpu" in text
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("<body><h2 id=speedup>x</h2></body>")
    (out / "summary.md").write_text("# r\n## Speedup over torch\n")
    targets.add_to_report(out, [result_set])
    page = (out / "index.html").read_text()
    assert page.index("id=targets") < page.index("id=speedup")
    assert "## Speed targets" in (out / "summary.md").read_text()


def test_runs_one_sweep_per_batch():
    by_batch = {r["batch"]: r for r in runs()}
    assert by_batch[1]["backends"] is None  # auto needs every backend's time
    assert set(by_batch[1]["shape_sets"]) == {"resnet50", "large-kernel"}
    assert set(by_batch[8]["backends"]) == {"unfold", "winograd-f2", "winograd-f4", "torch"}
    argv = sweep_argv(by_batch[8], "r.jsonl", 0.5, 3.0, fresh=False)
    assert argv[:3] == ["sweep", "--batch", "8"] and "--fresh" not in argv


def test_resnet50_3x3_is_resnet50s_3x3_layers():
    assert [(e.spec, e.count) for e in shape_set("resnet50-3x3")] == \
        [(e.spec, e.count) for e in _layers_3x3(None)]

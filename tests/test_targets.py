"""The targets table (reports/targets.py) from small results files written here, and the
runs benchmarks/targets.py derives from TARGETS. Nothing is timed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import records
from benchmarks.shapes import shape_set
from benchmarks.targets import TARGETS, results_file, runs, sweep_argv
from reports import targets
from reports.results import load


def _target(title):
    return next(t for t in TARGETS if t.title == title)


def _row(set_name, entry, backend, median_s=None, status="ok", reason="",
         direction="forward", dtype="float32", device="cpu", tf32=False,
         memory_format="contiguous"):
    key = "|".join((backend, set_name, entry.descriptor, dtype, device, direction, "warm",
                    *(["tf32"] if tf32 else []),
                    *([memory_format] if memory_format != "contiguous" else [])))
    return records.case_row(key=key, backend=backend, shape_set=set_name,
                            descriptor=entry.descriptor, name=entry.spec.name,
                            direction=direction, cache="warm", dtype=dtype, device=device,
                            tf32=tf32, memory_format=memory_format, batch=entry.spec.mb,
                            status=status, reason=reason,
                            median_s=median_s if status == "ok" else None)


def _file(tmp_path, rows, gpu=None):
    results = records.ResultsFile(tmp_path / "targets.jsonl")
    results.append({"record": "machine", "id": "m1", "cpu": "test cpu", "torch_threads": 2,
                    "torch": "2.13.0", "loadavg_1min": 0.1, "gpu": gpu})
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


def test_channels_last_rows_are_not_the_nchw_targets(tmp_path):
    """Rows timed on channels_last operands (sweep --memory-format) in the same file are
    another number: a target of NCHW operands reads only its own."""
    rows = []
    for e in _layers_3x3(1):
        rows += [_row("resnet50", e, "torch", 1e-3), _row("resnet50", e, "unfold", 2e-3),
                 _row("resnet50", e, "unfold", 1e-4, memory_format="channels_last")]
    result = _evaluate(tmp_path, "unfold, batch 1", rows)
    assert result["met"] == "no" and result["worst"] == pytest.approx(0.5)


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


def test_a_pair_timed_on_two_machines_gives_no_ratio(tmp_path):
    """A sweep resumed on another machine can cut a shape's pair in two: no ratio from it."""
    rows = []
    for i, e in enumerate(_layers_3x3(1)):
        rows += [{**_row("resnet50", e, "torch", 1e-3), "machine_id": "m2" if i == 0 else "m1"},
                 {**_row("resnet50", e, "unfold", 1e-3), "machine_id": "m1"}]
    result = _evaluate(tmp_path, "unfold, batch 1", rows)
    assert result["met"] == "incomplete" and len([s for s in result["shapes"] if s["ratio"]]) == 3
    assert "timed on different machines" in targets.table([result])[0][1]


def test_missing_backend_is_reported_as_not_in_the_sweep(tmp_path):
    rows = [_row(s, e, b, 1e-3) for s in ("resnet50", "large-kernel")
            for e in shape_set(s, 1) for b in ("torch", "fft")]
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    assert result["met"] == "not in this sweep"  # a --backend list, or not registered then
    assert "no auto rows in this file: the sweep left it out" in targets.table([result])[0][2]


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
    # A row saying what auto ran shows it: a ratio of fft against itself is noise.
    rows[-1]["ran"] = "fft"
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    assert "(auto ran fft; fastest other there: fft)" in targets.table([result])[0][1]


def _paired(row, ratio, low=None, high=None, partner="torch"):
    row.update(paired_backend=partner, paired_ratio=ratio,
               paired_ci=[low or ratio * 0.98, high or ratio * 1.02])
    return row


def test_paired_rows_give_the_ratio_of_their_neighbouring_rounds(tmp_path):
    rows = []
    for e in _layers_3x3(1):  # medians say 0.5x: torch was timed on a quieter machine
        rows += [_row("resnet50", e, "torch", 1e-3),
                 _paired(_row("resnet50", e, "unfold", 2e-3), 0.7)]
    result = _evaluate(tmp_path, "unfold, batch 1", rows)
    assert result["worst"] == pytest.approx(0.7) and result["met"] == "yes"
    assert "0.70x*" not in targets.table([result])[0][1]
    assert "worst 0.70x, 95% interval 0.69-0.71 (vs torch)" in targets.table([result])[0][2]
    _paired(rows[-1], 0.7, 0.5, 0.9)  # a wide interval is noisy, and reaches the goal
    result = _evaluate(tmp_path, "unfold, batch 1", rows)
    assert "res5a_branch2b 0.70x*" in targets.table([result])[0][1]
    assert targets.table([result])[0][4] == (
        "yes (within noise: the 95% interval of res5a_branch2b reaches past the goal)")
    _paired(rows[-1], 0.7, partner="fft")  # paired with another: the medians it is
    assert _evaluate(tmp_path, "unfold, batch 1", rows)["worst"] == pytest.approx(0.5)


def test_a_miss_whose_every_failing_shape_may_be_noise_says_so(tmp_path):
    rows = []
    for e in _layers_3x3(8):
        rows += [_row("resnet50-3x3", e, "torch", 1e-3),
                 _paired(_row("resnet50-3x3", e, "winograd-f4", 1e-3), 1.1)]
    _paired(rows[1], 0.97, 0.95, 1.02)  # below 1.0, but its interval reaches it
    result = _evaluate(tmp_path, "winograd-f4, batch 8", rows)
    assert result["met"] == "no" and "no (within noise: the 95% interval of res2a" in \
        targets.table([result])[0][4]
    _paired(rows[1], 0.97, 0.95, 0.99)  # a clear miss: no hedge
    assert targets.table([_evaluate(tmp_path, "winograd-f4, batch 8", rows)])[0][4] == "no"


def test_no_hedge_on_a_worst_goal_when_another_goal_failed(tmp_path):
    """auto at 0.79x of the best everywhere, each interval reaching 0.8: its worst shape
    may be noise, its geomean (goal 0.95) is not; the miss is no closer for the first."""
    rows = []
    for s in ("resnet50", "large-kernel"):
        for e in shape_set(s, 1):
            rows += [_row(s, e, "torch", 1e-3), _paired(_row(s, e, "auto", 1e-3), 0.79, 0.75,
                                                        0.83)]
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    assert result["geomean"] == pytest.approx(0.79) and result["close"] == []
    assert targets.table([result])[0][4] == "no"


def test_auto_against_the_fastest_other_through_their_ratios_to_one_partner(tmp_path):
    rows, shapes = [], [(s, e) for s in ("resnet50", "large-kernel") for e in shape_set(s, 1)]
    for s, e in shapes:
        rows += [_row(s, e, "torch", 1e-3), _paired(_row(s, e, "fft", 1e-3), 2.0, 1.9, 2.1),
                 _row(s, e, "naive", status="skipped", reason="budget guard"),
                 _paired(_row(s, e, "auto", 1e-3), 1.9, 1.8, 2.0)]
    rows[-1]["paired_ratio"], rows[-3]["paired_ratio"] = 0.98, 0.5  # auto ran torch there
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    first, last = result["shapes"][0], result["shapes"][-1]  # in the order of ``shapes``
    assert first["ratio"] == pytest.approx(0.95) and first["baseline"] == "fft"
    # Each side's reach in log added in quadrature: down, auto's own down (1.9 to 1.8) and
    # fft's up (2.0 to 2.1, which it divides); up, auto's up and fft's down.
    down = math.hypot(math.log(1.9 / 1.8), math.log(2.1 / 2.0))
    up = math.hypot(math.log(2.0 / 1.9), math.log(2.0 / 1.9))
    assert first["ci"] == pytest.approx((0.95 / math.exp(down), 0.95 * math.exp(up)))
    assert first["noisy"] is False
    assert last["ratio"] == pytest.approx(0.98) and last["baseline"] == "torch"
    rows[-1]["paired_ci"] = None  # under 6 rounds: no interval, noise unknown
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    assert result["shapes"][-1]["noisy"] is None and result["shapes"][-1]["ci"] is None
    assert "1 of unknown spread\u2020" in targets.table([result])[0][2]
    rows[-3]["paired_backend"] = None  # an unpaired other backend: the medians, and said
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    assert [x["paired"] for x in result["shapes"]].count(False) == 1
    assert "1 of separately timed cases (unpaired)" in targets.table([result])[0][2]


def test_auto_paired_with_the_backend_it_ran_is_judged_by_that_ratio_alone(tmp_path):
    rows, shapes = [], [(s, e) for s in ("resnet50", "large-kernel") for e in shape_set(s, 1)]
    for s, e in shapes:
        auto = _paired(_row(s, e, "auto", 1e-3), 0.97, 0.96, 0.98, partner="fft")
        auto["ran"] = "fft"
        rows += [_row(s, e, "torch", 1e-3), _paired(_row(s, e, "fft", 1e-3), 2.0, 1.0, 4.0),
                 _paired(_row(s, e, "unfold", 1e-3), 0.5), auto]
    result = _evaluate(tmp_path, "auto, batch 1", rows)
    first = result["shapes"][0]  # fft's wide interval against torch is shared: it cancels
    assert first["ratio"] == pytest.approx(0.97) and first["baseline"] == "fft"
    assert first["ci"] == pytest.approx((0.96, 0.98))  # auto's own interval against fft
    # Where auto ran unfold but fft is the fastest: auto's cost times unfold against fft.
    _paired(rows[-1], 0.97, partner="unfold")["ran"] = "unfold"
    last = _evaluate(tmp_path, "auto, batch 1", rows)["shapes"][-1]
    assert last["ratio"] == pytest.approx(0.97 * 0.5 / 2.0) and last["baseline"] == "fft"
    assert last["noisy"]  # fft's interval (1 to 4) is now part of it


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
    cpu_targets = [t for t in TARGETS if t.device == "cpu"]
    assert len(table) == 2 + len(cpu_targets) and "test cpu" in text
    assert "triton" not in text  # the GPU's targets are not this file's
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
    assert {r["device"] for r in by_batch.values()} == {"cpu"}
    assert by_batch[1]["backends"] is None  # auto needs every backend's time
    assert set(by_batch[1]["shape_sets"]) == {"resnet50", "large-kernel"}
    assert set(by_batch[8]["backends"]) == {"unfold", "winograd-f2", "winograd-f4",
                                            "winograd-f4x1", "torch"}
    argv = sweep_argv(by_batch[8], "r.jsonl", 0.5, 3.0, fresh=False)
    assert argv[:3] == ["sweep", "--batch", "8"] and "--fresh" not in argv
    assert argv[argv.index("--paired-with") + 1] == "torch"  # CPU ratios are paired


def test_resnet50_3x3_is_resnet50s_3x3_layers():
    assert [(e.spec, e.count) for e in shape_set("resnet50-3x3")] == \
        [(e.spec, e.count) for e in _layers_3x3(None)]


def _gpu_rows(ratio_of):
    """triton and torch rows on every ResNet-50 layer at batch 32, in the three precisions;
    ``ratio_of(precision, layer index)`` is torch's time over triton's, by the wall clock
    and on the device (CUDA-graph time) alike."""
    rows = []
    for dtype, tf32, name in (("float32", False, "float32"), ("float32", True, "TF32"),
                              ("bfloat16", False, "bfloat16")):
        for i, e in enumerate(shape_set("resnet50", 32)):
            rows += [_row("resnet50", e, "torch", 1e-3, dtype=dtype, device="cuda", tf32=tf32),
                     _row("resnet50", e, "triton", 1e-3 / ratio_of(name, i), dtype=dtype,
                          device="cuda", tf32=tf32)]
    return [{**r, "graph_median_s": r["median_s"], "graph_noise": 0.01} for r in rows]


def test_gpu_runs_one_sweep_per_precision_each_in_its_file():
    gpu = runs(device="cuda")
    assert [(r["dtype"], r["tf32"], r["batch"]) for r in gpu] == [
        ("bfloat16", False, 32), ("float32", False, 32), ("float32", True, 32)]
    assert all(r["backends"] == ["triton", "torch"] and r["shape_sets"] == ["resnet50"]
               for r in gpu)
    names = [results_file(Path("d"), r).name for r in gpu]
    assert names == ["targets-cuda-bfloat16.jsonl", "targets-cuda-float32.jsonl",
                     "targets-cuda-float32-tf32.jsonl"]
    argv = sweep_argv(gpu[2], "r.jsonl", 0.5, 10.0, fresh=True)
    assert argv[argv.index("--device") + 1] == "cuda" and "--tf32" in argv
    assert argv[argv.index("--dtype") + 1] == "float32"
    assert "--tf32" not in sweep_argv(gpu[0], "r.jsonl", 0.5, 10.0, fresh=True)
    assert "--paired-with" not in argv  # device times from CUDA graphs; GPU minutes are few


def test_a_target_reads_only_rows_of_its_precision(tmp_path):
    # triton is far ahead in float32 and behind in bfloat16: the bf16 target must say no
    rows = _gpu_rows(lambda precision, i: 0.5 if precision == "bfloat16" else 2.0)
    result = _evaluate(tmp_path, "triton bfloat16, batch 32", rows)
    assert result["met"] == "no" and result["worst"] == pytest.approx(0.5)
    strict = _evaluate(tmp_path, "triton float32 (strict), batch 32", rows)
    assert strict["met"] == "compared" and strict["geomean"] == pytest.approx(2.0)
    assert len(strict["shapes"]) == len(shape_set("resnet50", 32))


def test_gpu_ratios_are_of_device_times_with_the_wall_clock_beside(tmp_path):
    """On a GPU a wall-clock round of short calls can time the launcher: where both rows
    have CUDA-graph times, the ratio is theirs (bf16: triton 0.9x cuDNN on the device), and
    the wall-clock ratio (0.4x: Python and launches) is shown beside it, not hidden."""
    rows = _gpu_rows(lambda precision, i: 0.4)
    for r in rows:  # device times: cuDNN 0.9 ms, triton 1.0 ms; none for the first layer
        r["graph_median_s"] = 1e-3 if r["backend"] == "triton" else 0.9e-3
        if r["descriptor"] == shape_set("resnet50", 32)[0].descriptor:
            r["graph_median_s"], r["graph_error"] = None, "RuntimeError: capture failed"
    result = _evaluate(tmp_path, "triton bfloat16, batch 32", rows)
    assert result["met"] == "yes" and result["worst"] == pytest.approx(0.9)
    table = targets.per_layer(targets.layer_groups(TARGETS)[0], rows)[2]
    assert table[0][1:] == ["0.40x (wall only)"] * 3  # no graph times: marked
    assert table[1][1:] == ["0.90x (wall 0.40x)"] * 3
    strict = _evaluate(tmp_path, "triton float32 (strict), batch 32", rows)
    assert "1 by wall clock only" in targets.table([strict])[0][2]


def test_a_device_time_ratio_is_marked_by_the_spread_of_device_times():
    """'*' said the wall-clock IQR was over 10% beside a ratio of device times; it is now
    judged on the replays' spread (graph_noise), and rows without it are marked unknown."""
    e = shape_set("resnet50", 32)[0]
    def pair(**graph):
        return {b: {**_row("resnet50", e, b, 1e-3, dtype="bfloat16", device="cuda"),
                    "noise": 0.5, "graph_median_s": 1e-4, **graph} for b in ("torch", "triton")}
    target = next(t for t in TARGETS if t.title == "triton bfloat16, batch 32")
    shape = targets._shape(target, "resnet50", e.descriptor, pair(graph_noise=0.01))
    assert shape["noisy"] is False and targets._cell(shape) == "1.00x"  # wall noise: not it
    shape = targets._shape(target, "resnet50", e.descriptor, pair(graph_noise=0.2))
    assert targets._cell(shape) == "1.00x*"
    shape = targets._shape(target, "resnet50", e.descriptor, pair())
    assert shape["noisy"] is None and targets._cell(shape) == "1.00x\u2020"


def test_gpu_table_has_a_column_per_precision_for_every_layer(tmp_path):
    rows = _gpu_rows(lambda precision, i: {"float32": 1.0, "TF32": 0.9, "bfloat16": 0.85}
                     [precision] * (0.5 if i == 0 else 1.0))
    rows = [r for r in rows if not (r["backend"] == "triton" and r["dtype"] == "bfloat16"
                                    and r["descriptor"].startswith(shape_set("resnet50", 32)[5]
                                                                   .descriptor))]
    result_set = _file(tmp_path, rows, gpu={"name": "Test GPU", "cuda": "12.8",
                                            "cudnn": 91000, "driver": "570.1"})
    text = targets.markdown(result_set)
    assert "Test GPU (CUDA 12.8, cuDNN 91000, driver 570.1" in text
    assert "unfold" not in text  # the CPU's targets are not this file's
    lines = text.splitlines()
    assert "triton vs torch (cuDNN) per layer (resnet50, batch 32, cuda):" in text
    head = lines.index("| layer | float32 | TF32 | bfloat16 |")
    layers = shape_set("resnet50", 32)
    body = lines[head + 2:head + 2 + len(layers)]
    assert len(body) == len(layers) and all(line.startswith("| ") for line in body)
    assert body[0].startswith("| conv1 | 0.50x | 0.45x | 0.42x |")
    assert "- (triton no row)" in body[5]
    bf16 = targets.evaluate(_target("triton bfloat16, batch 32"), result_set.rows)
    assert bf16["met"] == "yes" and bf16["worst"] == pytest.approx(0.85)


def test_a_run_s_precision_files_make_one_report_section_with_the_per_layer_table(tmp_path):
    rows = _gpu_rows(lambda precision, i: 0.9)
    files = []
    for dtype, tf32 in (("float32", False), ("float32", True), ("bfloat16", False)):
        results = records.ResultsFile(tmp_path / f"targets-cuda-{dtype}{'-tf32' * tf32}.jsonl")
        results.append({"record": "machine", "id": f"m-{dtype}-{tf32}", "host": "gpubox",
                        "device": "cuda", "gpu": {"name": "Test GPU"}})
        for r in rows:
            if (r["dtype"], r["tf32"]) == (dtype, tf32):
                results.append({**r, "machine_id": f"m-{dtype}-{tf32}"})
        files.append(results.path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("<body><h2 id=speedup>x</h2></body>")
    (out / "summary.md").write_text("# r\n## Speedup over torch\n")
    targets.add_to_report(out, [load([f]) for f in files])
    summary = (out / "summary.md").read_text()
    assert summary.count("## Speed targets") == 1
    assert "| layer | float32 | TF32 | bfloat16 |" in summary and "not in this run" not in summary
    assert "in 3 sweeps started" in summary
    # Another machine's file is a section of its own, with an id of its own.
    other = records.ResultsFile(tmp_path / "other.jsonl")
    other.append({"record": "machine", "id": "m-other", "host": "otherbox", "device": "cuda",
                  "gpu": {"name": "Other GPU"}})
    for r in rows:
        if r["dtype"] == "bfloat16":
            other.append({**r, "machine_id": "m-other"})
    (out / "index.html").write_text("<body><h2 id=speedup>x</h2></body>")
    targets.add_to_report(out, [load([f]) for f in [*files, other.path]])
    page = (out / "index.html").read_text()
    assert page.count("<h2 id=targets>") == 1 and page.count("<h2 id=targets-2>") == 1
    # bfloat16 alone there still gets its per-layer table (its target names four layers).
    assert "<th>layer</th><th>bfloat16</th></tr>" in page.split("<h2 id=targets-2>")[1]


def test_table_only_with_a_precision_missing_prints_what_there_is(tmp_path, capsys):
    rows = [r for r in _gpu_rows(lambda precision, i: 0.9) if r["dtype"] == "bfloat16"]
    present = _file(tmp_path, rows).paths[0]
    assert targets.write([present, tmp_path / "absent.jsonl"], tmp_path, "cuda") == 0
    text = (tmp_path / "targets.md").read_text()
    assert "triton bfloat16, batch 32" in text and "| yes |" in text
    assert "| triton TF32, batch 32 |" in text and "not in this run" in text
    assert "| layer | bfloat16 |" in text  # every layer, though one precision is here
    assert "no such file" in capsys.readouterr().err
    assert targets.write([tmp_path / "absent.jsonl"], tmp_path, "cuda") == 2


def test_the_provenance_gives_each_sweep_s_first_start_and_the_load_range(tmp_path):
    """Three files of one host and commit are read as one run, yet may come from separate
    calls: each file's first start is listed (a resume inside a file is not another
    sweep), with the load range, not the first file's load alone."""
    paths = []
    for name, starts, load_avg in (("a", ("2026-11-26T09:35", "2026-11-26T10:02"), 1.2),
                                   ("b", ("2026-11-26T09:37",), 1.0)):
        results = records.ResultsFile(tmp_path / f"{name}.jsonl")
        results.append({"record": "machine", "id": name, "loadavg_1min": load_avg})
        for start in starts:
            results.append({"record": "run", "started": start})
        paths.append(results.path)
    assert targets._when(load(paths)) == ("in 2 sweeps started 2026-11-26 09:35, 2026-11-26 "
                                         "09:37 (load average 1.0-1.2)")
    assert targets._when(load(paths[:1])) == ("in one run started 2026-11-26 09:35 (load "
                                             "average 1.2)")


def test_the_provenance_names_each_file_s_own_machine_and_commit(tmp_path):
    """Precisions measured on two GPUs: the first file's machine used to head the whole
    table (an H200's bfloat16 file made the H100's float32 one read as the H200's, with
    the last file's commit for both)."""
    paths = []
    for name, gpu, commit in (("bf16", "NVIDIA H200", "aaaaaaaa1"),
                              ("fp32", "NVIDIA H100 80GB HBM3", "bbbbbbbb2"),
                              ("tf32", "NVIDIA H100 80GB HBM3", "bbbbbbbb2")):
        results = records.ResultsFile(tmp_path / f"{name}.jsonl")
        results.append({"record": "machine", "id": gpu, "torch": "2.11",
                        "gpu": {"name": gpu, "cuda": "13.0", "cudnn": 91900}})
        results.append({"record": "run", "started": "2026-11-27T06:44",
                        "commit_info": {"id": commit, "dirty": False}})
        results.append({"record": "case", "key": name, "machine_id": gpu})
        paths.append(results.path)
    text = targets.provenance(load(paths))
    h200, h100 = text.split("; on ")
    assert h200.startswith("Measured on NVIDIA H200 (") and "commit aaaaaaaa" in h200
    assert h200.endswith(f"({paths[0]})") and "bbbbbbbb" not in h200
    assert h100.startswith("NVIDIA H100 80GB HBM3 (") and "commit bbbbbbbb" in h100
    assert f"({paths[1]}, {paths[2]})" in h100
    assert "; on " not in targets.provenance(load(paths[1:]))


def test_precision_option_measures_only_that_precision(tmp_path, monkeypatch, capsys):
    """--precision bfloat16 sweeps the bfloat16 run alone; the table still reads every
    results file there is (here: none, so it says so)."""
    import argparse

    import benchmarks.__main__
    from benchmarks import targets as cmd

    swept = []
    monkeypatch.setattr(benchmarks.__main__, "main", lambda argv: swept.append(argv) or 0)
    args = argparse.Namespace(device="cuda", results_dir=tmp_path, budget=0.5, limit=10.0,
                              resume=False, table_only=False, out=tmp_path,
                              precision=["bfloat16"])
    assert cmd.cli(args) == 2  # no results files: the table's error
    assert len(swept) == 1 and swept[0][swept[0].index("--dtype") + 1] == "bfloat16"
    assert "--tf32" not in swept[0]
    assert {r["precision"] for r in runs(device="cuda")} == {"bfloat16", "float32", "TF32"}

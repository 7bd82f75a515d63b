"""The report builder on small synthetic result files (no sweep, no timing, no checking).

Why synthetic: a real sweep takes minutes and its numbers vary; these rows are written in
benchmarks.records' schema (case_row refuses unknown fields, so a schema change breaks
this test rather than the report), with a grid set for the crossover map, two backends, a
skipped and a failed row, and a second file for the side-by-side report.
"""

from __future__ import annotations

import base64
import csv
import json
import re
import sys
import textwrap

import pytest

from benchmarks import records
from benchmarks.records import ResultsFile, case_row, derived
from reports import correctness
from reports.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _machine(host: str, peak: float, bandwidth: float) -> dict:
    return {"record": "machine", "id": f"m-{host}", "host": host, "cpu": "Test CPU",
            "device": "cpu", "dtype": "float32", "torch": "2.13.0+cpu", "torch_threads": 2,
            "cpus_usable": 2, "onednn": "3.12.0", "libraries": {"numpy": "2.0"},
            "peak_gflops": peak, "bandwidth_gbps": bandwidth, "loadavg_1min": 0.1}


def _row(backend: str, shape_set: str, index: int, name: str, seconds: float | None,
         machine_id: str, direction: str = "forward", dtype: str = "float32", **extra) -> dict:
    flops, nbytes = 2_000_000 * (index + 1), 40_000
    fields = dict(key=f"{backend}|{shape_set}|{name}|{dtype}|cpu|{direction}|warm",
                  backend=backend, shape_set=shape_set, index=index, name=name,
                  descriptor=f"mb1ic32ih14oc32oh14kh{index + 1}n\"{name}\"", count=1, batch=1,
                  dtype=dtype, device="cpu", direction=direction, cache="warm",
                  flops=flops, bytes=nbytes, machine_id=machine_id, threads=2)
    if seconds is None:
        fields.update(status=extra.pop("status", "skipped"), reason=extra.pop("reason"))
    else:
        fields.update(status="ok", reason="", median_s=seconds, iqr_s=seconds / 20,
                      peak_memory_bytes=1_000_000 * (index + 1), memory_method="rss-hwm",
                      **derived(flops, nbytes, seconds, 50.0, 5.0))
    return case_row(**fields, **extra)


def write_results(path, host: str, slowdown: float) -> None:
    """Two backends over a two-layer set and a 2x2 grid; one skipped and one failed row."""
    results = ResultsFile(path)
    results.append({"record": "run", "commit_info": {"id": f"{host}0123456789", "dirty": False},
                    "options": {"tf32": False}})
    results.append(_machine(host, 50.0, 5.0))
    mid = f"m-{host}"
    for i, layer in enumerate(("net:conv1", "net:conv2")):
        results.append(_row("torch", "tiny", i, layer, 0.001 * (i + 1), mid))
        results.append(_row("unfold", "tiny", i, layer, 0.002 * (i + 1) * slowdown, mid))
    for j, (k, img) in enumerate([(1, 14), (3, 14), (1, 56), (3, 56)]):
        name = f"grid:k{k}_i{img}_s1_same"
        results.append(_row("torch", "grid", j, name, 0.001 * k, mid))
        results.append(_row("unfold", "grid", j, name, 0.002 * slowdown / k, mid))
    results.append(_row("naive", "tiny", 0, "net:conv1", None, mid,
                        reason="budget guard: predicted 60 s <per call>"))
    results.append(_row("naive", "tiny", 1, "net:conv2", None, mid, status="failed",
                        reason="RuntimeError: boom"))


def _images(page: str) -> list[bytes]:
    srcs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    return [base64.b64decode(s.split(",", 1)[1], validate=True) for s in srcs]


@pytest.fixture
def correctness_json(tmp_path):
    """What ``python -m impls check --format json`` prints, cut to two results."""
    path = tmp_path / "check-torch.json"
    path.write_text(json.dumps({"backend": "torch", "results": [
        {"backend": "torch", "case": "plain-3x3", "mode": "exact", "dtype": "float32",
         "status": "passed", "features": ["plain"], "max_error": 1.5e-6, "bound": 1e-4,
         "reason": ""},
        {"backend": "torch", "case": "groups-2", "mode": "random", "dtype": "float32",
         "status": "skipped", "features": ["groups"], "max_error": 0.0, "bound": 0.0,
         "reason": "no groups here"}]}))
    return path


def test_report_from_one_file(tmp_path, correctness_json):
    write_results(tmp_path / "a.jsonl", "alpha", 1.0)
    out = tmp_path / "out"
    assert main(["build", str(tmp_path / "a.jsonl"), "--out", str(out),
                 "--correctness", str(correctness_json)]) == 0
    page = (out / "index.html").read_text()
    images = _images(page)
    assert all(i.startswith(PNG_MAGIC) for i in images)
    # GFLOP/s, speedup, memory for two sets, a roofline and a crossover map
    assert len(images) == 8
    assert "Machine" in page and "Test CPU" in page and "peak GFLOP/s (measured)" in page
    assert "&lt;per call&gt;" in page and "RuntimeError: boom" in page  # escaped, shown
    assert "no groups here" in page and "1.5e-06" in page
    # A timed backend the --correctness files leave out is said to be unchecked.
    assert "warning: unfold: not checked for correctness: no results for it in the " \
           "--correctness files" in page

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 14  # 2 x 2 tiny + 2 x 4 grid + 2 naive
    assert {r["status"] for r in rows} == {"ok", "skipped", "failed"}
    summary = (out / "summary.md").read_text()
    assert "## Machine" in summary and "| host | alpha |" in summary
    assert "budget guard" in summary and "RuntimeError: boom" in summary
    assert "| tiny | unfold | x0.5 |" in summary  # torch median / unfold median
    # Each shape's numbers, not only the charts' bars: torch first, then the others.
    (table,) = [part.split("##")[0] for part in summary.split("### Per shape: ")[1:]
                if part.split("\n")[0].endswith(" forward tiny")]
    assert "| shape | torch | unfold |" in table
    assert "| conv1 | 1 ms | 2 ms (0.5x) |" in table and "| conv2 | 2 ms | 4 ms (0.5x) |" in table
    assert page.count("<h3>Per shape: ") == 2  # tiny and grid


def test_two_files_side_by_side(tmp_path):
    write_results(tmp_path / "a.jsonl", "alpha", 1.0)
    write_results(tmp_path / "b.jsonl", "beta", 2.0)
    out = tmp_path / "out"
    assert main(["build", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out",
                 str(out), "--no-correctness"]) == 0
    page = (out / "index.html").read_text()
    # one crossover map per file: 3 x 2 bar charts + roofline + 2 maps
    assert all(i.startswith(PNG_MAGIC) for i in _images(page)) and len(_images(page)) == 9
    assert "alpha cpu @ alpha012" in page and "beta cpu @ beta0123" in page
    summary = (out / "summary.md").read_text()
    assert "| host | alpha | beta |" in summary
    with open(out / "results.csv", newline="") as f:
        assert len({r["source"] for r in csv.DictReader(f)}) == 2


#: (torch, unfold) seconds per direction on the two "tiny" layers: unfold is 2x slower
#: forward, 2x faster on backward-data and 4x slower on backward-weights. A report that
#: divided across directions, or pooled them, would print other ratios.
THREE_DIRECTIONS = {"forward": (0.001, 0.002), "backward-data": (0.006, 0.003),
                    "backward-weights": (0.0005, 0.002)}


def test_three_directions_are_kept_apart(tmp_path):
    path = tmp_path / "a.jsonl"
    results = ResultsFile(path)
    results.append(_machine("alpha", 50.0, 5.0))
    for i, layer in enumerate(("net:conv1", "net:conv2")):
        for direction, (torch_s, unfold_s) in THREE_DIRECTIONS.items():
            for backend, seconds in (("torch", torch_s), ("unfold", unfold_s)):
                results.append(_row(backend, "tiny", i, layer, seconds * (i + 1), "m-alpha",
                                    direction=direction))
        results.append(_row("naive", "tiny", i, layer, None, "m-alpha", direction="forward",
                            reason="budget guard"))
        for direction in ("backward-data", "backward-weights"):
            results.append(_row("naive", "tiny", i, layer, None, "m-alpha", direction=direction,
                                reason="naive does not support autograd"))
    out = tmp_path / "out"
    assert main(["build", str(path), "--out", str(out), "--no-correctness"]) == 0

    summary = (out / "summary.md").read_text()
    speedups = re.findall(r"\| (forward|backward-\w+) \| tiny \| unfold \| (x[\d.]+) \| 2 \|",
                          summary)
    assert speedups == [("forward", "x0.5"), ("backward-data", "x2"),
                        ("backward-weights", "x0.25")]  # the sweep's order, not alphabetical
    for direction in THREE_DIRECTIONS:  # every backend has a row per direction
        assert f"| {direction} | torch | 2 | 0 | 0 |" in summary
        assert f"| {direction} | naive | 0 | 2 | 0 |" in summary
    assert summary.count("naive does not support autograd") == 4

    page = (out / "index.html").read_text()
    for direction in THREE_DIRECTIONS:
        assert f'<h2 id="direction-{direction}">' in page
        assert f"GFLOP/s [{direction}]" in page and f"Speedup over torch [{direction}]" in page
    assert page.index('id="direction-forward"') < page.index('id="direction-backward-data"')
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_direction = {d: {r["backend"] for r in rows if r["direction"] == d}
                    for d in THREE_DIRECTIONS}
    assert all(backends == {"torch", "unfold", "naive"} for backends in by_direction.values())


def _two_precisions(path) -> None:
    """A float64 sweep appended to a float32 one's file, each with its machine record (a
    peak is measured per dtype): unfold is 2x slower than torch in float32 and 4x in
    float64 on the tiny set; on the grid unfold wins at k3 in float32 only."""
    results = ResultsFile(path)
    for dtype, slowdown in (("float32", 2.0), ("float64", 4.0)):
        mid = f"m-{dtype}"
        results.append({**_machine("alpha", 50.0 if dtype == "float32" else 25.0, 5.0),
                        "id": mid, "dtype": dtype})
        for i, layer in enumerate(("net:conv1", "net:conv2")):
            for backend, seconds in (("torch", 0.001), ("unfold", 0.001 * slowdown)):
                results.append(_row(backend, "tiny", i, layer, seconds * (i + 1), mid,
                                    dtype=dtype))
        for j, (k, img) in enumerate([(1, 14), (3, 14), (1, 56), (3, 56)]):
            name = f"grid:k{k}_i{img}_s1_same"
            unfold_s = 0.0005 * k if dtype == "float32" else 0.01
            for backend, seconds in (("torch", 0.001 * k), ("unfold", unfold_s)):
                results.append(_row(backend, "grid", j, name, seconds, mid, dtype=dtype))


def test_precisions_of_one_file_are_kept_apart(tmp_path, monkeypatch):
    """Pooled, the geomean would read x0.354, one precision's bars would be drawn over the
    other's, the crossover map would pick winners across precisions and one roof would
    stand for both: each precision gets its own series, look, ratio, map and roof."""
    from reports import build, plots

    path = tmp_path / "a.jsonl"
    _two_precisions(path)
    drawn = {"bars": {}, "maps": [], "roofs": []}

    def bars(rows, value, title, *args, **kwargs):
        drawn["bars"][title] = {(r["series"], r["name"]): value(r) for r in rows}

    monkeypatch.setattr(plots, "grouped_bars", bars)
    monkeypatch.setattr(plots, "crossover", lambda rows, title: drawn["maps"].append(rows))
    monkeypatch.setattr(plots, "roofline", lambda rows, machines: drawn["roofs"].append(
        {label: m["peak_gflops"] for label, m in machines.items()}))
    out = tmp_path / "out"
    assert main(["build", str(path), "--out", str(out), "--no-correctness"]) == 0

    summary = (out / "summary.md").read_text()
    assert re.findall(r"\| tiny \| (unfold float\d\d) \| (x[\d.]+) \| 2 \|", summary) == [
        ("unfold float32", "x0.5"), ("unfold float64", "x0.25")]
    for dtype in ("float32", "float64"):
        assert f"| forward | torch {dtype} | 6 | 0 | 0 |" in summary
    speedups = drawn["bars"]["tiny: speedup over torch"]
    assert speedups[("unfold float32", "net:conv1")] == pytest.approx(0.5)
    assert speedups[("unfold float64", "net:conv1")] == pytest.approx(0.25)
    assert [{r["dtype"] for r in rows} for rows in drawn["maps"]] == [{"float32"}, {"float64"}]
    assert drawn["roofs"] == [{"alpha cpu float32": 50.0, "alpha cpu float64": 25.0}]
    # The Machine table's columns name each record, not the file's label twice.
    header = next(line for line in summary.splitlines() if line.startswith("| field |")
                  or line.startswith("|  |") or "alpha cpu: " in line)
    assert header.count("alpha cpu: alpha cpu float") == 2, header

    rows = build.tagged_rows(build.load_all([path]))
    looks = plots._styles(rows)[1]
    assert len({r["series"] for r in rows}) == 4 and len(looks) == 2  # hatch per precision


def test_cuda_speedups_divide_graph_times_where_both_have_one():
    """A small CUDA layer's wall-clock median is mostly launch overhead: the speedup divides
    the CUDA-graph times where both rows have one, and the wall medians where either lacks
    it (a failed capture), as reports.targets does."""
    from reports import plots

    def row(backend, name, wall, graph=None):
        return {"source": "gpu", "shape_set": "tiny", "descriptor": name, "backend": backend,
                "status": "ok", "direction": "forward", "device": "cuda", "dtype": "float32",
                "median_s": wall, **({"graph_median_s": graph} if graph else {})}

    rows = [row("torch", "a", 20e-6, 5e-6), row("triton", "a", 20e-6, 10e-6),
            row("torch", "b", 40e-6, 30e-6), row("triton", "b", 80e-6)]
    got = {r["descriptor"]: (r["speedup"], r["speedup_timing"]) for r in plots.speedups(rows)}
    assert got == {"a": (pytest.approx(0.5), "graph_median_s"),
                   "b": (pytest.approx(0.5), "median_s")}


def test_speedups_take_a_paired_ratio_and_the_table_counts_them():
    """A row timed in turn with torch's (sweep --paired-with torch) gives its paired ratio,
    not the quotient of medians timed apart; a row paired with another backend (auto, with
    the one it ran) and an unpaired one divide medians; the speedup table says how many
    of its ratios are paired."""
    from reports import build, plots

    def row(backend, name, median, **paired):
        return {"source": "cpu", "shape_set": "tiny", "descriptor": name, "backend": backend,
                "backend_variant": backend, "status": "ok", "direction": "forward",
                "device": "cpu", "dtype": "float32", "median_s": median, **paired}

    rows = [row("torch", "a", 1e-3), row("torch", "b", 1e-3), row("torch", "c", 1e-3),
            row("unfold", "a", 2e-3, paired_backend="torch", paired_ratio=0.8),
            row("unfold", "b", 2e-3, paired_backend="fft", paired_ratio=0.9),
            row("unfold", "c", 2e-3)]
    got = {r["descriptor"]: (r["speedup"], r["speedup_timing"]) for r in plots.speedups(rows)}
    assert got == {"a": (pytest.approx(0.8), "paired_ratio"),
                   "b": (pytest.approx(0.5), "median_s"), "c": (pytest.approx(0.5), "median_s")}
    (table,) = build.speedup_table(rows)
    assert (table["shapes"], table["paired"], table["apart"]) == (3, 1, 0)
    # Medians of rows that started 9 minutes apart are counted: a backend swept later into
    # a file divided by torch's earlier rows; paired ratios are not (drift cancelled).
    late = [dict(r, started="2026-11-26T18:58:29+0000") for r in rows[3:]]
    early = [dict(r, started="2026-11-26T18:47:10+0000") for r in rows[:3]]
    (table,) = build.speedup_table(early + late)
    assert table["apart"] == 2
    apart = {r["descriptor"]: r["speedup_apart_s"] for r in plots.speedups(early + late)}
    assert apart == {"a": None, "b": 679.0, "c": 679.0}
    assert table["geomean_speedup"] == pytest.approx((0.8 * 0.5 * 0.5) ** (1 / 3))
    # auto, paired with unfold (the backend it ran), reaches torch through unfold's ratio.
    rows.append(row("auto", "a", 1e-3, paired_backend="unfold", paired_ratio=0.95))
    got = {r["backend"]: r["speedup"] for r in plots.speedups(rows) if r["descriptor"] == "a"}
    assert got["auto"] == pytest.approx(0.95 * 0.8)  # not torch's median over auto's: 1.0
    # A sweep --paired-with fft: unfold and torch each against fft, so unfold against torch
    # divides the two (fft/unfold 0.25, fft/torch 0.5: torch/unfold 0.5), as the targets
    # table does; not the medians (1.0), nor only a chain that passes through torch.
    fft = row("fft", "d", 1e-3)
    peers = {"fft": fft}
    unfold = row("unfold", "d", 1e-3, paired_backend="fft", paired_ratio=0.25,
                 paired_ci=[0.2, 0.3])
    torch_row = row("torch", "d", 1e-3, paired_backend="fft", paired_ratio=0.5)
    assert records.speedup(unfold, torch_row, peers) == (pytest.approx(0.5), "paired_ratio")
    paired = records.paired_speedup(unfold, torch_row, peers)
    assert paired["ci"] is None  # torch's link has no interval
    torch_row["paired_ci"] = [0.5, 0.5]
    low, high = records.paired_speedup(unfold, torch_row, peers)["ci"]
    assert (low, high) == (pytest.approx(0.5 * 0.2 / 0.25), pytest.approx(0.5 * 0.3 / 0.25))
    # Against torch directly: the link's own interval, however lopsided, not one made
    # symmetric about the ratio; the noise verdict reads its wider side.
    torch_row = row("torch", "d", 1e-3)
    direct = row("unfold", "d", 1e-3, paired_backend="torch", paired_ratio=0.55,
                 paired_ci=[0.54, 0.62])
    paired = records.paired_speedup(direct, torch_row, {"torch": torch_row})
    assert paired["ci"] == (pytest.approx(0.54), pytest.approx(0.62))
    assert records.paired_noisy(paired)  # 0.62 is 12.7% above 0.55
    # The other way round (torch's time over unfold's, unfold paired with torch): inverted.
    back = records.paired_speedup(torch_row, direct, {"torch": torch_row})
    assert back["ci"] == (pytest.approx(1 / 0.62), pytest.approx(1 / 0.54))


def test_each_speedup_says_how_far_to_trust_it():
    """A review's report drew 3.1x over torch with nothing to show that the paired interval
    ran from 0.33x to 3.79x: each speedup carries its interval (an error bar) and whether
    it is in doubt, and the table counts those: a wide or missing paired interval, a
    noisy or stolen median, a CUDA-graph time without its spread."""
    from reports import build, plots

    def row(backend, name, **fields):
        return {"source": "cpu", "shape_set": "tiny", "descriptor": name, "backend": backend,
                "backend_variant": backend, "status": "ok", "direction": "forward",
                "device": "cpu", "dtype": "float32", "median_s": 1e-3, **fields}

    rows = [row("torch", n) for n in "abcde"] + [
        row("mine", "a", paired_backend="torch", paired_ratio=3.1, paired_ci=[0.33, 3.79]),
        row("mine", "b", paired_backend="torch", paired_ratio=1.2, paired_ci=[1.15, 1.25]),
        row("mine", "c", paired_backend="torch", paired_ratio=1.2),  # under 6 rounds
        row("mine", "d", noise=0.2),
        row("mine", "e", steal=0.05, noise=0.02)]
    judged = {r["descriptor"]: (r["speedup_noisy"], r["speedup_ci"])
              for r in plots.speedups(rows)}
    assert judged == {"a": (True, pytest.approx((0.33, 3.79))),  # each its own interval
                      "b": (False, pytest.approx((1.15, 1.25))),
                      "c": (None, None), "d": (True, None), "e": (False, None)}
    assert judged["a"][1][0] < 1 < judged["a"][1][1]  # "3.1x faster" could be slower
    (table,) = build.speedup_table(rows)
    assert table["in_doubt"] == 3
    cuda = row("mine", "f", graph_median_s=1e-4)
    assert records.judged_speedup(cuda, row("torch", "f", graph_median_s=2e-4))["noisy"] \
        is None  # rows without graph_noise: their spread is unknown
    chart = plots.grouped_bars([dict(r, series=r["backend"]) for r in plots.speedups(rows)],
                               lambda r: r["speedup"], "t", "x", reference=1.0,
                               interval=lambda r: r["speedup_ci"])
    assert chart and chart.startswith(b"\x89PNG")


def test_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["build", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


ZEROS = """
    import torch.nn.functional as F

    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        '''Fast and wrong: the right shape, all zeros.'''
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups) * 0
"""


def _user_module(tmp_path, monkeypatch, name: str, source: str):
    """``source`` importable as the module ``name`` for one test (a user's package)."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def zeros_backend(tmp_path, monkeypatch, isolated_registry):
    """A user's backend that returns zeros, importable as ``cb_report_zeros:conv``."""
    for module in _user_module(tmp_path, monkeypatch, "cb_report_zeros", ZEROS):
        yield f"{module}:conv"


def test_a_users_wrong_backend_is_checked_and_shown_failing(tmp_path, zeros_backend,
                                                            capsys):
    """The rows name a user's backend (10x faster than torch, all zeros) and one that no
    longer imports: the report checks the backends of its rows, and only those, so the
    fast one is named as failing above the charts and in every legend and table, and the
    unloadable one is a row of the correctness section with its reason."""
    gone = "cb_report_gone.conv:conv2d"
    path = tmp_path / "a.jsonl"
    results = ResultsFile(path)
    results.append(_machine("alpha", 50.0, 5.0))
    for i, layer in enumerate(("net:conv1", "net:conv2")):
        for backend, seconds in (("torch", 0.001), (zeros_backend, 0.0001), (gone, 0.002)):
            results.append(_row(backend, "tiny", i, layer, seconds, "m-alpha"))
    out = tmp_path / "out"
    # Each backend's first comparison runs whatever the budget: this one fails it, so the
    # verdict does not depend on how fast this machine is (5 s once was not, under load).
    # Exit 1, and said in the terminal with the first failure's repro: a report written
    # is no success when a backend in it gives wrong answers (benchdnn fails the run too).
    assert main(["build", str(path), "--out", str(out), "--correctness-budget", "0.01"]) == 1
    err = capsys.readouterr().err
    # The rerun carries the directory the user's module came from (not on sys.path by
    # default), or, pasted, it could not load the backend.
    assert re.search(rf"error: {zeros_backend} FAILED the correctness check: .*; rerun the "
                     rf"first: PYTHONPATH=\S+ python -m impls check --backend {zeros_backend} "
                     r"--case \S+ --mode exact --dtype float32 --device cpu --seed 0 "
                     r"--direction forward", err), err
    # The unloadable one's times are of unchecked answers: said in the terminal too.
    assert re.search(rf"warning: {re.escape(gone)}: not checked.*unverified answers", err), err

    page = (out / "index.html").read_text()
    top, correctness = page.split('<h2 id=machine>')[0], page.split("id=correctness>")[1]
    assert re.search(rf"<p class=fail>{zeros_backend} FAILED the correctness check: wrong "
                     r"answers on [1-9]\d* of [1-9]\d* cases .* of wrong answers", top)
    assert f"{zeros_backend} [FAILED correctness]" in page  # the speedup table's row
    assert f"{gone}: not checked for correctness: cannot load: ModuleNotFoundError" in top
    assert f"<td>{gone}</td>" in correctness and "No module named" in correctness
    assert "unfold" not in correctness and "naive" not in correctness  # not in the rows
    summary = (out / "summary.md").read_text()
    assert f"- **{zeros_backend} FAILED the correctness check" in summary
    with open(out / "results.csv", newline="") as f:  # the CSV says it as well
        failed = {r["backend"]: r["failed_check"] for r in csv.DictReader(f)}
    assert failed[zeros_backend] == "True" and failed["torch"] == ""
    assert f"| tiny | {zeros_backend} [FAILED correctness] | x10 | 2 | 0 | 0 | 0 | 2 |" in summary


def test_without_matplotlib_the_command_says_what_to_install(monkeypatch, capsys):
    import sys

    for name in [m for m in sys.modules if m.startswith(("reports.build", "reports.plots",
                                                          "matplotlib"))]:
        monkeypatch.delitem(sys.modules, name)
    import reports

    for attribute in ("build", "plots"):  # else "from reports import build" finds it there
        monkeypatch.delattr(reports, attribute, raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert main(["build", "--help"]) == 2
    assert "convbench[report]" in capsys.readouterr().err


MISBEHAVING = """
    import ctypes
    import time

    import torch
    import torch.nn.functional as F

    def hangs(input, weight, bias, stride, padding, dilation, groups):
        '''Right, except that it never returns on 17 channels (dense: channels-17 only).'''
        while input.shape[1] == weight.shape[1] == 17:
            time.sleep(1)
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    def crashes(input, weight, bias, stride, padding, dilation, groups):
        '''Right, except that it reads address 0 (a segfault) on 17 dense channels.'''
        if input.shape[1] == weight.shape[1] == 17:
            ctypes.string_at(0)
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    def wrong_in_half(input, weight, bias, stride, padding, dilation, groups):
        '''Right in float32, 1.5x too large in float16.'''
        out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
        return out * 1.5 if input.dtype == torch.float16 else out
    wrong_in_half.convbench_capabilities = {"dtypes": ("float32", "float16")}
"""


@pytest.fixture
def misbehaving(tmp_path, monkeypatch, isolated_registry):
    """Users' backends that hang, crash or are wrong only in float16: ``cb_report_bad:NAME``."""
    yield from _user_module(tmp_path, monkeypatch, "cb_report_bad", MISBEHAVING)


def _build(tmp_path, backends, dtype="float32", budget="60") -> str:
    path = tmp_path / f"{dtype}.jsonl"
    results = ResultsFile(path)
    results.append(_machine("alpha", 50.0, 5.0))
    for backend in backends:
        results.append(_row(backend, "tiny", 0, "net:conv1", 0.001, "m-alpha", dtype=dtype))
    out = tmp_path / f"out-{dtype}"
    # Each backend given here fails its check: the report is written, and the build exits 1.
    assert main(["build", str(path), "--out", str(out), "--correctness-budget", budget]) == 1
    return (out / "summary.md").read_text()


def test_a_backend_that_hangs_or_crashes_costs_its_case_not_the_report(tmp_path, misbehaving,
                                                                       monkeypatch):
    """The checks run in a child: a hang is killed after CASE_TIMEOUT_S and a segfault
    kills only the child; each is a failed case naming what happened, and the checks go on
    with the next case (a later case of the same backend passes)."""
    monkeypatch.setattr(correctness, "CASE_TIMEOUT_S", 5.0)
    summary = _build(tmp_path, [f"{misbehaving}:hangs", f"{misbehaving}:crashes"])
    for name, what in (("hangs", "did not finish in 5 s (killed)"),
                       ("crashes", "killed its process (signal 11)")):
        # Every case compared, none skipped: the checks went on after each killed child.
        # Not "wrong answers": there was no answer; the first reason is named.
        assert re.search(rf"\*\*{misbehaving}:{name} FAILED the correctness check: no answer "
                         rf"on 2 \(raised, hung or crashed; first: the comparison "
                         rf"{re.escape(what)}\) "
                         r"of \d+ cases compared \(0 skipped\): its times and speedups here "
                         r"are of calls that do not all work", summary), summary
        assert f"error: the comparison {what}" in summary


def test_the_report_checks_the_dtype_it_timed(tmp_path, misbehaving):
    """A backend timed in float16 is checked in float16: right in float32 is not enough."""
    name = f"{misbehaving}:wrong_in_half"
    summary = _build(tmp_path, [name], "float16", budget="0.01")
    assert f"**{name} FAILED the correctness check" in summary
    assert f"| {name} float16 | all |" in summary and f"| {name} | all |" not in summary


def test_the_shards_of_one_sweep_are_one_result_set(tmp_path):
    """``-shardIofN`` files of one folder, name and N are the parts of one run: one set (one
    label, one crossover map), each row keeping the file it came from; another file is
    another set."""
    from reports.results import load_all

    paths = [tmp_path / f"cpu-float32-mb1-shard{i}of2.jsonl" for i in (1, 2)]
    for i, path in enumerate(paths):
        results = ResultsFile(path)
        results.append(_machine("alpha", 50.0, 5.0))
        results.append(_row("torch", "tiny", i, f"net:conv{i}", 0.001, "m-alpha"))
    other = tmp_path / "other.jsonl"
    other.write_bytes(paths[0].read_bytes())
    sets = load_all([*paths, other])
    assert [len(s.rows) for s in sets] == [2, 1]
    assert sorted(r["file"] for r in sets[0].rows) == sorted(map(str, paths))


@pytest.mark.parametrize("content", ["", "[1, 2]", "{}", '{"results": [{"case": "x"}]}',
                                     '{"record": "case"}\n{"record": "case"}'])
def test_a_correctness_file_that_is_not_impls_check_output_is_a_usage_error(tmp_path, capsys,
                                                                            content):
    rows = tmp_path / "a.jsonl"
    ResultsFile(rows).append(_machine("alpha", 50.0, 5.0))
    ResultsFile(rows).append(_row("torch", "tiny", 0, "net:conv1", 0.001, "m-alpha"))
    bad = tmp_path / "check.json"
    bad.write_text(content)
    for path in (bad, tmp_path / "missing.json"):
        assert main(["build", str(rows), "--out", str(tmp_path / "out"),
                     "--correctness", str(path)]) == 2
        assert f"error: --correctness {path}: " in capsys.readouterr().err


def test_a_keyed_record_without_its_key_is_ignored_with_a_warning(tmp_path):
    """Another tool's or a hand-edited line must not crash merge or the report (KeyError)."""
    path = tmp_path / "a.jsonl"
    ResultsFile(path).append(_row("torch", "tiny", 0, "net:conv1", 0.001, "m-alpha"))
    with open(path, "a") as f:
        f.write('{"record": "case", "backend": "torch"}\n{"record": "machine"}\n')
    with pytest.warns(UserWarning) as caught:  # each read warns of every bad line it meets
        assert len(ResultsFile(path).rows()) == 1
        assert ResultsFile(path).machines() == []
    assert {str(w.message).split(": ", 1)[1] for w in caught} == {
        "a case record without its 'key' ignored", "a machine record without its 'id' ignored"}


def test_an_interrupted_or_partial_sweep_is_reported_as_incomplete(tmp_path, capsys):
    """The sweep writes its plan first: a report of a file it did not finish, or a merge
    that lacks a shard, says what is missing instead of passing for the whole sweep."""
    from benchmarks import records
    from reports.results import load_all

    shard = tmp_path / "cpu-float32-mb1-shard1of2.jsonl"
    results = ResultsFile(shard)
    rows = [_row("torch", "tiny", i, f"net:conv{i}", 0.001, "m-alpha") for i in range(3)]
    results.append({"record": "plan", "shard": "1/2", "keys": [r["key"] for r in rows]})
    results.append(_machine("alpha", 50.0, 5.0))
    for r in rows[:2]:
        results.append(r)
    (s,) = load_all([shard])
    lines = records.incomplete(s.extra["plans"], s.rows)
    assert lines == [f"incomplete: 1 of 3 planned cases have no row (an interrupted sweep: "
                     f"rerun the same command to resume), first: {rows[2]['key']}",
                     "incomplete: shard 2/2 of this 2-shard sweep is not among the files"]
    out = tmp_path / "out"
    assert main(["build", str(shard), "--out", str(out), "--correctness-budget", "0"]) == 0
    assert "incomplete: 1 of 3 planned cases" in (out / "summary.md").read_text()
    assert "warning: alpha cpu: incomplete: 1 of 3 planned" in capsys.readouterr().err
    from benchmarks.__main__ import main as benchmarks_main

    merged = tmp_path / "merged.json"
    assert benchmarks_main(["merge", str(shard), "-o", str(merged)]) == 0
    err = capsys.readouterr().err
    assert "warning: incomplete: shard 2/2" in err and "1 of 3 planned cases" in err
    (again,) = load_all([merged])  # the plan survives the JSON report form
    assert again.extra["plans"] == {"1/2": [r["key"] for r in rows]}
    # An empty shard (no case of its own, so no child and no run record) still has a plan.
    other = tmp_path / "cpu-float32-mb1-shard2of2.jsonl"
    ResultsFile(other).append({"record": "plan", "shard": "2/2", "keys": []})
    (both,) = load_all([shard, other])
    assert records.incomplete(both.extra["plans"], both.rows) == lines[:1]


def test_the_correctness_table_pairs_an_error_with_its_own_bound():
    """max |error| is the largest anywhere; beside it, the comparison nearest its bound with
    that bound (bounds differ by case: the largest error's own bound says little)."""
    def result(case, max_error, error, bound):
        return {"backend": "b", "case": case, "mode": "random", "dtype": "float32",
                "status": "passed", "features": ["plain"], "max_error": max_error,
                "error": error, "bound": bound, "reason": ""}
    rows = correctness.summary([result("loose", 0.5, 0.5, 10.0), result("tight", 0.02, 0.01,
                                                                        0.0125)])
    row = next(r for r in rows if r["feature"] == "all")
    assert (row["max_error"], row["error"], row["bound"]) == (0.5, 0.01, 0.0125)


def test_rows_timed_on_a_device_this_machine_lacks_are_not_vouched_for_by_another():
    """A GPU sweep's results read on a CPU machine: the report must not check torch on the
    CPU (oneDNN) and say it passed for times that were cuDNN's. The device it lacks is
    one 'not checked' row naming it; the CPU rows are checked on the CPU."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine checks CUDA rows on CUDA")
    cpu = {"backend": "torch", "status": "ok", "device": "cpu", "dtype": "float32"}
    cuda = {"backend": "torch", "status": "ok", "device": "cuda:0", "dtype": "float32",
            "tf32": True}
    results = correctness.run_checks(0.01, names=["torch"], rows=[cpu, cuda])
    left_out = [r for r in results if r.get("device") == "cuda"]
    assert len(left_out) == 1 and left_out[0]["status"] == "skipped", results
    assert "no CUDA device" in left_out[0]["reason"] and "--device cuda" in left_out[0]["reason"]
    checked = [r for r in results if r["status"] != "skipped"]
    assert checked and {r["device"] for r in checked} == {"cpu"}
    verdicts = correctness.verdicts(results, ["torch"])
    text = correctness.verdict_text("torch", verdicts["torch"])
    assert "torch: passed all" in text and "not checked: timed on cuda" in text, text
    from reports.build import correctness_warnings

    _, warned = correctness_warnings(verdicts, [cpu, cuda])  # at the top of the page
    assert len(warned) == 2 and "those times are of unverified answers" in warned[0]
    assert "the correctness check was cut short" in warned[1]  # a 0.01 s budget
    only_cuda = correctness.run_checks(0.01, names=["torch"], rows=[cuda])
    assert correctness.verdicts(only_cuda, ["torch"])["torch"]["verdict"] == "unchecked"


def test_a_correctness_file_vouches_only_for_what_it_checked(tmp_path, capsys):
    """A review's check of float64 weight gradients on one case read "passed all 2 cases"
    over float32 forward times: what the rows timed and the files did not check is a
    'not checked' row, warned about at the top."""
    write_results(tmp_path / "a.jsonl", "alpha", 1.0)
    check = tmp_path / "narrow.json"
    check.write_text(json.dumps({"backend": "torch", "results": [
        {"backend": "torch", "case": "plain-3x3", "mode": "exact", "dtype": "float64",
         "direction": "backward-weights", "status": "passed", "features": ["plain"],
         "max_error": 0.0, "bound": 1e-12, "reason": ""}]}))
    assert main(["build", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "out"),
                 "--correctness", str(check)]) == 0
    err = capsys.readouterr().err
    assert ("warning: torch: not checked for correctness: timed in float32 forward on cpu, "
            "which the --correctness files did not check") in err, err


def test_a_bad_memory_budget_is_bad_usage_not_a_failed_backend(tmp_path, monkeypatch,
                                                               capsys):
    """The checks read CONVBENCH_MEMORY_BUDGET: a typo in it made every backend with a
    memory model FAIL its correctness check in the report (exit 1), a correct one too."""
    write_results(tmp_path / "a.jsonl", "alpha", 1.0)
    monkeypatch.setenv("CONVBENCH_MEMORY_BUDGET", "lots")
    build = ["build", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "out")]
    assert main(build) == 2
    assert "CONVBENCH_MEMORY_BUDGET='lots' is not a byte count" in capsys.readouterr().err
    assert main([*build, "--no-correctness"]) == 0  # nothing reads it then


def test_a_check_cut_short_by_the_budget_is_said_at_the_top():
    """25 comparisons passed and 65 were left out by the budget, among them every dilated
    and grouped case of a backend wrong only there: the page said 'passed' and nothing
    more. It passed what it ran; the top of the page says the rest was not run."""
    from reports.build import correctness_warnings

    def result(status, reason=""):
        return {"backend": "b", "case": "c", "status": status, "reason": reason}

    results = [result("passed")] * 2 + [result("skipped", correctness.BUDGET_SPENT +
                                                " (2 s) was spent")] * 3
    verdicts = correctness.verdicts(results, ["b"])
    assert verdicts["b"]["verdict"] == "passed" and verdicts["b"]["cut"] == 3
    _, warned = correctness_warnings(verdicts, [{"backend": "b", "status": "ok"}])
    assert warned == ["b: the correctness check was cut short: 3 of 5 comparisons were left "
                      "out when the budget was spent (--correctness-budget; python -m impls "
                      "check --backend b runs them all)"]


def test_a_crossover_map_needs_two_backends():
    """A map of one backend, "fastest" everywhere with no runner-up, said nothing."""
    from reports import plots

    rows = [{"name": f"grid:k{k}_i{i}_s1_same", "status": "ok", "median_s": 1e-3 * k,
             "backend": "unfold"} for k in (3, 5) for i in (14, 28)]
    assert plots.crossover(rows, "one") is None
    rows += [{**r, "backend": "torch", "median_s": 2e-3} for r in rows]
    assert plots.crossover(rows, "two")[:4] == b"\x89PNG"


def test_a_backend_that_never_finishes_in_time_is_unchecked_not_failed():
    """A correct backend slower than the check's time limit on every case gave no answer,
    right or wrong: FAILED (and a build exiting 1) blamed its correctness. One that answers
    some cases and hangs on others still fails."""
    def result(status, reason=""):
        return {"backend": "b", "status": status, "reason": reason, "case": "valid-3x3",
                "mode": "random", "dtype": "float32", "device": "cpu", "seed": 0}

    late = "the comparison did not finish in 20 s (killed)"
    slow = correctness.verdicts([result("error", late)] * 2 + [result("skipped", "x")],
                                ["b"])["b"]
    assert slow["verdict"] == "unchecked" and slow["failed"] == 0
    assert slow["reasons"][0] == f"2 comparisons did not finish in their time limit (first: {late})"
    text = correctness.verdict_text("b", slow)
    assert text.startswith("b: not checked for correctness: 2 comparisons did not finish")
    hangs = correctness.verdicts([result("error", late), result("passed")], ["b"])["b"]
    assert hangs["verdict"] == "failed" and hangs["errors"] == 1


def test_bars_grow_from_zero_or_from_the_speedup_s_one(monkeypatch):
    """Log bars from the axis bottom drew 12 against 25 GFLOP/s as a sliver beside a full
    bar; a speedup bar grows from 1x, down when slower."""
    from matplotlib.axes import Axes

    from reports import plots

    drawn = []
    real = Axes.bar
    monkeypatch.setattr(Axes, "bar", lambda ax, x, h, w, **kw: drawn.append(
        (list(h), kw.get("bottom"), ax)) or real(ax, x, h, w, **kw))
    rows = [{"name": f"n:l{i}", "series": b, "backend": b, "source": "s", "index": i,
             "v": v} for i, pair in enumerate([(12, 25), (60, 90)])
            for b, v in zip(("torch", "unfold"), pair)]
    plots.grouped_bars(rows, lambda r: r["v"], "t", "GFLOP/s")
    assert drawn[0][:2] == ([12, 60], None) and drawn[0][2].get_yscale() == "linear"
    drawn.clear()
    plots.grouped_bars(rows, lambda r: r["v"] / 50, "t", "x", reference=1.0)
    assert drawn[1][0] == pytest.approx([25 / 50 - 1, 90 / 50 - 1]) and drawn[1][1] == 1.0
    drawn.clear()
    plots.grouped_bars([*rows, {**rows[0], "series": "naive", "backend": "naive", "v": 0.01}],
                       lambda r: r["v"], "t", "GFLOP/s")  # four decades: log, or no naive
    assert drawn[0][2].get_yscale() == "log"

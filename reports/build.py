"""``python -m reports build [RESULT_FILES...] [--out reports/out]``: the pictures people look at.

Why: a sweep's JSON lines answer "how fast" only to someone who reads them. This builds
``index.html`` (self-contained: every chart a base64 PNG inside it, so it can be mailed or
kept as a CI artifact), ``summary.md`` (for a PR comment) and ``results.csv`` (every row of
every file, for a spreadsheet) from one or more result files. With several files (CPU and
GPU, two commits) every series is labelled by its file, so the charts compare them.

What it must not do: measure anything or hard-code a machine's numbers (peaks and
bandwidths are the ones each sweep measured), or drop a row: skipped, failed, timed-out and
crashed cases are listed with their reasons. The page itself is in reports/page.py.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

from benchmarks import records
from benchmarks.machine import busy_warning
from benchmarks.records import ROW_FIELDS, variant, varying
from benchmarks.sweep_report import doubts
from reports import correctness, page, plots, targets
from reports.results import ResultSet, default_files, load_all

OUT_DIR = Path("reports") / "out"
BASELINE = "torch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", type=Path, metavar="RESULT_FILE",
                   help="sweep results (.jsonl or .json); default: the newest in "
                        "reports/sweeps/. Several files are compared side by side")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="default %(default)s")
    p.add_argument("--correctness", action="append", type=Path, metavar="FILE",
                   help="`python -m impls check --format json` output (repeatable) instead "
                        "of checking here")
    p.add_argument("--no-correctness", action="store_true", help="leave the check out")
    p.add_argument("--correctness-budget", type=float, default=correctness.BUDGET_S,
                   help="seconds for checking here every backend the results name, beyond "
                        "each one's first comparison per dtype, which always runs "
                        "(default %(default)s)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports build", description=__doc__.split(
        "\n\n")[0])
    add_arguments(p)
    return build(p.parse_args(argv))


def build(args: argparse.Namespace) -> int:
    files = args.files or default_files()
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        print("python -m reports build: error: "
              + (f"no such file: {', '.join(missing)}" if missing else
                 "no result files given and none in reports/sweeps/ "
                 "(run python -m benchmarks sweep first)"), file=sys.stderr)
        return 2
    from impls.memory_budget import env_error

    if env_error() and not args.no_correctness:  # the checks would fail every modelled backend
        print(f"python -m reports build: error: {env_error()}", file=sys.stderr)
        return 2
    sets = load_all(files)
    rows = tagged_rows(sets)
    if not rows:
        print("python -m reports build: error: the files have no case rows", file=sys.stderr)
        return 2
    try:
        results, verdicts = check_backends(args, rows)
    except ValueError as exc:  # a --correctness file that is not impls check's JSON
        print(f"python -m reports build: error: {exc}", file=sys.stderr)
        return 2
    checks = correctness.summary(results) if results is not None else None
    alarms, unverified = correctness_warnings(verdicts, rows)
    flag_failing(rows, alarms)

    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "results.csv", rows)
    machines = machine_table(sets)
    charts = make_charts(rows, sets)
    ratios = speedup_table(rows)
    per_shape = shape_tables(rows)
    coverage = coverage_table(rows)
    problems = [r for r in rows if r["status"] != "ok"]
    # The sweep's own reasons to distrust its numbers (busy machine, beaten peak, noise).
    missing = [f"{s.label}: {w}" for s in sets
               for w in records.incomplete(s.extra.get("plans", {}), s.rows)]
    warnings = unverified + missing + [f"{s.label}: {w}" for s in sets
                                       for w in doubts(s.rows, list(s.machines.values()))]
    lines = [(v["verdict"], correctness.verdict_text(n, v)) for n, v in verdicts.items()]
    (args.out / "index.html").write_text(
        page.html(sets, machines, charts, ratios, coverage, problems, checks, warnings,
                  list(alarms.values()), lines, per_shape), encoding="utf-8")
    (args.out / "summary.md").write_text(
        page.markdown(sets, machines, ratios, coverage, problems, checks, rows, warnings,
                      list(alarms.values()), lines, per_shape), encoding="utf-8")
    targets.add_to_report(args.out, sets)  # the speed targets' table, where the rows give one
    print(f"{len(rows)} rows from {len(files)} file(s), {len(charts)} charts -> "
          f"{args.out / 'index.html'}, summary.md, results.csv")
    for line in unverified + missing:  # the page says it first; a terminal user must too
        print(f"warning: {line}", file=sys.stderr)
    for line in alarms.values():  # as benchdnn: a wrong answer fails the run, not only the page
        print(f"error: {line}", file=sys.stderr)
    return 1 if alarms else 0


def check_backends(args: argparse.Namespace, rows: list[dict]) -> tuple[list[dict] | None, dict]:
    """Correctness results for the backends the rows name (None with --no-correctness), and
    each such backend's verdict (reports.correctness says why these backends)."""
    if args.no_correctness:
        return None, {}
    names = correctness.backends_in(rows)
    if args.correctness:
        results = correctness.add_missing(
            correctness.read_checks(args.correctness), names,
            "no results for it in the --correctness files (python -m impls check --backend "
            "NAME --format json)")
        results = correctness.add_uncovered(results, rows, names)
    else:
        results = correctness.run_checks(args.correctness_budget, names=names, rows=rows)
    return results, correctness.verdicts(results, names)


def correctness_warnings(verdicts: dict, rows: list[dict]) -> tuple[dict[str, str], list[str]]:
    """({backend: line} for each backend that failed its check, and a warning for each one
    that was timed but not checked): the top of the page must say both before any chart."""
    timed = {r["backend"] for r in rows if r["status"] == "ok"}
    failed = {n: correctness.verdict_text(n, v) for n, v in verdicts.items()
              if v["verdict"] == "failed"}
    unchecked = [f"{correctness.verdict_text(n, v)} (its times are of unverified answers)"
                 for n, v in verdicts.items() if v["verdict"] == "unchecked" and n in timed]
    # Passed where it was checked, but some of its rows are of a setting not checked here
    # (timed on a GPU this machine lacks): those times are unverified all the same.
    unchecked += [f"{n}: not checked for correctness: {'; '.join(v['left_out'])} (those "
                  "times are of unverified answers)" for n, v in verdicts.items()
                  if v["verdict"] == "passed" and v.get("left_out") and n in timed]
    # Passed what it ran, but the budget left comparisons out: a wrong corner may be there.
    unchecked += [f"{n}: the correctness check was cut short: {v['cut']} of "
                  f"{v['passed'] + v['skipped']} comparisons were left out when the budget "
                  "was spent (--correctness-budget; python -m impls check --backend "
                  f"{n} runs them all)" for n, v in verdicts.items()
                  if v["verdict"] == "passed" and v.get("cut") and n in timed]
    return failed, unchecked


#: Appended to a failing backend's label in every legend and table of the report.
FAILED_MARK = " [FAILED correctness]"


def flag_failing(rows: list[dict], failed) -> None:
    """Mark the rows of backends that failed their check, so no chart legend, speedup or
    table row shows their speed as if it were a result; the crossover maps leave them out."""
    for r in rows:
        if r["backend"] in failed:
            bare = r["backend_variant"]
            r["backend_variant"] = bare.replace(r["backend"], r["backend"] + FAILED_MARK, 1)
            r["series"] = r["backend_variant"] + r["series"][len(bare):]
            r["failed_check"] = True


def tagged_rows(sets: list[ResultSet]) -> list[dict]:
    """Every row of every file, with ``source`` (the file's label), ``backend_variant``
    (the backend, plus the batch, device, precision or cache mode where the report holds
    several: records.variant) and ``series`` (what a chart's legend says: that, plus the
    label when files are compared)."""
    fields = varying(r for s in sets for r in s.rows)
    out = []
    for s in sets:
        for r in s.rows:
            r = {**r, "source": s.label}  # and its "file" (reports.results.load)
            r["variant"] = variant(r, fields)
            r["backend_variant"] = f"{r['backend']} {r['variant']}".strip()
            r["series"] = r["backend_variant"] + ("" if len(sets) == 1 else f" ({s.label})")
            r["direction"] = r.get("direction") or "forward"
            out.append(r)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    # failed_check: True on the rows of a backend that failed its correctness check (the
    # page marks them in every legend and table; a CSV reader must see it too).
    fields = ["source", "file", "failed_check", *[f for f in ROW_FIELDS if f != "record"]]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def machine_table(sets: list[ResultSet]) -> list[tuple[str, dict]]:
    """Per machine record: what the numbers came from, as label -> {field: text}."""
    out = []
    for s in sets:
        tf32 = [r.get("options", {}).get("tf32") for r in s.runs]
        for m in s.machines.values() or [{}]:
            gpu = m.get("gpu") or {}
            libs = m.get("libraries") or {}
            # A file with several records (precisions, or runs on other hosts): each column
            # names its own, not the file's first host twice.
            label = s.label if len(s.machines) < 2 else (
                f"{s.label}: {m.get('host')} {m.get('device')} {m.get('dtype')}, measured "
                f"{m.get('measured_at', '?')}")
            out.append((label, {
                "file": ", ".join(str(p) for p in s.paths), "commit": s.commit() or "?",
                "host": m.get("host"), "cpu": m.get("cpu"),
                "cpu flags": " ".join(m.get("cpu_flags") or []), "device": m.get("device"),
                "dtype": m.get("dtype"), "threads": m.get("torch_threads"),
                "cpus usable": m.get("cpus_usable"), "python": m.get("python"),
                "torch": m.get("torch"), "oneDNN": m.get("onednn"), "BLAS": m.get("blas"),
                **{k: v for k, v in libs.items()},
                "GPU": gpu.get("name") or "none", "CUDA / cuDNN / driver":
                    " / ".join(str(gpu.get(k)) for k in ("cuda", "cudnn", "driver"))
                    if gpu else "",
                "TF32": (f"matmul {gpu.get('tf32_matmul')}, cuDNN {gpu.get('tf32_cudnn')}"
                         if gpu else f"n/a on CPU (--tf32 {any(t for t in tf32 if t)})"),
                "peak GFLOP/s (measured)": m.get("peak_gflops"),
                "bandwidth GB/s (measured)": m.get("bandwidth_gbps"),
                "load average when measured": m.get("loadavg_1min"),
                "warning": busy_warning(m) if m else "no machine record in the file",
                "env": " ".join(f"{k}={v}" for k, v in (m.get("env") or {}).items()),
            }))
    return out


def make_charts(rows: list[dict], sets: list[ResultSet]) -> list[tuple[str, str, str, bytes]]:
    """(direction, section, caption, png) for every chart that has data, in page order:
    each direction (forward, backward-data, backward-weights) gets charts of its own, so
    no chart, and no speedup, ever puts a backward time beside a forward one."""
    charts = []
    directions = list(dict.fromkeys(r["direction"] for r in rows))
    for direction in directions:
        tag = f" [{direction}]" if len(directions) > 1 or direction != "forward" else ""
        mine = [r for r in rows if r["direction"] == direction]
        charts += [(direction, *c) for c in _direction_charts(mine, sets, tag)]
    return [c for c in charts if c[-1] is not None]


def _direction_charts(rows: list[dict], sets: list[ResultSet], tag: str) -> list[tuple]:
    """(section, caption, png or None) for the rows of one direction."""
    shape_sets = list(dict.fromkeys(r["shape_set"] for r in rows))
    # One section per kind of chart (all GFLOP/s charts together), sets in sweep order.
    speed, fast, memory = [], [], []
    for name in shape_sets:
        in_set = [r for r in rows if r["shape_set"] == name]
        ok = [r for r in in_set if r["status"] == "ok"]
        speed.append((f"GFLOP/s{tag}", f"{name}: GFLOP/s per backend (median)",
                      plots.grouped_bars(in_set, lambda r: r["gflops"]
                                         if r["status"] == "ok" else None,
                                         f"{name}{tag}: GFLOP/s", "GFLOP/s")))
        by_key = {(r["source"], r["descriptor"], r["backend_variant"]): r
                  for r in plots.speedups(ok, BASELINE)}

        def judged(r, field, by_key=by_key):
            found = by_key.get((r["source"], r["descriptor"], r["backend_variant"]))
            return found and found[field]

        fast.append((f"Speedup over {BASELINE}{tag}",
                     f"{name}: {BASELINE}'s time / the backend's, same run and direction (> 1: "
                     "faster): where the sweep paired their rounds (--paired-with), the "
                     "median of neighbouring rounds' ratios, its 95% interval as an error "
                     "bar; else the medians; on CUDA, CUDA-graph times where both have one",
                     plots.grouped_bars(in_set, lambda r: judged(r, "speedup"),
                                        f"{name}{tag}: speedup over {BASELINE}",
                                        f"x faster than {BASELINE}", reference=1.0,
                                        interval=lambda r: judged(r, "speedup_ci"))))
        memory.append((f"Peak memory{tag}", f"{name}: memory one call needed above its "
                       "inputs", plots.grouped_bars(
                           in_set, lambda r: r["peak_memory_bytes"] / 2**20
                           if r["status"] == "ok" and r.get("peak_memory_bytes") else None,
                           f"{name}{tag}: peak memory", "MiB")))
    charts = [*speed, *fast, *memory,
              (f"Roofline{tag}", "every timed case; lines: each machine's measured roof",
               plots.roofline(rows, roof_machines(sets)))]
    for s in sets:  # one map per file and variant: the fastest among like rows only
        mine = [r for r in rows if r["source"] == s.label]
        for kind in dict.fromkeys(r["variant"] for r in mine):
            where = " ".join(x for x in (s.label, kind) if x)
            grid = [r for r in mine if r["variant"] == kind and not r.get("failed_check")]
            left_out = sorted({r["backend"] for r in mine if r.get("failed_check")})
            charts.append((f"Crossover map{tag}", f"{where}: fastest backend over kernel x "
                           "image size (grid shapes, stride 1, same padding)"
                           + (f"; left out for failing the correctness check: "
                              f"{', '.join(left_out)}" if left_out else ""),
                           plots.crossover(grid, f"{where}{tag}: fastest backend")))
    return charts


def roof_machines(sets: list[ResultSet]) -> dict[str, dict]:
    """A roof per machine record, labelled by its file, and by its device and precision
    where the file holds several records (each measured its peak in its sweep's dtype)."""
    out = {}
    for s in sets:
        records = list(s.machines.values())
        fields = {"dtype"} | ({"device"} if len({m.get("device") for m in records}) > 1
                              else set())
        for m in records:
            gpu = m.get("gpu") or {}
            where = variant({"device": m.get("device"), "dtype": m.get("dtype"),
                             "tf32": gpu.get("tf32_matmul")}, fields)
            label = s.label if len(records) == 1 else f"{s.label} {where}"
            out[label if label not in out else f"{label} [{m.get('id')}]"] = m
    return out


def coverage_table(rows: list[dict]) -> list[dict]:
    """Per file, direction and backend: how many cases ended ok, skipped, or otherwise, so
    a reader sees at once that every backend was asked for every direction."""
    counts = defaultdict(lambda: defaultdict(int))
    for r in rows:
        status = r["status"] if r["status"] in ("ok", "skipped") else "failed"
        counts[(r["source"], r["direction"], r["backend_variant"])][status] += 1
    order = _direction_order(rows)
    return [{"source": k[0], "direction": k[1], "backend": k[2], "ok": c["ok"],
             "skipped": c["skipped"], "failed": c["failed"]}
            for k, c in sorted(counts.items(), key=lambda kc: (kc[0][0], order(kc[0][1])))]


def shape_tables(rows: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per file, direction and shape set: (title, header, rows) of a table with a row per
    shape and a column per backend, each cell the median time and the speedup over
    BASELINE ("*": in doubt, records.judged_speedup): the numbers behind the charts, which
    a reader could otherwise only estimate off a bar (results.csv has every field)."""
    judged = {(r["source"], r["direction"], r["shape_set"], r["descriptor"],
               r["backend_variant"]): r for r in plots.speedups(rows, BASELINE)}
    groups: dict[tuple, dict] = {}
    for r in sorted((r for r in rows if r["status"] == "ok" and r.get("median_s")),
                    key=lambda r: r.get("index") or 0):
        where = (r["source"], r["direction"], r["shape_set"])
        g = groups.setdefault(where, {"shapes": {}, "backends": {}, "cells": {}})
        g["shapes"].setdefault(r["descriptor"], plots.shape_label(r))
        g["backends"].setdefault(r["backend_variant"], None)
        sp = judged.get((*where, r["descriptor"], r["backend_variant"]))
        ratio = f" ({sp['speedup']:.3g}x{'*' if sp['speedup_noisy'] is not False else ''})" \
            if sp and sp.get("speedup") else ""
        g["cells"][(r["descriptor"], r["backend_variant"])] = \
            f"{r['median_s'] * 1e3:.3g} ms{ratio}"
    order = _direction_order(rows)
    out = []
    for where in sorted(groups, key=lambda w: (w[0], order(w[1]), w[2])):
        g = groups[where]
        backends = sorted(g["backends"], key=lambda b: (b != BASELINE, b))
        out.append((" ".join(x for x in where if x), ["shape", *backends],
                    [[label, *(g["cells"].get((d, b), "") for b in backends)]
                     for d, label in g["shapes"].items()]))
    return out


def speedup_table(rows: list[dict]) -> list[dict]:
    """Per file, direction, shape set and backend: geometric mean of the speedup over the
    baseline in the same direction across the shapes both ran, with how many shapes that is,
    how many of those ratios are of rounds taken in turn (sweep --paired-with), how many
    divide medians timed over plots.APART_S apart (a resumed file's earlier rows), and how
    many are in doubt (noisy, stolen or too few paired rounds: records.judged_speedup)."""
    groups, paired, apart = defaultdict(list), defaultdict(int), defaultdict(int)
    doubt = defaultdict(int)
    for r in plots.speedups(rows, BASELINE):
        key = (r["source"], r["direction"], r["shape_set"], r["backend_variant"])
        groups[key].append(r["speedup"])
        paired[key] += r["speedup_timing"] == "paired_ratio"
        apart[key] += r["speedup_apart_s"] is not None
        doubt[key] += r["speedup_noisy"] is not False
    ran = defaultdict(int)
    for r in rows:
        if r["status"] == "ok":
            ran[(r["source"], r["direction"], r["shape_set"], r["backend_variant"])] += 1
    order = _direction_order(rows)
    return [{"source": k[0], "direction": k[1], "shape_set": k[2], "backend": k[3],
             "geomean_speedup": math.exp(sum(map(math.log, v)) / len(v)), "shapes": len(v),
             "paired": paired[k], "apart": apart[k], "in_doubt": doubt[k], "ran": ran[k]}
            for k, v in sorted(groups.items(), key=lambda kv: (kv[0][0], order(kv[0][1]),
                                                                *kv[0][2:]))]


def _direction_order(rows: list[dict]):
    """A sort key that puts directions in the order the rows first show them (the sweep's:
    forward, backward-data, backward-weights), not alphabetically."""
    seen = {d: i for i, d in enumerate(dict.fromkeys(r["direction"] for r in rows))}
    return lambda direction: seen.get(direction, len(seen))


if __name__ == "__main__":  # noxfile's bench session runs ``python -m reports.build``
    sys.exit(main())

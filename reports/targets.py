"""The targets table: each speed target of benchmarks/targets.py, measured, from one file.

Why: the README states targets as ratios ("unfold at least 0.6x torch on ResNet-50's 3x3
layers"), and a claim like that is only worth the run it came from. This turns one results
file into one table: per target the shapes, the per-shape ratios (geometric mean and the
worst, each shape named where there are few), the goal and whether it was met, as Markdown
that goes into the README verbatim and as a section of the HTML report.

A ratio is baseline median time / backend median time on the same descriptor in the same
file (> 1: the backend is faster), forward and warm-cache rows only. For a target against
BEST the baseline is, per shape, the fastest *other* backend timed there. What it must not
do: measure, or hide a gap: a shape without a timed backend or baseline is named with its
status and reason, a backend with no rows at all is reported as not in the sweep, and a
target then counts as not met. Ratios from a busy machine are marked, not dropped.

A target is read only from rows of its own device, dtype, TF32 setting and memory format.
Targets of one backend, baseline, shape set and batch in several precisions (the GPU's:
triton against cuDNN in float32, TF32 and bfloat16) also get a per-layer table: every layer
of the set, one column of ratios per precision, as the README states them.
"""

from __future__ import annotations

import argparse
import html as htmllib
import math
import re
import sys
from pathlib import Path

from benchmarks import machine, records
from benchmarks.records import VARIANT_FIELDS
from benchmarks.shapes import shape_set
from benchmarks.targets import BEST, TARGETS, Target
from reports.results import ResultSet, describe, load

#: Up to this many shapes a target lists each ratio; beyond, it names the worst.
LIST_SHAPES = 6
HEADER = ["target", "shapes", "measured ratio", "goal", "met?"]
#: A ratio is marked when either side's IQR exceeds this share of its median (the sweep's
#: own noise warning, after torch.utils.benchmark).
NOISY = records.NOISY
_CMP = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b}
#: Column order of a per-layer table.
_PRECISIONS = ("float64", "float32", "TF32", "float16", "bfloat16")


def _where(row: dict) -> tuple[str, str, bool, str]:
    """A row's (device, dtype, TF32, memory format), as a Target names them ("cuda:1" is
    "cuda")."""
    get = VARIANT_FIELDS
    return (get["device"](row).split(":")[0], get["dtype"](row), get["tf32"](row),
            get["memory_format"](row))


def _where_of(target: Target) -> tuple[str, str, bool, str]:
    return target.device, target.dtype, target.tf32, target.memory_format


def _by_shape(target: Target, rows: list[dict]) -> dict:
    """(shape set, descriptor) -> backend -> row, of the target's forward warm rows in its
    device, dtype and TF32 setting."""
    by_shape = {}
    for r in rows:
        if (r.get("direction") or "forward") != "forward" or (r.get("cache") or "warm") != "warm":
            continue  # the targets are forward times with warm caches
        if _where(r) != _where_of(target):
            continue
        by_shape.setdefault((r["shape_set"], r["descriptor"]), {})[r["backend"]] = r
    return by_shape


def evaluate(target: Target, rows: list[dict]) -> dict:
    """The target's per-shape ratios and verdict from a file's rows (see the docstring)."""
    by_shape = _by_shape(target, rows)
    keys = [(name, e.descriptor) for name in target.shape_sets
            for e in shape_set(name, target.batch) if target.select(e.spec)]
    shapes = [_shape(target, name, d, by_shape.get((name, d), {})) for name, d in keys]
    ratios = [s["ratio"] for s in shapes if s["ratio"] is not None]
    out = {"target": target, "shapes": shapes, "geomean": None, "worst": None,
           "met": "no" if target.goals else "nothing timed"}
    if not any(by_shape.get(key) for key in keys):
        out["met"] = "not in this run"
    elif not any(target.backend in by_shape.get(key, {}) for key in keys):
        out["met"] = "not in this sweep"
    elif ratios:
        out["geomean"] = math.exp(sum(map(math.log, ratios)) / len(ratios))
        out["worst"] = min(ratios)
        if not target.goals:  # nothing to meet; still say when shapes are missing
            out["met"] = "compared" if len(ratios) == len(shapes) else "compared (incomplete)"
            return out
        held = all(_CMP[op](out[stat], value) for stat, op, value in target.goals)
        # A goal held on some shapes only proves nothing about the others.
        out["met"] = "no" if not held else "yes" if len(ratios) == len(shapes) else "incomplete"
        out["close"] = _close_calls(target, shapes, out, held)
    return out


def _close_calls(target: Target, shapes: list[dict], out: dict, held: bool) -> list[str]:
    """Shapes whose 95% interval (paired ratios) crosses a "worst" goal on the side that
    would turn the verdict: for a "yes", a shape that may be below it; for a "no", the
    shapes below it, when every one of them may be above (the miss may be noise) and no
    other goal failed (a geomean far below its goal is no closer for it)."""
    if not held and any(stat != "worst" and not _CMP[op](out[stat], value)
                        for stat, op, value in target.goals):
        return []
    for stat, op, value in target.goals:
        if stat != "worst":
            continue
        timed = [s for s in shapes if s["ratio"] is not None]
        failing = [s for s in timed if not _CMP[op](s["ratio"], value)]
        if held:
            return [s["name"] for s in timed if s.get("ci") and not _CMP[op](s["ci"][0], value)]
        if failing and all(s.get("ci") and _CMP[op](s["ci"][1], value) for s in failing):
            return [s["name"] for s in failing]
    return []


def _shape(target: Target, set_name: str, descriptor: str, here: dict) -> dict:
    """One shape: its ratio, or None and why not."""
    name = _short(here, descriptor)
    mine = here.get(target.backend)
    if target.baseline == BEST:
        timed = [r for b, r in here.items() if b != target.backend and r["status"] == "ok"
                 and _same_machine(r, mine)]
        base = min(timed, key=lambda r: r["median_s"]) if timed else None
    else:
        base = here.get(target.baseline)
    for who, row in ((target.backend, mine), (target.baseline, base)):
        if row is None or row["status"] != "ok":
            why = "no row" if row is None else f"{row['status']}: {row.get('reason') or ''}"
            return {"name": name, "set": set_name, "ratio": None, "why": f"{who} {why}".strip(),
                    "baseline": None, "noisy": False}
    if not _same_machine(mine, base):
        return {"name": name, "set": set_name, "ratio": None, "baseline": None, "noisy": False,
                "why": f"{target.backend} and {target.baseline} timed on different machines "
                       "(a run resumed elsewhere): no ratio"}
    noisy = records.in_doubt(mine) or records.in_doubt(base)
    wall = base["median_s"] / mine["median_s"]
    out = {"name": name, "set": set_name, "why": "", "baseline": base["backend"],
           "ratio": wall, "noisy": noisy, "ran": mine.get("ran"), "paired": False}
    # As records.speedup: device times where both have them, else paired ratios.
    graphs = bool(mine.get("graph_median_s") and base.get("graph_median_s"))
    paired = None if graphs else _paired(target, mine, here)
    if paired is not None:  # drift between the two cases cancelled: preferred
        out.update(paired)
    elif graphs:  # CUDA: device time
        # Noisy as the times the ratio is of; None (unknown) for rows without the spread.
        out.update(ratio=base["graph_median_s"] / mine["graph_median_s"], wall=wall,
                   noisy=records.graph_noisy(mine, base))
    elif (mine.get("device") or "cpu").startswith("cuda"):  # a capture failed: say so
        out["wall_only"] = mine.get("graph_error") or base.get("graph_error") or "no graph"
    return out


def _same_machine(a: dict | None, b: dict | None) -> bool:
    """Whether two rows were timed on one machine record (a ratio means something only
    then: a sweep resumed on another GPU or host may split a shape's pair across two)."""
    return a is None or b is None or a.get("machine_id") == b.get("machine_id")


def _short(here: dict, descriptor: str) -> str:
    """A shape's layer name without its network prefix (res2a_branch2b), else the descriptor."""
    name = next((r.get("name") for r in here.values() if r.get("name")), None)
    if not name:
        m = re.search(r'n"?([^"]+)"?$', descriptor)
        name = m.group(1) if m else descriptor
    return name.split(":")[-1]


# --- text ---------------------------------------------------------------------------

def table(results: list[dict]) -> list[list[str]]:
    """The table's cells, one row per target, in TARGETS order."""
    return [[r["target"].title, _shapes_cell(r), _measured_cell(r), _goal_cell(r["target"]),
             _met_cell(r)] for r in results]


def _met_cell(result: dict) -> str:
    close = result.get("close")
    if not close:
        return result["met"]
    return (f"{result['met']} (within noise: the 95% interval of {', '.join(close)} "
            "reaches past the goal)")


def _paired(target: Target, mine: dict, here: dict) -> dict | None:
    """The shape's ratio from rounds taken in turn (sweep --paired-with), with its 95%
    interval (records.paired_speedup: the ratios of the two backends' chains to a common
    row), or None where the rows cannot give it. Against BEST, the fastest other backend
    by those ratios; None as soon as a backend the comparison needs is unpaired (no common
    scale); an interval is None under 6 rounds (the dagger)."""
    peers = {n: r for n, r in here.items() if _same_machine(r, mine)}
    names = [target.baseline] if target.baseline != BEST else [
        n for n, r in peers.items() if n != target.backend and r["status"] == "ok"]
    ratios = {n: records.paired_speedup(mine, peers[n], peers) if n in peers else None
              for n in names}
    if not ratios or None in ratios.values():
        return None
    base_name = min(ratios, key=lambda n: ratios[n]["ratio"])  # the fastest of them
    paired = ratios[base_name]
    return {"ratio": paired["ratio"], "baseline": base_name, "paired": True,
            "ci": paired["ci"], "noisy": records.paired_noisy(paired)}


def _x(ratio: float, noisy: bool | None = False, wall: float | None = None,
       wall_only: str = "") -> str:
    """A ratio; on CUDA, of device times (CUDA graphs), with the wall-clock one beside it
    where they differ (a gap is what Python and launches cost a caller), or marked "wall
    only" where a capture failed (its reason is in the row's graph_error). Marked * when
    the times it divides were noisy, and a dagger when their spread was not recorded."""
    text = f"{ratio:.2f}x" + {True: "*", None: "\u2020"}.get(noisy, "")
    if wall_only:
        return text + " (wall only)"
    return text + (f" (wall {wall:.2f}x)" if wall is not None and f"{wall:.2f}" !=
                   f"{ratio:.2f}" else "")


def _cell(shape: dict) -> str:
    return _x(shape["ratio"], shape["noisy"], shape.get("wall"), shape.get("wall_only", ""))


def _shapes_cell(result: dict) -> str:
    t, shapes = result["target"], result["shapes"]
    count = f"{len(shapes)} shape" + ("s" if len(shapes) != 1 else "")
    head = f"{t.shapes} ({' + '.join(t.shape_sets)}, batch {t.batch}, {count})"
    if result["met"] in ("not in this run", "not in this sweep"):
        return head
    timed = [s for s in shapes if s["ratio"] is not None]
    if len(shapes) <= LIST_SHAPES:
        return head + ": " + ", ".join(
            f"{s['name']} {_cell(s)}" if s["ratio"] is not None else
            f"{s['name']} not timed ({s['why']})" for s in shapes)
    gaps = [s for s in shapes if s["ratio"] is None]
    text = head
    if timed:
        worst = min(timed, key=lambda s: s["ratio"])
        text += f"; worst: {worst['name']} {_cell(worst)}"
        if t.baseline == BEST:
            ran = f"{t.backend} ran {worst['ran']}; " if worst.get("ran") else ""
            text += f" ({ran}fastest other there: {worst['baseline']})"
    if gaps:
        text += f"; not timed ({len(gaps)}): " + ", ".join(
            f"{s['name']} ({s['why']})" for s in gaps[:3]) + (", ..." if len(gaps) > 3 else "")
    return text


def _measured_cell(result: dict) -> str:
    if result["met"] == "not in this sweep":
        return (f"no {result['target'].backend} rows in this file: the sweep left it out "
                "(--backend), or it was not registered when this ran")
    if result["met"] == "not in this run":
        return ("no rows for these shapes in this file (`python -m benchmarks targets` "
                "times every target's shapes)")
    if result["geomean"] is None:
        return "nothing timed"
    base = "the fastest other backend" if result["target"].baseline == BEST \
        else result["target"].baseline
    noisy = sum(s["noisy"] is True for s in result["shapes"])
    unknown = sum(s["noisy"] is None for s in result["shapes"] if s["ratio"] is not None)
    wall_only = sum(bool(s.get("wall_only")) for s in result["shapes"])
    timed = [s for s in result["shapes"] if s["ratio"] is not None]
    unpaired = sum(not s.get("paired") for s in timed) if any(
        s.get("paired") for s in timed) else 0  # a paired run with gaps in its pairing
    worst = min(timed, key=lambda s: s["ratio"])
    interval = (f", 95% interval {worst['ci'][0]:.2f}-{worst['ci'][1]:.2f}"
                if worst.get("ci") else "")  # paired: how far the verdict is from noise
    return (f"geomean {_x(result['geomean'])}, worst {_x(result['worst'])}{interval} "
            f"(vs {base})"
            + (f"; {noisy} noisy*" if noisy else "")
            + (f"; {unknown} of unknown spread\u2020" if unknown else "")
            + (f"; {wall_only} by wall clock only (no CUDA-graph time)" if wall_only else "")
            + (f"; {unpaired} of separately timed cases (unpaired)" if unpaired else ""))


def _goal_cell(target: Target) -> str:
    base = "the fastest other backend" if target.baseline == BEST else target.baseline
    goals = "; ".join(f"{stat} {op} {value:g}x" for stat, op, value in target.goals)
    return f"{goals or 'none, compared'} (vs {base})"


# --- per layer ---------------------------------------------------------------------------

def layer_groups(targets) -> list[list[Target]]:
    """Targets of one backend, baseline, shape sets, batch and device in two or more
    precisions (each precision once, widest first): each group is one per-layer table."""
    groups = {}
    for t in targets:
        group = groups.setdefault(_layer_kind(t), {})
        group.setdefault((t.dtype, t.tf32), t)
    return [sorted(g.values(), key=lambda t: _PRECISIONS.index(t.precision))
            for g in groups.values() if len(g) > 1]


def per_layer(group: list[Target], rows: list[dict]) -> tuple[str, list[str], list[list[str]]]:
    """(title, header, rows) of a group's table: every layer of its shape sets (the
    targets' selections aside), a ratio per precision, or "-" and why not. Precisions
    without rows here are left out (a report shows each file apart)."""
    shaped = [_by_shape(t, rows) for t in group]
    group, shaped = [t for t, h in zip(group, shaped) if h], [h for h in shaped if h]
    if not group:
        return "", [], []
    first = group[0]
    baseline = first.baseline + (" (cuDNN)" if first.device == "cuda" and
                                 first.baseline == "torch" else "")
    title = (f"{first.backend} vs {baseline} per layer ({' + '.join(first.shape_sets)}, "
             f"batch {first.batch}, {first.device})")
    header = ["layer", *(t.precision for t in group)]
    body = []
    for name in first.shape_sets:
        for e in shape_set(name, first.batch):
            cells = [_shape(t, name, e.descriptor, here.get((name, e.descriptor), {}))
                     for t, here in zip(group, shaped)]
            body.append([cells[0]["name"], *(_cell(c) if c["ratio"] else
                                             f"- ({c['why']})" for c in cells)])
    return title, header, body


def provenance(result_set: ResultSet) -> str:
    """One line: where and when the numbers were measured."""
    return (f"Measured on {_origins(result_set)}, {_when(result_set)}. Ratio: baseline "
            "median time / backend median time "
            "on the same shape in the same run; > 1 is faster than the baseline. Where the "
            "sweep took each backend's rounds in turn with another's (--paired-with torch), "
            "the median over neighbouring rounds of their ratio instead, so that the "
            "machine's drift between two cases cancels (auto's rounds alternate with the "
            "backend it ran, that one's with torch's; two backends compare through the "
            "ratios they do not share). On CUDA, "
            "of device times (the calls replayed from a CUDA graph, launch overhead "
            "excluded) where both have one, the wall-clock ratio beside it where it "
            f"differs. *: noisy, the IQR of either time the ratio divides was over "
            f"{NOISY:.0%} of its median or the hypervisor took over "
            f"{machine.STEAL_NOISY:.0%} of the CPU while it was timed (steal) or other "
            f"processes kept over {records.CONTENDED:g} CPUs busy beside it (a paired ratio "
            "is of neighbouring rounds that lost alike, and its interval says the rest), or "
            "a paired ratio's 95% confidence interval was "
            f"wider than \u00b1{NOISY:.0%}. \u2020: noise unknown: device times whose spread "
            "these rows do not record (rows older than graph_noise, or a single replay "
            "round), or a paired ratio of under 6 rounds, too few for a 95% interval.")


def _origins(result_set: ResultSet) -> str:
    """Machine, torch and commit of the files, each followed by the files they measured:
    the precisions of one table may come from different machines and commits (a GPU
    session measures what its time allows), and the first file's machine must not speak
    for the others."""
    files: dict[str, list[str]] = {}
    for path in result_set.paths:
        runs = [r for r in result_set.runs if r.get("file") == str(path)]
        row = next((r for r in result_set.rows if r.get("file") == str(path)), {})
        m = result_set.machine(row) or result_set.first_machine()
        commit = ResultSet([path], [], {}, runs).commit()
        origin = f"{_machine_words(m)}, torch {m.get('torch', '?')}, commit {commit or '?'}"
        files.setdefault(origin, []).append(str(path))
    return "; on ".join(f"{origin} ({', '.join(paths)})" for origin, paths in files.items())


def _machine_words(m: dict) -> str:
    gpu = m.get("gpu") or {}
    return (f"{gpu.get('name')} (CUDA {gpu.get('cuda')}, cuDNN {gpu.get('cudnn')}, driver "
            f"{gpu.get('driver') or '?'}; host {m.get('cpu', '?')})" if gpu.get("name") else
            f"{m.get('cpu', '?')} ({m.get('torch_threads', '?')} threads)")


def _when(result_set: ResultSet) -> str:
    """When, under what load: one sweep's start, or each start of several sweeps (files
    of one host and commit are read as one run, but they may come from separate calls:
    the load of the first said nothing of the others)."""
    first = {}  # per file, its first run's start: a resumed sweep is still one sweep
    for r in result_set.runs:
        if r.get("started"):
            first[r.get("file")] = min(first.get(r.get("file"), r["started"]), r["started"])
    starts = sorted(s[:16].replace("T", " ") for s in first.values())
    loads = sorted(m["loadavg_1min"] for m in result_set.machines.values()
                   if m.get("loadavg_1min") is not None)
    load = "" if not loads else f"load average {loads[0]:.1f}" if loads[0] == loads[-1] \
        else f"load average {loads[0]:.1f}-{loads[-1]:.1f}"
    runs = "one run" if len(result_set.paths) < 2 else f"{len(result_set.paths)} sweeps"
    return f"in {runs} started {', '.join(starts) or '?'}" + (f" ({load})" if load else "")


def _layer_tables(targets, rows):
    """The per-layer tables of these rows: one per group of targets in several precisions,
    with the precisions measured here (one alone too: a run of one machine may hold only
    bfloat16, whose target names four layers, and its table gives all twenty)."""
    kinds = {_layer_kind(t) for t in targets}  # with their other precisions, run or not
    tables = [per_layer(group, rows)
              for group in layer_groups([t for t in TARGETS if _layer_kind(t) in kinds])]
    return [t for t in tables if len(t[1]) > 1]


def _layer_kind(t: Target) -> tuple:
    """What one per-layer table is of: all but the precision (see layer_groups)."""
    return t.backend, t.baseline, t.shape_sets, t.batch, t.device


def _mine(result_set: ResultSet) -> list[Target]:
    """The targets of the devices and precisions these rows were measured in (the CPU's
    float32 ones if there are no rows)."""
    here = {_where(r) for r in result_set.rows} or {("cpu", "float32", False, "contiguous")}
    return [t for t in TARGETS if _where_of(t) in here]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text):
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]) + "\n"


def markdown(result_set: ResultSet, targets: list[Target] | None = None) -> str:
    """The table (and per-layer tables) of ``targets``: default, those measured here."""
    mine = _mine(result_set) if targets is None else targets
    text = provenance(result_set) + "\n\n" + _md_table(
        HEADER, table([evaluate(t, result_set.rows) for t in mine]))
    for title, header, body in _layer_tables(mine, result_set.rows):
        text += f"\n{title}:\n\n" + _md_table(header, body)
    return text


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    e = htmllib.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>\n"


def html_section(result_set: ResultSet, anchor: str = "targets") -> str:
    """The HTML of one run's targets; ``anchor``, its heading's id, one per section."""
    e = htmllib.escape
    mine = _mine(result_set)
    text = (f"<h2 id={anchor}>Speed targets ({e(result_set.label or '')})</h2>"
            f"<p>{e(provenance(result_set))}</p>"
            + _html_table(HEADER, table([evaluate(t, result_set.rows) for t in mine])))
    for title, header, body in _layer_tables(mine, result_set.rows):
        text += f"<h3>{e(title)}</h3>" + _html_table(header, body)
    return text


def has_targets(result_set: ResultSet) -> bool:
    """Whether any target has a ratio in these rows (a report shows the table only then)."""
    return any(evaluate(t, result_set.rows)["geomean"] is not None for t in TARGETS)


# --- files -----------------------------------------------------------------------------

def add_to_report(out_dir: Path, sets: list[ResultSet]) -> None:
    """The report builder's hook: a targets section in index.html and summary.md, before
    the speedup table, for each run whose rows give any target a ratio. The files of one
    run (one per precision: same host, device and commit) make one section, so that its
    per-layer table has every precision."""
    mine = [s for s in _runs(sets) if has_targets(s)]
    if not mine:
        return
    _insert(out_dir / "index.html", "<h2 id=speedup>", "".join(
        html_section(s, "targets" if i == 0 else f"targets-{i + 1}")
        for i, s in enumerate(mine)))
    _insert(out_dir / "summary.md", "## Speedup over torch", "".join(
        f"## Speed targets ({s.label})\n\n{markdown(s)}\n" for s in mine))


def _runs(sets: list[ResultSet]) -> list[ResultSet]:
    """``sets`` with the files of one run (same host, device and commit) merged into one."""
    groups = {}
    for s in sets:
        m = s.first_machine()
        groups.setdefault((m.get("host"), m.get("device"), s.commit()), []).append(s)
    out = []
    for group in groups.values():
        merged = group[0] if len(group) == 1 else load([p for s in group for p in s.paths])
        merged.label = group[0].label if len(group) == 1 else describe(merged)
        out.append(merged)
    return out


def _insert(path: Path, before: str, text: str) -> None:
    page = path.read_text(encoding="utf-8")
    at = page.find(before)
    at = at if at >= 0 else len(page)
    path.write_text(page[:at] + text + page[at:], encoding="utf-8")


def write(files: list[Path], out_dir: Path, device: str | None = None) -> int:
    """Print the table of the results files of one run (one per precision) and write it
    to ``out_dir/targets.md``: every target of ``device``, or those measured here."""
    found = [Path(f) for f in files if Path(f).is_file()]
    for f in files:
        if not Path(f).is_file():  # a precision not run yet: its targets say "not in this run"
            print(f"targets: warning: no such file: {f}", file=sys.stderr)
    if not found:
        committed = (" (the committed GPU run's are in reports/results/gpu: --results-dir "
                     "reports/results/gpu)" if device == "cuda" else "")
        print("targets: error: none of the results files exists: measure them with python -m "
              f"benchmarks targets, or nox -s targets{committed}", file=sys.stderr)
        return 2
    text = markdown(load(found), None if device is None else
                    [t for t in TARGETS if t.device == device])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "targets.md").write_text(text, encoding="utf-8")
    print(f"\n{text}\n-> {out_dir / 'targets.md'}; the HTML report shows it too: "
          f"python -m reports build {' '.join(map(str, found))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.targets", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("results", type=Path, nargs="+",
                   help="results files of python -m benchmarks targets (one per precision)")
    p.add_argument("--out", type=Path, default=Path("reports") / "out")
    args = p.parse_args(argv)
    return write(args.results, args.out)


if __name__ == "__main__":
    sys.exit(main())

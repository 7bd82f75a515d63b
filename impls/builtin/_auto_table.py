"""The ``auto`` backend's decision data: which backend the sweeps measured fastest, per shape.

Why measurements, not a formula: the crossovers (FFT from ~100 taps, Winograd on deep 3x3
layers, im2col against oneDNN) move with the machine, the thread count and the libraries,
so they are read from sweeps run on the machine that matters.

A table is JSON: ``{"schema": SCHEMA, "sources", "machines", "commits", "entries": [...]}``
(``commits``: the code the sweeps timed, as their run records say). An entry is
one measured problem: its normalised arguments (``input``, ``weight`` shapes, ``stride``,
``padding``, ``dilation``, ``groups``), the benchdnn ``descriptor``, ``dtype``, ``device``
type, and ``ranking``: [[backend, median seconds], ...], fastest first, from the rows with
status ok, direction forward, a warm cache and NCHW operands (``auto`` itself left out).
:func:`build` makes one from sweep result files; :func:`load` reads tables and result files
alike.

Lookup (:meth:`Table.nearest`): the entry of the same problem, dtype and device type; else
the nearest measured problem of the same device type, by the weighted distance of FEATURES
(log2 of taps, channels per group in and out, output pixels, stride, dilation; a depthwise
flag; a dtype mismatch costs DTYPE_PENALTY). None when no entry has that device type.

What it must not do: import benchmarks or reports (impls comes first in the dependency
order), so result files are read here as plain JSON (lines); nor measure anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from impls.spec import ConvSpec

SCHEMA = "convbench-auto-table/1"
#: Per feature, its weight in the distance: kernel size and depthwise-or-not move the
#: crossovers most (FFT, Winograd), channels and output size decide GEMM efficiency.
FEATURES = {"taps": 2.0, "channels_in": 1.0, "channels_out": 1.0, "pixels": 1.0,
            "stride": 2.0, "dilation": 1.0, "depthwise": 4.0}
DTYPE_PENALTY = 2.0
_ROW_KEYS = ("backend", "descriptor", "median_s", "status", "dtype", "device")


@dataclass(frozen=True)
class Entry:
    """One measured problem and its backends, fastest first."""

    problem: tuple  # (input_shape, weight_shape, stride, padding, dilation, groups)
    dtype: str
    device: str
    ranking: tuple[tuple[str, float], ...]
    descriptor: str = ""

    def to_json(self) -> dict:
        x, w, stride, padding, dilation, groups = self.problem
        return {"descriptor": self.descriptor, "input": list(x), "weight": list(w),
                "stride": list(stride), "padding": list(padding), "dilation": list(dilation),
                "groups": groups, "dtype": self.dtype, "device": self.device,
                "ranking": [[name, float(f"{s:.4g}")] for name, s in self.ranking]}


def features(problem) -> dict[str, float]:
    """The coordinates of a problem in the space nearest-neighbour lookup measures."""
    (n, c, h, w), (k, cg, r, s), stride, padding, dilation, groups = problem
    p = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    q = (w + 2 * padding[1] - dilation[1] * (s - 1) - 1) // stride[1] + 1
    log = lambda v: math.log2(max(v, 1))  # noqa: E731
    return {"taps": log(r * s), "channels_in": log(cg), "channels_out": log(k // groups),
            "pixels": log(n * p * q), "stride": log(stride[0] * stride[1]),
            "dilation": log(dilation[0] * dilation[1]),
            "depthwise": float(cg == 1 and groups > 1)}


def distance(a: dict, b: dict) -> float:
    return math.sqrt(sum((FEATURES[f] * (a[f] - b[f])) ** 2 for f in FEATURES))


class Table:
    """Entries indexed by problem, with nearest-neighbour lookup; ``source`` names them."""

    def __init__(self, entries: list[Entry], source: str, machines: tuple[str, ...] = (),
                 commits: tuple[str, ...] = ()):
        self.entries, self.source, self.machines = entries, source, machines
        self.commits = commits
        self._exact = {(e.problem, e.dtype, e.device): e for e in entries}
        self._features = [(e, features(e.problem)) for e in entries]

    def nearest(self, problem, dtype: str, device: str) -> tuple[Entry, float] | None:
        """(entry, distance): the problem's own entry at distance 0, else the closest."""
        if (problem, dtype, device) in self._exact:
            return self._exact[problem, dtype, device], 0.0
        here, best = features(problem), None
        for entry, coords in self._features:
            if entry.device != device:
                continue
            d = distance(here, coords) + (DTYPE_PENALTY if entry.dtype != dtype else 0.0)
            if best is None or d < best[1]:
                best = (entry, d)
        return best


def problem_of(spec: ConvSpec) -> tuple:
    """The normalised conv arguments of a benchdnn problem (symmetric padding)."""
    return (tuple(spec.input_shape), tuple(spec.weight_shape), tuple(spec.stride),
            tuple(spec.padding), tuple(spec.dilation), spec.groups)


def build(rows: list[dict]) -> list[Entry]:
    """Entries from sweep rows: per problem, dtype and device type, backends by median.
    A backend measured more than once on a problem keeps its fastest median: load on a
    shared machine only ever adds time, so the fastest of several runs is the best guess."""
    timed: dict[tuple, dict[str, float]] = {}
    descriptors = {}
    for row in rows:
        if (row["status"] != "ok" or row.get("direction", "forward") != "forward"
                or row.get("cache", "warm") != "warm" or row["backend"] == "auto"
                or (row.get("memory_format") or "contiguous") != "contiguous"):
            continue
        spec = ConvSpec.parse(row["descriptor"])
        key = (problem_of(spec), row["dtype"], row["device"].split(":")[0])
        times = timed.setdefault(key, {})
        times[row["backend"]] = min(float(row["median_s"]), times.get(row["backend"], math.inf))
        descriptors[key] = str(replace(spec, name=""))  # a layer's name is not its shape
    return [Entry(problem, dtype, device, tuple(sorted(times.items(), key=lambda t: t[1])),
                  descriptors[problem, dtype, device])
            for (problem, dtype, device), times in sorted(timed.items(), key=str)]


def table_text(table: Table, sources: list[str]) -> str:
    """The table as JSON, one entry per line (a regenerated table diffs line by line)."""
    head = json.dumps({"schema": SCHEMA, "sources": sources, "machines": list(table.machines),
                       "commits": list(table.commits)}, indent=1)[:-2]
    body = ",\n".join(json.dumps(e.to_json()) for e in table.entries)
    return f'{head},\n "entries": [\n{body}\n]}}\n'


def load(paths: list[str]) -> Table:
    """A table from auto tables (JSON) and sweep result files (JSON lines, or the sweep's
    JSON report); ValueError naming the file and line for anything malformed."""
    entries, rows, machines, commits = [], [], [], []
    for path in paths:
        doc = _read(Path(path))
        if isinstance(doc, dict) and doc.get("schema") == SCHEMA:
            entries += [_entry(e, path, i) for i, e in enumerate(doc.get("entries", []))]
            machines += doc.get("machines", [])
            commits += doc.get("commits", [])
        elif isinstance(doc, dict) and "convbench" in doc:  # the sweep's JSON report
            rows += [_row(r, path, i) for i, r in enumerate(doc["convbench"].get("rows", []))]
            commits += [_commit(r) for r in doc["convbench"].get("runs", [])]
        else:
            rows += [_row(r, path, i) for i, r in doc if r.get("record") == "case"]
            machines += [_machine(r) for _, r in doc if r.get("record") == "machine"]
            commits += [_commit(r) for _, r in doc if r.get("record") == "run"]
    try:
        entries += build(rows)
    except ValueError as exc:  # a descriptor that does not parse
        raise ValueError(f"{', '.join(map(str, paths))}: {exc}") from None
    return Table(entries, ", ".join(map(str, paths)), tuple(dict.fromkeys(machines)),
                 tuple(dict.fromkeys(c for c in commits if c)))


def _read(path: Path):
    """A whole-file JSON object, or [(line number, record)] of a JSON-lines file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and "record" not in doc:
            return doc
    except json.JSONDecodeError:
        pass
    records = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not text.endswith("\n"):
                continue  # the last line, cut off by a killed sweep: as records.py reads it
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: a {type(record).__name__}, not a record")
        records.append((number, record))
    return records


def _row(row: dict, path, where) -> dict:
    missing = [k for k in _ROW_KEYS if k not in row]
    if missing or (row["status"] == "ok" and not isinstance(row["median_s"], (int, float))):
        what = f"no {', '.join(missing)}" if missing else f"median_s {row['median_s']!r}"
        raise ValueError(f"{path}:{where}: a case row with {what}")
    return row


def _commit(run: dict) -> str:
    """The commit a sweep's run record says it timed, "+dirty" when the tree had changes."""
    info = run.get("commit_info") or {}
    return (info.get("id") or "")[:12] + ("+dirty" if info.get("id") and info.get("dirty")
                                          else "")


def _machine(record: dict) -> str:
    """What a table's numbers were measured on, in one line (benchmarks.machine's record)."""
    return (f"{record.get('cpu')}, {record.get('torch_threads')} threads, torch "
            f"{record.get('torch')}, oneDNN {record.get('onednn')}, {record.get('blas')}")


def _entry(item: dict, path, index: int) -> Entry:
    try:
        problem = (tuple(item["input"]), tuple(item["weight"]), tuple(item["stride"]),
                   tuple(item["padding"]), tuple(item["dilation"]), int(item["groups"]))
        ranking = tuple((str(name), float(s)) for name, s in item["ranking"])
        return Entry(problem, item["dtype"], item["device"], ranking,
                     item.get("descriptor", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: entry {index} is malformed "
                         f"({type(exc).__name__}: {exc})") from None

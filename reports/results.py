"""Reading sweep result files for the report: rows, machines and a label per file.

Why a module of its own: the charts, tables and CSV all need the same view of the results
(which file a row came from, what machine measured it), and the side-by-side report needs a
short label per file that tells two files apart. Rows are read through
benchmarks.records.ResultsFile, the schema's own reader (JSON lines or the ``.json``
report), so a change of schema lands here for free. Nothing here draws or measures, and no
row is dropped: every status travels on to the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import records
from benchmarks.records import ROW_FIELDS, ResultsFile

#: Where ``python -m benchmarks sweep`` writes (benchmarks.sweep_plan.RESULTS_DIR).
SWEEP_DIR = Path("reports") / "sweeps"
_SHARD = re.compile(r"-shard\d+of(\d+)$")


@dataclass
class ResultSet:
    """The records of one result file (or of the shards of one sweep)."""

    paths: list[Path]
    rows: list[dict]
    machines: dict[str, dict]
    runs: list[dict]
    label: str = ""
    extra: dict = field(default_factory=dict)

    def machine(self, row: dict) -> dict:
        return self.machines.get(row.get("machine_id") or "", {})

    def first_machine(self) -> dict:
        return next(iter(self.machines.values()), {})

    def commit(self) -> str:
        ids = [r.get("commit_info", {}).get("id") for r in self.runs]
        ids = [i for i in ids if i]
        dirty = any(r.get("commit_info", {}).get("dirty") for r in self.runs)
        return (ids[-1][:8] + ("+dirty" if dirty else "")) if ids else ""


def load(paths: list[Path]) -> ResultSet:
    rows, machines, runs = {}, {}, []
    files = [ResultsFile(path) for path in paths]
    for path, results in zip(paths, files):
        rows.update({r["key"]: {**dict.fromkeys(ROW_FIELDS), **r, "file": str(path)}
                     for r in results.rows()})
        machines.update({m["id"]: m for m in results.machines()})
        runs += [{**r, "file": str(path)} for r in results.of_kind("run")]
    return ResultSet(list(paths), list(rows.values()), machines, runs,
                     extra={"plans": records.plans(files)})


def default_files(folder: Path = SWEEP_DIR) -> list[Path]:
    """The newest ``.jsonl`` in the sweep's folder, with its sibling shards if it is one;
    a ``.json`` report only when there is no ``.jsonl`` (the rows are the same)."""
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    files = files or sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    newest = files[-1]
    m = _SHARD.search(newest.stem)
    if not m:
        return [newest]
    base = newest.stem[:m.start()]
    return sorted(p for p in files if _SHARD.sub("", p.stem) == base)


def load_all(files: list[Path]) -> list[ResultSet]:
    """One ResultSet per file given, or per sweep for its shards (``-shardIofN`` files of
    one folder, name and N: the parts of one run, never runs to compare), labelled so that
    two sets can be told apart."""
    sets = [load(group) for group in _sweeps(files)]
    for s in sets:
        s.label = describe(s)
    labels = [s.label for s in sets]
    if len(set(labels)) < len(labels):  # same machine and commit: the files' names differ
        names = [s.paths[0].name for s in sets]
        unique = len(set(names)) == len(names)
        for s in sets:
            s.label = f"{s.label} [{s.paths[0].name if unique else s.paths[0]}]"
    return sets


def _sweeps(files: list[Path]) -> list[list[Path]]:
    """``files`` grouped into sweeps, in order of first appearance."""
    groups: dict[tuple, list[Path]] = {}
    for f in map(Path, files):
        m = _SHARD.search(f.stem)
        key = (f.parent, _SHARD.sub("", f.stem), f.suffix, m[1]) if m else (f,)
        groups.setdefault(key, []).append(f)
    return list(groups.values())


def describe(result_set: ResultSet) -> str:
    """host/device, with the GPU's name if any, and the commit: e.g. ``vm cpu @ b4b462e5``."""
    m = result_set.first_machine()
    gpu = (m.get("gpu") or {}).get("name")
    where = " ".join(x for x in (m.get("host"), gpu or m.get("device")) if x)
    commit = result_set.commit()
    return (where or result_set.paths[0].stem) + (f" @ {commit}" if commit else "")


def grid_point(name: str | None) -> dict | None:
    """Kernel, image, stride and padding of a ``grid`` entry from its name
    (``grid:k3_i56_s1_same``, benchmarks.shapes.grid); None for any other name."""
    m = re.match(r"grid:k(\d+)_i(\d+)_s(\d+)_(\w+)$", name or "")
    if not m:
        return None
    return {"kernel": int(m[1]), "image": int(m[2]), "stride": int(m[3]), "padding": m[4]}

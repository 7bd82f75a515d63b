"""The sweep's result files: what one row says, how rows are streamed, and how they merge.

Why JSON lines: a sweep may be killed at any moment (a crashing kernel, a CI timeout, ^C).
Each finished case is one line, appended and flushed at once, so nothing finished is lost,
and the file doubles as the resume log: a case whose key is in it is done. A line cut off by
a kill is ignored on reading. The same file holds ``machine`` records (see
benchmarks.machine), referenced from each row by ``machine_id``.

The report (``<results>.json``) is pytest-benchmark's own JSON format, so its tools read
it (``pytest-benchmark compare``), with every row of every status under the extra top-level
key ``convbench`` (pytest-benchmark's ``benchmarks`` list has only the cases that were timed).
Nothing here measures; nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

SCHEMA = 1
STATUSES = ("ok", "skipped", "failed", "timeout", "crashed")

#: Every field of a case row, in order, with its meaning. A field that does not apply to a
#: row (a skipped case has no time) is null, never absent.
ROW_FIELDS = {
    "record": '"case"',
    "key": "backend|shape_set|descriptor|dtype|device|direction|cache[|tf32]: what resume "
           "matches",
    "backend": "registry name, or package.module:function for a user's callable",
    "shape_set": "benchmarks.shapes set (or sweep subset, e.g. grid-small) the shape is from",
    "index": "position of the shape in its set",
    "name": "the layer's name in its set (e.g. resnet_50:res2a_branch2b)",
    "descriptor": "benchdnn descriptor of the problem, batch included",
    "count": "times the network runs this layer (weights for network totals)",
    "batch": "mb of the descriptor",
    "dtype": "float32, float64, float16, bfloat16",
    "device": "cpu, cuda, cuda:1, ...",
    "tf32": "float32 run with TF32 allowed in cuBLAS and cuDNN (--tf32); false: strict",
    "direction": "forward, backward-data (dL/dinput alone) or backward-weights (dL/dweight)",
    "cache": "warm, or cold (caches flushed before every call)",
    "status": " | ".join(STATUSES),
    "reason": "why skipped/failed/timeout/crashed; for ok, a noise warning or empty",
    "median_s": "median seconds per call (pytest-benchmark's stats)",
    "iqr_s": "interquartile range of the per-call seconds",
    "min_s": "fastest round's seconds per call",
    "mean_s": "mean seconds per call",
    "rounds": "timed rounds",
    "iterations": "calls per round",
    "noise": "iqr_s / median_s",
    "graph_median_s": "CUDA forward, warm cache: median seconds per call of a round's calls "
                      "replayed from one CUDA graph (triton.testing.do_bench_cudagraph's "
                      "method): the device's time without Python and launch overhead; null "
                      "on the CPU",
    "graph_error": "why a CUDA case has no graph_median_s (its calls could not be captured)",
    "flops": "2*N*K*P*Q*(C/g)*R*S of one call (each backward direction: the forward's)",
    "gflops": "flops / median_s / 1e9",
    "bytes": "input + weight + output bytes (real tensors, not im2col-inflated)",
    "gbps": "bytes / median_s / 1e9",
    "arithmetic_intensity": "flops / bytes",
    "peak_gflops": "this machine's measured GEMM GFLOP/s in this dtype",
    "bandwidth_gbps": "this machine's measured copy bandwidth",
    "fraction_of_peak": "gflops / peak_gflops",
    "fraction_of_roofline": "gflops / min(peak_gflops, arithmetic_intensity * bandwidth_gbps)",
    "peak_memory_bytes": "memory one call needed above its inputs (backward: above the "
                         "retained forward graph; see benchmarks.memory)",
    "memory_method": "rss-hwm, cuda-max-allocated or none",
    "predicted_s": "the budget guard's prediction of one call",
    "prediction": "measured, or how it was extrapolated",
    "threads": "torch threads (pinned)",
    "machine_id": "id of the machine record the row was measured on",
    "test": "pytest node id of the case",
    "started": "local time the case started (ISO 8601)",
    "wall_s": "seconds the case took, guard, warm-up and memory call included",
}


def case_row(**fields) -> dict:
    """A row with every field of ROW_FIELDS (null where not given); unknown fields refused."""
    unknown = set(fields) - set(ROW_FIELDS)
    if unknown:
        raise ValueError(f"unknown row fields: {', '.join(sorted(unknown))}")
    if fields.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {fields.get('status')!r}")
    row = dict.fromkeys(ROW_FIELDS)
    row.update(fields, record="case")
    return row


def derived(flops: int, nbytes: int, median_s: float, peak_gflops: float | None,
            bandwidth_gbps: float | None) -> dict:
    """The rates a row carries, from one call's FLOPs, bytes and median time."""
    gflops = flops / median_s / 1e9
    intensity = flops / nbytes
    out = {"gflops": gflops, "gbps": nbytes / median_s / 1e9, "arithmetic_intensity": intensity,
           "fraction_of_peak": None, "fraction_of_roofline": None}
    if peak_gflops:
        out["fraction_of_peak"] = gflops / peak_gflops
        if bandwidth_gbps:
            out["fraction_of_roofline"] = gflops / min(peak_gflops, intensity * bandwidth_gbps)
    return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


#: Beside the backend, layer and direction, what tells two rows apart (the key; the batch is
#: in its descriptor): a file that several sweeps appended to (resume matches on the key, so
#: a float64 or batch-8 run can follow a float32 batch-1 one in the same file) holds
#: several, and a summary must never pool them.
VARIANT_FIELDS = {"batch": lambda r: r.get("batch"),
                  "device": lambda r: r.get("device") or "cpu",
                  "dtype": lambda r: r.get("dtype") or "float32",
                  "tf32": lambda r: bool(r.get("tf32")),
                  "cache": lambda r: r.get("cache") or "warm"}


def varying(rows) -> set[str]:
    """The VARIANT_FIELDS that take more than one value among ``rows``."""
    rows = list(rows)
    return {f for f, get in VARIANT_FIELDS.items() if len({get(r) for r in rows}) > 1}


def variant(row: dict, fields: set[str]) -> str:
    """The row's batch, device, precision and cache mode, each only where ``fields`` (what
    varies in the summary at hand) names it, so a one-precision summary shows backends'
    names alone: "", "float64", "cuda float32 TF32", "batch 8 cold cache"."""
    get = {f: VARIANT_FIELDS[f](row) for f in VARIANT_FIELDS}
    parts = [f"batch {get['batch']}"] if "batch" in fields else []
    if "device" in fields:
        parts.append(get["device"])
    if fields & {"dtype", "tf32"}:
        parts.append(get["dtype"] + (" TF32" if get["tf32"] else ""))
    if "cache" in fields:
        parts.append(f"{get['cache']} cache")
    return " ".join(parts)


class ResultsFile:
    """A JSON-lines file of records, appended one line at a time: ``run`` (one per pytest
    process: options, commit, pytest-benchmark's machine info), ``machine`` (see
    benchmarks.machine), ``case`` (a row) and ``benchmark`` (pytest-benchmark's entry for
    a timed case, so the report has them even when a later case killed the process).

    A report (``.json``) is read as the records it was made of, so shards can be merged
    from either form.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        """Write one record as one line and push it to disk before returning: the process
        may be killed right after."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        if self.path.suffix == ".json":
            return _report_records(json.loads(text))
        out = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut off by a kill: the case reruns
                record = None
            if isinstance(record, dict):
                out.append(record)
            else:  # cut off, or not JSON lines at all (a JSON report named .jsonl)
                warnings.warn(f"{self.path}:{lineno}: unreadable line ignored", stacklevel=2)
        return out

    def of_kind(self, kind: str) -> list[dict]:
        """Records of one kind; for keyed kinds, one per key (the last one written wins)."""
        found = [r for r in self.records() if r.get("record") == kind]
        if kind in ("case", "benchmark"):
            return list({r["key"]: r for r in found}.values())
        if kind == "machine":
            return list({r["id"]: r for r in found}.values())
        return found

    def rows(self) -> list[dict]:
        rows = self.of_kind("case")
        if all("tf32" in r for r in rows):
            return rows
        machines = {m["id"]: m for m in self.machines()}
        return [_with_tf32(r, machines.get(r.get("machine_id")) or {}) for r in rows]

    def machines(self) -> list[dict]:
        return self.of_kind("machine")

    def done(self) -> set[str]:
        return {r["key"] for r in self.rows()}


def _with_tf32(row: dict, machine: dict) -> dict:
    """A row written before rows said whether TF32 was on, as rows say it now: its
    machine record does (cuDNN's flag as the sweep set it), and a TF32 row's key ends in
    "|tf32", so that neither a resume nor a report takes it for a strict float32 row."""
    if "tf32" in row:
        return row
    tf32 = bool(row.get("dtype") == "float32" and str(row.get("device")).startswith("cuda")
                and (machine.get("gpu") or {}).get("tf32_cudnn"))
    return {**row, "tf32": tf32, "key": row["key"] + ("|tf32" if tf32 else "")}


def _report_records(doc: dict) -> list[dict]:
    sweep = doc.get("convbench", {})
    out = [{"record": "run", **r} for r in sweep.get("runs", [])]
    out += [{"record": "machine", **m} for m in sweep.get("machines", {}).values()]
    out += [{**r, "record": "case"} for r in sweep.get("rows", [])]
    out += [{"record": "benchmark", "key": b["extra_info"]["key"], **b}
            for b in doc.get("benchmarks", []) if "key" in b.get("extra_info", {})]
    return out


def report(results: list[ResultsFile]) -> dict:
    """One document from one or several result files (a job array's shards): pytest-benchmark's
    JSON format, every row of every status under ``convbench``."""
    runs, machines, rows, benchmarks, repeated = [], {}, {}, {}, 0
    for res in results:
        runs += [_strip(r) for r in res.of_kind("run")]
        machines.update({m["id"]: _strip(m) for m in res.machines()})
        for r in res.rows():
            repeated += r["key"] in rows and rows[r["key"]] != r
            rows[r["key"]] = r
        benchmarks.update({b["key"]: _strip(b, "key") for b in res.of_kind("benchmark")})
    if repeated:
        warnings.warn(f"{repeated} cases are in more than one result file (overlapping shards?);"
                      " for each, the file given last wins", stacklevel=2)
    first = runs[0] if runs else {}
    return {
        "machine_info": next(iter(machines.values()), {}).get("machine_info", {}),
        "commit_info": first.get("commit_info", {}),
        "benchmarks": [benchmarks[k] for k in rows if k in benchmarks],
        "datetime": now(),
        "version": first.get("pytest_benchmark"),
        "convbench": {"schema": SCHEMA, "kind": "conv2d-sweep", "created": now(),
                      "sources": [str(r.path) for r in results], "runs": runs,
                      "machines": machines, "rows": list(rows.values())},
    }


def _strip(record: dict, *extra: str) -> dict:
    return {k: v for k, v in record.items() if k not in ("record", *extra)}
def write_json(path: str | os.PathLike, doc: dict) -> None:
    """Write through a temporary file, so a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)

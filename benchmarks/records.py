"""The sweep's result files: what one row says, how rows are streamed, and how they merge.

Why JSON lines: a sweep may be killed at any moment (a crashing kernel, a CI timeout, ^C).
Each finished case is one line, appended and flushed at once, so nothing finished is lost,
and the file doubles as the resume log (:meth:`ResultsFile.done`): a case whose row is
*settled* is done, one whose row says nothing was measured for a reason that may not recur
is measured again (:func:`settled`). Where a key has several rows, the last one written is
the case's row, everywhere: resume, summaries, reports, merges. A line cut off by a kill is
ignored on reading. The same file holds ``machine`` records (see benchmarks.machine),
referenced from each row by ``machine_id``.

The report (``<results>.json``) is pytest-benchmark's own JSON format, so its tools read
it (``pytest-benchmark compare``), with every row of every status under the extra top-level
key ``convbench`` (pytest-benchmark's ``benchmarks`` list has only the cases that were timed).
Nothing here measures; nothing here imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import time
import warnings
from datetime import datetime
from pathlib import Path

SCHEMA = 1
STATUSES = ("ok", "skipped", "failed", "timeout", "crashed")
#: The field that identifies a record of each keyed kind (see ResultsFile.of_kind).
_KEYS = {"case": "key", "benchmark": "key", "machine": "id"}

#: Every field of a case row, in order, with its meaning. A field that does not apply to a
#: row (a skipped case has no time) is null, never absent.
ROW_FIELDS = {
    "record": '"case"',
    "key": "backend|shape_set|descriptor|dtype|device|direction|cache[|tf32][|channels_last]: "
           "what resume matches",
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
    "memory_format": "contiguous (NCHW) or channels_last (NHWC): the input's and weight's "
                     "layout (--memory-format)",
    "status": " | ".join(STATUSES),
    "reason": "why skipped/failed/timeout/crashed; for ok, a noise warning or empty",
    "median_s": "median seconds per call (pytest-benchmark's stats)",
    "iqr_s": "interquartile range of the per-call seconds",
    "min_s": "fastest round's seconds per call",
    "mean_s": "mean seconds per call",
    "rounds": "timed rounds",
    "iterations": "calls per round",
    "noise": "iqr_s / median_s",
    "steal": "share of the machine's CPU time the hypervisor gave other guests while the "
             "case was timed (/proc/stat's steal; null where unknown): over 10% marks the "
             "row in its reason, as rounds slowed alike can look steady",
    "others_cpu": "CPUs other processes kept busy, on average, while the case was timed "
                  "(/proc/stat's busy time less this process's; null where unknown): over "
                  "0.5 marks the row in its reason",
    "loadavg_1min": "1-minute load average as the case's rounds ended (the machine record "
                    "has it at the sweep's start only)",
    "graph_median_s": "CUDA forward, warm cache: median seconds per call of a round's calls "
                      "replayed from one CUDA graph (triton.testing.do_bench_cudagraph's "
                      "method): the device's time without Python and launch overhead; null "
                      "on the CPU",
    "graph_noise": "the replayed rounds' IQR / median: the spread of graph_median_s, as "
                   "noise is of median_s (rows from before 2026-11-26 lack it)",
    "graph_error": "why a CUDA case has no graph_median_s (its calls could not be captured)",
    "paired_with": "the sweep's --paired-with (null: none), on every row it timed: what "
                   "a resumed sweep matches (records.settled)",
    "paired_backend": "the backend whose rounds alternated with this case's (sweep "
                      "--paired-with's; a dispatcher's: the backend it ran), so that each of "
                      "its rounds followed one of that backend's (median_s included); null "
                      "when unpaired",
    "paired_median_s": "median seconds per call of paired_backend in those rounds",
    "paired_ratio": "median over neighbouring rounds of paired_backend's time per call over "
                    "this backend's: > 1 is faster than it, drift between cases cancelled",
    "paired_ci": "[low, high]: 95% confidence interval of paired_ratio (order statistics "
                 "of the per-round ratios); null under 6 rounds, too few for one",
    "paired_error": "why a case of a paired sweep is unpaired (its partner refuses the "
                    "case, would exceed --limit, or failed)",
    "flops": "benchdnn's count of one call: 2 per multiply-add of a kernel tap that lands "
             "inside the input, taps on padding left out, so at most 2*N*K*P*Q*(C/g)*R*S "
             "(each backward direction: the forward's)",
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
    "ran": "the backend a dispatcher (auto) ran the case with; absent for the others",
    "predicted_s": "the budget guard's prediction of one call",
    "prediction": "measured, or how it was extrapolated",
    "code_file": "the source file that defines the backend's function (relative to the "
                 "repository when inside it)",
    "code": "sha1 (12 hex digits) of code_file as it was timed: a resumed sweep measures "
            "the case again when the file has changed since (records.settled); only that "
            "file, not the helper modules it imports",
    "threads": "torch threads (pinned); a resumed sweep refuses a file whose rows were "
               "measured with another count (ResultsFile.conditions_differ)",
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


#: Skip reasons that a rerun tries again: the backend could not run here (a package not
#: installed, a user's module that did not import; impls.Backend.unsupported words it
#: "NAME unavailable: ..."), or the case was not timed (pytest-benchmark disabled).
_RETRIED_SKIPS = re.compile(r"\S+ unavailable: |not timed ")
_GUARD_LIMIT = re.compile(r"--limit (\S+) s")
#: A paired_error of a partner that raised (bench_sweep.partner_call, PartnerFailed).
_PARTNER_FAILED = re.compile(r"\S+ failed: ")


#: ``partner`` of settled/done meaning "however the row was paired".
ANY_PARTNER = "*"


def settled(row: dict, limit: float | None = None, partner: str | None = ANY_PARTNER) -> bool:
    """Whether a resumed sweep keeps ``row`` instead of measuring its case again.

    Kept: ``ok`` rows, and skips the sweep would make again: a backend's declared gap (a
    feature, dtype or device it does not support, a problem outside its method, a
    NotImplementedError, impls.memory_budget's refusal) and the budget guard's skips, as
    long as this run's ``limit`` is not higher than the ``--limit`` they were skipped under
    (a guard skip's reason names it; a higher limit is the way to ask for those cases).
    Measured again: ``failed``, ``timeout`` and ``crashed`` rows, which measured nothing for
    a reason that may not recur (a kernel fixed since, a hang or crash that was the
    machine's or the driver's), and skips because the backend was unavailable or the case
    was not timed (_RETRIED_SKIPS). An ok row counts only if it was timed as a sweep with
    ``partner`` (its --paired-with name, None: unpaired) times it: a paired row's median is
    of rounds that followed the partner's, and a file's ratios should be of one kind. A row
    timed alone because the partner failed, or would have exceeded a lower --limit, is
    measured again by the same rules (its paired_error says which); one the partner
    refuses is kept."""
    status, reason = row.get("status"), row.get("reason") or ""
    if code_changed(row):  # "fix my kernel, rerun" measures the kernel as it is now
        return False
    if status == "ok":
        if partner == ANY_PARTNER:
            return True
        unpaired = row.get("paired_error") or ""
        return _timed_as(row, partner) and not _PARTNER_FAILED.match(unpaired) and (
            _guard_holds(unpaired, limit))
    if status != "skipped" or _RETRIED_SKIPS.match(reason):
        return False  # failed, timeout, crashed; or a skip that may not recur
    return not reason.startswith("budget guard:") or _guard_holds(reason, limit)


#: The repository: a row's code_file is relative to it when the file lies inside.
ROOT = Path(__file__).resolve().parents[1]


def code_changed(row: dict) -> bool:
    """Whether the file that defines the row's backend has changed since the row was timed
    (its code_file's digest is not the row's code). A file not found here (a results file
    from another machine or checkout) cannot tell, and does not count as changed."""
    path, code = row.get("code_file"), row.get("code")
    if not (path and code):
        return False
    found = ROOT / path
    try:
        stat = found.stat()
    except OSError:
        return False
    return _digest(str(found), stat.st_mtime_ns, stat.st_size) != code


def code_of(path: str) -> tuple[str, str] | tuple[None, None]:
    """(code_file, code) for a backend defined in ``path``: relative to the repository
    when inside it, so that another checkout of it reads the same rows as its own."""
    try:
        found = Path(path).resolve()
        stat = found.stat()
    except (OSError, TypeError):
        return None, None
    shown = found.relative_to(ROOT) if found.is_relative_to(ROOT) else found
    return str(shown), _digest(str(found), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    """sha1 of a file's bytes, 12 hex digits (keyed by mtime and size: read once per
    version, not once per row of a large results file)."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]


def _guard_holds(reason: str, limit: float | None) -> bool:
    """Whether a budget guard's verdict in ``reason`` holds under this run's ``limit``: it
    does unless the limit is higher than the --limit the reason names."""
    skipped_under = _GUARD_LIMIT.search(reason)
    if limit is None or skipped_under is None:
        return True
    try:  # compared as the reason writes it ({limit:g}): an unchanged limit reads equal
        return float(skipped_under.group(1)) >= float(f"{limit:g}")
    except ValueError:
        return True


def _timed_as(row: dict, partner: str | None) -> bool:
    """Whether an ok row was timed by a sweep with this ``--paired-with`` (None: none), as
    its paired_with says (rows from before the field: unpaired)."""
    return row.get("paired_with") == partner


def paired_chain(row: dict, peers: dict) -> list[dict] | None:
    """The rows whose paired ratios lead from ``row`` to one timed alone (the sweep's
    partner), ``row`` first and that one last, through ``peers`` (backend -> row of the
    same shape: auto is paired with the backend it ran, that one with torch); None where a
    row on the way is missing, not ok, or paired without its ratio."""
    rows, link = [], row
    while len(rows) <= len(peers):  # a chain visits each peer once
        if link is None or link.get("status") != "ok":
            return None
        rows.append(link)
        if not link.get("paired_backend"):
            return rows
        if not link.get("paired_ratio"):
            return None
        link = peers.get(link["paired_backend"])
    return None


def paired_speedup(row: dict, base: dict, peers: dict) -> dict | None:
    """``base``'s time over ``row``'s from paired ratios, with its 95% interval, or None
    where they cannot give it: both rows' :func:`paired_chain` (through ``peers``) must end
    at one row, the common scale (auto was paired with the backend it ran, that one with
    torch). The ratio is the product of the ratios the two chains do not share; its
    interval adds their reaches in log in quadrature, as independent errors do (auto
    against the backend it ran is its one paired ratio, whatever that backend did against
    torch); None when a link has no interval (under 6 rounds). Each side of the interval
    is added up apart: a paired ratio's interval is not symmetric about it (a direct link's
    is then its own, [16.9, 36.7] about 22.2 where a symmetric one read 15.1-32.8)."""
    peers = {**peers, row["backend"]: row, base["backend"]: base}
    mine, theirs = paired_chain(row, peers), paired_chain(base, peers)
    if not mine or not theirs or mine[-1] is not theirs[-1] or row is base:
        return None
    links = {r["backend"]: r for r in mine[:-1]}
    base_links = {r["backend"]: r for r in theirs[:-1]}
    apart = [r for n, r in {**links, **base_links}.items() if (n in links) != (n in base_links)]
    if not apart:
        return None
    ratio = math.exp(_log_speed(mine) - _log_speed(theirs))
    ci = None
    if all(r.get("paired_ci") for r in apart):
        # Per link, how far down and up its interval reaches in log; a link of the base's
        # chain divides, so its reach down is its interval's reach up.
        reach = [(math.log(r["paired_ratio"] / r["paired_ci"][0]),
                  math.log(r["paired_ci"][1] / r["paired_ratio"])) for r in apart]
        reach = [(up, down) if r["backend"] in base_links else (down, up)
                 for r, (down, up) in zip(apart, reach)]
        ci = (ratio * math.exp(-math.hypot(*(d for d, _ in reach))),
              ratio * math.exp(math.hypot(*(u for _, u in reach))))
    return {"ratio": ratio, "ci": ci}


def _log_speed(chain: list[dict]) -> float:
    """Log of a chain's speed over its last row's: > 0 is faster."""
    return sum(math.log(r["paired_ratio"]) for r in chain[:-1])


#: A time is in doubt beyond these: its rounds' IQR over NOISY of the median (where
#: torch.utils.benchmark warns), or the hypervisor's steal over STEAL_NOISY of the CPU
#: while it was timed (steady rounds of a starved VM are no steadier); a ratio of paired
#: rounds, when its 95% interval is wider than +-NOISY.
NOISY = 0.10
STEAL_NOISY = 0.10
#: CPUs other processes may keep busy while a case is timed before its row is in doubt
#: (the sweep's own supervisor polls, a little; a process holding a core is far over).
CONTENDED = 0.5


def in_doubt(row: dict) -> bool:
    """Whether a timed row's median is in doubt: its spread, steal (see NOISY), or other
    processes busy beside it (CONTENDED)."""
    return ((row.get("noise") or 0) > NOISY or (row.get("steal") or 0) > STEAL_NOISY
            or (row.get("others_cpu") or 0) > CONTENDED)


def paired_noisy(paired: dict) -> bool | None:
    """Whether a paired_speedup's interval reaches further than NOISY from its ratio, on
    either side; None without one."""
    if paired["ci"] is None:
        return None
    low, high = paired["ci"]
    return max(high / paired["ratio"], paired["ratio"] / low) - 1 > NOISY


def graph_noisy(row: dict, base: dict) -> bool | None:
    """Whether either CUDA-graph time's spread is over NOISY; None where a row lacks it."""
    spread = [r.get("graph_noise") for r in (row, base)]
    return None if None in spread else max(spread) > NOISY


def judged_speedup(row: dict, base: dict, peers: dict | None = None) -> dict:
    """:func:`speedup` with how far to trust it: ``ratio``, ``timing``, ``ci`` (the 95%
    interval, where paired ratios give one) and ``noisy`` (True: in doubt by the rule of
    its timing, see NOISY; None: its spread unknown; False: steady)."""
    ratio, timing = speedup(row, base, peers)
    if timing == "graph_median_s":
        return {"ratio": ratio, "timing": timing, "ci": None, "noisy": graph_noisy(row, base)}
    if timing == "paired_ratio":
        paired = paired_speedup(row, base, peers or {})
        return {"ratio": ratio, "timing": timing, "ci": paired["ci"],
                "noisy": paired_noisy(paired)}
    return {"ratio": ratio, "timing": timing, "ci": None,
            "noisy": in_doubt(row) or in_doubt(base)}


def speedup(row: dict, base: dict, peers: dict | None = None) -> tuple[float, str]:
    """``base``'s time over ``row``'s, two ok rows of one shape, direction and variant (> 1:
    ``row`` is faster), and which times gave it: CUDA-graph device times where both have
    one (a small GPU layer's wall clock is mostly launches); else paired ratios (sweep
    --paired-with), as the machine's drift between two cases cancels there
    (:func:`paired_speedup`, through ``peers``); else the medians."""
    if row.get("graph_median_s") and base.get("graph_median_s"):
        return base["graph_median_s"] / row["graph_median_s"], "graph_median_s"
    paired = paired_speedup(row, base, peers or {})
    if paired:
        return paired["ratio"], "paired_ratio"
    return base["median_s"] / row["median_s"], "median_s"


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


def seconds_apart(a: dict, b: dict) -> float | None:
    """Seconds between two rows' starts (their ``started``), or None where either lacks it."""
    try:  # now()'s format; "+0000" is not ISO to Python 3.10's fromisoformat
        times = [datetime.strptime(r["started"], "%Y-%m-%dT%H:%M:%S%z") for r in (a, b)]
        return abs((times[0] - times[1]).total_seconds())
    except (KeyError, TypeError, ValueError):
        return None


#: Beside the backend, layer and direction, what tells two rows apart (the key; the batch is
#: in its descriptor): a file that several sweeps appended to (resume matches on the key, so
#: a float64 or batch-8 run can follow a float32 batch-1 one in the same file) holds
#: several, and a summary must never pool them.
VARIANT_FIELDS = {"batch": lambda r: r.get("batch"),
                  "device": lambda r: r.get("device") or "cpu",
                  "dtype": lambda r: r.get("dtype") or "float32",
                  "tf32": lambda r: bool(r.get("tf32")),
                  "cache": lambda r: r.get("cache") or "warm",
                  "memory_format": lambda r: r.get("memory_format") or "contiguous"}


def varying(rows) -> set[str]:
    """The VARIANT_FIELDS that take more than one value among ``rows``."""
    rows = list(rows)
    return {f for f, get in VARIANT_FIELDS.items() if len({get(r) for r in rows}) > 1}


def variant(row: dict, fields: set[str]) -> str:
    """The row's batch, device, precision, cache mode and memory format, each only where
    ``fields`` (what varies in the summary at hand) names it, so a one-precision summary
    shows backends' names alone: "", "float64", "cuda float32 TF32", "batch 8 cold cache",
    "channels_last"."""
    get = {f: VARIANT_FIELDS[f](row) for f in VARIANT_FIELDS}
    parts = [f"batch {get['batch']}"] if "batch" in fields else []
    if "device" in fields:
        parts.append(get["device"])
    if fields & {"dtype", "tf32"}:
        parts.append(get["dtype"] + (" TF32" if get["tf32"] else ""))
    if "cache" in fields:
        parts.append(f"{get['cache']} cache")
    if "memory_format" in fields:
        parts.append(get["memory_format"])
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
        with open(self.path, "a+b") as f:
            end = f.seek(0, os.SEEK_END)
            if end and (f.seek(end - 1), f.read(1))[1] != b"\n":
                line = "\n" + line  # a line cut off by a kill: never glue a record onto it
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def size(self) -> int:
        """Bytes in the file now: where the records that a sweep starting now writes begin."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def records(self, since: int = 0) -> list[dict]:
        """Every record; with ``since`` (a byte offset, from :meth:`size`), those written
        from there on only (JSON lines; a ``.json`` report is read whole)."""
        if not self.path.exists():
            return []
        if self.path.suffix == ".json":
            return _report_records(json.loads(self.path.read_text(encoding="utf-8")))
        with open(self.path, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", errors="replace")
        out = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut off by a kill: the case reruns
                record = None
            # Keyed kinds without their key come from another tool or a hand edit: they
            # could not be merged or resumed, so they are not records at all.
            key = _KEYS.get(record.get("record")) if isinstance(record, dict) else None
            if isinstance(record, dict) and (key is None or key in record):
                out.append(record)
            else:  # cut off, or not JSON lines at all (a JSON report named .jsonl)
                where = f"{self.path}:{lineno}" if not since else f"{self.path}, byte " \
                    f"{since}+ line {lineno}"
                what = f"a {record['record']} record without its {key!r}" if key else \
                    "unreadable line"
                if (where, what) not in _WARNED:  # a file is read several times a command
                    _WARNED.add((where, what))
                    warnings.warn(f"{where}: {what} ignored", stacklevel=2)
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

    def done(self, since: int | None = None, limit: float | None = None,
             partner: str | None = ANY_PARTNER) -> set[str]:
        """Keys of the cases a sweep need not measure: each whose row (its last) is
        :func:`settled` under ``limit`` (this run's --limit; None: any) and ``partner``
        (its --paired-with; by default, any). With ``since``, the
        offset where this sweep began (:meth:`size`), also every case with a row written
        from there on, whatever its status: this sweep's own attempt at it, which a
        replacement child must not repeat (a hang would otherwise be retried until the
        supervisor gave up)."""
        done = {r["key"] for r in self.rows() if settled(r, limit, partner)}
        if since is not None:
            done |= {r["key"] for r in self.records(since) if r.get("record") == "case"}
        return done

    def conditions_differ(self, keys, threads: int, limit: float | None = None,
                          here: dict | None = None) -> str:
        """Why the rows of the problems of ``keys`` (any backend's: the report divides one by
        another) were measured under other conditions than ``threads`` torch threads on the
        machine ``here`` (machine.describe(): host, CPU, torch, GPU), or "" when they were
        not or do not say. Everything else that makes another number (dtype, device, batch,
        direction, cache mode, TF32) is in the key, so such rows are simply not matched; the thread
        count and the machine are not, and a sweep that reused them would divide this
        machine's times by another's, so a sweep refuses the file instead
        (benchmarks.sweep)."""
        # Every backend's rows of these problems: a report divides each backend's time by
        # torch's of the same problem in the file, whichever run measured either.
        problems, counts, others = {_problem(k) for k in keys}, {}, {}
        machines = {m["id"]: m for m in self.machines()}
        for r in self.rows():
            if _problem(r["key"]) not in problems or not settled(r, limit):
                continue
            if r.get("threads") not in (None, threads):
                counts[r["threads"]] = counts.get(r["threads"], 0) + 1
            differs = _machine_differs(machines.get(r.get("machine_id")), here)
            if differs:
                others[differs] = others.get(differs, 0) + 1
        if counts:
            found = ", ".join(f"{n} with {t}" for t, n in sorted(counts.items()))
            return (f"{self.path} has rows of these cases measured with another number of "
                    f"torch threads ({found}; this run pins {threads}, --threads)")
        if others:
            found = "; ".join(f"{n} where {why}" for why, n in others.items())
            return f"{self.path} has rows of these cases measured on another machine ({found})"
        return ""


def _problem(key: str) -> str:
    """A row key without its backend: the problem any backend's row of it measures."""
    return key.partition("|")[2]


#: What makes a machine record another machine's, as far as a kept row's time goes.
_SAME_MACHINE = (("host", "host"), ("cpu", "CPU"), ("torch", "torch"))


def _machine_differs(recorded: dict | None, here: dict | None) -> str:
    """How the machine record a row points to differs from ``here``, in words ("" when it
    does not, or either is unknown)."""
    if not recorded or not here:
        return ""
    pairs = [(word, recorded.get(k), here.get(k)) for k, word in _SAME_MACHINE]
    pairs.append(("GPU", (recorded.get("gpu") or {}).get("name"),
                  (here.get("gpu") or {}).get("name")))
    return ", ".join(f"{word} {a} (here {b})" for word, a, b in pairs
                     if a is not None and b is not None and a != b)


#: The ignored lines already warned of in this process, as (where, what).
_WARNED: set[tuple[str, str]] = set()


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
    out += [{"record": "plan", "shard": shard or None, "keys": keys}
            for shard, keys in sweep.get("plans", {}).items()]
    return out


def plans(results: list[ResultsFile]) -> dict[str, list[str]]:
    """What the sweeps that wrote these files set out to measure (their ``plan`` records),
    per shard ("1/4"; "" unsharded): every case key once, in order."""
    out: dict[str, dict[str, None]] = {}
    for res in results:
        for plan in res.of_kind("plan"):
            out.setdefault(plan.get("shard") or "", {}).update(dict.fromkeys(plan["keys"]))
    return {shard: list(keys) for shard, keys in out.items()}


def incomplete(planned: dict[str, list[str]], rows) -> list[str]:
    """What is missing from a set of results, in words (empty: nothing): planned cases
    without a row (a sweep interrupted or killed: the same command resumes it), and the
    shards of a sharded sweep whose files are not among them."""
    out = []
    have = {r["key"] for r in rows}
    keys = [k for shard_keys in planned.values() for k in shard_keys]
    missing = [k for k in keys if k not in have]
    if missing:
        out.append(f"incomplete: {len(missing)} of {len(keys)} planned cases have no row (an "
                   f"interrupted sweep: rerun the same command to resume), first: {missing[0]}")
    counts = {s.split("/")[1] for s in planned if "/" in s}
    for n in sorted(counts, key=int):
        absent = [f"{i}/{n}" for i in range(1, int(n) + 1) if f"{i}/{n}" not in planned]
        if absent:
            out.append(f"incomplete: shard {', '.join(absent)} of this {n}-shard sweep is not "
                       "among the files")
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
        # a key's last row wins; an entry of an earlier attempt at it never outlives it
        "benchmarks": [benchmarks[k] for k, r in rows.items()
                       if k in benchmarks and r.get("status") == "ok"],
        "datetime": now(),
        "version": first.get("pytest_benchmark"),
        "convbench": {"schema": SCHEMA, "kind": "conv2d-sweep", "created": now(),
                      "sources": [str(r.path) for r in results], "runs": runs,
                      "machines": machines, "rows": list(rows.values()),
                      "plans": plans(results)},
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

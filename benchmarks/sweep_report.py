"""What a sweep shows on the console, and ``python -m benchmarks merge`` for sharded sweeps.

Progress: one line per finished case as its row lands in the results file (read
incrementally, so a supervisor shows what the child wrote without talking to it), with an
estimate of the time left. Summary: per shape set, each backend's time relative to torch
(geometric mean over the shapes both ran) and the network's total (time x count, when every
shape ran). Merge: the rows of several result files (shards of a job array, in .jsonl or
.json form) into one report. The plots and HTML are reports/'s job, not this module's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

from benchmarks import machine, records, timer


class Progress:
    """Prints each new row of a results file once, as ``[done/total elapsed ~left] ...``.

    Counts this run's cases only: ``total`` is the cases without a row to keep (``kept``,
    from ResultsFile.done), and reading starts at ``offset``, where this run began (rows
    already in the file are not read again, so a resumed sweep never counts past its
    total)."""

    def __init__(self, cases, kept: set[str], offset: int = 0, stream=None,
                 retried: int = 0, changed: list[str] = ()):
        stream = stream or sys.stdout  # looked up now: a test's capture may have replaced it
        keys = {c.key for c in cases}
        self.keys = keys - set(kept)
        self.total, self.seen = len(self.keys), set()
        self.start, self.offset, self.stream = time.monotonic(), offset, stream
        resumed = len(keys) - self.total
        if resumed or retried:
            again = (f"; measuring the other {self.total}, {retried} of them again (their "
                     "rows measured nothing that stands: failed, timed out or crashed, "
                     "skipped as unavailable or untimed, or by the budget guard under a "
                     "lower --limit; or they were timed under another --paired-with, or "
                     "their backend's file has changed since; see records.settled)"
                     if retried else "")
            print(f"resuming: {resumed} of {len(keys)} cases already have a row{again}",
                  file=stream)
        if changed:
            print(f"measuring again the cases of backends whose code changed since their "
                  f"rows were timed: {', '.join(changed)}", file=stream)

    @property
    def done(self) -> int:
        return len(self.seen)

    def update(self, results: records.ResultsFile) -> None:
        """Print the rows appended since the last call (whole lines only)."""
        try:
            with open(results.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if (isinstance(row, dict) and row.get("record") == "case"
                    and row.get("key") in self.keys and row["key"] not in self.seen):
                self.seen.add(row["key"])
                print(self._line(row), file=self.stream, flush=True)

    def _line(self, row: dict) -> str:
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * max(self.total - self.done, 0) if self.done else 0
        head = (f"[{self.done:>{len(str(self.total))}}/{self.total} {_clock(elapsed)} "
                f"~{_clock(left)} left] {row['status']:<8} {row['backend']:<8} "
                f"{row['direction'] or 'forward':<16} {row['shape_set']} "
                f"{row['name'] or row['descriptor']}")
        if row["status"] == "ok":
            peak = row.get("fraction_of_peak")
            tail = (f"  {row['median_s'] * 1e3:.3g} ms  {row['gflops']:.1f} GFLOP/s"
                    + (f"  {peak:.0%} of peak" if peak is not None else "")
                    + "".join(f"  ({note})" for note in _doubts_of(row)))
        else:
            tail = f"  {(row['reason'] or '').splitlines()[0][:110] if row['reason'] else ''}"
        return head + tail


def _doubts_of(row: dict) -> list[str]:
    """A timed row's warnings in brief: its spread's (the reason's first word, as
    timer.noise_warning words it) and the hypervisor's steal."""
    out = []
    if (row.get("noise") or 0) > timer.NOISY:
        out.append(f"{(row['reason'] or 'noisy').split(':')[0]}: IQR {row['noise']:.0%} of "
                   "median")
    if (row.get("steal") or 0) > machine.STEAL_NOISY:
        out.append(f"stolen: {row['steal']:.0%} of the CPU")
    if (row.get("others_cpu") or 0) > records.CONTENDED:
        out.append(f"contended: other processes on {row['others_cpu']:.1f} CPUs")
    return out


def _clock(seconds: float) -> str:
    seconds = max(seconds, 0)
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def summarize(cases, results: records.ResultsFile, paths: dict, stream=None,
              shard: str | None = None) -> int:
    """Print counts, per-set ratios to torch and network totals; 1 if any case failed,
    timed out or crashed, or nothing was timed (unless this is one ``shard`` of a sweep:
    a slice may hold only skips while the sweep as a whole timed cases), else 0."""
    stream = stream or sys.stdout
    keys = {c.key for c in cases}
    rows = [r for r in results.rows() if r["key"] in keys]
    counts = defaultdict(int)
    for r in rows:
        counts[r["status"]] += 1
    print("\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), file=stream)
    for line in ratio_lines(rows):
        print(line, file=stream)
    for line in doubts(rows, results.machines()):
        print(f"warning: {line}", file=stream)
    for name, path in paths.items():
        if name != "heartbeat":
            print(f"{name:>8}: {path}", file=stream)
    bad = [r for r in rows if r["status"] in ("failed", "timeout", "crashed")]
    for r in bad:
        print(f"{r['status']}: {r['backend']} {r['descriptor']} {r.get('direction') or ''}: "
              f"{r['reason'][:300]}", file=stream)
    if rows and not bad and not counts["ok"] and not shard:  # as impls check: nothing timed
        reasons = sorted({r["reason"] for r in rows if r.get("reason")})
        print(f"error: nothing was timed: all {len(rows)} cases were skipped ("
              f"{'; '.join(reasons[:3])}{'; ...' if len(reasons) > 3 else ''})", file=stream)
        return 1
    return 1 if bad else 0


def doubts(rows: list[dict], machines: list[dict]) -> list[str]:
    """Reasons to distrust the numbers: a busy machine, a peak that cases beat, noise."""
    out = [w for w in (machine.busy_warning(m) for m in machines) if w]
    over = [r for r in rows if (r.get("fraction_of_peak") or 0) > 1.05]
    if over:
        by = defaultdict(int)
        for r in over:  # a dispatcher's row is its delegate's method
            by[r["backend"] + (f" (ran {r['ran']})" if r.get("ran") else "")] += 1
        out.append(f"{len(over)} cases ran above the measured GEMM peak in direct-"
                   f"convolution FLOPs ({', '.join(f'{b}: {n}' for b, n in sorted(by.items()))})"
                   ": a method that does fewer operations than it is credited with (FFT, "
                   "Winograd) can; for a direct one the peak was measured low (a busy "
                   "machine?), and only its fraction of peak is off: a sweep into another "
                   "--results file measures the peak again")
    out += _disturbed(rows, machines)
    noisy = [r for r in rows if r["status"] == "ok" and (r.get("noise") or 0) > timer.NOISY]
    if noisy:
        paired = sum(bool(r.get("paired_ci")) for r in noisy)
        out.append(f"{len(noisy)} of {sum(r['status'] == 'ok' for r in rows)} timed cases have "
                   "IQR > 10% of the median" + (
                       f" ({paired} of them paired: their ratios are judged by the 95% "
                       "interval of the paired ratio, paired_ci, not by this spread)"
                       if paired else ""))
    return out


#: What steal and contention mean for the rows they touched.
_SLOWER = ": their times are slower than this machine can do, however steady their rounds look"


def _disturbed(rows: list[dict], machines: list[dict]) -> list[str]:
    """What the rows themselves say of the machine while they ran: a load average that rose
    after the sweep started (the machine record has only the start's) beyond the sweep's
    own threads (a 2-thread sweep alone brings it near 2), steal time, and other processes
    busy beside a case (others_cpu)."""
    out, ok = [], [r for r in rows if r["status"] == "ok"]
    cpus = max((m.get("cpus_usable") or 1 for m in machines), default=1)
    busy = [r["loadavg_1min"] - (r.get("threads") or 0) for r in ok
            if machine.busy_warning({**r, "cpus_usable": cpus}, own_threads=r.get("threads") or 0)]
    if busy and not any(machine.busy_warning(m) for m in machines):
        out.append(f"load average up to {max(busy):.1f} on {cpus} CPUs beyond the sweep's own "
                   f"threads while {len(busy)} of {len(ok)} timed cases ran (loadavg_1min in "
                   "their rows): other processes were running; those times are slower and "
                   "noisier than this machine can do")
    stolen = [r["steal"] for r in ok if (r.get("steal") or 0) > machine.STEAL_NOISY]
    if stolen:
        out.append(f"{len(stolen)} of {len(ok)} timed cases lost over "
                   f"{machine.STEAL_NOISY:.0%} of the CPU (up to {max(stolen):.0%}) to other "
                   f"guests of the hypervisor (steal in their rows){_SLOWER}")
    contended = [r["others_cpu"] for r in ok if (r.get("others_cpu") or 0) > records.CONTENDED]
    if contended:
        out.append(f"{len(contended)} of {len(ok)} timed cases ran beside other processes "
                   f"that kept over {records.CONTENDED:g} CPUs busy (up to "
                   f"{max(contended):.1f}; others_cpu in their rows){_SLOWER}")
    return out


def ratio_lines(rows: list[dict], baseline: str = "torch") -> list[str]:
    """Per shape set, direction, variant (batch, device, precision, cache mode: where the
    rows hold several, records.variant) and backend: geometric-mean time ratio to
    ``baseline`` in the same direction and variant over the shapes both ran, and the
    network total (sum of median x count) where every shape ran. A backward time is never
    compared with a forward one, nor a float64 time with a float32 one."""
    groups = defaultdict(lambda: defaultdict(dict))
    shapes = defaultdict(set)
    fields = records.varying(rows)
    for r in rows:
        where = (r["shape_set"], r.get("direction") or "forward", records.variant(r, fields))
        shapes[where].add(r["descriptor"])
        if r["status"] == "ok":
            groups[where][r["backend"]][r["descriptor"]] = r
    lines = []
    for where, backends in groups.items():
        base = backends.get(baseline, {})
        lines.append(f"{' '.join(w for w in where if w)} ({len(shapes[where])} shapes):")
        width = max(11, *map(len, backends))
        for name, ran in sorted(backends.items()):
            lines.append(f"  {name:<{width}} ran {len(ran):>3}"
                         + _ratio(ran, base, name != baseline, baseline, backends)
                         + _total(ran, len(shapes[where])))
    return lines


def _ratio(ran: dict, base: dict, show: bool, baseline: str, backends: dict) -> str:
    common = [d for d in ran if d in base]
    if not (show and common):
        return ""
    peers = {d: {b: by_shape[d] for b, by_shape in backends.items() if d in by_shape}
             for d in common}  # for chains of paired ratios (records.speedup)
    speedup = math.exp(sum(math.log(records.speedup(ran[d], base[d], peers[d])[0])
                           for d in common) / len(common))
    doubtful = sum(records.judged_speedup(ran[d], base[d], peers[d])["noisy"] is not False
                   for d in common)
    doubt = f", {doubtful} of them in doubt (noise, steal, contention)" if doubtful else ""
    return f"  speedup over {baseline}: x{speedup:.3g} (geomean of {len(common)}{doubt})"


def _total(ran: dict, shapes: int) -> str:
    if len(ran) != shapes:
        return ""
    return f"  network total {sum(r['median_s'] * r['count'] for r in ran.values()) * 1e3:.4g} ms"


# --- python -m benchmarks merge FILE... --output OUT ---------------------------------------

def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "merge", help="merge sweep results (shards) into one report",
        description="Merge sweep result files (.jsonl, or .json reports) into one report "
                    "in pytest-benchmark's JSON format with every row under 'convbench'.")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=merge_cli)


def merge_cli(args: argparse.Namespace) -> int:
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"python -m benchmarks merge: error: no such file: {', '.join(missing)}",
              file=sys.stderr)
        return 2
    if args.output.suffix == ".jsonl":  # readers take .jsonl for JSON lines, one per record
        print(f"python -m benchmarks merge: error: {args.output} names JSON lines, but merge "
              "writes one JSON report (pytest-benchmark's format): name it .json",
              file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:  # said as lines, not as code
        warnings.simplefilter("always")
        doc = records.report([records.ResultsFile(f) for f in args.files])
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    rows = doc["convbench"]["rows"]
    for line in records.incomplete(doc["convbench"]["plans"], rows):
        print(f"warning: {line}", file=sys.stderr)
    if not rows:  # a typo'd or foreign file must not pass as an empty merge
        names = ", ".join(map(str, args.files))
        print(f"python -m benchmarks merge: error: no result rows in {names}", file=sys.stderr)
        return 1
    records.write_json(args.output, doc)
    print(f"{len(rows)} rows from {len(args.files)} file(s) -> {args.output}")
    for line in ratio_lines(rows):
        print(line)
    return 0

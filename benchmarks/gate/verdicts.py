"""From samples to verdicts, and the table a person reads.

Each gate benchmark ends as one row: how much slower the working tree is (head / base, with
its confidence interval), against which threshold, and the verdict. Only "slower" and
"error" fail the gate: an improvement is reported, an inconclusive interval is shown as such
(with its width, the cue to raise --budget), a case either side cannot run is listed with
the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from rich.markup import escape
from rich.table import Table

from benchmarks.gate import stats
from benchmarks.gate.cases import GateCase
from benchmarks.gate.measure import Samples

ERROR, SKIPPED, NEW = "error", "skipped", "not compared"
FAILING = (stats.SLOWER, ERROR)


@dataclass
class Row:
    case: GateCase
    verdict: str
    change: stats.Change | None = None
    base_s: float | None = None  # median seconds per call, for the reader
    head_s: float | None = None
    note: str = ""
    #: The values compared (base, head): paired per round, or stored and new samples.
    samples: tuple[list, list] | None = None
    #: torch's own change on this shape since a stored baseline, where it made a verdict
    #: inconclusive ("not comparable": the machine is in another state).
    drift: float | None = None
    #: Why a stored baseline could not judge this row (torch's drift, or a baseline of
    #: another kind of machine), where that turned a verdict inconclusive; "" otherwise.
    not_comparable: str = ""
    #: A "slower" row's second measurement, in fresh processes (see confirmed).
    again: Row | None = None


def _median(values) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


def _unrun(case: GateCase, base: Samples | None, head: Samples) -> Row | None:
    """The row of a case that one side could not run, or None when both ran."""
    if head.error and base is not None and (base.error or base.refusal):
        # Broken on both sides is no regression (README: only what base ran fails).
        return Row(case, NEW, note=f"neither tree runs it; working tree: {head.error}")
    if head.error:
        return Row(case, ERROR, note=f"working tree: {head.error}")
    if head.refusal and (base is None or base.refusal or base.error):  # nothing on either side
        return Row(case, SKIPPED, note=head.refusal)
    if base is None:
        return Row(case, NEW, note="not in the baseline")
    if head.refusal:  # ran before, refused now: a lost capability fails like a slowdown
        return Row(case, ERROR, note=f"working tree refuses what base ran: {head.refusal}")
    if base.error or base.refusal:
        return Row(case, NEW, note=f"base could not run it: {base.error or base.refusal}")
    if not head.call or not base.call:
        return Row(case, ERROR, note="no samples")
    return None


def paired_rows(cases, results, base: str, head: str, statistic: str = "time",
                confidence: float = stats.CONFIDENCE) -> list[Row]:
    """Rows from rounds that measured ``base`` and ``head`` together."""
    rows = []
    for case in cases:
        a, b = results[case.key][base], results[case.key][head]
        row = _unrun(case, a, b)
        if row is None:
            n = min(len(a.call), len(b.call))  # a side that failed mid-run has fewer
            base_values, head_values = ((s.ratio if statistic == "ratio" else s.call)[:n]
                                        for s in (a, b))
            change = stats.paired_change(base_values, head_values, confidence)
            row = Row(case, change.verdict(case.threshold), change, _median(a.call),
                      _median(b.call), samples=(base_values, head_values))
        rows.append(row)
    return rows


def baseline_rows(cases, baseline: dict, results, head: str,
                  confidence: float = stats.CONFIDENCE, other_kind: str = "") -> list[Row]:
    """Rows comparing ``head``'s ratios to torch with a stored baseline's. ``other_kind``:
    how the baseline's machine is of another kind than this one (baseline.other_kind);
    then no slower or faster verdict stands: how far ratios move between kinds is not
    known (between two hosts of this VM, up to 35%), so it is no regression to fail on."""
    rows = []
    for case in cases:
        stored = baseline["cases"].get(case.key)
        b = results[case.key][head]
        a = None if stored is None else Samples(call=stored["call_s"], ref=stored["ref_s"],
                                                refusal=stored.get("refusal", ""))
        row = _unrun(case, a, b)
        if row is None:
            change = stats.unpaired_change(a.ratio, b.ratio, confidence)
            row = Row(case, change.verdict(case.threshold), change, _median(a.call),
                      _median(b.call), note="ratio to torch vs baseline",
                      samples=(a.ratio, b.ratio))
            drift = _reference_drift(a.ref, b.ref, case.threshold, confidence)
            reach = drift and drift_reach(drift, change.factor)
            if (reach and row.verdict in (stats.SLOWER, stats.FASTER)
                    and abs(math.log(change.factor)) <= reach * abs(math.log(drift))):
                row.verdict, row.drift = stats.UNSURE, drift
                row.note = row.not_comparable = (
                    f"not comparable: torch itself is {drift - 1:+.0%} on this shape since "
                    f"the baseline, and the ratio's {change.factor - 1:+.0%} is within "
                    f"{reach:g}x that (the machine is in another state); rerun, or "
                    "re-record the baseline here")
            if other_kind and row.verdict in (stats.SLOWER, stats.FASTER):
                row.verdict = stats.UNSURE
                row.note = row.not_comparable = (
                    f"not comparable: the baseline is of another kind of machine "
                    f"({other_kind}); record one here (--record DIR)")
        rows.append(row)
    return rows


#: How far a machine in another state moved a ratio to torch, in multiples of torch's own
#: move (log scale), where the ratio moved the way torch did: a busy host here slowed torch
#: 10% on FFT's 13x13 shape and FFT 24%, its ratio +15%, about 1.5x. Beyond twice, the
#: ratio moved by more than the machine can explain: the verdict stands.
DRIFT_REACH = 2.0


def drift_reach(drift: float, factor: float) -> float:
    """How many times torch's own move (``drift``, now / baseline) the machine's state can
    move a ratio to torch by (``factor``), by the direction of each.

    The same way (torch slower and the ratio up): contention for memory, which slows a
    memory-bound backend more than compute-bound torch: DRIFT_REACH. The other way (torch
    faster and the ratio up): a faster clock, which speeds torch more than a backend that
    waits on memory, but a backend gains at worst nothing, so its ratio moves at most as
    far as torch did: 1. CI once saw the whole machine 27% faster minutes after a baseline
    (every other ratio within 7%) and, at twice that reach, excused unfold's injected +66%
    as the machine's state."""
    return DRIFT_REACH if (drift > 1) == (factor > 1) else 1.0


def _reference_drift(stored: list[float], now: list[float], threshold: float,
                     confidence: float) -> float | None:
    """torch's own change on this shape since the baseline (now / stored) where it moved
    beyond half the band, else None. Dividing by torch cancels a machine that is uniformly
    faster or slower; one in another state shifts the ratios too, which a verdict would
    blame on the code."""
    if len(stored) < 3 or len(now) < 3:
        return None
    change = stats.unpaired_change(stored, now, confidence)
    moved = change.verdict(threshold / 2) in (stats.SLOWER, stats.FASTER)
    return change.factor if moved else None


def _said(change: stats.Change) -> str:
    return f"{change.factor - 1:+.1%} [{change.low - 1:+.1%}, {change.high - 1:+.1%}]"


def confirmed(first: Row, again: Row, margin: float = 0.0) -> Row:
    """``first`` (a "slower" row) judged with ``again``, the same case measured once more in
    fresh worker processes: it stays slower unless that contradicts it (``stands`` with
    ``margin``), or the second measurement found the machine in another state than the
    baseline's (its ``not_comparable``: it cannot uphold anything then).

    Why: on a shared host a neighbour's memory traffic can slow a memory-bound backend for a
    whole run while compute-bound torch, timed beside it, does not feel it (CI once read
    unchanged winograd-f2 at +42% against its baseline over 62 rounds, after -5% to +2% in
    the three runs of the minutes before). A real slowdown is there every time it is
    measured; a state of the machine, or of one process, mostly is not."""
    if again.change is None:  # the confirmation could not run: the first verdict stands
        return replace(first, note=_joined(first.note, f"not measured again: {again.note}"))
    if not again.not_comparable and stands(again.change, margin):
        return replace(first, again=again, note=_joined(
            first.note, f"measured again in fresh processes: {_said(again.change)}"))
    return replace(first, verdict=stats.UNSURE, drift=again.drift, again=again,
                   not_comparable=again.not_comparable, note=_joined(
        f"slower at first, {_said(first.change)}, but {_said(again.change)} when measured "
        f"again in fresh processes: not a steady slowdown (the machine's or one process's "
        "state); rerun to be sure", again.not_comparable, first.note))


def stands(again: stats.Change, margin: float = 0.0) -> bool:
    """Whether a second measurement upholds a "slower" verdict: its interval lies above no
    change, by more than ``margin`` (it need not clear the band again: a true slowdown
    just past the band reads inside it half the time, and requiring that would halve the
    gate's power there). An interval that reaches no change, or below, contradicts the
    first: that is what a passing state of the machine leaves behind.

    ``margin``: 0 where both sides were timed in the same rounds (interleaved); against a
    stored baseline, the offset a fresh process alone can give unchanged code (its band
    before widening for a stored baseline: 5%, where ratios moved up to ~9% from process
    to process), else a process so offset upholds a false alarm."""
    return again.low > 1 + margin


def _joined(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def failed(rows: list[Row]) -> bool:
    return any(r.verdict in FAILING for r in rows)


def compared(rows: list[Row]) -> bool:
    """Whether any case was compared at all (a change estimated), whatever its verdict."""
    return any(r.change is not None for r in rows)


_STYLE = {stats.SLOWER: "bold red", ERROR: "bold red", stats.FASTER: "green",
          stats.UNSURE: "yellow"}


def _cells(row: Row, whole: bool = False) -> list[str]:
    """The row's cells; its note cut to a line for the terminal unless ``whole``."""
    c = row.change
    ms = lambda s: "" if s is None else f"{s * 1e3:.3g}"  # noqa: E731
    change = "" if c is None else f"{c.factor - 1:+.1%}"
    interval = "" if c is None else f"[{c.low - 1:+.1%}, {c.high - 1:+.1%}]"
    n = "" if c is None else str(c.samples)
    return [row.case.backend, row.case.shape, ms(row.base_s), ms(row.head_s), change,
            interval, f"±{row.case.threshold:.0%}", n, row.verdict,
            " ".join(row.note.split()) if whole else _short(row.note)]


def _short(note: str, limit: int = 90) -> str:
    """A note's first line, cut for the table (--json keeps it whole)."""
    line = note.strip().splitlines()[0] if note.strip() else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


HEADERS = ["backend", "shape", "base ms", "head ms", "change", "CI", "band", "n", "verdict",
           "note"]


#: Under the table: "head ms / base ms" and "change" may differ, by design.
CAPTION = ("base ms, head ms: each side's median per call. change, CI: the estimate the "
           "verdict judges against the band (of ratios paired within a round, or of ratios "
           "to torch against a baseline: see note), not the quotient of the two medians; a "
           "slower one is measured again, and stays slower only if that shows a slowdown "
           "too (the note gives the second estimate)")


def table(rows: list[Row], title: str) -> Table:
    t = Table(*HEADERS, title=title, caption=CAPTION)
    for row in rows:  # escaped: a note's "convbench[triton]" is text, not rich markup
        t.add_row(*map(escape, _cells(row)), style=_STYLE.get(row.verdict))
    return t


def markdown(rows: list[Row], title: str) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(HEADERS) + " |",
             "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r, whole=True)) + " |"
              for r in rows]  # the file keeps each note whole: the terminal's cut hid names
    return "\n".join([*lines, "", CAPTION]) + "\n"

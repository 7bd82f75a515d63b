"""How good is the gate on this machine? Its detection rate and false-alarm rate, measured.

    python -m benchmarks.gate.power [--runs 20] [--factor 1.05 --factor 1.10] [--quick]

Runs the gate again and again on unchanged code (the working tree against itself, exactly
as ``gate BASE`` runs when nothing changed) and with a known slowdown injected into one
backend of the working tree's worker (CONVBENCH_GATE_INJECT, a busy-wait proportional to
each call). A run *detects* when the victim is flagged slower; a *false alarm* is any other
benchmark flagged, in any run. Writes a Markdown summary (--out) for the README.

Why a script and not a test: the answer is a property of the machine and its load, measured
over many minutes; a CI assertion on it would fail on a busy runner without any code change.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from statistics import median_high

from benchmarks.gate import stats, verdicts
from benchmarks.gate.cli import Options, console, run

#: Confidence levels the same runs are judged at (the gate's default is stats.CONFIDENCE).
LEVELS = (0.99, 0.95)


def trial(opts: Options, victim: str, factor: float | None) -> dict:
    """One gate run, judged at each of LEVELS from the same samples: whether the victim was
    flagged slower, and which other benchmarks were (false alarms)."""
    inject = f"{victim}={factor}" if factor else ""
    with console.capture():  # the tables of 40 runs are not the point; the counts are
        rows, _ = run(replace(opts, inject=inject), same_tree=True)
    victims = [r for r in rows if r.case.backend == victim and r.change]
    out = {"factor": factor, "compared": sum(r.change is not None for r in rows),
           "victim_shapes": [r.case.shape for r in victims],
           "victim_estimates": [r.change.factor for r in victims]}
    for level in LEVELS:
        flagged = [r for r in rows if _verdict(r, level) in verdicts.FAILING]
        out[str(level)] = {
            "detected": any(r.case.backend == victim for r in flagged),
            # Before the re-measure: what the re-measure cost or saved, told apart from noise.
            "flagged_first": any(_first(r, level) == stats.SLOWER for r in victims),
            "detected_shapes": [r.case.shape for r in flagged if r.case.backend == victim],
            "false_alarms": [f"{r.case.backend} {r.case.shape}" for r in flagged
                             if not factor or r.case.backend != victim]}
    return out


def _first(row: verdicts.Row, level: float) -> str:
    """The row's verdict at ``level`` from its first measurement alone."""
    if row.samples is None:
        return row.verdict
    return stats.paired_change(*row.samples, confidence=level).verdict(row.case.threshold)


def _verdict(row: verdicts.Row, level: float) -> str:
    """The row's verdict at ``level``, as the gate would have given it: a slower verdict is
    upheld by the second measurement (verdicts.stands) judged at the same level. The runs
    are made at the lowest of LEVELS, so a row slower at any level was measured again (the
    re-measure's budget shared among those rows, which a gate at a higher level shares
    among fewer); a row without one (its worker did not restart) keeps its first verdict,
    as in the gate."""
    verdict = _first(row, level)
    again = row.again
    if (verdict == stats.SLOWER and again is not None and again.samples is not None
            and not verdicts.stands(stats.paired_change(*again.samples, confidence=level))):
        return stats.UNSURE
    return verdict


def summarize(trials: list[dict], opts: Options, victim: str, seconds: float) -> str:
    lines = [f"Gate power on this machine ({'quick' if opts.quick else 'full'} gate set, "
             f"budget {opts.budget or 'default'} s per run, band ±{opts.threshold or 0.05:.0%};"
             f" {seconds / 60:.0f} min in all). Each run judged at two confidence levels from "
             "the same samples.", "",
             f"| confidence | injected slowdown of {victim} | runs | detected | runs with a "
             "false alarm (another benchmark flagged) |", "|---|---|---|---|---|"]
    for level in LEVELS:
        for factor in dict.fromkeys(t["factor"] for t in trials):
            group = [t[str(level)] for t in trials if t["factor"] == factor]
            label = "none (unchanged code)" if not factor else f"{factor - 1:+.0%}"
            detected = "—" if not factor else f"{sum(g['detected'] for g in group)}/{len(group)}"
            alarms = sum(bool(g["false_alarms"]) for g in group)
            lines.append(f"| {level:.0%} | {label} | {len(group)} | {detected} | "
                         f"{alarms}/{len(group)} |")
    for factor in dict.fromkeys(t["factor"] for t in trials if t["factor"]):
        group = [t for t in trials if t["factor"] == factor]
        first = [sum(t[str(level)].get("flagged_first", False) for t in group)
                 for level in LEVELS]
        lines += ["", f"At {factor - 1:+.0%}, flagged by the first measurement alone (before "
                  "the re-measure): " + ", ".join(f"{n}/{len(group)} at {level:.0%}"
                                                   for n, level in zip(first, LEVELS)) + "."]
    estimates = [e for t in trials if t["factor"] for e in t["victim_estimates"]]
    if estimates:
        lines += ["", f"Estimated slowdown of the victim in the injected runs: median "
                  f"{median_high(estimates) - 1:+.1%}, range "
                  f"{min(estimates) - 1:+.1%} .. {max(estimates) - 1:+.1%}."]
    return "\n".join(lines + _per_shape(trials, victim)) + "\n"


def _per_shape(trials: list[dict], victim: str) -> list[str]:
    """Detection and estimates per benchmark of the victim, when it has several (a run
    counts as detected when any of them is flagged)."""
    lines = ["", f"| injected | {victim} benchmark | detected at 99% | at 95% | estimated "
             "slowdown: median (range) |", "|---|---|---|---|---|"]
    for factor in dict.fromkeys(t["factor"] for t in trials if t["factor"]):
        group = [t for t in trials if t["factor"] == factor and "victim_shapes" in t]
        for shape in dict.fromkeys(s for t in group for s in t["victim_shapes"]):
            hits = [sum(shape in t[str(level)]["detected_shapes"] for t in group)
                    for level in LEVELS]
            est = [e for t in group for s, e in zip(t["victim_shapes"], t["victim_estimates"])
                   if s == shape]
            lines.append(f"| {factor - 1:+.0%} | {shape} | {hits[0]}/{len(group)} | "
                         f"{hits[1]}/{len(group)} | {median_high(est) - 1:+.1%} "
                         f"({min(est) - 1:+.1%} .. {max(est) - 1:+.1%}) |")
    return lines if len(lines) > 3 else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gate.power", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--factor", type=float, action="append",
                   help="injected slowdown(s), repeatable; default 1.05 and 1.10")
    p.add_argument("--victim", default="unfold")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--budget", type=float)
    p.add_argument("--out", type=Path, default=Path("reports/out/gate_power.md"))
    p.add_argument("--no-unchanged", action="store_true",
                   help="only the injected runs (false alarms then come from the others)")
    args = p.parse_args(argv)
    # Run at the lowest level judged: every row slower at any level is then measured again,
    # as a gate run at that level would measure it (_verdict).
    opts = Options(quick=args.quick, budget=args.budget, confidence=min(LEVELS))
    factors = [*([] if args.no_unchanged else [None]), *(args.factor or [1.05, 1.10])]
    trials, start = [], time.perf_counter()
    for k in range(args.runs):
        for factor in factors:  # interleaved: a quiet or busy spell hits every factor
            trials.append(trial(opts, args.victim, factor))
            t = trials[-1]
            console.print(f"run {k + 1}/{args.runs} factor {factor or 1.0:g}: "
                          f"{ {lv: t[str(lv)] for lv in LEVELS} } "
                          f"estimates={[round(e, 3) for e in t['victim_estimates']]}")
    text = summarize(trials, opts, args.victim, time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(trials, indent=1) + "\n")
    console.print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

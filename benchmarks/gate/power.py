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

from benchmarks.gate import verdicts
from benchmarks.gate.cli import Options, console, run


def trial(opts: Options, victim: str, factor: float | None) -> dict:
    """One gate run; which benchmarks it flagged, split into the victim's and the others'."""
    inject = f"{victim}={factor}" if factor else ""
    with console.capture():  # the tables of 60 runs are not the point; the counts are
        rows, _ = run(replace(opts, inject=inject), same_tree=True)
    flagged = [r for r in rows if r.verdict in verdicts.FAILING]
    victim_rows = [r for r in rows if r.case.backend == victim and r.change]
    return {"factor": factor, "detected": any(r.case.backend == victim for r in flagged),
            "false_alarms": [f"{r.case.backend} {r.case.shape}" for r in flagged
                             if not factor or r.case.backend != victim],
            "victim_estimates": [r.change.factor for r in victim_rows],
            "compared": sum(r.change is not None for r in rows)}


def summarize(trials: list[dict], opts: Options, victim: str, seconds: float) -> str:
    clean = [t for t in trials if not t["factor"]]
    lines = [f"Gate power on this machine ({'quick' if opts.quick else 'full'} gate set, "
             f"budget {opts.budget or 'default'} s per run, band ±{opts.threshold or 0.05:.0%},"
             f" {opts.confidence:.0%} intervals; {seconds / 60:.0f} min in all):", "",
             "| injected slowdown of " + victim + " | runs | detected | false alarms "
             "(runs with any other benchmark flagged) |", "|---|---|---|---|"]
    for factor in dict.fromkeys(t["factor"] for t in trials):
        group = [t for t in trials if t["factor"] == factor]
        label = "none (unchanged code)" if not factor else f"{factor - 1:+.0%}"
        detected = "—" if not factor else f"{sum(t['detected'] for t in group)}/{len(group)}"
        alarms = sum(bool(t["false_alarms"]) for t in group)
        lines.append(f"| {label} | {len(group)} | {detected} | {alarms}/{len(group)} |")
    benchmarks = sum(t["compared"] for t in clean)
    wrong = sum(len(t["false_alarms"]) for t in clean)
    lines += ["", f"Unchanged runs: {wrong} of {benchmarks} benchmark comparisons flagged."]
    return "\n".join(lines) + "\n"


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
    args = p.parse_args(argv)
    opts = Options(quick=args.quick, budget=args.budget)
    factors = [None, *(args.factor or [1.05, 1.10])]
    trials, start = [], time.perf_counter()
    for k in range(args.runs):
        for factor in factors:  # interleaved: a quiet or busy spell hits every factor
            trials.append(trial(opts, args.victim, factor))
            t = trials[-1]
            console.print(f"run {k + 1}/{args.runs} factor {factor or 1.0:g}: "
                          f"detected={t['detected']} false alarms={t['false_alarms']} "
                          f"estimates={[round(e, 3) for e in t['victim_estimates']]}")
    text = summarize(trials, opts, args.victim, time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(trials, indent=1) + "\n")
    console.print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The report's correctness summary: max error per backend (and direction) per feature.

Why the report checks at all: a fast number from a wrong kernel is worse than none, so the
page that shows speed also shows how far each backend is from the float64 reference. The
comparisons are impls.checker's own (the same function as ``python -m impls check``), run
here over impls.cases.CASES in exact and random float32 under a time budget, or read from
``python -m impls check --format json`` files. What it must not do: hide a skip. Cases left
out for the budget, and backends that cannot run here (e.g. triton without CUDA), are rows
with their reasons.

Which backends: those in the rows of the results being reported, built-in names and users'
``package.module:function`` specs alike, and only those. Someone comparing sweeps reads the
correctness table as "are the numbers on this page right": a built-in that was never timed
answers nothing there and spends the budget, while a user's own backend is the one nothing
else in this repository checks. One that cannot be loaded now is a row saying why, and a
backend that fails is named in a warning at the top of the page (reports/build.py).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

#: Seconds of checking for all backends together (all four CPU backends take ~10 s).
BUDGET_S = 60.0


def backends_in(rows: list[dict]) -> list[str]:
    """The backends the result rows name (their ``backend`` field), in order of appearance."""
    return list(dict.fromkeys(r["backend"] for r in rows if r.get("backend")))


def run_checks(budget_s: float = BUDGET_S, device: str = "cpu",
               names: list[str] | None = None) -> list[dict]:
    """Each of ``names`` (default: every registered backend) x CASES x (exact, random) in
    float32, as checker results; a name that cannot be loaded is one skipped row saying why."""
    import torch

    from impls.cases import CASES
    from impls.checker import check_case

    out, deadline = [], time.monotonic() + budget_s
    for name in sorted(_names(names), key=_check_order):
        entry = _entry(name)
        if isinstance(entry, str) or not entry.available:
            out.append(_not_checked(name, entry if isinstance(entry, str) else entry.reason))
            continue
        for case in CASES:
            for mode in ("exact", "random"):
                if time.monotonic() > deadline:
                    out.append({"backend": name, "case": case.id, "mode": mode,
                                "dtype": "float32", "status": "skipped",
                                "features": sorted(case.features()) or ["plain"],
                                "max_error": None,
                                "reason": f"the report's correctness budget ({budget_s:g} s) "
                                          "was spent; run python -m impls check --backend "
                                          f"{name}"})
                    continue
                # Under the rows' name: a spec may load an entry registered under another.
                out.append({**check_case(entry, case, mode, torch.float32, device).to_dict(),
                            "backend": name})
    return out


def _names(names: list[str] | None) -> list[str]:
    """``names`` once each; None (a caller with no results) means every registered one."""
    import impls

    return list(dict.fromkeys(names)) if names is not None else [
        e.name for e in impls.backends()]


def _check_order(name: str) -> tuple:
    """A user's spec first: nothing else here checks it, while the built-ins have the test
    suite. Then torch (the baseline every speedup divides by); naive last: the slow
    reference loops are what a tight budget should cut, with the reason on every case it
    leaves out."""
    return (":" not in name, name != "torch", name == "naive")


def _entry(name: str):
    """The registry entry for ``name``, or why there is none here (an entry point that is
    not installed in this environment is not an error of the report)."""
    import impls

    try:
        return impls.get_backend(name)
    except ValueError:
        return (f"cannot load: no backend {name!r} is registered here (an entry point not "
                "installed in this environment?)")


def _not_checked(name: str, reason: str) -> dict:
    return {"backend": name, "case": "*", "mode": "*", "dtype": "float32",
            "status": "skipped", "features": ["all"], "max_error": None, "reason": reason}


def add_missing(results: list[dict], names: list[str], reason: str) -> list[dict]:
    """``results`` plus a skipped row for each of ``names`` they hold nothing for (e.g. a
    backend the ``--correctness`` files leave out): a backend on the page is never just
    absent from its correctness table."""
    have = {r["backend"] for r in results}
    return results + [_not_checked(n, reason) for n in names if n not in have]


def read_checks(paths: list[Path]) -> list[dict]:
    """Results from ``python -m impls check --format json`` files (one backend each)."""
    out = []
    for path in paths:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        out += doc.get("results", [])
    return out


def summary(results: list[dict]) -> list[dict]:
    """One row per backend and feature: counts by status, the max error, its bound, and
    the distinct reasons of skips and failures."""
    table = defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": 0, "max_error": None,
                                 "bound": None, "reasons": set()})
    for r in results:
        # `impls check --direction` results carry their direction (forward ones need not).
        direction = r.get("direction") or "forward"
        name = r["backend"] + ("" if direction == "forward" else f" [{direction}]")
        for feature in ["all", *[f for f in r.get("features") or [] if f != "all"]]:
            row = table[(name, feature)]
            status = r["status"] if r["status"] in ("passed", "skipped") else "failed"
            row["passed" if status == "passed" else status] += 1
            error = r.get("max_error") if r["status"] != "skipped" else None
            if error is not None and (row["max_error"] is None or error > row["max_error"]):
                row["max_error"], row["bound"] = error, r.get("bound")
            if r["status"] != "passed" and r.get("reason"):
                row["reasons"].add(f"{r['status']}: {r['reason']}")
    return [{"backend": b, "feature": f, **{k: v for k, v in row.items() if k != "reasons"},
             "reasons": _few(row["reasons"]) if f == "all" else []}
            for (b, f), row in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all",
                                                                     kv[0][1]))]


def _few(reasons: set[str], keep: int = 3) -> list[str]:
    """The first few distinct reasons and how many more (a Winograd backend refuses dozens
    of kernel shapes, each with its own message; the "all" row shows them in brief)."""
    ordered = sorted(reasons)
    more = len(ordered) - keep
    return ordered[:keep] + ([f"... and {more} more (python -m impls check --backend NAME)"]
                             if more > 0 else [])


def verdicts(results: list[dict], names: list[str]) -> dict[str, dict]:
    """Per backend of ``names``: ``failed``, ``passed`` and ``skipped`` counts over every
    direction checked, and ``verdict``: "failed" when any case failed (the report must not
    present its speed as a result), "unchecked" when none was compared (cannot load, cannot
    run here, out of budget) with the reasons, else "passed"."""
    out = {}
    for name in names:
        mine = [r for r in results if r["backend"] == name]
        passed = sum(r["status"] == "passed" for r in mine)
        skipped = sum(r["status"] == "skipped" for r in mine)
        failed = len(mine) - passed - skipped
        reasons = _few({r["reason"] for r in mine
                        if r["status"] == "skipped" and r.get("reason")})
        out[name] = {"failed": failed, "passed": passed, "skipped": skipped, "reasons": reasons,
                     "verdict": "failed" if failed else "passed" if passed else "unchecked"}
    return out


def verdict_text(name: str, v: dict) -> str:
    """One line a reader can act on, naming the backend."""
    checked = v["failed"] + v["passed"]
    if v["verdict"] == "failed":
        return (f"{name} FAILED the correctness check on {v['failed']} of {checked} cases "
                f"compared ({v['skipped']} skipped): its times and speedups here are of "
                "wrong answers")
    if v["verdict"] == "unchecked":
        return f"{name}: not checked for correctness: {'; '.join(v['reasons']) or 'no cases'}"
    return f"{name}: passed all {checked} cases compared ({v['skipped']} skipped)"

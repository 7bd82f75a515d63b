"""The report's correctness summary: max error per backend (and direction) per feature.

Why the report checks at all: a fast number from a wrong kernel is worse than none, so the
page that shows speed also shows how far each backend is from the float64 reference. The
comparisons are impls.checker's own (the same function as ``python -m impls check``), run
here over impls.cases.CASES in exact and random float32 under a time budget, or read from
``python -m impls check --format json`` files. What it must not do: hide a skip. Cases left
out for the budget, and backends that cannot run here (e.g. triton without CUDA), are rows
with their reasons.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

#: Seconds of checking for all backends together (all four CPU backends take ~10 s).
BUDGET_S = 60.0


def run_checks(budget_s: float = BUDGET_S, device: str = "cpu") -> list[dict]:
    """Every available backend x CASES x (exact, random) in float32, as checker results."""
    import torch

    import impls
    from impls.cases import CASES
    from impls.checker import check_case

    out, deadline = [], time.monotonic() + budget_s
    # torch first (the baseline), naive last: the slow reference loops are what a tight
    # budget should cut, with the reason on every case it leaves out.
    for entry in sorted(impls.backends(), key=lambda e: (e.name != "torch", e.name == "naive")):
        if not entry.available:
            out.append({"backend": entry.name, "case": "*", "mode": "*", "dtype": "float32",
                        "status": "skipped", "features": ["all"], "max_error": None,
                        "reason": entry.reason})
            continue
        for case in CASES:
            for mode in ("exact", "random"):
                if time.monotonic() > deadline:
                    out.append({"backend": entry.name, "case": case.id, "mode": mode,
                                "dtype": "float32", "status": "skipped",
                                "features": sorted(case.features()) or ["plain"],
                                "max_error": None,
                                "reason": f"the report's correctness budget ({budget_s:g} s) "
                                          "was spent; run python -m impls check --backend "
                                          f"{entry.name}"})
                    continue
                out.append(check_case(entry, case, mode, torch.float32, device).to_dict())
    return out


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

"""The report's correctness summary: max error per backend (and direction) per feature.

Why the report checks at all: a fast number from a wrong kernel is worse than none, so the
page that shows speed also shows how far each backend is from the float64 reference. The
comparisons are impls.checker's own (the same function as ``python -m impls check``), run
here over impls.cases.CASES in exact and random fill, in each dtype and direction the
results timed the backend in, under a time budget and in a child process (a backend that
hangs or crashes costs its case, not the report), or read from ``python -m impls check
--format json`` files. What it must not do: hide a skip. Cases left
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
from collections import defaultdict
from pathlib import Path

from benchmarks.records import VARIANT_FIELDS

#: Seconds of checking for all backends together (all four CPU backends take ~10 s).
BUDGET_S = 60.0


def backends_in(rows: list[dict]) -> list[str]:
    """The backends the result rows name (their ``backend`` field), in order of appearance."""
    return list(dict.fromkeys(r["backend"] for r in rows if r.get("backend")))


def run_checks(budget_s: float = BUDGET_S, device: str = "cpu",
               names: list[str] | None = None, rows: list[dict] | None = None) -> list[dict]:
    """Each of ``names`` (default: every registered backend) x CASES x (exact, random), on
    every device, in every dtype (and TF32 setting) and direction the result ``rows`` timed
    it in (float32 forward on ``device`` without rows), as checker results; a name that
    cannot be loaded, or rows timed on a device this machine lacks (a GPU sweep's results
    read on a laptop), is one skipped row saying why: never a check on another device
    passed off as one of the times shown.

    The comparisons run in a child process, as the sweep's cases do: a backend that hangs or
    crashes must cost its case (CASE_TIMEOUT_S at most), never the report. A case the child
    dies on is an error row; the next child resumes after it."""
    plan, out = [], []
    for name in sorted(_names(names), key=_check_order):
        entry = _entry(name)
        if isinstance(entry, str) or not entry.available:
            reason = entry if isinstance(entry, str) else entry.reason
            # Timed on a device this machine lacks (triton's rows of a GPU sweep): where to
            # check it, as for a backend that loads.
            elsewhere = [d for d, _, _ in _timed_in(rows, name, device) if _device_missing(d)]
            out.append(_not_checked(name, reason + "".join(
                f"; check it there: python -m impls check --backend {name} --device {d}"
                for d in dict.fromkeys(elsewhere))))
            continue
        for where, directions in _timed_in(rows, name, device).items():
            missing = _device_missing(where[0])
            if missing:
                out.append(_not_checked(name, f"timed on {where[0]}, {missing}: check it there "
                                              f"(python -m impls check --backend {name} "
                                              f"--device {where[0]})", where[0]))
            else:
                plan += _plan(name, where, directions)
    # Every backend's forward before any gradient: a tight budget should cut the backward
    # checks, not leave a backend's forward times unverified.
    plan.sort(key=lambda item: item[1] != "forward")
    # And each backend's first comparison in each dtype before everything else, outside the
    # budget: however tight it is, the report says something of every number it shows.
    heads, seen = [], set()
    for item in plan:
        name, _, dtype, _, _, where, tf32 = item
        if (name, dtype, where, tf32) not in seen:
            seen.add((name, dtype, where, tf32))
            heads.append(item)
    plan = heads + [item for item in plan if item not in heads]
    return out + _supervise(plan, budget_s, guaranteed=len(heads))


#: Seconds one comparison may take before its child is killed (the slowest, naive's loops on
#: the largest case, takes ~3 s here).
CASE_TIMEOUT_S = 20.0


def _timed_in(rows: list[dict] | None, name: str, device: str = "cpu",
              ) -> dict[tuple[str, str, bool], list[str]]:
    """{(device type, dtype, TF32): directions} that ``rows`` timed ``name`` in: what the
    report's times are of, and only that (float32 forward on ``device`` without rows)."""
    get = VARIANT_FIELDS
    timed: dict[tuple[str, str, bool], set[str]] = {}
    for r in rows or []:
        if r.get("backend") == name and r.get("status") == "ok":
            dtype = get["dtype"](r)
            where = (get["device"](r).split(":")[0], dtype, get["tf32"](r) and dtype == "float32")
            timed.setdefault(where, set()).add(r.get("direction") or "forward")
    return {where: sorted(d, key=lambda d: (d != "forward", d))
            for where, d in sorted(timed.items())} or {(device, "float32", False): ["forward"]}


def _device_missing(device: str) -> str:
    """Why this machine cannot run on ``device`` (a device type), or ""."""
    import torch

    if device == "cpu":
        return ""
    if device == "cuda":
        return "" if torch.cuda.is_available() else "and this machine has no CUDA device"
    return "a device the report does not check on"


def _plan(name: str, where: tuple[str, str, bool], directions: list[str]) -> list[tuple]:
    from impls.cases import CASES

    device, dtype, tf32 = where
    return [(name, direction, dtype, case.id, mode, device, tf32) for direction in directions
            for case in CASES for mode in ("exact", "random")]


def _supervise(plan: list[tuple], budget_s: float, guaranteed: int = 0) -> list[dict]:
    """Run ``plan`` in children (impls.isolated: one stuck on a case is killed); the items
    the budget leaves out are skipped rows saying so. The first ``guaranteed`` items run
    whatever the budget."""
    from impls import isolated

    items = [[*item, 0] for item in plan]  # seed 0, as impls check's default
    done = isolated.run(items, CASE_TIMEOUT_S, budget_s, guaranteed)
    return done + [isolated.row(item, "skipped", f"{BUDGET_SPENT} ({budget_s:g} s) was "
                                f"spent; run python -m impls check --backend {item[0]}")
                   for item in items[len(done):]]


#: How a comparison the budget left out begins its reason (verdicts count them).
BUDGET_SPENT = "the report's correctness budget"


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


def _not_checked(name: str, reason: str, device: str = "*") -> dict:
    return {"backend": name, "case": "*", "mode": "*", "dtype": "*", "device": device,
            "status": "skipped", "features": ["all"], "max_error": None, "reason": reason}


def add_missing(results: list[dict], names: list[str], reason: str) -> list[dict]:
    """``results`` plus a skipped row for each of ``names`` they hold nothing for (e.g. a
    backend the ``--correctness`` files leave out): a backend on the page is never just
    absent from its correctness table."""
    have = {r["backend"] for r in results}
    return results + [_not_checked(n, reason) for n in names if n not in have]


def add_uncovered(results: list[dict], rows: list[dict], names: list[str]) -> list[dict]:
    """``results`` plus a not-checked row for each setting (device, dtype, TF32) and
    direction the ``rows`` timed a backend of ``names`` in that no comparison of the
    ``results`` covers: a review's --correctness file of float64 weight gradients read as
    "passed" over float32 forward times."""
    out = list(results)
    for name in names:
        covered = {(_device_type(r), r.get("dtype"), bool(r.get("tf32")),
                    r.get("direction") or "forward")
                   for r in results if r["backend"] == name and r["status"] != "skipped"}
        for (device, dtype, tf32), directions in _timed_in(rows, name).items():
            for direction in directions:
                if (device, dtype, tf32, direction) not in covered:
                    setting = f"{dtype}{' TF32' if tf32 else ''} {direction} on {device}"
                    out.append(_not_checked(name, f"timed in {setting}, which the "
                                                  "--correctness files did not check "
                                                  f"(python -m impls check --backend {name} "
                                                  f"--dtype {dtype} --direction {direction} "
                                                  f"--device {device} --format json)", device))
    return out


def _device_type(result: dict) -> str:
    return (result.get("device") or "cpu").split(":")[0]


def read_checks(paths: list[Path]) -> list[dict]:
    """Results from ``python -m impls check --format json`` files (one backend each)."""
    out = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"--correctness {path}: {exc}") from exc
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list) or not all(
                isinstance(r, dict) and {"backend", "status"} <= r.keys() for r in results):
            raise ValueError(f"--correctness {path}: not the output of python -m impls check "
                             "--format json (an object whose \"results\" list the "
                             "comparisons)")
        out += results
    return out


def summary(results: list[dict]) -> list[dict]:
    """One row per backend and feature: counts by status, the max error, the error nearest
    its bound with that bound (the largest error/bound; bounds differ by element and case,
    so the max error's own bound says little), and the distinct reasons of skips and
    failures."""
    table = defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": 0, "max_error": None,
                                 "error": None, "bound": None, "reasons": set()})
    for r in results:
        # `impls check --direction` results carry their direction (forward ones need not).
        direction, dtype = r.get("direction") or "forward", r.get("dtype") or "float32"
        device = _device_type(r)
        name = (r["backend"] + ("" if device in ("cpu", "*") else f" {device}")
                + ("" if dtype in ("float32", "*") else f" {dtype}")
                + (" TF32" if r.get("tf32") else "")
                + ("" if direction == "forward" else f" [{direction}]"))
        for feature in ["all", *[f for f in r.get("features") or [] if f != "all"]]:
            row = table[(name, feature)]
            status = r["status"] if r["status"] in ("passed", "skipped") else "failed"
            row["passed" if status == "passed" else status] += 1
            if r["status"] != "skipped" and r.get("max_error") is not None:
                _worse(row, r)
            if r["status"] != "passed" and r.get("reason"):
                row["reasons"].add(f"{r['status']}: {r['reason']}")
    return [{"backend": b, "feature": f, **{k: v for k, v in row.items() if k != "reasons"},
             "reasons": _few(row["reasons"]) if f == "all" else []}
            for (b, f), row in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all",
                                                                     kv[0][1]))]


def _worse(row: dict, result: dict) -> None:
    """Fold one comparison's errors into its summary row. Results written before the
    ``error`` field (the error at the bound's element) fall back to max_error."""
    from impls.checker import share_of_bound

    error, bound = result.get("error", result["max_error"]), result.get("bound") or 0.0
    row["max_error"] = max(result["max_error"], row["max_error"] or 0.0)
    if row["error"] is None or share_of_bound(error, bound) > share_of_bound(row["error"],
                                                                             row["bound"]):
        row["error"], row["bound"] = error, bound


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
    run here, out of budget, none finished in its time limit) with the reasons, else
    "passed"."""
    from impls import isolated

    out = {}
    for name in names:
        mine = [r for r in results if r["backend"] == name]
        # Where no comparison finished, there was no answer, right or wrong: a backend
        # slower than CASE_TIMEOUT_S on every case is unchecked, not failed (its sweep
        # rows say it is slow). One that hangs on some cases and answers others fails.
        slow = [r for r in mine if r["status"] != "skipped"]
        if not all(r["status"] == "error" and isolated.unfinished(r.get("reason"))
                   for r in slow):
            slow = []
        elif slow:
            mine = [r for r in mine if r["status"] == "skipped"]
        passed = sum(r["status"] == "passed" for r in mine)
        skipped = sum(r["status"] == "skipped" for r in mine)
        failed = len(mine) - passed - skipped
        errors = [r.get("reason") or "" for r in mine if r["status"] == "error"]
        reasons = _few({r["reason"] for r in mine
                        if r["status"] == "skipped" and r.get("reason")})
        if slow:
            reasons.insert(0, f"{len(slow)} comparisons did not finish in their time limit "
                              f"(first: {slow[0].get('reason')})")
        # Whole settings left out (a device this machine lacks): a pass must still say so.
        left_out = _few({r["reason"] for r in mine if r["status"] == "skipped"
                         and r.get("case") == "*" and r.get("reason")})
        bad = [r for r in mine if r["status"] not in ("passed", "skipped")]
        cut = sum(r["status"] == "skipped" and (r.get("reason") or "").startswith(BUDGET_SPENT)
                  for r in mine)
        out[name] = {"failed": failed, "passed": passed, "skipped": skipped, "reasons": reasons,
                     "left_out": left_out, "cut": cut, "repro": repro(bad[0]) if bad else "",
                     "errors": len(errors), "first_error": errors[0] if errors else "",
                     "verdict": "failed" if failed else "passed" if passed else "unchecked"}
    return out


def repro(result: dict) -> str:
    """The command that reruns one comparison of impls check's JSON: its CaseResult's."""
    from impls.backward import result_from_dict

    return result_from_dict(result).command()


def verdict_text(name: str, v: dict) -> str:
    """One line a reader can act on, naming the backend."""
    checked = v["failed"] + v["passed"]
    errors = v.get("errors", 0)
    wrong = v["failed"] - errors
    if v["verdict"] == "failed":
        what = [f"wrong answers on {wrong}"] if wrong else []
        if errors:  # raised, hung or crashed: no answer to call wrong
            what.append(f"no answer on {errors} (raised, hung or crashed; first: "
                        f"{v.get('first_error', '')[:160]})")
        return (f"{name} FAILED the correctness check: {' and '.join(what)} of {checked} "
                f"cases compared ({v['skipped']} skipped): its times and speedups here are "
                + ("of wrong answers" if wrong else "of calls that do not all work")
                + (f"; rerun the first: {v['repro']}" if v.get("repro") else ""))
    if v["verdict"] == "unchecked":
        return f"{name}: not checked for correctness: {'; '.join(v['reasons']) or 'no cases'}"
    left_out = "; ".join(v.get("left_out") or [])
    return (f"{name}: passed all {checked} cases compared ({v['skipped']} skipped)"
            + (f"; not checked: {left_out}" if left_out else ""))

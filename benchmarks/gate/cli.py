"""``python -m benchmarks gate``: the command, its modes, and the self-test.

    gate [BASE]                BASE (default: the merge base with main) against the working
                               tree, both measured now, interleaved
    gate --baseline FILE|DIR   the working tree against stored samples (CI: no BASE to
                               build); in a directory, the file of this kind of machine
    gate --save FILE|DIR       also store the working tree's samples as a baseline
    gate --record FILE|DIR     only measure the working tree and store it as a baseline
                               (in a directory: a file named for this kind of machine)
    gate --self-test           the gate must pass unchanged code and fail a 1.5x slowdown,
                               interleaved, and against a baseline it records first unless
                               the machine's state moved (at least one stored must judge)

Exit status: 0 no benchmark slower beyond its band, 1 some benchmark slower (or failing on
the working tree where base ran it), 2 bad usage or a tree that cannot be measured (also:
no benchmark compared, or none measured for --record).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from benchmarks.gate import baseline as store
from benchmarks.gate import stats, verdicts
from benchmarks.gate.cases import DEFAULT_THRESHOLD, gate_cases
from benchmarks.gate.measure import Worker, WorkerError, checkout, git, run_rounds
from benchmarks.gate.worker import parse_inject
from benchmarks.machine import busy_warning
from impls.cli_types import positive_fraction, positive_seconds, probability

#: Seconds of timed rounds: the full gate, and the quick mode CI runs.
BUDGET_S, QUICK_BUDGET_S = 90.0, 30.0
#: The share of the budget spent measuring a "slower" verdict again before it fails.
CONFIRM_SHARE = 0.5
#: Built-in bands are this much wider against a stored baseline (see cases.gate_cases).
BASELINE_BAND_SCALE = 2.0
#: The backend the self-test slows down, and by how much.
SELF_TEST_VICTIM, SELF_TEST_FACTOR = "unfold", 1.5

#: Wide enough for the table when stdout is a file or a CI log (rich would assume 80).
console = Console(width=None if Console().is_terminal else 160)


@dataclass
class Options:
    base: str | None = None
    baseline: Path | None = None
    save: Path | None = None
    quick: bool = False
    backends: list[str] | None = None
    threshold: float | None = None
    bands: dict[str, float] = field(default_factory=dict)
    budget: float | None = None
    confidence: float = stats.CONFIDENCE
    statistic: str = "time"
    inject: str = ""
    device: str = "cpu"
    markdown: Path | None = None
    json: Path | None = None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "gate", help="fail on a statistically significant slowdown against BASE or a baseline",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", nargs="?", help="git ref (default: merge base of HEAD and main)")
    p.add_argument("--baseline", type=Path, metavar="FILE|DIR",
                   help="compare with this stored baseline instead (a directory: the one "
                        "recorded on this kind of machine)")
    p.add_argument("--save", type=Path, metavar="FILE|DIR",
                   help="store the working tree's samples here (a directory: a file named "
                        "for this kind of machine)")
    p.add_argument("--record", type=Path, metavar="FILE|DIR",
                   help="measure the working tree alone and store it here (no comparison; "
                        "a directory: a file named for this kind of machine)")
    p.add_argument("--quick", action="store_true", help="one shape per backend, 30 s budget")
    p.add_argument("--backend", action="append", help="repeatable; default: the gate set's")
    p.add_argument("--threshold", type=positive_fraction,
                   help=f"the default noise band (fraction, default {DEFAULT_THRESHOLD})")
    p.add_argument("--band", action="append", default=[], metavar="NAME=FRACTION",
                   help="a backend's or case key's own band, e.g. fft=0.08 (repeatable)")
    p.add_argument("--budget", type=positive_seconds, help="seconds of timed rounds (default "
                   f"{BUDGET_S:g}, quick {QUICK_BUDGET_S:g})")
    p.add_argument("--confidence", type=probability, default=stats.CONFIDENCE,
                   help=f"of each change's interval (default {stats.CONFIDENCE:g})")
    p.add_argument("--statistic", choices=("time", "ratio"), default="time",
                   help="paired mode: compare per-call times (default: the rounds already "
                   "pair them in time; half the interval width of ratios) or ratios to torch")
    p.add_argument("--inject", default="", metavar="NAME=FACTOR",
                   help="test only: make the working tree's backend NAME FACTOR times slower")
    p.add_argument("--device", default="cpu")
    p.add_argument("--markdown", type=Path, help="also write the table as Markdown")
    p.add_argument("--json", type=Path, help="also write every row as JSON")
    p.add_argument("--self-test", action="store_true",
                   help="check that the gate passes unchanged code and fails a 1.5x slowdown")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        bands = dict(_band(text) for text in args.band)
        opts = Options(args.base, args.baseline, args.save, args.quick, args.backend,
                       args.threshold, bands, args.budget, args.confidence, args.statistic,
                       args.inject, args.device, args.markdown, args.json)
        _check_names(opts)
        _check_setting(opts, base_mode=not (opts.baseline or args.record or args.self_test))
        if opts.baseline:
            opts.baseline = _pick_baseline(opts)
        if opts.save:  # a directory, as for --record: this machine kind's file in it
            opts.save = _record_path(opts.save, opts.device)
        if args.self_test:
            return self_test(opts)
        if args.record:
            record(replace(opts, save=_record_path(args.record, opts.device)))
            return 0
        rows, title = run(opts)
    except (ValueError, RuntimeError) as exc:  # bad ref, bad file, a tree that won't start,
        console.print(f"[red]gate: {exc}[/red]")  # a backend in neither tree (a typo)
        return 2
    return 1 if verdicts.failed(rows) else 0 if verdicts.compared(rows) else 2


def _check_setting(opts: Options, base_mode: bool) -> None:
    """What would fail or mislead only after the measuring, refused before it: a CUDA
    device torch does not see, a --markdown/--json path that cannot be written, and in BASE
    mode a user's backend from outside this repository (both trees would load the same
    package, and its code would "pass" against itself)."""
    from impls.frontend import missing_device

    missing = missing_device(opts.device)
    if missing:
        raise ValueError(f"--device {opts.device}, but {missing}")
    for flag, path in (("--markdown", opts.markdown), ("--json", opts.json)):
        if path is not None and not os.access(path.parent, os.W_OK):
            raise ValueError(f"{flag} {path}: cannot write in {path.parent}")
    if not base_mode:
        return
    repo = Path(git("rev-parse", "--show-toplevel")).resolve()
    for spec in opts.backends or []:
        origin = _defined_in(spec)
        if origin is None:
            continue  # unknown or not loadable: the workers say why
        if repo not in origin.parents:
            raise ValueError(
                f"--backend {spec}: both trees would load the same {origin} (BASE is built "
                "from this repository only), so its code would be compared with itself; "
                "record a baseline before your change (--record DIR) and compare after "
                "(--baseline DIR)")
        ref, path = opts.base or default_base(repo), origin.relative_to(repo).as_posix()
        try:
            git("cat-file", "-e", f"{ref}:{path}", cwd=repo)
        except RuntimeError:
            raise ValueError(
                f"--backend {spec}: {path} is not in BASE {ref} (untracked, or added since), "
                "so BASE has no code of its own to compare: its worker would load this "
                "tree's copy, or nothing; commit it on BASE, or record a baseline before "
                "your change (--record DIR) and compare after (--baseline DIR)") from None


def _defined_in(spec: str) -> Path | None:
    """The file of the module ``spec`` loads its backend from (a "module:function"'s module,
    an entry point's, a built-in's), or None where it has none: a name without a colon
    went unchecked, so an installed package's entry point passed BASE mode against
    itself."""
    import importlib.util

    from impls.registry import source_module

    try:
        found = importlib.util.find_spec(source_module(spec) or "")
    except (ImportError, ValueError):
        return None  # the worker says why it cannot load
    return Path(found.origin).resolve() if found and found.origin else None


def _check_names(opts: Options) -> None:
    """A --band or --inject name that names nothing the gate measures is a typo: refused
    (it used to be ignored, so a misspelt injection "passed")."""
    cases, _ = _plan(opts)
    names = {c.backend for c in cases} | {c.key for c in cases}
    for option, given in (("--band", opts.bands), ("--inject", parse_inject(opts.inject))):
        unknown = sorted(set(given) - names)
        if unknown:
            raise ValueError(f"{option} {', '.join(unknown)}: not a backend or case the gate "
                             f"measures ({', '.join(sorted({c.backend for c in cases}))})")


def _pick_baseline(opts: Options) -> Path:
    """--baseline's file (in a directory, the one of this kind of machine), said aloud."""
    path, why = store.pick(opts.baseline, _machine(opts.device))
    if why:
        console.print(f"baseline: {path} ({why})")
    return path


def _record_path(path: Path, device: str) -> Path:
    """Where --record writes: the file given (NAME.json), or in a directory this machine
    kind's file; a directory that does not exist yet is made, so that `--record baselines`
    on a fresh checkout does not write a file named "baselines"."""
    if not path.is_dir() and (path.suffix == ".json" or path.exists()):
        return path
    path.mkdir(parents=True, exist_ok=True)
    return path / store.kind_name(_machine(device))


def _band(text: str) -> tuple[str, float]:
    name, _, value = text.rpartition("=")
    try:
        return name, positive_fraction(value)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"--band {text!r}: expected NAME=FRACTION, e.g. fft=0.08 ({exc})"
                         ) from None


def run(opts: Options, repo: Path | None = None, same_tree: bool = False):
    """Measure, compare, print and write; return (rows, title). ``same_tree`` compares the
    working tree with itself (the self-test's and power script's "unchanged code")."""
    repo = Path(repo or git("rev-parse", "--show-toplevel"))
    cases, budget = _plan(opts)
    with contextlib.ExitStack() as stack:
        if opts.baseline:
            data = store.load(opts.baseline)
            other = store.other_kind(store.machine_of(data), _machine(opts.device))
            if other:  # ratios carry across machines of one kind only
                console.print(f"[yellow]warning: the baseline was recorded on another kind "
                              f"of machine ({other}): its ratios need not hold here, so no "
                              f"slower or faster verdict stands; record one here (--record "
                              f"DIR)[/yellow]")
            workers = [_worker(stack, "head", repo, opts)]
            known = frozenset(key.split("|")[0] for key in data["cases"])
            results = run_rounds(cases, workers, budget, known=known)

            def judge(cases, results):
                return verdicts.baseline_rows(cases, data, results, "head", opts.confidence,
                                              other)
            title = f"working tree vs baseline {opts.baseline} ({data.get('commit', '?')[:10]})"
            with_ref = True  # ratios to torch are what a stored baseline compares
        else:
            base_tree, base_name = repo, "the working tree itself"
            if not same_tree:
                ref = opts.base or default_base(repo)
                base_tree, commit = stack.enter_context(checkout(ref, repo))
                base_name = f"{ref} ({commit[:10]})"
            workers = [_worker(stack, "base", base_tree, replace(opts, inject="")),
                       _worker(stack, "head", repo, opts)]
            # Torch's blocks are needed only for ratios (the statistic, or a saved baseline).
            with_ref = opts.statistic == "ratio" or opts.save is not None
            results = run_rounds(cases, workers, budget, with_ref=with_ref,
                                 known=frozenset())

            def judge(cases, results):
                return verdicts.paired_rows(cases, results, "base", "head", opts.statistic,
                                            opts.confidence)
            title = f"working tree vs {base_name}, interleaved"
        rows = _confirm(judge(cases, results), workers, budget, judge, with_ref,
                        stored=bool(opts.baseline))
    if opts.inject:
        title += f" [injected: {opts.inject}]"
    _publish(rows, title, opts)
    if opts.save:
        store.save(opts.save, results, "head", cases, _meta(repo, opts, budget))
        console.print(f"baseline written: {opts.save}")
    return rows, title


def _confirm(rows: list, workers: list[Worker], budget: float, judge, with_ref: bool,
             stored: bool = False) -> list:
    """Each "slower" row measured again, in fresh worker processes, for a share of the
    budget; it fails only if that says slower too (verdicts.confirmed says why), against
    a ``stored`` baseline by more than a fresh process's own offset (verdicts.stands)."""
    flagged = [r.case for r in rows if r.verdict == stats.SLOWER]
    if not flagged:
        return rows
    console.print(f"confirming {len(flagged)} slower benchmark(s) in fresh processes: "
                  + "; ".join(f"{c.backend} {c.shape}" for c in flagged))
    try:
        for worker in workers:
            worker.restart()
        again = {r.case.key: r for r in judge(flagged, run_rounds(
            flagged, workers, budget * CONFIRM_SHARE, with_ref=with_ref))}
    except (WorkerError, OSError) as exc:  # the first verdicts stand, saying why alone
        again = {c.key: verdicts.Row(c, verdicts.ERROR, note=f"a worker did not restart: "
                                                             f"{exc}") for c in flagged}
    return [verdicts.confirmed(r, again[r.case.key], _margin(r.case) if stored else 0.0)
            if r.case.key in again else r for r in rows]


def _margin(case) -> float:
    """A stored-baseline case's band before widening (verdicts.stands: what a fresh process
    alone can move unchanged code's ratio by)."""
    return case.threshold / BASELINE_BAND_SCALE


def _plan(opts: Options) -> tuple[list, float]:
    """The gate cases (bands widened against a stored baseline) and the time budget."""
    scale = BASELINE_BAND_SCALE if opts.baseline else 1.0
    cases = gate_cases(opts.backends, opts.quick, opts.threshold, opts.bands, scale,
                       stored=bool(opts.baseline))
    return cases, opts.budget or (QUICK_BUDGET_S if opts.quick else BUDGET_S)


def record(opts: Options, repo: Path | None = None) -> None:
    """Measure the working tree alone and store its samples (a new baseline)."""
    repo = Path(repo or git("rev-parse", "--show-toplevel"))
    cases, budget = _plan(opts)
    with contextlib.ExitStack() as stack:
        results = run_rounds(cases, [_worker(stack, "head", repo, opts)], budget,
                             known=frozenset())  # a typo must not become a baseline
    unmeasured = [(c, results[c.key]["head"]) for c in cases if not results[c.key]["head"].call]
    why = "; ".join(f"{c.backend} {c.shape}: {got.error or got.refusal or 'no samples'}"
                    for c, got in unmeasured)
    if len(unmeasured) == len(cases):  # a file that can judge nothing is no baseline
        raise ValueError(f"nothing was measured, no baseline written ({why})")
    store.save(opts.save, results, "head", cases, _meta(repo, opts, budget))
    console.print(f"baseline written: {opts.save} ({len(cases) - len(unmeasured)} of "
                  f"{len(cases)} benchmarks measured, {budget:g} s)")
    if unmeasured:  # kept with the reason: a stored refusal is compared as one
        console.print(f"[yellow]not measured: {why}[/yellow]")


def _worker(stack: contextlib.ExitStack, label: str, tree: Path, opts: Options) -> Worker:
    try:
        worker = Worker(label, tree, opts.inject, opts.device)
    except WorkerError as exc:
        raise RuntimeError(f"cannot start the {label} tree's worker: {exc}") from None
    stack.callback(worker.close)
    return worker


def default_base(repo: Path) -> str:
    """The merge base of HEAD with main (or origin/main)."""
    for ref in ("main", "origin/main"):
        with contextlib.suppress(RuntimeError):
            return git("merge-base", "HEAD", ref, cwd=repo)
    raise ValueError("no main or origin/main to take a merge base with: name BASE, or "
                     "compare with stored results (--baseline FILE)")


def _meta(repo: Path, opts: Options, budget: float) -> dict:
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", cwd=repo))
    return {"commit": git("rev-parse", "HEAD", cwd=repo), "dirty": dirty,
            "quick": opts.quick, "budget_s": budget, "device": opts.device,
            "machine": _machine(opts.device)}


def _machine(device: str) -> dict:
    """This machine as the workers run on it (their thread count, CONVBENCH_GATE_THREADS
    when set, is not this process's)."""
    from benchmarks.machine import describe

    here = {**describe(device), "device": device}
    here["torch_threads"] = int(os.environ.get("CONVBENCH_GATE_THREADS") or
                                here["torch_threads"])
    return here


def _publish(rows, title: str, opts: Options) -> None:
    """The table, the verdict line and the warnings, on the terminal and (whole, with the
    verdict: a CI job reads them) in --markdown and --json."""
    console.print(verdicts.table(rows, title))
    slower = [r for r in rows if r.verdict in verdicts.FAILING]
    counts = {v: sum(r.verdict == v for r in rows) for v in dict.fromkeys(r.verdict
                                                                          for r in rows)}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    if slower:
        names = "; ".join(f"{r.case.backend} {r.case.shape}" for r in slower)
        verdict, line, style = "fail", f"gate: FAIL ({summary}): {names}", "bold red"
    elif not verdicts.compared(rows):  # a pass must have compared something
        verdict, style = "nothing compared", "red"
        line = (f"gate: nothing was compared ({summary}): each row's note says why; no "
                "verdict, pass or fail")
    else:
        verdict, line, style = "pass", f"gate: pass ({summary})", "green"
    console.print(f"[{style}]{escape(line)}[/{style}]")
    warnings = []
    judged = (stats.SLOWER, stats.FASTER, stats.UNCHANGED)
    # A row re-measured was judged (slower at first), whatever the second measurement said.
    if any(r.change is not None for r in rows) and not any(
            r.verdict in judged or r.again is not None for r in rows):
        warnings.append("nothing was judged: every interval straddles its band (a busy "
                        "machine, or too short a --budget); a pass here proves little")
    here = _machine(opts.device)  # read at the end: the workers' own threads are in it
    busy = busy_warning(here, own_threads=here["torch_threads"])
    warnings += [busy] if busy else []
    for warning in warnings:
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    if opts.markdown:
        opts.markdown.write_text(verdicts.markdown(rows, title) + "\n" + "\n".join(
            [f"**{line}**", *[f"- warning: {w}" for w in warnings]]) + "\n")
    if opts.json:
        opts.json.write_text(json.dumps(
            {"verdict": verdict, "summary": line, "warnings": warnings,
             "rows": [_row_json(r) for r in rows]}, indent=1) + "\n")


def _row_json(row: verdicts.Row) -> dict:
    c, again = row.change, row.again
    return {"backend": row.case.backend, "shape": row.case.shape,
            "descriptor": row.case.descriptor, "threshold": row.case.threshold,
            "verdict": row.verdict, "note": row.note, "base_s": row.base_s,
            "head_s": row.head_s, **({} if c is None else _change_json(c)),
            **({} if again is None or again.change is None else {
                "measured_again": _change_json(again.change)})}


def _change_json(c: stats.Change) -> dict:
    return {"factor": c.factor, "low": c.low, "high": c.high, "samples": c.samples,
            "confidence": c.confidence}


def self_test(opts: Options) -> int:
    """Unchanged code must pass; a 1.5x slowdown of one backend must fail on that backend
    (and only there): the tree against itself, interleaved, and against a baseline recorded
    in this run (the stored-baseline path, in today's machine state).

    With ``--baseline FILE`` also against FILE. Against a stored baseline (FILE, or the one
    recorded minutes before) the slowdown must fail unless the gate finds the machine in
    another state than the baseline's (torch itself moved on that shape), or of another
    kind, so that it rightly calls the comparison inconclusive: that is said, not counted
    wrong. The interleaved check has no such way out.
    A stored file's samples are from another day; a self-test that failed whenever the
    host's state changed would fail CI on the machine, not on the gate."""
    victim = f"{SELF_TEST_VICTIM}={SELF_TEST_FACTOR}"
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "baseline.json"
        record(replace(opts, inject="", baseline=None, save=fresh))
        checks = [("unchanged code passes", replace(opts, inject="", baseline=None), False),
                  (f"{victim} fails", replace(opts, inject=victim, baseline=None), True),
                  (f"{victim} fails against a baseline recorded now",
                   replace(opts, inject=victim, baseline=fresh), True)]
        if opts.baseline:
            checks.append((f"{victim} fails against {opts.baseline}",
                           replace(opts, inject=victim), True))
        ok, judged = True, []
        for name, case_opts, should_fail in checks:
            rows, _ = run(replace(case_opts, save=None), same_tree=True)
            # Against any stored samples (those of minutes ago too: CI's machine once ran
            # 27% faster by then) the machine may be in another state; interleaved, never.
            stored = case_opts.baseline is not None
            outcome = _self_check(name, rows, should_fail, drift_allowed=stored)
            ok &= outcome != WRONG
            judged += [outcome != UNJUDGED] if stored else []
        if judged and not any(judged):  # a gate that excused every stored comparison
            console.print("self-test: WRONG: no stored baseline could judge the injected "
                          "slowdown (each found the machine in another state)")
            ok = False
    return 0 if ok else 1


WRONG, UNJUDGED = "wrong", "cannot judge"


def _self_check(name: str, rows, should_fail: bool, drift_allowed: bool) -> str:
    """Print one self-test check's outcome and return it: "ok", WRONG or UNJUDGED."""
    flagged = {r.case.backend for r in rows if r.verdict in verdicts.FAILING}
    passed = flagged == ({SELF_TEST_VICTIM} if should_fail else set())
    victim = next((r for r in rows if r.case.backend == SELF_TEST_VICTIM), None)
    if (not passed and drift_allowed and not flagged and victim is not None
            and victim.not_comparable):
        console.print(f"self-test: {name}: cannot judge ({victim.note})")
        return UNJUDGED
    console.print(f"self-test: {name}: {'ok' if passed else 'WRONG'} "
                  f"(flagged: {', '.join(sorted(flagged)) or 'nothing'})")
    return "ok" if passed else WRONG

"""``python -m benchmarks sweep``: run the sweep so that no case can take the others down.

Why a supervisor around pytest: a kernel that segfaults kills its process, and one that hangs
in native code holding the GIL cannot be interrupted from inside (pytest-timeout's thread
method needs the GIL; its signal method needs Python bytecode to run). pytest-xdist would
restart a dead worker, but pytest-benchmark disables itself under xdist. So this command runs
pytest on benchmarks/bench_sweep.py in one child process and watches it: the child names the
case in flight in ``<results>.running``; a child that dies there gets that case a "crashed"
row, a case past ``--timeout`` has the child killed and gets a "timeout" row, and a new
child resumes after it (cases with a row from this sweep are deselected). One child at a
time, in order: not a scheduler. Scale out with ``--shard i/n`` and ``python -m benchmarks
merge``.

Resume: rerunning the same command (the same ``--results``) measures only what the file
does not settle (benchmarks.records.settled). Kept: ok rows, a backend's declared skips
(a feature, dtype, device or problem it does not take, NotImplementedError, its memory
budget) and the budget guard's skips, unless ``--limit`` is now higher than the one they
were skipped under (raising it is how to ask for them; guard skips are not retried
otherwise, as their probes cost up to the limit each). Measured again: failed, timeout and
crashed rows and skips because the backend was unavailable (a package installed since): the
new row is appended, and the last row of a case is its row everywhere (summary, report,
merge). ``--fresh`` discards the file. The thread count is part of every number but not of a
row's key: a file whose kept rows were measured with another count than this run's
``--threads`` is refused (exit 2) rather than resumed into, since the report would mix both;
name another ``--results`` file. ``--budget`` and ``--min-rounds`` only set how long a case
is timed: rows timed under other values are kept. ``--paired-with`` changes what a row
holds: ok rows timed under another ``--paired-with``, or none, are measured again.

A case is a backend, a shape and a direction: ``--direction`` forward, backward-data,
backward-weights or all (benchmarks/bench_sweep.py says what is timed in each). Default: all
three on the sets named; a bare sweep times the backward directions on resnet50 only, to
keep the main job short (sweep_plan.BARE_DIRECTIONS). Rows of one direction are only ever
compared with torch's in the same direction.

Files, next to ``--results`` (default reports/sweeps/<device>-<dtype>[-tf32]-mb<batch>.jsonl):
``.jsonl`` the streamed rows and resume log, ``.json`` the report (pytest-benchmark's format
plus every row), ``.log`` pytest's output. Exit status: 0 every case has an ok or skipped row,
1 some case failed, timed out or crashed (the sweep still ran every other case), 2 bad usage
(among it a bad option value, a ``package.module:function`` backend that cannot be loaded, a
CUDA device that is not here, a results file measured with another thread count) or a child
that died outside any case. A built-in backend that cannot run here (triton without CUDA) is
no usage error: its cases are skipped rows with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import records, sweep_plan
from benchmarks.sweep_report import Progress, summarize
from impls.frontend import missing_device
from impls.registry import get_backend

BENCH_FILE = Path(__file__).with_name("bench_sweep.py")
#: glibc malloc settings for the child, unless already set: large blocks come from the heap
#: instead of fresh mmaps, and freed memory is kept, so a call does not pay page faults for
#: scratch memory that an earlier call already touched (F.conv2d on a layer with 58 MB of
#: scratch: 10.2 vs 6.0 ms depending on malloc history; unfold on dense17_32x64, whose column
#: buffer is 380 MB: ~200 ms a call without these settings, 60-130 ms with them). Recorded
#: with each machine record; benchmarks.memory bypasses them for its one measured call.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)}
#: Variables a parent pytest-xdist worker leaves behind; pytest-benchmark would see them and
#: disable itself in the child.
_DROP_ENV = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
             "PYTEST_CURRENT_TEST")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="time every backend over shape sets (pytest-benchmark, isolated)",
        description="Time every backend over shape sets with pytest-benchmark, in a child "
                    "process that a hanging or crashing case cannot take down; resumes.")
    bare = ", ".join(f"{name} ({' '.join(d)})" for name, d in
                     sweep_plan.directions_per_set().items())
    p.add_argument("--shape-set", action="append", metavar="NAME|FILE",
                   help="a built-in set (python -m benchmarks shapes --help lists them) or "
                   "the path of a benchdnn shape file of your own; repeatable; default "
                   f"{' '.join(sweep_plan.DEFAULT_SETS)}")
    for flag, kwargs in sweep_plan.OPTIONS:
        p.add_argument(flag, **kwargs)
    p.add_argument("--direction", action="extend", nargs="+", metavar="DIRECTION",
                   choices=(*sweep_plan.DIRECTIONS, "all"),
                   help="what is timed: forward, backward-data (dL/dinput alone), "
                        "backward-weights (dL/dweight alone), or all; several may be given. "
                        "Default: all three on each --shape-set; with neither option, "
                        f"{bare}")
    p.add_argument("--timeout", type=sweep_plan.positive_or_inf_seconds,
                   default=sweep_plan.TIMEOUT_S,
                   help="kill a case still running after this many seconds (default "
                        "%(default)s)")
    p.add_argument("--results", type=Path, help="JSON-lines results file (resumed if present)")
    p.add_argument("--fresh", action="store_true", help="discard earlier results first")
    p.add_argument("--list", action="store_true", help="print the cases and exit")
    # After "--", the rest goes to pytest (benchmarks.__main__ splits it off).
    p.set_defaults(func=cli, pytest_args=[])


#: pytest options that choose tests: the sweep's cases are planned by sweep_plan instead.
_SELECTING = ("--deselect", "--lf", "--last-failed", "--ff", "--failed-first", "--sw",
              "--stepwise", "--ignore", "--ignore-glob")


def cli(args: argparse.Namespace) -> int:
    try:
        shard_of = sweep_plan.parse_shard(args.shard) if args.shard else None
        if shard_of:  # as the plan records it and a merge compares it: "1/4", never "1 / 4"
            args.shard = "/".join(map(str, shard_of))
        batch = sweep_plan.batch_of(args.batch)
        partner = sweep_plan.partner(args.paired_with)
        if partner and args.backend and partner.name not in {
                get_backend(b).name for b in args.backend}:
            # The ratios are read against the partner's own rows (summary, report,
            # targets): without them, a review's paired rows showed no ratio anywhere.
            print(f"warning: --paired-with {args.paired_with} without --backend "
                  f"{args.paired_with}: the rows keep their paired ratios, but the summary, "
                  f"report and targets read them against {partner.name}'s own rows, which "
                  f"this sweep does not time; add --backend {args.paired_with}",
                  file=sys.stderr)
        cases = sweep_plan.plan(args.shape_set, args.backend,
                                batch=batch, dtype=args.dtype, device=args.device,
                                directions=_directions(args.direction), cache=args.cache,
                                tf32=args.tf32, memory_format=args.memory_format)
    except ValueError as exc:
        print(f"python -m benchmarks sweep: error: {exc}", file=sys.stderr)
        return 2
    if not cases:  # an empty shape file, say (an empty shard of a real plan is fine)
        print("python -m benchmarks sweep: error: no cases: the shape sets and backends "
              "given make none", file=sys.stderr)
        return 2
    cases = sweep_plan.shard(cases, *shard_of) if shard_of else cases
    replaced = "" if args.batch else sweep_plan.batch_replaced(args.shape_set,
                                                               _directions(args.direction))
    if replaced:
        print(f"warning: {replaced}", file=sys.stderr)
    selecting = [a for a in args.pytest_args if a.split("=")[0] in _SELECTING
                 or a.startswith(("-k", "-m")) or "::" in a]
    if selecting:  # the supervisor must know every case it starts, to account for each
        print(f"python -m benchmarks sweep: error: {' '.join(selecting)}: cases are chosen "
              "with --backend, --shape-set, --direction and --shard, not by pytest",
              file=sys.stderr)
        return 2
    if args.list:
        for c in cases:
            print(c.id)
        return 0
    clash = _clashing_results_name(args.results)
    if clash:
        print(f"python -m benchmarks sweep: error: --results {args.results}: {clash}",
              file=sys.stderr)
        return 2
    missing = missing_device(args.device)
    if missing:
        print(f"python -m benchmarks sweep: error: --device {args.device}, but {missing}",
              file=sys.stderr)
        return 2
    for flag, names in (("--backend", args.backend), ("--paired-with", [args.paired_with])):
        unloadable = sweep_plan.unloadable(filter(None, names or ()))
        for line in unloadable:  # a typo or a missing package: refused, not skipped rows
            print(f"python -m benchmarks sweep: error: {flag}: {line}", file=sys.stderr)
        if unloadable:
            return 2
    results = records.ResultsFile((args.results or sweep_plan.results_path(
        args.device, args.dtype, batch, shard_of, args.tf32)).resolve())
    paths = _paths(results.path)
    if not args.fresh:
        from benchmarks.machine import describe

        other = results.conditions_differ([c.key for c in cases],
                                          sweep_plan.torch_threads(args.threads), args.limit,
                                          describe(args.device))
        if other:
            print(f"python -m benchmarks sweep: error: {other}; resuming into it would mix "
                  "them with this run's rows: name another --results file (or --fresh to "
                  "discard what it holds)", file=sys.stderr)
            return 2
    results.path.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for path in paths.values():
            path.unlink(missing_ok=True)
    paths["heartbeat"].unlink(missing_ok=True)  # left by a supervisor that was killed
    partner = partner.name if partner else None  # as the rows name it
    kept = _kept_runs(results, cases, args.limit, partner)
    for stale in (_kept_from_other_code(results, kept), _kept_under_other_settings(results, kept,
                                                                                  args)):
        if stale:
            print(f"warning: {stale}", file=sys.stderr)
    # What this sweep sets out to measure: a report of the file says what has no row yet.
    results.append({"record": "plan", "started": records.now(), "shard": args.shard,
                    "keys": [c.key for c in cases]})
    since = results.size()  # rows from here on are this sweep's own, whatever their status
    code = supervise(cases, results, _child_command(args, results.path, since),
                     _child_env(args.threads), args.timeout, since, args.limit, partner)
    if code == 130 or code == 2:
        return code
    doc = records.report([results])
    records.write_json(paths["report"], doc)
    code = summarize(cases, results, paths, shard=args.shard) or code
    unpaired = _unpaired(results, cases, since, partner) if partner else ""
    if unpaired:
        print(f"warning: {unpaired}", file=sys.stderr)
    return code


def _unpaired(results: records.ResultsFile, cases, since: int, partner: str) -> str:
    """How many of this sweep's timed cases could not be paired, and the first reason: a
    "paired" file without paired ratios must not pass unremarked (``--paired-with triton``
    on a machine without CUDA times every case alone). The partner's own cases are not
    counted: they are what the others are paired with."""
    keys = {c.key for c in cases}
    rows = [r for r in results.records(since) if r.get("record") == "case"
            and r.get("key") in keys and r.get("status") == "ok"
            and r.get("backend") != partner]
    missed = [r for r in rows if r.get("paired_error")]
    if not missed:
        return ""
    return (f"{len(missed)} of {len(rows)} timed cases could not be paired and were timed "
            f"alone (paired_error in their rows), e.g. {missed[0]['paired_error']}")


def _kept_runs(results: records.ResultsFile, cases, limit, partner=None) -> dict[str, dict]:
    """Each of ``cases`` this sweep keeps rather than measures again (resuming), with the
    run record of the child that timed it ({} where none precedes its row): read once for
    the warnings below."""
    kept = results.done(limit=limit, partner=partner) & {c.key for c in cases}
    runs = _runs_of(results)
    return {key: runs.get(key) or {} for key in kept}


def _kept_from_other_code(results: records.ResultsFile, kept: dict[str, dict]) -> str:
    """Why the rows this sweep keeps (:func:`_kept_runs`) may be of other code than the
    tree's now, or "": they are kept as they are (that is resuming), but "fix my kernel,
    rerun" must not show the old kernel's times unremarked. Judged by the commits
    pytest-benchmark recorded."""
    from pytest_benchmark.utils import get_commit_info

    infos = [run.get("commit_info") or {} for run in kept.values()]
    at = [(info["id"], bool(info.get("dirty"))) for info in infos if info.get("id")]
    if not at:
        return ""
    now = get_commit_info()
    others = sorted({c[:10] for c, _ in at if c != now.get("id")})
    dirty = sum(d for c, d in at if c == now.get("id"))
    parts = [f"{sum(c != now.get('id') for c, _ in at)} measured at commit "
             f"{', '.join(others)}, not this tree's {str(now.get('id'))[:10]}"] if others else []
    if dirty:
        parts.append(f"{dirty} measured with uncommitted changes")
    if now.get("dirty"):
        parts.append("this tree has uncommitted changes")
    if not parts:
        return ""
    return (f"{len(kept)} rows are kept from earlier runs into {results.path.name} "
            f"({'; '.join(parts)}): if the code they time has changed, --fresh measures "
            "them again")


def _runs_of(results: records.ResultsFile) -> dict[str, dict]:
    """Each case key's run record: the one before its last row (the child that timed it)."""
    out, run = {}, None
    for record in results.records():
        if record.get("record") == "run":
            run = record
        elif record.get("record") == "case" and run is not None:
            out[record["key"]] = run
    return out


#: Run options that change how precisely a case is timed, not what is timed.
_TIMING_OPTIONS = (("budget", "--budget"), ("min_rounds", "--min-rounds"))


def _kept_under_other_settings(results: records.ResultsFile, kept: dict[str, dict],
                               args) -> str:
    """Why the rows this sweep keeps (:func:`_kept_runs`) were timed under another --budget
    or --min-rounds, or "": a rerun with a larger budget to settle noisy numbers kept every
    old row unremarked. Kept all the same (resuming), with the way to measure them again."""
    differ: dict[str, int] = {}
    for run in kept.values():
        options = run.get("options") or {}
        said = [f"{flag} {options[name]:g}" for name, flag in _TIMING_OPTIONS
                if options.get(name) is not None and options[name] != getattr(args, name)]
        if said:
            differ[", ".join(said)] = differ.get(", ".join(said), 0) + 1
    if not differ:
        return ""
    found = "; ".join(f"{n} with {how}" for how, n in differ.items())
    now = ", ".join(f"{flag} {getattr(args, name):g}" for name, flag in _TIMING_OPTIONS)
    return (f"{sum(differ.values())} rows are kept from earlier runs into {results.path.name} "
            f"timed under other settings ({found}; this run: {now}): --fresh measures them "
            "again")


def _directions(given: list[str] | None) -> tuple[str, ...] | None:
    """The directions asked for, in the sweep's own order; None when none was named."""
    if not given:
        return None
    return sweep_plan.DIRECTIONS if "all" in given else tuple(
        d for d in sweep_plan.DIRECTIONS if d in given)


def _paths(results: Path) -> dict[str, Path]:
    return {"results": results, "report": results.with_suffix(".json"),
            "log": results.with_suffix(".log"),
            "heartbeat": sweep_plan.heartbeat_path(results)}


def _child_command(args, results: Path, since: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(BENCH_FILE), "-p", "no:cacheprovider",
           "-p", "no:xdist", "-q", "--results", str(results), "--rows-since", str(since),
           "--batch", str(sweep_plan.batch_of(args.batch) or sweep_plan.OWN),
           "--dtype", args.dtype, "--device", args.device, "--cache", args.cache,
           "--memory-format", args.memory_format,
           "--budget", str(args.budget), "--limit", str(args.limit),
           "--min-rounds", str(args.min_rounds), "--benchmark-group-by", "group",
           "--benchmark-columns", "median,iqr,min,rounds,iterations"]
    # Only what was named: the child makes the same plan from the same options.
    for name in args.shape_set or ():
        cmd += ["--shape-set", name]
    for name in args.backend or ():
        cmd += ["--backend", name]
    for direction in _directions(args.direction) or ():
        cmd += ["--direction", direction]
    for flag, value in (("--shard", args.shard), ("--threads", args.threads),
                        ("--paired-with", args.paired_with)):
        if value:
            cmd += [flag, str(value)]
    return cmd + (["--tf32"] if args.tf32 else []) + list(args.pytest_args)


def _clashing_results_name(results: Path | None) -> str:
    """Why ``results`` cannot be the results file, or "": the sweep writes its report, log
    and heartbeat beside it under the same stem (``_paths``), so a results file named
    like one of them would be overwritten by it (``--results r.json`` was: every case then
    failed reading a report as JSON lines)."""
    if results is None:
        return ""
    if results.suffix in {p.suffix for name, p in _paths(results).items() if name != "results"}:
        return (f"the sweep writes its {results.suffix} beside its results; name the results "
                f"file {results.with_suffix('.jsonl').name} (JSON lines), its report is "
                f"then {results.with_suffix('.json').name}")
    return ""


def _child_env(threads: int | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    for key, value in MALLOC_ENV.items():
        env.setdefault(key, value)
    n = str(sweep_plan.torch_threads(threads))
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = n  # numpy/scipy's BLAS too
    return env


def supervise(cases, results: records.ResultsFile, cmd: list[str], env: dict,
              timeout: float, since: int | None = None, limit: float | None = None,
              partner: str | None = None) -> int:
    """Run children until every case has a row it keeps (records.settled under ``limit``
    and ``partner``, as ``cmd``'s --limit and --paired-with)
    or one written by this sweep (from byte ``since`` of the results file on, which
    ``cmd`` must name as its --rows-since); 0, or 2 (a child died or hung outside any case
    having measured nothing), or 130 (interrupted: rerun the same command to resume)."""
    by_key = {c.key: c for c in cases}
    paths = _paths(results.path)
    since = results.size() if since is None else since
    kept = results.done(limit=limit, partner=partner) & set(by_key)
    rows = results.rows()  # read once: both lines below are about the same rows
    retried = {r["key"] for r in rows} & (set(by_key) - kept)
    changed = sorted({r["code_file"] for r in rows
                      if r["key"] in retried and records.code_changed(r)})
    progress = Progress(cases, kept, since, retried=len(retried), changed=changed)

    def done() -> set[str]:
        return results.done(since, limit, partner)

    for _ in range(len(cases) + 1):  # every restart adds a row, so this always ends
        if not set(by_key) - done():
            return 0
        measured = len(done())
        with open(paths["log"], "a", encoding="utf-8") as log:
            log.write(f"\n=== {records.now()} {' '.join(cmd)}\n")
            log.flush()
            child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=_die_with_parent)
            previous = signal.signal(signal.SIGTERM, _interrupt)  # e.g. `timeout`, CI cancel
            try:
                killed = _watch(child, paths["heartbeat"], timeout, results, progress)
            except KeyboardInterrupt:
                _kill(child)
                paths["heartbeat"].unlink(missing_ok=True)
                print("\ninterrupted; run the same command again to resume", file=sys.stderr)
                return 130
            finally:
                signal.signal(signal.SIGTERM, previous)
        progress.update(results)
        in_flight = _read_json(paths["heartbeat"])
        paths["heartbeat"].unlink(missing_ok=True)
        if in_flight is None or in_flight["key"] in done():
            # No case was cut short (or it finished just as it was killed).
            missing = set(by_key) - done()
            if killed == TIMED_OUT or child.returncode == sweep_plan.RESTART_STATUS or (
                    child.returncode in (0, 1, 5) and not missing):
                continue  # 0/1/5: passed / some failed / nothing left; or a CUDA error
            why = (f"did nothing for {_idle_s(timeout):g} s outside any case (killed)"
                   if killed == IDLE else f"exited with status {child.returncode} outside "
                   "any case")
            if not missing or len(done()) > measured:
                # Its rows are written: a death at exit costs nothing, one between cases
                # only the child (a fresh one goes on, as after a crash inside a case).
                print(f"warning: pytest {why}; "
                      + ("every case has its row" if not missing else
                         f"{len(missing)} cases left, a fresh process goes on")
                      + f"; see {paths['log']}", file=sys.stderr)
                continue
            print(f"pytest {why} and measured nothing, {len(missing)} cases without a row; "
                  f"see {paths['log']}:\n{_tail(paths['log'])}", file=sys.stderr)
            return 2
        case = by_key.get(in_flight["key"])
        if case is None:
            print(f"a case not in this sweep was in flight: {in_flight}", file=sys.stderr)
            return 2
        status, reason = ("timeout", f"still running after {timeout:g} s: killed") \
            if killed == TIMED_OUT \
            else ("crashed", f"the process died ({_exit_reason(child.returncode)}) during this "
                             f"case; {_crash_excerpt(paths['log'])}")
        results.append(records.case_row(**case.row_fields(), status=status, reason=reason,
                                        test=in_flight.get("test"), started=records.now()))
        progress.update(results)
    return 0 if not set(by_key) - done() else 2


#: Why _watch killed a child: the case in flight ran past --timeout, or nothing happened
#: outside any case (no case started, no row written) for _idle_s.
TIMED_OUT, IDLE = "timeout", "idle"
#: The least time a child may spend outside any case before it counts as hung: its start
#: (imports, collection, measuring a fresh file's machine) must fit whatever --timeout is.
IDLE_FLOOR_S = 600.0


def _idle_s(timeout: float) -> float:
    return max(timeout, IDLE_FLOOR_S)


def _watch(child, heartbeat: Path, timeout: float, results, progress) -> str:
    """Wait for the child, printing rows as they come; kill it when the case in flight
    passes ``timeout`` (TIMED_OUT), or when, outside any case, neither a case starts nor
    a row is written for _idle_s (IDLE: a hang in the machine's measurement, at pytest's
    session end or at interpreter exit, which no heartbeat covers). "" when it ended."""
    size, active = results.size(), time.time()
    while child.poll() is None:
        time.sleep(0.2)
        progress.update(results)
        in_flight = _read_json(heartbeat)
        if in_flight and time.time() - in_flight["started"] > timeout:
            _kill(child)
            return TIMED_OUT
        grown = results.size()
        if in_flight or grown != size:
            size, active = grown, time.time()
        elif time.time() - active > _idle_s(timeout):
            _kill(child)
            return IDLE
    return ""


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the child, before exec: be SIGKILLed if the supervisor dies, however it dies (the
    child has a session of its own, so no terminal or process-group signal reaches it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)


def _kill(child) -> None:
    """SIGKILL the child's process group: a hung kernel ignores anything gentler."""
    with contextlib.suppress(ProcessLookupError):  # it may have died on its own meanwhile
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, or caught mid-write: look again next time
        return None


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"signal {-code}, {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _crash_excerpt(log: Path) -> str:
    """Where it died: faulthandler's report (pytest enables it) names the innermost frames
    first; without one, the log's last lines. Only this child's output counts, since the
    supervisor's "=== time command" line: an earlier child's report there belongs to
    another case (a review's os._exit row quoted the segfault of the case before it)."""
    lines = _tail(log, 400).splitlines()
    header = max((i for i, line in enumerate(lines) if line.startswith("=== ")), default=-1)
    lines = lines[header + 1:]
    starts = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
    if not starts:
        # Nothing at all means it exited without a word.
        own = [line for line in lines if line.strip()]
        return ("last output: " + " | ".join(own[-6:]) if own else
                "no output, no Python error: it exited from native code or os._exit")
    frames = [line.strip() for line in lines[starts[-1]:] if line.strip().startswith("File")]
    return f"{lines[starts[-1]].strip()}; innermost frames: " + " | ".join(frames[:4])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


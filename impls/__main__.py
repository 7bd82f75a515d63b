"""``python -m impls``: list the backends, or check one against the reference.

    python -m impls list  [--format json]
    python -m impls check --backend NAME|pkg.mod:fn [--case ID ...] [--mode exact|random]
                          [--direction forward|backward-data|backward-weights ...]
                          [--dtype float32 ...] [--device cpu|cuda] [--seed N] [--format json]
                          [--timeout SECONDS | --in-process]

``check`` compares, by default, the forward pass over the case table in both modes and every
declared dtype, the gradients too when the backend declares autograd (what training
needs), non-finite inputs (impls.non_finite) and module parity; ``--direction`` narrows it.
It exits 0 when everything ran passed (skips carry reasons), 1 when anything failed,
2 on bad usage (argparse's convention), so scripts and CI can branch on it.

Tables are rich's, or plain columns where rich is missing (impls.display).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from impls import isolated, memory_budget
from impls.backward import DIRECTIONS, result_from_dict
from impls.cases import CASES, CASES_BY_ID
from impls.checker import BAD, SKIPPED, summarize
from impls.cli_types import positive_or_inf_seconds
from impls.display import plain, print_table, say, status
from impls.fill import MODES
from impls.frontend import device_arg, missing_device
from impls.non_finite import IDS as NON_FINITE_IDS
from impls.parity import MODULE_CASES, PADDING_MODES
from impls.registry import backends, get_backend

#: Module-parity comparisons by the id a repro line gives them: "module-case/padding_mode".
MODULE_IDS = [f"{mc.id}/{pm}" for mc in MODULE_CASES for pm in PADDING_MODES]
#: Seconds one comparison may run before its child is killed (naive's loops on the largest
#: case take ~3 s; a user's unoptimised kernel gets ample room, a hang does not get forever).
TIMEOUT_S = 120.0
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if memory_budget.env_error():
        print(f"error: {memory_budget.env_error()}", file=sys.stderr)
        return 2
    if args.command == "list":
        return _list(args)
    return _check(args)


def _parser() -> argparse.ArgumentParser:
    prog = "convbench" if Path(sys.argv[0]).name == "convbench" else "python -m impls"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="backends, availability and capabilities")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    check = sub.add_parser("check", help="check a backend against the float64 reference")
    check.add_argument("--backend", required=True, help="a name, or package.module:function")
    check.add_argument("--case", action="append",
                       choices=sorted(CASES_BY_ID) + MODULE_IDS + NON_FINITE_IDS,
                       metavar="ID", help="only these case ids (repeatable), module-parity "
                       "ids (ID/padding_mode) or non-finite/nan|inf|-inf (in the input; "
                       "-in-weight, -in-bias), as a repro line names them; default: all")
    check.add_argument("--mode", action="append", choices=MODES, help="default: both")
    check.add_argument("--dtype", action="append", choices=sorted(DTYPES),
                       help="default: every dtype the backend declares")
    check.add_argument("--direction", action="append", choices=("forward",) + DIRECTIONS,
                       help="forward, backward-data, backward-weights; repeatable (default: "
                       "forward, and both gradients when the backend declares autograd)")
    check.add_argument("--device", default="cpu", type=device_arg, help="cpu (default) or cuda[:N]")
    check.add_argument("--seed", type=_seed, default=0)
    check.add_argument("--tf32", action="store_true", help="allow TF32 for float32 on CUDA")
    check.add_argument("--no-module", action="store_true", help="skip module parity")
    check.add_argument("--timeout", type=positive_or_inf_seconds, default=TIMEOUT_S,
                       help=f"kill a comparison still running after this many seconds and "
                       f"carry on (default {TIMEOUT_S:g}; each runs in a child process)")
    check.add_argument("--in-process", action="store_true",
                       help="run the comparisons in this process (a debugger's breakpoints "
                       "work; a hang or crash of the backend is then the check's)")
    check.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text} is not in 0 .. 2**32-1 (NumPy's seed range)")
    return value


def _list(args) -> int:
    entries = [entry.capabilities() for entry in backends()]
    if args.format == "json":
        print(json.dumps(entries, indent=2))
        return 0
    rows = [[e["name"], "yes" if e["available"] else f"no: {e['reason']}",
             ", ".join(e["devices"]), ", ".join(e["dtypes"]), ", ".join(e["features"]),
             _exactness(e), e["description"]] for e in entries]
    print_table("convbench backends",
                ("name", "available", "devices", "dtypes", "features", "exact", "about"), rows)
    return 0


def _exactness(capabilities: dict) -> str:
    """"yes" or "bounded", and where a device differs: "yes (cuda: bounded)"."""
    word = {True: "yes", False: "bounded"}
    others = [f"{device}: {word[exact]}" for device, exact in capabilities["exact_on"].items()
              if exact != capabilities["exact"]]
    return word[capabilities["exact"]] + (f" ({', '.join(others)})" if others else "")


def _check(args) -> int:
    try:
        entry = get_backend(args.backend)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = missing_device(args.device)
    if missing:  # before availability: triton's "no CUDA device" is this, not a failure
        print(f"error: --device {args.device}, but {missing}", file=sys.stderr)
        return 2  # as the sweep: nothing was checked, the command cannot run here
    if not entry.available:  # every case would skip: checking nothing must not pass
        print(f"error: backend {entry.name!r} is unavailable: {entry.reason}", file=sys.stderr)
        # A spec that does not load is a typo or a missing package: bad usage, as the sweep
        # has it; a backend that loads but cannot run here (no Triton) is a failed check.
        return 2 if entry.load_error else 1
    chosen = args.case or []
    cases = [CASES_BY_ID[i] for i in chosen if i in CASES_BY_ID] if chosen else list(CASES)
    module = [(mc, pm) for mc in MODULE_CASES for pm in PADDING_MODES
              if not chosen or f"{mc.id}/{pm}" in chosen]
    non_finite = [i for i in NON_FINITE_IDS if not chosen or i in chosen]
    dtypes = [DTYPES[d] for d in args.dtype] if args.dtype else list(entry.dtypes)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
    seen = []
    try:
        results = _run_checks(args, entry, cases, module, non_finite, dtypes, seen)
    except KeyboardInterrupt:  # a case that hangs: say what was checked, keep what ran
        if args.format == "json":
            _print_json(entry, seen, interrupted=True)
        elif seen:
            _print_report(entry.name, seen, [r for r in seen if r.status in BAD],
                          interrupted=True)
        last = f"; the last one done: {seen[-1].case} {seen[-1].mode} {seen[-1].dtype}" \
            if seen else ""
        print(f"interrupted after {len(seen)} comparisons{last}", file=sys.stderr)
        return 130
    failed = [r for r in results if r.status in BAD]
    if args.format == "json":
        _print_json(entry, results)
    else:
        _print_report(entry.name, results, failed, scope=_scope(results))
    if not results:
        print("error: nothing was checked: no comparison was selected (module-parity ids "
              "with --no-module, or non-finite ids without the forward --direction)",
              file=sys.stderr)
        return 2  # options that contradict each other: bad usage
    if all(r.status == SKIPPED for r in results):
        print(f"error: nothing was checked: every comparison of {entry.name} was skipped",
              file=sys.stderr)
        return 1
    return 1 if failed else 0


def _run_checks(args, entry, cases, module, non_finite, dtypes, seen: list) -> list:
    """Every comparison asked for, in order, each in a child under --timeout (impls.isolated:
    a hang or crash costs its comparison, not the check) unless --in-process; each result
    is also appended to ``seen`` as it comes, so an interrupted run can still report what
    it checked. The status line names the comparison running (what a hang is stuck on)."""
    items = _items(args, entry, cases, module, non_finite, dtypes)
    with status(f"checking {entry.name}") as line:
        def progress(result: dict):
            seen.append(result_from_dict(result))
            if line is not None and len(seen) < len(items):
                _, direction, dtype, case, mode = items[len(seen)][:5]
                line.update(plain(f"checking {entry.name}: {case} {direction} {mode} "
                                  f"{dtype} ({len(seen) + 1} of {len(items)})"))

        if args.in_process:
            for item in items:
                progress(isolated.check(item))
        else:
            isolated.run(items, args.timeout, on_result=progress)
    return list(seen)


def _items(args, entry, cases, module, non_finite, dtypes) -> list[list]:
    """impls.isolated's items for the comparisons asked for: forward and non-finite inputs,
    then gradients, then module parity (on the CPU only), in the order the checker's own
    loops take them."""
    directions = directions_of(args, entry)
    modes = tuple(args.mode or MODES)
    names = [str(d).removeprefix("torch.") for d in dtypes]
    # The backend as given: the child loads it afresh, and a spec "pkg.mod:obj" may hold
    # an entry registered under another name, unknown to a new process by that name.
    tail, given = [args.device, args.tf32, args.seed], args.backend
    items = [[given, "forward", dtype, case.id, mode, *tail] for case in cases
             for mode in modes for dtype in names] if "forward" in directions else []
    if "forward" in directions:  # once, its other values random unless only exact is asked
        filled = "random" if "random" in modes else modes[0]
        items += [[given, "non-finite", dtype, i, filled, *tail] for i in non_finite
                  for dtype in names]
    items += [[given, direction, dtype, case.id, mode, *tail] for case in cases
              for direction in DIRECTIONS if direction in directions
              for mode in modes for dtype in names]
    if not args.no_module and args.device == "cpu":
        items += [[given, "module", dtype, f"{mc.id}/{pm}", "exact", *tail]
                  for mc, pm in module for dtype in names]
    return items


def directions_of(args, entry) -> list[str]:
    """--direction, or by default forward and, for a backend declaring autograd (the
    default declaration), both gradients: "all passed" must not leave out what training
    uses."""
    if args.direction:
        return args.direction
    return ["forward", *(DIRECTIONS if "autograd" in entry.features else ())]


def _print_json(entry, results, interrupted: bool = False) -> None:
    print(json.dumps({"backend": entry.name, "capabilities": entry.capabilities(),
                      "interrupted": interrupted, "summary": summarize(results),
                      "results": [r.to_dict() for r in results]}, indent=2))


def _scope(results) -> str:
    """What the comparisons covered, for the verdict line: "all passed" alone had read as
    if gradients were checked when only the forward pass was."""
    ran = [r for r in results if r.status != SKIPPED]
    kinds = dict.fromkeys(_kind(r) for r in ran)
    return f"{', '.join(kinds)}; {', '.join(sorted({r.dtype for r in ran}))}"


def _kind(result) -> str:
    if result.case.startswith("non-finite/"):
        return "non-finite values"
    if "/" in result.case:  # a module-parity id, "case/padding_mode"
        return "module parity"
    return getattr(result, "direction", "forward")  # a BackwardResult knows its direction


def _print_report(name: str, results, failed, interrupted: bool = False,
                  scope: str = "") -> None:
    print_table(f"{name}: {len(results)} comparisons against the float64 reference",
                ("feature", "passed", "failed", "skipped"),
                [[feature, row["passed"], row["failed"], row["skipped"]]
                 for feature, row in summarize(results).items()],
                right=("passed", "failed", "skipped"))
    for reason in sorted({r.reason for r in results if r.status == SKIPPED}):
        say(f"skipped: {reason}")
    for result in failed:
        say(result.repro())
    ran = sum(r.status != SKIPPED for r in results)
    verdict = f"{len(failed)} failed" if failed else "all passed" if ran else "nothing ran"
    say(f"{name}: {verdict}" + (f" ({scope})" if scope and ran else "")
        + (" of those run before the interruption (not all were)" if interrupted else ""))


if __name__ == "__main__":
    from impls.display import plain_warnings

    plain_warnings()
    sys.exit(main())

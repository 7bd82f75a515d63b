"""``python -m benchmarks COMMAND ...``: one argparse front, one subcommand per module.

Why a list of modules: each subcommand lives next to the code it drives and registers itself
with ``add_parser(subparsers)`` (setting ``func`` to a callable that takes the parsed
arguments and returns the exit code). Adding ``sweep`` means adding its module to COMMANDS.
Bad usage exits 2, as argparse does. A command whose module needs a package this Python
lacks (the gate needs rich; a GPU box may not be able to install it) is listed with what
it needs and fails with that when run, so the other commands (sweep, targets) still work.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: Command -> the module that defines ``add_parser(subparsers)`` for it; in --help order.
COMMANDS = {"shapes": "benchmarks.shapes", "sweep": "benchmarks.sweep",
            "merge": "benchmarks.sweep_report", "gate": "benchmarks.gate",
            "targets": "benchmarks.targets"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="convbench's benchmark commands.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    missing = {}
    for command, module in COMMANDS.items():
        try:
            importlib.import_module(module).add_parser(subparsers)
        except ModuleNotFoundError as exc:
            package = (exc.name or "").split(".")[0]
            if package in ("benchmarks", "impls", "reports", ""):
                raise  # our own code is broken: not a package to install
            missing[command] = (f"needs the package {package!r}, which this Python lacks "
                                f"(pip install {package})")
            subparsers.add_parser(command, help=f"unavailable: {missing[command]}")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in missing:  # before parsing: its options are unknown here
        print(f"python -m benchmarks {argv[0]}: error: {missing[argv[0]]}", file=sys.stderr)
        return 2
    # What follows "--" goes on to pytest (sweep) and nowhere else: split off before
    # parsing, so that a stray word ("sweep torch" for "sweep --backend torch") is a usage
    # error here, not a file name pytest fails to find after the sweep has started.
    passed_on = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args = parser.parse_args(argv)
    if passed_on and not hasattr(args, "pytest_args"):
        parser.error(f"{args.command} takes no arguments after --")
    if passed_on:
        args.pytest_args = passed_on
    from impls.memory_budget import env_error

    if env_error():  # before any case: not every backend's failure
        print(f"python -m benchmarks {args.command}: error: {env_error()}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    from impls.display import plain_warnings

    plain_warnings()
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before a sweep's own handling starts (importing torch)
        print("python -m benchmarks: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # e.g. `sweep --list | head`: the reader has gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)

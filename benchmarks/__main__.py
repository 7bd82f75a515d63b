"""``python -m benchmarks COMMAND ...``: one argparse front, one subcommand per module.

Why a list of modules: each subcommand lives next to the code it drives and registers itself
with ``add_parser(subparsers)`` (setting ``func`` to a callable that takes the parsed
arguments and returns the exit code). Adding ``sweep`` means adding its module to COMMANDS.
Bad usage exits 2, as argparse does.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that define ``add_parser(subparsers)``; their order is the order of --help.
COMMANDS = ("benchmarks.shapes", "benchmarks.sweep", "benchmarks.sweep_report",
            "benchmarks.gate",
            "benchmarks.targets")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="convbench's benchmark commands.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

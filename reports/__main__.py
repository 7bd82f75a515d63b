"""``python -m reports build ...``: the command line (see reports/build.py).

A subcommand, not a bare ``python -m reports``, so later commands (e.g. a comparison of two
commits for a PR comment) fit beside it without changing what ``build`` means.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    try:
        from reports import build
    except ModuleNotFoundError as exc:  # the charts need matplotlib, an optional extra
        if (exc.name or "").split(".")[0] in ("benchmarks", "impls", "reports", ""):
            raise  # our own code is broken: not a package to install
        print(f"python -m reports: error: needs the package {exc.name!r}, which this Python "
              "lacks (pip install 'convbench[report]')", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m reports")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("build", help="build index.html, summary.md and results.csv",
                            description=build.__doc__.split("\n\n")[0])
    build.add_arguments(p)
    p.set_defaults(func=build.build)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    from impls.display import plain_warnings

    plain_warnings()
    sys.exit(main())

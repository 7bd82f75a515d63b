"""Tables and lines for the command lines: rich's where installed, plain text where not.

Why a fallback: rich is a declared dependency, but the Python of a GPU box often cannot
install packages, and that is exactly where ``python -m impls check --device cuda`` and
``python -m benchmarks shapes`` are wanted. Without rich the same content prints as
tab-separated columns, which also reads well in a log.
"""

from __future__ import annotations

import contextlib
import sys

try:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
except ModuleNotFoundError:
    Console = Table = Text = None

#: Off a terminal rich assumes 80 columns and would fold every row; give it room.
WIDTH = 200


def print_table(title: str, columns, rows, *, right=(), caption: str = "",
                no_wrap=()) -> None:
    """``rows`` under ``columns`` (``right``: right-justified columns)."""
    if Table is None:
        print(title)
        for row in [columns, *rows]:
            print("\t".join(map(str, row)))
        if caption:
            print(caption)
        return
    table = Table(title=plain(title), caption=plain(caption) if caption else None)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left",
                         no_wrap=column in no_wrap)
    for row in rows:  # text: a case id "x[float32]" is no markup, a backend "m:a:" no emoji
        table.add_row(*(plain(str(cell)) for cell in row))
    Console(width=None if sys.stdout.isatty() else WIDTH).print(table)


def say(text: str) -> None:
    """A line printed as is: no markup, no colouring of the numbers in it."""
    if Console is None:
        print(text)
    else:
        Console(width=None if sys.stdout.isatty() else WIDTH).print(
            text, markup=False, emoji=False, highlight=False, soft_wrap=True)


def plain(text: str):
    """``text`` as rich shows it verbatim (no markup, no ":a:" emoji codes: a backend spec
    "pkg.mod:a:b" would lose letters), or the str itself without rich."""
    return text if Text is None else Text(text)


def status(text: str):
    """A live status line on stderr (rich's spinner), updated through the value it yields;
    None (nothing to update) without rich."""
    if Console is None:
        return contextlib.nullcontext(None)
    return Console(stderr=True).status(plain(text))


def plain_warnings() -> None:
    """Python warnings as one "warning: ..." line, for a command's user: the default form
    adds the file, line and source line of the code that warned, which say nothing to
    them. Called by the commands' ``__main__`` only, never on import."""
    import warnings

    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"

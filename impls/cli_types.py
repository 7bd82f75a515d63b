"""argparse ``type=`` functions shared by the command lines (``python -m impls check``, and
benchmarks' sweep, targets and gate): numbers refused with argparse's own message, which
names the option.

Why in impls: ``impls check --timeout`` needs the same rule as ``benchmarks sweep
--timeout``, and impls must not import benchmarks (a user's checker runs without it).
"""

from __future__ import annotations

import argparse
import math


def _number(kind, text: str, *, minimum, strict: bool, finite: bool = True):
    """argparse ``type=``: ``text`` as ``kind``, refused (argparse names the option) unless
    it is a number above ``minimum`` (``strict``) or at least ``minimum``."""
    what = "an integer" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    if finite and math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r}: need a finite number")
    if value < minimum or (strict and value == minimum):
        raise argparse.ArgumentTypeError(
            f"{text!r}: need {what} {'>' if strict else '>='} {minimum:g}")
    return value


def positive_seconds(text: str) -> float:
    """argparse ``type=`` for --budget: a finite number of seconds above 0."""
    return _number(float, text, minimum=0, strict=True)


def positive_or_inf_seconds(text: str) -> float:
    """argparse ``type=`` for --timeout and --limit: seconds above 0; "inf": none."""
    return _number(float, text, minimum=0, strict=True, finite=False)


def positive_fraction(text: str) -> float:
    """argparse ``type=`` for the gate's noise bands: a finite fraction above 0 (a band of
    0 or less would call unchanged code slower)."""
    return _number(float, text, minimum=0, strict=True)


def probability(text: str) -> float:
    """argparse ``type=`` for --confidence: a number strictly between 0 and 1."""
    value = _number(float, text, minimum=0, strict=True)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need a number < 1")
    return value


def count_at_least_1(text: str) -> int:
    """argparse ``type=`` for --threads and --min-rounds: an integer >= 1."""
    return _number(int, text, minimum=1, strict=False)

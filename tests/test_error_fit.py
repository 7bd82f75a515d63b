"""The Winograd error constants against a fresh measurement (impls.error_fit).

The constants are twice the worst coefficient measured over ~9,000 comparisons; a few
fresh random problems must stay under them, and a transform with one coefficient wrong in
its 4th digit must not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from impls.error_fit import coefficients, main
from impls.tolerances import WINOGRAD_COEFFICIENTS

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # tests/mutants.py, as tests/test_mutants.py loads it
    sys.path.insert(0, HERE)

import mutants  # noqa: E402


def _worst(measured: dict, form: str) -> float:
    return max(value for key, value in measured.items() if key[0] == form)


@pytest.mark.parametrize("name", sorted(WINOGRAD_COEFFICIENTS))
def test_the_constants_bound_a_fresh_measurement(name):
    measured = coefficients(name, trials=4, seed=7)
    coherent, normal = WINOGRAD_COEFFICIENTS[name]
    assert {key[0] for key in measured} == {"coherent", "normal"}
    assert {key[2] for key in measured} == {"float32", "float64"}
    assert 0 < _worst(measured, "coherent") <= coherent
    assert 0 < _worst(measured, "normal") <= normal


def test_a_wrong_transform_coefficient_is_far_outside():
    measured = coefficients(mutants.winograd_coefficient_rounded, trials=2, seed=3)
    assert _worst(measured, "normal") > 10 * WINOGRAD_COEFFICIENTS["winograd-f4"][1]


def test_the_command_prints_the_worst_beside_the_constant(capsys):
    assert main(["winograd-f2", "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "worst coherent:" in out and "in use: 8" in out and "small integers" in out

"""impls.isolated: the child-process runner under ``python -m impls check`` and the report's
correctness section (the misbehaving backends themselves are in test_user_backend.py)."""

from __future__ import annotations

import os
import time

import pytest

from impls import isolated
from impls.__main__ import main
from impls.backward import result_from_dict


def test_lines_already_in_the_pipe_are_read_without_waiting():
    """A burst of results in one write: select() cannot see what a buffered readline() has
    already taken, so the second result waited for the timeout and a hang was blamed on a
    comparison that had finished."""
    read, write = os.pipe()
    try:
        os.write(write, b"a\nb\npart")
        lines = isolated._Lines(os.fdopen(read, "rb", buffering=0))
        start = time.monotonic()
        assert (lines.next(5), lines.next(5), lines.next(0.05)) == ("a\n", "b\n", None)
        assert time.monotonic() - start < 1
        os.close(write)
        write = None
        assert lines.next(5) == ""  # the end: a cut-off last line is not a result
        assert lines.next(float("inf")) == ""
    finally:
        if write is not None:
            os.close(write)


def test_the_child_s_start_is_not_charged_to_a_comparison_s_timeout(capsys):
    """Starting the child imports torch (1-2 s): with --timeout 0.5 every comparison used
    to 'not finish'. The timeout is per comparison; the start has its own limit."""
    assert main(["check", "--backend", "torch", "--case", "valid-3x3", "--mode", "exact",
                 "--dtype", "float32", "--no-module", "--timeout", "0.5"]) == 0
    assert "torch: all passed" in capsys.readouterr().out


def test_a_gradient_result_keeps_its_direction_through_the_child():
    result = result_from_dict({"backend": "b", "case": "valid-3x3", "mode": "exact",
                               "dtype": "float32", "device": "cpu", "seed": 0,
                               "status": "failed", "direction": "backward-weights",
                               "tf32": False, "where": [0, 1]})
    assert result.direction == "backward-weights" and result.where == (0, 1)
    assert result.repro().endswith("--direction backward-weights")
    assert result.to_dict()["direction"] == "backward-weights"
    forward = result_from_dict({"backend": "b", "case": "valid-3x3", "mode": "exact",
                                "dtype": "float32", "device": "cpu", "seed": 0,
                                "status": "passed", "direction": "forward"})
    assert forward.repro().endswith("--seed 0 --direction forward")  # not all three


@pytest.mark.parametrize("text", ["0", "-1", "x"])
def test_a_timeout_must_be_positive(text, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--backend", "torch", "--timeout", text])
    assert exc.value.code == 2 and "--timeout" in capsys.readouterr().err

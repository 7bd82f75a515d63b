"""The regression gate: fail CI on a real slowdown of a backend, and never on noise.

``python -m benchmarks gate [BASE]`` (``nox -s gate -- BASE``) times the library of BASE
(a git ref; default the merge base with main) and of the working tree in the same job,
interleaved, over a small fixed gate set (cases.py), and exits 1 when a benchmark got
slower with statistical confidence beyond its threshold. ``--baseline FILE`` compares with
stored results instead, for when BASE cannot be built (CI's clone). Layout:

  cases.py     the gate set and the per-benchmark thresholds (the noise bands)
  worker.py    the process that times one tree's backends beside torch's conv2d
  measure.py   source trees, workers, interleaved rounds under a time budget
  stats.py     slowdown and its bootstrap confidence interval; the verdict rule
  verdicts.py  rows, the table, what fails
  baseline.py  stored results
  cli.py       the command; power.py measures the gate's own power and false-alarm rate
"""

from benchmarks.gate.cli import add_parser

__all__ = ["add_parser"]

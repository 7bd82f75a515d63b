"""Stored gate results: the samples a later run is compared with when BASE cannot be built.

What is kept per case is every round's per-call seconds of the backend and of torch's conv2d
measured beside it, so a comparison can use their *ratio*: a machine of the same kind but
another instance (a CI runner) moves both, and the ratio carries over. The file also says
where and when it was measured, and from which commit: updating it is a deliberate commit
whose message says why (see the README's gate section).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.gate.measure import Samples

FORMAT = "convbench-gate-baseline/1"
DEFAULT = Path(__file__).with_name("baseline.json")


def save(path: Path, results: dict[str, dict[str, Samples]], label: str, cases, meta: dict):
    data = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta,
            "cases": {}}
    for case in cases:
        s = results[case.key][label]
        if s.error:
            continue
        data["cases"][case.key] = {"backend": case.backend, "shape": case.shape,
                                   "descriptor": case.descriptor, "refusal": s.refusal,
                                   "call_s": s.call, "ref_s": s.ref}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def load(path: Path) -> dict:
    """The stored results; ValueError naming the file when it is not a gate baseline."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--baseline {path}: cannot read it: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"--baseline {path}: not a gate baseline (format {FORMAT!r}); "
                         "write one with `nox -s gate -- --save FILE`")
    return data

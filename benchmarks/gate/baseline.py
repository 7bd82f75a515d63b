"""Stored gate results: the samples a later run is compared with when BASE cannot be built.

What is kept per case is every round's per-call seconds of the backend and of torch's conv2d
measured beside it, so a comparison can use their *ratio*: a machine of the same kind but
another instance (a CI runner) moves both, and the ratio carries over. The file also says
where and when it was measured, and from which commit: updating it is a deliberate commit
whose message says why (see the README's gate section).

Ratios carry across instances of one kind of machine, not across kinds: this project's
2-core VM came up on a host with AMX one day and on one without it the next, and every ratio
to torch moved (winograd's +12% to +16%, naive's +35%). So a directory holds one baseline per
kind (asv keeps results per machine the same way), and the gate compares with the one
recorded on a machine of this kind.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import datetime
from pathlib import Path

from benchmarks.gate.measure import Samples

FORMAT = "convbench-gate-baseline/1"
#: The committed baselines, one file per kind of machine (CI's hosts are of several).
DEFAULT = Path(__file__).with_name("baselines")


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


def kind(machine: dict) -> dict:
    """What must match for a stored baseline's ratios to carry over to another machine: the
    device timed, the CPU (its name is often generic, "Intel(R) Xeon(R) Processor": its
    vector and matrix extensions tell the generations apart), torch's threads and version,
    and the GPU."""
    return {"device": machine.get("device"), "cpu": machine.get("cpu"),
            "cpu_flags": machine.get("cpu_flags"), "torch_threads": machine.get("torch_threads"),
            "torch": machine.get("torch"), "gpu": (machine.get("gpu") or {}).get("name")}


def machine_of(data: dict) -> dict:
    """A stored baseline's machine, with the device it timed (kept beside it in the file)."""
    return {**(data.get("machine") or {}), "device": data.get("device", "cpu")}


def other_kind(stored: dict, here: dict) -> str:
    """How the baseline's machine differs from this one in what moves ratios, or "". A field
    the baseline lacks differs too: its machine cannot be shown to be of this kind."""
    a, b = kind(stored), kind(here)
    return ", ".join(f"{k} {a[k]} there, {b[k]} here" for k in a if a[k] != b[k])


def kind_name(machine: dict) -> str:
    """A file name for a baseline of this kind of machine (what ``--record DIR`` writes):
    readable (CPU, its widest extension, threads, torch, GPU), and a hash of the whole kind,
    so that two kinds alike in those words do not overwrite each other's file."""
    flags = machine.get("cpu_flags") or []
    isa = next((name for flag, name in (("amx_tile", "amx"), ("avx512f", "avx512"),
                                        ("avx2", "avx2")) if flag in flags), "cpu")
    gpu = (machine.get("gpu") or {}).get("name") or ""
    parts = [machine.get("cpu") or "cpu", isa, f"{machine.get('torch_threads')}threads",
             f"torch{str(machine.get('torch', '')).split('+')[0]}", gpu]
    slug = "-".join(p for p in parts if p).lower()
    slug = re.sub(r"[^a-z0-9.]+", "-", re.sub(r"\(r\)|\(tm\)", "", slug)).strip("-")
    digest = hashlib.sha1(json.dumps(kind(machine), sort_keys=True).encode()).hexdigest()
    return f"{slug}-{digest[:6]}.json"


def pick(path: Path, here: dict) -> tuple[Path, str]:
    """The baseline to compare with, and why it: ``path`` itself when it is a file; in a
    directory, the newest recorded on this kind of machine, else the newest of all (the
    caller warns that its machine is of another kind). A file there that is not a readable
    baseline is passed over, and named in the reason, rather than stopping the gate."""
    path = Path(path)
    if not path.is_dir():
        return path, ""
    files = sorted(path.glob("*.json"))
    stored, unreadable = [], []
    for f in files:
        try:
            stored.append((load(f), f))
        except ValueError as exc:
            unreadable.append(str(exc).removeprefix("--baseline "))
    if not stored:
        raise ValueError(f"--baseline {path}: no baseline (*.json) in this directory"
                         + "".join(f"; {why}" for why in unreadable)
                         + f"; record one with `nox -s gate -- --record {path}`")
    stored.sort(key=lambda df: created(df[0]), reverse=True)
    same = [f for data, f in stored if not other_kind(machine_of(data), here)]
    passed_over = "".join(f"; passed over {why}" for why in unreadable)
    if same:
        return same[0], "recorded on this kind of machine" + passed_over
    return stored[0][1], (f"none of {len(stored)} in {path} was recorded on this kind of "
                          "machine: the newest" + passed_over)


def created(data: dict) -> float:
    """When a baseline was recorded, in seconds since the epoch (0 when it does not say):
    its ``created`` carries the recording machine's UTC offset, so two files' texts do not
    sort in time order when their machines' time zones differ."""
    text = str(data.get("created", ""))
    for form in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, form).timestamp()
        except ValueError:
            continue
    return 0.0

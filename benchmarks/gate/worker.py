"""A gate worker: one process timing one source tree's backends, on the gate's orders.

Why a process per tree: the gate compares the library of two trees (BASE and the working
tree) in one job, so each tree's ``impls`` must be imported in a process of its own. This
file is always the *working tree's* copy, run with the tree under test first on PYTHONPATH:
the measuring code is the same on both sides and only the library differs.

Protocol: one JSON object per line on stdin, one reply per line on the original stdout
(anything a library prints goes to stderr instead). Only one worker runs at a time — the
parent waits for each reply — so the two trees never compete for the cores.

Each case is timed together with ``torch.nn.functional.conv2d`` on the same inputs, in
alternating blocks: the ratio of the two removes what drifts with the machine (clock,
thermal state, a neighbour's load) and stays comparable across machines of one kind.

What it must not do: import anything of ``benchmarks`` (the tree under test may not have
it), or time anything but the backend's own callable with the front end's arguments.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from statistics import median_high

import torch
import torch.nn.functional as F

#: Test-only switch: "NAME=FACTOR[,NAME=FACTOR]" makes this worker's calls of backend NAME
#: take FACTOR times as long (a busy-wait after each call, sized from the median of the
#: call's own times): how the gate's self-test and power script inject a known slowdown.
INJECT_ENV = "CONVBENCH_GATE_INJECT"


def parse_inject(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, factor = item.rpartition("=")
        if not name or float(factor) < 1:
            raise ValueError(f"{INJECT_ENV}={text!r}: expected NAME=FACTOR with FACTOR >= 1")
        out[name] = float(factor)
    return out


def slowed(call, factor: float, window: int = 63, every: int = 16):
    """``call`` made ``factor`` times slower by spinning after it (no sleep: a sleeping
    thread would let the CPU clock down and change what the next call costs).

    The spin is (factor - 1) times the median of the call's last ``window`` times,
    refreshed every ``every`` calls: a real regression adds about the same work to every
    call. Spinning in proportion to each call's own time would add that call's noise a
    second time (a 10% injection read as +4..+19% on 0.1 ms calls); sizing it once from the
    first, cold calls overshot (+12..+13%); a median over every call so far cost a sort
    of thousands of times every 16 calls (+70% on 0.1 ms calls)."""
    recent: deque[float] = deque(maxlen=window)
    median, calls = 0.0, 0

    def slow():
        nonlocal median, calls
        start = time.perf_counter()
        result = call()
        now = time.perf_counter()
        recent.append(now - start)
        calls += 1
        if calls <= 3 or calls % every == 0:
            median = median_high(recent)
        end = now + (factor - 1) * median
        while time.perf_counter() < end:
            pass
        return result
    return slow


def synchronizer(device: str):
    if device.startswith("cuda"):
        return lambda: torch.cuda.synchronize(torch.device(device))
    return lambda: None


class Case:
    """One backend on one problem: its call, torch's call on the same inputs, or why not."""

    def __init__(self, spec: dict, inject: dict[str, float], device: str):
        import impls
        from impls.frontend import normalize

        self.sync = synchronizer(device)
        # Pairs as tuples, as the front end hands them (a backend may hash them).
        args = (*(tuple(spec[k]) for k in ("stride", "padding", "dilation")), spec["groups"])
        g = torch.Generator().manual_seed(0)
        x = torch.randn(spec["input_shape"], generator=g).to(device)
        w = torch.randn(spec["weight_shape"], generator=g).to(device)
        self.ref = lambda: F.conv2d(x, w, None, *args)
        try:
            entry = impls.get_backend(spec["backend"])
        except ValueError:  # not in this tree (added later, or removed)
            self.refusal = f"no backend {spec['backend']!r} in this tree"
            return
        # The front end's own account of the features a call uses (it validates too).
        features = normalize(x, w, None, *args).features()
        self.refusal = entry.unsupported(device=device, dtype=torch.float32, features=features)
        refuses = getattr(entry, "refuses", None)  # older trees may lack it
        if not self.refusal and refuses is not None:
            self.refusal = refuses(x.shape, w.shape, *args)
        call = lambda: entry.fn(x, w, None, *args)  # noqa: E731
        factor = inject.get(entry.name)
        self.call = slowed(call, factor) if factor else call

    def block(self, fn, calls: int) -> float:
        self.sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        self.sync()
        return time.perf_counter() - start


def serve(requests, reply) -> None:
    """Answer requests until "quit" or the end of input."""
    inject = parse_inject(os.environ.get(INJECT_ENV, ""))
    device = os.environ.get("CONVBENCH_GATE_DEVICE", "cpu")
    import impls

    reply({"impls": os.path.dirname(impls.__file__), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "inject": inject})
    cases: dict[str, Case] = {}
    for line in requests:
        msg = json.loads(line)
        try:
            reply(handle(msg, cases, inject, device))
        except Exception as exc:  # a backend that raises: that case's error, not the worker's
            reply({"error": f"{type(exc).__name__}: {exc}"})
        if msg["op"] == "quit":
            return


def handle(msg: dict, cases: dict, inject: dict, device: str) -> dict:
    op = msg["op"]
    if op == "setup":  # build the case and call it twice: lazy setup is not timed later
        case = cases[msg["key"]] = Case(msg["case"], inject, device)
        if not case.refusal:
            for _ in range(2):
                case.block(case.call, 1), case.block(case.ref, 1)
        return {"refusal": case.refusal}
    if op == "calibrate":  # seconds per call, the faster of a few
        case = cases[msg["key"]]
        return {"call": min(case.block(case.call, 1) for _ in range(3)),
                "ref": min(case.block(case.ref, 1) for _ in range(3))}
    if op == "measure":  # one block of each asked for ("call", "ref"), in that order
        case = cases[msg["key"]]
        fns = {"call": case.call, "ref": case.ref}
        # The other worker just ran: caches hold its data, its threads sleep. Half a block
        # of untimed calls first, or the timed block pays for that: with one warm call
        # the 99% intervals were twice as wide, and a first block without any read 20%
        # slow on 1 ms calls (enough to fake a regression).
        for which in msg["order"]:
            case.block(fns[which], max(1, msg["calls"][which] // 2))
        return {which: case.block(fns[which], msg["calls"][which]) for which in msg["order"]}
    if op == "quit":
        return {"bye": True}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    # Replies go to the original stdout; a library printing to stdout goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    threads = os.environ.get("CONVBENCH_GATE_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    serve(sys.stdin, lambda obj: out.write(json.dumps(obj) + "\n"))


if __name__ == "__main__":
    main()

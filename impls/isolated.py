"""Checker comparisons in a child process, each under a time limit.

Why: the backend under test may hang (a deadlocked kernel; oneDNN's float16 depthwise
stall) or take its process down (a segfault in a C extension). In-process, either ends the
whole check with nothing printed, and a hang inside native code ignores Ctrl-C. Here one
child runs the comparisons in order and streams one result line each; a child stuck on one
past ``timeout_s`` is killed, that comparison becomes an ``error`` row saying so, and a new
child carries on after it. One child serves every comparison that behaves, so the price is
a single start (importing torch). ``python -m impls check`` runs its comparisons this way,
and so does the report's correctness section (reports.correctness, which adds a budget).

An item is a JSON list: [backend, direction, dtype, case, mode, device, tf32, seed], where
direction is "forward", a backward direction (impls.backward.DIRECTIONS), or "module" (the
case is then a module-parity id, "module-case/padding_mode", as repro lines name them).
The child finds the backend by name, so it must be one a fresh process can load: a built-in,
an entry point, or a "package.module:function" on the parent's sys.path.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable

#: Marks the child's result lines: a backend that prints to stdout must not be read as one.
MARK = "convbench-check "


def run(items: list[list], timeout_s: float, budget_s: float = math.inf, guaranteed: int = 0,
        on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """A result dict per item, in order, for as many items as ``budget_s`` (seconds of
    checking, child starts not counted) allows; the first ``guaranteed`` items run whatever
    the budget. The caller says what the items left over mean (len(result) < len(items)).
    ``timeout_s`` (may be inf) limits each comparison, not the child's start (STARTUP_S).
    ``on_result`` sees each result as it comes (progress). Ctrl-C kills the child and
    propagates. After STUCK_IN_A_ROW comparisons in a row did not finish, the rest are
    error rows, not run: a backend that hangs on every call would hold a whole check for
    a day (570 comparisons x 120 s)."""
    out, deadline, start, stuck = [], time.monotonic() + budget_s, 0, 0

    def done(result: dict) -> None:
        out.append(result)
        if on_result is not None:
            on_result(result)

    while start < len(items):
        child = _spawn(items[start:])
        spawned, lines = time.monotonic(), _Lines(child.stdout)
        why, ready = "", False
        try:
            while start < len(items) and not why:
                budgeted = ready and start >= guaranteed
                wait = min(timeout_s, deadline - time.monotonic()) if budgeted else \
                    timeout_s if ready else STARTUP_S
                line = lines.next(wait)
                if line is None:
                    why = "budget" if budgeted and time.monotonic() >= deadline - 0.01 \
                        else "stuck"
                elif not line:
                    why = "died"
                elif line == MARK + "ready\n":
                    deadline, ready = deadline + time.monotonic() - spawned, True
                elif line.startswith(MARK):
                    start, stuck = start + 1, 0
                    done(json.loads(line[len(MARK):]))
        finally:  # stuck, over budget, or interrupted: the child goes too
            _end(child, wait_s=EXIT_WAIT_S if why == "died" else 0.0)
        if why == "budget":
            return out
        if why and not ready:  # no comparison ran: a new child would fail alike
            reason = _dead_reason(why, child.returncode, STARTUP_S)
            for item in items[start:]:
                done(row(item, "error", f"the checking process failed to start: {reason}"))
            return out
        if why and start < len(items):
            start, stuck = start + 1, stuck + 1 if why == "stuck" else 0
            done(row(items[start - 1], "error",
                     f"the comparison {_dead_reason(why, child.returncode, timeout_s)}"))
        if stuck >= STUCK_IN_A_ROW:
            for item in items[start:]:
                done(row(item, "error", f"not run: the {stuck} comparisons before it "
                         f"{UNFINISHED} {timeout_s:g} s each (name cases with --case to run "
                         "them)"))
            return out
    return out


#: Comparisons in a row that did not finish, after which the rest are not run.
STUCK_IN_A_ROW = 3
#: In the reason of every error row for a comparison killed at its time limit, or not run
#: after such: what :func:`unfinished` looks for.
UNFINISHED = "did not finish in"


def unfinished(reason: str | None) -> bool:
    """Whether an error row's reason says its comparison gave no answer in time (rather
    than a wrong one, an exception or a crash)."""
    return UNFINISHED in (reason or "")


#: Seconds a child may take to start (import torch and the backend) before it is given up.
STARTUP_S = 120.0


class _Lines:
    """Whole lines from a child's stdout, each within a time limit. Read from the raw
    descriptor: select() cannot see what a buffered readline() already took from the pipe
    (a burst of results followed by a hang blamed the wrong comparison)."""

    def __init__(self, stream) -> None:
        self.stream = stream  # held: the descriptor lives as long as its file object
        self.fd, self.buffer, self.eof = stream.fileno(), b"", False
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)

    def next(self, wait: float) -> str | None:
        """The next line; "" at the end of the output; None when ``wait`` s pass first."""
        until = time.monotonic() + wait
        while b"\n" not in self.buffer:
            if self.eof:
                return ""
            left = until - time.monotonic()
            # select() takes no infinity (and overflows on a year): wait without a limit
            if left <= 0 or not self.selector.select(None if left > 1e7 else left):
                return None
            chunk = os.read(self.fd, 1 << 16)
            self.eof = not chunk
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace") + "\n"


#: Seconds a child whose output ended gets to finish exiting before it is killed: its exit
#: status says why it ended (sys.exit(4) inside a backend), a kill would say "signal 9".
EXIT_WAIT_S = 10.0


def _end(child: subprocess.Popen, wait_s: float) -> None:
    if wait_s:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=wait_s)
    if child.poll() is None:
        child.kill()
    child.wait()
    child.stdout.close()


def _spawn(items: list[list]) -> subprocess.Popen:
    # The child imports what this process can (sys.path: a user's package, a test's
    # module directory).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or "." for p in sys.path)}
    child = subprocess.Popen([sys.executable, "-m", "impls.isolated"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        child.stdin.write(json.dumps(items))
    except BrokenPipeError:  # a child that died at once: its exit status says why
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
    return child


def row(item: list, status: str, reason: str) -> dict:
    """A result dict for an item that produced none (killed, out of budget)."""
    from impls import non_finite
    from impls.cases import CASES_BY_ID
    from impls.checker import descriptor

    name, direction, dtype, case, mode, device, tf32, seed = item
    features = None
    if direction == "module":
        module_case, padding_mode = _module_case(case)
        base = module_case.case
        where = descriptor(base) + (f" padding_mode={padding_mode}" if padding_mode else "")
    elif direction == "non-finite":  # not in the case table: the backend's own problem
        base = non_finite.problem(name)
        where = non_finite.where(base, case)
        features = [f"non-finite {non_finite.parse(case)[1]}"]
    else:
        base = CASES_BY_ID[case]
        where = descriptor(base)
    return {"backend": name, "case": case, "mode": mode, "dtype": dtype, "device": device,
            "seed": seed, "tf32": tf32, "direction": direction, "status": status,
            "max_error": None, "reason": reason, "features": features or base.tags(),
            "descriptor": where}


def _module_case(case: str):
    """(module case, padding mode) of a module-parity id, "module-case/padding_mode"."""
    from impls.parity import MODULE_CASES

    module_id, _, padding_mode = case.partition("/")
    return next(m for m in MODULE_CASES if m.id == module_id), padding_mode


def _dead_reason(why: str, returncode: int | None, limit_s: float) -> str:
    return (f"{UNFINISHED} {limit_s:g} s (killed)" if why == "stuck" else
            f"killed its process (signal {-returncode})" if returncode and returncode < 0
            else f"ended its process (exit status {returncode})")


def check(item: list) -> dict:
    """Run one item here (the child's side): the checker's result as a dict."""
    import torch

    from impls.backward import check_backward
    from impls.cases import CASES_BY_ID
    from impls.checker import check_case
    from impls.non_finite import check_non_finite
    from impls.parity import check_module
    from impls.registry import get_backend

    name, direction, dtype, case, mode, device, tf32, seed = item
    entry, dtype_ = get_backend(name), getattr(torch, dtype)
    if device.startswith("cuda"):  # as impls check --tf32 sets it for cuDNN and triton
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    if direction == "module":
        result = check_module(entry, *_module_case(case), dtype_, seed)
    elif direction == "non-finite":
        result = check_non_finite(entry, case, dtype_, device, seed, mode)
    elif direction == "forward":
        result = check_case(entry, CASES_BY_ID[case], mode, dtype_, device, seed, tf32)
    else:
        result = check_backward(entry, CASES_BY_ID[case], direction, mode, dtype_, device,
                                seed, tf32)
    # Under the item's name: a spec may load an entry registered under another.
    return {**result.to_dict(), "backend": name, "direction": direction, "tf32": tf32}


def _child() -> None:
    # Results go to the original stdout; what the backend prints goes to stderr, so that
    # a print without a newline cannot glue itself onto a result line.
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    items = json.load(sys.stdin)
    _load(items)
    print(MARK + "ready", file=results, flush=True)
    for item in items:
        print(MARK + json.dumps(check(item)), file=results, flush=True)


def _load(items: list[list]) -> None:
    """Import what :func:`check` runs and load the items' backends, so that the start
    (STARTUP_S) pays for it rather than the first comparison's time limit: loading the
    registry imports Triton, over a second on the H200 of 2026-11-27, where 0.5-s limits
    killed the first comparison of each start. A backend that does not load is left to its
    comparisons, which report why."""
    # torch.autograd.grad imports this on its first call (0.6 s here).
    import torch.fx.experimental.symbolic_shapes  # noqa: F401

    from impls import backward, checker, non_finite, parity  # noqa: F401
    from impls.registry import get_backend

    for name in dict.fromkeys(item[0] for item in items):
        with contextlib.suppress(Exception):  # reported per comparison by check()
            get_backend(name)


if __name__ == "__main__":
    try:
        _child()
    except KeyboardInterrupt:  # Ctrl-C at a terminal reaches the whole process group: the
        os._exit(130)  # parent reports what ran and kills this child; no traceback here

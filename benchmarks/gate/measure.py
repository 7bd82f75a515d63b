"""Measuring for the gate: source trees, one worker process per tree, interleaved rounds.

Why interleaved rounds: a shared CI machine drifts (another job starts, the clock steps
down). Each round measures every case on every side back to back, the order of the sides
alternating from round to round (ABBA), so a drift lands on both sides alike and cancels
in each round's ratio. Rounds go on until a time budget is spent (and half of it again to
re-measure a slower case, see cli._confirm): the gate's cost is bounded, and its precision
is whatever that time buys (shown as the intervals' width).

What it must not do: run two workers at once (they would share 2 cores), or let one
broken case end the run: a case whose worker dies or hangs is recorded as an error, the
worker is restarted, the other cases go on.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import select
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from benchmarks.gate.cases import GateCase
from benchmarks.gate.worker import INJECT_ENV
from benchmarks.sweep import MALLOC_ENV

WORKER = Path(__file__).with_name("worker.py")
#: A timed block of calls lasts at least this long: long enough that the timer and one
#: scheduling hiccup are small against it, short enough for many rounds per minute.
BLOCK_S = 0.02
#: A reply slower than this means a hung case: its worker is killed.
REPLY_TIMEOUT_S = 120.0
#: Rounds of every case; fewer than MIN_ROUNDS gives no interval worth the name.
MIN_ROUNDS, MAX_ROUNDS = 8, 400
_RUN = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


def git(*args: str, cwd: Path | str = ".") -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


@contextmanager
def checkout(ref: str, repo: Path | str = "."):
    """The tree of commit ``ref`` in a temporary directory (git archive: no worktree
    bookkeeping left behind), yielded as (path, full commit hash)."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=repo)
    data = subprocess.run(["git", "archive", "--format=tar", commit], cwd=repo,
                          capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory(prefix=f"convbench-gate-{commit[:10]}-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            # The "data" filter (Python >= 3.11.4) refuses links out of the directory.
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, **kwargs)
        yield Path(tmp), commit


class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process timing the library of ``tree`` (see worker.py)."""

    def __init__(self, label: str, tree: Path, inject: str = "", device: str = "cpu"):
        self.label, self.tree, self.inject, self.device = label, Path(tree), inject, device
        self.ready: set[str] = set()
        self._start()

    def _start(self) -> None:
        env = {**os.environ, **{k: os.environ.get(k, v) for k, v in MALLOC_ENV.items()}}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.tree),
                                                          os.environ.get("PYTHONPATH")]))
        env[INJECT_ENV], env["CONVBENCH_GATE_DEVICE"] = self.inject, self.device
        # The same string hashes on both sides: Python-heavy code (naive) was 9% apart
        # between two processes of the same tree with random hash seeds.
        env["PYTHONHASHSEED"] = "0"
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed with the worker)
        # cwd is the tree, and `python -c` puts cwd first on sys.path: the tree's impls wins
        # over an installed (editable) one.
        self.proc = subprocess.Popen([sys.executable, "-c", _RUN, str(WORKER)], cwd=self.tree,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.ready = set()
        self.hello = self._read(REPLY_TIMEOUT_S)
        where = Path(self.hello["impls"]).resolve()
        if not where.is_relative_to(self.tree.resolve()):
            self.close()
            raise WorkerError(f"{self.label}: imported impls from {where}, not from "
                              f"{self.tree}: is another copy installed non-editable?")

    def ask(self, msg: dict, timeout: float = REPLY_TIMEOUT_S) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def _read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            why = f"no reply in {timeout:.0f} s" if not ready else "it exited"
            self.proc.kill()
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:]
            raise WorkerError(f"{self.label} worker: {why}\n{tail}")
        return json.loads(line)

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        if self.proc.poll() is None:
            with suppress(WorkerError, OSError):
                self.ask({"op": "quit"}, timeout=5)
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()


@dataclass
class Samples:
    """Per-call seconds of one case on one side: the backend's and torch's, per round."""

    call: list[float] = field(default_factory=list)
    ref: list[float] = field(default_factory=list)
    error: str = ""
    refusal: str = ""

    @property
    def ratio(self) -> list[float]:
        return [c / r for c, r in zip(self.call, self.ref)]


def setup(worker: Worker, case: GateCase, samples: Samples) -> bool:
    """Build ``case`` in ``worker``; False (with the reason in ``samples``) if it can't run."""
    if case.key in worker.ready:
        return True
    try:
        reply = worker.ask({"op": "setup", "key": case.key, "case": case.request()})
    except WorkerError as exc:
        samples.error = str(exc)
        worker.restart()
        return False
    samples.error = reply.get("error", "")
    samples.refusal = reply.get("refusal", "")
    if samples.error or samples.refusal:
        return False
    worker.ready.add(case.key)
    return True


def calls_per_block(worker: Worker, case: GateCase) -> dict[str, int]:
    """Calls of the backend and of torch that make a block of about BLOCK_S each."""
    per_call = worker.ask({"op": "calibrate", "key": case.key})
    if "error" in per_call:
        raise WorkerError(per_call["error"])
    return {k: max(1, math.ceil(BLOCK_S / max(per_call[k], 1e-7))) for k in ("call", "ref")}


def run_rounds(cases: list[GateCase], workers: list[Worker], budget_s: float,
               min_rounds: int = MIN_ROUNDS, seed: int = 0, with_ref: bool = True,
               known: frozenset[str] | None = None) -> dict[str, dict[str, Samples]]:
    """Samples per case key and worker label, from rounds over every case and side.

    ``with_ref=False`` times the backend alone, without torch's block beside it: when the
    decision compares times paired within a round, torch's blocks would only halve the
    rounds the budget buys. Given ``known`` (the backends a stored baseline holds; empty
    without one), a backend that no worker has and ``known`` lacks is a typo: ValueError
    once every side is set up, before any round (the command line's --backend)."""
    results = {c.key: {w.label: Samples() for w in workers} for c in cases}
    live, calls = [], {}
    for case in cases:
        # Every side is set up (no short cut): each side's refusal goes into the table.
        if all([setup(w, case, results[case.key][w.label]) for w in workers]):
            try:  # the first side sizes the blocks; every side then runs the same counts
                calls[case.key] = calls_per_block(workers[0], case)
                live.append(case)
            except WorkerError as exc:  # it killed the worker: the next case needs one
                results[case.key][workers[0].label].error = str(exc)
                workers[0].restart()
    nowhere = sorted({c.backend for c in cases if all(
        results[c.key][w.label].refusal.startswith("no backend ") for w in workers)}
        - (known or set()))
    if known is not None and nowhere:
        where = "either tree" if len(workers) > 1 else "the working tree or the baseline"
        raise ValueError(f"--backend {', '.join(nowhere)}: no such backend in {where}")
    rng, rounds, deadline = random.Random(seed), 0, time.perf_counter() + budget_s
    with _progress(budget_s) as (bar, task):
        while live and rounds < MAX_ROUNDS and (rounds < min_rounds
                                                or time.perf_counter() < deadline):
            for case in rng.sample(live, len(live)):
                # Balanced over every 4 rounds: each side goes first in half of them, and
                # within a side the backend's block comes first in half, the same for both
                # sides in a round (an order effect must never fall on one side only).
                sides = workers if (rounds + cases.index(case)) % 2 == 0 else workers[::-1]
                order = (["call", "ref"] if (rounds // 2) % 2 == 0 else ["ref", "call"]
                         ) if with_ref else ["call"]
                for worker in sides:
                    if not _sample(worker, case, calls[case.key], order,
                                   results[case.key][worker.label]):
                        live.remove(case)
                        break
            rounds += 1
            bar.update(task, completed=min(budget_s, budget_s - deadline + time.perf_counter()),
                       description=f"gate: round {rounds}, {len(live)} cases")
    return results


def _sample(worker: Worker, case: GateCase, calls: dict, order: list[str],
            samples: Samples) -> bool:
    if not setup(worker, case, samples):  # a restarted worker builds its cases again
        return False
    try:
        reply = worker.ask({"op": "measure", "key": case.key, "calls": calls, "order": order})
    except WorkerError as exc:
        samples.error = str(exc)
        worker.restart()
        return False
    if "error" in reply:
        samples.error = reply["error"]
        return False
    samples.call.append(reply["call"] / calls["call"])
    if "ref" in reply:
        samples.ref.append(reply["ref"] / calls["ref"])
    return True


@contextmanager
def _progress(budget_s: float):
    """A progress bar over the time budget, on stderr (stdout carries the table)."""
    from rich.console import Console

    columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield bar, bar.add_task("gate", total=budget_s)

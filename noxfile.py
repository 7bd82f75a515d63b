"""What a user runs. Each session is thin; dependencies come from pyproject's extras and
versions from constraints.txt (torch 2.13.0 there, so pip takes the CPU wheel on disk
instead of downloading a multi-GB CUDA build). ``session.posargs`` always pass through.

    nox -s bench                 the main job: sweep every backend (forward; backward too on
                                 resnet50), then build the report
    nox -s report                reports/out/index.html from sweep results, checked in Chromium
    nox -s asv                   the asv suite on this commit, then the dashboard (.asv/html)
    nox -s tests                 the test suite (pytest, parallel with xdist)
    nox -s check -- --backend pkg.mod:fn     check any backend, a user's included
    nox -s lint                  ruff
    nox -s gpu                   the suite on a CUDA device (skips without one)
    nox -s gate -- [BASE]        fail on a significant slowdown against BASE (or --baseline FILE)
    nox -s targets               the fast backends' speed targets, measured in one run
"""

from __future__ import annotations

import nox
import nox.command

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

CONSTRAINTS = ("-c", "constraints.txt")


def install(session: nox.Session, *extras: str) -> None:
    """Install the project with ``extras`` under the pinned constraints."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(*CONSTRAINTS, "-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (all backends, both fill modes, every dtype they declare)."""
    install(session, "test", "triton", "bench")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session
def check(session: nox.Session) -> None:
    """Check one backend against the reference: nox -s check -- --backend NAME|pkg.mod:fn."""
    install(session, "triton")
    session.run("python", "-m", "impls", "check", *(session.posargs or ["--backend", "torch"]))


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    """Run the suite on CUDA (fp32, TF32, fp16, bf16); skips where there is no CUDA device."""
    install(session, "test", "triton")
    has_cuda = session.run("python", "-c", "import torch; print(torch.cuda.is_available())",
                           silent=True)
    if "True" not in (has_cuda or ""):
        session.skip("no CUDA device: torch.cuda.is_available() is False")
    session.run("pytest", "--device", "cuda", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Sweep every backend (pytest-benchmark): forward over resnet50, large-kernel and
    grid-small, backward-data and backward-weights over resnet50; posargs are sweep options,
    e.g. -- --direction all, or --shape-set resnet50 --backend torch --shard 1/4. Then build
    the report, also when cases failed, timed out or crashed (the sweep exits 1; not after
    bad usage, 2, which measured nothing): its table of what was not timed is what a
    failing backend's author needs; the session still fails. Results: reports/sweeps/."""
    install(session, "bench")
    report = ["python", "-m", "reports", "build", *_results_option(session.posargs)]
    try:
        session.run("python", "-m", "benchmarks", "sweep", *session.posargs)
    except nox.command.CommandFailed as exc:
        if getattr(exc, "return_code", None) == 1:  # not bad usage (2), not Ctrl-C (130)
            session.run(*report)
        raise
    session.run(*report)


def _results_option(posargs: list[str]) -> list[str]:
    """The results file the sweep's own options name (--results X, --results=X), for the
    report to build from: without it, the report takes the newest file in reports/sweeps/,
    which is the sweep's own only when the sweep wrote there."""
    value = _option_value(posargs, "--results")
    return [value] if value else []


@nox.session
def report(session: nox.Session) -> None:
    """Build reports/out/ (index.html, summary.md, results.csv) from sweep results
    (posargs: result files, --out DIR, --correctness FILE), then open it in headless
    Chromium (skips with the apt command where Chromium is missing)."""
    install(session, "report", "test")
    session.run("python", "-m", "reports", "build", *session.posargs)
    session.run("pytest", "-m", "browser", "tests/test_report_browser.py",
                env={"CONVBENCH_REPORT_DIR": _option_value(session.posargs, "--out")
                     or "reports/out"})


def _option_value(posargs: list[str], option: str) -> str | None:
    """The value posargs give ``option`` (``--out X`` or ``--out=X``; the last wins)."""
    value = None
    for i, arg in enumerate(posargs):
        if arg == option and i + 1 < len(posargs):
            value = posargs[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


@nox.session
def asv(session: nox.Session) -> None:
    """asv: time this tree, publish the dashboard to .asv/html; posargs are an asv command.

    nox -s asv                           run the suite on the working tree (this venv, results
                                         filed under HEAD), then publish .asv/html/index.html
    nox -s asv -- run HEAD~3..HEAD       history: asv builds each commit in its own virtualenv
    nox -s asv -- run -b gflops --quick  any `asv run` options (--quick saves nothing)
    nox -s asv -- continuous main HEAD   compare two commits; `compare A B` compares results
    nox -s asv -- preview                serve the dashboard

    The machine (threads and GPU in its name: benchmarks/asv_bench/machine.py) is registered
    first and passed as --machine to the commands that take it; `run` is followed by publish.
    """
    install(session, "bench")
    machine = session.run("python", "-m", "benchmarks.asv_bench.machine", silent=True)
    machine = machine.strip().splitlines()[-1]
    head = session.run("git", "rev-parse", "HEAD", external=True, silent=True).strip()
    command, *args = session.posargs or ["run", "--environment", "existing",
                                         "--set-commit-hash", head]
    if command in ("run", "continuous", "compare", "show", "find") and not any(
            a in ("-m", "--machine") or a.startswith("--machine=") for a in args):
        args = ["--machine", machine, *args]
    session.run("asv", command, *args)
    if command in ("run", "continuous"):
        session.run("asv", "publish")


@nox.session
def gate(session: nox.Session) -> None:
    """Fail on a statistically significant slowdown: nox -s gate -- [BASE] [--quick],
    or -- --baseline FILE (stored results), -- --self-test, -- --save FILE."""
    install(session, "bench")
    session.run("python", "-m", "benchmarks", "gate", *session.posargs)


@nox.session
def targets(session: nox.Session) -> None:
    """Measure the speed targets in one run (~5 min: each CPU case paired with torch) and
    print the README's table."""
    install(session, "bench")
    session.run("python", "-m", "benchmarks", "targets", *session.posargs)

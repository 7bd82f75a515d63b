"""What a user runs. Each session is thin; dependencies come from pyproject's extras and
versions from constraints.txt (torch 2.13.0 there, so pip takes the CPU wheel on disk
instead of downloading a multi-GB CUDA build). ``session.posargs`` always pass through.

    nox -s tests                 the correctness suite (pytest, parallel with xdist)
    nox -s check -- --backend pkg.mod:fn     check any backend, a user's included
    nox -s lint                  ruff
    nox -s gpu                   the suite on a CUDA device (skips without one)
"""

from __future__ import annotations

import nox

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
    """Run the test suite (all backends, both fill modes, float32 and float64)."""
    install(session, "test", "triton")
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
    session.run("pytest", "--device", "cuda", "-m", "not slow", *session.posargs)

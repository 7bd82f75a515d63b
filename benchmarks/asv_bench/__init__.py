"""The asv suite: conv2d forward time, peak memory and GFLOP/s per backend and shape.

Why a directory of its own: asv imports every module under ``benchmark_dir`` to find
benchmarks, and it imports that directory under its own name (``asv_bench``) from the
checkout, not from the installed project. Pointing it here keeps the rest of ``benchmarks``
(the CLI's ``__main__``, the pytest sweep and its conftest) out of discovery, while the
suite imports ``impls`` and ``benchmarks.shapes`` from the project that asv installed for
the commit under test (or the current environment with ``--environment existing``).

Running it: ``nox -s asv`` (see its docstring). By hand, with the project installed in the
running Python (``pip install -e '.[bench]'``), ``asv run -E existing --set-commit-hash
$(git rev-parse HEAD)`` times the working tree; an uninstalled checkout needs
``ASV_PYTHONPATH=$PWD`` (asv drops PYTHONPATH). ``asv run HEAD~3..HEAD`` builds each commit
in a virtualenv under .asv/env.

What this package must not do: import a backend module by path, or run anything at import
beyond building the parameter lists (asv imports it once per discovery and per process).
"""

from __future__ import annotations

import os

THREADS_VARIABLE = "CONVBENCH_THREADS"


def thread_count() -> int:
    """Threads every benchmark pins torch to: $CONVBENCH_THREADS, else the CPUs we may use.

    The asv machine name and CPU field carry the same number (see :mod:`.machine`), so
    results taken with different thread counts never land in one graph.
    """
    value = os.environ.get(THREADS_VARIABLE, "").strip()
    if value:
        threads = int(value)
        if threads < 1:
            raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {value!r}")
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

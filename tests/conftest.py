"""Shared test setup: device selection, backend selection, Triton interpreter, hypothesis.

TRITON_INTERPRET must be set before the Triton kernel module is imported (Triton reads it
when a kernel is decorated), so it is decided here, before any test imports impls' backends:
on a machine without CUDA the Triton backend runs on the CPU interpreter. So is
CONVBENCH_TRITON_CONFIGS: on a GPU, one tile configuration per problem instead of autotuning.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The suite checks answers, not speed: one Triton tile configuration per problem, rotating
# over problems, instead of autotuning each (impls.builtin._triton_kernels.ROTATE).
os.environ.setdefault("CONVBENCH_TRITON_CONFIGS", "rotate")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per xdist worker: workers already fill the cores, and two torch threads
    # per worker on a 2-core machine cost ~3x the CPU time through oversubscription.
    torch.set_num_threads(1)

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import impls  # noqa: E402

# CI derandomises hypothesis so a red build is reproducible; locally it explores.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE",
                                                                      "dev"))


def pytest_addoption(parser):
    group = parser.getgroup("convbench")
    group.addoption("--device", default="cpu",
                    help="device the correctness suite runs on (cpu, cuda)")
    group.addoption("--backend", action="append", default=None,
                    help="only these backends (repeatable); a name or package.module:function")


def pytest_configure(config):
    """A --backend that names nothing is bad usage, as for ``impls check`` and the sweep:
    a typo used to skip every test of it and pass. So is a CONVBENCH_MEMORY_BUDGET that is
    no byte count (every backend with a memory model would fail on it)."""
    from impls.memory_budget import env_error

    if env_error():
        raise pytest.UsageError(env_error())
    for name in config.getoption("backend") or ():
        try:
            entry = impls.get_backend(name)
        except ValueError as exc:
            raise pytest.UsageError(f"--backend: {exc}") from None
        if entry.load_error:
            raise pytest.UsageError(f"--backend {name}: {entry.load_error}")


#: (dtype, tf32) checked per device: every dtype a backend can declare, and on a GPU float32
#: under TF32 too. On the CPU only torch (and auto, which hands the half types to it) and,
#: under the interpreter, triton take the half types; a second or so for the whole table.
PRECISIONS = {
    "cpu": [(torch.float32, False), (torch.float64, False), (torch.float16, False),
            (torch.bfloat16, False)],
    "cuda": [(torch.float32, False), (torch.float32, True), (torch.float16, False),
             (torch.bfloat16, False), (torch.float64, False)],
}


def _precision_id(precision) -> str:
    dtype, tf32 = precision
    return str(dtype).removeprefix("torch.") + ("-tf32" if tf32 else "")


def pytest_generate_tests(metafunc):
    """Parametrise ``backend`` over every registered backend (or --backend's), and
    ``precision`` over the (dtype, tf32) pairs of the --device."""
    if "backend" in metafunc.fixturenames:
        names = metafunc.config.getoption("backend") or [b.name for b in impls.backends()]
        metafunc.parametrize("backend", names)
    if "precision" in metafunc.fixturenames:
        kind = metafunc.config.getoption("device").split(":")[0]
        values = PRECISIONS.get(kind, PRECISIONS["cpu"])
        metafunc.parametrize("precision", values, ids=[_precision_id(v) for v in values])


@pytest.fixture(scope="session")
def device(pytestconfig) -> str:
    name = pytestconfig.getoption("device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda asked for, but torch sees no CUDA device")
    return name


def skip_unless_runs(backend: str, **kwargs) -> impls.Backend:
    """The entry, or a pytest skip carrying the backend's own reason."""
    entry = impls.get_backend(backend)
    reason = entry.unsupported(**kwargs)
    if reason:
        pytest.skip(reason)
    return entry


@pytest.fixture
def isolated_registry():
    """Restore the backend registry after a test that registers or looks up user entries."""
    from impls import registry

    impls.backends()  # load the built-ins first: they belong in the snapshot
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)

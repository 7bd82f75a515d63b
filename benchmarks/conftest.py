"""pytest side of the sweep: options, one test per case, the machine record, one row per case.

Normally run by ``python -m benchmarks sweep`` (benchmarks/sweep.py), which survives hangs
and crashes, resumes and merges. It can also be run by hand, without that protection:

    pytest benchmarks/bench_sweep.py --shape-set resnet50 --backend torch --backend unfold \\
        --benchmark-json reports/sweeps/mine.json

Every case ends as one row in the results file (``--results``), whatever its outcome; a
case whose row there is settled (records.settled: ok, or a skip that would recur) is
deselected, which is how a rerun resumes; one whose row says it failed, timed out, crashed
or found its backend unavailable runs again, and its new row is the one that counts. A
file whose settled rows were measured with another thread count is refused (pytest's usage
error), as is a ``package.module:function`` backend that cannot be loaded. While a case
runs, ``<results>.running`` names it, so a supervisor that finds the process dead or stuck
knows which case to blame.
"""

from __future__ import annotations

import os
import signal

# The sweep times kernels, never Triton's CPU interpreter (~10 ms per program step): with the
# variable cleared before impls is imported, the triton backend declares CUDA only, and on a
# CPU it is skipped with that reason instead of being timed.
_INTERPRETER_ASKED = os.environ.pop("TRITON_INTERPRET", "") == "1"

import contextlib  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import impls  # noqa: E402
from benchmarks import machine, records, sweep_plan  # noqa: E402

_OUTCOME = pytest.StashKey[tuple]()


def _add(group, name, **kwargs):
    """Add an option unless tests/conftest.py (loaded in the same session) already has it."""
    with contextlib.suppress(ValueError):
        group.addoption(name, **kwargs)


def pytest_addoption(parser):
    g = parser.getgroup("convbench sweep")
    _add(g, "--shape-set", action="append", default=None, metavar="NAME",
         help=f"shape set (repeatable; default {' '.join(sweep_plan.DEFAULT_SETS)}, see "
              "sweep_plan.BARE_DIRECTIONS)")
    for flag, kwargs in sweep_plan.OPTIONS:
        _add(g, flag, **kwargs)
    _add(g, "--direction", action="append", default=None, choices=sweep_plan.DIRECTIONS,
         help="repeatable; default: all three, or with no --shape-set either, "
              "sweep_plan.BARE_DIRECTIONS")
    _add(g, "--results", default=None, metavar="FILE",
         help="JSON-lines results, appended per case and used to resume")
    _add(g, "--rows-since", type=int, default=None, metavar="BYTES",
         help="rows from this offset of --results on are this sweep's, whatever their "
              "status (the supervisor's; default: the file's size at the start)")


class Sweep:
    """The run's settings, its cases, its results file and (lazily) its machine record."""

    def __init__(self, config):
        self.config = config
        opt = config.getoption
        self.budget, self.limit = opt("--budget"), opt("--limit")
        self.min_rounds = opt("--min-rounds")
        self.device, self.dtype_name = opt("--device"), opt("--dtype")
        self.dtype = getattr(torch, self.dtype_name)
        batch = sweep_plan.batch_of(opt("--batch"))
        cases = sweep_plan.plan(opt("--shape-set"), opt("--backend"), batch=batch,
                                dtype=self.dtype_name, device=self.device,
                                directions=opt("--direction"), cache=opt("--cache"),
                                tf32=opt("--tf32"), memory_format=opt("--memory-format"))
        shard = sweep_plan.parse_shard(opt("--shard")) if opt("--shard") else None
        self.cases = sweep_plan.shard(cases, *shard) if shard else cases
        self.results = records.ResultsFile(opt("--results") or sweep_plan.results_path(
            self.device, self.dtype_name, batch, shard, opt("--tf32")))
        #: Where this sweep's rows begin in the results file (see ResultsFile.done).
        self.since = opt("--rows-since")
        if self.since is None:
            self.since = self.results.size()
        try:
            #: The backend every case's rounds alternate with (--paired-with), or None.
            self.partner = sweep_plan.partner(opt("--paired-with"))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        refused = sweep_plan.unloadable([*(opt("--backend") or ()),
                                         *filter(None, [opt("--paired-with")])])
        other = self.results.conditions_differ([c.key for c in self.cases],
                                               torch.get_num_threads(), self.limit,
                                               machine.describe(self.device))
        if refused or other:
            raise pytest.UsageError("; ".join(refused) or f"{other}: name another --results")
        self.heartbeat = sweep_plan.heartbeat_path(self.results.path)
        self._machine = None
        #: Set by a case that leaves this process unfit for the next (a failed CUDA-graph
        #: capture): after its row, the child exits for a fresh one.
        self.restart = False

    @property
    def machine(self) -> dict:
        """This machine's record: reused from the results file when it was measured there
        under the same settings (a resumed run), else measured now and appended. The first
        use also appends this process's ``run`` record."""
        if self._machine is None:
            self.results.append(self._run_record())
            here = machine.describe(self.device)
            here.update(device=self.device, dtype=self.dtype_name)
            known = {m["id"]: m for m in self.results.machines()}
            self._machine = known.get(machine.machine_id(here))
            if self._machine is None:
                self._machine = machine.measure(self.device, self.dtype)
                # pytest-benchmark's own description too, for its JSON (py-cpuinfo: ~1 s)
                self._machine["machine_info"] = self.config.hook.\
                    pytest_benchmark_generate_machine_info(config=self.config)
                self.results.append({"record": "machine", **self._machine})
            warning = machine.busy_warning(here)
            if warning:
                warnings.warn(warning, stacklevel=1)
        return self._machine

    def _run_record(self) -> dict:
        """Provenance of this pytest process, in pytest-benchmark's own terms where it has them."""
        hook, opt = self.config.hook, self.config.option
        return {"record": "run", "started": records.now(), "pid": os.getpid(),
                "options": {k: getattr(opt, k) for k in RUN_OPTIONS},
                "commit_info": hook.pytest_benchmark_generate_commit_info(config=self.config),
                "pytest_benchmark": _version("pytest-benchmark")}


#: The options a run record keeps (pytest's attribute names).
RUN_OPTIONS = ("shape_set", "backend", "batch", "dtype", "device", "direction", "cache",
               "memory_format", "shard", "budget", "limit", "min_rounds", "threads", "tf32",
               "paired_with")


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_SWEEP = pytest.StashKey[Sweep]()


def pytest_configure(config):
    threads = sweep_plan.torch_threads(config.getoption("--threads"))
    torch.set_num_threads(threads)  # pinned: the thread count is part of every number
    # Set, never inherited: PyTorch's default lets cuDNN run "float32" as TF32.
    tf32 = config.getoption("--tf32")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest algorithm
    config.stash[_SWEEP] = Sweep(config)
    signal.signal(signal.SIGINT, _interrupted)


def _interrupted(signum, frame):
    """Python's own SIGINT handling, counted (bench_sweep.INTERRUPTS)."""
    from benchmarks import bench_sweep

    bench_sweep.INTERRUPTS.append(signum)
    signal.default_int_handler(signum, frame)


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = metafunc.config.stash[_SWEEP].cases
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def pytest_collection_modifyitems(config, items):
    """Deselect cases the results file has a settled row for, or one from this sweep: that is
    how a rerun resumes (records.ResultsFile.done)."""
    if _SWEEP not in config.stash:
        return
    sweep = config.stash[_SWEEP]
    for backend in dict.fromkeys(c.backend for c in sweep.cases):
        _code(backend)  # the code as imported, before any case runs
    done = sweep.results.done(sweep.since, sweep.limit,
                              sweep.partner.name if sweep.partner else None)
    keep, gone = [], []
    for item in items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        (gone if case is not None and case.key in done else keep).append(item)
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        excinfo = call.excinfo
        if report.skipped:
            reason = str(getattr(excinfo.value, "msg", excinfo.value)) if excinfo else ""
            item.stash[_OUTCOME] = ("skipped", reason)
        elif report.failed:
            reason = f"{excinfo.typename}: {excinfo.value}" if excinfo else report.longreprtext
            item.stash[_OUTCOME] = ("failed", reason.strip()[:2000])
        else:
            item.stash[_OUTCOME] = ("ok", "")
    return report


def pytest_benchmark_update_machine_info(config, machine_info):
    sweep = config.stash.get(_SWEEP, None)
    if sweep is not None and sweep._machine is not None:
        machine_info["convbench"] = sweep._machine


@functools.cache
def _code(backend: str) -> tuple[str, str] | tuple[None, None]:
    """records.code_of the file defining the backend's function (None where there is none
    to find: a callable object, a built-in, a spec that does not load). Read once per
    process, before its first case (pytest_collection_modifyitems), near when the backend
    was imported: a file edited while the sweep runs must not label rows timed with the
    code loaded before the edit. Only that one file is watched: an edit to a helper module
    it imports (fft's plans, triton's kernels, auto's table) is not seen."""
    entry = impls.get_backend(backend)
    if entry.load_error:
        return None, None
    try:
        return records.code_of(inspect.getsourcefile(inspect.unwrap(entry.fn)))
    except (TypeError, ValueError):
        return None, None


@pytest.fixture(scope="session")
def sweep(pytestconfig) -> Sweep:
    return pytestconfig.stash[_SWEEP]


@pytest.fixture
def row(request, sweep, case, benchmark):
    """The case's row: the test fills in what it measured; the outcome (ok, skipped, failed)
    and the write happen here, so a case that raises still leaves its row."""
    # Measured (or read back) before the heartbeat: it is not the case's time.
    machine_id = sweep.machine["id"]
    fields = {"started": records.now(), "threads": torch.get_num_threads(),
              "test": request.node.nodeid, "machine_id": machine_id}
    fields["code_file"], fields["code"] = _code(case.backend)
    start = time.perf_counter()
    sweep.heartbeat.write_text(json.dumps({"key": case.key, "test": request.node.nodeid,
                                           "pid": os.getpid(), "started": time.time()}))
    yield fields
    status, reason = request.node.stash.get(_OUTCOME, ("failed", "no outcome recorded"))
    if status == "ok" and fields.get("median_s") is None:
        status, reason = "skipped", "not timed (pytest-benchmark disabled?)"
    if status == "skipped" and "TRITON_INTERPRET" in reason:
        reason += "; the sweep never times the Triton CPU interpreter"
    if status == "ok" and fields.get("reason"):
        reason = fields["reason"]  # a noise warning
    fields.update(case.row_fields(), status=status, reason=reason,
                  wall_s=round(time.perf_counter() - start, 4))
    if status == "ok" and benchmark.stats is not None:
        sweep.results.append({"record": "benchmark", "key": case.key,
                              **benchmark.stats.as_dict(include_data=False)})
    sweep.results.append(records.case_row(**fields))
    sweep.heartbeat.unlink(missing_ok=True)
    if sweep.restart or (status == "failed" and sweep_plan.poisons_device(reason)):
        sys.stdout.flush()  # os._exit skips it: the log keeps what the case printed
        sys.stderr.flush()
        os._exit(sweep_plan.RESTART_STATUS)  # the row is on disk; a fresh child resumes

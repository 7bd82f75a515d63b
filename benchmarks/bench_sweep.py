"""The sweep's one benchmark: a backend's forward conv2d on one shape (see benchmarks/conftest.py).

Not collected by the test suite (testpaths is tests/); run it by path, or through
``python -m benchmarks sweep``. Per case: refuse what the backend declares it cannot run,
predict one call and refuse what the limit cannot afford (both become skipped rows with
the reason), warm up, time rounds until the budget is spent (benchmarks.timer), hand them
to pytest-benchmark, then measure one call's peak memory. The timed call is the backend's
own function with the arguments the front end hands it (impls.frontend.normalize), so
argument checking is not timed.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from pytest_benchmark.stats import Stats

import impls
from benchmarks import memory, records, timer
from impls.frontend import normalize
from impls.spec import ConvSpec

#: Calls before the timed rounds, at least (the guard counts them too).
WARMUP_CALLS = 2
#: Share of the budget spent warming up (on top of the budget).
WARMUP_SHARE = 0.1


def conv_call(entry: impls.Backend, spec: ConvSpec, dtype: torch.dtype, device: str):
    """A zero-argument call of the backend on seeded random inputs for ``spec``, and why the
    backend refuses the call ("" when it does not): a feature it lacks (groups, dilation,
    ...) or a problem outside its method (``accepts``: Winograd takes 3x3 stride 1 only)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(spec.input_shape, generator=g).to(device=device, dtype=dtype)
    w = torch.randn(spec.weight_shape, generator=g).to(device=device, dtype=dtype)
    c = normalize(x, w, None, **spec.conv_kwargs())
    refusal = (entry.unsupported(device=device, dtype=dtype, features=c.features())
               or entry.refuses(c.input.shape, c.weight.shape, c.stride, c.padding,
                                c.dilation, c.groups))

    def call():
        return entry.fn(c.input, c.weight, None, c.stride, c.padding, c.dilation, c.groups)

    return call, refusal


@torch.no_grad()
def test_conv2d(benchmark, case, sweep, row):
    benchmark.group = case.group
    entry = impls.get_backend(case.backend)
    reason = entry.unsupported(device=case.device, dtype=sweep.dtype)
    if reason:
        pytest.skip(reason)
    call, reason = conv_call(entry, case.entry.spec, sweep.dtype, case.device)
    if reason:
        pytest.skip(reason)
    try:
        measure(benchmark, case, sweep, row, entry, call)
    except NotImplementedError as exc:  # the impls.conv2d convention for "cannot run this"
        pytest.skip(f"{case.backend} raised NotImplementedError: {exc}")


def measure(benchmark, case, sweep, row, entry, call) -> None:
    """Guard, warm up, time, and fill the row (see the module docstring)."""
    spec, device, dtype = case.entry.spec, case.device, sweep.dtype
    # The budget guard: a case needs WARMUP_CALLS + min_rounds calls at least.
    calls, limit = WARMUP_CALLS + sweep.min_rounds, sweep.limit
    peak = sweep.machine["peak_gflops"]
    if spec.flops / (peak * 1e9) * calls > limit:
        pytest.skip(f"budget guard: even at this machine's measured peak ({peak:.0f} GFLOP/s) "
                    f"{calls} calls take {spec.flops / (peak * 1e9) * calls:.3g} s > --limit "
                    f"{limit:g} s")
    if device.startswith("cuda"):
        # Triton's autotuning, cuDNN's algorithm search and CUDA's lazy loading happen in
        # the first call of each shape: paid once here, untimed (bounded by the supervisor's
        # --timeout), and no crops, which would each compile anew. GPU calls are short.
        call()
        guess = timer.Prediction(timer.time_once(call, device), "measured after a first call")
    else:
        guess = timer.predict(lambda s: timer.time_once(conv_call(entry, s, dtype, device)[0],
                                                        device), spec, ceiling=limit / calls)
    row.update(predicted_s=guess.seconds, prediction=guess.how)
    if guess.seconds * calls > limit:
        pytest.skip(f"budget guard: predicted {guess.seconds:.3g} s per call ({guess.how}); "
                    f"{calls} calls exceed --limit {limit:g} s")
    first = timer.time_once(call, device)  # the prediction may be a crop's: check the real one
    if first * calls > limit:
        pytest.skip(f"budget guard: the first full call took {first:.3g} s; {calls} calls "
                    f"exceed --limit {limit:g} s")

    per_call = timer.warm_up(call, device, WARMUP_SHARE * sweep.budget, WARMUP_CALLS - 1)
    cold = case.cache == "cold"
    iterations = 1 if cold else timer.calls_per_round(per_call)
    rounds = timer.time_rounds(call, device, sweep.budget, iterations, sweep.min_rounds,
                               before_round=timer.cache_flusher(device) if cold else None)
    stats = record(benchmark, rounds, iterations,
                   {"min_rounds": sweep.min_rounds, "max_time": sweep.budget,
                    "warmup": WARMUP_CALLS, "cold_cache": cold, "timer": "perf_counter"})
    row.update(measured(stats, iterations, case, sweep))
    row["peak_memory_bytes"], row["memory_method"] = memory.peak_memory(call, device)
    benchmark.extra_info.update({k: row[k] for k in EXTRA_INFO if k in row})


def record(benchmark, rounds: list[float], iterations: int, options: dict) -> Stats:
    """Give the rounds to pytest-benchmark (its table, JSON and compare then include them)
    and return their statistics, computed by pytest-benchmark's own Stats.

    pytest-benchmark has no public call for rounds timed elsewhere; ``_make_stats`` is what
    its own ``pedantic`` uses. Without it (--benchmark-disable) the row still gets its
    numbers from the same Stats class."""
    if benchmark.enabled:
        meta = benchmark._make_stats(iterations)
        for duration in rounds:
            meta.update(duration)  # per round; Metadata divides by the iterations
        meta.options.update(options)
        benchmark._mode = "benchmarks.timer.time_rounds"  # the fixture counts as used
        return meta.stats
    stats = Stats()
    for duration in rounds:
        stats.update(duration / iterations)
    return stats


#: Row fields repeated in pytest-benchmark's extra_info (the report has the full rows).
EXTRA_INFO = ("key", "backend", "shape_set", "name", "count", "gflops", "bytes",
              "arithmetic_intensity", "fraction_of_peak", "fraction_of_roofline", "noise",
              "peak_memory_bytes", "machine_id")


def measured(s: Stats, iterations: int, case, sweep) -> dict:
    """The row's timing fields from the statistics of this case's rounds."""
    e, m = case.entry, sweep.machine
    nbytes = e.spec.bytes(torch.finfo(sweep.dtype).bits // 8)
    out = {"median_s": s.median, "iqr_s": s.iqr, "min_s": s.min, "mean_s": s.mean,
           "rounds": s.rounds, "iterations": iterations, "noise": s.iqr / s.median,
           "peak_gflops": m["peak_gflops"], "bandwidth_gbps": m["bandwidth_gbps"],
           "backend": case.backend, "shape_set": case.shape_set, "name": e.spec.name,
           "count": e.count, "key": case.key, "bytes": nbytes}
    out.update(records.derived(e.flops, nbytes, s.median, m["peak_gflops"],
                               m["bandwidth_gbps"]))
    warning = timer.noise_warning(s.median, s.iqr)
    if warning:
        out["reason"] = warning
        warnings.warn(f"{case.id}: {warning}", stacklevel=1)
    return out

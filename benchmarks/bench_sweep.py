"""The sweep's one benchmark: a backend's conv2d on one shape in one direction (see
benchmarks/conftest.py).

Not collected by the test suite (testpaths is tests/); run it by path, or through
``python -m benchmarks sweep``. Per case: refuse what the backend declares it cannot run,
predict one call and refuse what the limit cannot afford (both become skipped rows with
the reason), build the call, warm up, time rounds until the budget is spent
(benchmarks.timer), hand them to pytest-benchmark, then measure one call's peak memory.
On CUDA, forward with warm caches, the same calls are also replayed from a CUDA graph
(timer.time_graph): the device's own time, without the Python and launch overhead that a
wall-clock round of short GPU calls can be made of (``graph_median_s`` beside ``median_s``).
With ``--paired-with torch``, each other backend's rounds alternate with torch's on equal
inputs (the same seed), for twice the budget (timer.time_interleaved), and the row also
keeps the median ratio of neighbouring rounds (``paired_ratio``, torch's time per call over
the backend's) and its 95% confidence interval (``paired_ci``): a ratio that the machine's
drift between two cases cannot move, which is what the speed targets compare. A dispatcher
(auto) alternates with the backend it runs the case on instead (``paired_backend`` says
which), so its ratio is its own overhead. Each round then starts with the other's data in
the caches: the ratio is of two kernels run in turn, and where a layer's data fits in cache
it can differ from the ratio of two medians timed alone (torch's median_s, beside unfold's
rounds, rose from 1.6 to 2.3 ms on one layer); the row's median_s is of those rounds.
``paired_error`` says why a case is unpaired (the partner refuses it, would exceed --limit,
or failed: the case is then timed alone).

Operands: seeded random input and weight, NCHW, or both channels_last (NHWC) under
``--memory-format channels_last`` (layout copies a backend makes are then its own).

What is timed, per direction (bias is left out in all three):
- forward: the backend's own function with the arguments the front end hands it
  (impls.frontend.normalize), so argument checking is not timed. A backend whose first
  result is not laid out as F.conv2d's (a strided view, channels-last for NCHW operands) is
  timed with the copy into that layout, which impls.conv2d makes for its callers: without
  it, returning a view would be a free speedup. Its row's reason says so.
- backward-data / backward-weights: impls.backward.gradient_call. Building it runs the
  forward once through the front end, untimed, with only that direction's tensor requiring
  grad; each timed call replays the retained graph's backward with a fixed output gradient,
  so the number is the backward alone (dL/dinput, or dL/dweight), autograd's dispatch
  included, no forward and no graph building. Its peak memory is what the backward needed
  above the retained graph.
"""

from __future__ import annotations

import statistics
import warnings

import pytest
import torch
from pytest_benchmark.stats import Stats

import impls
from benchmarks import machine, memory, records, timer
from impls.backward import gradient_call
from impls.frontend import check_output, in_memory_format, normalize, used_features
from impls.spec import ConvSpec

#: Calls before the timed rounds, at least (the guard counts them too).
WARMUP_CALLS = 2
#: Share of the budget spent warming up (on top of the budget).
WARMUP_SHARE = 0.1


def _inputs(spec: ConvSpec, dtype: torch.dtype, device: str,
            memory_format: str = "contiguous"):
    g = torch.Generator().manual_seed(0)
    layout = (torch.channels_last if memory_format == "channels_last"
              else torch.contiguous_format)
    x = torch.randn(spec.input_shape, generator=g).to(device=device, dtype=dtype,
                                                       memory_format=layout)
    w = torch.randn(spec.weight_shape, generator=g).to(device=device, dtype=dtype,
                                                        memory_format=layout)
    return x, w


def refusal(entry: impls.Backend, spec: ConvSpec, dtype: torch.dtype, device: str,
            direction: str = "forward") -> str:
    """Why the backend refuses this call ("" when it does not): a feature it lacks (groups,
    dilation, autograd for a backward direction, ...) or a problem outside its method
    (``accepts``: Winograd takes 3x3 stride 1 only). Builds no input: cheap."""
    return (entry.unsupported(device=device, dtype=dtype, features=_features(spec, direction))
            or entry.refuses(spec.input_shape, spec.weight_shape, spec.stride, spec.padding,
                             spec.dilation, spec.groups)
            or entry.over_budget(spec.input_shape, spec.weight_shape, spec.stride, spec.padding,
                                 spec.dilation, spec.groups, dtype, device))  # memory budget


def conv_call(entry: impls.Backend, spec: ConvSpec, dtype: torch.dtype, device: str,
              direction: str = "forward", check: bool = True,
              memory_format: str = "contiguous"):
    """A zero-argument call that runs ``direction`` of the backend on seeded random inputs
    for ``spec`` (see the module docstring for what it covers). A backward direction runs
    the forward once here, so call this only once the budget guard has allowed it.
    ``check``: the first forward call's result must be F.conv2d's kind (off for the budget
    guard's cropped probes: a wrong result is reported on the case's own problem)."""
    x, w = _inputs(spec, dtype, device, memory_format)
    if direction != "forward":
        return gradient_call(entry, x, w, None, direction, **spec.conv_kwargs())
    c = normalize(x, w, None, **spec.conv_kwargs())
    checked = []

    def call():
        out = entry.fn(c.input, c.weight, None, c.stride, c.padding, c.dilation, c.groups)
        if check and not checked:  # the first call's result must be F.conv2d's kind
            check_output(entry.name, out, c)
            checked.append(True)
            if in_memory_format(out, c) is not out:  # decided once: not timed
                call.relaid = RELAID
        if call.relaid:  # what impls.conv2d hands its caller: part of the call's cost
            out = in_memory_format(out, c)
        return out

    call.relaid = ""
    return call


#: A row's note when its backend's results were copied into F.conv2d's layout (conv_call).
RELAID = ("its results are not laid out as F.conv2d's: the copy into that layout, which "
          "impls.conv2d makes for its callers, is timed with it")


@torch.no_grad()
def test_conv2d(benchmark, case, sweep, row):
    benchmark.group = case.group
    entry = impls.get_backend(case.backend)
    reason = refusal(entry, case.entry.spec, sweep.dtype, case.device, case.direction)
    if reason:
        pytest.skip(reason)
    try:
        measure(benchmark, case, sweep, row, entry)
    except NotImplementedError as exc:  # the impls.conv2d convention for "cannot run this"
        pytest.skip(f"{case.backend} raised NotImplementedError: {exc}")
    except KeyboardInterrupt:
        if INTERRUPTS:  # a Ctrl-C: the sweep stops (the supervisor keeps what ran)
            raise
        # The backend's own raise: it ended the whole session, and every resume ran into
        # it again, leaving the cases after it unmeasured for good.
        pytest.fail(f"{case.backend} raised KeyboardInterrupt with no Ctrl-C (no SIGINT "
                    "reached this process)", pytrace=True)


#: SIGINTs this process received (benchmarks/conftest.py counts them): a KeyboardInterrupt
#: without one was raised by a backend, not by a user.
INTERRUPTS: list[int] = []


def dispatched_to(entry: impls.Backend, spec: ConvSpec, dtype: torch.dtype, device: str,
                  direction: str) -> str:
    """The backend a dispatcher (auto) runs this case with: a row of auto's says whose time
    it is, or a ratio of auto to 'the fastest other' may be of one backend against itself."""
    return entry.runner(spec.input_shape, spec.weight_shape, spec.stride, spec.padding,
                        spec.dilation, spec.groups, dtype, device,
                        _features(spec, direction)).name


def _features(spec: ConvSpec, direction: str) -> set[str]:
    """What a case's call uses: the bias is never passed; a backward direction needs
    autograd."""
    features = used_features(spec.stride, spec.padding, spec.dilation, spec.groups,
                             bias=False)
    return features | {"autograd"} if direction != "forward" else features


def guard_calls(direction: str, min_rounds: int) -> int:
    """Calls the budget guard counts for a case: the warm-up and the minimum rounds, plus,
    for a backward direction, the untimed forward that builds its graph (counted as one
    call: it has the same FLOPs as the backward it precedes)."""
    return WARMUP_CALLS + min_rounds + (direction != "forward")


def measure(benchmark, case, sweep, row, entry) -> None:
    """Guard, build the call, warm up, time, and fill the row (see the module docstring)."""
    device = case.device
    call = guarded_call(case, sweep, row, entry)
    per_call = timer.warm_up(call, device, WARMUP_SHARE * sweep.budget, WARMUP_CALLS - 1)
    cold = case.cache == "cold"
    iterations = 1 if cold else timer.calls_per_round(per_call)
    flush = timer.cache_flusher(device) if cold else None
    row["paired_with"] = sweep.partner.name if sweep.partner else None
    budget, paired = sweep.budget, {}
    partner = partner_of(case, sweep, entry)
    partner_fn, why_not = partner_call(case, sweep, partner)
    ticks, use = machine.cpu_ticks(), machine.cpu_use()
    if partner_fn is not None:
        try:
            rounds, paired = paired_rounds(call, per_call * iterations, iterations, partner,
                                           partner_fn, case, sweep, flush)
            budget = 2 * sweep.budget
        except PartnerFailed as exc:  # the partner's trouble: this case is timed alone
            why_not = str(exc)
    if not paired:
        rounds = timer.time_rounds(call, device, sweep.budget, iterations, sweep.min_rounds,
                                   before_round=flush)
        paired = {"paired_error": why_not} if why_not else {}
    row.update(paired, steal=machine.stolen(ticks, machine.cpu_ticks()),
               others_cpu=machine.others_cpu_since(use),
               loadavg_1min=machine.load_average())
    stats = record(benchmark, rounds, iterations,
                   {"min_rounds": sweep.min_rounds, "max_time": budget,
                    "warmup": WARMUP_CALLS, "cold_cache": cold, "timer": "perf_counter",
                    "paired_with": paired.get("paired_backend")})
    row.update(measured(stats, iterations, case, sweep))
    if getattr(call, "relaid", ""):  # conv_call copied its results into F.conv2d's layout
        row["reason"] = "; ".join(filter(None, (row.get("reason"), call.relaid)))
    for disturbed in (machine.steal_warning(row["steal"]),
                      machine.contention_warning(row["others_cpu"])):
        if disturbed:  # steady rounds can hide it: said beside the spread's warning
            row["reason"] = "; ".join(filter(None, (row.get("reason"), disturbed)))
            warnings.warn(f"{case.id}: {disturbed}", stacklevel=1)
    if entry.delegate is not None:  # a dispatcher: which backend its time is of
        row["ran"] = dispatched_to(entry, case.entry.spec, sweep.dtype, device, case.direction)
    row["peak_memory_bytes"], row["memory_method"] = memory.peak_memory(call, device)
    if device.startswith("cuda") and not cold:  # last: a failed capture spoils the process
        row.update(graph_time(call, device, GRAPH_SHARE * sweep.budget, iterations, sweep,
                              case.direction))
    benchmark.extra_info.update({k: row[k] for k in EXTRA_INFO if k in row})


#: Of the case's budget, the share the CUDA-graph replays get on top of the wall rounds.
GRAPH_SHARE = 0.5


def graph_time(call, device: str, budget: float, iterations: int, sweep,
               direction: str) -> dict:
    """The row's graph fields: the median seconds per call of the case's calls replayed
    from a CUDA graph (timer.time_graph), or why there is none. A capture that fails is
    no failure of the case: its wall-clock time stands, and the child is replaced after
    this row (``sweep.restart``), as a failed capture can leave the allocator broken.
    Forward only: autograd runs a backward op on its forward's stream, which a capture
    on another stream cannot order against."""
    if direction != "forward":
        return {"graph_error": "not captured: a backward direction (autograd's streams)"}
    try:
        rounds = timer.time_graph(call, device, budget, iterations)
    except Exception as exc:  # a backend that syncs, or cannot be captured: say so
        sweep.restart = True
        return {"graph_error": f"{type(exc).__name__}: {exc}"[:500]}
    median = statistics.median(rounds)
    quartiles = statistics.quantiles(rounds, n=4) if len(rounds) > 1 else None
    return {"graph_median_s": median / iterations,
            "graph_noise": (quartiles[2] - quartiles[0]) / median if quartiles else None}


class PartnerFailed(Exception):
    """The ``--paired-with`` backend raised while it was timed beside a case."""


#: Rounds a paired case takes at least when --limit affords them: fewer give no 95% interval
#: of the median ratio (timer.median_interval), and a slow pair (torch's 31x31 layer, 0.4 s
#: a call) would otherwise stop at --min-rounds.
PAIRED_MIN_ROUNDS = 6


def paired_rounds(call, round_s: float, iterations: int, partner, partner_fn, case, sweep,
                  flush):
    """(the case's rounds, the row's paired fields): the partner warmed up as the case was,
    then rounds of each in turn for twice the budget, PAIRED_MIN_ROUNDS at least where a
    pair of rounds (``round_s``, the case's, and the partner's) times them fits in --limit.
    Raises PartnerFailed, never the partner's own exception: a NotImplementedError of the
    partner's must not skip the case."""
    def partner_once():
        try:
            return partner_fn()
        except Exception as exc:  # noqa: BLE001 - any failure of the partner's is its own
            raise PartnerFailed(f"{partner.name} failed: {type(exc).__name__}: "
                                f"{exc}"[:500]) from exc

    device = case.device
    per_call = timer.warm_up(partner_once, device, WARMUP_SHARE * sweep.budget,
                             WARMUP_CALLS - 1)
    theirs_per_round = 1 if case.cache == "cold" else timer.calls_per_round(per_call)
    pair_s = round_s + per_call * theirs_per_round
    least = max(sweep.min_rounds, PAIRED_MIN_ROUNDS) \
        if pair_s * PAIRED_MIN_ROUNDS <= sweep.limit else sweep.min_rounds
    mine, theirs = timer.time_interleaved(
        [call, partner_once], device, 2 * sweep.budget, [iterations, theirs_per_round],
        least, before_round=flush)
    ratio, interval = timer.paired_ratio(mine, iterations, theirs, theirs_per_round)
    return mine, {"paired_backend": partner.name, "paired_ratio": ratio,
                  "paired_ci": interval,
                  "paired_median_s": statistics.median(theirs) / theirs_per_round}


def partner_of(case, sweep, entry) -> impls.Backend | None:
    """The backend this case's rounds alternate with: ``--paired-with``'s (None: unpaired),
    but for a dispatcher (auto) the backend it runs the case on. A dispatcher's ratio is
    then its own cost, measured where nothing else differs; how good its choice was is
    read from that backend's row against the others' (each paired with --paired-with's)."""
    if sweep.partner is None or entry.delegate is None:
        return sweep.partner
    return impls.get_backend(dispatched_to(entry, case.entry.spec, sweep.dtype, case.device,
                                           case.direction))


def partner_call(case, sweep, partner):
    """(the call of ``partner`` on this case, "") to alternate rounds with, or (None, why
    not): none asked for, this case is its own, or it refuses, would exceed --limit, or
    fails. A partner's trouble never fails the case: its row says why unpaired."""
    spec, device = case.entry.spec, case.device
    if partner is None or partner.name == case.backend:
        return None, ""
    reason = refusal(partner, spec, sweep.dtype, device, case.direction)
    if reason:
        return None, f"{partner.name} does not run this case: {reason}"
    try:
        call, _, why = affordable_call(case, sweep, partner)
        return call, (f"{partner.name}: {why}" if why else "")
    except Exception as exc:  # noqa: BLE001 - the partner's failure is not this case's
        return None, f"{partner.name} failed: {type(exc).__name__}: {exc}"[:500]


def guarded_call(case, sweep, row, entry):
    """The case's call, built only once the budget guard allows it; else skip with why."""
    spec = case.entry.spec
    calls, limit = guard_calls(case.direction, sweep.min_rounds), sweep.limit
    peak = sweep.machine["peak_gflops"]
    if spec.flops / (peak * 1e9) * calls > limit:
        pytest.skip(f"budget guard: even at this machine's measured peak ({peak:.0f} GFLOP/s) "
                    f"{calls} calls take {spec.flops / (peak * 1e9) * calls:.3g} s > --limit "
                    f"{limit:g} s")
    call, guess, why = affordable_call(case, sweep, entry)
    row.update(predicted_s=guess.seconds, prediction=guess.how)
    if why:
        pytest.skip(why)
    return call


def affordable_call(case, sweep, entry):
    """(the call of ``entry`` on the case, the prediction of one call, "") once the guard's
    calls fit in --limit, predicted and then as the first full call took; else (None, the
    prediction, why not). For the case itself and for its --paired-with partner alike."""
    spec, device = case.entry.spec, case.device
    calls, limit = guard_calls(case.direction, sweep.min_rounds), sweep.limit
    guess, call = predict_call(case, sweep, entry, ceiling=limit / calls)
    if guess.seconds * calls > limit:
        return None, guess, (f"budget guard: predicted {guess.seconds:.3g} s per call "
                             f"({guess.how}); {calls} calls exceed --limit {limit:g} s")
    call = call or conv_call(entry, spec, sweep.dtype, device, case.direction,
                             memory_format=case.memory_format)
    first = timer.time_once(call, device)  # the prediction may be a crop's: check the real one
    if first * calls > limit:
        return None, guess, (f"budget guard: the first full call took {first:.3g} s; "
                             f"{calls} calls exceed --limit {limit:g} s")
    return call, guess, ""


def predict_call(case, sweep, entry, ceiling: float):
    """(the prediction of one full call, the full call if it was built on the way: for a
    backward direction, building one runs a forward, so it is not built twice)."""
    spec, device = case.entry.spec, case.device

    def make(s: ConvSpec):
        return conv_call(entry, s, sweep.dtype, device, case.direction, check=s == spec,
                         memory_format=case.memory_format)

    if device.startswith("cuda"):
        # Triton's autotuning, cuDNN's algorithm search and CUDA's lazy loading happen in
        # the first call of each shape: paid once here, untimed (bounded by the supervisor's
        # --timeout), and no crops, which would each compile anew. GPU calls are short.
        call = make(spec)
        call()
        return timer.Prediction(timer.time_once(call, device), "measured after a first call"), \
            call
    full = []

    def probe(s: ConvSpec) -> float:
        call = make(s)
        if s == spec:
            full.append(call)
        return timer.time_once(call, device)

    # Crops work for the gradients as for the forward: per output position, backward-data
    # spreads one window back and backward-weights adds one outer product. Where a method's
    # cost does not follow the outputs (FFT sizes), guarded_call's first full call catches it.
    return timer.predict(probe, spec, ceiling=ceiling), (full[-1] if full else None)


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
EXTRA_INFO = ("key", "backend", "shape_set", "name", "direction", "count", "gflops", "bytes",
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
           "direction": case.direction,
           "count": e.count, "key": case.key, "bytes": nbytes}
    out.update(records.derived(e.flops, nbytes, s.median, m["peak_gflops"],
                               m["bandwidth_gbps"]))
    warning = timer.noise_warning(s.median, s.iqr)
    if warning:
        out["reason"] = warning
        warnings.warn(f"{case.id}: {warning}", stacklevel=1)
    return out

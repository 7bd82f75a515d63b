"""Timing discipline for the sweep: predict, warm up, fill a time budget, flag noise.

Why not pytest-benchmark's own loop: its rounds are a count fixed in advance from one
calibration call, so on a busy 2-core machine (OpenMP threads stalled behind another
process) a 0.5 s budget became 27 s. The rounds here stop at a wall-clock deadline; their
durations then go to pytest-benchmark, whose statistics, table and JSON are used as they
are. Also here because no existing timer does them: refusing a call before running it
(naive on a large layer runs for minutes per call), an L2 flush outside the timed region
(triton.testing.do_bench's cold-cache mode), and a device synchronise inside it.

What it must not do: time an asynchronous launch (every timed region ends in a device
synchronise), extrapolate when it could measure, or import pytest.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks import records
from impls.spec import ConvSpec

#: torch.utils.benchmark's thresholds for IQR/median: it warns above 10% and calls the
#: measurement unreliable above 25%.
NOISY, VERY_NOISY = records.NOISY, 0.25
#: A round shorter than this groups several calls: per-call timer and loop overhead
#: (~1 us) must stay well under 1% of what a round measures.
MIN_ROUND_S = 100e-6
#: The probe extrapolates only from a crop whose call takes at least this long: a shorter
#: one can be all scheduling noise (a stalled OpenMP barrier costs tens of ms on a busy CPU).
PROBE_S = 0.2
#: triton.testing.do_bench zeroes 256 MB between calls to empty a GPU's L2 (50 MB on H100).
GPU_FLUSH_BYTES = 256 * 2**20


def synchronizer(device: str) -> Callable[[], None]:
    """What makes a device's queued work finish: CUDA's synchronize, or nothing on CPU."""
    if device.startswith("cuda"):
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def time_once(fn: Callable[[], object], device: str) -> float:
    """Seconds of one synchronised call (for the probe and the warm-up, not the stats)."""
    sync = synchronizer(device)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def warm_up(fn: Callable[[], object], device: str, seconds: float, min_calls: int = 1) -> float:
    """Call ``fn`` for ``seconds`` (at least ``min_calls`` times); return the mean call.
    Calls before the timed rounds absorb lazy setup (oneDNN primitive creation, cuDNN's
    algorithm search, page faults on fresh buffers); the mean, not the fastest, sizes the
    rounds, because on a busy machine calls have a long tail."""
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        times.append(time_once(fn, device))
    return sum(times) / len(times)


def calls_per_round(seconds_per_call: float) -> int:
    """Calls grouped in one timed round so that it lasts MIN_ROUND_S."""
    # (1e-9 keeps 1e-4 / 1e-6 = 100.00000000000001 from becoming 101)
    return max(1, math.ceil(MIN_ROUND_S / max(seconds_per_call, 1e-9) - 1e-9))


def time_rounds(fn: Callable[[], object], device: str, budget: float, iterations: int = 1,
                min_rounds: int = 3, max_rounds: int = 100_000,
                before_round: Callable[[], None] | None = None) -> list[float]:
    """Durations of rounds of ``iterations`` calls, until ``budget`` seconds of wall time
    have passed (flushes included) and at least ``min_rounds`` rounds have run.

    The device is synchronised before and after each round, so a round's time is its
    calls' work, not their launch. ``before_round`` (a cache flush) runs outside it.
    """
    sync = synchronizer(device)
    rounds, deadline = [], time.perf_counter() + budget
    while len(rounds) < max_rounds and (len(rounds) < min_rounds
                                        or time.perf_counter() < deadline):
        if before_round is not None:
            before_round()
        sync()
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        sync()
        rounds.append(time.perf_counter() - start)
    return rounds


def time_interleaved(fns: list[Callable[[], object]], device: str, budget: float,
                     iterations: list[int], min_rounds: int = 3,
                     before_round: Callable[[], None] | None = None) -> list[list[float]]:
    """Rounds of each of ``fns`` in turn, the order reversed every other round (A B, B A,
    A B, ...), ``iterations[i]`` calls per round of ``fns[i]``, until ``budget`` seconds
    have passed and each has ``min_rounds``; one list of round durations per function.

    Why: two times measured one after the other differ by whatever the machine did in
    between (another process, a frequency change), and on a shared 2-core machine that
    drift can exceed the difference asked about. Rounds taken in turn see the same drift,
    so the ratio of neighbouring rounds cancels it (the gate's paired mode, in one process).
    The alternation is why it cancels: with A always first, a steady drift would favour A
    in every pair, and the median ratio would carry that bias (as the gate, an order effect
    must never fall on one side only). The rounds end on an even count, each order as
    often as the other: with one more of one order, the median is a ratio biased that way.
    """
    rounds = [[] for _ in fns]
    deadline = time.perf_counter() + budget
    while (len(rounds[-1]) < min_rounds or time.perf_counter() < deadline
           or len(rounds[-1]) % 2):
        order = list(zip(fns, iterations, rounds))
        for fn, calls, out in order if len(rounds[0]) % 2 == 0 else order[::-1]:
            out.extend(time_rounds(fn, device, 0.0, calls, min_rounds=1, max_rounds=1,
                                   before_round=before_round))
    return rounds


def paired_ratio(rounds: list[float], iterations: int, partner: list[float],
                 partner_iterations: int) -> tuple[float, list[float] | None]:
    """The median over neighbouring rounds of partner time / own time per call (above 1
    when the rounds' own function is the faster), and its 95% confidence interval."""
    ratios = sorted((p / partner_iterations) / (r / iterations)
                    for r, p in zip(rounds, partner))
    return statistics.median(ratios), median_interval(ratios)


def median_interval(ordered: list[float], level: float = 0.95) -> list[float] | None:
    """The distribution-free confidence interval of the median of ``ordered`` (sorted):
    the k-th smallest and k-th largest values, k the largest count with P(B < k) at most
    (1 - level) / 2 for B ~ binomial(n, 1/2), the count of values below the true median.
    No assumption on the shape of the values, so a tail of disturbed rounds widens it
    honestly. None below 6 values, where no such interval reaches 95% (n = 5: 94%)."""
    n, tail, k = len(ordered), 0.0, 0
    while k <= n // 2:
        tail += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                         - n * math.log(2))  # P(B = k)
        if tail > (1 - level) / 2:
            break
        k += 1
    return [ordered[k - 1], ordered[n - k]] if k else None


def time_graph(fn: Callable[[], object], device: str, budget: float, iterations: int = 1,
               min_rounds: int = 3) -> list[float]:
    """Durations of rounds of ``iterations`` calls replayed from one CUDA graph, timed by
    CUDA events, until ``budget`` seconds have passed and ``min_rounds`` rounds have run.

    Why beside time_rounds: a short GPU call (a ResNet layer in bf16 on an H100 takes ~20
    us) can cost more in Python and launches than on the device, and a wall-clock round
    then measures the launcher. A graph replays the kernels alone: what a kernel writer
    compares (triton.testing.do_bench_cudagraph). Capture needs every lazy setup done (the
    sweep's warm-up ran Triton's autotuning and cuDNN's search) and no host sync inside
    ``fn``; one that breaks it raises, and the caller records why. A failed capture can
    leave torch's allocator believing a capture is under way (torch < 2.12): the caller
    must not capture again in this process.
    """
    dev = torch.device(device)
    with torch.cuda.device(dev):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        # Warm-up and capture on one side stream, named to the graph: the process's current
        # stream is restored by the outer context even when capture fails inside.
        with torch.cuda.stream(side):
            fn()
            with torch.cuda.graph(graph, stream=side):
                for _ in range(iterations):
                    fn()
        torch.cuda.current_stream().wait_stream(side)
        graph.replay()  # the first replay uploads the graph: not timed
        torch.cuda.synchronize()
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        rounds, deadline = [], time.perf_counter() + budget
        while len(rounds) < min_rounds or time.perf_counter() < deadline:
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            rounds.append(start.elapsed_time(end) / 1e3)
        del graph
    return rounds


def cache_flusher(device: str, nbytes: int | None = None) -> Callable[[], None]:
    """A call that evicts the caches before a cold-cache round, as do_bench does.

    GPU: zero a 256 MB buffer (five H100 L2s). CPU: write a buffer of four times the
    last-level cache (sysfs), at least 64 MB, so the conv's operands are no longer cached.
    """
    if nbytes is None:
        nbytes = GPU_FLUSH_BYTES if device.startswith("cuda") else max(64 * 2**20,
                                                                      4 * _llc_bytes())
    buffer = torch.empty(nbytes // 4, dtype=torch.int32, device=device)
    sync = synchronizer(device)

    def flush() -> None:
        buffer.zero_()
        sync()

    return flush


def _llc_bytes() -> int:
    """The largest cache the kernel reports (sysfs), 0 when it reports none."""
    from pathlib import Path

    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes, default=0)


# --- the budget guard's prediction ---------------------------------------------------------

def crop(spec: ConvSpec, oh: int, ow: int) -> ConvSpec:
    """The same conv (channels, kernel, stride, padding) over an input that gives only
    ``oh`` x ``ow`` outputs: every output position costs what it costs in the full problem."""
    oh, ow = min(oh, spec.oh), min(ow, spec.ow)
    # Input extent that gives exactly oh outputs with the same padding: (oh-1)*s + ek - 2p;
    # an axis left whole keeps its own extent (with stride 2 it may be one row longer).
    ih = spec.ih if oh == spec.oh else (
        (oh - 1) * spec.sh + (spec.kh - 1) * (spec.dh + 1) + 1 - 2 * spec.ph)
    iw = spec.iw if ow == spec.ow else (
        (ow - 1) * spec.sw + (spec.kw - 1) * (spec.dw + 1) + 1 - 2 * spec.pw)
    if ih < 1 or iw < 1:  # padding wider than the kernel reaches: keep the full extent
        return spec
    return dataclasses.replace(spec, ih=ih, iw=iw, oh=oh, ow=ow)


@dataclasses.dataclass(frozen=True)
class Prediction:
    seconds: float  # one call of the full problem (a lower bound when cut short)
    how: str  # "measured", or how it was extrapolated


def predict(run: Callable[[ConvSpec], float], spec: ConvSpec, ceiling: float = math.inf,
            probe_s: float = PROBE_S) -> Prediction:
    """Seconds one call of ``spec`` will take, found on cropped problems where possible.

    ``run(spec)`` makes inputs for a spec and returns the seconds of one call. Outputs are
    cropped to 1x1, 2x2, 4x4, ... until the full problem is reached (then the time is
    measured) or a crop's call, repeated and the faster kept, takes ``probe_s`` *and* at
    least twice the previous crop's: time that grows with the output is per-position work,
    which is extrapolated along the line through the two crops (exact for naive's loops);
    time that does not grow is overhead or noise and is never scaled up. A crop slower than
    ``ceiling`` ends the probe at once: the full call is slower still.
    """
    side, previous = 1, None  # previous: (output positions, seconds)
    while True:
        small = crop(spec, side, side)
        seconds = run(small)
        if small == spec:
            return Prediction(seconds, "measured")
        if seconds >= min(probe_s, ceiling):
            seconds = min(seconds, run(small))
        positions = small.oh * small.ow
        took = f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"
        where = f"{small.oh}x{small.ow} outputs ({took})"
        if seconds >= ceiling:
            return Prediction(seconds, f"at least: a crop to {where} took that long")
        if seconds >= probe_s and previous and seconds >= 2 * previous[1]:
            slope = (seconds - previous[1]) / (positions - previous[0])
            full = seconds + slope * (spec.oh * spec.ow - positions)
            return Prediction(full, f"extrapolated from crops to {previous[0]} and {where}")
        previous, side = (positions, seconds), side * 2


def noise_warning(median: float, iqr: float) -> str:
    """"" when steady; otherwise a warning in torch.utils.benchmark's words and thresholds."""
    if median <= 0 or iqr / median <= NOISY:
        return ""
    level = "unreliable" if iqr / median > VERY_NOISY else "noisy"
    return (f"{level}: IQR is {iqr / median:.0%} of the median; another process may be "
            "competing for the CPU, or the call's own time varies")

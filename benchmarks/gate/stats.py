"""The gate's decision: how much slower, with what confidence, and is that beyond the band.

Why a confidence interval and not a threshold on the median: a true 10% slowdown, judged by
"observed median more than 10% slower", is caught only about half the time, and a 10%
threshold on a noisy median raises false alarms besides. Here each benchmark gives many
short samples; the slowdown is the median of their log-ratios, its interval a bootstrap
(scipy.stats.bootstrap) of that median, and a verdict needs the *whole* interval outside
the noise band [1/(1+t), 1+t]. The median, not the mean: a sample that another process
interrupted is an outlier, not information.

Two designs:
  paired     BASE and the working tree measured in the same round, interleaved: the
             log-ratio of the two samples of each round (drift between rounds cancels);
  unpaired   the working tree now against stored samples (a baseline file): the shift
             between the medians of the two sets of samples.
Samples are ratios of a backend's time to torch.nn.functional.conv2d's in the same process
(see worker.py), or plain times; this module only sees numbers.

What it must not do: import torch, or decide anything from a single number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.99
RESAMPLES = 4000
#: Verdicts; only SLOWER fails the gate.
SLOWER, FASTER, UNCHANGED, UNSURE = "slower", "faster", "unchanged", "inconclusive"


@dataclass(frozen=True)
class Change:
    """head / base: ``factor`` > 1 is slower; [low, high] its confidence interval."""

    factor: float
    low: float
    high: float
    samples: int
    confidence: float

    def verdict(self, threshold: float) -> str:
        band = 1 + threshold
        if self.low > band:
            return SLOWER
        if self.high < 1 / band:
            return FASTER
        if self.low >= 1 / band and self.high <= band:
            return UNCHANGED
        return UNSURE


def _bootstrap(data, statistic, paired: bool, confidence: float, seed: int):
    """scipy.stats.bootstrap's percentile interval (scipy >= 1.15 names its seed ``rng``)."""
    kwargs = dict(paired=paired, confidence_level=confidence, n_resamples=RESAMPLES,
                  method="percentile", vectorized=True)
    try:
        result = stats.bootstrap(data, statistic, rng=np.random.default_rng(seed), **kwargs)
    except TypeError:
        result = stats.bootstrap(data, statistic, random_state=seed, **kwargs)
    return result.confidence_interval


def paired_change(base, head, confidence: float = CONFIDENCE, seed: int = 0) -> Change:
    """The slowdown from rounds that measured base and head together (same length)."""
    base, head = np.asarray(base, float), np.asarray(head, float)
    if base.shape != head.shape or base.size < 3:
        raise ValueError(f"paired samples need the same length >= 3, not {base.size} and "
                         f"{head.size}")
    d = np.log(head) - np.log(base)
    if np.ptp(d) == 0:  # no spread: the bootstrap has nothing to resample
        return Change(math.exp(d[0]), math.exp(d[0]), math.exp(d[0]), d.size, confidence)
    ci = _bootstrap((d,), lambda x, axis: np.median(x, axis=axis), False, confidence, seed)
    return Change(math.exp(np.median(d)), math.exp(ci.low), math.exp(ci.high), d.size,
                  confidence)


def unpaired_change(base, head, confidence: float = CONFIDENCE, seed: int = 0) -> Change:
    """The shift of the median from stored samples ``base`` to new samples ``head``."""
    a, b = np.log(np.asarray(base, float)), np.log(np.asarray(head, float))
    if a.size < 3 or b.size < 3:
        raise ValueError(f"need >= 3 samples a side, not {a.size} and {b.size}")

    def shift(x, y, axis):
        return np.median(y, axis=axis) - np.median(x, axis=axis)

    point = float(np.median(b) - np.median(a))
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return Change(math.exp(point), math.exp(point), math.exp(point), b.size, confidence)
    ci = _bootstrap((a, b), shift, False, confidence, seed)
    return Change(math.exp(point), math.exp(ci.low), math.exp(ci.high), b.size, confidence)

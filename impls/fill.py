"""Deterministic inputs for a case: exact-integer mode and random-normal mode.

Exact mode follows oneDNN benchdnn (conv/cfg.cpp, ``get_safe_n_acc``): input and weight
hold small nonzero integers, few enough per output that every partial sum, in any order,
is an integer below 2**digits(dtype) and so exactly representable. Then any direct or GEMM
method, in any summation order, must equal the float64 reference bit for bit; a mismatch
is a bug, never rounding. Where the reduction is too long for the dtype (bf16 has 8
digits), a fixed subset of each kernel's taps is zeroed so the bound still holds exactly.

Random mode: standard-normal input, weights scaled by 1/sqrt(C/g*R*S) so outputs are O(1)
whatever the case, which keeps one relative tolerance meaningful across the table.

Values are drawn in float64 from a seeded numpy Generator, then cast to the dtype under
test; the reference sees the cast values, so input rounding is never counted as error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from impls.cases import Case

MODES = ("exact", "random")

#: Significand digits (with the implicit bit): integers below 2**digits are exact.
DIGITS = {torch.float64: 53, torch.float32: 24, torch.float16: 11, torch.bfloat16: 8}
#: Magnitude pairs (max |input|, max |weight|) tried in order for exact mode.
_RANGES = ((4, 3), (3, 2), (2, 2), (2, 1), (1, 1))


@dataclass
class Filled:
    """The tensors of one case (on CPU, in the dtype under test) and how they were made."""

    input: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    mode: str
    seed: int


def fill(case: Case, mode: str, dtype: torch.dtype, seed: int = 0) -> Filled:
    """Inputs for ``case``; the same (case, mode, dtype, seed) always gives the same tensors."""
    if mode not in MODES:
        raise ValueError(f"unknown fill mode {mode!r}; modes: {', '.join(MODES)}")
    rng = np.random.default_rng([seed, _stable_hash(case.id)])
    make = _exact if mode == "exact" else _random
    x, w, b = make(case, rng, DIGITS.get(dtype, 24))
    as_tensor = lambda a: torch.from_numpy(a).to(dtype)  # noqa: E731
    return Filled(as_tensor(x), as_tensor(w), as_tensor(b) if case.bias else None, mode, seed)


def _stable_hash(text: str) -> int:
    # hash() is salted per process; the seed must not be.
    return int.from_bytes(text.encode()[:16].ljust(16, b"\0"), "little") % (2**63)


def _nonzero_ints(rng, size, bound: int) -> np.ndarray:
    """Integers in [-bound, -1] U [1, bound]: no zeros, so a zero output means cancellation."""
    magnitude = rng.integers(1, bound + 1, size=size)
    return np.where(rng.random(size) < 0.5, -magnitude, magnitude).astype(np.float64)


def _exact(case: Case, rng, digits: int):
    limit = 2**digits
    taps = case.reduction
    for xmax, wmax in _RANGES:
        # |output| <= xmax*wmax*taps + |bias| with |bias| <= xmax*wmax: keep it below 2**digits.
        if xmax * wmax * (taps + 1) < limit:
            break
    else:
        xmax = wmax = 1
        taps = limit // 2 - 1  # keep only this many nonzero taps per output channel
    x = _nonzero_ints(rng, case.input_shape, xmax)
    w = _nonzero_ints(rng, case.weight_shape, wmax)
    if taps < case.reduction:
        flat = w.reshape(case.k, -1)
        for row in flat:
            row[rng.permutation(row.size)[taps:]] = 0.0
    b = _nonzero_ints(rng, (case.k,), xmax * wmax)
    return x, w, b


def _random(case: Case, rng, digits: int):
    x = rng.standard_normal(case.input_shape)
    w = rng.standard_normal(case.weight_shape) / np.sqrt(case.reduction)
    b = rng.standard_normal(case.k)
    return x, w, b

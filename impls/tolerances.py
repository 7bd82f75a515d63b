"""How far a backend's output may be from the float64 reference: one table, with reasons.

Direct and GEMM methods ("direct" model). Each output is a sum of L = C/g*R*S products.
Standard error analysis bounds the rounding error by gamma_L * sum_i |x_i * w_i| where
gamma_L ~ L*u (u the unit roundoff); blocked and pairwise summation, and the random signs
of rounding errors, make ~sqrt(L)*u the realistic size. So the bound for element i is

    atol + rtol * sqrt(L) * absref_i,    absref = conv(|x|, |w|) + |bias|

with torch.testing's per-dtype (rtol, atol) defaults, which are ~10 ulps at fp32. Scaling
by absref (not by |ref|) is what makes the test fair where outputs cancel to near zero,
and tight where they do not: float16 accumulation inside an fp32 backend misses it by 100x.

FFT methods ("fft" model). The transform mixes every input into every output, so its
error is global, not per element: for a length-T transform the error of each output is
about c * u * log2(T) times the largest magnitude in the problem. The bound is

    atol + FFT_SAFETY * u * log2(T_h * T_w) * sqrt(L) * max(absref)

with T the padded transform size. FFT_SAFETY was chosen from measured errors over the
case table with a margin of >10x (see tests/test_tolerances.py, which re-measures it).

Exact mode: "exact" backends must match the reference bit for bit (the fill guarantees
exact sums); non-exact ones use the same bound as in random mode.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: dtype -> (rtol, atol, unit roundoff u), rtol/atol from torch.testing.assert_close.
DTYPE_TOLERANCES = {
    torch.float64: (1e-7, 1e-7, 2.0**-53),
    torch.float32: (1.3e-6, 1e-5, 2.0**-24),
    torch.float16: (1e-3, 1e-5, 2.0**-11),
    torch.bfloat16: (1.6e-2, 1e-5, 2.0**-8),
}
#: TF32 (10 stored mantissa bits) for float32 on a GPU when TF32 is allowed.
TF32_TOLERANCE = (1e-3, 1e-5, 2.0**-11)
FFT_SAFETY = 8.0


def tolerance(dtype: torch.dtype, tf32: bool = False) -> tuple[float, float, float]:
    """(rtol, atol, u) for a dtype; float32 under TF32 gets TF32's."""
    if tf32 and dtype == torch.float32:
        return TF32_TOLERANCE
    return DTYPE_TOLERANCES[dtype]


def error_bound(model: str, dtype: torch.dtype, reduction: int, absref: np.ndarray,
                transform_size: int = 1, tf32: bool = False) -> np.ndarray:
    """Elementwise allowed |out - ref| under ``model`` ("direct" or "fft")."""
    rtol, atol, u = tolerance(dtype, tf32)
    growth = math.sqrt(max(reduction, 1))
    if model == "direct":
        return atol + rtol * growth * absref
    if model == "fft":
        scale = float(absref.max()) if absref.size else 0.0
        bound = atol + FFT_SAFETY * u * math.log2(max(transform_size, 2)) * growth * scale
        # Never tighter than the direct model: the final rounding to dtype is the same.
        return np.maximum(bound, atol + rtol * growth * absref)
    raise ValueError(f"unknown error model {model!r}; models: direct, fft")


def fft_transform_size(h: int, w: int, r: int, s: int) -> int:
    """Size of the 2-D transform an FFT conv of this case uses (full linear-correlation size)."""
    return (h + r - 1) * (w + s - 1)

"""How far a backend's output may be from the float64 reference: one table, with reasons.

Direct and GEMM methods ("direct" model). Each output is a sum of L = C/g*R*S products.
Standard error analysis bounds the rounding error by gamma_L * sum_i |x_i * w_i| where
gamma_L ~ L*u (u the unit roundoff); blocked and pairwise summation, and the random signs
of rounding errors, make ~sqrt(L)*u the realistic size. So the bound for element i is

    atol + rtol * sqrt(L) * absref_i,    absref = conv(|x|, |w|) + |bias|

with torch.testing's per-dtype (rtol, atol) defaults, which are ~10 ulps at fp32. Scaling
by absref (not by |ref|) is what makes the test fair where outputs cancel to near zero,
and tight where they do not: float16 accumulation inside an fp32 backend misses it by 100x.

FFT methods ("fft" model). A transform spreads rounding error over a whole tile, so an
output whose window holds only padding still gets noise: the scale is global,
xw = max|x| * max|w|, not absref_i. With A the padded input area (it bounds the transform
area) and C/g the channels contracted per frequency, measured over ~1,700 cases per dtype
(fills: normal, uniform, all-ones, small integers, 100+normal; C/g up to 1024, L up to
246,016), the error stayed below

    coherent data (exact mode):  u*|ref| + 0.41 * u * xw * L * (2 + log2 A + (C/g)/8)
    normal data (random mode):   u*|ref| + 0.19 * u * xw * sqrt(L) * (1 + log2 A)

The (C/g)/8 term is real: with all-equal inputs the per-frequency GEMM sums C/g equal
non-integer values. We allow FFT_SAFETY = 2 times the worst measured coefficient of 1
(so 2.4x to 10x margin), and never less than the direct bound.

Winograd methods ("winograd-f2", "winograd-f4", "winograd-f4x1"). The input and output
transforms round too, and their matrices grow with the tile (F(4x4,3x3) uses points 0,
+-1, 1/2, -2, inf), so the error is again global in scale (xw) and worst at C/g = 1
where the transforms dominate; with all-equal data the C/g identical inexact products add
coherently:

    coherent data (exact mode):  u*|ref| + c * u * xw * L * sqrt(C/g)
    normal data (random mode):   u*|ref| + c' * u * xw * sqrt(L)

with (c, c') = (8, 7) for F(2x2) and (60, 70) for F(4x4): twice the worst measured.
F(4x1) ("winograd-f4x1", impls.builtin.winograd_1d) transforms along one axis only; the
same form holds, fitted the same way on its own (see WINOGRAD_COEFFICIENTS). Its worst
coherent case is all-ones data at C/g = 4096, where the three shifted GEMMs each sum
4096 equal inexact products.

cuDNN ("cudnn": torch on CUDA). Its heuristics pick the engine per problem, and besides
implicit-GEMM ones (the direct model) they may pick FFT or Winograd engines, which round
inside their transforms (issue #3: compare it with a tolerance). The bound is the loosest of
the methods it may run: max(fft, winograd-f4), never below direct. Not measured against
cuDNN's own engines here (no GPU at hand when it was written): the models are ours.

Exact mode: "exact" backends must match the reference bit for bit (the fill guarantees
exact sums); the others use their model's coherent-data bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: dtype -> (rtol, atol, unit roundoff u), rtol/atol from torch.testing.assert_close except
#: float64: its 1e-7 is ~1e9 ulps, so loose that a "float64" backend computing in float32
#: passed (tests/mutants.py). 1e-12 still leaves ~6000x over the worst honest error seen
#: (1.6e-16 * sqrt(L) * absref, torch and unfold) and fails that mutant by ~1e4x.
DTYPE_TOLERANCES = {
    torch.float64: (1e-12, 1e-12, 2.0**-53),
    torch.float32: (1.3e-6, 1e-5, 2.0**-24),
    torch.float16: (1e-3, 1e-5, 2.0**-11),
    torch.bfloat16: (1.6e-2, 1e-5, 2.0**-8),
}
#: TF32 (10 stored mantissa bits) for float32 on a GPU when TF32 is allowed.
TF32_TOLERANCE = (1e-3, 1e-5, 2.0**-11)
FFT_SAFETY = 2.0
#: Winograd F(m x m, 3x3) and F(4x1, 3x3), per variant: (coherent-data c, normal-data c'),
#: each twice the worst coefficient measured over ~9,000 comparisons per variant (fills:
#: normal, uniform, all-ones, small integers, 100+normal; C/g 1..4096; F(4x1): worst 61
#: on all-ones, 24 on normal data). See the Winograd section; `python -m impls.error_fit
#: NAME --trials 900` repeats the measurement.
WINOGRAD_COEFFICIENTS = {"winograd-f2": (8.0, 7.0), "winograd-f4": (60.0, 70.0),
                         "winograd-f4x1": (125.0, 50.0)}


@dataclass(frozen=True)
class Problem:
    """What a bound needs to know of one comparison."""

    reduction: int          # L = C/g * R * S
    group_channels: int     # C/g
    padded_area: int        # (H + pads) * (W + pads)
    xw: float               # max|x| * max|w|


def tolerance(dtype: torch.dtype, tf32: bool = False) -> tuple[float, float, float]:
    """(rtol, atol, u) for a dtype; float32 under TF32 gets TF32's."""
    if tf32 and dtype == torch.float32:
        return TF32_TOLERANCE
    return DTYPE_TOLERANCES[dtype]


def error_bound(model: str, dtype: torch.dtype, mode: str, problem: Problem,
                ref: np.ndarray, absref: np.ndarray, tf32: bool = False) -> np.ndarray:
    """Elementwise allowed |out - ref| under ``model`` ("direct" or "fft") in ``mode``."""
    rtol, atol, u = tolerance(dtype, tf32)
    direct = atol + rtol * math.sqrt(max(problem.reduction, 1)) * absref
    if model == "direct":
        return direct
    if model == "fft":
        log_area = math.log2(max(problem.padded_area, 2))
        if mode == "random":
            spread = math.sqrt(problem.reduction) * (1 + log_area)
        else:
            spread = problem.reduction * (2 + log_area + problem.group_channels / 8)
        bound = u * np.abs(ref) + FFT_SAFETY * u * problem.xw * spread
        return np.maximum(bound, direct)
    if model in WINOGRAD_COEFFICIENTS:
        coherent, normal = WINOGRAD_COEFFICIENTS[model]
        spread = (normal if mode == "random" else coherent) * winograd_spread(mode, problem)
        return np.maximum(u * np.abs(ref) + u * problem.xw * spread, direct)
    if model == "cudnn":
        return np.maximum(*(error_bound(m, dtype, mode, problem, ref, absref, tf32)
                            for m in ("fft", "winograd-f4")))
    raise ValueError(f"unknown error model {model!r}; models: {', '.join(error_models())}")


def winograd_spread(mode: str, problem: Problem) -> float:
    """The Winograd bound beyond u*|ref|, over u * xw and the coefficient: L * sqrt(C/g)
    for coherent data (exact mode), sqrt(L) for normal data (random mode). What
    impls.error_fit divides measured errors by to fit the coefficients."""
    if mode == "random":
        return math.sqrt(problem.reduction)
    return problem.reduction * math.sqrt(problem.group_channels)


def error_models() -> tuple[str, ...]:
    """The names a backend's ``error_model`` may take."""
    return ("direct", "fft", *WINOGRAD_COEFFICIENTS, "cudnn")


# --- Gradients (backward-data, backward-weights) -------------------------------------------
#
# Each gradient is itself a sum of products, so the same two models apply with the sum
# that gradient runs over in place of the forward's C/g*R*S, and with its own operands:
#
#   backward-data     grad_x[n, c, y, x] sums go*w over (k, i, j): L = K/g*R*S, an upper
#                     bound (with stride only ~1/(sh*sw) of the taps reach a pixel; absref
#                     holds the real terms). fft: operands go and w; it correlates the
#                     stride-spread, padded go (area (H + dh(R-1)) x (W + dw(S-1))) with the
#                     flipped kernel, contracting K/g channels per frequency.
#   backward-weights  grad_w[k, c, i, j] sums x*go over (n, p, q): L = N*P*Q, often far
#                     longer than the forward's (3136 per image at 56x56). fft: operands x
#                     and go; go is the "kernel", the padded input (the rows R x S outputs
#                     read) the transformed image, the N images the contracted channels.
#   bias              grad_b[k] sums go over (n, p, q): L = N*P*Q, operands go and 1.
#
# The fft constants were fitted on the forward; the gradients run the same code on these
# operands, so the same bound holds. Measured over the case table plus three large layers
# (k31 at 128x128, ResNet 3x3 at 56x56, k13 batch 4), float32: worst error/bound 0.063 for
# fft (exact and random), 0.021 for torch, unfold and naive in random mode.


def backward_problem(direction: str, *, batch: int, group_out: int,
                     kernel: tuple[int, int], out_hw: tuple[int, int],
                     in_hw: tuple[int, int], stride: tuple[int, int],
                     dilation: tuple[int, int], xw: float) -> Problem:
    """The :class:`Problem` of one gradient: "backward-data", "backward-weights" or "bias".

    ``group_out`` is K/g; ``in_hw`` the input's size after padding; ``xw`` the product of
    the two operands' largest magnitudes (go and w for data, x and go for weights, go for
    bias).
    """
    (r, s), (p, q) = kernel, out_hw
    if direction == "backward-data":
        area = (in_hw[0] + dilation[0] * (r - 1)) * (in_hw[1] + dilation[1] * (s - 1))
        return Problem(group_out * r * s, group_out, area, xw)
    rows = dilation[0] * (r - 1) + stride[0] * (p - 1) + 1
    cols = dilation[1] * (s - 1) + stride[1] * (q - 1) + 1
    if direction == "backward-weights":
        return Problem(batch * p * q, batch, rows * cols, xw)
    if direction == "bias":
        return Problem(batch * p * q, 1, p * q, xw)
    raise ValueError(f"unknown gradient {direction!r}; one of backward-data, "
                     "backward-weights, bias")

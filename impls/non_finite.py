"""Non-finite inputs: a NaN or an Inf in the input, the weight or the bias must not come
out finite.

Why a check of its own: the case table's data are finite, so a backend that sanitises its
input (``nan_to_num``, a clamp, a round trip through an integer type) passes every case
while it hides the NaN a diverging training run would have shown. F.conv2d propagates
them: every output whose window holds the value is non-finite. A backend must keep each of
those non-finite; it may make more so (a transform method spreads the value over its
tile: an FFT tile, a Winograd tile, and Inf - Inf gives NaN there), which is why only
"never hidden" is held, not F.conv2d's exact pattern (see the README). What no method
may do is carry the value into another image or another group's output channels: in a
batch of requests, one request's NaN must not spoil another's result (a per-tensor scale
taken over the whole batch does; a grouped convolution run as a dense one with zero
blocks does too, as 0 * NaN is NaN). F.conv2d keeps images and groups apart.

The weight and the bias get the same value, one element each, and are held to "never
hidden" alone: a NaN weight reaches every image (F.conv2d makes a whole output channel
non-finite from it), so there is no request to keep apart. What these catch is a backend
that prepares its operands once and cleans them on the way (a quantisation step that
clamps or rounds, a kept kernel transform built with ``nan_to_num``), which the input's
check never sees.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from impls.cases import Case
from impls.checker import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    CaseResult,
    declined,
    descriptor,
    error_reason,
    type_mismatch,
)
from impls.fill import fill
from impls.frontend import conv2d
from impls.registry import Backend, get_backend

VALUES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: The problem: a 3x3 kernel with padding, bias and two groups over two images; the value
#: sits at WHERE (image 0, channel 1: group 0) of the input, at WEIGHT_WHERE (output channel
#: 1, input channel 0 of its group) of the weight, at BIAS_WHERE of the bias. A backend
#: that declares less gets the first of the others it declares.
CASES = (Case("non-finite", 2, 4, 9, 9, 4, 3, 3, padding=1, groups=2),
         Case("non-finite", 2, 3, 9, 9, 4, 3, 3, padding=1),
         Case("non-finite", 2, 3, 9, 9, 4, 3, 3),
         Case("non-finite", 2, 3, 9, 9, 4, 3, 3, bias=False))
WHERE = (0, 1, 4, 5)
#: The kernel's centre tap: it never reads padding, where F.conv2d's 0 * NaN makes an
#: output non-finite that a kernel skipping out-of-image taps rightly leaves finite.
WEIGHT_WHERE = (1, 0, 1, 1)
BIAS_WHERE = (2,)
#: Where the value goes, by the tensor it goes into: the input's ids carry no suffix
#: (non-finite/nan), the others say which tensor (non-finite/nan-in-weight).
PLACES = {"input": WHERE, "weight": WEIGHT_WHERE, "bias": BIAS_WHERE}
IDS = [f"non-finite/{name}" + ("" if tensor == "input" else f"-in-{tensor}")
       for tensor in PLACES for name in VALUES]


def parse(id_: str) -> tuple[str, str]:
    """(value, tensor) of a non-finite id (with or without the "non-finite/" prefix)."""
    value, _, tensor = id_.removeprefix("non-finite/").partition("-in-")
    if value not in VALUES or (tensor or "input") not in PLACES:
        raise ValueError(f"not a non-finite id: {id_!r} (one of {', '.join(IDS)})")
    return value, tensor or "input"


def problem(backend: str | Backend) -> Case:
    """The problem ``backend`` is given: the first of CASES whose features it declares."""
    entry = get_backend(backend)
    return next((c for c in CASES if not entry.unsupported(features=c.features())), CASES[0])


def where(case: Case, id_: str) -> str:
    """The row's descriptor: the problem, and the value and where it sits."""
    value, tensor = parse(id_)
    return f"{descriptor(case)} {value} at {tensor}{list(PLACES[tensor])}"


def check_non_finite(backend: str | Backend, value: str, dtype: torch.dtype = torch.float32,
                     device: str = "cpu", seed: int = 0, mode: str = "random") -> CaseResult:
    """Put ``value`` ("nan", "inf", "-inf" in the input; with "-in-weight" or "-in-bias",
    as the ids of IDS name them, in that tensor) into one element, the other values filled
    as ``mode`` fills the case table's, and require every output F.conv2d makes non-finite
    from it to be non-finite here too."""
    entry = get_backend(backend)
    case = problem(entry)
    id_ = value.removeprefix("non-finite/")
    value, tensor = parse(id_)
    result = CaseResult(entry.name, f"non-finite/{id_}", mode,
                        str(dtype).removeprefix("torch."), device, seed, SKIPPED,
                        features=[f"non-finite {tensor}"], descriptor=where(case, id_))
    if declined(result, entry, case, dtype, device, case.features()):
        return result
    if tensor == "bias" and not case.bias:
        result.reason = f"{entry.name} declares no bias: there is none to put the value in"
        return result
    data = fill(case, mode, dtype, seed)
    getattr(data, tensor)[PLACES[tensor]] = VALUES[value]
    args = (data.input, data.weight, data.bias)
    # F.conv2d in float64 on the CPU says which outputs the value reaches, whatever the
    # backend's dtype and device.
    want = ~torch.isfinite(F.conv2d(*(None if t is None else t.double() for t in args),
                                    **case.kwargs()))
    try:
        with torch.no_grad():
            out = conv2d(*(None if t is None else t.to(device) for t in args),
                         backend=entry, **case.kwargs())
        wrong_type = type_mismatch(out, dtype, device)
    except Exception as exc:
        result.status, result.reason = ERROR, error_reason(exc)
        return result
    if wrong_type or out.shape != want.shape:
        result.status = FAILED
        result.reason = wrong_type or (f"output shape {tuple(out.shape)}, expected "
                                       f"{tuple(want.shape)}")
        return result
    finite = torch.isfinite(out.detach().cpu())
    hidden, elsewhere = want & finite, ~want & ~finite
    images, groups = (elsewhere & apart for apart in _apart(case, want.shape, tensor))
    if (images.any() or groups.any()) and not hidden.any():
        first = tuple(int(i) for i in (images | groups).nonzero()[0])
        reached = " and ".join(f"{int(n.sum())} outputs of {what}" for n, what in (
            (images, "other images"), (groups, "other groups' output channels")) if n.any())
        result.status = FAILED
        result.reason = (f"a {value} in image {WHERE[0]}, input channel {WHERE[1]} made "
                         f"{reached} non-finite; first at {first} (F.conv2d keeps images "
                         "and groups apart: one request's NaN must not spoil another's "
                         "result in a batch)")
    elif hidden.any():
        first = tuple(int(i) for i in hidden.nonzero()[0])
        result.status = FAILED
        result.reason = (f"{int(hidden.sum())} of the {int(want.sum())} outputs F.conv2d makes "
                         f"non-finite from a {value} in the {tensor} are finite here; first at "
                         f"{first} " + (
                             f"(and {int(elsewhere.sum())} others are not: the value reached "
                             "other outputs" + (", as a shifted window or padding would make "
                                                "it" if tensor == "input" else "") +
                             "; the case table's comparisons say where)" if elsewhere.any()
                             else "(a backend must not hide a NaN or Inf)"))
    else:
        result.status = PASSED
    return result


def _apart(case: Case, shape, tensor: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs no value at WHERE can reach in any method: (those of other images, those
    of WHERE's image in output channels outside the group of WHERE's input channel). Empty
    masks for a value in the weight or the bias: every image reads those, so there is no
    request to keep apart, and only "never hidden" is held."""
    if tensor != "input":
        nowhere = torch.zeros(shape, dtype=torch.bool)
        return nowhere, nowhere
    per_group_in, per_group_out = case.c // case.groups, case.k // case.groups
    group = WHERE[1] // per_group_in
    images = torch.ones(shape, dtype=torch.bool)
    images[WHERE[0]] = False
    groups = torch.zeros(shape, dtype=torch.bool)
    groups[WHERE[0]] = True
    groups[WHERE[0], group * per_group_out:(group + 1) * per_group_out] = False
    return images, groups

"""Module parity: impls.Conv2d must behave as torch.nn.Conv2d with the same state_dict.

Why separate from the functional checker: the module adds padding modes (reflect,
replicate, circular), parameter initialisation and state_dict layout, none of which the
functional case table exercises. Data is exact-integer (see impls.fill), so for an exact
backend the two modules must agree bit for bit; others get the direct/fft bound.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from impls.cases import Case
from impls.checker import (
    ERROR,
    FAILED,
    SKIPPED,
    CaseResult,
    declined,
    descriptor,
    error_reason,
    judge,
    problem,
    runner,
    type_mismatch,
)
from impls.fill import fill
from impls.module import Conv2d
from impls.reference import reference_conv2d
from impls.registry import Backend, get_backend
from impls.tolerances import error_bound

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@dataclass(frozen=True)
class ModuleCase:
    """Constructor arguments shared by both modules, plus the input size."""

    id: str
    case: Case  # shapes and conv arguments; padding applies through padding_mode

    def module_kwargs(self) -> dict:
        c = self.case
        return dict(in_channels=c.c, out_channels=c.k, kernel_size=(c.r, c.s),
                    stride=c.stride, padding=c.padding, dilation=c.dilation, groups=c.groups,
                    bias=c.bias)


MODULE_CASES = (
    ModuleCase("module-3x3-pad1", Case("m1", 2, 4, 9, 8, 6, 3, 3, padding=1)),
    ModuleCase("module-strided-dilated-grouped",
               Case("m2", 1, 4, 13, 11, 6, 3, 2, stride=2, padding=(2, 1), dilation=(1, 2),
                    groups=2)),
    ModuleCase("module-same-even-kernel",
               Case("m3", 2, 3, 10, 9, 5, 2, 4, padding="same", bias=False)),
)


def check_module(backend: str | Backend, module_case: ModuleCase, padding_mode: str,
                 dtype: torch.dtype = torch.float32, seed: int = 0) -> CaseResult:
    """Compare impls.Conv2d(backend=...) with nn.Conv2d on the same state_dict and input."""
    entry = get_backend(backend)
    case = module_case.case
    features = sorted(case.features() | {f"padding_mode={padding_mode}"})
    result = CaseResult(entry.name, f"{module_case.id}/{padding_mode}", "exact",
                        str(dtype).removeprefix("torch."), "cpu", seed, SKIPPED, features,
                        descriptor=f"{descriptor(case)} padding_mode={padding_mode}")
    if declined(result, entry, case, dtype, "cpu", case.features()):
        return result
    torch.manual_seed(seed)
    kwargs = dict(module_case.module_kwargs(), padding_mode=padding_mode, dtype=dtype)
    ours = Conv2d(**kwargs, backend=entry.name)
    theirs = nn.Conv2d(**kwargs)
    data = fill(case, "exact", dtype, seed)
    state = {"weight": data.weight} | ({"bias": data.bias} if case.bias else {})
    ours.load_state_dict(state)
    theirs.load_state_dict(ours.state_dict())  # the layout must round-trip
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # nn.Conv2d warns that an even "same" kernel copies the input: known, not news.
            warnings.filterwarnings("ignore", message="Using padding='same'")
            # Each module gets its own copy: an in-place change must not reach the other.
            given = data.input.clone()
            got_tensor = ours(given)
            want = theirs(data.input.clone()).double().numpy()
            changed = [name for name, now, was in (
                ("input", given, data.input), ("weight", ours.weight, data.weight),
                ("bias", ours.bias, data.bias)) if was is not None and not torch.equal(now, was)]
            wrong_type = type_mismatch(got_tensor, dtype, "cpu")
            if not wrong_type:
                got = got_tensor.detach().to("cpu", torch.float64).numpy()
    except Exception as exc:
        result.status, result.reason = ERROR, error_reason(exc)
        return result
    if wrong_type or changed:  # nn.Conv2d changes neither its input nor its parameters
        result.status = FAILED
        result.reason = wrong_type or f"the layer changed its {' and '.join(changed)} in place"
        return result
    if got.shape != want.shape:
        result.status, result.reason = FAILED, f"output shape {got.shape}, expected {want.shape}"
        return result
    entry = runner(entry, _called(case, padding_mode), dtype, "cpu")
    if entry.exact:
        bound = np.zeros_like(want)
    else:
        absref = _abs_reference(ours, data, case)
        bound = error_bound(entry.error_model, dtype, "exact",
                            problem(case, data.input.double().numpy(),
                                    data.weight.double().numpy()), want, absref)
    judge(result, got, want, bound)
    return result


def _called(case: Case, padding_mode: str) -> Case:
    """The problem the module hands impls.conv2d: with a padding mode other than zeros it
    pads the input itself and convolves unpadded (as nn.Conv2d does)."""
    if padding_mode == "zeros":
        return case
    (pt, pb), (pl, pr) = case.pads
    return replace(case, h=case.h + pt + pb, w=case.w + pl + pr, padding=0)


def _abs_reference(module: Conv2d, data, case: Case) -> np.ndarray:
    """conv(|x|, |w|) + |b| on the input as the module pads it: the direct model's scale."""
    x, kwargs = data.input.double(), case.kwargs()
    if module.padding_mode != "zeros":
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        kwargs = dict(kwargs, padding=0)
    b = None if data.bias is None else data.bias.double().abs().numpy()
    return reference_conv2d(x.abs().numpy(), data.weight.double().abs().numpy(), b, **kwargs)

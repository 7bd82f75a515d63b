"""The correctness checker: a backend against the float64 reference, over the case table.

Why a library module (not only tests): a user checks their own conv with
``python -m impls check --backend pkg.mod:fn`` from an install, and the test suite drives
the very same function, so what CI proves is what users run.

Each comparison yields a :class:`CaseResult`; nothing is silently passed over: a case a
backend cannot run is "skipped" with the backend's declared reason, an exception is
"error", and a case whose reference is mostly zeros is "mistrusted" (it would prove
nothing, as benchdnn's MISTRUSTED). A failure carries a one-line repro: the command that
reruns exactly that comparison and the problem's benchdnn descriptor.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shlex
import site
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from impls.cases import CASES, Case
from impls.fill import MODES, fill
from impls.frontend import conv2d, normalize
from impls.reference import reference_conv2d
from impls.registry import Backend, get_backend
from impls.tolerances import Problem, error_bound

PASSED, FAILED, SKIPPED, ERROR, MISTRUSTED = "passed", "failed", "skipped", "error", "mistrusted"
BAD = (FAILED, ERROR, MISTRUSTED)
#: A reference with more exact zeros than this fraction proves too little to trust a pass.
MISTRUST_ZERO_FRACTION = 0.5


@dataclass
class CaseResult:
    """One comparison: backend x case x mode x dtype x device."""

    backend: str
    case: str
    mode: str
    dtype: str
    device: str
    seed: int
    status: str
    features: list[str] = field(default_factory=list)
    reason: str = ""
    max_error: float = 0.0  # the largest |error| of the output, wherever it is
    error: float = 0.0  # |error| at ``where``, the element closest to (or furthest over) its bound
    bound: float = 0.0  # the bound at ``where``
    where: tuple[int, ...] = ()
    descriptor: str = ""
    tf32: bool = False  # float32 compared with TF32 allowed (impls check --tf32)

    @property
    def ok(self) -> bool:
        return self.status not in BAD

    def command(self) -> str:
        """The command that reruns this comparison; for a user's "module:function", with
        the PYTHONPATH it was found on (python_path: pasted without it, the rerun cannot
        load it)."""
        path = python_path(self.backend)
        return ((f"PYTHONPATH={shlex.quote(path)}${{PYTHONPATH:+:$PYTHONPATH}} " if path
                 else "")
                + f"python -m impls check --backend {self.backend} --case {self.case} "
                f"--mode {self.mode} --dtype {self.dtype} --device {self.device} "
                f"--seed {self.seed}" + (" --tf32" if self.tf32 else "") + self._direction())

    def _direction(self) -> str:
        """The --direction of this comparison: a case's forward (the check's default runs
        the gradients too); none for module parity and non-finite ids, which name theirs."""
        return "" if "/" in self.case else " --direction forward"

    def repro(self) -> str:
        """What went wrong, and the command that reruns this comparison."""
        return f"{self.status.upper()} {self.descriptor} {self.detail()}\n  repro: {self.command()}"

    def detail(self) -> str:
        """What went wrong: the reason, or the worst error against its bound (and the
        largest error, where that is another element: bounds differ by element)."""
        if self.reason:
            return self.reason
        elsewhere = (f"; max|err|={self.max_error:.3g} elsewhere"
                     if self.max_error > self.error else "")
        return f"|err|={self.error:.3g} at {self.where} (bound {self.bound:.3g}){elsewhere}"

    def to_dict(self) -> dict:
        return asdict(self)

    def take_errors(self, judged: CaseResult) -> None:
        """Adopt the place and errors another judgement found (a second call's, one
        gradient's), so every field of the verdict moves together."""
        self.where, self.max_error = judged.where, judged.max_error
        self.error, self.bound = judged.error, judged.bound


def python_path(backend: str) -> str:
    """The directory a user's "module:function" is imported from, where a fresh ``python
    -m`` would not find it by itself (outside the working directory and site-packages):
    what a rerun must put on PYTHONPATH. "" for a registered name, or where not found."""
    if ":" not in backend:
        return ""
    top = backend.partition(":")[0].split(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return ""
    if found is None or not found.origin or not found.has_location:
        return ""
    where = Path(found.origin).resolve().parent
    if found.submodule_search_locations is not None:  # a package: its parent directory
        where = where.parent
    default = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages(),
                                           os.getcwd()]}
    return "" if where in default else str(where)


def descriptor(case: Case) -> str:
    """The case in benchdnn's grammar, as the backend sees it (symmetric padding)."""
    from impls.spec import ConvSpec

    (pt, pb), (pl, pr) = case.pads
    # PyTorch's odd "same" padding is one extra zero row/column at the bottom/right.
    shape = (case.n, case.c, case.h + pb - pt, case.w + pr - pl)
    spec = ConvSpec.from_torch(shape, case.weight_shape, case.stride_pair, (pt, pl),
                               case.dilation_pair, case.groups, name=case.id)
    return str(spec)


def problem(case: Case, x: np.ndarray, w: np.ndarray) -> Problem:
    """The quantities the tolerance model of impls.tolerances needs for this comparison."""
    (pt, pb), (pl, pr) = case.pads
    xw = float(np.abs(x).max(initial=0.0) * np.abs(w).max(initial=0.0))
    return Problem(case.reduction, case.c // case.groups,
                   (case.h + pt + pb) * (case.w + pl + pr), xw)


def refusal(entry: Backend, case: Case, dtype: torch.dtype = torch.float32,
            device: str = "cpu") -> str:
    """The backend's declared reason for not taking this problem at all: outside its method
    (e.g. not 3x3), over the memory budget (see impls.memory_budget), or known not to
    finish in the backend that would run it (Backend.stalls; a dispatcher's choice too)."""
    args = _normalized(case).problem()
    try:
        reason = entry.refuses(*args) or entry.over_budget(*args, dtype, device)
        if reason or entry.unsupported(device=device, dtype=dtype):
            return reason
        target = runner(entry, case, dtype, device)
        return target.stalled(*args, dtype, device)
    except Exception as exc:  # a user's callback: its failure is the backend's, not a skip
        raise CapabilityError(f"{entry.name}'s declared capabilities (accepts, workspace, "
                              f"delegate or stalls) raised {type(exc).__name__}: {exc}") from exc


class CapabilityError(Exception):
    """A backend's own capability callback raised: the comparison is an ERROR."""


def declined(result: CaseResult, entry: Backend, case: Case, dtype: torch.dtype,
             device: str, features, macs: int = 0, costly: str = "this case") -> bool:
    """Whether the backend's declarations end ``result``'s comparison before it runs:
    skipped with the reason (a device, dtype or one of ``features`` it lacks, a refusal
    (:func:`refusal`), or more than its ``max_macs`` in the comparison's ``macs``, which
    ``costly`` names), or an ERROR when a declaration itself raised."""
    try:
        reason = (entry.unsupported(device=device, dtype=dtype, features=features)
                  or refusal(entry, case, dtype, device))
    except CapabilityError as exc:
        result.status, result.reason = ERROR, str(exc)
        return True
    if not reason and entry.max_macs is not None and macs > entry.max_macs:
        reason = (f"{entry.name} is limited to {entry.max_macs:.3g} multiply-adds per case "
                  f"here; {costly} has {macs:.3g}")
    result.reason = reason
    return bool(reason)


def runner(entry: Backend, case: Case, dtype: torch.dtype, device: str,
           autograd: bool = False) -> Backend:
    """The entry whose exactness and error model judge this case on ``device``: the backend
    itself, or the one a dispatcher (auto) hands the problem to, decided exactly as its call
    decides (Backend.runner, which also applies a device's ``accuracy_on``)."""
    call = _normalized(case)
    features = call.features() | ({"autograd"} if autograd else set())
    return entry.runner(*call.problem(), dtype, device, features)


def _normalized(case: Case):
    """The case as the front end hands it to a backend, on the meta device (no data)."""
    meta = dict(device="meta")
    bias = torch.empty(case.k, **meta) if case.bias else None
    return normalize(torch.empty(case.input_shape, **meta),
                     torch.empty(case.weight_shape, **meta), bias, **case.kwargs())


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_case(backend: str | Backend, case: Case, mode: str = "exact",
               dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0,
               tf32: bool = False) -> CaseResult:
    """Compare one backend with the reference on one case."""
    entry = get_backend(backend)
    result = CaseResult(entry.name, case.id, mode, _dtype_name(dtype), device, seed, SKIPPED,
                        features=case.tags(), tf32=tf32)
    try:
        result.descriptor = descriptor(case)
    except Exception as exc:  # a descriptor that cannot be printed must not hide a result
        result.descriptor = f"<{case.id}: {exc}>"
    if declined(result, entry, case, dtype, device, case.features(), case.macs()):
        return result
    data = fill(case, mode, dtype, seed)
    # The backend gets copies: the reference must see the data as filled, even if the
    # backend (wrongly) writes to its arguments, and that write must not go unnoticed.
    args = [None if t is None else t.to(device, copy=True)
            for t in (data.input, data.weight, data.bias)]
    args[:2] = case.lay_out(*args[:2])
    try:
        with torch.no_grad():
            out = conv2d(*args, backend=entry, **case.kwargs())
        changed = [name for name, arg, t in zip(("input", "weight", "bias"), args,
                                                 (data.input, data.weight, data.bias))
                   if t is not None and not torch.equal(arg.cpu(), t)]
        wrong_type = type_mismatch(out, dtype, device)
        again, reused = None, False
        if not wrong_type and mode == "random":  # once per case and dtype: it costs a call
            kept = out.detach().clone()
            again = _call_again(entry, data, args, case, device)
            reused = not torch.equal(torch.nan_to_num(out.detach()), torch.nan_to_num(kept))
        if not wrong_type:  # a meta result cannot be compared: the wrong type is the failure
            out = out.detach().to("cpu", torch.float64).numpy()
    except Exception as exc:
        result.status, result.reason = ERROR, error_reason(exc)
        return result
    if changed or wrong_type or reused:  # F.conv2d does none of these
        # (a result that changes when the backend is called again is memory it reuses)
        result.status = FAILED
        result.reason = (f"the backend changed its {' and '.join(changed)} in place" if changed
                         else wrong_type or "the result changed when the backend was called "
                         "again: it returns memory it reuses (F.conv2d returns a new tensor)")
        return result
    _compare(result, runner(entry, case, dtype, device), case, data, out, dtype, tf32, again)
    return result


def error_reason(exc: BaseException) -> str:
    """An ERROR row's reason: the exception, and the deepest line it passed through in the
    backend's code (not torch's, numpy's, triton's, the standard library's or this
    harness's): "view size is not compatible..." alone does not say which of a backend's
    views it was."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _backend_code(f.filename)]
    where = (f" (at {frames[-1].filename}:{frames[-1].lineno}, in {frames[-1].name})"
             if frames else "")
    return f"{type(exc).__name__}: {exc}{where}"


def _backend_code(filename: str) -> bool:
    """Whether a traceback's file may be a backend's: not in a library it calls into, the
    standard library (an installed backend's site-packages is kept), or impls' own
    modules (impls/builtin/ holds backends, and is kept)."""
    import os
    import sys
    import sysconfig

    libraries = tuple(os.path.dirname(sys.modules[m].__file__) + os.sep
                      for m in ("torch", "numpy", "triton", "scipy")
                      if getattr(sys.modules.get(m), "__file__", None))
    paths = sysconfig.get_paths()
    if filename.startswith(libraries):
        return False
    if filename.startswith((paths["purelib"] + os.sep, paths["platlib"] + os.sep)):
        return True
    return (not filename.startswith(paths["stdlib"] + os.sep)
            and os.path.dirname(filename) != os.path.dirname(__file__))


def type_mismatch(out: torch.Tensor, dtype: torch.dtype, device: str) -> str:
    """How ``out`` is not of F.conv2d's type for this call (its dtype, on its device type),
    or "". A result of the wrong type is the failure: a meta one cannot even be compared."""
    want = (dtype, torch.device(device).type)
    if (out.dtype, out.device.type) == want:
        return ""
    return (f"output is {_dtype_name(out.dtype)} on {out.device.type}, expected "
            f"{_dtype_name(dtype)} on {want[1]}")


def _call_again(entry: Backend, data, args, case: Case, device: str) -> np.ndarray:
    """A second call (random mode), on the negated input in the same layout and the same
    weight tensor doubled in place: its result is judged too (a race in a kernel is wrong on
    some calls only), and the first result must not change meanwhile (a kernel that hands
    back its workspace or a cached output buffer is right on each call and wrong for every
    caller that keeps two results). The in-place write is what an optimizer step does
    between two forwards (it bumps the weight's version counter): a backend that keeps a
    weight's transform must not serve the old one. Doubling is exact in every float type."""
    negated = case.lay_out(-data.input.to(device), args[1])[0]
    with torch.no_grad():
        args[1].mul_(2)
        out = conv2d(negated, *args[1:], backend=entry, **case.kwargs())
    return out.detach().to("cpu", torch.float64).numpy()


def _compare(result: CaseResult, entry: Backend, case: Case, data, out: np.ndarray,
             dtype: torch.dtype, tf32: bool, again: np.ndarray | None = None) -> None:
    x, w, b, ref, absref = forward_references(case, data)
    if out.shape != ref.shape:
        result.status = FAILED
        result.reason = f"output shape {out.shape}, expected {ref.shape}"
        return
    # Outputs that only see padding are zero by construction; a zero elsewhere is
    # cancellation. Many of those, or nothing but structural zeros, prove too little.
    live = absref > 0
    if ref.size and (not live.any() or np.mean(ref[live] == 0) > MISTRUST_ZERO_FRACTION):
        result.status = MISTRUSTED
        result.reason = (f"{np.mean(ref == 0):.0%} of the reference is zero "
                         f"({np.mean(~live):.0%} by construction)")
        return
    def bound_of(ref, absref, scale=1):
        return forward_bound(entry, case, result.mode, dtype, tf32, x, w, ref, absref, scale)

    judge(result, out, ref, bound_of(ref, absref))
    if again is None or result.status != PASSED:
        return
    _judge_again(result, again, ref, absref, b, bound_of)


def forward_references(case: Case, data) -> tuple:
    """(x, w, b) of the filled ``data`` in float64, the reference output, and the reference
    of (|x|, |w|, |b|): what a forward output is judged against and its bound built from."""
    x, w = data.input.double().numpy(), data.weight.double().numpy()
    b = None if data.bias is None else data.bias.double().numpy()
    return (x, w, b, reference_conv2d(x, w, b, **case.kwargs()),
            reference_conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                             **case.kwargs()))


def forward_bound(entry: Backend, case: Case, mode: str, dtype: torch.dtype, tf32: bool,
                  x: np.ndarray, w: np.ndarray, ref: np.ndarray, absref: np.ndarray,
                  scale: float = 1) -> np.ndarray:
    """The allowed |out - ref| of a forward output: none for an exact backend on exact
    data, else its error model's (``scale``: the weight was multiplied by it)."""
    if mode == "exact" and entry.exact and not tf32:
        return np.zeros_like(ref)
    the = problem(case, x, w)
    return error_bound(entry.error_model, dtype, mode, replace(the, xw=scale * the.xw), ref,
                       absref, tf32)


def _judge_again(result: CaseResult, again: np.ndarray, ref: np.ndarray, absref: np.ndarray,
                 b: np.ndarray | None, bound_of) -> None:
    """Judge the second call (_call_again): conv(-x, 2w) + b = -2 (ref - b) + b, derived
    from the first reference (no second float64 convolution). If it is wrong but matches
    conv(-x, w) + b, the old weight was served: the reason says so."""
    bias = 0 if b is None else b.reshape(1, -1, 1, 1)
    absbias = 0 if b is None else np.abs(bias)
    ref2, absref2 = bias - 2 * (ref - bias), absbias + 2 * (absref - absbias)
    second = replace(result)
    if again.shape != ref2.shape:
        second.status, second.reason = FAILED, f"output shape {again.shape}"
    else:  # the convolution's own error doubles exactly with the weight: so may its bound
        judge(second, again, ref2, np.maximum(bound_of(ref2, absref2, 2),
                                              2 * bound_of(ref, absref)))
    if second.status == PASSED:
        return
    result.status = FAILED
    result.take_errors(second)
    stale = replace(result)
    if again.shape == ref.shape:
        old = bias - (ref - bias)  # conv(-x, w) + b: the weight before the in-place write
        judge(stale, again, old, bound_of(old, absref))
    why = ("it served the weight of the first call: the weight was doubled in place between "
           "the calls (as an optimizer step writes it, bumping its version counter), and a "
           "kept transform of it was not recomputed" if stale.status == PASSED else
           "was wrong (the first was right)")
    result.reason = (f"the second call, on the negated input and the weight doubled in "
                     f"place, {why}: {second.detail()}")


def share_of_bound(error, bound):
    """error / bound, elementwise (arrays or numbers): how close an error came to its bound,
    over 1 being a failure. An exact comparison's bound of 0 gives 0 where the error is 0
    and infinity where it is not."""
    error, bound = np.asarray(error, dtype=float), np.asarray(bound, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bound > 0, error / bound, np.where(error > 0, math.inf, 0.0))


def judge(result: CaseResult, out: np.ndarray, want: np.ndarray, bound: np.ndarray) -> float:
    """Set ``result``'s verdict: FAILED where |out - want| exceeds the bound anywhere, with
    the worst place; return its share of its bound (error / bound: over 1 fails), which
    compares across outputs of different scale (a backward's gradients). A non-finite
    output where the reference is finite always fails and is named as such (a NaN compares
    false with every bound: it must not pass unseen)."""
    error = np.abs(out - want)
    bad = ~np.isfinite(error)
    error[bad] = math.inf
    bound = np.broadcast_to(bound, error.shape)
    # The element named is the one nearest (or furthest over) its own bound: bounds differ
    # by element, so the largest excess would name the tightest bound, not the closest call.
    share = share_of_bound(error, bound)
    worst = np.unravel_index(int(np.argmax(share)), share.shape) if share.size else ()
    result.where = tuple(int(i) for i in worst)
    result.max_error = float(error.max()) if error.size else 0.0
    result.error = float(error[worst]) if error.size else 0.0
    result.bound = float(bound[worst]) if error.size else 0.0
    result.status = FAILED if error.size and (error > bound).any() else PASSED
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        nans = int(np.isnan(out[bad]).sum())
        result.reason = (f"{int(bad.sum())} of {bad.size} outputs are not finite ({nans} NaN, "
                         f"{int(bad.sum()) - nans} Inf) where the reference is; first at "
                         f"{first}")
    return float(share[worst]) if share.size else -math.inf


def check_backend(backend: str | Backend, cases=CASES, modes=MODES,
                  dtypes=(torch.float32, torch.float64), device: str = "cpu", seed: int = 0,
                  tf32: bool = False, progress=None) -> list[CaseResult]:
    """Every case x mode x dtype for one backend; ``progress(result)`` is called per result."""
    results = []
    for case in cases:
        for mode in modes:
            for dtype in dtypes:
                result = check_case(backend, case, mode, dtype, device, seed, tf32)
                results.append(result)
                if progress is not None:
                    progress(result)
    return results


def summarize(results: list[CaseResult]) -> dict[str, dict[str, int]]:
    """Counts per feature and status: {feature: {passed: n, failed: n, skipped: n}}."""
    table: dict[str, dict[str, int]] = {}
    for result in results:
        status = FAILED if result.status in BAD else result.status
        for feature in result.features:
            row = table.setdefault(feature, {PASSED: 0, FAILED: 0, SKIPPED: 0})
            row[status] += 1
    return dict(sorted(table.items()))

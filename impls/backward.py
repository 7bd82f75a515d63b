"""The gradient checker: a backend's autograd gradients against the float64 reference.

Why: training runs the two backward directions (benchdnn's BWD_D and BWD_WB) as often as
the forward, and a backend can have a right forward and a wrong gradient. This mirrors
impls.checker (same CaseResult, statuses, mistrust rule and repro) for "backward-data"
(dL/dinput) and "backward-weights" (dL/dweight, and dL/dbias with it).

Each direction is a separate call in which only its own tensors require grad, as a
training step asks (a frozen layer, the first layer's input): the backend's autograd must
produce exactly those gradients, and a backend with a hand-written backward (fft) computes
only what is asked. The output gradient comes from its own seeded stream:

- exact mode: small nonzero integers, so every gradient is an integer sum. Beyond the
  forward's sums (which impls.fill bounds), the data gradient sums go*w over (k, i, j) and
  the weight and bias gradients sum over N*P*Q, which can be long. So the magnitude of go
  is chosen from the weight's largest per-channel column sum, and where N*P*Q terms could
  reach 2**digits only a fixed number of go entries per output channel stay nonzero. The
  reference's sum of |terms| (which bounds every partial sum in any order) is then checked
  below 2**digits; a case where it is not is skipped with that reason, never compared
  inexactly. Exact backends must then match bit for bit.
- random mode: standard normal go; tolerances from impls.tolerances.backward_problem.

What it must not do: compute a reference through torch autograd (the reference is
impls.reference.reference_conv2d_backward, NumPy from the definition).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from impls.cases import CASES, Case
from impls.checker import (
    ERROR,
    FAILED,
    MISTRUST_ZERO_FRACTION,
    MISTRUSTED,
    PASSED,
    SKIPPED,
    CaseResult,
    declined,
    descriptor,
    error_reason,
    forward_bound,
    forward_references,
    judge,
    runner,
)
from impls.fill import DIGITS, MODES, _nonzero_ints, _stable_hash, fill
from impls.frontend import conv2d
from impls.reference import reference_conv2d_backward
from impls.registry import Backend, get_backend
from impls.tolerances import backward_problem, error_bound

DIRECTIONS = ("backward-data", "backward-weights")
#: Magnitudes tried, largest first, for exact-mode output gradients.
_GRAD_RANGES = (3, 2, 1)


@dataclass
class BackwardResult(CaseResult):
    """A CaseResult that knows its direction, so its repro reruns that direction."""

    direction: str = "backward-data"

    def _direction(self) -> str:
        return f" --direction {self.direction}"


def result_from_dict(result: dict) -> CaseResult:
    """A checker result back from its JSON form (an item's row may lack a few fields): a
    gradient's as a BackwardResult, whose repro and JSON keep its direction."""
    kind = BackwardResult if result.get("direction") in DIRECTIONS else CaseResult
    known = {f.name for f in fields(kind)}
    kept = {k: v for k, v in result.items() if k in known and v is not None}
    return kind(**{**kept, "where": tuple(kept.get("where", ()))})


def check_backward(backend: str | Backend, case: Case, direction: str = "backward-data",
                   mode: str = "exact", dtype: torch.dtype = torch.float32,
                   device: str = "cpu", seed: int = 0, tf32: bool = False) -> CaseResult:
    """Compare one backend's gradients of one direction with the reference on one case."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; directions: {', '.join(DIRECTIONS)}")
    if mode not in MODES:
        raise ValueError(f"unknown fill mode {mode!r}; modes: {', '.join(MODES)}")
    entry = get_backend(backend)
    result = BackwardResult(entry.name, case.id, mode, str(dtype).removeprefix("torch."),
                            device, seed, SKIPPED, case.tags(), tf32=tf32,
                            direction=direction)
    try:
        result.descriptor = descriptor(case)
    except Exception as exc:  # a descriptor that cannot be printed must not hide a result
        result.descriptor = f"<{case.id}: {exc}>"
    # A backward step is a forward plus one gradient, each about the forward's cost.
    if declined(result, entry, case, dtype, device, case.features() | {"autograd"},
                2 * case.macs(), "this case's forward + backward"):
        return result
    data = fill(case, mode, dtype, seed)
    x, w = data.input.double().numpy(), data.weight.double().numpy()
    go = _grad_out(case, mode, x, w, DIGITS.get(dtype, 24), seed)
    refs, absrefs = _references(case, direction, x, w, go)
    if mode == "exact":
        result.reason = _inexact_reason(absrefs, direction, dtype)
        if result.reason:
            return result
    target, judged, forward = runner(entry, case, dtype, device, autograd=True), [], None
    # The other scenarios in random mode only: a wrong gradient there is no rounding
    # matter, and each costs a backward (the suite's gradient checks took 2.5x as long).
    scenarios = SCENARIOS[direction] if mode == "random" else SCENARIOS[direction][:1]
    for requires in scenarios:
        names = [n for n in refs if n in requires]
        if not names:  # bias alone, on a case without one
            continue
        scenario = replace(result)
        try:
            out, grads = _backend_gradients(entry, case, data, go, dtype, device, requires,
                                            names)
        except Exception as exc:
            scenario.status, scenario.reason = ERROR, error_reason(exc)
        else:
            forward = forward or forward_references(case, data)
            _judge_forward(scenario, target, case, out, forward, dtype, tf32)
            if scenario.status != FAILED:
                _compare(scenario, target, case, (x, w, go), grads,
                         {n: refs[n] for n in names}, {n: absrefs[n] for n in names}, dtype,
                         tf32)
        judged.append((requires, scenario))
    # The first scenario's verdict, unless another one fails where it passed.
    bad = next(((req, j) for req, j in judged if j.status in (FAILED, ERROR)), judged[0])
    requires, chosen = bad
    if chosen is not judged[0][1]:
        chosen.reason += f" (with {', '.join(requires)} requiring grad)"
    return chosen


#: Which of input, weight and bias require grad in each gradient check, the direction's own
#: first (its verdict): a review's backends passed with a wrong grad_input whenever the
#: weight required grad too (every hidden layer in training), and with no bias gradient
#: when the weight was frozen (fine-tuning the bias alone): each direction was only ever
#: asked with its own tensors requiring grad.
SCENARIOS = {
    "backward-data": (("input",), ("input", "weight", "bias")),
    "backward-weights": (("weight", "bias"), ("input", "weight", "bias"), ("bias",)),
}


def check_backend_backward(backend: str | Backend, cases=CASES, directions=DIRECTIONS,
                           modes=MODES, dtypes=(torch.float32, torch.float64),
                           device: str = "cpu", seed: int = 0, tf32: bool = False,
                           progress=None) -> list[CaseResult]:
    """Every case x direction x mode x dtype for one backend, as impls.checker.check_backend."""
    results = []
    for case in cases:
        for direction in directions:
            for mode in modes:
                for dtype in dtypes:
                    result = check_backward(backend, case, direction, mode, dtype, device,
                                            seed, tf32)
                    results.append(result)
                    if progress is not None:
                        progress(result)
    return results


def _grad_out(case: Case, mode: str, x: np.ndarray, w: np.ndarray, digits: int,
              seed: int) -> np.ndarray:
    """The output gradient, float64, on a stream separate from the inputs' fill."""
    rng = np.random.default_rng([seed, _stable_hash(case.id), 1])
    shape = (case.n, case.k, *case.output_hw)
    if mode == "random":
        return rng.standard_normal(shape)
    limit = 2**digits
    g = case.groups
    # backward-data: sum over (k, i, j) of go*w for one input channel c.
    column = np.abs(w).reshape(g, case.k // g, case.c // g, -1).sum(axis=(1, 3)).max()
    go_max = next((m for m in _GRAD_RANGES if m * column < limit), 1)
    go = _nonzero_ints(rng, shape, go_max)
    # backward-weights and bias: sums over N*P*Q per output channel, each term <= x_max*go_max.
    keep = (limit - 1) // (go_max * max(np.abs(x).max(initial=0.0), 1.0))
    if keep < go.size // case.k:  # N*P*Q terms per output channel
        channels = go.transpose(1, 0, 2, 3).reshape(case.k, -1)  # a copy: write back below
        for row in channels:
            row[rng.permutation(row.size)[int(keep):]] = 0.0
        go = channels.reshape(case.k, case.n, *shape[2:]).transpose(1, 0, 2, 3).copy()
    return go


def _references(case: Case, direction: str, x, w, go):
    """The reference gradients of ``direction`` and the sums of their |terms|, by name."""
    data_side = direction == "backward-data"
    mask = (data_side, not data_side, not data_side and case.bias)
    ref = reference_conv2d_backward(x, w, go, **case.kwargs(), output_mask=mask)
    absref = reference_conv2d_backward(np.abs(x), np.abs(w), np.abs(go), **case.kwargs(),
                                       output_mask=mask)
    names = ("input", "weight", "bias")
    return ({n: g for n, g in zip(names, ref) if g is not None},
            {n: g for n, g in zip(names, absref) if g is not None})


def _inexact_reason(absrefs: dict, direction: str, dtype: torch.dtype) -> str:
    digits = DIGITS.get(dtype, 24)
    for name, absref in absrefs.items():
        largest = float(absref.max(initial=0.0))
        if largest >= 2**digits:
            return (f"exact mode: the grad_{name} sums of {direction} reach {largest:.3g} >= "
                    f"2**{digits}, not exact in {str(dtype).removeprefix('torch.')} "
                    f"(random mode checks it)")
    return ""


def _judge_forward(result: BackwardResult, entry: Backend, case: Case, out: np.ndarray,
                   forward: tuple, dtype: torch.dtype, tf32: bool) -> None:
    """Fail ``result`` if the output of the call autograd recorded is wrong. Why: a backend
    may compute its forward another way when autograd records (fft's and triton's autograd
    Functions, unfold's tracked path); the forward check, under no_grad, never runs that
    way, and its gradients can be right with its output wrong (a bias the training path
    forgets: grad_bias is sum(grad_output) either way)."""
    x, w, _, ref, absref = forward  # checker.forward_references
    judged = replace(result)
    judge(judged, out, ref, forward_bound(entry, case, result.mode, dtype, tf32, x, w, ref,
                                          absref))
    if judged.status == FAILED:
        result.status = FAILED
        result.take_errors(judged)
        result.reason = f"the output of the call autograd recorded: {judged.detail()}"


def _backend_gradients(entry: Backend, case: Case, data, go, dtype, device,
                       requires: tuple[str, ...], names: list[str]):
    """The backend's output and its gradients of ``names`` by name, the tensors named in
    ``requires`` requiring grad (see SCENARIOS)."""
    x, w = case.lay_out(data.input.to(device, copy=True), data.weight.to(device, copy=True))
    x, w = x.requires_grad_("input" in requires), w.requires_grad_("weight" in requires)
    b = None if data.bias is None else data.bias.to(device, copy=True).requires_grad_(
        "bias" in requires)  # a copy: .to() of a tensor already there is the filled one
    targets = {name: t for name, t in (("input", x), ("weight", w), ("bias", b))
               if name in names}
    grad_out = case.lay_out_grad(torch.from_numpy(go).to(device, dtype))
    with torch.enable_grad():
        out = conv2d(x, w, b, backend=entry, **case.kwargs())
        _require_graph(out, entry)
        if out.shape != grad_out.shape:
            raise RuntimeError(f"output shape {tuple(out.shape)}, expected "
                               f"{tuple(grad_out.shape)}")
        grads = torch.autograd.grad(out, list(targets.values()), grad_out, allow_unused=True)
    missing = [name for name, g in zip(targets, grads) if g is None]
    if missing:
        raise RuntimeError(f"autograd gave no gradient for {', '.join(missing)}")
    as_numpy = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    return as_numpy(out), {name: as_numpy(g) for name, g in zip(targets, grads)}


def _compare(result: BackwardResult, entry: Backend, case: Case, operands, grads: dict,
             refs: dict, absrefs: dict, dtype: torch.dtype, tf32: bool) -> None:
    """Set result's status from the worst gradient (relative to its bound)."""
    for name, ref in refs.items():
        if grads[name].shape != ref.shape:
            result.status = FAILED
            result.reason = f"grad_{name} shape {grads[name].shape}, expected {ref.shape}"
            return
        live = absrefs[name] > 0
        if ref.size and (not live.any() or np.mean(ref[live] == 0) > MISTRUST_ZERO_FRACTION):
            result.status = MISTRUSTED
            result.reason = (f"{np.mean(ref == 0):.0%} of the reference grad_{name} is zero "
                             f"({np.mean(~live):.0%} by construction)")
            return
    worst = None
    for name, ref in refs.items():
        if not ref.size:
            continue
        if result.mode == "exact" and entry.exact and not tf32:
            bound = np.zeros_like(ref)
        else:
            problem = _problem(case, name, result.direction, operands)
            bound = error_bound(entry.error_model, dtype, result.mode, problem, ref,
                                absrefs[name], tf32)
        judged = replace(result)
        excess = judge(judged, grads[name], ref, bound)
        if worst is None or excess > worst[0]:
            worst = (excess, name, judged)
    if worst is None:
        result.status = PASSED
        return
    _, name, judged = worst
    result.status = judged.status
    result.take_errors(judged)
    if result.status == FAILED:
        result.reason = f"grad_{name}: {judged.detail()}"


def _problem(case: Case, name: str, direction: str, operands):
    x, w, go = operands
    (pt, pb), (pl, pr) = case.pads
    top = lambda a: float(np.abs(a).max(initial=0.0))  # noqa: E731
    xw = {"input": top(go) * top(w), "weight": top(x) * top(go), "bias": top(go)}[name]
    return backward_problem("bias" if name == "bias" else direction, batch=case.n,
                            group_out=case.k // case.groups, kernel=(case.r, case.s),
                            out_hw=go.shape[2:], in_hw=(case.h + pt + pb, case.w + pl + pr),
                            stride=case.stride_pair, dilation=case.dilation_pair, xw=xw)


def _require_graph(out: torch.Tensor, backend: str | Backend) -> None:
    """Raise, naming the backend and the fix, when autograd cannot differentiate ``out``:
    autograd's own error ("element 0 of tensors does not require grad") says neither."""
    if not out.requires_grad:
        name = backend if isinstance(backend, str) else backend.name
        raise RuntimeError(f"backend {name!r} returned a result autograd cannot differentiate "
                           "(no grad_fn): make it differentiable, or declare features "
                           "without 'autograd' so that gradients are skipped with that reason")


def gradient_call(backend: str | Backend, input: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None, direction: str, **conv_kwargs):
    """A zero-argument callable that runs one ``direction`` backward pass, for timing.

    The forward runs once here, with only the direction's tensors requiring grad (so a
    hand-written backward computes only that gradient); each call then replays the
    backward of the retained graph with a fixed output gradient and returns the gradients.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; directions: {', '.join(DIRECTIONS)}")
    data_side = direction == "backward-data"
    x = input.detach().requires_grad_(data_side)
    w = weight.detach().requires_grad_(not data_side)
    b = None if bias is None else bias.detach().requires_grad_(not data_side)
    targets = [x] if data_side else [t for t in (w, b) if t is not None]
    with torch.enable_grad():
        out = conv2d(x, w, b, backend=backend, **conv_kwargs)
    _require_graph(out, backend)
    grad_out = torch.randn_like(out)

    def call():
        return torch.autograd.grad(out, targets, grad_out, retain_graph=True)

    return call
